"""The reporter's conversation: 随手拍 for residents and 企业吹哨 for enterprises.

In the style of python-telegram-bot's conversationbot.py: named states, one small callback per
step that returns the next state, and the ConversationHandler assembled in `build()`.

    /report ─▶ DESCRIBE ─▶ PHOTO (/skip) ─▶ LOCATION (/skip) ─▶ CONFIRM ─▶ submitted
    /enterprise (first time) ─▶ REG_NAME ─▶ REG_CODE ─▶ REG_INDUSTRY ─▶ REG_PARK (/skip)
        ─▶ registered ─▶ DESCRIBE ─▶ …
    CONFIRM ─ 修改 ─▶ EDIT ─▶ DESCRIBE | PHOTO | LOCATION ─▶ CONFIRM

The draft lives in context.user_data["draft"], which bot.persistence keeps in the store, so a
half-filled report survives a restart.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import actions, confirmations, duplicates, failpoints, texts, views
from bot import callbacks as cb
from bot.common import (
    alert,
    buttons_start_conversations,
    department_name,
    display_name,
    kick_delivery,
    now_of,
)
from bot.context import Context
from models import drafts, followers, outbox, people
from models.credit_code import validate_credit_code
from models.lifecycle import STATUS_NAMES, CaseError
from models.tables import ENTERPRISE, RESIDENT, Case
from models.validation import InvalidInput

REG_NAME, REG_CODE, DESCRIBE, PHOTO, LOCATION, CONFIRM, EDIT = range(7)
REG_INDUSTRY, REG_PARK = 7, 8  # numbered after the others: saved conversations keep theirs
END = ConversationHandler.END
NAME = "intake"

DRAFT = "draft"  # user_data key of the report being filled in
OFFER = "offer"  # user_data key of a free message the bot offered to turn into a report

Step = Callable[[Update, Context], Awaitable[object]]

PRIVATE = filters.ChatType.PRIVATE
NEW_MESSAGE = filters.UpdateType.MESSAGE & PRIVATE
MENU_TEXTS = (texts.MENU_REPORT, texts.MENU_MY, texts.MENU_ENTERPRISE, texts.MENU_HELP)
MENU = filters.Text(list(MENU_TEXTS))
TYPED = NEW_MESSAGE & filters.TEXT & ~filters.COMMAND & ~MENU
FIELD_MAX = 30  # characters of an enterprise's industry or park


def main_menu() -> ReplyKeyboardMarkup:
    """The reply keyboard under the chat: the four things a reporter does."""
    return ReplyKeyboardMarkup(
        [
            [KeyboardButton(texts.MENU_REPORT), KeyboardButton(texts.MENU_MY)],
            [KeyboardButton(texts.MENU_ENTERPRISE), KeyboardButton(texts.MENU_HELP)],
        ],
        resize_keyboard=True,
    )


# ---------------------------------------------------------------- the draft


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def new_draft(context: Context, kind: str, enterprise: str | None = None) -> dict:
    """Start a fresh draft; its random nonce marks its buttons and makes submitting idempotent."""
    draft = {
        "nonce": secrets.randbelow(2**31 - 1) + 1,
        "kind": kind,
        "enterprise": enterprise,
        "text": None,
        "text_msg": None,
        "photos": [],
        "lat": None,
        "lon": None,
        "address": None,
        "out_of_area": False,
        "editing": False,
        "summary_shown": False,
        "touched": _iso(now_of(context)),
    }
    context.user_data[DRAFT] = draft
    return draft


def draft_of(context: Context) -> dict | None:
    return context.user_data.get(DRAFT)


def drop_draft(context: Context) -> None:
    context.user_data.pop(DRAFT, None)


def idle_limit(context: Context) -> timedelta:
    return timedelta(minutes=context.services.settings.conversation.idle_timeout_minutes)


def step(callback: Step) -> Step:
    """Wrap a state callback: end a conversation whose draft is gone or was idle too long.

    The idle sweep (end_idle_conversations) ends idle drafts of a running bot; this check
    also covers the minute between sweeps and a draft restored after a restart.
    """

    @functools.wraps(callback)
    async def wrapper(update: Update, context: Context) -> object:
        draft = draft_of(context)
        now = now_of(context)
        if draft is None:  # submitted, cancelled or ended by the idle sweep meanwhile
            await _after_the_end(update, context)
            return END
        if _idle(draft, now, idle_limit(context)):
            drop_draft(context)
            if update.callback_query:
                await update.callback_query.answer()
            await _reply(update, _timed_out_text(context, draft), reply_markup=main_menu())
            return END
        draft["touched"] = _iso(now)
        return await callback(update, context)

    return wrapper


async def _after_the_end(update: Update, context: Context) -> None:
    """An update for a conversation that has ended: what it would get outside one."""
    if update.callback_query:  # e.g. the second of two taps on 确认提交
        if not await answer_submitted_press(update, context):
            await update.callback_query.answer(texts.BUTTON_EXPIRED, show_alert=True)
        return
    message = update.effective_message
    if (
        message is not None
        and (message.text or message.photo)
        and not (message.text or "").startswith("/")
    ):
        await offer_report(update, context)
        return
    await _reply(update, texts.CONVERSATION_ENDED, reply_markup=main_menu())


def _idle(draft: dict, now: datetime, limit: timedelta) -> bool:
    """Whether the draft was last touched longer than `limit` ago."""
    return now - datetime.fromisoformat(draft["touched"]) > limit


def _restart_command(draft: dict) -> str:
    """/report, or /demand for an enterprise's demand."""
    return texts.RESTART_COMMAND.get(draft.get("kind"), texts.RESTART_COMMAND[RESIDENT])


