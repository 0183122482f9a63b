"""Every text the intake side of the bot shows (Simplified Chinese, short and friendly).

Handlers never hold user-visible strings of their own: they pick a constant or call one of the
small formatting functions below.
"""

from __future__ import annotations

from models.lifecycle import KIND_NAMES  # noqa: F401 (shown as texts.KIND_NAMES)

# ---------------------------------------------------------------- menu & greetings
MENU_REPORT = "我要反映"
MENU_MY = "我的反映"
MENU_ENTERPRISE = "企业吹哨"
MENU_HELP = "使用帮助"

WELCOME = (
    "您好！这里是{district}“吹哨报到”随手拍 👋\n"
    "发现身边的问题（道路、供水、噪声、物业……），拍张照、说一句，我们马上派给负责的部门。\n\n"
    "• 点「我要反映」或发送 /report 开始\n"
    "• 「我的反映」查看办理进度（/my）\n"
    "• 企业遇到难题，点「企业吹哨」（/enterprise）"
)
WELCOME_DRAFT_PENDING = "您有一份尚未提交的反映，可继续填写，或发送 /cancel 放弃。"
WELCOME_STAFF = (
    "您好，{name}（{role}）。案件会推送到所在工作群（网格员、街镇推送到私聊），点按钮即可处理。"
)
HELP = (
    "可用命令：\n"
    "/report 反映问题\n"
    "/my 我的反映及进度\n"
    "/case 编号 查看某件的办理过程（如 /case WC-20261124-0007）\n"
    "/enterprise 企业注册 / 企业诉求\n"
    "/subscribe、/unsubscribe 企业订阅或退订惠企政策\n"
    "/cancel 取消当前操作"
)
STAFF_HELP = (
    "工作人员命令：\n"
    "/case 编号 查看案件过程\n"
    "/overdue 红黄灯案件；/stats [今天|本周|上周|本月|上个月|今年|2026-11] 办结率、按时率、满意率\n"
    "/policy 发布惠企政策；/dashboard 获取指挥大屏登录码\n"
    "/gongjian 编号 列为攻坚哨（分拨员、领导）；/override 编号 理由 不再等待未办结的协同部门（领导）\n"
    "网格员、街镇：/whistle 我要吹哨（从网格上报问题，直接交网格办理）\n"
    "管理员：/reload_model 重新加载分类模型；/staff_add ID 角色 [部门或网格] 添加工作人员"
)
ROLE_NAMES = {
    "triage": "分拨员",
    "department": "部门工作人员",
    "grid": "网格员",
    "street": "街镇工作人员",
    "leader": "督办领导",
    "admin": "管理员",
}

# ---------------------------------------------------------------- report conversation
ASK_DESCRIPTION = "请用文字描述您遇到的问题（时间、地点、具体情况），我们会尽快转给负责的部门。"
ASK_DEMAND = "请描述企业遇到的问题或诉求，我们会协调相关部门办理。"
ASK_PHOTO = "收到 👍 有照片的话请发送（可选，可以一次选多张），没有请发送 /skip 跳过。"
PHOTO_ADDED = "已收到第 {count} 张照片 📷 还有可以继续发；发完请发送位置或地址，或 /skip 跳过。"
PHOTO_LIMIT = "照片最多 {max} 张，多出的没有保存。请发送位置或地址，或 /skip 跳过。"
ASK_LOCATION = (
    "请发送问题所在位置：点 📎 →「位置」发送定位，或直接输入地址（如：高塘岭街道新城社区3栋）。"
    "不方便的话发送 /skip 跳过。"
)
DESCRIPTION_TOO_SHORT = "描述有点短，请再具体说一说（至少 {min} 个字）。"
DESCRIPTION_TOO_LONG = "内容太长了（{length} 字），请精简到 {max} 字以内再发送。"
PHOTO_NEEDS_TEXT = "照片已收到 📷 请再用文字描述一下问题。"
ADDRESS_TOO_LONG = "地址太长了，请控制在 {max} 字以内。"
OUT_OF_AREA = "⚠️ 这个位置不在{district}范围内，我们仍会记录，工作人员会与您核实。"
ONLY_TEXT_HERE = "这里需要文字描述哦，请直接输入问题情况。"
ONLY_PHOTO_HERE = "请发送一张照片，或发送 /skip 跳过。"
PHOTO_AS_FILE = "请以「照片」形式发送（不要选择“以文件发送”），或发送 /skip 跳过。"
ONLY_LOCATION_HERE = "请发送定位或输入地址，或发送 /skip 跳过。"
PRESS_A_BUTTON = "请点击上方按钮：确认提交、修改或取消。"
UNSUPPORTED_CONTENT = "抱歉，暂时只能处理文字、照片和位置（语音、贴纸、文件无法识别）。"
UNKNOWN_COMMAND = "没有这个命令。发送 /help 查看可用命令。"

