"""Read-only pages for reporters and staff: /my, /case REF and the enterprise home page.

Reporters only ever see their own cases (models.store.case_for_viewer decides); group posts
and these pages never show another person's name or phone number.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Update
from telegram.ext import ContextTypes

from bot import callbacks as cb
from bot import texts
from bot.common import MAX_TEXT, department_name, fit, light_of, local_time
from bot.services import Services, services_of
from models import store
from models.lifecycle import EVENT_NAMES, STATUS_NAMES
from models.tables import ENTERPRISE, RESIDENT, Case, CaseEvent

Context = ContextTypes.DEFAULT_TYPE

def case_line(case: Case, services: Services) -> str:
    """One line of a case list: light, reference, status, the start of the text."""
    return texts.MY_LINE.format(light=light_of(case, services, services.clock()), ref=case.ref,
                                status=STATUS_NAMES.get(case.status, case.status),
                                snippet=texts.snippet(case.text))


async def my_cases(update: Update, context: Context) -> None:
    """/my or 我的反映: the reporter's recent cases, residents' and enterprise's listed apart."""
    services = services_of(context)
    user_id = update.effective_user.id
    async with services.session() as session:
        own = await store.cases_of_reporter(session, user_id, limit=10, kind=RESIDENT)
        demands = await store.cases_of_reporter(session, user_id, limit=10, kind=ENTERPRISE)
    if not own and not demands:
        async with services.session() as session:
            enterprise = await store.enterprise_of(session, user_id)
        await update.effective_message.reply_text(
            texts.MY_EMPTY_ENTERPRISE if enterprise else texts.MY_EMPTY)
        return
    parts = []
    if own:
        parts.append("\n".join([texts.MY_TITLE_RESIDENT] + [case_line(c, services) for c in own]))
    if demands:
        parts.append("\n".join([texts.MY_TITLE_ENTERPRISE]
                               + [case_line(c, services) for c in demands]))
    parts.append(texts.MY_FOOTER)
    await update.effective_message.reply_text(fit("\n\n".join(parts), MAX_TEXT))


def _event_detail(event: CaseEvent, services: Services, for_staff: bool) -> str:
    """What to add after an event's name; internal remarks only for staff."""
    details = event.details or {}
    if event.action == "dispatched" and details.get("department"):
        return department_name(services, details["department"])
    if event.action == "resolved":
        return details.get("result", "")
    if event.action == "rated":
        return texts.RATING_NAMES.get(details.get("rating", ""), "")
    if event.action == "priority_changed" and details.get("priority") == "urgent":
        return "紧急"
    if for_staff and event.action in ("returned", "extension_requested"):
        return details.get("reason", "")
    if for_staff and event.action == "progress_note":
        return details.get("note", "")
    return ""


def timeline_text(case: Case, events: list[CaseEvent], services: Services,
                  for_staff: bool) -> str:
    """A case's header and its events, oldest first."""
    lines = [texts.CASE_HEADER.format(
        ref=case.ref, kind=texts.KIND_NAMES.get(case.kind, case.kind),
        status=STATUS_NAMES.get(case.status, case.status),
        light=light_of(case, services, services.clock()), text=case.text)]
    if case.department_code:
        lines.append(texts.CASE_DEPARTMENT.format(
            department=department_name(services, case.department_code)))
    if case.resolve_by and case.status in ("dispatched", "signed"):
        lines.append(texts.CASE_DEADLINE.format(deadline=local_time(services, case.resolve_by)))
    lines.append(texts.CASE_TIMELINE)
    for event in events:
        if event.action == "classified" and not for_staff:
            continue
        name = EVENT_NAMES.get(event.action, event.action)
        detail = _event_detail(event, services, for_staff)
        lines.append(f"  {local_time(services, event.at)}  {name}"
                     + (f"：{texts.snippet(detail, 60)}" if detail else ""))
    return fit("\n".join(lines), MAX_TEXT)


async def case_timeline(update: Update, context: Context) -> None:
    """/case REF: the timeline, the photos and the location on a map, only for the case's
    reporter (or enterprise) and staff."""
    if not context.args:
        await update.effective_message.reply_text(texts.CASE_USAGE)
        return
    ref = store.normalize_ref(context.args[0])[:32]
    services = services_of(context)
    user_id = update.effective_user.id
    async with services.session() as session:
        case = await store.case_for_viewer(session, ref, user_id)
        if case is not None:
            events = await store.case_events(session, case.id)
            for_staff = await store.get_staff(session, user_id) is not None
    if case is None:
        await update.effective_message.reply_text(texts.CASE_NOT_FOUND.format(ref=ref))
        return
    await update.effective_message.reply_text(timeline_text(case, events, services, for_staff))
    await send_photos(update, case.photos)
    if case.latitude is not None and case.longitude is not None:
        # A map pin Telegram shows natively (group posts carry the coordinates as text).
        await update.effective_message.reply_location(case.latitude, case.longitude)


async def send_photos(update: Update, photos: list[str]) -> None:
    """The case's photos, as one album (group posts can carry only the first)."""
    if len(photos) == 1:
        await update.effective_message.reply_photo(photos[0])
    elif photos:
        await update.effective_message.reply_media_group(
            [InputMediaPhoto(photo) for photo in photos[:10]])


async def enterprise_home(update: Update, context: Context) -> bool:
    """The enterprise's page (its demands and 提交新诉求); False if not registered yet."""
    services = services_of(context)
    user_id = update.effective_user.id
    async with services.session() as session:
        enterprise = await store.enterprise_of(session, user_id)
        if enterprise is None:
            return False
        demands = await store.cases_of_reporter(session, user_id, limit=10, kind=ENTERPRISE)
    lines = [texts.ENTERPRISE_HOME.format(
        name=enterprise.name, code=enterprise.credit_code,
        industry=enterprise.industry or texts.NOT_GIVEN,
        park=enterprise.park or texts.NOT_GIVEN), ""]
    if demands:
        lines += [texts.ENTERPRISE_CASES_TITLE] + [case_line(c, services) for c in demands]
    else:
        lines.append(texts.ENTERPRISE_NO_CASES)
    button = InlineKeyboardButton(texts.BTN_NEW_DEMAND, callback_data=cb.make(cb.NEW_DEMAND, 0, 0))
    await update.effective_message.reply_text(fit("\n".join(lines), MAX_TEXT),
                                              reply_markup=InlineKeyboardMarkup([[button]]))
    return True
