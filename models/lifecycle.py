"""The case lifecycle: which action moves a case from which statuses to which status.

The table TRANSITIONS is the one place the rule lives: each move names the statuses it starts
from, the status it leads to, the event it writes and its effects (deadlines started, stopped
or cleared, reminders forgotten, reporter told). `models.cases.transition()` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, null
from sqlalchemy import case as sql_case
from sqlmodel import col

from models.tables import (
    CLOSED,
    DISPATCHED,
    ENTERPRISE,
    GRID_ASSIGNED,
    GRID_SIGNED,
    MERGED,
    NOT_ACCEPTED,
    RESIDENT,
    RESOLVED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
    VERIFYING,
    Case,
)

# A 攻坚哨 part's own status: a leader decided the case need not wait for it (a reason given).
WAIVED = "waived"


class CaseError(Exception):
    """A domain error: a code and its parameters, never words (bot/texts/errors.py words
    every code; models/ stays free of user-visible text).

    e.g. CaseError("department_inactive", department="water").
    """

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code, params)
        self.code, self.params = code, params

    def __str__(self) -> str:
        return f"{self.code} {self.params}" if self.params else self.code


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


# Effects a transition has besides its status and version: the store applies each one
# (models.cases._EFFECTS) in the order the transition lists them.
START_DEADLINES = "start_deadlines"  # dispatched_at = now; sign_by/resolve_by counted from now
RECOUNT_DEADLINES = "recount_deadlines"  # a dispatched case's deadlines recounted from dispatch
CLEAR_DEADLINES = "clear_deadlines"  # no department, no dispatch time, no deadlines
FRESH_ALERTS = "fresh_alerts"  # reminders sent for the old deadline are forgotten
STAMP_SIGNED = "stamp_signed"  # signed_at = now
STAMP_RESOLVED = "stamp_resolved"  # resolved_at = now
STAMP_CLOSED = "stamp_closed"  # closed_at = now
RESET_OUTCOME = "reset_outcome"  # resolved/closed times, level and the 回访 forgotten
COUNT_REOPEN = "count_reopen"  # reopen_count + 1
# 吹哨报到 in the grid ([routing] limits): the grid's sign/resolve deadlines, the whistle's
# stamp, the 核查 deadline.
START_GRID_DEADLINES = "start_grid_deadlines"  # dispatched_at = now; grid sign_by/resolve_by
STAMP_WHISTLED = "stamp_whistled"  # whistled_at = now (whistled_by/level: the caller's)
START_VERIFY = "start_verify"  # verify_by counted from now
EFFECTS = (
    START_DEADLINES,
    RECOUNT_DEADLINES,
    CLEAR_DEADLINES,
    FRESH_ALERTS,
    STAMP_SIGNED,
    STAMP_RESOLVED,
    STAMP_CLOSED,
    RESET_OUTCOME,
    COUNT_REOPEN,
    START_GRID_DEADLINES,
    STAMP_WHISTLED,
    START_VERIFY,
)


# Guards: a move that its status allows may still wait for something else.
PARTS_DONE = "parts_done"  # 攻坚哨: every co-department's part resolved (or waived by a leader)


@dataclass(frozen=True)
class Transition:
    """One move of the lifecycle.

    `to` None leaves the status unchanged; `event` is the CaseEvent.action it writes (the audit
    trail speaks in past tense); `notifies_reporter`: the reporter hears about it.
    """

    action: str
    from_statuses: frozenset[str]
    to: str | None
    event: str
    effects: tuple[str, ...] = ()
    notifies_reporter: bool = False
    guards: tuple[str, ...] = ()  # conditions beyond the status (models.cases._GUARDS)


_OPEN = frozenset({SUBMITTED, TRIAGE, DISPATCHED, SIGNED, GRID_ASSIGNED, GRID_SIGNED, VERIFYING})
_HANDLED = frozenset({DISPATCHED, SIGNED})  # a department has the case
_IN_GRID = frozenset({GRID_ASSIGNED, GRID_SIGNED})  # a grid's (or the street's) staff have it

TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        # low confidence → 分拨
        Transition("to_triage", frozenset({SUBMITTED}), TRIAGE, "to_triage"),
        # 派单 (auto or confirmed); 重新分派 by triage
        Transition(
            "dispatch",
            frozenset({SUBMITTED, TRIAGE}),
            DISPATCHED,
            "dispatched",
            (START_DEADLINES, FRESH_ALERTS),
            notifies_reporter=True,
        ),
        Transition(
            "redispatch",
            _HANDLED,
            DISPATCHED,
            "dispatched",
            (START_DEADLINES, FRESH_ALERTS),
            notifies_reporter=True,
        ),
        # 签收: the running deadline becomes resolve_by, its reminders start afresh
        Transition(
            "sign",
            frozenset({DISPATCHED}),
            SIGNED,
            "signed",
            (STAMP_SIGNED, FRESH_ALERTS),
            notifies_reporter=True,
        ),
        # 退回: wrong department
        Transition("return", _HANDLED, TRIAGE, "returned", (CLEAR_DEADLINES, FRESH_ALERTS)),
        Transition("progress_note", _HANDLED, None, "progress_note"),
        # 延期 approved: resolve_by is the change the caller passes
        Transition("extend", _HANDLED, None, "extended", (FRESH_ALERTS,), notifies_reporter=True),
        Transition("set_priority", _OPEN, None, "priority_changed", (RECOUNT_DEADLINES,)),
        # 修改网格: triage places the case in another grid (models/locating.py)
        Transition("set_grid", _OPEN, None, "grid_changed"),
        # 办结 (of a 攻坚哨: by the lead department once every part is done)
        Transition(
            "resolve",
            frozenset({SIGNED}),
            RESOLVED,
            "resolved",
            (STAMP_RESOLVED,),
            notifies_reporter=True,
            guards=(PARTS_DONE,),
        ),
        # 攻坚哨: the case is shared out to co-departments (models.parts); the lead keeps it
        Transition("mark_hard", _HANDLED, None, "marked_hard", notifies_reporter=True),
        # 回访 answer (satisfied/basic)
        Transition("rate", frozenset({RESOLVED}), None, "rated"),
        # 不满意 → back to the department, with new deadlines
        Transition(
            "reopen",
            frozenset({RESOLVED, CLOSED}),
            DISPATCHED,
            "reopened",
            (START_DEADLINES, RESET_OUTCOME, COUNT_REOPEN, FRESH_ALERTS),
            notifies_reporter=True,
        ),
        Transition("close", frozenset({RESOLVED}), CLOSED, "closed", (STAMP_CLOSED,)),
        # 吹哨报到. 交网格办理 (triage, or [routing] grid_first at intake; a 雷锋哨 from the field
        # starts here too): the deepest grid with staff has it, on the grid's own limits.
        # (a case dispatched but not yet signed too: triage may take it back to the grid)
        Transition(
            "to_grid",
            frozenset({SUBMITTED, TRIAGE, DISPATCHED}),
            GRID_ASSIGNED,
            "to_grid",
            (START_GRID_DEADLINES, FRESH_ALERTS),
            notifies_reporter=True,
        ),
        Transition(
            "grid_sign",
            frozenset({GRID_ASSIGNED}),
            GRID_SIGNED,
            "grid_signed",
            (STAMP_SIGNED, FRESH_ALERTS),
        ),
        # 小事不出网格 (or 大事不出街镇): resolved where it is; the 回访 follows as for a department.
        Transition(
            "grid_resolve",
            _IN_GRID,
            RESOLVED,
            "resolved",
            (STAMP_RESOLVED,),
            notifies_reporter=True,
        ),
        # 吹哨: up to the street's staff, or straight to a district department, whose 签收 is
        # its 报到 (timed against its sign limit from the whistle).
        Transition(
            "whistle_street",
            _IN_GRID,
            GRID_ASSIGNED,
            "whistled",
            (STAMP_WHISTLED, START_GRID_DEADLINES, FRESH_ALERTS),
        ),
        Transition(
            "whistle_department",
            _IN_GRID,
            DISPATCHED,
            "whistled",
            (STAMP_WHISTLED, START_DEADLINES, FRESH_ALERTS),
        ),
        # 核查: a department's 办结 of a case in a grid waits for the grid's staff to check it on
        # site ([[departments]] verify_by_grid); passed → resolved (the 回访), failed → back to
        # the department, still signed, its resolve deadline running on.
        # resolved_at is the department's 办结 (its handling time; the 核查 light starts there).
        Transition(
            "to_verify",
            frozenset({SIGNED}),
            VERIFYING,
            "to_verify",
            (STAMP_RESOLVED, START_VERIFY, FRESH_ALERTS),
        ),
        Transition(
            "verify_pass", frozenset({VERIFYING}), RESOLVED, "verified", notifies_reporter=True
        ),
        Transition(
            "verify_fail",
            frozenset({VERIFYING}),
            SIGNED,
            "verify_failed",
            (RESET_OUTCOME, FRESH_ALERTS),
        ),
        # 不满意 with a case the grid (or street) resolved: back to that grid's staff
        Transition(
            "reopen_grid",
            frozenset({RESOLVED, CLOSED}),
            GRID_ASSIGNED,
            "reopened",
            (START_GRID_DEADLINES, RESET_OUTCOME, COUNT_REOPEN, FRESH_ALERTS),
            notifies_reporter=True,
        ),
        Transition("merge", _OPEN, MERGED, "merged"),
        # 不予受理 by triage. Not once signed: the department owns the case then and 退回 it
        # first. Nobody handles it any more: no department, no deadlines, no reminders.
        Transition(
            "not_accept",
            frozenset({SUBMITTED, TRIAGE, DISPATCHED, GRID_ASSIGNED}),
            NOT_ACCEPTED,
            "not_accepted",
            (CLEAR_DEADLINES, STAMP_CLOSED, FRESH_ALERTS),
        ),
    )
}

# 攻坚哨: a co-department's part (models.tables.CasePart) has a lifecycle of its own, with
# the case's statuses so that RUNNING_DEADLINE, running_deadline() and the traffic-light rule
# serve parts unchanged. Its events go into the case's trail without bumping Case.version.
PART_TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition(
            "sign", frozenset({DISPATCHED}), SIGNED, "part_signed", (STAMP_SIGNED, FRESH_ALERTS)
        ),
        Transition("resolve", frozenset({SIGNED}), RESOLVED, "part_resolved", (STAMP_RESOLVED,)),
        Transition(
            "waive", frozenset({DISPATCHED, SIGNED}), WAIVED, "part_waived", (FRESH_ALERTS,)
        ),
    )
}
PART_DONE_STATUSES = frozenset({RESOLVED, WAIVED})

# Every CaseEvent.action a transition writes (each one is a bump of Case.version), and those
# the reporter is told about.
TRANSITION_EVENTS = frozenset(t.event for t in TRANSITIONS.values())
NOTICE_EVENTS = tuple(dict.fromkeys(t.event for t in TRANSITIONS.values() if t.notifies_reporter))

# Where a case was resolved (Case.resolved_level): in the grid (小事不出网格), at the street
# (大事不出街镇) or by a district department. A case the grid or street resolved reopens there.
GRID_LEVEL, STREET_LEVEL, DEPARTMENT_LEVEL = "grid", "street", "department"
RESOLVED_IN_GRID = frozenset({GRID_LEVEL, STREET_LEVEL})

# Which deadline runs in each status (sign-for while dispatched, resolve once signed); the
# statuses listed here are the ones lit red/yellow/green. running_deadline_sql() is its twin.
RUNNING_DEADLINE = {
    DISPATCHED: "sign_by",
    SIGNED: "resolve_by",
    GRID_ASSIGNED: "sign_by",
    GRID_SIGNED: "resolve_by",
    VERIFYING: "verify_by",
}
LIT_STATUSES = tuple(RUNNING_DEADLINE)


def running_deadline(case: Case) -> datetime | None:
    """The deadline running for the case (or a 攻坚哨 part) in its status, or None (not lit)."""
    name = RUNNING_DEADLINE.get(case.status)
    return getattr(case, name) if name else None


def running_deadline_sql() -> ColumnElement:
    """running_deadline() as a SQL expression over the case table (NULL where not lit)."""
    return sql_case(
        *(
            (col(Case.status) == status, col(getattr(Case, name)))
            for status, name in RUNNING_DEADLINE.items()
        ),
        else_=null(),
    )


# When the running deadline's window opened (the light's start): the dispatch (to a
# department or a grid), except for 核查, which opens with the department's 办结.
LIGHT_START = {VERIFYING: "resolved_at"}


def light_start(case: Case) -> datetime | None:
    """The start of the window the case's light is measured in (see LIGHT_START)."""
    return getattr(case, LIGHT_START.get(case.status, "dispatched_at"))


