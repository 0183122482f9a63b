"""Triage staff's buttons on the triage group's posts: 确认, 改派/重新分派 (department list, then
确认改派至 X？), 标记紧急, 不予受理 (reasons; 重复反映 and 其他 ask for a few words), and 同意/不同意
on extension requests.

    不予受理 ─▶ 不属于本区职责 / 非政府职能事项 ─▶ not accepted, reporter told
             ├▶ 重复反映 ─▶ DUPLICATE_REF (earlier case's ref) ─▶ merged into it
             └▶ 其他 ─▶ NOT_ACCEPT_REASON (typed reason) ─▶ not accepted
"""

from __future__ import annotations

import re
from collections.abc import Callable

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import (
    ConversationHandler,
)

from bot import actions, buttons, posts, staff_replies, texts
from bot import callbacks as cb
from bot.buttons import done, post_for, press
from bot.common import department_name, edit_post, local_time
from bot.context import Context
from bot.services import Services
from models import cases
from models.lifecycle import (
    NOT_ACCEPTED_NONGOV,
    NOT_ACCEPTED_OTHER,
    NOT_ACCEPTED_REASONS,
    NOT_ACCEPTED_REMIT,
    CaseError,
    target_status,
)
from models.tables import Case

TRIAGE = posts.TRIAGE_AUDIENCE
NOT_ACCEPT_REASON, DUPLICATE_REF = range(20, 22)
NAME = "triage"  # the ConversationHandler's (persistent) name
PENDING = "triage_action"  # user_data key of the button waiting for words
# A case reference inside whatever was typed ("重复 wc-20261124-0007" works too).
_REF = re.compile(r"[A-Za-z]{1,10}-\d{8}-\d{1,6}")


async def confirm(update: Update, context: Context) -> None:
    """✅ 确认派至 <suggested>, or ✅ 确认(改)派至 <arg> after picking from the list: dispatch
    (or move) there; a choice other than the suggestion is a LabelCorrection (the store)."""

    async def action(services, user_id, button):
        if button.arg is not None and services.settings.department(button.arg) is None:
            raise CaseError("button_invalid")
        return await actions.choose_department(services, user_id, button, button.arg)

    result = await press(update, context, action, TRIAGE)
    if result:
        await _show_dispatched(update, context, result[1])


async def _show_dispatched(update: Update, context: Context, acted: actions.Acted) -> None:
    services = context.services
    done_text = texts.DONE_DISPATCHED.format(
        department=department_name(services, acted.case.department_code)
    )
    await edit_post(update.callback_query, *post_for(acted, services, TRIAGE, done_text))
    await done(update.callback_query)


async def urgent(update: Update, context: Context) -> None:
    """🚨 标记紧急."""
    result = await press(update, context, actions.mark_urgent, TRIAGE)
    if result:
        services = context.services
        await edit_post(
            update.callback_query, *post_for(result[1], services, TRIAGE, texts.DONE_URGENT)
        )
        await done(update.callback_query)


async def decide_extension(update: Update, context: Context) -> None:
    """同意延期 / 不同意 on an extension request."""
    query = update.callback_query
    approve = query.data.startswith(cb.APPROVE_EXT + ":")

    async def action(services, user_id, button):
        return await actions.decide_extension(services, user_id, button, approve)

    result = await press(update, context, action, TRIAGE)
    if result is None:
        return
    services = context.services
    acted = result[1]
    outcome = (
        texts.DONE_EXT_APPROVED.format(date=local_time(services, acted.case.resolve_by))
        if approve
        else texts.DONE_EXT_REJECTED
    )
    footer = posts.footer(outcome, acted.staff.name, local_time(services, services.clock()))
    await edit_post(query, f"{query.message.text or query.message.caption}\n{footer}", None)
    await done(query)


# ---------------------------------------------------------------- keyboards (nothing stored)