SUMMARY_TITLE = "请确认您的反映："
SUMMARY_TITLE_ENTERPRISE = "请确认企业诉求（{enterprise}）："
SUMMARY_TEXT = "📝 内容：{text}"
SUMMARY_PHOTO = "📷 照片：已附 {count} 张"
SUMMARY_NO_PHOTO = "📷 照片：无"
SUMMARY_ADDRESS = "📍 位置：{address}"
SUMMARY_COORDS = "📍 位置：已发送定位（{lat:.5f}, {lon:.5f}）"
SUMMARY_NO_LOCATION = "📍 位置：未提供"
SUMMARY_SUGGESTED = "🏛 初步判断由 {department} 处理"
SUMMARY_UNSURE = "🏛 将由分拨中心确定承办部门"

BTN_SUBMIT = "✅ 确认提交"
BTN_EDIT = "✏️ 修改"
BTN_CANCEL = "❌ 取消"
BTN_EDIT_TEXT = "修改描述"
BTN_EDIT_PHOTO = "重新上传照片"
BTN_EDIT_LOCATION = "修改位置"
BTN_BACK = "↩️ 返回"
ASK_WHAT_TO_EDIT = "要修改哪一项？"

SUBMITTED = "已受理，编号 {ref}，我们会及时反馈办理进度。\n随时发送 /case {ref} 查看进展。"
SUBMITTED_ENTERPRISE = (
    "企业诉求已受理，编号 {ref}，我们会及时反馈办理进度。\n"
    "发送 /enterprise 可随时查看企业诉求的进度。"
)
ALREADY_SUBMITTED = {
    "resident": "这份反映已经提交过了，编号 {ref}。",
    "enterprise": "这份企业诉求已经提交过了，编号 {ref}。",
}
# The command that starts a report again, by kind of report.
RESTART_COMMAND = {"resident": "/report", "enterprise": "/demand"}
CANCELLED = "已取消。需要时随时发送 {command}。"
NOTHING_TO_CANCEL = "当前没有进行中的操作。"
CONVERSATION_ENDED = "本次填写已结束。需要时请重新发送 /report。"
TIMED_OUT = "超过 {minutes} 分钟没有操作，本次填写已自动结束。需要时请重新发送 {command}。"
BUTTON_EXPIRED = "该按钮已过期，请以最新消息为准"
BUTTON_INVALID = "无法识别的操作，请以最新消息为准"

OFFER_REPORT = "要把这条消息作为问题反映提交吗？"
BTN_OFFER_YES = "📮 是，开始反映"
BTN_OFFER_NO = "不用了"
OFFER_DECLINED = "好的。需要时随时发送 /report。"
GREETING_HINT = "您好！要反映问题请发送 /report 或点「我要反映」，查看进度请发送 /my。"
START_REPORT_HINT = "要反映问题请发送 /report。"
LOCATION_WITHOUT_REPORT = "收到位置 📍 要反映问题请先发送 /report，描述问题后再发送位置。"

