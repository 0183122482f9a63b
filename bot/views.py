"""Read-only pages for reporters and staff: /my, /case REF and the enterprise home page.

Reporters only ever see their own cases (models.cases.case_for_viewer decides); group posts
and these pages never show another person's name or phone number. /case shows the whole
case: every event with what was said at it (result, 不满意 comment, 退回 and 延期 reasons) and
every photo, the reporter's and each 办结's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Update

from bot import callbacks as cb
from bot import posts, texts
from bot.common import MAX_CAPTION, MAX_TEXT, department_name, fit, light_of, local_time
from bot.context import Context
from bot.services import Services
from models import cases, followers, people
from models.lifecycle import EVENT_NAMES, STATUS_NAMES
from models.tables import ENTERPRISE, RESIDENT, Case, CaseEvent, CasePart

ALBUM_MAX = 10  # photos Telegram puts in one album


def case_line(case: Case, services: Services) -> str:
    """One line of a case list: light, reference, status, the start of the text."""
    return texts.MY_LINE.format(
        light=light_of(case, services, services.clock()),
        ref=case.ref,
        status=STATUS_NAMES.get(case.status, case.status),
        snippet=texts.snippet(case.text),
    )


def followed_line(case: Case, services: Services) -> str:
    """A followed case in /my: without the words of whoever reported it."""
    return texts.MY_FOLLOWED_LINE.format(
        light=light_of(case, services, services.clock()),
        ref=case.ref,
        status=STATUS_NAMES.get(case.status, case.status),
    )


async def my_cases(update: Update, context: Context) -> None:
    """/my or 我的反映: the reporter's recent cases, residents' and enterprise's listed apart."""
    services = context.services
    user_id = update.effective_user.id
    async with services.session() as session:
        own = await cases.cases_of_reporter(session, user_id, limit=10, kind=RESIDENT)
        demands = await cases.cases_of_reporter(session, user_id, limit=10, kind=ENTERPRISE)
        followed = await followers.followed_cases(session, user_id, limit=10)
    if not own and not demands and not followed:
        async with services.session() as session:
            enterprise = await people.enterprise_of(session, user_id)
        await update.effective_message.reply_text(
            texts.MY_EMPTY_ENTERPRISE if enterprise else texts.MY_EMPTY
        )
        return
    parts = []
    if own:
        parts.append("\n".join([texts.MY_TITLE_RESIDENT] + [case_line(c, services) for c in own]))
    if demands:
        parts.append(
            "\n".join([texts.MY_TITLE_ENTERPRISE] + [case_line(c, services) for c in demands])
        )
    if followed:
        parts.append(
            "\n".join([texts.MY_TITLE_FOLLOWED] + [followed_line(c, services) for c in followed])
        )
    parts.append(texts.MY_FOOTER)
    await update.effective_message.reply_text(fit("\n\n".join(parts), MAX_TEXT))


def _event_detail(event: CaseEvent, services: Services, for_staff: bool) -> str:
    """What to add after an event's name: whatever was said at it (internal notes: staff)."""
    details = event.details or {}
    action = event.action
    if action == "dispatched" and details.get("department"):
        return department_name(services, details["department"])
    if action == "resolved":
        return details.get("result", "")
    if action == "rated":
        rating = texts.RATING_NAMES.get(details.get("rating", ""), "")
        comment = details.get("comment")
        return f"{rating}，{texts.CASE_COMMENT.format(comment=comment)}" if comment else rating
    if action == "priority_changed" and details.get("priority") == "urgent":
        return "紧急"
    if action == "grid_changed" and details.get("to"):
        return services.gridmap.path_names(details["to"]) or details["to"]
    if action == "not_accepted" and details.get("reason"):
        return texts.CASE_REASON.format(reason=details["reason"])
    if action == "merged" and details.get("into"):
        return texts.CASE_MERGED_INTO.format(ref=details["into"])
    if action == "marked_hard":
        co = "、".join(department_name(services, c) for c in details.get("co", ()))
        return texts.POST_HARD.format(lead=department_name(services, details.get("lead")), co=co)
    if action in ("part_signed", "part_resolved", "part_waived", "escalated") and details.get(
        "department"
    ):
        said = details.get("result") or details.get("reason")
        name = department_name(services, details["department"])
        return f"{name}，{said}" if said else name
    if action in ("returned", "extension_requested", "extended"):
        parts = (
            [texts.CASE_REASON.format(reason=details["reason"])] if details.get("reason") else []
        )
        new_date = details.get("new_resolve_by") or (
            details.get("resolve_by") if action == "extended" else None
        )
        if new_date:
            parts.append(
                texts.CASE_NEW_DATE.format(
                    date=local_time(services, datetime.fromisoformat(new_date))
                )
            )
        return "，".join(parts)
    if for_staff and action == "progress_note":
        return details.get("note", "")
    return _grid_event_detail(action, details, services)