Screen = Callable[[Case, Services, cb.Callback], tuple[InlineKeyboardMarkup | None, str | None]]


async def swap_keyboard(update: Update, context: Context, screen: Screen) -> None:
    """Show another set of buttons on the post, once the presser may act on it now; `screen`
    gives them and the presser's hint, or raises a CaseError saying why not."""

    async def keyboard_of(services: Services, user_id: int, button: cb.Callback):
        acted = await actions.check_button(services, user_id, button)
        return screen(acted.case, services, button)

    await buttons.swap_keyboard(update, context, TRIAGE, keyboard_of)


def _picker(case: Case, services: Services, button: cb.Callback):
    return posts.department_picker(case, services), texts.PICK_DEPARTMENT


def _own_buttons(case: Case, services: Services, button: cb.Callback):
    return posts.triage_keyboard(case, services), None


def _confirmation(case: Case, services: Services, button: cb.Callback):
    code = button.arg
    if not code or services.settings.department(code) is None:
        raise CaseError("button_invalid")
    if code == case.department_code:
        raise CaseError("already_handling", department=department_name(services, code))
    question = posts.confirm_question(case, services, code)[0]
    return posts.confirm_keyboard(case, services, code), question


def _grids(case: Case, services: Services, button: cb.Callback):
    """修改网格: the streets, then the grids below the one pressed (street → community → grid)."""
    if button.arg is not None and button.arg not in services.gridmap:
        raise CaseError("grid_no_longer_configured")
    target_status("set_grid", case.status)
    hint = (
        texts.PICK_BELOW.format(name=services.gridmap.name(button.arg))
        if button.arg
        else texts.PICK_STREET
    )
    return posts.grid_picker(case, services, button.arg), hint


def _refusable(case: Case) -> None:
    """Raise the lifecycle's polite refusal unless the case can still be not accepted."""
    target_status("not_accept", case.status)


def _reasons(case: Case, services: Services, button: cb.Callback):
    _refusable(case)
    return posts.not_accept_keyboard(case), texts.PICK_NOT_ACCEPT_REASON


async def show_picker(update: Update, context: Context) -> None:
    """🔀 改派其他部门 / 重新分派, or 返回 from a confirmation: the department list."""
    await swap_keyboard(update, context, _picker)


async def hide_picker(update: Update, context: Context) -> None:
    """↩️ 返回 from the department list or the reasons: the post's own buttons."""
    await swap_keyboard(update, context, _own_buttons)


async def ask_to_confirm(update: Update, context: Context) -> None:
    """A department from the list: 确认改派至 X？ with 确认 / 返回 before anything is stored."""
    await swap_keyboard(update, context, _confirmation)


async def show_grids(update: Update, context: Context) -> None:
    """🗺 修改网格, or a street/community in its list: the grids below it."""
    await swap_keyboard(update, context, _grids)


async def set_grid(update: Update, context: Context) -> None:
    """✅ 定为 <grid>: the case is placed there (located_by staff, an event in the trail)."""
    result = await press(update, context, actions.set_grid, TRIAGE)
    if result:
        services = context.services
        done_text = texts.DONE_GRID.format(
            path=services.gridmap.path_names(result[1].case.grid_code)
        )
        await edit_post(update.callback_query, *post_for(result[1], services, TRIAGE, done_text))
        await done(update.callback_query)


async def to_grid(update: Update, context: Context) -> None:
    """🏘 交网格办理: the grid's staff (the deepest grid with any) get the case."""
    result = await press(update, context, actions.to_grid, TRIAGE)
    if result:
        services = context.services
        grid = services.gridmap.name(result[1].case.handling_grid_code)
        await edit_post(
            update.callback_query,
            *post_for(result[1], services, TRIAGE, texts.DONE_TO_GRID.format(grid=grid)),
        )
        await done(update.callback_query)


async def show_reasons(update: Update, context: Context) -> None:
    """🚫 不予受理: the reasons to choose from."""
    await swap_keyboard(update, context, _reasons)