def _timed_out_text(context: Context, draft: dict) -> str:
    return texts.TIMED_OUT.format(
        minutes=int(idle_limit(context).total_seconds() // 60), command=_restart_command(draft)
    )


async def _reply(update: Update, text: str, **kwargs) -> Message | None:
    message = update.effective_message
    if message is None:
        return None
    return await message.reply_text(text, **kwargs)


def text_limits(context: Context) -> tuple[int, int]:
    conv = context.services.settings.conversation
    return conv.min_text_chars, conv.max_text_chars


def description_problem(context: Context, text: str) -> str | None:
    """Why a description cannot be used (too short / too long), or None if it is fine."""
    low, high = text_limits(context)
    text = text.strip()
    if len(text) < low:
        return texts.DESCRIPTION_TOO_SHORT.format(min=low)
    if len(text) > high:
        return texts.DESCRIPTION_TOO_LONG.format(length=len(text), max=high)
    return None


def in_district(context: Context, latitude: float, longitude: float) -> bool:
    bbox = context.services.settings.district.bbox
    if not bbox:
        return True
    lon_min, lat_min, lon_max, lat_max = bbox
    return lon_min <= longitude <= lon_max and lat_min <= latitude <= lat_max


# ---------------------------------------------------------------- entry points


async def start_report(update: Update, context: Context) -> int:
    """/report or 我要反映: a resident's report starts with the description."""
    new_draft(context, RESIDENT)
    await _reply(update, texts.ASK_DESCRIPTION)
    return DESCRIBE


async def _enterprise_name(update: Update, context: Context) -> str | None:
    async with context.services.session() as session:
        enterprise = await people.enterprise_of(session, update.effective_user.id)
        return enterprise.name if enterprise else None


async def start_enterprise(update: Update, context: Context) -> int | None:
    """/enterprise or 企业吹哨: register once, otherwise show the enterprise's demands."""
    if await views.enterprise_home(update, context):
        return None  # registered: the home page offers 提交新诉求; nothing to fill in
    new_draft(context, ENTERPRISE)
    await _reply(update, texts.ASK_ENTERPRISE_NAME)
    return REG_NAME


async def start_demand(update: Update, context: Context) -> int:
    """/demand or the 提交新诉求 button: a registered enterprise describes a demand."""
    if update.callback_query:
        await update.callback_query.answer()
    name = await _enterprise_name(update, context)
    new_draft(context, ENTERPRISE, enterprise=name)
    if name is None:
        await _reply(update, texts.ASK_ENTERPRISE_NAME)
        return REG_NAME
    await _reply(update, texts.ASK_DEMAND)
    return DESCRIBE


async def offer_report(update: Update, context: Context) -> None:
    """A free message outside a conversation: offer to start a report with it (kept meanwhile)."""
    message = update.message
    text = message.text or message.caption or ""
    photos = [message.photo[-1].file_id] if message.photo else []
    low, high = text_limits(context)
    length = len(text.strip())
    if not photos and length > high:
        await message.reply_text(texts.DESCRIPTION_TOO_LONG.format(length=length, max=high))
        return
    if not photos and length < low:
        await message.reply_text(texts.GREETING_HINT)  # "你好" is a greeting, not a report
        return
    nonce = secrets.randbelow(2**31 - 1) + 1
    context.user_data[OFFER] = {
        "nonce": nonce,
        "text": text,
        "photos": photos,
        "message_id": message.message_id,
    }
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.BTN_OFFER_YES, callback_data=cb.make(cb.OFFER, 0, nonce, "yes")
                ),
                InlineKeyboardButton(
                    texts.BTN_OFFER_NO, callback_data=cb.make(cb.OFFER, 0, nonce, "no")
                ),
            ]
        ]
    )
    await message.reply_text(texts.OFFER_REPORT, reply_markup=keyboard)


