"""What staff see in their groups: the text and buttons of triage and department posts.

Pure formatting from a Case; nothing here talks to Telegram or the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks as cb
from bot import texts
from bot.common import MAX_CAPTION, MAX_TEXT, department_name, local_time
from bot.services import Services
from models.deadlines import LIGHT_EMOJI, case_light
from models.lifecycle import (
    NOT_ACCEPTED_NONGOV,
    NOT_ACCEPTED_REASONS,
    NOT_ACCEPTED_REMIT,
    PART_STATUS_NAMES,
    STATUS_NAMES,
    TRANSITIONS,
)
from models.tables import (
    DISPATCHED,
    GRID_ASSIGNED,
    GRID_SIGNED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
    URGENT,
    VERIFYING,
    Case,
    CasePart,
)

TRIAGE_AUDIENCE, DEPARTMENT_AUDIENCE, GRID_AUDIENCE = "triage", "department", "grid"


def _button(label: str, verb: str, case: Case, arg: str | None = None) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=cb.make(verb, case.id, case.version, arg))


def is_unsure(case: Case, services: Services) -> bool:
    """No suggestion, or one below the confidence threshold: a person has to decide."""
    threshold = services.settings.classifier.confidence_threshold
    return case.suggested_department is None or (case.suggested_confidence or 0) < threshold


def _location_lines(case: Case) -> list[str]:
    lines = []
    if case.address:
        lines.append(texts.POST_ADDRESS.format(address=case.address))
    if case.latitude is not None and case.longitude is not None:
        lines.append(texts.POST_COORDS.format(lat=case.latitude, lon=case.longitude, ref=case.ref))
    if case.out_of_area:
        lines.append(texts.POST_OUT_OF_AREA)
    if len(case.photos) > 1:
        lines.append(texts.POST_PHOTO_COUNT.format(count=len(case.photos), ref=case.ref))
    return lines


def grid_lines(case: Case, services: Services) -> list[str]:
    """The case's grid as a name path and how it was found (nothing when no grids are set up)."""
    if services.gridmap.tree is None:
        return []
    path = grid_path(case, services)
    how = texts.LOCATED_BY_NAMES.get(case.located_by or "", "")
    lines = [texts.POST_GRID.format(path=path, how=how) if path else texts.POST_NO_GRID]
    if case.out_of_grid:
        lines.append(texts.POST_OUT_OF_GRID)
    return lines


def grid_path(case: Case, services: Services) -> str | None:
    """The name path of the grid the case lies in (月亮岛街道 › 银星村 › 银星村第一网格), its
    code for a grid since removed from the gazetteer, None without a grid or when no grids
    are set up."""
    if services.gridmap.tree is None or not case.grid_code:
        return None
    return services.gridmap.path_names(case.grid_code) or case.grid_code


def _in_grid_lines(case: Case, services: Services) -> list[str]:
    path = grid_path(case, services)
    return [texts.POST_IN_GRID.format(path=path)] if path else []


def _suggestion_lines(case: Case, services: Services) -> list[str]:
    lines = []
    if case.suggested_department:
        lines.append(
            texts.POST_SUGGESTED.format(
                department=department_name(services, case.suggested_department),
                prob=case.suggested_confidence or 0,
            )
        )
    if case.suggestions:
        items = " · ".join(
            f"{department_name(services, code)} {prob:.0%}" for code, prob in case.suggestions[:3]
        )
        lines.append(texts.POST_TOP.format(items=items))
    if is_unsure(case, services):
        lines.append(texts.POST_UNSURE)
    return lines


def _assemble(head: list[str], case: Case, tail: list[str], limit: int) -> str:
    """head + the case's text + tail, cutting only the case's text to fit `limit`."""
    fixed = "\n".join(head + tail)
    room = max(20, limit - len(fixed) - len(texts.POST_TEXT.format(text="")) - 2)
    body = case.text if len(case.text) <= room else case.text[: room - 1] + "…"
    return "\n".join(head + [texts.POST_TEXT.format(text=body)] + tail)


def _headline(case: Case, template: str) -> list[str]:
    kind = texts.KIND_NAMES.get(case.kind, case.kind)
    first = template.format(kind=kind, ref=case.ref)
    if case.priority == URGENT:
        first += "  " + texts.POST_URGENT
    return [first]


