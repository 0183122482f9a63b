"""A local Telegram Bot API server for tests, benchmarks and `whistle demo`.

The emulator speaks the real Bot API over HTTP on 127.0.0.1, so the bot runs through
python-telegram-bot's own HTTP stack exactly as in production. It simulates people and
chats, lets callers inject updates (messages, photos, button presses ...), records what the
bot sends, and can inject faults or enforce Telegram's flood limits.

Typical use::

    emu = TelegramEmulator()
    emu.add_user(1001, "王阿姨")
    await emu.start()
    app = Application.builder().token(TOKEN).base_url(emu.base_url) \
        .base_file_url(emu.base_file_url).build()
    ...
    emu.send_text(1001, "/start")
    reply = await emu.wait_for_message(1001)
"""

from __future__ import annotations

import asyncio
import bisect
import io
import itertools
import json
import logging
import math
import re
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, NamedTuple, Self

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

# Update types Telegram sends when allowed_updates is empty or was never set.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
# Methods that put a new message into a chat; these count against flood limits.
SEND_METHODS = frozenset(
    {"sendmessage", "sendphoto", "sendmediagroup", "sendlocation", "sendvenue", "senddocument"}
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
FAULT_KINDS = frozenset({"429", "500", "502", "timeout", "blocked", "late"})
MAX_TEXT = 4096
MAX_CAPTION = 1024
_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_USER_LINK_RE = re.compile(r"tg://user\?id=(\d+)")  # a mention in the bot's HTML or Markdown


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status, description and optional parameters."""

    def __init__(self, code: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict:
        out: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# ---------------------------------------------------------------- parameters


@dataclass
class UploadedFile:
    """A file the bot uploaded in a multipart request."""

    filename: str
    content_type: str
    data: bytes

    def __repr__(self) -> str:  # what `emu.calls` shows instead of the bytes
        return f"<upload {self.filename!r} {len(self.data)} bytes>"


def _param_str(p: dict, key: str, default: str | None = None) -> str | None:
    value = p.get(key)
    if value is None:
        return default
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _param_int(p: dict, key: str, default: int | None = None) -> int | None:
    value = p.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {key} specified") from None


def _param_float(p: dict, key: str) -> float | None:
    value = p.get(key)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {key} specified") from None


def _param_bool(p: dict, key: str) -> bool:
    value = p.get(key)
    if isinstance(value, str):
        return value.lower() in {"true", "1"}
    return bool(value)


def _param_json(p: dict, key: str) -> Any:
    """Objects arrive JSON-encoded in form bodies and as-is in JSON bodies."""
    value = p.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"can't parse {key} JSON object") from None
    return value


def _require(p: dict, key: str) -> Any:
    value = p.get(key)
    if value is None or value == "":
        raise _bad(f"{key} is empty")
    return value


# ---------------------------------------------------------------- formatting

_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)


class _HtmlText(HTMLParser):
    """Checks Telegram's HTML subset and collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in _HTML_TAGS:
            raise _bad(f'can\'t parse entities: Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            expected = f"</{self.stack[-1]}>" if self.stack else "nothing"
            raise _bad(f'can\'t parse entities: Unmatched end tag "{tag}", expected {expected}')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _render_html(text: str) -> str:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise _bad(
            "can't parse entities: Can't find end tag corresponding to start tag "
            f'"{parser.stack[-1]}"'
        )
    return "".join(parser.parts)


def _render_markdown(text: str) -> str:
    """Legacy Markdown: *bold* _italic_ `code` ```pre``` [text](url); \\ escapes _*`[."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
            continue
        if c in "*_`":
            marker = "```" if text.startswith("```", i) else c
            end = text.find(marker, i + len(marker))
            if end < 0:
                raise _bad(
                    "can't parse entities: Can't find end of the entity starting at "
                    f"byte offset {_byte_offset(text, i)}"
                )
            out.append(text[i + len(marker) : end])
            i = end + len(marker)
            continue
        if c == "[":
            close = text.find("](", i + 1)
            end = text.find(")", close + 2) if close >= 0 else -1
            if close >= 0 and end >= 0:
                out.append(text[i + 1 : close])
                i = end + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")


def _render_markdown_v2(text: str) -> str:
    """MarkdownV2: every reserved character outside an entity must be escaped."""
    out: list[str] = []
    open_marks: list[tuple[str, int]] = []
    i, n = 0, len(text)

    def fail(message: str) -> ApiError:
        return _bad(f"can't parse entities: {message}")

    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                raise fail("Character '\\' is reserved and must be escaped")
            out.append(text[i + 1])
            i += 2
            continue
        if c == "`":
            marker = "```" if text.startswith("```", i) else "`"
            end = text.find(marker, i + len(marker))
            if end < 0:
                raise fail(f"Can't find end of Pre entity at byte offset {_byte_offset(text, i)}")
            body = text[i + len(marker) : end]
            if marker == "```" and "\n" in body:
                body = body.split("\n", 1)[1]  # first line names the language
            out.append(re.sub(r"\\(.)", r"\1", body))
            i = end + len(marker)
            continue
        if c == "]" and open_marks and open_marks[-1][0] == "[":
            open_marks.pop()
            if not text.startswith("(", i + 1):
                raise fail("Character ']' is reserved and must be escaped with the preceding '\\'")
            end = text.find(")", i + 2)
            while end > 0 and text[end - 1] == "\\":
                end = text.find(")", end + 1)
            if end < 0:
                raise fail("Can't find end of a URL")
            i = end + 1
            continue
        mark = None
        if c in "*~[":
            mark = c
        elif c == "_":
            mark = "__" if text.startswith("__", i) else "_"
        elif c == "|" and text.startswith("||", i):
            mark = "||"
        elif c == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # block quote marker at the start of a line
            continue
        if mark is not None:
            if mark != "[" and open_marks and open_marks[-1][0] == mark:
                open_marks.pop()
            else:
                open_marks.append((mark, i))
            i += len(mark)
            continue
        if c in _MDV2_RESERVED:
            raise fail(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        out.append(c)
        i += 1
    if open_marks:
        mark, start = open_marks[-1]
        raise fail(f"Can't find end of {mark} entity at byte offset {_byte_offset(text, start)}")
    return "".join(out)


def render_text(text: str, parse_mode: str | None) -> str:
    """The text a user sees, or ApiError like Telegram's "can't parse entities"."""
    if not parse_mode:
        return text
    mode = parse_mode.lower()
    if mode == "html":
        return _render_html(text)
    if mode == "markdown":
        return _render_markdown(text)
    if mode == "markdownv2":
        return _render_markdown_v2(text)
    raise _bad(f"unsupported parse_mode {parse_mode!r}")


# ---------------------------------------------------------------- keyboards

_INLINE_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


@dataclass
class Markup:
    """A parsed reply_markup: inline rows of (text, callback_data or url), or a reply keyboard."""

    raw: dict | None = None
    inline: list[list[tuple[str, str | None]]] = field(default_factory=list)
    keyboard: list[list[dict]] | None = None  # reply keyboard buttons as dicts with "text"
    remove_keyboard: bool = False
    force_reply: bool = False


def _parse_inline_button(button: Any) -> tuple[str, str | None]:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
    if not button["text"]:
        raise _bad("BUTTON_TEXT_INVALID")
    action = next((key for key in _INLINE_ACTIONS if key in button), None)
    if action is None:
        raise _bad(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if action == "callback_data":
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise _bad("BUTTON_DATA_INVALID")
        return button["text"], data
    if action == "url":
        url = button["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "tg://")):
            raise _bad("BUTTON_URL_INVALID")
        return button["text"], url
    return button["text"], None


def parse_markup(raw: Any, inline_only: bool = False) -> Markup:
    """Validate a reply_markup object the way Telegram does and parse it for assertions."""
    if raw is None:
        return Markup()
    if not isinstance(raw, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in raw:
        rows = raw["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse inline keyboard markup JSON object")
        inline = [[_parse_inline_button(b) for b in row] for row in rows]
        return Markup(raw=raw, inline=inline)
    if inline_only:
        raise _bad("inline keyboard expected")
    if "keyboard" in raw:
        rows = raw["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse reply keyboard markup JSON object")
        keyboard = [[b if isinstance(b, dict) else {"text": str(b)} for b in row] for row in rows]
        if any(not b.get("text") for row in keyboard for b in row):
            raise _bad("keyboard button text is empty")
        return Markup(raw=raw, keyboard=keyboard)
    if raw.get("remove_keyboard"):
        return Markup(raw=raw, remove_keyboard=True)
    if raw.get("force_reply"):
        return Markup(raw=raw, force_reply=True)
    raise _bad("can't parse reply keyboard markup JSON object")


# ---------------------------------------------------------------- people, chats, messages


@dataclass
class SimUser:
    """A simulated Telegram user; its private chat with the bot has chat id == user id."""

    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str = "zh-hans"
    blocked: bool = False

    def as_dict(self) -> dict:
        out: dict[str, Any] = {
            "id": self.id,
            "is_bot": False,
            "first_name": self.first_name,
            "language_code": self.language_code,
        }
        if self.username:
            out["username"] = self.username
        if self.last_name:
            out["last_name"] = self.last_name
        return out


@dataclass
class BotMessage:
    """One message the bot sent, kept up to date by edits (previous states in `edits`)."""

    chat_id: int
    message_id: int
    method: str
    payload: dict  # the Bot API Message object as the chat currently shows it
    markup: Markup
    seq: int  # creation order across all chats (see TelegramEmulator.last_seq)
    index: int  # position among the bot's messages in this chat
    raw_text: str | None = None  # text/caption exactly as the bot sent it (with markup)
    parse_mode: str | None = None
    edits: list[dict] = field(default_factory=list)
    deleted: bool = False
    changed_seq: int = 0  # last_seq at the latest edit or deletion (creation seq before)

    @property
    def text(self) -> str | None:
        return self.payload.get("text")

    @property
    def caption(self) -> str | None:
        return self.payload.get("caption")

    @property
    def content(self) -> str:
        """Text or caption, "" for messages with neither (location, venue)."""
        return self.payload.get("text") or self.payload.get("caption") or ""

    @property
    def photo(self) -> str | None:
        """file_id of the largest photo size, if this is a photo."""
        sizes = self.payload.get("photo")
        return sizes[-1]["file_id"] if sizes else None

    @property
    def document(self) -> dict | None:
        return self.payload.get("document")

    @property
    def location(self) -> tuple[float, float] | None:
        loc = self.payload.get("location")
        return (loc["latitude"], loc["longitude"]) if loc else None

    @property
    def venue(self) -> dict | None:
        return self.payload.get("venue")

    @property
    def reply_to_message_id(self) -> int | None:
        reply = self.payload.get("reply_to_message")
        return reply["message_id"] if reply else None

    @property
    def keyboard(self) -> list[list[tuple[str, str | None]]]:
        """Inline keyboard rows of (text, callback_data or url)."""
        return self.markup.inline

    @property
    def buttons(self) -> list[tuple[str, str | None]]:
        return [b for row in self.markup.inline for b in row]

    @property
    def reply_keyboard(self) -> list[list[str]] | None:
        if self.markup.keyboard is None:
            return None
        return [[b["text"] for b in row] for row in self.markup.keyboard]

    def asks(self, user_id: int) -> bool:
        """True if this is a ForceReply the user's client answers: in the user's private chat,
        or in a group when not selective or aimed at them (mentioned, or replied to)."""
        if not self.markup.force_reply:
            return False
        if self.chat_id == user_id or not (self.markup.raw or {}).get("selective"):
            return True
        reply = self.payload.get("reply_to_message") or {}
        if reply.get("from", {}).get("id") == user_id:
            return True
        mentioned = {e.get("user", {}).get("id") for e in self.payload.get("entities", [])}
        mentioned.update(int(uid) for uid in _USER_LINK_RE.findall(self.raw_text or ""))
        return user_id in mentioned

    def button_data(self, label: str) -> str:
        """callback_data of the inline button whose text contains `label`."""
        for text, data in self.buttons:
            if label in text and data is not None:
                return data
        raise KeyError(f"消息 {self.message_id} 没有按钮 {label!r}: {self.buttons}")

    def __repr__(self) -> str:
        flag = " deleted" if self.deleted else ""
        return (
            f"<BotMessage chat={self.chat_id} id={self.message_id}{flag} "
            f"{self.content[:60]!r} buttons={self.buttons}>"
        )


class _Bucket:
    """Token bucket: `capacity` sends at once, refilled at `rate` per second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float):
        self.capacity, self.rate, self.tokens, self.stamp = capacity, rate, capacity, None

    def wait_time(self, now: float) -> float:
        if self.stamp is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class SimChat:
    """A private chat or group, with every message in it indexed by message_id."""

    id: int
    type: str  # private | group | supergroup
    title: str | None = None
    user: SimUser | None = None
    members: set[int] = field(default_factory=set)
    next_message_id: int = 1
    by_id: dict[int, BotMessage | dict] = field(default_factory=dict)
    bot_messages: list[BotMessage] = field(default_factory=list)
    reply_keyboard: list[list[dict]] | None = None  # what the user's keyboard shows now
    bucket: _Bucket | None = None

    def as_dict(self) -> dict:
        if self.user is not None:
            out = {"id": self.id, "type": "private", "first_name": self.user.first_name}
            if self.user.username:
                out["username"] = self.user.username
            return out
        return {"id": self.id, "type": self.type, "title": self.title}

    def new_message_id(self) -> int:
        mid = self.next_message_id
        self.next_message_id += 1
        return mid


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str | None
    data: bytes | None
    mime_type: str = "application/octet-stream"


class ApiCall(NamedTuple):
    """One Bot API request: method name, parsed parameters, time.monotonic() when received."""

    method: str
    params: dict
    time: float


@dataclass
class _Fault:
    kind: str
    retry_after: int
    hold: float | None
    processed: bool


@dataclass
class _Webhook:
    url: str
    secret: str | None
    max_connections: int
    queues: list[deque] = field(default_factory=list)
    wakeups: list[asyncio.Event] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    last_error_date: int | None = None
    last_error_message: str | None = None

    def pending(self) -> int:
        return sum(len(q) for q in self.queues)


def sample_jpeg(seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    """A small real JPEG (a colour gradient that differs per seed), as a phone would send."""
    from PIL import Image  # Pillow comes with matplotlib; imported lazily, used rarely

    width, height = size
    base = (seed * 67 % 256, seed * 131 % 256, seed * 29 % 256)
    image = Image.new("RGB", size, base)
    pixels = image.load()
    for x in range(0, width, 4):
        for y in range(0, height, 4):
            pixels[x, y] = ((base[0] + x) % 256, (base[1] + y) % 256, base[2])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):  # not an image: Telegram would still take it
        return (640, 480)


Listener = Callable[[str, Any], None]


# ---------------------------------------------------------------- the emulator


class TelegramEmulator:
    """A Bot API server on 127.0.0.1 with simulated users, groups and fault injection.

    stats keys: requests, updates, updates_delivered, updates_filtered, sent, edits,
    faults (injected by fail_next), 429 (flood-limit answers only, with enforce_limits),
    webhook_posts, webhook_errors.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_id: int = 7000000001,
        bot_username: str = "whistle_demo_bot",
        bot_name: str = "吹哨报到",
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_limits: bool = False,
        private_burst: int = 3,
        timeout_hold: float = 6.0,
        webhook_timeout: float = 10.0,
    ):
        self.token = token
        if token and token.split(":", 1)[0].isdigit():
            bot_id = int(token.split(":", 1)[0])  # Telegram's bot id is the token's prefix
        self.bot_user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        self.host, self.port = host, port
        self.enforce_limits = enforce_limits
        self.private_burst = private_burst
        self.timeout_hold = timeout_hold
        self.webhook_timeout = webhook_timeout

        self.users: dict[int, SimUser] = {}
        self.chats: dict[int, SimChat] = {}
        self.calls: list[ApiCall] = []
        self.stats: Counter = Counter()
        self.callback_answers: dict[str, dict] = {}
        self.commands: dict[str, list[dict]] = {}

        self._files: dict[str, StoredFile] = {}
        self._file_paths: dict[str, str] = {}  # file_path -> file_id, for downloads
        self._file_counter = itertools.count(1)
        self._update_ids = itertools.count(100001)
        self._updates: dict[int, dict] = {}  # every update ever created, for redeliver()
        self._pending: deque[dict] = deque()  # created, not yet confirmed by getUpdates offset
        self._forced: deque[dict] = deque()  # redelivered updates, sent whatever the offset
        self._allowed_updates = DEFAULT_UPDATE_TYPES
        self._poller: asyncio.Future | None = None
        self._webhook: _Webhook | None = None
        self._faults: dict[str, deque[_Fault]] = {}
        self._open_queries: dict[str, int] = {}  # callback query id -> chat id
        self._query_ids = itertools.count(1)
        self._global_bucket = _Bucket(30, 30.0)
        self._seq = 0  # counts bot messages, edits, deletions and answers across all chats
        self._injection_seq = 0  # value of _seq when the latest update was injected
        self._chat_conds: dict[int, asyncio.Condition] = {}
        self._any_cond: asyncio.Condition | None = None
        self._any_waiters = 0
        self._listeners: list[Listener] = []
        self._stop_event: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handlers: dict[str, Callable[[dict], Awaitable[Any]]] = {
            name.lower(): getattr(self, f"_api_{name}")
            for name in (
                "getMe",
                "getUpdates",
                "sendMessage",
                "sendPhoto",
                "sendMediaGroup",
                "sendDocument",
                "sendLocation",
                "sendVenue",
                "editMessageText",
                "editMessageReplyMarkup",
                "editMessageCaption",
                "deleteMessage",
                "answerCallbackQuery",
                "getFile",
                "setWebhook",
                "deleteWebhook",
                "getWebhookInfo",
                "setMyCommands",
                "getMyCommands",
                "deleteMyCommands",
                "sendChatAction",
                "getChat",
                "close",
                "logOut",
            )
        }

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """Pass to ApplicationBuilder.base_url()."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """Pass to ApplicationBuilder.base_file_url()."""
        return f"http://{self.host}:{self.port}/file/bot"

    async def start(self, port: int | None = None) -> None:
        """Bind host:port (a free port when 0) and serve in the running event loop."""
        if port is not None:
            self.port = port
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._stop_event = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._session = aiohttp.ClientSession()
        log.info("Telegram 模拟服务器已启动: %s", self.base_url)

    async def stop(self) -> None:
        """Answer waiting requests, stop webhook delivery and close the server."""
        if self._stop_event is not None:
            self._stop_event.set()
        self._wake_poller("stop")
        await self._stop_webhook(drop=False)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ people and chats

    def add_user(
        self,
        user_id: int,
        first_name: str,
        username: str | None = None,
        last_name: str | None = None,
    ) -> SimUser:
        """Add (or rename) a user; creates its private chat (chat id == user id)."""
        if user_id <= 0:
            raise ValueError("用户 id 必须是正整数")
        user = SimUser(user_id, first_name, username, last_name)
        self.users[user_id] = user
        chat = self.chats.get(user_id)
        if chat is None:
            chat = self.chats[user_id] = SimChat(user_id, "private", user=user)
            chat.bucket = _Bucket(self.private_burst, 1.0)
        chat.user = user
        return user

    def add_group(self, chat_id: int, title: str, members: Iterable[int] = ()) -> SimChat:
        """Add a group (negative id; -100… ids are supergroups) with the given member ids."""
        if chat_id >= 0:
            raise ValueError("群组 id 必须是负数")
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        chat = self.chats.get(chat_id) or SimChat(chat_id, kind, title=title)
        chat.title = title
        chat.bucket = _Bucket(20, 20 / 60)
        self.chats[chat_id] = chat
        for member in members:
            self.add_member(chat_id, member)
        return chat

    def add_member(self, chat_id: int, user_id: int) -> None:
        """Put a known user into a group."""
        if user_id not in self.users:
            raise KeyError(f"未知用户 {user_id}，请先 add_user")
        self.chats[chat_id].members.add(user_id)

    def visible_chats(self, user_id: int) -> list[int]:
        """Chats the user can read: its private chat and the groups it belongs to."""
        groups = [c.id for c in self.chats.values() if c.user is None and user_id in c.members]
        return [user_id, *groups]

    def block_user(self, user_id: int) -> dict:
        """The user blocks the bot: every later send to that chat answers 403."""
        user = self._user(user_id)
        user.blocked = True
        return self._inject("my_chat_member", self._member_change(user, "member", "kicked"))

    def unblock_user(self, user_id: int) -> dict:
        user = self._user(user_id)
        user.blocked = False
        return self._inject("my_chat_member", self._member_change(user, "kicked", "member"))

    def _member_change(self, user: SimUser, old: str, new: str) -> dict:
        return {
            "chat": self.chats[user.id].as_dict(),
            "from": user.as_dict(),
            "date": int(time.time()),
            "old_chat_member": {
                "status": old,
                "user": self.bot_user,
                **({"until_date": 0} if old == "kicked" else {}),
            },
            "new_chat_member": {
                "status": new,
                "user": self.bot_user,
                **({"until_date": 0} if new == "kicked" else {}),
            },
        }

    def _user(self, user_id: int) -> SimUser:
        user = self.users.get(user_id)
        if user is None:
            user = self.add_user(user_id, f"用户{user_id}")
        return user

    # ------------------------------------------------------------ injecting updates

    def send_text(
        self, user_id: int, text: str, chat_id: int | None = None, reply_to: Any = None
    ) -> dict:
        """The user sends text; a leading /command gets a bot_command entity like Telegram."""
        content: dict[str, Any] = {"text": text}
        match = _COMMAND_RE.match(text)
        if match:
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(match.group(0))}
            ]
        return self._user_message(user_id, chat_id, content, reply_to=reply_to)

    def send_command(self, user_id: int, command: str, chat_id: int | None = None) -> dict:
        """The user sends e.g. "/start arg" (a bot_command entity covers "/start")."""
        if not _COMMAND_RE.match(command):
            raise ValueError(f"不是机器人命令: {command!r}")
        return self.send_text(user_id, command, chat_id=chat_id)

    def send_photo(
        self,
        user_id: int,
        caption: str | None = None,
        chat_id: int | None = None,
        data: bytes | None = None,
        media_group_id: str | None = None,
    ) -> dict:
        """The user sends a photo (a generated JPEG unless `data` is given); getFile works.
        Photos of one album share a `media_group_id` and arrive as separate messages."""
        data = data if data is not None else sample_jpeg(next(self._file_counter))
        width, height = _image_size(data)
        thumb = self._store_file(data[: max(1, len(data) // 8)], "photos", "jpg", "image/jpeg")
        full = self._store_file(data, "photos", "jpg", "image/jpeg")
        scale = 90 / max(width, height, 1)
        content: dict[str, Any] = {
            "photo": [
                self._photo_size(thumb, int(width * scale), int(height * scale)),
                self._photo_size(full, width, height),
            ]
        }
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self._user_message(user_id, chat_id, content)

    def send_location(
        self, user_id: int, latitude: float, longitude: float, chat_id: int | None = None
    ) -> dict:
        return self._user_message(
            user_id,
            chat_id,
            {"location": {"latitude": float(latitude), "longitude": float(longitude)}},
        )

    def send_sticker(self, user_id: int, emoji: str = "👍", chat_id: int | None = None) -> dict:
        stored = self._store_file(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "stickers", "webp", "image/webp")
        return self._user_message(
            user_id,
            chat_id,
            {
                "sticker": {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                    "emoji": emoji,
                    "file_size": len(stored.data or b""),
                }
            },
        )

    def send_voice(self, user_id: int, duration: int = 3, chat_id: int | None = None) -> dict:
        stored = self._store_file(b"OggS" + bytes(60), "voice", "oga", "audio/ogg")
        return self._user_message(
            user_id,
            chat_id,
            {
                "voice": {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "duration": duration,
                    "mime_type": "audio/ogg",
                    "file_size": len(stored.data or b""),
                }
            },
        )

    def send_document(
        self,
        user_id: int,
        file_name: str = "材料.pdf",
        data: bytes = b"%PDF-1.4\n%%EOF\n",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        chat_id: int | None = None,
    ) -> dict:
        extension = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self._store_file(data, "documents", extension, mime_type)
        content: dict[str, Any] = {
            "document": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": len(data),
            }
        }
        if caption:
            content["caption"] = caption
        return self._user_message(user_id, chat_id, content)

    def send_contact(
        self,
        user_id: int,
        phone_number: str,
        first_name: str | None = None,
        chat_id: int | None = None,
    ) -> dict:
        user = self._user(user_id)
        return self._user_message(
            user_id,
            chat_id,
            {
                "contact": {
                    "phone_number": phone_number,
                    "first_name": first_name or user.first_name,
                    "user_id": user_id,
                }
            },
        )

    def edit_text(self, user_id: int, message: Any, new_text: str) -> dict:
        """The user edits one of its text messages: an edited_message update."""
        chat_id, message_id = self._message_ref(message)
        stored = self.chats[chat_id].by_id.get(message_id)
        if not isinstance(stored, dict) or stored.get("from", {}).get("id") != user_id:
            raise ValueError(f"用户 {user_id} 不能编辑消息 {message_id}")
        # A new dict, so the original update keeps the text it was delivered with.
        edited = {k: v for k, v in stored.items() if k != "entities"}
        edited.update(text=new_text, edit_date=int(time.time()))
        match = _COMMAND_RE.match(new_text)
        if match:
            edited["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(match.group(0))}
            ]
        self.chats[chat_id].by_id[message_id] = edited
        return self._inject("edited_message", edited)

    def press_button(self, user_id: int, message: Any, callback_data: str) -> dict:
        """The user presses an inline button: a callback_query update (data is not checked)."""
        chat_id, message_id = self._message_ref(message)
        stored = self.chats[chat_id].by_id.get(message_id)
        if stored is None:
            raise KeyError(f"聊天 {chat_id} 中没有消息 {message_id}")
        # A snapshot: later edits of the message must not change this update.
        payload = dict(stored.payload if isinstance(stored, BotMessage) else stored)
        query_id = f"{self.bot_user['id']}{next(self._query_ids):012d}"
        self._open_queries[query_id] = chat_id
        return self._inject(
            "callback_query",
            {
                "id": query_id,
                "from": self._user(user_id).as_dict(),
                "message": payload,
                "chat_instance": str(abs(chat_id) * 7919 % 10**12),
                "data": callback_data,
            },
        )

    def press(self, user_id: int, message: BotMessage, label: str) -> dict:
        """Press the inline button whose text contains `label`."""
        return self.press_button(user_id, message, message.button_data(label))

    def inject_update(self, kind: str, payload: dict) -> dict:
        """Queue any other update type verbatim (e.g. "my_chat_member")."""
        return self._inject(kind, payload)

    def redeliver(self, update_id: int) -> dict:
        """Deliver an already delivered update again with the same update_id."""
        update = self._updates[update_id]
        if self._webhook is not None:
            self._submit_webhook(update)
        else:
            self._forced.append(update)
            self._wake_poller("update")
        return update

    def _user_message(
        self, user_id: int, chat_id: int | None, content: dict, reply_to: Any = None
    ) -> dict:
        user = self._user(user_id)
        chat = self.chats[user_id] if chat_id is None else self.chats.get(chat_id)
        if chat is None:
            raise KeyError(f"未知聊天 {chat_id}，请先 add_group")
        if chat.user is None and user_id not in chat.members:
            raise ValueError(f"用户 {user_id} 不是群 {chat.id} 的成员")
        message = {
            "message_id": chat.new_message_id(),
            "from": user.as_dict(),
            "chat": chat.as_dict(),
            "date": int(time.time()),
            **content,
        }
        if reply_to is not None:
            _, reply_id = self._message_ref(reply_to)
            replied = chat.by_id.get(reply_id)
            if replied is not None:
                message["reply_to_message"] = _without_reply(
                    replied.payload if isinstance(replied, BotMessage) else replied
                )
        chat.by_id[message["message_id"]] = message
        return self._inject("message", message)

    def _inject(self, kind: str, payload: dict) -> dict:
        update = {"update_id": next(self._update_ids), kind: payload}
        self._updates[update["update_id"]] = update
        self._injection_seq = self._seq
        self.stats["updates"] += 1
        if kind not in self._allowed_updates:
            self.stats["updates_filtered"] += 1  # Telegram drops types the bot opted out of
            return update
        if self._webhook is not None:
            self._submit_webhook(update)
        else:
            self._pending.append(update)
            self._wake_poller("update")
        return update

    def _message_ref(self, message: Any) -> tuple[int, int]:
        """(chat_id, message_id) from a BotMessage, Message dict, Update dict or tuple."""
        if isinstance(message, BotMessage):
            return message.chat_id, message.message_id
        if isinstance(message, tuple):
            return int(message[0]), int(message[1])
        if isinstance(message, dict):
            if "update_id" in message:
                for key in ("message", "edited_message"):
                    if key in message:
                        return self._message_ref(message[key])
                if "callback_query" in message:
                    return self._message_ref(message["callback_query"]["message"])
            return int(message["chat"]["id"]), int(message["message_id"])
        raise TypeError(f"无法识别的消息引用: {message!r}")

    # ------------------------------------------------------------ observing the bot

    def messages(self, chat_id: int) -> list[BotMessage]:
        """Every message the bot sent to the chat, oldest first (deleted ones flagged)."""
        chat = self.chats.get(chat_id)
        return list(chat.bot_messages) if chat else []

    def last_message(self, chat_id: int) -> BotMessage | None:
        chat = self.chats.get(chat_id)
        return chat.bot_messages[-1] if chat and chat.bot_messages else None

    def message(self, chat_id: int, message_id: int) -> BotMessage | dict | None:
        """Any message in the chat by id: a BotMessage, or the Message dict a user sent."""
        chat = self.chats.get(chat_id)
        return chat.by_id.get(message_id) if chat else None

    @staticmethod
    def buttons(msg: BotMessage) -> list[tuple[str, str | None]]:
        """Inline buttons of a message in order, as (text, callback_data or url)."""
        return msg.buttons

    def reply_keyboard(self, chat_id: int) -> list[list[str]] | None:
        """The reply keyboard the user of this chat currently sees, if any."""
        chat = self.chats.get(chat_id)
        if chat is None or chat.reply_keyboard is None:
            return None
        return [[b["text"] for b in row] for row in chat.reply_keyboard]

    @property
    def last_seq(self) -> int:
        """Counter of recorded bot messages, edits, deletions and answers (orders events)."""
        return self._seq

    @property
    def pending_updates(self) -> int:
        """Updates injected that the bot has not taken yet (not confirmed by getUpdates)."""
        hook = self._webhook
        return len(self._pending) + len(self._forced) + (hook.pending() if hook else 0)

    async def wait_until_taken(self, timeout: float = 5.0) -> bool:
        """Wait until the bot has taken every injected update; False if it did not in time."""
        deadline = time.monotonic() + timeout
        while self.pending_updates and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.pending_updates

    def call_count(self, method: str) -> int:
        return sum(1 for call in self.calls if call.method.lower() == method.lower())

    def add_listener(self, listener: Listener) -> None:
        """Call listener(event, data) on "message", "edit", "delete" (BotMessage), "answer"."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[BotMessage], bool] | None = None,
        timeout: float = 5.0,
        after: int | BotMessage | dict | None = None,
    ) -> BotMessage:
        """First bot message in the chat matching predicate, waiting up to timeout seconds.

        `after`: an int skips that many bot messages of the chat (pass the earlier
        len(emu.messages(chat_id))); a message skips up to and including it; None (default)
        skips messages recorded before the latest injected update.
        """
        chat = self.chats.get(chat_id)
        if chat is None:
            raise KeyError(f"未知聊天 {chat_id}")
        start = self._start_index(chat, after)
        found: list[BotMessage] = []

        def check() -> bool:
            for msg in itertools.islice(chat.bot_messages, start, None):
                if predicate is None or predicate(msg):
                    found.append(msg)
                    return True
            return False

        cond = self._chat_conds.setdefault(chat_id, asyncio.Condition())
        try:
            async with cond:
                await asyncio.wait_for(cond.wait_for(check), timeout)
        except TimeoutError:
            recent = [m.content[:80] for m in chat.bot_messages[-5:]]
            raise TimeoutError(
                f"{timeout}s 内聊天 {chat_id} 没有出现符合条件的机器人消息 "
                f"(从第 {start} 条起; 最近: {recent})"
            ) from None
        return found[0]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() holds; re-checked after every message, edit or answer."""
        if self._any_cond is None:
            self._any_cond = asyncio.Condition()
        self._any_waiters += 1
        try:
            async with self._any_cond:
                await asyncio.wait_for(self._any_cond.wait_for(predicate), timeout)
        except TimeoutError:
            raise TimeoutError(f"{timeout}s 内条件未满足") from None
        finally:
            self._any_waiters -= 1

    async def wait_for_callback_answer(self, update: dict | str, timeout: float = 5.0) -> dict:
        """The bot's answerCallbackQuery for a press_button() update (or query id)."""
        query_id = update if isinstance(update, str) else update["callback_query"]["id"]
        await self.wait_until(lambda: query_id in self.callback_answers, timeout)
        return self.callback_answers[query_id]

    def _start_index(self, chat: SimChat, after: Any) -> int:
        messages = chat.bot_messages
        if after is None:
            return bisect.bisect_right(messages, self._injection_seq, key=lambda m: m.seq)
        if isinstance(after, int):
            return after
        _, message_id = self._message_ref(after)
        return bisect.bisect_right(messages, message_id, key=lambda m: m.message_id)

    async def _announce(self, event: str, data: Any, chat_id: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, data)
            except Exception:  # a broken observer must not break the API answer
                log.exception("模拟服务器监听器出错")
        cond = self._chat_conds.get(chat_id)
        if cond is not None:
            async with cond:
                cond.notify_all()
        if self._any_waiters and self._any_cond is not None:
            async with self._any_cond:
                self._any_cond.notify_all()

    # ------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        kind: str,
        count: int = 1,
        retry_after: int = 1,
        hold: float | None = None,
        processed: bool = False,
    ) -> None:
        """Make the next `count` calls of `method` fail.

        kind: "429" (RetryAfter), "500"/"502" (NetworkError), "timeout" (held `hold` seconds,
        default `timeout_hold`, so the client times out), "blocked" (403 Forbidden), "late"
        (performed at once, the success answered only after `hold` seconds: a slow network).
        processed=True performs the call before failing, like an answer lost on the way back.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"未知故障类型 {kind!r}，可选: {sorted(FAULT_KINDS)}")
        processed = processed or kind == "late"
        queue = self._faults.setdefault(method.lower(), deque())
        queue.extend(_Fault(kind, retry_after, hold, processed) for _ in range(count))

    async def _fault_response(self, fault: _Fault) -> web.Response:
        self.stats["faults"] += 1
        if fault.kind == "429":
            return _error(
                ApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            )
        if fault.kind == "blocked":
            return _error(ApiError(403, "Forbidden: bot was blocked by the user"))
        if fault.kind == "timeout":
            await self._sleep_unless_stopped(fault.hold or self.timeout_hold)
            return _error(ApiError(504, "Gateway Timeout"))
        code = int(fault.kind)
        return _error(ApiError(code, "Internal Server Error" if code == 500 else "Bad Gateway"))

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        assert self._stop_event is not None
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except TimeoutError:
            pass

    def _check_limits(self, chat: SimChat) -> None:
        """Telegram's flood limits: 30/s overall, ~1/s per private chat, 20/min per group."""
        now = time.monotonic()
        buckets = [self._global_bucket] + ([chat.bucket] if chat.bucket else [])
        wait = max(b.wait_time(now) for b in buckets)
        if wait > 0:
            self.stats["429"] += 1
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        for bucket in buckets:
            bucket.tokens -= 1

    # ------------------------------------------------------------ HTTP layer

    def _token_ok(self, token: str) -> bool:
        return self.token is None or token == self.token

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if not self._token_ok(request.match_info["token"]):
            return _error(ApiError(401, "Unauthorized"))
        try:
            params = await _read_params(request)
        except ApiError as exc:
            return _error(exc)
        self.calls.append(ApiCall(method, params, time.monotonic()))
        self.stats["requests"] += 1
        handler = self._handlers.get(method.lower())
        if handler is None:
            return _error(ApiError(404, "Not Found"))
        faults = self._faults.get(method.lower())
        fault = faults.popleft() if faults else None
        if fault is not None and not fault.processed:
            return await self._fault_response(fault)
        try:
            result = await handler(params)
        except ApiError as exc:
            return _error(exc)
        if fault is not None and fault.kind == "late":
            await self._sleep_unless_stopped(fault.hold or self.timeout_hold)
        elif fault is not None:
            return await self._fault_response(fault)
        return _ok(result)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if not self._token_ok(request.match_info["token"]):
            return _error(ApiError(401, "Unauthorized"))
        path = request.match_info["path"]
        stored = self._files.get(self._file_paths.get(path, ""))
        if stored is None or stored.data is None:
            return _error(ApiError(404, "Not Found"))
        return web.Response(body=stored.data, content_type=stored.mime_type)

    # ------------------------------------------------------------ files

    def _store_file(
        self, data: bytes | None, folder: str, extension: str, mime_type: str
    ) -> StoredFile:
        number = next(self._file_counter)
        stored = StoredFile(
            file_id=f"AgACAgUAAx{secrets.token_urlsafe(24)}",
            file_unique_id=f"AQAD{secrets.token_hex(6)}",
            file_path=f"{folder}/file_{number}.{extension}" if data is not None else None,
            data=data,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        if stored.file_path:
            self._file_paths[stored.file_path] = stored.file_id
        return stored

    def file_bytes(self, file_id: str) -> bytes | None:
        """The bytes behind a file_id (a user's photo or a bot upload)."""
        stored = self._files.get(file_id)
        return stored.data if stored else None

    @staticmethod
    def _photo_size(stored: StoredFile, width: int, height: int) -> dict:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
            "file_size": len(stored.data or b""),
        }

    def _input_file(
        self, p: dict, key: str, folder: str, extension: str, mime_type: str
    ) -> StoredFile:
        """A file parameter: an upload, attach://name, a known file_id or an HTTP URL."""
        value = p.get(key)
        if isinstance(value, str) and value.startswith("attach://"):
            value = p.get(value[len("attach://") :])
        if isinstance(value, UploadedFile):
            if not value.data:
                raise _bad("file must be non-empty")
            return self._store_file(value.data, folder, extension, value.content_type or mime_type)
        if not isinstance(value, str) or not value:
            raise _bad(f"there is no {key} in the request")
        if value in self._files:
            return self._files[value]
        if value.startswith(("http://", "https://")):
            return self._store_file(None, folder, extension, mime_type)  # not fetched here
        raise _bad("wrong file identifier/HTTP URL specified")

    # ------------------------------------------------------------ recording bot messages

    def _chat_for_send(self, p: dict) -> SimChat:
        chat = self._find_chat(_require(p, "chat_id"))
        if chat.user is not None and chat.user.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _find_chat(self, chat_ref: Any) -> SimChat:
        chat: SimChat | None = None
        if isinstance(chat_ref, str) and chat_ref.startswith("@"):
            name = chat_ref[1:].lower()
            chat = next(
                (
                    self.chats[u.id]
                    for u in self.users.values()
                    if (u.username or "").lower() == name
                ),
                None,
            )
        else:
            try:
                chat = self.chats.get(int(chat_ref))
            except (TypeError, ValueError):
                chat = None
        if chat is None:
            raise _bad("chat not found")
        return chat

    def _reply_target(self, chat: SimChat, p: dict) -> dict | None:
        params = _param_json(p, "reply_parameters") or {}
        reply_id = params.get("message_id") or _param_int(p, "reply_to_message_id")
        if not reply_id:
            return None
        target = chat.by_id.get(int(reply_id))
        if target is None:
            if params.get("allow_sending_without_reply") or _param_bool(
                p, "allow_sending_without_reply"
            ):
                return None
            raise _bad("message to be replied not found")
        return _without_reply(target.payload if isinstance(target, BotMessage) else target)

    async def _record_send(
        self, method: str, p: dict, content: dict, raw_text: str | None = None
    ) -> dict:
        """Create a bot message in the chat from the validated content and record it."""
        chat = self._chat_for_send(p)
        markup = parse_markup(_param_json(p, "reply_markup"))
        reply = self._reply_target(chat, p)
        if self.enforce_limits:
            self._check_limits(chat)
        payload: dict[str, Any] = {
            "message_id": chat.new_message_id(),
            "from": self.bot_user,
            "chat": chat.as_dict(),
            "date": int(time.time()),
            **content,
        }
        if reply is not None:
            payload["reply_to_message"] = reply
        if markup.inline:
            payload["reply_markup"] = markup.raw
        if markup.keyboard is not None:
            chat.reply_keyboard = markup.keyboard
        elif markup.remove_keyboard:
            chat.reply_keyboard = None
        self._seq += 1
        msg = BotMessage(
            chat.id,
            payload["message_id"],
            method,
            payload,
            markup,
            self._seq,
            len(chat.bot_messages),
            raw_text,
            _param_str(p, "parse_mode"),
            changed_seq=self._seq,
        )
        chat.by_id[msg.message_id] = msg
        chat.bot_messages.append(msg)
        self.stats["sent"] += 1
        await self._announce("message", msg, chat.id)
        return payload

    def _bot_message_for_edit(self, p: dict) -> BotMessage:
        if p.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        chat = self._chat_for_send(p)
        message_id = _param_int(p, "message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        msg = chat.by_id.get(message_id)
        if msg is None or (isinstance(msg, BotMessage) and msg.deleted):
            raise _bad("message to edit not found")
        if not isinstance(msg, BotMessage):
            raise _bad("message can't be edited")
        return msg

    async def _apply_edit(
        self,
        msg: BotMessage,
        method: str,
        changes: dict,
        markup: Markup,
        raw_text: str | None,
        parse_mode: str | None,
    ) -> dict:
        """Apply an edit in place, keeping the previous state in msg.edits."""
        new_markup = markup.raw if markup.inline else None
        unchanged = all(msg.payload.get(k) == v for k, v in changes.items())
        if unchanged and msg.payload.get("reply_markup") == new_markup:
            raise _bad(
                "message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup "
                "of the message"
            )
        msg.edits.append(
            {
                "method": method,
                "text": msg.text,
                "caption": msg.caption,
                "buttons": msg.buttons,
                "reply_markup": msg.payload.get("reply_markup"),
                "edit_date": msg.payload.get("edit_date"),
            }
        )
        msg.payload.update(changes)
        if new_markup is None:
            msg.payload.pop("reply_markup", None)
        else:
            msg.payload["reply_markup"] = new_markup
        msg.payload["edit_date"] = int(time.time())
        msg.markup = markup
        if raw_text is not None:
            msg.raw_text, msg.parse_mode = raw_text, parse_mode
        self._seq += 1
        msg.changed_seq = self._seq
        self.stats["edits"] += 1
        await self._announce("edit", msg, msg.chat_id)
        return msg.payload

    # ------------------------------------------------------------ API methods

    async def _api_getMe(self, p: dict) -> dict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_getUpdates(self, p: dict) -> list[dict]:
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is "
                "active; use deleteWebhook to delete the webhook first",
            )
        offset = _param_int(p, "offset", 0)
        limit = min(100, max(1, _param_int(p, "limit", 100)))
        timeout = max(0.0, _param_float(p, "timeout") or 0.0)
        allowed = _param_json(p, "allowed_updates")
        if allowed is not None:
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
        self._confirm(offset)
        self._wake_poller("conflict")  # Telegram ends an older long poll when a new one comes
        batch = self._take_batch(limit)
        if batch or timeout == 0 or self._stopped:
            return batch
        waiter = asyncio.get_running_loop().create_future()
        self._poller = waiter
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            if self._poller is waiter:
                self._poller = None
        reason = waiter.result() if waiter.done() else "timeout"
        if reason == "conflict":
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure "
                "that only one bot instance is running",
            )
        if reason == "webhook":
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is "
                "active; use deleteWebhook to delete the webhook first",
            )
        return self._take_batch(limit)

    @property
    def _stopped(self) -> bool:
        return self._stop_event is not None and self._stop_event.is_set()

    def _confirm(self, offset: int) -> None:
        """getUpdates offset confirms (forgets) every update with a lower id."""
        if offset < 0:
            while len(self._pending) > -offset:
                self._pending.popleft()
            return
        while self._pending and self._pending[0]["update_id"] < offset:
            self._pending.popleft()

    def _take_batch(self, limit: int) -> list[dict]:
        batch: list[dict] = []
        while self._forced and len(batch) < limit:
            batch.append(self._forced.popleft())
        batch.extend(itertools.islice(self._pending, limit - len(batch)))
        self.stats["updates_delivered"] += len(batch)
        return batch

    def _wake_poller(self, reason: str) -> None:
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(reason)

    async def _api_sendMessage(self, p: dict) -> dict:
        raw = _param_str(p, "text")
        if not raw:
            raise _bad("message text is empty")
        text = render_text(raw, _param_str(p, "parse_mode"))
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT:
            raise _bad("message is too long")
        return await self._record_send("sendMessage", p, {"text": text}, raw)

    def _caption(self, p: dict) -> tuple[dict, str | None]:
        raw = _param_str(p, "caption")
        if not raw:
            return {}, None
        caption = render_text(raw, _param_str(p, "parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise _bad("message caption is too long")
        return ({"caption": caption} if caption else {}), raw

    async def _api_sendPhoto(self, p: dict) -> dict:
        self._find_chat(_require(p, "chat_id"))
        caption, raw = self._caption(p)
        stored = self._input_file(p, "photo", "photos", "jpg", "image/jpeg")
        width, height = _image_size(stored.data) if stored.data else (640, 480)
        content = {"photo": [self._photo_size(stored, width, height)], **caption}
        return await self._record_send("sendPhoto", p, content, raw)

    async def _api_sendMediaGroup(self, p: dict) -> list[dict]:
        """An album of 2-10 photos: one message each, sharing a media_group_id."""
        self._find_chat(_require(p, "chat_id"))
        media = _param_json(p, "media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("media must contain 2-10 items")
        files = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") != "photo":
                raise _bad("only photos are supported in media groups here")
            files.append(
                self._input_file(
                    {**p, "photo": item.get("media")}, "photo", "photos", "jpg", "image/jpeg"
                )
            )
        group = f"album{next(self._file_counter)}"
        sent = []
        for item, stored in zip(media, files, strict=True):
            width, height = _image_size(stored.data) if stored.data else (640, 480)
            caption, raw = self._caption(item)
            content = {
                "photo": [self._photo_size(stored, width, height)],
                "media_group_id": group,
                **caption,
            }
            sent.append(
                await self._record_send("sendMediaGroup", {**p, "reply_markup": None}, content, raw)
            )
        return sent

    async def _api_sendDocument(self, p: dict) -> dict:
        self._find_chat(_require(p, "chat_id"))
        caption, raw = self._caption(p)
        upload = p.get("document")
        name = upload.filename if isinstance(upload, UploadedFile) else "document"
        extension = name.rsplit(".", 1)[-1] if "." in name else "bin"
        stored = self._input_file(p, "document", "documents", extension, "application/octet-stream")
        content = {
            "document": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_name": name,
                "mime_type": stored.mime_type,
                "file_size": len(stored.data or b""),
            },
            **caption,
        }
        return await self._record_send("sendDocument", p, content, raw)

    @staticmethod
    def _location(p: dict) -> dict:
        lat, lon = _param_float(p, "latitude"), _param_float(p, "longitude")
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad("wrong latitude or longitude specified")
        return {"latitude": lat, "longitude": lon}

    async def _api_sendLocation(self, p: dict) -> dict:
        return await self._record_send("sendLocation", p, {"location": self._location(p)})

    async def _api_sendVenue(self, p: dict) -> dict:
        location = self._location(p)
        title, address = _param_str(p, "title"), _param_str(p, "address")
        if not title or not address:
            raise _bad("venue title and address must be non-empty")
        venue = {"location": location, "title": title, "address": address}
        return await self._record_send("sendVenue", p, {"venue": venue, "location": location})

    async def _api_editMessageText(self, p: dict) -> dict:
        msg = self._bot_message_for_edit(p)
        if "text" not in msg.payload:
            raise _bad("there is no text in the message to edit")
        raw = _param_str(p, "text")
        if not raw:
            raise _bad("message text is empty")
        parse_mode = _param_str(p, "parse_mode")
        text = render_text(raw, parse_mode)
        if len(text) > MAX_TEXT:
            raise _bad("message is too long")
        markup = parse_markup(_param_json(p, "reply_markup"), inline_only=True)
        return await self._apply_edit(
            msg, "editMessageText", {"text": text}, markup, raw, parse_mode
        )

    async def _api_editMessageCaption(self, p: dict) -> dict:
        msg = self._bot_message_for_edit(p)
        if not any(k in msg.payload for k in ("photo", "document")):
            raise _bad("there is no caption in the message to edit")
        caption, raw = self._caption(p)
        markup = parse_markup(_param_json(p, "reply_markup"), inline_only=True)
        changes = {"caption": caption.get("caption")}
        edited = await self._apply_edit(
            msg, "editMessageCaption", changes, markup, raw, _param_str(p, "parse_mode")
        )
        if changes["caption"] is None:
            edited.pop("caption", None)
        return edited

    async def _api_editMessageReplyMarkup(self, p: dict) -> dict:
        msg = self._bot_message_for_edit(p)
        markup = parse_markup(_param_json(p, "reply_markup"), inline_only=True)
        return await self._apply_edit(msg, "editMessageReplyMarkup", {}, markup, None, None)

    async def _api_deleteMessage(self, p: dict) -> bool:
        chat = self._find_chat(_require(p, "chat_id"))
        message_id = _param_int(p, "message_id")
        msg = chat.by_id.get(message_id) if message_id is not None else None
        if msg is None or (isinstance(msg, BotMessage) and msg.deleted):
            raise _bad("message to delete not found")
        if isinstance(msg, dict):
            if chat.user is None:  # the bot is no group admin here
                raise _bad("message can't be deleted")
            del chat.by_id[message_id]
            return True
        msg.deleted = True
        self._seq += 1
        msg.changed_seq = self._seq
        await self._announce("delete", msg, chat.id)
        return True

    async def _api_answerCallbackQuery(self, p: dict) -> bool:
        query_id = _param_str(p, "callback_query_id")
        if query_id not in self._open_queries:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = _param_str(p, "text")
        if text and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        chat_id = self._open_queries.pop(query_id)
        answer = {
            "callback_query_id": query_id,
            "chat_id": chat_id,
            "text": text,
            "show_alert": _param_bool(p, "show_alert"),
            "url": _param_str(p, "url"),
            "cache_time": _param_int(p, "cache_time", 0),
        }
        self.callback_answers[query_id] = answer
        self._seq += 1
        await self._announce("answer", answer, chat_id)
        return True

    async def _api_getFile(self, p: dict) -> dict:
        stored = self._files.get(_param_str(p, "file_id") or "")
        if stored is None:
            raise _bad("invalid file_id")
        out = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        if stored.data is not None:
            out["file_size"] = len(stored.data)
            out["file_path"] = stored.file_path
        return out

    async def _api_setWebhook(self, p: dict) -> bool:
        url = _param_str(p, "url") or ""
        if not url:
            return await self._api_deleteWebhook(p)
        if not url.startswith(("http://", "https://")):
            raise _bad("invalid webhook URL specified")
        secret = _param_str(p, "secret_token")
        if secret is not None and not _SECRET_RE.match(secret):
            raise _bad("secret token contains unallowed characters")
        allowed = _param_json(p, "allowed_updates")
        if allowed is not None:
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
        drop = _param_bool(p, "drop_pending_updates")
        await self._stop_webhook(drop=drop)
        if drop:
            self._pending.clear()
            self._forced.clear()
        connections = min(100, max(1, _param_int(p, "max_connections", 40)))
        self._start_webhook(_Webhook(url, secret, connections))
        self._wake_poller("webhook")
        return True

    async def _api_deleteWebhook(self, p: dict) -> bool:
        drop = _param_bool(p, "drop_pending_updates")
        await self._stop_webhook(drop=drop)
        if drop:
            self._pending.clear()
            self._forced.clear()
        return True

    async def _api_getWebhookInfo(self, p: dict) -> dict:
        hook = self._webhook
        if hook is None:
            return {
                "url": "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._pending) + len(self._forced),
            }
        info: dict[str, Any] = {
            "url": hook.url,
            "has_custom_certificate": False,
            "pending_update_count": hook.pending(),
            "max_connections": hook.max_connections,
            "allowed_updates": sorted(self._allowed_updates),
        }
        if hook.last_error_date:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
        return info

    @staticmethod
    def _commands_key(p: dict) -> str:
        scope = _param_json(p, "scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True) + "|" + (_param_str(p, "language_code") or "")

    async def _api_setMyCommands(self, p: dict) -> bool:
        commands = _param_json(p, "commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("commands must be a list of at most 100 commands")
        for command in commands:
            if not isinstance(command, dict) or not _BOT_COMMAND_RE.match(
                str(command.get("command", ""))
            ):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _api_getMyCommands(self, p: dict) -> list[dict]:
        return self.commands.get(self._commands_key(p), [])

    async def _api_deleteMyCommands(self, p: dict) -> bool:
        self.commands.pop(self._commands_key(p), None)
        return True

    async def _api_sendChatAction(self, p: dict) -> bool:
        self._chat_for_send(p)
        if _param_str(p, "action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _api_getChat(self, p: dict) -> dict:
        chat = self._find_chat(_require(p, "chat_id"))
        info = {
            **chat.as_dict(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat.user is not None and chat.user.last_name:
            info["last_name"] = chat.user.last_name
        return info

    async def _api_close(self, p: dict) -> bool:
        return True

    async def _api_logOut(self, p: dict) -> bool:
        return True

    # ------------------------------------------------------------ webhook delivery

    def _start_webhook(self, hook: _Webhook) -> None:
        hook.queues = [deque() for _ in range(hook.max_connections)]
        hook.wakeups = [asyncio.Event() for _ in range(hook.max_connections)]
        self._webhook = hook
        waiting = sorted([*self._forced, *self._pending], key=lambda u: u["update_id"])
        self._forced.clear()
        self._pending.clear()
        for update in waiting:
            self._submit_webhook(update)
        hook.tasks = [
            asyncio.create_task(self._deliver(hook, i), name=f"webhook-{i}")
            for i in range(hook.max_connections)
        ]

    def _submit_webhook(self, update: dict) -> None:
        """Queue per chat, so one chat's updates arrive in order (chats go in parallel)."""
        hook = self._webhook
        assert hook is not None
        slot = _update_chat_id(update) % hook.max_connections
        hook.queues[slot].append(update)
        hook.wakeups[slot].set()

    async def _deliver(self, hook: _Webhook, slot: int) -> None:
        queue, wakeup = hook.queues[slot], hook.wakeups[slot]
        headers = {"Content-Type": "application/json"}
        if hook.secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret
        backoff = 0.05
        while True:
            if not queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            update = queue[0]
            error = await self._post_update(hook.url, update, headers)
            if error is None:
                queue.popleft()
                self.stats["webhook_posts"] += 1
                backoff = 0.05
                continue
            self.stats["webhook_errors"] += 1
            hook.last_error_date, hook.last_error_message = int(time.time()), error
            await asyncio.sleep(backoff)  # Telegram retries a failed delivery later
            backoff = min(2.0, backoff * 2)

    async def _post_update(self, url: str, update: dict, headers: dict) -> str | None:
        assert self._session is not None
        body = json.dumps(update, ensure_ascii=False).encode("utf-8")
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=timeout
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"Wrong response from the webhook: {response.status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"Connection failed: {exc!r}"

    async def _stop_webhook(self, drop: bool) -> None:
        """Stop delivery; undelivered updates go back to getUpdates unless dropped."""
        hook, self._webhook = self._webhook, None
        if hook is None:
            return
        for task in hook.tasks:
            task.cancel()
        await asyncio.gather(*hook.tasks, return_exceptions=True)
        if not drop:
            left = sorted((u for q in hook.queues for u in q), key=lambda u: u["update_id"])
            self._pending.extend(left)


# ---------------------------------------------------------------- helpers


def _update_chat_id(update: dict) -> int:
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        chat = value.get("chat") or (value.get("message") or {}).get("chat")
        if chat:
            return abs(int(chat["id"]))
        sender = value.get("from")
        if sender:
            return int(sender["id"])
    return update["update_id"]


def _without_reply(message: dict) -> dict:
    """Telegram nests only one level of reply_to_message."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def _ok(result: Any) -> web.Response:
    body = json.dumps({"ok": True, "result": result}, ensure_ascii=False)
    return web.Response(body=body.encode("utf-8"), content_type="application/json")


def _error(error: ApiError) -> web.Response:
    body = json.dumps(error.body(), ensure_ascii=False)
    return web.Response(
        status=error.code, body=body.encode("utf-8"), content_type="application/json"
    )


async def _read_params(request: web.Request) -> dict:
    """Query string plus a JSON, urlencoded or multipart body, as clients send them."""
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise _bad("can't parse JSON body") from None
        if not isinstance(body, dict):
            raise _bad("JSON body must be an object")
        params.update(body)
        return params
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = UploadedFile(value.filename, value.content_type, value.file.read())
            else:
                params[key] = value
    return params