async def accept_offer(update: Update, context: Context) -> int | None:
    """是，开始反映 under a free message: the message becomes the draft's description."""
    query = update.callback_query
    button = cb.parse(query.data)
    offer = context.user_data.get(OFFER)
    if button is None or offer is None or offer.get("nonce") != button.version:
        await query.answer(texts.BUTTON_EXPIRED, show_alert=True)
        return None
    await query.answer()
    context.user_data.pop(OFFER, None)
    await query.edit_message_reply_markup(reply_markup=None)
    if button.arg != "yes":
        await _reply(update, texts.OFFER_DECLINED)
        return None
    draft = new_draft(context, RESIDENT)
    draft["photos"] = list(offer.get("photos", []))
    text = offer.get("text") or ""
    if text and description_problem(context, text) is None:
        draft["text"], draft["text_msg"] = text.strip(), offer.get("message_id")
        return await _after_description(update, context)
    await _reply(update, texts.PHOTO_NEEDS_TEXT if draft["photos"] else texts.ASK_DESCRIPTION)
    return DESCRIBE


# ---------------------------------------------------------------- enterprise registration


@step
async def got_enterprise_name(update: Update, context: Context) -> int:
    name = update.message.text.strip()
    if not 2 <= len(name) <= 100:
        await _reply(update, texts.ENTERPRISE_NAME_INVALID)
        return REG_NAME
    draft_of(context)["enterprise"] = name
    await _reply(update, texts.ASK_CREDIT_CODE)
    return REG_CODE


@step
async def got_credit_code(update: Update, context: Context) -> int:
    """A valid code: ask the industry, unless the enterprise is registered with one already
    (a second person of it signs up)."""
    try:
        code = validate_credit_code(update.message.text)
    except InvalidInput as exc:
        await _reply(update, texts.error_text(exc))
        return REG_CODE
    draft = draft_of(context)
    draft["credit_code"] = code
    async with context.services.session() as session:
        known = await people.enterprise_by_credit_code(session, code)
    if known is not None and known.industry:
        return await _register(update, context)
    await _reply(update, texts.ASK_INDUSTRY, reply_markup=_choices(texts.INDUSTRY_CHOICES))
    return REG_INDUSTRY


def _choices(labels: tuple[str, ...], *extra: str) -> ReplyKeyboardMarkup:
    """A reply keyboard of choices, two a row; typing something else is just as good."""
    buttons = [KeyboardButton(label) for label in (*labels, *extra)]
    return ReplyKeyboardMarkup(
        [buttons[i : i + 2] for i in range(0, len(buttons), 2)], resize_keyboard=True
    )


def _field(update: Update) -> str | None:
    """A typed industry or park, or None if it is too short or too long."""
    value = " ".join(update.message.text.split())
    return value if 2 <= len(value) <= FIELD_MAX else None


@step
async def got_industry(update: Update, context: Context) -> int:
    industry = _field(update)
    if industry is None:
        await _reply(update, texts.INDUSTRY_INVALID.format(max=FIELD_MAX))
        return REG_INDUSTRY
    draft_of(context)["industry"] = industry
    await _reply(
        update, texts.ASK_PARK, reply_markup=_choices(texts.PARK_CHOICES, texts.BTN_NO_PARK)
    )
    return REG_PARK