# ---------------------------------------------------------------- 不予受理


async def not_accept_as(update: Update, context: Context) -> None:
    """不属于本区职责 / 非政府职能事项: the case is not accepted; the reporter is told why."""

    async def action(services, user_id, button):
        if button.arg not in (NOT_ACCEPTED_REMIT, NOT_ACCEPTED_NONGOV):
            raise CaseError("button_invalid")
        return await actions.not_accept(services, user_id, button, button.arg)

    result = await press(update, context, action, TRIAGE)
    if result:
        button, acted = result
        done_text = texts.DONE_NOT_ACCEPTED.format(reason=NOT_ACCEPTED_REASONS[button.arg])
        await edit_post(
            update.callback_query, *post_for(acted, context.services, TRIAGE, done_text)
        )
        await done(update.callback_query)


async def begin_other(update: Update, context: Context) -> int | None:
    """其他: ask for the reason the reporter will be told."""
    return await staff_replies.begin(
        update,
        context,
        key=PENDING,
        audience=TRIAGE,
        state=NOT_ACCEPT_REASON,
        prompt=texts.ASK_NOT_ACCEPT_REASON,
        check=lambda acted: _refusable(acted.case),
    )


async def begin_duplicate(update: Update, context: Context) -> int | None:
    """重复反映: ask for the earlier case's reference."""
    return await staff_replies.begin(
        update,
        context,
        key=PENDING,
        audience=TRIAGE,
        state=DUPLICATE_REF,
        prompt=texts.ASK_DUPLICATE_REF,
        check=lambda acted: _refusable(acted.case),
    )


async def got_other_reason(update: Update, context: Context) -> int | None:
    reason = update.message.text

    async def action(services, user_id, button):
        return await actions.not_accept(services, user_id, button, NOT_ACCEPTED_OTHER, reason)

    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=TRIAGE,
        action=action,
        done=lambda acted: texts.DONE_NOT_ACCEPTED.format(reason=reason.strip()),
        answer=lambda acted: texts.NOT_ACCEPTED_OK.format(ref=acted.case.ref),
    )


async def got_duplicate_ref(update: Update, context: Context) -> int | None:
    typed = update.message.text.strip()
    found = _REF.search(typed)
    into = cases.normalize_ref(found[0] if found else typed)

    async def action(services, user_id, button):
        return await actions.merge_duplicate(services, user_id, button, into)

    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=TRIAGE,
        action=action,
        done=lambda acted: texts.DONE_MERGED.format(into=into),
        answer=lambda acted: texts.MERGED_OK.format(ref=acted.case.ref, into=into),
    )


async def merge_into_similar(update: Update, context: Context) -> None:
    """🔗 合并至 WC-… under the duplicate hint (bot/duplicates.py): the case is merged into
    that one, whose notices its reporter follows from now on."""
    result = await press(update, context, actions.merge_into_similar, TRIAGE)
    if result:
        _, acted = result
        services = context.services
        into = await actions.current_case(services, acted.case.merged_into_id)
        await edit_post(
            update.callback_query,
            texts.DUPLICATE_MERGED.format(
                ref=acted.case.ref,
                into=into[0].ref,
                name=acted.staff.name,
                time=local_time(services, services.clock()),
            ),
            None,
        )
        await done(update.callback_query)


def build(idle_minutes: float) -> ConversationHandler:
    """The triage ConversationHandler for the buttons that need words, one per (group, person)."""
    return staff_replies.conversation(
        name=NAME,
        key=PENDING,
        idle_minutes=idle_minutes,
        buttons=[(cb.NOT_ACCEPT_OTHER, begin_other), (cb.DUPLICATE, begin_duplicate)],
        states={
            NOT_ACCEPT_REASON: staff_replies.typed(got_other_reason),
            DUPLICATE_REF: staff_replies.typed(got_duplicate_ref),
        },
    )
