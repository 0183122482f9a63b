"""Every text the follow-up engine shows: reminders, alarms, 督办, digest, 回访, policy news,
/overdue and /stats (Simplified Chinese).

Re-exported by bot/texts/__init__.py next to the intake texts, so names here must not clash
with bot/texts/intake.py (tests check that).
"""

from __future__ import annotations

# ---------------------------------------------------------------- shared pieces
STAGE_NAMES = {"sign": "签收", "resolve": "办结", "verify": "核查"}
RATING_NAMES = {
    "satisfied": "满意",
    "basic": "基本满意",
    "unsatisfied": "不满意",
    "unrated": "未评价",
}
RATE_NONE = "—"

# ---------------------------------------------------------------- department group: 红黄灯
REMINDER_YELLOW = (
    "🟡 黄灯提醒 {ref}\n{stage}时限 {deadline}，还剩 {left}，请尽快{stage}。\n📝 {snippet}"
)
ALARM_RED = (
    "🔴 超时报警 {ref}\n"
    "{stage}已超时 {over}（时限 {deadline}）。\n"
    "请立即{stage}；超时满 {escalate_hours} 小时将报送督办。\n"
    "📝 {snippet}"
)
ESCALATION_DEPARTMENT = "⚠️ 督办通知 {ref}\n{stage}已超时 {over}，已报送督办室，请立即处理并反馈。"

# ---------------------------------------------------------------- leader chat: 督办 and digest
ESCALATION_LEADER = (
    "⚠️ 督办 {ref}（{department}）\n{stage}超时 {over}（时限 {deadline}）{urgent}\n📝 {snippet}"
)
ESCALATION_URGENT = " 🚨紧急"
PART_REF = "{ref}（攻坚哨·{department}任务）"  # a 攻坚哨 part's alerts name its department
DIGEST_TITLE = "📋 每日超时案件通报（{date}）"
DIGEST_NONE = "✅ 目前没有超时案件。"
DIGEST_TOTAL = "共 {count} 件超时："
DIGEST_DEPARTMENT = "🔴 {department}：{count} 件"
DIGEST_CASE = "    {ref} {stage}超时 {over}"
DIGEST_MORE = "    ……另有 {count} 件"

# ---------------------------------------------------------------- reporter notices
NOTICE_EXTENDED = "⏳ {subject}（{ref}）办理时限已延长至 {deadline}。\n原因：{reason}"
NOTICE_EXTENDED_NO_REASON = "⏳ {subject}（{ref}）办理时限已延长至 {deadline}。"
# The one message a reopening gets, however the 不满意 came (comment, 直接提交, timeout).
NOTICE_REOPENED = (
    "🔁 已收到您的评价。{subject}（{ref}）已重新交 {department} 办理，我们会继续跟进。"
)
POST_REOPENED = (
    "🔁 群众不满意，重新办理 {ref}\n"
    "群众意见：{comment}\n"
    "原办理结果：{resolution}\n"
    "签收时限 {sign_by}　办结时限 {resolve_by}\n"
    "📝 {snippet}"
)
NO_COMMENT = "（未填写）"

# ---------------------------------------------------------------- 回访 (satisfaction survey)
# The 办结 notice carries the result (and photo); the survey refers to it, never repeats it.
SURVEY = (
    "📋 回访｜请对{subject} {ref} 的办理结果进行评价。\n"
    "办理结果见办结通知，也可发送 /case {ref} 查看。"
)
# A follower (关注该案件) cannot open /case: the case's text and photos are its reporter's.
FOLLOWER_SURVEY = "📋 回访｜请对您关注的问题 {ref} 的办理结果进行评价。\n办理结果见办结通知。"
SURVEY_REMINDER = (
    "📋 温馨提醒｜{subject} {ref} 已办结，还没有收到您的评价。\n"
    "办理结果可发送 /case {ref} 查看。请点击下方按钮评价；{days} 天内未评价将自动结案。"
)
BTN_RATE = {"satisfied": "😊 满意", "basic": "🙂 基本满意", "unsatisfied": "😞 不满意"}
SURVEY_ASK_COMMENT = (
    "很抱歉没能让您满意 🙏\n"
    "请直接回复文字，说说哪里不满意（{max} 字以内），我们会转交 {department} 重新办理。\n"
    "不想填写可点「直接提交」。"
)
BTN_SUBMIT_RATING = "直接提交"
SURVEY_THANKS = "感谢您的评价（{rating}）！案件 {ref} 已结案。"
FOLLOWER_RATED = "感谢您的评价（{rating}）！您关注的案件 {ref} 的回访意见已记录。"
SURVEY_ANSWERED = "您的评价：{rating}"
SURVEY_SUBMITTED_NO_COMMENT = "您的评价：不满意（未填写意见）"
SURVEY_ALREADY_DONE = "该案件已经评价或已结案，无需重复评价。"
SURVEY_NOT_YOURS = "只有反映人本人可以评价该案件。"
SURVEY_COMMENT_TOO_LONG = "意见有点长（{length} 字），请精简到 {max} 字以内再发送。"
SURVEY_COMMENT_TEXT_ONLY = "请用文字回复不满意的原因，或点「直接提交」。"