@step
async def got_park(update: Update, context: Context) -> int:
    park = _field(update)
    if park is None:
        await _reply(update, texts.PARK_INVALID.format(max=FIELD_MAX))
        return REG_PARK
    draft_of(context)["park"] = park
    return await _register(update, context)


@step
async def skip_park(update: Update, context: Context) -> int:
    """/skip or 不在园区."""
    draft_of(context)["park"] = None
    return await _register(update, context)


async def _register(update: Update, context: Context) -> int:
    """Register the enterprise with everything asked, in one transaction, then ask the demand."""
    services = context.services
    draft = draft_of(context)
    try:
        async with services.session() as session:
            enterprise = await people.register_enterprise(
                session,
                update.effective_user.id,
                draft["enterprise"],
                draft["credit_code"],
                draft.get("industry"),
                draft.get("park"),
                now=services.clock(),
            )
    except InvalidInput as exc:  # checked as typed, so not expected: start again from the name
        await _reply(
            update,
            f"{texts.error_text(exc)}\n{texts.ASK_ENTERPRISE_NAME}",
            reply_markup=main_menu(),
        )
        return REG_NAME
    draft["enterprise"] = enterprise.name
    await _reply(
        update,
        texts.ENTERPRISE_REGISTERED.format(
            name=enterprise.name,
            industry=enterprise.industry or texts.NOT_GIVEN,
            park=enterprise.park or texts.NOT_GIVEN,
        ),
        reply_markup=main_menu(),
    )
    await _reply(update, texts.ASK_DEMAND)
    return DESCRIBE


# ---------------------------------------------------------------- description, photo, location


async def _after_description(update: Update, context: Context) -> int:
    if draft_of(context)["photos"]:
        return await _after_step(update, context, LOCATION, texts.ASK_LOCATION)
    return await _after_step(update, context, PHOTO, texts.ASK_PHOTO)


async def _after_step(update: Update, context: Context, next_state: int, prompt: str) -> int:
    """Go on to the next question, or back to the summary when the user was editing."""
    draft = draft_of(context)
    if draft["editing"] or draft["summary_shown"]:
        draft["editing"] = False
        return await show_summary(update, context)
    await _reply(update, prompt)
    return next_state


@step
async def got_description(update: Update, context: Context) -> int:
    text = update.message.text
    problem = description_problem(context, text)
    if problem:
        await _reply(update, problem)
        return DESCRIBE
    draft = draft_of(context)
    draft["text"], draft["text_msg"] = text.strip(), update.message.message_id
    return await _after_description(update, context)


def max_photos(context: Context) -> int:
    return context.services.settings.conversation.max_photos


def _first_photo(context: Context, draft: dict, message) -> None:
    """Start the draft's photos afresh with this one (a new first photo replaces old ones)."""
    draft["photos"], draft["told_photo_limit"] = [], False
    _keep_photo(context, draft, message)


def _keep_photo(context: Context, draft: dict, message) -> bool:
    """Add the message's photo to the draft; False when the draft already has the most."""
    if len(draft["photos"]) >= max_photos(context):
        return False
    draft["photos"].append(message.photo[-1].file_id)
    draft["album"] = message.media_group_id
    return True


@step
async def got_description_photo(update: Update, context: Context) -> int:
    """A photo while we wait for the description: keep it; its caption may be the description."""
    draft = draft_of(context)
    _first_photo(context, draft, update.message)
    caption = update.message.caption or ""
    if caption and description_problem(context, caption) is None:
        draft["text"], draft["text_msg"] = caption.strip(), update.message.message_id
        return await _after_step(update, context, LOCATION, texts.ASK_LOCATION)
    await _reply(update, texts.PHOTO_NEEDS_TEXT)
    return DESCRIBE


@step
async def got_photo(update: Update, context: Context) -> int:
    """The first photo (a new one replaces earlier photos when 重新上传照片 was chosen)."""
    _first_photo(context, draft_of(context), update.message)
    return await _after_step(update, context, LOCATION, texts.ASK_LOCATION)


