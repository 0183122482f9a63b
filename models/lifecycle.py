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
    MERGED,
    NOT_ACCEPTED,
    RESIDENT,
    RESOLVED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
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
START_DEADLINES = "start_deadlines"    # dispatched_at = now; sign_by/resolve_by counted from now
RECOUNT_DEADLINES = "recount_deadlines"  # a dispatched case's deadlines recounted from dispatch
CLEAR_DEADLINES = "clear_deadlines"    # no department, no dispatch time, no deadlines
FRESH_ALERTS = "fresh_alerts"          # reminders sent for the old deadline are forgotten
STAMP_SIGNED = "stamp_signed"          # signed_at = now
STAMP_RESOLVED = "stamp_resolved"      # resolved_at = now
STAMP_CLOSED = "stamp_closed"          # closed_at = now
RESET_OUTCOME = "reset_outcome"        # resolved/closed times and the survey (回访) forgotten
COUNT_REOPEN = "count_reopen"          # reopen_count + 1
EFFECTS = (START_DEADLINES, RECOUNT_DEADLINES, CLEAR_DEADLINES, FRESH_ALERTS, STAMP_SIGNED,
           STAMP_RESOLVED, STAMP_CLOSED, RESET_OUTCOME, COUNT_REOPEN)


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


_OPEN = frozenset({SUBMITTED, TRIAGE, DISPATCHED, SIGNED})
_HANDLED = frozenset({DISPATCHED, SIGNED})  # a department has the case

TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    # low confidence → 分拨
    Transition("to_triage", frozenset({SUBMITTED}), TRIAGE, "to_triage"),
    # 派单 (auto or confirmed); 重新分派 by triage
    Transition("dispatch", frozenset({SUBMITTED, TRIAGE}), DISPATCHED, "dispatched",
               (START_DEADLINES, FRESH_ALERTS), notifies_reporter=True),
    Transition("redispatch", _HANDLED, DISPATCHED, "dispatched",
               (START_DEADLINES, FRESH_ALERTS), notifies_reporter=True),
    # 签收: the running deadline becomes resolve_by, its reminders start afresh
    Transition("sign", frozenset({DISPATCHED}), SIGNED, "signed",
               (STAMP_SIGNED, FRESH_ALERTS), notifies_reporter=True),
    # 退回: wrong department
    Transition("return", _HANDLED, TRIAGE, "returned", (CLEAR_DEADLINES, FRESH_ALERTS)),
    Transition("progress_note", _HANDLED, None, "progress_note"),
    # 延期 approved: resolve_by is the change the caller passes
    Transition("extend", _HANDLED, None, "extended", (FRESH_ALERTS,), notifies_reporter=True),
    Transition("set_priority", _OPEN, None, "priority_changed", (RECOUNT_DEADLINES,)),
    # 修改网格: triage places the case in another grid (models/locating.py)
    Transition("set_grid", _OPEN, None, "grid_changed"),
    # 办结 (of a 攻坚哨: by the lead department once every part is done)
    Transition("resolve", frozenset({SIGNED}), RESOLVED, "resolved", (STAMP_RESOLVED,),
               notifies_reporter=True, guards=(PARTS_DONE,)),
    # 攻坚哨: the case is shared out to co-departments (models.parts); the lead keeps it
    Transition("mark_hard", _HANDLED, None, "marked_hard", notifies_reporter=True),
    # 回访 answer (satisfied/basic)
    Transition("rate", frozenset({RESOLVED}), None, "rated"),
    # 不满意 → back to the department, with new deadlines
    Transition("reopen", frozenset({RESOLVED, CLOSED}), DISPATCHED, "reopened",
               (START_DEADLINES, RESET_OUTCOME, COUNT_REOPEN, FRESH_ALERTS),
               notifies_reporter=True),
    Transition("close", frozenset({RESOLVED}), CLOSED, "closed", (STAMP_CLOSED,)),
    Transition("merge", _OPEN, MERGED, "merged"),
    # 不予受理 by triage. Not once signed: the department owns the case then and 退回 it
    # first. Nobody handles it any more: no department, no deadlines, no reminders.
    Transition("not_accept", frozenset({SUBMITTED, TRIAGE, DISPATCHED}), NOT_ACCEPTED,
               "not_accepted", (CLEAR_DEADLINES, STAMP_CLOSED, FRESH_ALERTS)),
)}

# 攻坚哨: a co-department's part (models.tables.CasePart) has a lifecycle of its own, with
# the case's statuses so that RUNNING_DEADLINE, running_deadline() and the traffic-light rule
# serve parts unchanged. Its events go into the case's trail without bumping Case.version.
PART_TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    Transition("sign", frozenset({DISPATCHED}), SIGNED, "part_signed",
               (STAMP_SIGNED, FRESH_ALERTS)),
    Transition("resolve", frozenset({SIGNED}), RESOLVED, "part_resolved", (STAMP_RESOLVED,)),
    Transition("waive", frozenset({DISPATCHED, SIGNED}), WAIVED, "part_waived", (FRESH_ALERTS,)),
)}
PART_DONE_STATUSES = frozenset({RESOLVED, WAIVED})

# Every CaseEvent.action a transition writes (each one is a bump of Case.version), and those
# the reporter is told about.
TRANSITION_EVENTS = frozenset(t.event for t in TRANSITIONS.values())
NOTICE_EVENTS = tuple(dict.fromkeys(t.event for t in TRANSITIONS.values() if t.notifies_reporter))

# Which deadline runs in each status (sign-for while dispatched, resolve once signed); the
# statuses listed here are the ones lit red/yellow/green. running_deadline_sql() is its twin.
RUNNING_DEADLINE = {DISPATCHED: "sign_by", SIGNED: "resolve_by"}
LIT_STATUSES = tuple(RUNNING_DEADLINE)


def running_deadline(case: Case) -> datetime | None:
    """The deadline running for the case (or a 攻坚哨 part) in its status, or None (not lit)."""
    name = RUNNING_DEADLINE.get(case.status)
    return getattr(case, name) if name else None


def running_deadline_sql() -> ColumnElement:
    """running_deadline() as a SQL expression over the case table (NULL where not lit)."""
    return sql_case(*((col(Case.status) == status, col(getattr(Case, name)))
                      for status, name in RUNNING_DEADLINE.items()), else_=null())


def running_stage(status: str) -> str | None:
    """"sign" or "resolve": which duty the running deadline is for, or None (not lit)."""
    return {"sign_by": "sign", "resolve_by": "resolve"}.get(RUNNING_DEADLINE.get(status, ""))


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
}
# A 攻坚哨 part's statuses as people read them.
PART_STATUS_NAMES = {DISPATCHED: "待签收", SIGNED: "办理中", RESOLVED: "已办结",
                     WAIVED: "领导决定不再等待"}

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
}

# Moves whose repetition has its own wording (error code "already_<action>"); any other
# repeat is "already_in_status".
ALREADY_DONE_ACTIONS = frozenset({"sign", "dispatch", "resolve", "close", "merge", "not_accept",
                                  "to_triage"})


def target_status(action: str, current: str,
                  table: dict[str, Transition] = TRANSITIONS) -> str:
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