def part_status(part: CasePart, services: Services, now: datetime) -> str:
    """'🟢办理中': a 攻坚哨 part's light (while its deadline runs) and status."""
    light = case_light(part, now, services.rules)
    return (LIGHT_EMOJI[light] if light else "") + PART_STATUS_NAMES.get(part.status, part.status)


def part_state(part: CasePart, services: Services, now: datetime) -> str:
    """'住建局 🟢办理中': a 攻坚哨 part's department, light and status."""
    return texts.PART_STATE.format(
        department=department_name(services, part.department_code),
        status=part_status(part, services, now),
    )


def hard_lines(case: Case, parts: Sequence[CasePart], services: Services) -> list[str]:
    """攻坚哨: the lead, the co-departments, the meeting's decision and each part's state."""
    if not case.is_hard:
        return []
    co = "、".join(department_name(services, p.department_code) for p in parts) or "—"
    lines = [texts.POST_HARD.format(lead=department_name(services, case.department_code), co=co)]
    if case.hard_decision:
        lines.append(texts.POST_HARD_DECISION.format(decision=case.hard_decision))
    if parts:
        now = services.clock()
        lines.append(
            texts.POST_HARD_PARTS.format(
                parts="；".join(part_state(p, services, now) for p in parts)
            )
        )
    return lines


def _state_lines(case: Case, services: Services) -> list[str]:
    lines = [texts.POST_STATUS.format(status=STATUS_NAMES.get(case.status, case.status))]
    if case.department_code:
        lines.append(
            texts.POST_DEPARTMENT.format(department=department_name(services, case.department_code))
        )
    if case.status in (DISPATCHED, SIGNED):
        lines.append(
            texts.POST_DEADLINES.format(
                sign_by=local_time(services, case.sign_by),
                resolve_by=local_time(services, case.resolve_by),
            )
        )
    return lines


def triage_text(
    case: Case,
    services: Services,
    *,
    enterprise: str | None = None,
    headline: str | None = None,
    footer: str | None = None,
    auto_dispatched: bool = False,
    parts: Sequence[CasePart] = (),
) -> str:
    """The triage group's post of a case: content, location, suggestion and top-3, status."""
    head = [headline] if headline else _headline(case, texts.POST_NEW)
    if enterprise:
        head.append(texts.POST_ENTERPRISE.format(name=enterprise))
    tail = _location_lines(case) + grid_lines(case, services) + _suggestion_lines(case, services)
    if case.out_of_area and case.status in (SUBMITTED, TRIAGE):
        tail.append(texts.POST_OUT_OF_AREA_WAITING)
    if auto_dispatched:
        tail.append(
            texts.POST_AUTO.format(department=department_name(services, case.department_code))
        )
    tail += _state_lines(case, services) + hard_lines(case, parts, services)
    if footer:
        tail.append(footer)
    return _assemble(head, case, tail, MAX_CAPTION if case.photos else MAX_TEXT)


def department_text(
    case: Case,
    services: Services,
    *,
    enterprise: str | None = None,
    footer: str | None = None,
    parts: Sequence[CasePart] = (),
    headline: str | None = None,
) -> str:
    """The department group's post of a dispatched case: content, location, deadlines."""
    head = [headline] if headline else _headline(case, texts.POST_DISPATCHED_TO_YOU)
    if enterprise:
        head.append(texts.POST_ENTERPRISE.format(name=enterprise))
    tail = (
        _location_lines(case)
        + _in_grid_lines(case, services)
        + _state_lines(case, services)
        + hard_lines(case, parts, services)
    )
    if footer:
        tail.append(footer)
    return _assemble(head, case, tail, MAX_CAPTION if case.photos else MAX_TEXT)


def part_text(case: Case, part: CasePart, services: Services, *, footer: str | None = None) -> str:
    """A co-department's post of its 攻坚哨 part: the case, the decision, its own state."""
    head = [
        texts.POST_PART_HEAD.format(
            ref=case.ref, lead=department_name(services, case.department_code)
        )
    ]
    if case.priority == URGENT:
        head[0] += "  " + texts.POST_URGENT
    tail = _location_lines(case) + _in_grid_lines(case, services)
    if case.hard_decision:
        tail.append(texts.POST_HARD_DECISION.format(decision=case.hard_decision))
    tail.append(texts.POST_PART_STATUS.format(status=part_status(part, services, services.clock())))
    if part.status in (DISPATCHED, SIGNED):
        tail.append(
            texts.POST_DEADLINES.format(
                sign_by=local_time(services, part.sign_by),
                resolve_by=local_time(services, part.resolve_by),
            )
        )
    if part.result:
        tail.append(texts.POST_PART_RESULT.format(result=part.result))
    if footer:
        tail.append(footer)
    return _assemble(head, case, tail, MAX_CAPTION if case.photos else MAX_TEXT)