def light_start_sql() -> ColumnElement:
    """light_start() as a SQL expression over the case table."""
    return sql_case(
        *(
            (col(Case.status) == status, col(getattr(Case, name)))
            for status, name in LIGHT_START.items()
        ),
        else_=col(Case.dispatched_at),
    )


def running_stage(status: str) -> str | None:
    """ "sign" or "resolve": which duty the running deadline is for, or None (not lit)."""
    return {"sign_by": "sign", "resolve_by": "resolve", "verify_by": "verify"}.get(
        RUNNING_DEADLINE.get(status, "")
    )


STATUS_NAMES = {
    SUBMITTED: "已提交",
    TRIAGE: "待分拨",
    DISPATCHED: "已派单",
    SIGNED: "办理中",
    RESOLVED: "已办结",
    CLOSED: "已结案",
    MERGED: "已合并",
    NOT_ACCEPTED: "不予受理",
    WAIVED: "领导决定不再等待",  # a 攻坚哨 part's only status of its own
    GRID_ASSIGNED: "网格办理中",
    GRID_SIGNED: "网格已签收",
    VERIFYING: "待网格核查",
}
# A 攻坚哨 part's statuses as people read them.
PART_STATUS_NAMES = {
    DISPATCHED: "待签收",
    SIGNED: "办理中",
    RESOLVED: "已办结",
    WAIVED: "领导决定不再等待",
}