@step
async def got_more_photo(update: Update, context: Context) -> int:
    """Another photo while we wait for the place: an album arrives as one message per
    photo, so only its first photo gets an answer."""
    draft = draft_of(context)
    same_album = update.message.media_group_id is not None and (
        update.message.media_group_id == draft.get("album")
    )
    if not _keep_photo(context, draft, update.message):
        if not draft.get("told_photo_limit"):
            draft["told_photo_limit"] = True
            await _reply(update, texts.PHOTO_LIMIT.format(max=max_photos(context)))
    elif not same_album:
        await _reply(update, texts.PHOTO_ADDED.format(count=len(draft["photos"])))
    return LOCATION


@step
async def skip_photo(update: Update, context: Context) -> int:
    draft = draft_of(context)
    if draft["editing"]:
        draft["photos"] = []  # 重新上传照片 then /skip: the user wants no photo
    return await _after_step(update, context, LOCATION, texts.ASK_LOCATION)


@step
async def got_location(update: Update, context: Context) -> int:
    draft = draft_of(context)
    location = update.message.location
    venue = update.message.venue
    draft["lat"], draft["lon"] = location.latitude, location.longitude
    draft["address"] = f"{venue.title} {venue.address}"[:300] if venue else None
    draft["out_of_area"] = not in_district(context, location.latitude, location.longitude)
    if draft["out_of_area"]:
        district = context.services.settings.district.name
        await _reply(update, texts.OUT_OF_AREA.format(district=district))
    return await show_summary(update, context)


@step
async def got_address(update: Update, context: Context) -> int:
    address = update.message.text.strip()
    if len(address) > 200:
        await _reply(update, texts.ADDRESS_TOO_LONG.format(max=200))
        return LOCATION
    draft = draft_of(context)
    draft["address"], draft["lat"], draft["lon"], draft["out_of_area"] = address, None, None, False
    return await show_summary(update, context)


@step
async def skip_location(update: Update, context: Context) -> int:
    draft = draft_of(context)
    if draft["editing"]:
        draft["address"], draft["lat"], draft["lon"], draft["out_of_area"] = (
            None,
            None,
            None,
            False,
        )
    return await show_summary(update, context)


# ---------------------------------------------------------------- summary and buttons


def _draft_button(label: str, draft: dict, arg: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=cb.make(cb.DRAFT, 0, draft["nonce"], arg))


def summary_keyboard(draft: dict) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [_draft_button(texts.BTN_SUBMIT, draft, "submit")],
            [
                _draft_button(texts.BTN_EDIT, draft, "edit"),
                _draft_button(texts.BTN_CANCEL, draft, "cancel"),
            ],
        ]
    )


def edit_keyboard(draft: dict) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [_draft_button(texts.BTN_EDIT_TEXT, draft, "text")],
            [
                _draft_button(texts.BTN_EDIT_PHOTO, draft, "photo"),
                _draft_button(texts.BTN_EDIT_LOCATION, draft, "location"),
            ],
            [_draft_button(texts.BTN_BACK, draft, "back")],
        ]
    )


def summary_text(context: Context, draft: dict) -> str:
    services = context.services
    suggestion = actions.suggest(services, draft["text"])
    confident = suggestion.confident and suggestion.label
    department = department_name(services, suggestion.label) if confident else None
    return texts.summary(
        text=draft["text"],
        photo_count=len(draft["photos"]),
        address=draft["address"],
        latitude=draft["lat"],
        longitude=draft["lon"],
        out_of_area=draft["out_of_area"],
        department=department,
        district=services.settings.district.name,
        enterprise=draft["enterprise"] if draft["kind"] == ENTERPRISE else None,
    )


async def show_summary(update: Update, context: Context) -> int:
    """The draft with the suggested department and 确认提交 / 修改 / 取消; before the first
    summary of a report, a similar open case nearby (for an enterprise: its own demand) is
    shown first."""
    draft = draft_of(context)
    if not draft["summary_shown"] and not draft.get("not_same"):
        similar = await duplicates.similar_to_draft(
            context.services, update.effective_user.id, draft
        )
        if similar:
            return await ask_if_same(update, context, similar[0].case)
    draft["summary_shown"] = True
    await _reply(update, summary_text(context, draft), reply_markup=summary_keyboard(draft))
    return CONFIRM