# ---------------------------------------------------------------- 惠企政策
POLICY_USAGE = (
    "发布惠企政策的格式：\n"
    "/policy 政策标题\n"
    "政策摘要（可多行）\n"
    "链接：https://…（可选）\n"
    "标签：行业或园区的关键词，多个用逗号分隔，如 软件，制造，物流，望城经开区\n"
    "（企业的行业或园区名称含有某个标签即可收到；不填则推送给所有订阅企业）"
)
POLICY_NOT_ALLOWED = "抱歉，只有分拨中心、督办领导或管理员可以发布惠企政策。"
POLICY_POSTED = "✅ 已发布《{title}》，将推送给 {count} 位企业联系人。"
POLICY_POSTED_NONE = "✅ 已发布《{title}》。目前没有匹配且订阅推送的企业。"
POLICY_MESSAGE = "📢 惠企政策｜{title}\n\n{summary}"
POLICY_LINK = "🔗 {link}"
POLICY_TAGS = "🏷 {tags}"
POLICY_FOOTER = "不想再收到政策推送，可点下方按钮或发送 /unsubscribe。"
BTN_UNSUBSCRIBE = "不再接收政策推送"
NEWS_UNSUBSCRIBED = "已退订惠企政策推送。需要时发送 /subscribe 重新订阅。"
NEWS_SUBSCRIBED = "已订阅惠企政策推送 ✅ 发送 /unsubscribe 可随时退订。"
NEWS_NOT_ENTERPRISE = "惠企政策推送面向已登记的企业，请先发送 /enterprise 登记企业信息。"

# ---------------------------------------------------------------- /overdue
OVERDUE_NOT_STAFF = "抱歉，/overdue 仅供工作人员使用。"
OVERDUE_NONE = "✅ {scope}目前没有红灯或黄灯案件。"
OVERDUE_TITLE = "{scope}红黄灯案件（截至 {time}）：🔴 {red} 件　🟡 {yellow} 件"
OVERDUE_SCOPE_ALL = "全区"
OVERDUE_SCOPE_GRID = "网格 {grid} "
OVERDUE_DEPARTMENT = "【{department}】🔴 {red}　🟡 {yellow}"
OVERDUE_RED_LINE = "🔴 {ref} {stage}超时 {over}｜{snippet}"
OVERDUE_YELLOW_LINE = "🟡 {ref} {stage}剩 {left}｜{snippet}"
OVERDUE_TRUNCATED = "……仅列出最紧急的 {count} 件"
OVERDUE_PARTS = "【攻坚哨协同任务】"

# ---------------------------------------------------------------- /stats
STATS_NOT_STAFF = "抱歉，/stats 仅供工作人员使用。"
STATS_USAGE = (
    "用法：/stats [今天|本周|上周|本月|上个月|今年|2026-11|2026-11-01~2026-11-15]\n"
    "（也可写 today、week、last-week、month、last-month、year；不写默认本月）"
)
STATS_TITLE = "📊 {period}办理统计（{start} 至 {end}）"
STATS_TOTAL = (
    "全区：受理 {created} 件，派单 {dispatched} 件，办结 {done} 件\n"
    "办结率 {completion}　按时办结率 {on_time}　满意率 {satisfaction}\n"
    "当前在办 {open} 件：🔴 {red}　🟡 {yellow}"
)
STATS_DEPARTMENTS = "各部门（按红黄灯排序）："
STATS_DEPARTMENT = (
    "{light} {name}：派单 {dispatched}，办结率 {completion}，按时 {on_time}，满意率 {satisfaction}"
)
STATS_PERIOD_NAMES = {"today": "今日", "week": "本周", "last_week": "上周", "month": "本月"}
STATS_MONTH = "{year}年{month}月"
STATS_YEAR = "{year}年"
STATS_NOT_STARTED = "{period}还没有开始，请换一个统计期间。"
STATS_RANGE_FROM = "{start} 起的期间"


def span(seconds: float) -> str:
    """A duration the way people say it: '2天3小时', '5小时', '40分钟'."""
    minutes = max(0, int(seconds // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时" if hours else f"{days}天"
    if hours:
        return f"{hours}小时{mins}分钟" if mins and hours < 3 else f"{hours}小时"
    return f"{max(mins, 1)}分钟"


def percent(rate: float | None) -> str:
    """0.834 → '83.4%'; None (nothing counted) → '—'."""
    return RATE_NONE if rate is None else f"{rate:.1%}"


# ---------------------------------------------------------------- /dashboard
DASHBOARD_CODE = (
    "指挥大屏登录码：{code}\n10 分钟内有效，仅可使用一次。\n"
    "打开 http://{host}:{port}/login 输入即可。请勿转发他人。"
)
DASHBOARD_NOT_STAFF = "指挥大屏仅对工作人员开放。"