def _grid_event_detail(action: str, details: dict, services: Services) -> str:
    """吹哨报到's events: which grid got it, where the whistle went and why, 核查."""
    if action == "to_grid" and details.get("grid"):
        return services.gridmap.path_names(details["grid"]) or details["grid"]
    if action == "whistled":
        target = (
            services.gridmap.name(details.get("grid")) or details.get("grid", "")
            if details.get("to") == "street"
            else department_name(services, details.get("to"))
        )
        reason = details.get("reason")
        return texts.CASE_WHISTLED.format(target=target, reason=reason) if reason else target
    if action == "to_verify":
        return details.get("result", "")
    if action == "verify_failed" and details.get("reason"):
        return texts.CASE_REASON.format(reason=details["reason"])
    return ""


def timeline_lines(
    case: Case,
    events: list[CaseEvent],
    services: Services,
    for_staff: bool,
    parts: Sequence[CasePart] = (),
    reporters: int = 1,
    follower: bool = False,
) -> list[str]:
    """A case's header (with a 攻坚哨's parts) and its events, oldest first, each said in full;
    `reporters`: how many people reported it (its reporter and those who follow it); for a
    `follower`, the header leaves out the words of whoever reported it."""
    header = texts.CASE_HEADER_FOLLOWED if follower else texts.CASE_HEADER
    lines = [
        header.format(
            ref=case.ref,
            kind=texts.KIND_NAMES.get(case.kind, case.kind),
            status=STATUS_NAMES.get(case.status, case.status),
            light=light_of(case, services, services.clock()),
            text=case.text,
        )
    ]
    if reporters > 1:
        lines.append(texts.CASE_REPORTERS.format(count=reporters))
    if case.department_code:
        lines.append(
            texts.CASE_DEPARTMENT.format(department=department_name(services, case.department_code))
        )
    if path := posts.grid_path(case, services):
        lines.append(texts.CASE_GRID.format(path=path))
    if case.resolve_by and case.status in ("dispatched", "signed"):
        lines.append(texts.CASE_DEADLINE.format(deadline=local_time(services, case.resolve_by)))
    if case.is_hard:
        now = services.clock()
        lines.append(texts.CASE_HARD.format(lead=department_name(services, case.department_code)))
        lines += [
            texts.CASE_PART.format(
                department=department_name(services, p.department_code),
                status=posts.part_status(p, services, now),
            )
            for p in parts
        ]
    lines.append(texts.CASE_TIMELINE)
    for event in events:
        if event.action == "classified" and not for_staff:
            continue
        fields = {
            "at": local_time(services, event.at),
            "name": EVENT_NAMES.get(event.action, event.action),
            # The reporter's own 回访 words are theirs: a follower sees the rating alone.
            "detail": _event_detail(event, services, for_staff)
            if not (follower and event.action == "rated")
            else texts.RATING_NAMES.get((event.details or {}).get("rating", ""), ""),
        }
        template = texts.CASE_EVENT_DETAIL if fields["detail"] else texts.CASE_EVENT
        lines.append(template.format(**fields))
    return lines


def messages_of(lines: list[str], limit: int = MAX_TEXT) -> list[str]:
    """Lines joined into as few messages as Telegram's limit allows (only a line longer
    than a whole message is cut)."""
    messages: list[str] = []
    for line in (fit(line, limit) for line in lines):
        if messages and len(messages[-1]) + 1 + len(line) <= limit:
            messages[-1] += "\n" + line
        else:
            messages.append(line)
    return messages