def part_keyboard(case: Case, part: CasePart) -> InlineKeyboardMarkup | None:
    """签收 while the part waits, 办结 once signed; nothing once it is done."""

    def button(label: str, verb: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            label, callback_data=cb.make(verb, case.id, part.version, str(part.id))
        )

    if part.status == DISPATCHED:
        return InlineKeyboardMarkup([[button(texts.BTN_PART_SIGN, cb.PART_SIGN)]])
    if part.status == SIGNED:
        return InlineKeyboardMarkup([[button(texts.BTN_PART_RESOLVE, cb.PART_RESOLVE)]])
    return None


def triage_keyboard(case: Case, services: Services) -> InlineKeyboardMarkup | None:
    """确认 / 改派 while waiting, 重新分派 once dispatched; 标记紧急 and 不予受理 while they apply."""
    rows: list[list[InlineKeyboardButton]] = []
    if case.status in (SUBMITTED, TRIAGE):
        if case.suggested_department and services.settings.department(case.suggested_department):
            label = texts.BTN_CONFIRM.format(
                department=department_name(services, case.suggested_department)
            )
            rows.append([_button(label, cb.CONFIRM, case)])
        rows.append([_button(texts.BTN_PICK, cb.PICK, case)])
    elif case.status in (DISPATCHED, SIGNED):
        rows.append([_button(texts.BTN_REDISPATCH, cb.PICK, case)])
    else:
        return None
    last = []
    if case.priority != URGENT:
        last.append(_button(texts.BTN_URGENT, cb.URGENT, case))
    if case.status in TRANSITIONS["not_accept"].from_statuses:
        last.append(_button(texts.BTN_NOT_ACCEPT, cb.NOT_ACCEPT, case))
    if last:
        rows.append(last)
    if services.gridmap.tree is not None and case.status in TRANSITIONS["set_grid"].from_statuses:
        row = [_button(texts.BTN_SET_GRID, cb.GRID, case)]  # last: the others keep their places
        if case.grid_code and case.status in TRANSITIONS["to_grid"].from_statuses:
            row.append(_button(texts.BTN_TO_GRID, cb.TO_GRID, case))
        rows.append(row)
    if not case.is_hard:
        rows.append([_button(texts.BTN_HARD, cb.HARD, case)])  # after all: numbers stay put
    return InlineKeyboardMarkup(rows)


def hard_lead_picker(case: Case, services: Services) -> InlineKeyboardMarkup:
    """攻坚哨, step 1: every department in config.toml's order, three a row, and 返回."""
    buttons = [
        _button(dept.name, cb.HARD_LEAD, case, str(i))
        for i, dept in enumerate(services.settings.departments)
    ]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    rows.append([_button(texts.BTN_BACK, cb.BACK, case)])
    return InlineKeyboardMarkup(rows)


def hard_co_picker(case: Case, services: Services, lead: int, chosen: int) -> InlineKeyboardMarkup:
    """攻坚哨, step 2: the other departments (✅ the chosen ones, `chosen` a bit mask of their
    indexes; a press toggles one), 下一步 once one is chosen, and 返回 to the lead."""
    buttons = []
    for i, dept in enumerate(services.settings.departments):
        if i == lead:
            continue
        label = texts.HARD_CO_CHOSEN.format(name=dept.name) if chosen >> i & 1 else dept.name
        buttons.append(_button(label, cb.HARD_CO, case, f"{lead}-{chosen ^ (1 << i)}"))
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    if chosen:
        rows.append([_button(texts.BTN_HARD_NEXT, cb.HARD_TEXT, case, f"{lead}-{chosen}")])
    rows.append([_button(texts.BTN_BACK, cb.HARD, case)])
    return InlineKeyboardMarkup(rows)


