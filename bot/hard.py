"""攻坚哨 in the bot: marking a hard case (🧩 on the triage card, or /gongjian REF for triage
and leaders), the co-departments' buttons on their parts, and a leader's /override.

    🧩 攻坚哨 ─▶ lead department ─▶ co-departments (toggled, 下一步) ─▶ DECISION (typed) ─▶ marked
    ✍️ 签收本部门任务 ─▶ part signed, the lead told
    ✅ 本部门任务办结 ─▶ PART_RESULT (typed) ─▶ part resolved, the lead told

The rules (who may, in which status, when the case may be resolved) are the store's
(models/parts.py, models/lifecycle.py); these handlers only ask and show.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    ConversationHandler,
)

from bot import actions, posts, staff_replies, texts, triage
from bot import callbacks as cb
from bot.buttons import done, post_for, press
from bot.common import department_name, edit_post, kick_delivery
from bot.context import Context
from bot.services import Services
from models import cases, parts
from models.lifecycle import CaseError
from models.tables import Case
from models.validation import InvalidInput

DECISION, PART_RESULT = range(30, 32)
NAME = "hard"  # the ConversationHandler's (persistent) name
PENDING = "hard_action"  # user_data key of the button waiting for words
DEPARTMENT = posts.DEPARTMENT_AUDIENCE


# ---------------------------------------------------------------- choosing the departments


def _lead(services: Services, arg: str | None) -> int:
    """The lead's index in config.toml's department order, from a button."""
    if not (arg or "").isdigit() or int(arg) >= len(services.settings.departments):
        raise CaseError("button_invalid")
    return int(arg)


def _choice(services: Services, arg: str | None) -> tuple[int, int]:
    """(lead index, co-departments' bit mask) from a '<lead>-<mask>' button argument."""
    lead, _, mask = (arg or "").partition("-")
    if not mask.isdigit():
        raise CaseError("button_invalid")
    index, chosen = _lead(services, lead), int(mask)
    if chosen >= 1 << len(services.settings.departments) or chosen >> index & 1:
        raise CaseError("button_invalid")  # a forged choice: unknown department, or the lead
    return index, chosen


def _codes(services: Services, lead: int, chosen: int) -> tuple[str, list[str]]:
    departments = services.settings.departments
    return departments[lead].code, [d.code for i, d in enumerate(departments) if chosen >> i & 1]


def _leads(case: Case, services: Services, button: cb.Callback):
    parts.check_markable(case)
    return posts.hard_lead_picker(case, services), texts.PICK_HARD_LEAD


def _co_departments(case: Case, services: Services, button: cb.Callback):
    parts.check_markable(case)
    if button.verb == cb.HARD_LEAD:
        lead, chosen = _lead(services, button.arg), 0
    else:
        lead, chosen = _choice(services, button.arg)
    return posts.hard_co_picker(case, services, lead, chosen), texts.PICK_HARD_CO


async def show_leads(update: Update, context: Context) -> None:
    """🧩 攻坚哨 (or 返回 from the co-departments): choose the lead department."""
    await triage.swap_keyboard(update, context, _leads)


async def show_co_departments(update: Update, context: Context) -> None:
    """A lead chosen, or a co-department toggled: the co-departments with the choice so far."""
    await triage.swap_keyboard(update, context, _co_departments)


async def begin_decision(update: Update, context: Context) -> int | None:
    """下一步: ask for the 专题会议's decision (who does what, who pays, the deadline)."""
    services = context.services
    button = cb.parse(update.callback_query.data)

    def check(acted: actions.Acted) -> None:
        parts.check_markable(acted.case)
        if not _choice(services, button.arg)[1]:
            raise InvalidInput("hard_needs_co")

    return await staff_replies.begin(
        update,
        context,
        key=PENDING,
        audience=posts.TRIAGE_AUDIENCE,
        state=DECISION,
        prompt=texts.ASK_HARD_DECISION,
        check=check,
    )


async def got_decision(update: Update, context: Context) -> int | None:
    services = context.services
    decision = update.message.text
    waiting = staff_replies.pending(context, PENDING, update.effective_chat.id)
    if waiting is None:
        return ConversationHandler.END
    lead, co = _codes(services, *_choice(services, waiting.get("arg")))

    async def action(services, user_id, button):
        return await actions.mark_hard(services, user_id, button, lead, co, decision)

    names = "、".join(department_name(services, code) for code in co)
    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=posts.TRIAGE_AUDIENCE,
        action=action,
        done=lambda acted: texts.DONE_HARD,
        answer=lambda acted: texts.HARD_MARKED_OK.format(
            ref=acted.case.ref, lead=department_name(services, lead), co=names
        ),
    )