async def ask_if_same(update: Update, context: Context, case: followers.OpenCase) -> int:
    """附近已有人反映：… 是同一个问题吗？ 是 follows that case, 不是 goes on to the summary."""
    draft = draft_of(context)
    draft["same_as"] = case.id
    keyboard = InlineKeyboardMarkup(
        [
            [_draft_button(texts.BTN_FOLLOW, draft, "follow")],
            [_draft_button(texts.BTN_NOT_SAME, draft, "notsame")],
        ]
    )
    ask = texts.DUPLICATE_ASK_ENTERPRISE if draft["kind"] == ENTERPRISE else texts.DUPLICATE_ASK
    await _reply(
        update, ask.format(ref=case.ref, status=STATUS_NAMES[case.status]), reply_markup=keyboard
    )
    return CONFIRM


async def follow_same(update: Update, context: Context, draft: dict) -> int:
    """是，关注该案件: the resident follows the earlier case and the draft ends; a case closed
    meanwhile is said so, and the report goes on to its summary."""
    services, user = context.services, update.effective_user
    query = update.callback_query
    await query.edit_message_reply_markup(reply_markup=None)
    try:
        async with services.session() as session:
            case, _ = await followers.follow(
                session,
                draft["same_as"],
                user.id,
                services.clock(),
                display_name=display_name(user),
            )
            count = await followers.reporters_count(session, case.id)
    except CaseError as exc:
        await _reply(update, texts.error_text(exc))
        draft["not_same"] = True
        return await show_summary(update, context)
    drop_draft(context)
    await _reply(update, texts.FOLLOWED.format(ref=case.ref, count=count), reply_markup=main_menu())
    return END


@step
async def on_draft_button(update: Update, context: Context) -> int | None:
    """确认提交 / 修改 / 取消 and the 修改 choices (answered once what they do is done)."""
    query = update.callback_query
    button = cb.parse(query.data)
    draft = draft_of(context)
    if button is None or button.version != draft["nonce"]:
        await query.answer(texts.BUTTON_EXPIRED, show_alert=True)
        return None
    if button.arg not in DRAFT_CHOICES:
        await query.answer(texts.BUTTON_INVALID, show_alert=True)
        return None
    state = await _draft_choice(update, context, draft, button.arg)
    await query.answer()
    return state


DRAFT_CHOICES = frozenset(
    {"submit", "cancel", "edit", "back", "text", "photo", "location", "follow", "notsame"}
)


async def _draft_choice(update: Update, context: Context, draft: dict, choice: str) -> int | None:
    query = update.callback_query
    if choice == "submit":
        return await submit(update, context)
    if choice == "cancel":
        await query.edit_message_reply_markup(reply_markup=None)
        return await _cancelled(update, context)
    if choice == "follow":
        return await follow_same(update, context, draft)
    if choice == "notsame":
        await query.edit_message_reply_markup(reply_markup=None)
        draft["not_same"] = True
        return await show_summary(update, context)
    if choice == "edit":
        await query.edit_message_reply_markup(reply_markup=edit_keyboard(draft))
        return EDIT
    if choice == "back":
        await query.edit_message_reply_markup(reply_markup=summary_keyboard(draft))
        return CONFIRM
    describe = texts.ASK_DEMAND if draft["kind"] == ENTERPRISE else texts.ASK_DESCRIPTION
    prompts = {
        "text": (DESCRIBE, describe),
        "photo": (PHOTO, texts.ASK_PHOTO),
        "location": (LOCATION, texts.ASK_LOCATION),
    }
    await query.edit_message_reply_markup(reply_markup=None)
    draft["editing"] = True
    state, prompt = prompts[choice]
    await _reply(update, prompt)
    return state


