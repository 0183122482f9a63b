"""Triage staff's buttons on the triage group's posts: 确认, 改派/重新分派 (department list),
标记紧急, and 同意/不同意 on extension requests."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, ContextTypes

from bot import callbacks as cb
from bot import posts, routing, texts
from bot.buttons import done, post_for, press, refuse
from bot.common import alert, department_name, edit_post, local_time
from bot.services import services_of
from models.lifecycle import CaseError

Context = ContextTypes.DEFAULT_TYPE
TRIAGE = posts.TRIAGE_AUDIENCE


async def confirm(update: Update, context: Context) -> None:
    """✅ 确认派至 <suggested>: dispatch to the classifier's suggestion."""
    result = await press(update, context, routing.choose_department, TRIAGE)
    if result:
        await _show_dispatched(update, context, result[1])


async def dispatch_to(update: Update, context: Context) -> None:
    """A department from the list: dispatch (or move) there; a different choice is a
    LabelCorrection (the store records it)."""

    async def action(services, user_id, button):
        if not button.arg or services.settings.department(button.arg) is None:
            raise CaseError(texts.BUTTON_INVALID)
        return await routing.choose_department(services, user_id, button, button.arg)

    result = await press(update, context, action, TRIAGE)
    if result:
        await _show_dispatched(update, context, result[1])


async def _show_dispatched(update: Update, context: Context, acted: routing.Acted) -> None:
    services = services_of(context)
    done_text = texts.DONE_DISPATCHED.format(
        department=department_name(services, acted.case.department_code))
    await edit_post(update.callback_query, *post_for(acted, services, TRIAGE, done_text))
    await done(update.callback_query)


async def urgent(update: Update, context: Context) -> None:
    """🚨 标记紧急."""
    result = await press(update, context, routing.mark_urgent, TRIAGE)
    if result:
        services = services_of(context)
        await edit_post(update.callback_query,
                        *post_for(result[1], services, TRIAGE, texts.DONE_URGENT))
        await done(update.callback_query)


async def show_picker(update: Update, context: Context) -> None:
    """🔀 改派其他部门 / 重新分派: swap the buttons for the department list (nothing stored)."""
    await _swap_keyboard(update, context, picker=True)


async def hide_picker(update: Update, context: Context) -> None:
    """↩️ 返回 from the department list."""
    await _swap_keyboard(update, context, picker=False)


async def _swap_keyboard(update: Update, context: Context, picker: bool) -> None:
    query = update.callback_query
    services = services_of(context)
    button = cb.parse(query.data)
    if button is None:
        await alert(query, texts.BUTTON_INVALID)
        return
    try:
        acted = await routing.check_button(services, query.from_user.id, button)
    except CaseError as exc:
        await refuse(query, services, button, exc, TRIAGE)
        return
    keyboard = (posts.department_picker(acted.case, services) if picker
                else posts.triage_keyboard(acted.case, services))
    await query.edit_message_reply_markup(reply_markup=keyboard)
    await query.answer(texts.PICK_DEPARTMENT if picker else None)


async def decide_extension(update: Update, context: Context) -> None:
    """同意延期 / 不同意 on an extension request."""
    query = update.callback_query
    approve = query.data.startswith(cb.APPROVE_EXT + ":")

    async def action(services, user_id, button):
        return await routing.decide_extension(services, user_id, button, approve)

    result = await press(update, context, action, TRIAGE)
    if result is None:
        return
    services = services_of(context)
    acted = result[1]
    outcome = (texts.DONE_EXT_APPROVED.format(date=local_time(services, acted.case.resolve_by))
               if approve else texts.DONE_EXT_REJECTED)
    footer = posts.footer(outcome, acted.staff.name, local_time(services, services.clock()))
    await edit_post(query, f"{query.message.text or query.message.caption}\n{footer}", None)
    await done(query)


def handlers() -> list[CallbackQueryHandler]:
    return [
        CallbackQueryHandler(confirm, pattern=cb.pattern(cb.CONFIRM)),
        CallbackQueryHandler(dispatch_to, pattern=cb.pattern(cb.TO)),
        CallbackQueryHandler(urgent, pattern=cb.pattern(cb.URGENT)),
        CallbackQueryHandler(show_picker, pattern=cb.pattern(cb.PICK)),
        CallbackQueryHandler(hide_picker, pattern=cb.pattern(cb.BACK)),
        CallbackQueryHandler(decide_extension,
                             pattern=cb.pattern(cb.APPROVE_EXT, cb.REJECT_EXT)),
    ]
