"""Duplicate reports (重复件, #16): the resident's question before confirming, triage's hint."""

DUPLICATE_ASK = "附近已有人反映：{ref}，状态 {status}。是同一个问题吗？"
# An enterprise is only shown its own open demands (a colleague may have filed it already).
DUPLICATE_ASK_ENTERPRISE = "贵企业已提交过相似诉求：{ref}，状态 {status}。是同一个诉求吗？"
BTN_FOLLOW = "是，关注该案件"
BTN_NOT_SAME = "不是，继续提交"
FOLLOWED = (
    "已为您关注 {ref}，无需重复提交：它的办理进展和办结后的回访会同样通知您。"
    "目前共有 {count} 人反映了这个问题。"
)
DUPLICATE_HINT = "🔁 {ref} 可能与以下未办结案件重复："
DUPLICATE_HINT_LINE = "{n}. {ref} · {status} · 相似度 {score:.0%} · {count} 人反映"
BTN_MERGE_INTO = "🔗 合并至 {ref}"
DUPLICATE_MERGED = "✅ {ref} 已合并至 {into}（{name} · {time}），反映人改为关注 {into}。"
CASE_REPORTERS = "反映人数：{count} 人（含关注该案件的居民）"
# /my and /case for a follower: the case is someone else's report, so its words, photos and
# place are not shown, only how it is going.
MY_TITLE_FOLLOWED = "您关注的案件："
MY_FOLLOWED_LINE = "{light} {ref}  {status}"
CASE_HEADER_FOLLOWED = "{ref}（{kind} · 您已关注）\n状态：{status} {light}"