async def submit(update: Update, context: Context) -> int | None:
    """Store and route the report, then tell the reporter its reference (bot/confirmations.py:
    queued with the case, so it arrives even if Telegram or this process fails right after)."""
    services = context.services
    draft = draft_of(context)
    user = update.effective_user
    report = actions.ReportDraft(
        nonce=draft["nonce"],
        text=draft["text"],
        kind=draft["kind"],
        photos=draft["photos"],
        latitude=draft["lat"],
        longitude=draft["lon"],
        address=draft["address"],
        out_of_area=draft["out_of_area"],
    )
    try:
        case, fresh = await actions.submit_report(
            services,
            telegram_id=user.id,
            display_name=display_name(user),
            draft=report,
            confirmation=functools.partial(confirmations.queued, chat_id=user.id, menu=main_menu()),
        )
    except CaseError as exc:
        await _reply(update, texts.error_text(exc))
        return None
    await failpoints.reached("report:committed")
    kick_delivery(context.application)
    drop_draft(context)
    if fresh:
        await confirmations.send(context, case, chat_id=user.id, menu=main_menu())
    else:  # a double tap, or a press redelivered after a crash: the first stored it
        await confirmations.hurry(context, case)
        await _reply(
            update,
            texts.ALREADY_SUBMITTED[case.kind].format(ref=case.ref),
            reply_markup=main_menu(),
        )
    await update.callback_query.edit_message_reply_markup(reply_markup=None)
    if fresh:
        await offer_home(update, context, case)
    return END


def home_offer_markup() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(texts.BTN_HOME, callback_data=cb.make(cb.HOME, 0, 0))]]
    )


async def offer_home(update: Update, context: Context, case: Case) -> None:
    """After a report placed in no grid (and not outside every grid): offer to ask once."""
    if case.grid_code is not None or case.out_of_grid:
        return
    if context.services.gridmap.places is None:
        return
    await update.effective_message.reply_text(texts.HOME_OFFER, reply_markup=home_offer_markup())


async def answer_submitted_press(update: Update, context: Context) -> bool:
    """A 确认提交 press on a draft that was already submitted: answer with its reference.
    False if the press is not one (the caller answers it)."""
    query = update.callback_query
    button = cb.parse(query.data) if query is not None else None
    if button is None or button.verb != cb.DRAFT or button.arg != "submit":
        return False
    async with context.services.session() as session:
        case = await drafts.case_of_draft(session, update.effective_user.id, button.version)
    if case is None:
        return False
    await alert(query, texts.ALREADY_SUBMITTED[case.kind].format(ref=case.ref))
    return True


# ---------------------------------------------------------------- reminders, cancel, timeout


def remind(hint: str) -> Step:
    """A callback that answers anything unexpected in a state with what is expected there
    (it returns None, so the conversation stays in that state)."""

    @step
    async def reminder(update: Update, context: Context) -> None:
        message = update.effective_message
        unsupported = message is not None and not (
            message.text or message.photo or message.location
        )
        await _reply(update, f"{texts.UNSUPPORTED_CONTENT}\n{hint}" if unsupported else hint)

    return reminder


@step
async def description_cannot_be_skipped(update: Update, context: Context) -> None:
    await _reply(update, texts.ONLY_TEXT_HERE)


async def _cancelled(update: Update, context: Context) -> int:
    command = _restart_command(draft_of(context) or {})
    drop_draft(context)
    await _reply(update, texts.CANCELLED.format(command=command), reply_markup=main_menu())
    return END


async def cancel(update: Update, context: Context) -> int:
    """/cancel: drop the draft and leave the conversation."""
    return await _cancelled(update, context)


async def unknown_command(update: Update, context: Context) -> None:
    await _reply(update, texts.UNKNOWN_COMMAND)


async def end_idle_conversations(context: Context) -> None:
    """Job: end every report left idle longer than idle_timeout_minutes and tell the reporter.

    One sweep a minute instead of PTB's conversation_timeout, which schedules and removes
    a timer job on every single update (a twentieth of the bot's CPU under load). The
    conversation's state is left as it is: the next update finds no draft (see step). The
    notices go through the outbox, which keeps within Telegram's limits however many
    reports end at once (after a restart, say) and retries a failed send.
    """
    app = context.application
    now, limit = now_of(context), idle_limit(context)
    ended = {
        user_id: draft
        for user_id, data in app.user_data.items()
        if (draft := data.get(DRAFT)) and _idle(draft, now, limit)
    }
    if not ended:
        return
    for user_id in ended:
        app.user_data[user_id].pop(DRAFT, None)
    app.mark_data_for_update_persistence(user_ids=list(ended))
    async with context.services.session() as session:  # a reporter's chat is their id
        await outbox.enqueue_many(
            session,
            [
                outbox.push_row(
                    key=f"idle:{user_id}:{draft['nonce']}",
                    chat_id=user_id,
                    text=_timed_out_text(context, draft),
                    kind="timeout",
                    now=now,
                )
                for user_id, draft in ended.items()
            ],
        )
    kick_delivery(app)


