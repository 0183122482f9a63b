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
    # 办结
    Transition("resolve", frozenset({SIGNED}), RESOLVED, "resolved", (STAMP_RESOLVED,),
               notifies_reporter=True),
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

# Every CaseEvent.action a transition writes (each one is a bump of Case.version), and those
# the reporter is told about.
TRANSITION_EVENTS = frozenset(t.event for t in TRANSITIONS.values())
NOTICE_EVENTS = tuple(dict.fromkeys(t.event for t in TRANSITIONS.values() if t.notifies_reporter))

# Which deadline runs in each status (sign-for while dispatched, resolve once signed); the
# statuses listed here are the ones lit red/yellow/green. running_deadline_sql() is its twin.
RUNNING_DEADLINE = {DISPATCHED: "sign_by", SIGNED: "resolve_by"}
LIT_STATUSES = tuple(RUNNING_DEADLINE)


def running_deadline(case: Case) -> datetime | None:
    """The deadline running for the case in its status, or None (not lit)."""
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
}

# Moves whose repetition has its own wording (error code "already_<action>"); any other
# repeat is "already_in_status".
ALREADY_DONE_ACTIONS = frozenset({"sign", "dispatch", "resolve", "close", "merge", "not_accept",
                                  "to_triage"})


def target_status(action: str, current: str) -> str:
    """The status `action` leads to from `current`, or raise IllegalTransition."""
    if action not in TRANSITIONS:
        raise IllegalTransition("unknown_action", action=action)
    to = TRANSITIONS[action].to
    if current not in TRANSITIONS[action].from_statuses:
        if to is not None and current == to:
            if action in ALREADY_DONE_ACTIONS:
                raise AlreadyDone(f"already_{action}")
            raise AlreadyDone("already_in_status", status=current)
        raise IllegalTransition("illegal_in_status", status=current)
    return to or current