# Display names of the two channels a case comes in by: in full (the bot's posts and
# messages) and short (the dashboard's CSV export column 类型).
KIND_NAMES = {RESIDENT: "居民随手拍", ENTERPRISE: "企业诉求"}
KIND_SHORT_NAMES = {RESIDENT: "居民", ENTERPRISE: "企业"}

# Why triage may refuse a case (不予受理), with the name staff and the reporter see; a
# duplicate is not refused but merged into the earlier case (cases.merge).
NOT_ACCEPTED_REMIT, NOT_ACCEPTED_NONGOV, NOT_ACCEPTED_OTHER = "remit", "nongov", "other"
NOT_ACCEPTED_REASONS = {
    NOT_ACCEPTED_REMIT: "不属于本区职责",
    NOT_ACCEPTED_NONGOV: "非政府职能事项",
    NOT_ACCEPTED_OTHER: "其他",
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
    "marked_hard": "列为攻坚哨",
    "part_signed": "协同部门签收",
    "part_resolved": "协同部门办结",
    "part_waived": "领导决定不再等待协同部门",
    "to_grid": "交网格办理",
    "grid_signed": "网格签收",
    "whistled": "吹哨",
    "to_verify": "部门办结待核查",
    "verified": "核查通过",
    "verify_failed": "核查不通过",
}

# Moves whose repetition has its own wording (error code "already_<action>"); any other
# repeat is "already_in_status".
ALREADY_DONE_ACTIONS = frozenset(
    {
        "sign",
        "dispatch",
        "resolve",
        "close",
        "merge",
        "not_accept",
        "to_triage",
        "to_grid",
        "grid_sign",
    }
)


def target_status(action: str, current: str, table: dict[str, Transition] = TRANSITIONS) -> str:
    """The status `action` leads to from `current` in `table` (the case's lifecycle, or
    PART_TRANSITIONS), or raise IllegalTransition."""
    if action not in table:
        raise IllegalTransition("unknown_action", action=action)
    to = table[action].to
    if current not in table[action].from_statuses:
        if to is not None and current == to:
            if action in ALREADY_DONE_ACTIONS:
                raise AlreadyDone(f"already_{action}")
            raise AlreadyDone("already_in_status", status=current)
        raise IllegalTransition("illegal_in_status", status=current)
    return to or current