def grid_picker(case: Case, services: Services, code: str | None) -> InlineKeyboardMarkup:
    """The grids below `code` (the streets for None), two a row, ✅ 定为 `code`, and 返回."""
    gridmap = services.gridmap
    below = [_button(g.name, cb.GRID, case, g.code) for g in gridmap.children(code)]
    rows = [below[i : i + 2] for i in range(0, len(below), 2)]
    if code is not None:
        rows.append(
            [_button(texts.BTN_GRID_HERE.format(name=gridmap.name(code)), cb.SET_GRID, case, code)]
        )
    rows.append([_button(texts.BTN_BACK, cb.BACK, case)])
    return InlineKeyboardMarkup(rows)


def department_picker(case: Case, services: Services) -> InlineKeyboardMarkup:
    """Every department in config.toml's order, three a row, and 返回.

    The order never changes between screens (nor with the classifier's probabilities), so a
    department stays where staff expect it: the suggested and the current one are marked.
    """
    buttons = []
    for dept in services.settings.departments:
        label = dept.name
        if dept.code == case.department_code:
            label = texts.PICKER_CURRENT.format(name=dept.name)
        elif dept.code == case.suggested_department:
            label = texts.PICKER_SUGGESTED.format(name=dept.name)
        buttons.append(_button(label, cb.TO, case, dept.code))
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    rows.append([_button(texts.BTN_BACK, cb.BACK, case)])
    return InlineKeyboardMarkup(rows)


def confirm_question(case: Case, services: Services, code: str) -> tuple[str, str]:
    """(question, button label) before dispatching to `code`: 派至 for the suggestion of a
    waiting case, 改派至 for any other choice."""
    name = department_name(services, code)
    if case.status in (SUBMITTED, TRIAGE) and code == case.suggested_department:
        return (
            texts.ASK_CONFIRM_DISPATCH.format(department=name),
            texts.BTN_CONFIRM.format(department=name),
        )
    return (
        texts.ASK_CONFIRM_MOVE.format(department=name),
        texts.BTN_CONFIRM_MOVE.format(department=name),
    )


def confirm_keyboard(case: Case, services: Services, code: str) -> InlineKeyboardMarkup:
    """✅ 确认(改)派至 X, and 返回 to the department list."""
    label = confirm_question(case, services, code)[1]
    return InlineKeyboardMarkup(
        [[_button(label, cb.CONFIRM, case, code)], [_button(texts.BTN_BACK, cb.PICK, case)]]
    )


def not_accept_keyboard(case: Case) -> InlineKeyboardMarkup:
    """The reasons for 不予受理, and 返回 to the post's own buttons."""
    fixed = [
        _button(NOT_ACCEPTED_REASONS[code], cb.NOT_ACCEPT_AS, case, code)
        for code in (NOT_ACCEPTED_REMIT, NOT_ACCEPTED_NONGOV)
    ]
    return InlineKeyboardMarkup(
        [
            fixed,
            [
                _button(texts.BTN_REASON_DUPLICATE, cb.DUPLICATE, case),
                _button(texts.BTN_REASON_OTHER, cb.NOT_ACCEPT_OTHER, case),
            ],
            [_button(texts.BTN_BACK, cb.BACK, case)],
        ]
    )


def department_keyboard(case: Case) -> InlineKeyboardMarkup | None:
    """签收 / 退回 when dispatched; 办结 / 申请延期 / 退回 once signed."""
    if case.status == DISPATCHED:
        return InlineKeyboardMarkup(
            [[_button(texts.BTN_SIGN, cb.SIGN, case), _button(texts.BTN_RETURN, cb.RETURN, case)]]
        )
    if case.status == SIGNED:
        return InlineKeyboardMarkup(
            [
                [
                    _button(texts.BTN_RESOLVE, cb.RESOLVE, case),
                    _button(texts.BTN_EXTEND, cb.EXTEND, case),
                ],
                [_button(texts.BTN_RETURN, cb.RETURN, case)],
            ]
        )
    return None


# ---------------------------------------------------------------- the grid's (and street's) posts


