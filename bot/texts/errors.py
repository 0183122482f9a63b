"""The words of every coded error (models.lifecycle.CaseError and its kinds).

models/ raises CaseError(code, **params); the bot shows it with error_text(exc), the one
place a code becomes a sentence. A parameter named `field` is itself a code (FIELD_NAMES),
one named `status` a case status (shown by its Chinese name).
"""

from __future__ import annotations

from models.lifecycle import STATUS_NAMES, CaseError

from .gridwork import FIELD_REPORT_NO_GRID, FIELD_REPORT_NOT_GRID
from .intake import (
    ALREADY_HANDLING,
    BUTTON_EXPIRED,
    BUTTON_INVALID,
    DUPLICATE_NOT_FOUND,
    NO_SUGGESTION,
    NOT_PERMITTED,
    NOT_STAFF,
    NOT_YOUR_DEPARTMENT,
)

__all__ = ["ERROR_TEXTS", "FIELD_NAMES", "error_text"]

# What each text field a person types is called (models.validation.clean_text's `field`).
FIELD_NAMES = {
    "case_text": "问题描述",
    "enterprise_name": "企业名称",
    "return_reason": "退回理由",
    "progress_note": "进展说明",
    "resolution": "办理结果",
    "extension_reason": "延期理由",
    "not_accepted_reason": "不予受理理由",
    "whistle_reason": "吹哨理由",
    "verify_reason": "核查不通过的理由",
    "policy_title": "政策标题",
    "policy_summary": "政策摘要",
    "hard_decision": "会议决定",
    "part_result": "办理结果",
    "override_reason": "理由",
}

ERROR_TEXTS = {
    # what people type
    "text_too_short": "{field}不能少于{min_len}个字",
    "text_too_long": "{field}不能超过{max_len}个字",
    "invalid_phone": "请输入有效的手机号码（11位）或固定电话（如 0731-88888888）",
    "credit_code_length": "统一社会信用代码应为18位，请核对后重新输入",
    "credit_code_characters": (
        "统一社会信用代码含有无效字符（第3–8位为数字，且不使用 I、O、Z、S、V），请核对"
    ),
    "credit_code_check": "统一社会信用代码校验位不正确，请核对后重新输入",
    "tag_too_long": "标签“{tag}…”太长（不超过{max_chars}个字）",
    "too_many_tags": "标签最多{max_tags}个",
    "bad_link": "链接应以 http:// 或 https:// 开头，且不超过500个字符",
    "unknown_priority": "紧急程度只能是“一般”或“紧急”",
    "unknown_rating": "请选择“满意”“基本满意”或“不满意”",
    "unknown_not_accepted_reason": "请选择不予受理的原因",
    "unknown_case_kind": "未知的诉求类型: {kind}",
    # people and reference data
    "unknown_role": "未知角色: {role}",
    "unknown_department": "部门 {department} 不存在",
    "department_inactive": "部门“{department}”不存在或已停用",
    "unknown_grid": "网格 {grid} 不存在",
    # Open311 API clients (whistle apikey)
    "callback_url_invalid": "回调地址应是 http(s):// 开头的网址（不超过 500 字符）: {url}",
    "client_name_length": "客户端名称应为 1 到 {max} 个字符",
    "client_channel_invalid": "渠道应是 {channels} 之一",
    "client_exists": "已有名为“{name}”的客户端",
    "grid_no_longer_configured": "该网格已不在配置中，请重新选择",
    "reporter_unknown": "未找到您的用户信息，请先发送 /start",
    "enterprise_not_registered": "您尚未登记企业信息",
    "enterprise_required": "请先登记企业信息（企业名称和统一社会信用代码）",
    "dashboard_staff_only": "只有在职工作人员可以登录指挥大屏。",
    # cases and their lifecycle
    "case_not_found": "未找到该案件",
    "not_permitted": "您没有权限对该案件执行此操作",
    "rate_reporter_only": "只有反映人本人可以评价该案件",
    "unknown_action": "未知操作: {action}",
    "illegal_in_status": "案件当前为“{status}”，不能执行该操作",
    "already_in_status": "案件已经是“{status}”状态",
    "already_sign": "该案件已被签收，无需重复签收",
    "already_dispatch": "该案件已派单",
    "already_resolve": "该案件已办结",
    "already_close": "该案件已结案",
    "already_merge": "该案件已被合并",
    "already_not_accept": "该案件已不予受理",
    "already_to_triage": "该案件已在待分拨队列中",
    "already_to_grid": "该案件已交网格办理",
    "already_grid_sign": "该案件已被签收，无需重复签收",
    "grid_unknown": "该案件还没有确定所在网格，请先点“修改网格”指定",
    "grid_no_staff": "该网格及其上级（直至街道）都没有配置网格工作人员，请派至部门办理",
    "street_no_staff": "所在街道（镇）没有配置工作人员，请直接向区直部门吹哨",
    "field_report_grid_only": FIELD_REPORT_NOT_GRID,
    "field_report_no_grid": FIELD_REPORT_NO_GRID,
    "whistle_already_street": "案件已在街道（镇）办理，请向区直部门吹哨",
    "stale_version": BUTTON_EXPIRED,
    "busy": "案件正在被他人处理，请稍后再试",
    "same_department": "案件已在该部门办理，无需重新分派",
    "merge_into_itself": "不能将案件合并到自身",
    "merge_target_closed": "{ref} 当前为“{status}”，只能合并到尚未办结的案件",
    "follow_closed": "案件 {ref} 已办结或已结束，无法关注；请继续提交您的反映",
    "not_a_follower": "您没有关注该案件，无法评价",
    "follower_already_rated": "您已评价过该案件，感谢您的反馈",
    "extension_not_open": "只有办理中的案件可以申请延期",
    "extension_not_later": "新的办结时限必须晚于当前时限",
    "extension_pending": "该案件已有待审批的延期申请",
    "extension_not_found": "未找到该延期申请",
    "extension_decided": "该延期申请已处理",
    # 攻坚哨
    "parts_open": "该案件为攻坚哨，尚有协同部门未办结：{departments}。请待各部门办结后再办结全案，或请领导决定。",
    "hard_needs_co": "请至少选择一个协同部门",
    "hard_lead_is_co": "牵头部门不能同时是协同部门",
    "already_hard": "该案件已列为攻坚哨",
    "part_not_found": "未找到该协同任务",
    "not_hard": "{ref} 不是攻坚哨，无需领导决定",
    "no_open_parts": "{ref} 的协同部门均已办结，无需领导决定",
    # raised by the bot's own checks before it calls the store
    "button_invalid": BUTTON_INVALID,
    "not_staff": NOT_STAFF,
    "no_permission": NOT_PERMITTED,
    "not_your_department": NOT_YOUR_DEPARTMENT,
    "no_suggestion": NO_SUGGESTION,
    "already_handling": ALREADY_HANDLING,
    "duplicate_not_found": DUPLICATE_NOT_FOUND,
}


def error_text(exc: CaseError) -> str:
    """The sentence a person is shown for a coded error."""
    params = dict(exc.params)
    if "field" in params:
        params["field"] = FIELD_NAMES.get(params["field"], params["field"])
    if "status" in params:
        params["status"] = STATUS_NAMES.get(params["status"], params["status"])
    return ERROR_TEXTS[exc.code].format(**params)