EDITED_DRAFT_UPDATED = "已按您修改后的内容更新描述 ✏️"
EDITED_IGNORED = "已收到您修改的消息。已提交的反映不会随之改变，如需补充请发送 /report 重新反映。"

# ---------------------------------------------------------------- enterprise
ASK_ENTERPRISE_NAME = "欢迎使用企业吹哨！首次使用需登记企业信息。\n请输入企业全称："
ASK_CREDIT_CODE = "请输入 18 位统一社会信用代码（营业执照上可以找到）："
ENTERPRISE_NAME_INVALID = "企业名称应为 2～100 个字，请重新输入。"
# Staff tag 惠企政策 with words of an industry or park; a tag reaches an enterprise whose
# industry or park contains it (models.policy.policy_matches), so each choice below holds the
# words a tag is likely to use (软件, 制造, 物流, 餐饮 …).
ASK_INDUSTRY = (
    "请选择企业所属行业（点下方按钮，或直接输入，如“新能源汽车零部件制造”）。\n"
    "惠企政策会按行业和园区推送给您。"
)
INDUSTRY_CHOICES = (
    "制造业",
    "软件和信息技术服务业",
    "批发和零售业",
    "交通运输、仓储和物流业",
    "建筑业",
    "住宿和餐饮业",
    "农业（农林牧渔）",
    "科技研发和技术服务业",
    "文化和旅游业",
    "商务服务业",
)
INDUSTRY_INVALID = "行业名称应为 2～{max} 个字，请点下方按钮选择或重新输入。"
ASK_PARK = (
    "企业位于哪个园区？点下方按钮选择或直接输入园区名称；不在园区请点「不在园区」或发送 /skip。"
)
PARK_CHOICES = ("望城经开区", "铜官循环经济工业基地")
BTN_NO_PARK = "不在园区"
PARK_INVALID = "园区名称应为 2～{max} 个字，请重新输入，或发送 /skip 跳过。"
ENTERPRISE_REGISTERED = "✅ 企业登记成功：{name}\n行业：{industry}　园区：{park}"
ENTERPRISE_HOME = "🏢 {name}\n统一社会信用代码：{code}\n行业：{industry}　园区：{park}"
NOT_GIVEN = "未填写"
ENTERPRISE_NO_CASES = "还没有提交过企业诉求。"
ENTERPRISE_CASES_TITLE = "企业诉求进度："
BTN_NEW_DEMAND = "📮 提交新诉求"

# ---------------------------------------------------------------- my cases / timeline
MY_EMPTY = "您还没有反映过问题。发送 /report 开始第一件吧。"
MY_EMPTY_ENTERPRISE = "还没有提交过企业诉求。发送 /demand 提交第一件吧。"
MY_TITLE_RESIDENT = "您最近的反映："
MY_TITLE_ENTERPRISE = "企业诉求："
MY_LINE = "{light} {ref}  {status}\n    {snippet}"
MY_FOOTER = "发送 /case 编号 查看办理过程。"
CASE_USAGE = "请在命令后加上编号，例如：/case WC-20261124-0007"
CASE_NOT_FOUND = "没有找到编号为 {ref} 的反映或企业诉求，或您无权查看。"
CASE_HEADER = "{ref}（{kind}）\n状态：{status} {light}\n内容：{text}"
CASE_DEPARTMENT = "承办部门：{department}"
CASE_DEADLINE = "办结时限：{deadline}"
CASE_TIMELINE = "办理过程："
CASE_EVENT = "  {at}  {name}"
CASE_EVENT_DETAIL = "  {at}  {name}：{detail}"
CASE_COMMENT = "意见：{comment}"
CASE_REASON = "理由：{reason}"
CASE_NEW_DATE = "新的办结时限 {date}"
CASE_MERGED_INTO = "并入 {ref} 一并办理"
CASE_PHOTO_REPORTED = "📷 反映时的照片"
CASE_PHOTO_RESOLVED = "✅ 办结照片"
NO_LIGHT = "⚪"


