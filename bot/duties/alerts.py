"""红黄灯 and 督办: the department group gets a reminder when a case turns yellow and an
alarm when it turns red; once it has been red for followup.escalate_after_red_hours the leader
chat gets a 督办 (and the department a notice), recorded in the case's events.

Each alert is claimed with a compare-and-set on the case, so two workers queue it once.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from bot import notices, posts
from bot.common import local_time, snippet, stage_name
from bot.duties.config import FollowupConfig
from bot.services import Services
from bot.texts import followup as texts
from models import followup as fq
from models import gridwork, outbox
from models.lifecycle import running_deadline
from models.tables import GRID_ASSIGNED, GRID_SIGNED, URGENT, VERIFYING, Case, CasePart

log = logging.getLogger(__name__)

# Statuses in which the case's light is the grid's (or street's) duty, not a department's.
GRID_DUTY = frozenset({GRID_ASSIGNED, GRID_SIGNED, VERIFYING})


async def queue_deadline_alerts(
    services: Services, config: FollowupConfig, now: datetime
) -> Counter:
    """Yellow reminders, red alarms and escalations for the cases that need one now."""
    async with services.read_session() as session:  # the scan needs no writer's turn
        due = await fq.due_alerts(
            session, now, services.rules, escalate_after=config.escalate_after
        )
        chats = await fq.department_chats(session)
    counts: Counter = Counter()
    for kind, found in (("yellow", due.yellow), ("red", due.red), ("escalation", due.escalation)):
        for case in found:
            async with services.session() as session:
                if not await fq.claim_alert(session, case, kind, now):
                    continue  # another worker did it, or the case moved: next pass decides
                grid_staff = (
                    await gridwork.staff_of_grid(session, case.handling_grid_code)
                    if case.status in GRID_DUTY and case.handling_grid_code
                    else None
                )
                for chat_id, text, markup in _alert_pushes(
                    kind, case, services, config, chats, now, grid_staff
                ):
                    await outbox.enqueue(
                        session,
                        key=notices.case_key(case, kind, chat_id),
                        chat_id=chat_id,
                        text=text,
                        kind=kind,
                        now=now,
                        case_id=case.id,
                        reply_markup=posts.as_dict(markup),
                    )
                if kind == "escalation":
                    await fq.record_escalation(
                        session, case, now, hours_overdue=_overdue_hours(case, now)
                    )
            counts[kind] += 1
    await _queue_part_alerts(services, config, now, chats, counts)
    return counts


async def _queue_part_alerts(
    services: Services,
    config: FollowupConfig,
    now: datetime,
    chats: dict[str, tuple[str, int | None]],
    counts: Counter,
) -> None:
    """The same reminders, alarms and 督办 for 攻坚哨 parts: each part is lit by its own
    deadlines and alerts its own department; a red part goes to the leaders like a red case."""
    async with services.read_session() as session:
        due = await fq.due_part_alerts(
            session, now, services.rules, escalate_after=config.escalate_after
        )
    for kind, part, case in due:
        async with services.session() as session:
            if not await fq.claim_alert(session, part, kind, now):
                continue
            for chat_id, text, markup in _alert_pushes(
                kind, case, services, config, chats, now, part=part
            ):
                await outbox.enqueue(
                    session,
                    key=notices.case_key(case, f"part{part.id}:{kind}:{part.version}", chat_id),
                    chat_id=chat_id,
                    text=text,
                    kind=kind,
                    now=now,
                    case_id=case.id,
                    reply_markup=posts.as_dict(markup),
                )
            if kind == "escalation":
                await fq.record_escalation(
                    session, case, now, part=part, hours_overdue=_overdue_hours(part, now)
                )
        counts[kind] += 1


def _overdue_hours(case: Case | CasePart, now: datetime) -> float:
    return (now - running_deadline(case)).total_seconds() / 3600


def _alert_pushes(
    kind: str,
    case: Case,
    services: Services,
    config: FollowupConfig,
    chats: dict[str, tuple[str, int | None]],
    now: datetime,
    grid_staff: tuple[int, ...] | None = None,
    *,
    part: CasePart | None = None,
):
    """(chat id, text, keyboard) of each push an alert makes: to the department's group, or
    to each grid (street) staff member while the case is their duty (签收/办结/核查); of a
    攻坚哨 part's, to the part's department with the part's deadline and buttons."""
    if grid_staff is not None:
        return _grid_alert_pushes(kind, case, services, config, now, grid_staff)
    lit = part or case
    name, dept_chat = chats.get(lit.department_code, (lit.department_code or "", None))
    deadline = running_deadline(lit)
    ref = case.ref if part is None else texts.PART_REF.format(ref=case.ref, department=name)
    fields = {
        "ref": ref,
        "stage": stage_name(lit),
        "snippet": snippet(case),
        "deadline": local_time(services, deadline),
        "department": name,
        "left": texts.span((deadline - now).total_seconds()),
        "over": texts.span((now - deadline).total_seconds()),
        "escalate_hours": f"{config.escalate_after.total_seconds() / 3600:g}",
        "urgent": texts.ESCALATION_URGENT if case.priority == URGENT else "",
    }
    keyboard = posts.department_keyboard(case) if part is None else posts.part_keyboard(case, part)
    pushes = []
    if kind == "yellow":
        pushes.append((dept_chat, texts.REMINDER_YELLOW.format(**fields), keyboard))
    elif kind == "red":
        pushes.append((dept_chat, texts.ALARM_RED.format(**fields), keyboard))
    else:
        pushes.append((config.leader_chat, texts.ESCALATION_LEADER.format(**fields), None))
        pushes.append((dept_chat, texts.ESCALATION_DEPARTMENT.format(**fields), keyboard))
    for chat_id, _, _ in pushes:
        if chat_id is None:
            log.warning("%s of %s: no chat configured, push skipped", kind, case.ref)
    return [p for p in pushes if p[0] is not None]


def _grid_alert_pushes(
    kind: str,
    case: Case,
    services: Services,
    config: FollowupConfig,
    now: datetime,
    grid_staff: tuple[int, ...],
):
    """The grid's own lights: each of its staff in private; 督办 to the leaders as well."""
    deadline = running_deadline(case)
    name = services.gridmap.name(case.handling_grid_code) or case.handling_grid_code or ""
    fields = {
        "ref": case.ref,
        "stage": stage_name(case),
        "snippet": snippet(case),
        "deadline": local_time(services, deadline),
        "department": name,
        "left": texts.span((deadline - now).total_seconds()),
        "over": texts.span((now - deadline).total_seconds()),
        "escalate_hours": f"{config.escalate_after.total_seconds() / 3600:g}",
        "urgent": texts.ESCALATION_URGENT if case.priority == URGENT else "",
    }
    template = {
        "yellow": texts.REMINDER_YELLOW,
        "red": texts.ALARM_RED,
        "escalation": texts.ESCALATION_DEPARTMENT,
    }[kind]
    keyboard = posts.grid_keyboard(case)
    pushes = [(chat_id, template.format(**fields), keyboard) for chat_id in grid_staff]
    if kind == "escalation" and config.leader_chat is not None:
        pushes.append((config.leader_chat, texts.ESCALATION_LEADER.format(**fields), None))
    if not pushes:
        log.warning(
            "%s of %s: nobody in grid %s, push skipped", kind, case.ref, case.handling_grid_code
        )
    return pushes