def _grid_state_lines(case: Case, services: Services) -> list[str]:
    lines = [texts.POST_STATUS.format(status=STATUS_NAMES.get(case.status, case.status))]
    handler = services.gridmap.path_names(case.handling_grid_code) or case.handling_grid_code
    if handler:
        lines.append(texts.POST_HANDLER.format(path=handler))
    if case.status in (GRID_ASSIGNED, GRID_SIGNED):
        lines.append(
            texts.POST_GRID_DEADLINES.format(
                sign_by=local_time(services, case.sign_by),
                resolve_by=local_time(services, case.resolve_by),
            )
        )
    elif case.status == VERIFYING:
        lines.append(texts.POST_RESULT.format(result=case.resolution or ""))
        lines.append(
            texts.POST_VERIFY_DEADLINE.format(verify_by=local_time(services, case.verify_by))
        )
    elif case.department_code:
        lines.append(
            texts.POST_DEPARTMENT.format(department=department_name(services, case.department_code))
        )
    return lines


def grid_text(
    case: Case,
    services: Services,
    *,
    enterprise: str | None = None,
    headline: str | None = None,
    footer: str | None = None,
) -> str:
    """A grid (or street) staff member's post of a case: content, place, what to do by when."""
    if headline:
        head = [headline]
    elif case.status == VERIFYING:
        head = [
            texts.POST_TO_VERIFY.format(
                ref=case.ref, department=department_name(services, case.department_code)
            )
        ]
    else:
        head = _headline(case, texts.POST_TO_GRID)
    if enterprise:
        head.append(texts.POST_ENTERPRISE.format(name=enterprise))
    tail = _location_lines(case) + grid_lines(case, services) + _grid_state_lines(case, services)
    if footer:
        tail.append(footer)
    return _assemble(head, case, tail, MAX_CAPTION if case.photos else MAX_TEXT)


def grid_keyboard(case: Case) -> InlineKeyboardMarkup | None:
    """签收 / 吹哨 when handed over; 办结 / 吹哨 once signed; 核查通过 / 不通过 to verify."""
    if case.status == GRID_ASSIGNED:
        return InlineKeyboardMarkup(
            [
                [
                    _button(texts.BTN_GRID_SIGN, cb.GRID_SIGN, case),
                    _button(texts.BTN_WHISTLE, cb.WHISTLE, case),
                ]
            ]
        )
    if case.status == GRID_SIGNED:
        return InlineKeyboardMarkup(
            [
                [
                    _button(texts.BTN_GRID_RESOLVE, cb.GRID_RESOLVE, case),
                    _button(texts.BTN_WHISTLE, cb.WHISTLE, case),
                ]
            ]
        )
    if case.status == VERIFYING:
        return InlineKeyboardMarkup(
            [
                [
                    _button(texts.BTN_VERIFY_OK, cb.VERIFY_OK, case),
                    _button(texts.BTN_VERIFY_FAIL, cb.VERIFY_FAIL, case),
                ]
            ]
        )
    return None


def whistle_picker(case: Case, services: Services, street: str | None) -> InlineKeyboardMarkup:
    """吹哨 to the street (`street` its name; None: not offered) or to a district department
    (config.toml's order, three a row), and 返回."""
    rows = []
    if street:
        rows.append(
            [_button(texts.BTN_WHISTLE_STREET.format(street=street), cb.WHISTLE_TO, case, "street")]
        )
    buttons = [
        _button(texts.BTN_WHISTLE_DEPARTMENT.format(department=d.name), cb.WHISTLE_TO, case, d.code)
        for d in services.settings.departments
    ]
    rows += [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    rows.append([_button(texts.BTN_BACK, cb.GRID_BACK, case)])
    return InlineKeyboardMarkup(rows)


def extension_keyboard(case: Case, request_id: int) -> InlineKeyboardMarkup:
    """同意 / 不同意 for triage, carrying the extension request's id."""
    arg = str(request_id)
    return InlineKeyboardMarkup(
        [
            [
                _button(texts.BTN_APPROVE, cb.APPROVE_EXT, case, arg),
                _button(texts.BTN_REJECT, cb.REJECT_EXT, case, arg),
            ]
        ]
    )


def footer(action: str, who: str, at: str) -> str:
    return texts.POST_FOOTER_ACTION.format(action=action, who=who, at=at)


def as_dict(markup: InlineKeyboardMarkup | None) -> dict | None:
    """A keyboard in the JSON form the outbox stores."""
    return markup.to_dict() if markup is not None else None