# ---------------------------------------------------------------- reporter notices (pushes)
# How the reporter's case is named to them: residents report problems, enterprises file
# demands (企业诉求).
SUBJECT = {"resident": "您反映的问题", "enterprise": "您的企业诉求"}
NOTICE_DISPATCHED = "📮 {subject}（{ref}）已派至 {department} 办理。"
NOTICE_SIGNED = "👷 {department} 已签收{subject}（{ref}），正在办理。"
NOTICE_RESOLVED = "✅ {subject}（{ref}）已办结。\n办理结果：{result}"

# ---------------------------------------------------------------- staff: group posts
POST_NEW = "🆕 新{kind} {ref}"
POST_RETURNED = "🔁 {department} 退回 {ref}\n退回理由：{reason}"
POST_TEXT = "📝 {text}"
POST_ADDRESS = "📍 {address}"
# Telegram sends WGS-84; without coordinate=wgs84 Amap would read it as GCJ-02 (~500 m off).
POST_COORDS = (
    "📍 {lat:.5f}, {lon:.5f}  "
    "https://uri.amap.com/marker?position={lon:.6f},{lat:.6f}&coordinate=wgs84"
    "（私聊机器人发送 /case {ref} 查看地图定位）"
)
POST_OUT_OF_AREA = "⚠️ 定位不在辖区范围内，请核实"
POST_OUT_OF_AREA_WAITING = (
    "↪️ 因定位在辖区外未自动派单；属外区事项请点「不予受理」→「不属于本区职责」"
)
POST_PHOTO_COUNT = "📷 照片 {count} 张（私聊机器人发送 /case {ref} 查看全部）"
POST_SUGGESTED = "🤖 建议：{department}（{prob:.0%}）"
POST_TOP = "候选：{items}"
POST_UNSURE = "❓ 分类器无法确定，请人工分拨"
POST_AUTO = "⚡ 已自动派至 {department}，如有误请重新分派"
POST_URGENT = "🚨 紧急"
POST_ENTERPRISE = "🏢 {name}"
POST_STATUS = "状态：{status}"
POST_DEPARTMENT = "承办：{department}"
POST_DEADLINES = "签收时限：{sign_by}　办结时限：{resolve_by}"
POST_DISPATCHED_TO_YOU = "📥 派单 {ref}（{kind}）"
POST_FOOTER_ACTION = "—— {action}（{who}，{at}）"

BTN_CONFIRM = "✅ 确认派至 {department}"
BTN_PICK = "🔀 改派其他部门"
BTN_REDISPATCH = "🔀 重新分派"
BTN_URGENT = "🚨 标记紧急"
BTN_SIGN = "✍️ 签收"
BTN_RETURN = "↩️ 退回"
BTN_RESOLVE = "✅ 办结"
BTN_EXTEND = "⏳ 申请延期"
BTN_APPROVE = "同意延期"
BTN_REJECT = "不同意"

# short footers appended to an edited group post after an action
DONE_DISPATCHED = "已派至 {department}"
DONE_URGENT = "已标记为紧急"
DONE_SIGNED = "已签收"
DONE_RETURNED = "已退回分拨中心"
DONE_RESOLVED = "已办结"
DONE_EXT_REQUESTED = "已申请延期至 {date}"
DONE_EXT_APPROVED = "同意延期至 {date}"
DONE_EXT_REJECTED = "不同意延期"