async def gongjian_command(update: Update, context: Context) -> None:
    """/gongjian REF (triage, leaders): the case's lead picker, wherever the command was sent."""
    message = update.effective_message
    if not context.args:
        await message.reply_text(texts.GONGJIAN_USAGE)
        return
    services = context.services
    try:
        case = await actions.case_to_mark_hard(
            services, update.effective_user.id, cases.normalize_ref(context.args[0])[:32]
        )
    except CaseError as exc:
        await message.reply_text(texts.error_text(exc))
        return
    await message.reply_text(
        texts.GONGJIAN_PROMPT.format(ref=case.ref, snippet=texts.snippet(case.text)),
        reply_markup=posts.hard_lead_picker(case, services),
    )


# ---------------------------------------------------------------- the co-departments' parts


async def sign_part(update: Update, context: Context) -> None:
    """✍️ 签收本部门任务: the co-department takes its part; the lead is told."""
    result = await press(update, context, actions.sign_part, DEPARTMENT)
    if result:
        await edit_post(
            update.callback_query,
            *post_for(result[1], context.services, DEPARTMENT, texts.DONE_PART_SIGNED),
        )
        await done(update.callback_query)


async def begin_part_result(update: Update, context: Context) -> int | None:
    """✅ 本部门任务办结: ask what was done."""
    return await staff_replies.begin(
        update,
        context,
        key=PENDING,
        audience=DEPARTMENT,
        state=PART_RESULT,
        prompt=texts.ASK_PART_RESULT,
    )


async def got_part_result(update: Update, context: Context) -> int | None:
    result = update.message.text

    async def action(services, user_id, button):
        return await actions.resolve_part(services, user_id, button, result)

    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=DEPARTMENT,
        action=action,
        done=lambda acted: texts.DONE_PART_RESOLVED,
        answer=lambda acted: texts.PART_RESOLVED_OK.format(ref=acted.case.ref),
    )


# ---------------------------------------------------------------- a leader's override


async def override_command(update: Update, context: Context) -> None:
    """/override REF 理由 (leaders): the 攻坚哨 no longer waits for its open parts."""
    message = update.effective_message
    if len(context.args or ()) < 2:
        await message.reply_text(texts.OVERRIDE_USAGE)
        return
    services = context.services
    ref = cases.normalize_ref(context.args[0])[:32]
    reason = " ".join(context.args[1:])
    try:
        acted = await actions.override_parts(services, update.effective_user.id, ref, reason)
    except CaseError as exc:
        await message.reply_text(texts.error_text(exc))
        return
    kick_delivery(context.application)
    names = "、".join(department_name(services, p.department_code) for p in acted.parts)
    await message.reply_text(
        texts.OVERRIDE_OK.format(
            ref=acted.case.ref, departments=names, reason=acted.parts[0].result
        )
    )


# ---------------------------------------------------------------- assembly


def build(idle_minutes: float) -> ConversationHandler:
    """The 攻坚哨 buttons that need words (the decision, a part's result), one conversation per
    (chat, person): a leader may mark a case from a private chat as well as from a group."""
    return staff_replies.conversation(
        name=NAME,
        key=PENDING,
        idle_minutes=idle_minutes,
        buttons=[(cb.HARD_TEXT, begin_decision), (cb.PART_RESOLVE, begin_part_result)],
        states={
            DECISION: staff_replies.typed(got_decision),
            PART_RESULT: staff_replies.typed(got_part_result),
        },
    )