def case_photos(case: Case, events: list[CaseEvent]) -> list[tuple[str, str | None]]:
    """(file id, caption) of every photo of the case: the reporter's, then each 办结's."""
    photos: list[tuple[str, str | None]] = [
        (photo, texts.CASE_PHOTO_REPORTED if i == 0 else None)
        for i, photo in enumerate(case.photos)
    ]
    resolved = [(event.details or {}) for event in events if event.action == "resolved"]
    # Events from before 办结 photos were recorded say only that there was one: the case
    # keeps the latest.
    files = [
        d.get("photo_file") or (case.resolution_photo if d.get("photo") else None) for d in resolved
    ]
    seen = set(case.photos)
    for file_id in files:
        if file_id and file_id not in seen:
            seen.add(file_id)
            photos.append((file_id, texts.CASE_PHOTO_RESOLVED))
    return photos


async def case_timeline(update: Update, context: Context) -> None:
    """/case REF: the timeline, the photos and the location on a map, only for the case's
    reporter (or enterprise) and staff; its followers see the timeline alone."""
    if not context.args:
        await update.effective_message.reply_text(texts.CASE_USAGE)
        return
    ref = cases.normalize_ref(context.args[0])[:32]
    services = context.services
    user_id = update.effective_user.id
    follower = False
    async with services.session() as session:
        case = await cases.case_for_viewer(session, ref, user_id)
        if case is None:  # a follower (关注) sees how it is going, not what was reported
            case = await cases.get_case_by_ref(session, ref)
            follower = case is not None and await followers.follows(session, case.id, user_id)
            case = case if follower else None
        if case is not None:
            events = await cases.case_events(session, case.id)
            case_parts = await cases.parts_of(session, case.id) if case.is_hard else []
            for_staff = await people.get_staff(session, user_id) is not None
            reporters = await followers.reporters_count(session, case.id)
    if case is None:
        await update.effective_message.reply_text(texts.CASE_NOT_FOUND.format(ref=ref))
        return
    lines = timeline_lines(
        case, events, services, for_staff, case_parts, reporters, follower=follower
    )
    for text in messages_of(lines):
        await update.effective_message.reply_text(text)
    if follower:
        return
    await send_photos(update, case_photos(case, events))
    if case.latitude is not None and case.longitude is not None:
        # A map pin Telegram shows natively (group posts carry the coordinates as text).
        await update.effective_message.reply_location(case.latitude, case.longitude)


async def send_photos(update: Update, photos: list[tuple[str, str | None]]) -> None:
    """The photos as albums of up to ten (group posts can carry only the first)."""
    message = update.effective_message
    for start in range(0, len(photos), ALBUM_MAX):
        part = photos[start : start + ALBUM_MAX]
        if len(part) == 1:
            photo, caption = part[0]
            await message.reply_photo(photo, caption=caption and fit(caption, MAX_CAPTION))
        else:
            await message.reply_media_group(
                [InputMediaPhoto(photo, caption=caption) for photo, caption in part]
            )


async def enterprise_home(update: Update, context: Context) -> bool:
    """The enterprise's page (its demands and 提交新诉求); False if not registered yet."""
    services = context.services
    user_id = update.effective_user.id
    async with services.session() as session:
        enterprise = await people.enterprise_of(session, user_id)
        if enterprise is None:
            return False
        demands = await cases.cases_of_reporter(session, user_id, limit=10, kind=ENTERPRISE)
    lines = [
        texts.ENTERPRISE_HOME.format(
            name=enterprise.name,
            code=enterprise.credit_code,
            industry=enterprise.industry or texts.NOT_GIVEN,
            park=enterprise.park or texts.NOT_GIVEN,
        ),
        "",
    ]
    if demands:
        lines += [texts.ENTERPRISE_CASES_TITLE] + [case_line(c, services) for c in demands]
    else:
        lines.append(texts.ENTERPRISE_NO_CASES)
    button = InlineKeyboardButton(texts.BTN_NEW_DEMAND, callback_data=cb.make(cb.NEW_DEMAND, 0, 0))
    await update.effective_message.reply_text(
        fit("\n".join(lines), MAX_TEXT), reply_markup=InlineKeyboardMarkup([[button]])
    )
    return True