# ---------------------------------------------------------------- staff: refusals & prompts
NOT_STAFF = "抱歉，只有工作人员可以进行此操作。"
NOT_PERMITTED = "抱歉，您没有处理该案件的权限。"
NOT_YOUR_DEPARTMENT = "该案件不属于您的部门，无法操作。"
ACTION_DONE = "操作成功"
ASK_RETURN_REASON = "请回复退回理由（例如：不属于本部门职责，建议转某某部门）："
ASK_RESOLUTION = "请回复办结情况（简要说明如何处理的）："
ASK_RESOLUTION_PHOTO = "可以发一张办结照片，或发送 /skip 跳过。"
ASK_EXTENSION_REASON = "请回复申请延期的理由："
ASK_EXTENSION_DATE = "请回复新的办结日期（当前时限 {deadline}），格式如 {example} 或 {short}："
EXTENSION_DATE_INVALID = "日期格式不对或不在今天之后，请按 {example} 这样的格式重新输入。"
REASON_TOO_SHORT = "请再具体写几个字（至少 {min} 个字）。"
REASON_TOO_LONG = "内容太长了，请控制在 {max} 字以内。"
STAFF_ACTION_CANCELLED = "已取消本次操作。"
STAFF_TIMED_OUT = "超过 {minutes} 分钟没有回复，本次操作已取消，需要时请重新点按钮。"
NO_SUGGESTION = "该案件没有系统建议的部门，请点「改派其他部门」选择。"
RETURNED_OK = "已退回分拨中心（{ref}）。"
RESOLVED_OK = "已办结（{ref}），将通知反映人。"
EXTENSION_REQUESTED_OK = "延期申请已提交（{ref}），等待分拨中心审批。"
POST_EXTENSION_REQUEST = "⏳ {department} 申请延期 {ref}\n理由：{reason}\n新的办结日期：{date}"
NOTICE_EXT_APPROVED_DEPT = "⏳ {ref} 延期申请已同意，新的办结时限：{resolve_by}"
NOTICE_EXT_REJECTED_DEPT = "⏳ {ref} 延期申请未获同意，请按原时限办结：{resolve_by}"
NOTICE_MOVED_AWAY = "🔀 {ref} 已改派至 {department}，本部门无需再办理。"
NOTICE_URGENT_DEPT = "🚨 {ref} 已被标记为紧急。签收时限：{sign_by}　办结时限：{resolve_by}"
PICK_DEPARTMENT = "请选择承办部门（🤖 系统建议，📌 当前承办）"

# ---------------------------------------------------------------- triage: choosing and refusing
PICKER_SUGGESTED = "🤖 {name}"
PICKER_CURRENT = "📌 {name}"
BTN_CONFIRM_MOVE = "✅ 确认改派至 {department}"
ASK_CONFIRM_DISPATCH = "确认派至 {department}？"
ASK_CONFIRM_MOVE = "确认改派至 {department}？"
ALREADY_HANDLING = "该案件已由 {department} 承办，无需改派。"

