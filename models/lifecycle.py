"""The case lifecycle: which action moves a case from which statuses to which status.

This table is the one place the rule lives; `models.store.transition()` enforces it.
"""

from __future__ import annotations

from models.tables import (
    CLOSED,
    DISPATCHED,
    MERGED,
    NOT_ACCEPTED,
    RESOLVED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
)


class CaseError(Exception):
    """A domain error with a message that can be shown to users (Simplified Chinese)."""


class CaseNotFound(CaseError):
    pass


class IllegalTransition(CaseError):
    pass


class AlreadyDone(IllegalTransition):
    """The move already happened (e.g. another staff member signed first): '已被签收'."""


class NotPermitted(CaseError):
    pass


class StaleVersion(IllegalTransition):
    """The case changed since the caller looked at it (e.g. an old button was pressed)."""


# action → (statuses it may start from, status it leads to; None = status unchanged)
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "to_triage": (frozenset({SUBMITTED}), TRIAGE),           # low confidence → 分拨
    "dispatch": (frozenset({SUBMITTED, TRIAGE}), DISPATCHED),  # 派单 (auto or confirmed)
    "redispatch": (frozenset({DISPATCHED, SIGNED}), DISPATCHED),  # triage 重新分派
    "sign": (frozenset({DISPATCHED}), SIGNED),               # 签收
    "return": (frozenset({DISPATCHED, SIGNED}), TRIAGE),     # 退回: wrong department
    "progress_note": (frozenset({DISPATCHED, SIGNED}), None),
    "extend": (frozenset({DISPATCHED, SIGNED}), None),       # 延期 approved
    "set_priority": (frozenset({SUBMITTED, TRIAGE, DISPATCHED, SIGNED}), None),
    "set_grid": (frozenset({SUBMITTED, TRIAGE, DISPATCHED, SIGNED}), None),  # 修改网格
    "resolve": (frozenset({SIGNED}), RESOLVED),              # 办结
    "rate": (frozenset({RESOLVED}), None),                   # 回访 answer (satisfied/basic)
    "reopen": (frozenset({RESOLVED, CLOSED}), DISPATCHED),   # 不满意 → back to department
    "close": (frozenset({RESOLVED}), CLOSED),
    "merge": (frozenset({SUBMITTED, TRIAGE, DISPATCHED, SIGNED}), MERGED),
    # 不予受理 by triage. Not once signed: the department owns the case then and 退回 it first.
    "not_accept": (frozenset({SUBMITTED, TRIAGE, DISPATCHED}), NOT_ACCEPTED),
}

STATUS_NAMES = {
    SUBMITTED: "已提交",
    TRIAGE: "待分拨",
    DISPATCHED: "已派单",
    SIGNED: "办理中",
    RESOLVED: "已办结",
    CLOSED: "已结案",
    MERGED: "已合并",
    NOT_ACCEPTED: "不予受理",
}

# Why triage may refuse a case (不予受理), with the name staff and the reporter see; a
# duplicate is not refused but merged into the earlier case (store.merge).
NOT_ACCEPTED_REMIT, NOT_ACCEPTED_NONGOV, NOT_ACCEPTED_OTHER = "remit", "nongov", "other"
NOT_ACCEPTED_REASONS = {
    NOT_ACCEPTED_REMIT: "不属于本区职责",
    NOT_ACCEPTED_NONGOV: "非政府职能事项",
    NOT_ACCEPTED_OTHER: "其他",
}


# The CaseEvent.action each transition writes (the audit trail speaks in past tense).
EVENT_OF_ACTION = {
    "to_triage": "to_triage",
    "dispatch": "dispatched",
    "redispatch": "dispatched",
    "sign": "signed",
    "return": "returned",
    "progress_note": "progress_note",
    "extend": "extended",
    "set_priority": "priority_changed",
    "set_grid": "grid_changed",
    "resolve": "resolved",
    "rate": "rated",
    "reopen": "reopened",
    "close": "closed",
    "merge": "merged",
    "not_accept": "not_accepted",
}

# Chinese names of every CaseEvent.action, for timelines shown to people.
EVENT_NAMES = {
    "created": "提交诉求",
    "classified": "智能分类",
    "to_triage": "转人工分拨",
    "confirmed": "分拨确认",
    "relabelled": "改派部门",
    "dispatched": "派单",
    "signed": "签收",
    "returned": "退回",
    "progress_note": "办理进展",
    "extension_requested": "申请延期",
    "extension_rejected": "延期未获批准",
    "extended": "延期",
    "priority_changed": "调整紧急程度",
    "grid_changed": "修改网格",
    "resolved": "办结",
    "rated": "评价",
    "reopened": "重新办理",
    "closed": "结案",
    "merged": "合并",
    "not_accepted": "不予受理",
    "escalated": "督办",
}

# What a user is told when the move they asked for has already happened.
ALREADY_DONE_MESSAGES = {
    "sign": "该案件已被签收，无需重复签收",
    "dispatch": "该案件已派单",
    "resolve": "该案件已办结",
    "close": "该案件已结案",
    "merge": "该案件已被合并",
    "not_accept": "该案件已不予受理",
    "to_triage": "该案件已在待分拨队列中",
}


def target_status(action: str, current: str) -> str:
    """The status `action` leads to from `current`, or raise IllegalTransition."""
    if action not in TRANSITIONS:
        raise IllegalTransition(f"未知操作: {action}")
    allowed_from, to = TRANSITIONS[action]
    if current not in allowed_from:
        if to is not None and current == to:
            raise AlreadyDone(
                ALREADY_DONE_MESSAGES.get(action)
                or f"案件已经是“{STATUS_NAMES.get(current, current)}”状态"
            )
        raise IllegalTransition(
            f"案件当前为“{STATUS_NAMES.get(current, current)}”，不能执行该操作"
        )
    return to or current