def idle_sweep_seconds(idle_minutes: float) -> float:
    """How often end_idle_conversations runs: a minute, more often for very short limits."""
    return max(0.2, min(60.0, idle_minutes * 60 / 10))


# ---------------------------------------------------------------- assembly


def build() -> ConversationHandler:
    """The reporter ConversationHandler (private chats), persistent under the name "intake"."""
    skip = CommandHandler("skip", skip_photo, filters=PRIVATE)
    anything = NEW_MESSAGE & ~filters.COMMAND
    draft_buttons = CallbackQueryHandler(on_draft_button, pattern=cb.pattern(cb.DRAFT))
    with buttons_start_conversations():
        return ConversationHandler(
            entry_points=[
                CommandHandler("report", start_report, filters=PRIVATE),
                MessageHandler(NEW_MESSAGE & filters.Text([texts.MENU_REPORT]), start_report),
                CommandHandler("enterprise", start_enterprise, filters=PRIVATE),
                MessageHandler(
                    NEW_MESSAGE & filters.Text([texts.MENU_ENTERPRISE]), start_enterprise
                ),
                CommandHandler("demand", start_demand, filters=PRIVATE),
                CallbackQueryHandler(start_demand, pattern=cb.pattern(cb.NEW_DEMAND)),
                CallbackQueryHandler(accept_offer, pattern=cb.pattern(cb.OFFER)),
            ],
            states={
                REG_NAME: [
                    MessageHandler(TYPED, got_enterprise_name),
                    MessageHandler(anything, remind(texts.ASK_ENTERPRISE_NAME)),
                ],
                REG_CODE: [
                    MessageHandler(TYPED, got_credit_code),
                    MessageHandler(anything, remind(texts.ASK_CREDIT_CODE)),
                ],
                REG_INDUSTRY: [
                    MessageHandler(TYPED, got_industry),
                    MessageHandler(anything, remind(texts.ASK_INDUSTRY)),
                ],
                REG_PARK: [
                    MessageHandler(NEW_MESSAGE & filters.Text([texts.BTN_NO_PARK]), skip_park),
                    CommandHandler("skip", skip_park, filters=PRIVATE),
                    MessageHandler(TYPED, got_park),
                    MessageHandler(anything, remind(texts.ASK_PARK)),
                ],
                DESCRIBE: [
                    MessageHandler(TYPED, got_description),
                    MessageHandler(NEW_MESSAGE & filters.PHOTO, got_description_photo),
                    CommandHandler("skip", description_cannot_be_skipped, filters=PRIVATE),
                    MessageHandler(anything, remind(texts.ONLY_TEXT_HERE)),
                ],
                PHOTO: [
                    MessageHandler(NEW_MESSAGE & filters.PHOTO, got_photo),
                    skip,
                    MessageHandler(
                        NEW_MESSAGE & filters.Document.IMAGE, remind(texts.PHOTO_AS_FILE)
                    ),
                    MessageHandler(anything, remind(texts.ONLY_PHOTO_HERE)),
                ],
                LOCATION: [
                    MessageHandler(NEW_MESSAGE & filters.LOCATION, got_location),
                    MessageHandler(NEW_MESSAGE & filters.PHOTO, got_more_photo),
                    MessageHandler(TYPED, got_address),
                    CommandHandler("skip", skip_location, filters=PRIVATE),
                    MessageHandler(anything, remind(texts.ONLY_LOCATION_HERE)),
                ],
                CONFIRM: [draft_buttons, MessageHandler(anything, remind(texts.PRESS_A_BUTTON))],
                EDIT: [draft_buttons, MessageHandler(anything, remind(texts.ASK_WHAT_TO_EDIT))],
            },
            fallbacks=[
                CommandHandler("cancel", cancel),
                MessageHandler(NEW_MESSAGE & filters.COMMAND, unknown_command),
            ],
            name=NAME,
            persistent=True,
            allow_reentry=True,
        )
