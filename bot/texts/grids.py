"""Texts about grids (网格): where a case lies, 修改网格, and a reporter's 小区/村 (/home)."""

# ---------------------------------------------------------------- staff posts

# How the case's grid was found (Case.located_by), shown after the grid's name path.
LOCATED_BY_NAMES = {
    "gps": "按定位",
    "place": "按地名",
    "home": "按反映人居住地",
    "staff": "分拨员指定",
}
POST_GRID = "🏘 网格：{path}（{how}）"
POST_NO_GRID = "🏘 网格：未能确定，请点“修改网格”指定"
POST_OUT_OF_GRID = "⚠️ 定位不在任何网格范围内，请核实后指定网格"
# Where the case lies, on a department's post and in /case (no "how", no hint to change it).
POST_IN_GRID = "🏘 所在网格：{path}"
CASE_GRID = "所在网格：{path}"
BTN_SET_GRID = "🗺 修改网格"
BTN_GRID_HERE = "✅ 定为 {name}"
PICK_STREET = "请选择街道（镇）"
PICK_BELOW = "请选择 {name} 下的区域，或直接定为 {name}"
DONE_GRID = "网格改为 {path}"

# ---------------------------------------------------------------- the reporter's home (/home)

ASK_HOME = (
    "请告诉我您住在哪个小区或村（例如：森林海小区、银星村）。\n"
    "以后您反映问题时如果没有发送定位、也没写明地点，就交给您所在的网格。\n"
    "不想填写可以发送 /skip。"
)
HOME_SAVED = "已记下：您住在 {place}（{path}）。如需修改，随时发送 /home。"
HOME_NOT_FOUND = (
    "抱歉，没有找到“{text}”。请换个说法再试一次（如小区全名、村名或所在道路），或发送 /skip 跳过。"
)
HOME_TEXT_ONLY = "请直接输入小区或村的名称，或发送 /skip 跳过。"
HOME_SKIPPED = "好的，以后需要时可随时发送 /home 告诉我您的小区或村。"
HOME_UNAVAILABLE = "本区暂未配置网格信息，暂时无法登记小区或村，您的问题仍会正常受理。"
HOME_OFFER = (
    "这次没能确定问题发生在哪个网格，分拨员会人工核实。\n"
    "告诉我您住的小区或村，以后没有定位的问题也能直接交到所在网格："
)
BTN_HOME = "🏠 登记我的小区/村"

# ---------------------------------------------------------------- grid staff's /overdue and /stats

OVERDUE_GRID = "【{grid}】🔴 {red}　🟡 {yellow}"
OVERDUE_NO_GRID_NAME = "未知网格 {code}"
STATS_GRID_TOTAL = (
    "{path}：受理 {created} 件，派单 {dispatched} 件，办结 {done} 件\n"
    "办结率 {completion}　按时办结率 {on_time}　满意率 {satisfaction}\n"
    "当前在办 {open} 件：🔴 {red}　🟡 {yellow}\n"
    "小事不出网格率 {in_grid}　大事不出街镇率 {in_street}（始于网格并已办结 {grid_done} 件）"
)
STATS_GRID_BELOW = "下辖{level}（按红黄灯排序）："
STATS_GRID_ROW = (
    "{light} {name}：受理 {created}，在办 {open}（🔴 {red}），办结率 {completion}，"
    "按时 {on_time}，满意率 {satisfaction}，不出网格 {in_grid}，不出街镇 {in_street}"
)
STATS_GRID_GONE = (
    "您登记的网格（{code}）已不在本区网格配置中，暂时无法统计。请联系系统管理员重新登记您的网格。"
)
