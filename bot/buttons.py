"""Shared handling of staff button presses: validate, act, refuse politely, redraw the post."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import CallbackQuery, InlineKeyboardMarkup, Update

from bot import actions, posts, texts
from bot import callbacks as cb
from bot.common import alert, edit_post, kick_delivery, local_time
from bot.context import Context
from bot.services import Services
from models.lifecycle import CaseError, CaseNotFound, StaleVersion

log = logging.getLogger(__name__)

T = TypeVar("T")

Action = Callable[[Services, int, cb.Callback], Awaitable[actions.Acted]]
# Another set of buttons for the post: (services, presser, button) -> (keyboard, hint to the
# presser or None); raises a CaseError saying why not.
KeyboardOf = Callable[
    [Services, int, cb.Callback], Awaitable[tuple[InlineKeyboardMarkup | None, str | None]]
]


def post_for(
    acted: actions.Acted, services: Services, audience: str, done: str | None = None
) -> tuple[str, object]:
    """(text, keyboard) of a triage or department post after an action."""
    footer = None
    if done:
        footer = posts.footer(
            done, acted.staff.name if acted.staff else "", local_time(services, services.clock())
        )
    case = acted.case
    if acted.part is not None:  # a co-department's post of its 攻坚哨 part
        return (
            posts.part_text(case, acted.part, services, footer=footer),
            posts.part_keyboard(case, acted.part),
        )
    if audience == posts.TRIAGE_AUDIENCE:
        return (
            posts.triage_text(
                case, services, enterprise=acted.enterprise, footer=footer, parts=acted.parts
            ),
            posts.triage_keyboard(case, services),
        )
    if audience == posts.GRID_AUDIENCE:
        return (
            posts.grid_text(case, services, enterprise=acted.enterprise, footer=footer),
            posts.grid_keyboard(case),
        )
    return (
        posts.department_text(
            case, services, enterprise=acted.enterprise, footer=footer, parts=acted.parts
        ),
        posts.department_keyboard(case),
    )


async def redraw(
    query: CallbackQuery, services: Services, button: cb.Callback, audience: str
) -> None:
    """Show the case (or the 攻坚哨 part) as it is now on the message whose button went stale."""
    try:
        if button.verb in cb.PART_VERBS:
            acted = await actions.current_part(services, int(button.arg or 0))
        else:
            case, enterprise = await actions.current_case(services, button.case_id)
            acted = actions.Acted(case, None, enterprise)
    except CaseNotFound:
        return
    text, keyboard = post_for(acted, services, audience)
    await edit_post(query, text, keyboard)


async def refuse(
    query: CallbackQuery, services: Services, button: cb.Callback, exc: CaseError, audience: str
) -> None:
    """Tell the presser why nothing happened; a stale post is brought up to date."""
    if isinstance(exc, StaleVersion):
        await redraw(query, services, button, audience)
    await alert(query, texts.error_text(exc))


async def attempt(
    update: Update,
    context: Context,
    audience: str,
    work: Callable[[Services, int, cb.Callback], Awaitable[T]],
) -> tuple[cb.Callback, T] | None:
    """Parse the pressed button and run `work` for the presser: (button, what it returned),
    or None once a bad button or a refusal (CaseError) is answered politely."""
    query = update.callback_query
    services = context.services
    button = cb.parse(query.data)
    if button is None:
        await alert(query, texts.BUTTON_INVALID)
        return None
    try:
        return button, await work(services, query.from_user.id, button)
    except CaseError as exc:
        await refuse(query, services, button, exc, audience)
        return None


async def press(
    update: Update, context: Context, action: Action, audience: str
) -> tuple[cb.Callback, actions.Acted] | None:
    """Run `action` for the pressed button; on any refusal answer politely and return None.

    On success the caller redraws the post and then calls `done(query)`: answering last
    means the presser's spinner stops once everything they see is up to date.
    """
    result = await attempt(update, context, audience, action)
    if result is not None:
        kick_delivery(context.application)
    return result


async def swap_keyboard(
    update: Update, context: Context, audience: str, keyboard_of: KeyboardOf
) -> None:
    """Show another set of buttons on the pressed post (a picker, or its own buttons again);
    nothing is changed, so a refusal only answers the presser (and redraws a stale post)."""
    result = await attempt(update, context, audience, keyboard_of)
    if result is None:
        return
    keyboard, hint = result[1]
    await update.callback_query.edit_message_reply_markup(reply_markup=keyboard)
    await update.callback_query.answer(hint)


async def done(query: CallbackQuery) -> None:
    await query.answer(texts.ACTION_DONE)