BTN_NOT_ACCEPT = "🚫 不予受理"
BTN_REASON_DUPLICATE = "重复反映"
BTN_REASON_OTHER = "其他（填写理由）"
PICK_NOT_ACCEPT_REASON = "请选择不予受理的原因（将告知反映人）"
ASK_NOT_ACCEPT_REASON = "请回复不予受理的理由（将告知反映人），或发送 /cancel 取消："
ASK_DUPLICATE_REF = "请回复与之重复的原案件编号（如 WC-20261124-0007），或发送 /cancel 取消："
DUPLICATE_NOT_FOUND = "没有找到编号为 {ref} 的案件，请核对后重新输入，或发送 /cancel 取消。"
DUPLICATE_SELF = "不能合并到本案件自身，请输入原案件的编号，或发送 /cancel 取消。"
DONE_NOT_ACCEPTED = "不予受理：{reason}"
DONE_MERGED = "重复反映，已合并至 {into}"
NOT_ACCEPTED_OK = "已不予受理（{ref}），将告知反映人。"
MERGED_OK = "已将 {ref} 合并至 {into}，将告知反映人。"
NOTICE_NOT_ACCEPTED_DEPT = "🚫 {ref} 经分拨中心核实不予受理，本部门无需再办理。"
NOTICE_MERGED_DEPT = "🔀 {ref} 为重复反映，已合并至 {into}，本部门无需再办理。"
# To the reporter: the reason, and where to turn instead (keys: lifecycle.NOT_ACCEPTED_REASONS).
NOTICE_NOT_ACCEPTED = (
    "📋 关于您提交的 {ref}：经核实，不予受理。\n原因：{reason}\n{advice}\n"
    "如情况有变化，可发送 /report 重新反映。"
)
NOT_ACCEPTED_ADVICE = {
    "remit": "该事项不在{district}的职责范围内，建议向有管辖权的单位反映，"
    "或拨打 12345 政务服务便民热线咨询。",
    "nongov": "该事项不属于政府职能（如民事纠纷、商业经营行为），建议通过协商、人民调解或法律途径"
    "解决，可拨打 12348 公共法律服务热线咨询。",
    "other": "如有疑问，可拨打 12345 政务服务便民热线咨询。",
}
NOTICE_MERGED = (
    "📋 关于您提交的 {ref}：与已受理的 {into} 为同一问题，已合并办理，办理进展以 {into} 为准。\n"
    "如有新的情况，可发送 /report 补充反映。"
)

# ---------------------------------------------------------------- admin
ADMIN_ONLY = "抱歉，只有管理员可以使用该命令。"
MODEL_RELOADED = "已加载新模型：{version}"
MODEL_UNCHANGED = "模型没有变化，当前版本：{version}"
STAFF_ADD_USAGE = (
    "用法：/staff_add 用户ID 角色 [部门编码或网格编码] [姓名]\n"
    "角色：triage 分拨员、department 部门（需部门编码）、grid 网格员（需网格编码）、"
    "leader 督办领导、admin 管理员\n"
    "例：/staff_add 123456 department water 王小明"
)
STAFF_ADDED = "已添加工作人员 {telegram_id}{name}（{role}{where}）。"

# ---------------------------------------------------------------- errors
SORRY_ERROR = "抱歉，系统开了个小差，请稍后再试。您填写的内容已保存。"
# The store could not be reached before anything was done (e.g. the database restarting):
# this message or button press had no effect, so it must be sent or pressed again.
STORE_UNAVAILABLE = "抱歉，系统暂时繁忙，刚才的操作没有完成，请稍后再试一次。之前填写的内容已保存。"


def summary(
    *,
    text: str,
    photo_count: int,
    address: str | None,
    latitude: float | None,
    longitude: float | None,
    out_of_area: bool,
    department: str | None,
    district: str,
    enterprise: str | None = None,
) -> str:
    """The draft summary shown before 确认提交."""
    title = SUMMARY_TITLE_ENTERPRISE.format(enterprise=enterprise) if enterprise else SUMMARY_TITLE
    lines = [title, SUMMARY_TEXT.format(text=text)]
    lines.append(SUMMARY_PHOTO.format(count=photo_count) if photo_count else SUMMARY_NO_PHOTO)
    if address:
        lines.append(SUMMARY_ADDRESS.format(address=address))
    elif latitude is not None and longitude is not None:
        lines.append(SUMMARY_COORDS.format(lat=latitude, lon=longitude))
    else:
        lines.append(SUMMARY_NO_LOCATION)
    if out_of_area:
        lines.append(OUT_OF_AREA.format(district=district))
    lines.append(SUMMARY_SUGGESTED.format(department=department) if department else SUMMARY_UNSURE)
    return "\n".join(lines)


def subject(kind: str) -> str:
    """How a case is named to its reporter: 您反映的问题, or 您的企业诉求 for an enterprise."""
    return SUBJECT.get(kind, SUBJECT["resident"])


def snippet(text: str, limit: int = 30) -> str:
    """The first `limit` characters of a text on one line, with … when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
