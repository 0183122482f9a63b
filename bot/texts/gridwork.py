"""Texts of 吹哨报到 in the grid: 交网格办理, the grid's (and street's) posts and buttons, 吹哨,
报到, 核查 and the 雷锋哨 a grid worker blows from the field (/whistle)."""

# ---------------------------------------------------------------- triage

BTN_TO_GRID = "🏘 交网格办理"
DONE_TO_GRID = "已交 {grid} 办理"
POST_GRID_FIRST = "🏘 网格事项，已交 {grid} 办理"

# ---------------------------------------------------------------- the grid's post

POST_TO_GRID = "🏘 网格事项 {ref}（{kind}），请签收办理"
POST_WHISTLED_TO_STREET = "📣 {grid}吹哨 {ref}（{kind}），请街道（镇）签收办理\n吹哨理由：{reason}"
POST_TO_VERIFY = "🔍 待核查 {ref}：{department} 已办结，请到现场核查"
POST_RESULT = "办理结果：{result}"
POST_HANDLER = "办理网格：{path}"
POST_GRID_DEADLINES = "签收时限：{sign_by}　办结时限：{resolve_by}"
POST_VERIFY_DEADLINE = "核查时限：{verify_by}"
BTN_GRID_SIGN = "✍️ 签收"
BTN_GRID_RESOLVE = "✅ 办结"
BTN_WHISTLE = "📣 吹哨"
BTN_WHISTLE_STREET = "🏛 吹哨至 {street}"
BTN_WHISTLE_DEPARTMENT = "{department}"
BTN_VERIFY_OK = "✅ 核查通过"
BTN_VERIFY_FAIL = "❌ 核查不通过"
PICK_WHISTLE_TARGET = "向谁吹哨？街道（镇）或区直部门："
ASK_WHISTLE_REASON = "请回复吹哨理由（为什么网格解决不了，需要 {target} 报到）："
ASK_VERIFY_REASON = "请回复核查不通过的理由（现场看到的情况）："
DONE_GRID_SIGNED = "已签收"
DONE_GRID_RESOLVED = "已办结"
DONE_WHISTLED = "已吹哨至 {target}"
DONE_VERIFIED = "核查通过"
DONE_VERIFY_FAILED = "核查不通过，已退回 {department}"
GRID_RESOLVED_OK = "已办结（{ref}），将通知反映人并回访。"
WHISTLED_OK = "已吹哨（{ref}），{target} 报到后会通知您。"
VERIFY_FAILED_OK = "已退回（{ref}），部门重新办结后会再请您核查。"

# ---------------------------------------------------------------- the department and the whistler

POST_WHISTLED = (
    "📣 网格吹哨 {ref}（{kind}），请报到（签收）\n吹哨：{who}（{level}）　理由：{reason}"
)
NOTICE_REPORTED = "🙋 {department} 已报到（签收）{ref}，距吹哨 {span}。"
NOTICE_VERIFY_FAILED_DEPT = "❌ {ref} 网格核查不通过，请重新办理。\n理由：{reason}"
LEVEL_NAMES = {
    "micro": "微网格",
    "grid": "网格",
    "community": "社区（村）",
    "street": "街道（镇）",
}

# ---------------------------------------------------------------- the reporter

NOTICE_TO_GRID = "🏘 {subject}（{ref}）已交 {grid} 就近办理。"

# ---------------------------------------------------------------- /whistle (雷锋哨 from the field)

ASK_FIELD_REPORT = (
    "📣 我要吹哨：请描述在网格里发现的问题（一条消息说清楚，如地点、情况）。\n发送 /cancel 取消。"
)
FIELD_REPORT_OK = "📣 已吹哨，编号 {ref}，交 {grid} 办理。"
FIELD_REPORT_NOT_GRID = "只有网格员和街镇工作人员可以用 /whistle 吹哨；居民请用 /report 反映问题。"
FIELD_REPORT_NO_GRID = "您的账号没有关联网格，请联系管理员在 config.toml 中设置 grid。"
FIELD_REPORT_TEXT_ONLY = "请用文字描述问题，或发送 /cancel 取消。"
FIELD_REPORT_CANCELLED = "已取消吹哨。"
MENU_WHISTLE = "我要吹哨"

# ---------------------------------------------------------------- 不满意 with the grid's 办结

POST_GRID_REOPENED = "🔁 重新办理 {ref}：反映人不满意，请重新签收办理\n反映人意见：{comment}"

# ---------------------------------------------------------------- /case timelines

CASE_WHISTLED = "至 {target}，理由：{reason}"
