"""Terminal chat for `whistle demo`: talk to the bot through the emulator as anyone.

Every bot message the current identity can see (its private chat and its groups) is printed
as it arrives; typed lines are sent as that identity. Commands start with ":" (see HELP).

Where typed text goes: the private chat, until the identity presses a button in a group or
the bot asks them something there (a ForceReply aimed at them); from then on that group,
until `:to` moves it. The prompt says where ("水务局王工 → 水务局工作群> ").
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from queue import SimpleQueue
from typing import Any, NamedTuple, TextIO

from emulator import texts as t
from emulator.server import BotMessage, TelegramEmulator


class Role(NamedTuple):
    """What an identity plays, for :who: identities are listed under `title`, grouped by
    `role` in the order the roles first appear; `place` (a department, a grid) follows the
    name, `hint` (what to do first) the chats."""

    role: str
    title: str = ""
    place: str = ""
    hint: str = ""


NO_ROLE = Role("", t.ROLE_OTHER)

# Where a reply-keyboard "send my location" button puts the demo user: 望城区 centre.
DEMO_LOCATION = (28.37, 112.82)
DEMO_PHONE = "13800000000"
WAIT_SECONDS = 10.0  # :wait gives up after this (it returns as soon as the reply shows)
CONTINUE = "\\"  # a line ending in it goes on on the next line
CONTINUATION_PROMPT = "… "
COMMAND_MARKS = (":", "：")  # a Chinese input method types the wide colon
UNREADABLE = object()  # what the keyboard reader hands over for a line it could not decode


class Buttons(NamedTuple):
    """Buttons a number can press: a message's inline buttons, or the reply keyboard it
    brought (still showing), as (text, callback data or url) / keyboard button dicts."""

    message: BotMessage
    reply_keyboard: bool
    items: list


class TerminalChat:
    """The REPL's state: who is typing, where their text goes, and what was already shown."""

    def __init__(
        self,
        emu: TelegramEmulator,
        identities: dict[int, str],
        group_titles: dict[int, str],
        start_as: int,
        out: TextIO,
        echo: bool,
        roles: dict[int, Role] | None = None,
        source: Any = None,
    ):
        if start_as not in identities:
            raise ValueError(f"起始身份 {start_as} 不在身份列表中")
        self.emu = emu
        self.identities = identities
        self.group_titles = group_titles
        self.roles = roles or {}
        self.current = start_as
        self.targets: dict[int, int] = {}  # identity -> the group its text goes to
        self.prompts: dict[int, BotMessage] = {}  # identity -> the question its text answers
        self.typed_under: dict[int, Buttons | None] = {}  # buttons showing at its last text
        self.continued: list[str] = []  # lines ended by "\", waiting for the rest
        self.out = out
        self.echo = echo
        self.source = source  # the input, asked for a prompt to redraw under new output
        self.seen = dict.fromkeys(identities, emu.last_seq)  # last event shown to each one
        self.my_queries: set[str] = set()
        self.events_since_action = 0
        self.action_seq = emu.last_seq
        self.new_event = asyncio.Event()

    # ------------------------------------------------------------ output

    def say(self, text: str) -> None:
        redraw = self.source.waiting_prompt() if self.source is not None else None
        if redraw is not None:  # new output while the person types: keep their line below
            self.out.write("\r\x1b[K" + text + "\n" + redraw)
        else:
            self.out.write(text + "\n")
        if hasattr(self.out, "flush"):
            self.out.flush()

    def chat_label(self, chat_id: int) -> str:
        if chat_id > 0:
            return t.PRIVATE_CHAT
        return self.group_titles.get(chat_id) or self.emu.chats[chat_id].title or str(chat_id)

    def prompt(self) -> str:
        """What the input line starts with: who types, and where to when not privately."""
        if self.continued:
            return CONTINUATION_PROMPT
        name = self.identities[self.current]
        target = self.targets.get(self.current)
        return f"{name}> " if target is None else f"{name} → {self.chat_label(target)}> "

    def show(self, msg: BotMessage, event: str = "message") -> None:
        label = f"[{self.chat_label(msg.chat_id)}] {self.emu.bot_user['first_name']}"
        if event == "delete":
            self.say(t.DELETED.format(label=label))
            return
        mark = t.EDITED if event == "edit" else ""
        lines = [f"{label}{mark}：{describe(msg)}"]
        if msg.buttons:
            lines.append(
                "    " + "  ".join(f"[{i}] {text}" for i, (text, _) in enumerate(msg.buttons, 1))
            )
        if msg.reply_keyboard:
            flat = [text for row in msg.reply_keyboard for text in row]
            lines.append(
                "    " + t.KEYBOARD + "  ".join(f"[{i}] {x}" for i, x in enumerate(flat, 1))
            )
        if self.prompts.get(self.current) is msg:
            lines.append(t.ANSWER_HERE.format(chat=self.chat_label(msg.chat_id)))
        self.say("\n".join(lines))  # one piece: the prompt is redrawn once, below it

    def on_event(self, event: str, data: Any) -> None:
        """Emulator listener: print what the current identity can see."""
        if event == "answer":
            if data["callback_query_id"] in self.my_queries:
                if data.get("text"):
                    prefix = t.ALERT if data.get("show_alert") else t.TOAST
                    self.say(f"    {prefix}：{data['text']}")
                self.count_event()
            return
        if event == "message":
            self.note_questions(data)
        if data.chat_id not in self.emu.visible_chats(self.current):
            return
        self.show(data, event)
        self.seen[self.current] = self.emu.last_seq
        self.count_event()

    def note_questions(self, msg: BotMessage) -> None:
        """A ForceReply aimed at someone: their next text answers it, in that chat."""
        for uid in self.identities:
            if msg.asks(uid) and msg.chat_id in self.emu.visible_chats(uid):
                self.prompts[uid] = msg
                self.move_text(uid, msg.chat_id, announce=False)

    def count_event(self) -> None:
        self.events_since_action += 1
        self.new_event.set()

    def show_unread(self) -> None:
        """On switching identity, show what arrived for it while someone else was typing."""
        since = self.seen.get(self.current, 0)
        unread = [
            m
            for chat_id in self.emu.visible_chats(self.current)
            for m in self.emu.messages(chat_id)
            if m.changed_seq > since and not m.deleted
        ]
        if unread:
            self.say(t.UNREAD.format(count=len(unread)))
            for msg in sorted(unread, key=lambda m: m.changed_seq):
                self.show(msg, "edit" if msg.edits else "message")
                self.count_event()
        self.seen[self.current] = self.emu.last_seq

    # ------------------------------------------------------------ where text goes

    def move_text(self, uid: int, chat_id: int, announce: bool = True) -> None:
        """From now on `uid`'s typed text goes to `chat_id` (its own id: the private chat)."""
        before = self.targets.get(uid)
        if chat_id == uid:
            self.targets.pop(uid, None)
        else:
            self.targets[uid] = chat_id
        after = self.targets.get(uid)
        if announce and after != before and uid == self.current:
            self.say(
                t.TARGET_BACK
                if after is None
                else t.TARGET_MOVED.format(chat=self.chat_label(after))
            )

    def text_chat(self) -> int | None:
        """The group the current identity's text goes to (None: its private chat)."""
        return self.targets.get(self.current)

    # ------------------------------------------------------------ actions

    def action_done(self, since: int | None = None) -> None:
        """What comes after this is new (for :wait); `since`: the bot's events after it."""
        self.events_since_action = 0
        self.action_seq = self.emu.last_seq if since is None else since
        self.new_event.clear()

    def send_text(self, text: str) -> None:
        if not text.startswith("/"):  # a text typed under buttons leaves them showing
            self.typed_under[self.current] = self.buttons_showing()
        chat_id = self.text_chat()
        question = self.prompts.pop(self.current, None)
        answers = question is not None and question.chat_id == (chat_id or self.current)
        self.emu.send_text(
            self.current, text, chat_id=chat_id, reply_to=question if answers else None
        )
        self.action_done()

    def buttons_on(self, msg: BotMessage) -> Buttons | None:
        if msg.buttons:
            return Buttons(msg, False, msg.buttons)
        showing = self.emu.reply_keyboard(msg.chat_id)
        if msg.reply_keyboard and showing == msg.reply_keyboard:
            return Buttons(msg, True, [b for row in msg.markup.keyboard for b in row])
        return None

    def shown_messages(self) -> list[BotMessage]:
        """The current identity's bot messages, latest shown (sent or edited) last."""
        shown = [
            m
            for chat_id in self.emu.visible_chats(self.current)
            for m in self.emu.messages(chat_id)
            if not m.deleted
        ]
        return sorted(shown, key=lambda m: m.changed_seq)

    def buttons_showing(self) -> Buttons | None:
        """What a bare number presses: the buttons on the message shown last; or, when the
        bot answered text typed under buttons with a mere nudge ("请点击上方按钮"), still
        those buttons."""
        shown = self.shown_messages()
        if not shown:
            return None
        if (found := self.buttons_on(shown[-1])) is not None:
            return found
        under = self.typed_under.get(self.current)
        if under is None or self.buttons_on(under.message) != under:
            return None
        later = [m for m in shown if m.changed_seq > under.message.changed_seq]
        return under if not any(self.buttons_on(m) for m in later) else None

    def latest_buttons(self) -> Buttons | None:
        """Buttons of the newest message that has any: what `:press N` presses."""
        for msg in reversed(self.shown_messages()):
            if found := self.buttons_on(msg):
                return found
        return None

    def number(self, text: str) -> None:
        """Digits: a button number if buttons are showing and it is in range, else text."""
        found = self.buttons_showing()
        if found is not None and 1 <= int(text) <= len(found.items):
            self.press_button(found, int(text))
            return
        if found is not None:
            self.say(t.DIGITS_AS_TEXT.format(count=len(found.items), text=text))
        elif (older := self.latest_buttons()) and 1 <= int(text) <= len(older.items):
            self.say(t.DIGITS_NO_BUTTONS.format(text=text))
        self.send_text(text)

    def press(self, number_text: str) -> None:
        found = self.latest_buttons()
        if found is None:
            self.say(t.NO_BUTTONS)
            return
        number = int(number_text) if number_text.isdecimal() else 0
        if not 1 <= number <= len(found.items):
            self.say(t.BUTTON_RANGE.format(count=len(found.items)))
            return
        self.press_button(found, number)

    def press_button(self, found: Buttons, number: int) -> None:
        if found.reply_keyboard:
            self.press_reply_button(found.message.chat_id, found.items[number - 1])
            return
        text, data = found.items[number - 1]
        if data is None or data.startswith(("http://", "https://", "tg://")):
            self.say(t.LINK_BUTTON.format(text=text, url=data or t.NO_LINK))
            return
        update = self.emu.press_button(self.current, found.message, data)
        self.my_queries.add(update["callback_query"]["id"])
        self.say(t.PRESSED.format(text=text))
        self.move_text(self.current, found.message.chat_id)
        self.action_done()

    def press_reply_button(self, chat_id: int, button: dict) -> None:
        group = chat_id if chat_id != self.current else None
        if button.get("request_location"):
            self.emu.send_location(self.current, *DEMO_LOCATION, chat_id=group)
            self.say(t.SENT_LOCATION.format(lat=DEMO_LOCATION[0], lon=DEMO_LOCATION[1]))
        elif button.get("request_contact"):
            self.emu.send_contact(self.current, DEMO_PHONE, chat_id=group)
            self.say(t.SENT_CONTACT.format(phone=DEMO_PHONE))
        else:
            self.emu.send_text(self.current, button["text"], chat_id=group)
            self.say(t.SENT_KEYBOARD_TEXT.format(text=button["text"]))
        self.move_text(self.current, chat_id)
        self.action_done()

    def switch_to(self, who: str) -> None:
        match = self.find_identity(who)
        if match is None:
            return
        self.current = match
        # ":wait" after switching waits for this identity's messages, unread ones included.
        self.action_done(since=self.seen.get(match, 0))
        line = t.NOW_AS.format(name=self.identities[match], uid=match)
        if (target := self.text_chat()) is not None:
            line += t.NOW_AS_TO_GROUP.format(chat=self.chat_label(target))
        self.say(line)
        self.show_unread()

    def find_identity(self, who: str) -> int | None:
        """The identity `who` names (an id, or part of one name); says why when none."""
        who = who.strip()
        if who.lstrip("-").isdigit() and int(who) in self.identities:
            return int(who)
        named = [uid for uid, name in self.identities.items() if who and who in name]
        if len(named) == 1:
            return named[0]
        if named:
            names = "、".join(f"{self.identities[uid]}（{uid}）" for uid in named)
            self.say(t.AMBIGUOUS_IDENTITY.format(who=who, names=names))
        else:
            self.say(t.NO_SUCH_IDENTITY.format(who=who))
        return None

    def list_identities(self) -> None:
        """:who — everyone, grouped by role, with the chats they can talk in."""
        by_role: dict[str, list[int]] = {role.role: [] for role in self.roles.values()}
        for uid in self.identities:
            by_role.setdefault(self.roles.get(uid, NO_ROLE).role, []).append(uid)
        lines = [t.WHO_TITLE]
        for uids in by_role.values():
            if uids:
                lines.append(f"  【{self.roles.get(uids[0], NO_ROLE).title or t.ROLE_OTHER}】")
                lines.extend(self.who_line(uid) for uid in uids)
        self.say("\n".join(lines))

    def who_line(self, uid: int) -> str:
        role = self.roles.get(uid, NO_ROLE)
        groups = [
            t.WHO_GROUP.format(title=self.chat_label(c), chat_id=c)
            for c in self.emu.visible_chats(uid)[1:]
        ]
        where = t.WHO_GROUPS.format(groups="、".join(groups)) if groups else t.WHO_PRIVATE_ONLY
        where += role.hint
        place = t.WHO_PLACE.format(place=role.place) if role.place else ""
        mark = t.WHO_CURRENT if uid == self.current else ""
        return t.WHO_LINE.format(
            uid=uid, name=self.identities[uid], place=place, where=where, mark=mark
        )

    def set_target(self, arg: str) -> None:
        """:to GROUP (an id or part of its title) or :to alone for the private chat."""
        if not arg or arg == t.PRIVATE_CHAT:
            self.targets.pop(self.current, None)
            self.say(t.TO_PRIVATE)
            return
        groups = self.emu.visible_chats(self.current)[1:]
        matches = [c for c in groups if arg == str(c) or arg in self.chat_label(c)]
        if len(matches) != 1:
            self.say(t.NOT_IN_GROUP.format(name=self.identities[self.current], group=arg))
            return
        self.targets[self.current] = matches[0]
        self.say(t.TO_GROUP.format(chat=self.chat_label(matches[0])))

    def send_location(self, arg: str) -> None:
        try:
            lat, lon = (float(x) for x in arg.split())
        except ValueError:
            self.say(t.LOC_USAGE)
            return
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            self.say(t.LOC_RANGE)
            return
        self.emu.send_location(self.current, lat, lon, chat_id=self.text_chat())
        self.action_done()

    def send_photo(self, caption: str) -> None:
        self.emu.send_photo(self.current, caption=caption or None, chat_id=self.text_chat())
        self.say(t.SENT_PHOTO)
        self.action_done()

    async def wait(self, arg: str) -> None:
        """:wait N — until N new bot messages, edits or answers; :wait TEXT — until a bot
        message containing TEXT shows (both since the last action)."""
        if arg and not arg.isdecimal():

            def arrived() -> bool:
                return any(
                    m.changed_seq > self.action_seq and arg in m.content
                    for m in self.shown_messages()
                )
        else:
            wanted = max(1, int(arg)) if arg else 1

            def arrived() -> bool:
                return self.events_since_action >= wanted

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not arrived():
            self.new_event.clear()
            try:
                await asyncio.wait_for(self.new_event.wait(), deadline - loop.time())
            except TimeoutError:
                self.say(t.WAIT_TIMEOUT.format(seconds=WAIT_SECONDS))
                return

    # ------------------------------------------------------------ input

    async def feed(self, raw: str) -> bool:
        """One line as typed; False means quit. A line ending in "\\" waits for the next;
        a pasted block of several lines is one message, unless it is a script of commands."""
        if "\n" in raw and not self.continued and raw.lstrip().startswith(COMMAND_MARKS):
            for line in raw.splitlines():
                if not await self.feed(line):
                    return False
            return True
        if self.echo:
            self.say(self.prompt() + raw)
        if raw.rstrip().endswith(CONTINUE):
            self.continued.append(raw.rstrip()[: -len(CONTINUE)])
            return True
        if self.continued:
            raw, self.continued = "\n".join([*self.continued, raw]), []
        return await self.handle(raw)

    async def finish(self) -> None:
        """End of input: send what a trailing "\\" left waiting."""
        if self.continued:
            text, self.continued = "\n".join(self.continued), []
            await self.handle(text)

    async def handle(self, line: str) -> bool:
        """Run one message or command; False means quit."""
        line = line.strip()
        if not line:
            return True
        if line.isdecimal():
            self.number(line)
            return True
        if not line.startswith(COMMAND_MARKS):
            self.send_text(line)
            return True
        command, *rest = line[1:].split(maxsplit=1) or [""]  # any space, the wide one too
        arg = rest[0].strip() if rest else ""
        command = command.lower()
        if command in {"quit", "q", "exit"}:
            self.say(t.FAREWELL)
            return False
        simple = {
            "help": lambda: self.say(t.HELP),
            "who": self.list_identities,
            "as": lambda: self.switch_to(arg),
            "press": lambda: self.press(arg),
            "to": lambda: self.set_target(arg),
            "loc": lambda: self.send_location(arg),
            "photo": lambda: self.send_photo(arg),
        }
        if command in simple:
            simple[command]()
        elif command == "wait":
            await self.wait(arg)
        else:
            self.say(t.UNKNOWN_COMMAND.format(command=command))
        return True


def describe(msg: BotMessage) -> str:
    """What a bot message shows, in full; later lines indented under the first."""
    if msg.photo:
        body = t.PHOTO + (msg.caption or "")
    elif msg.document:
        body = t.DOCUMENT.format(name=msg.document.get("file_name", "")) + (msg.caption or "")
    elif msg.venue:
        body = t.VENUE.format(title=msg.venue["title"], address=msg.venue["address"])
    elif msg.location:
        body = t.LOCATION.format(lat=msg.location[0], lon=msg.location[1])
    else:
        body = msg.text or ""
    return body.replace("\n", "\n    ")


# ---------------------------------------------------------------- where lines come from


class ScriptedInput:
    """Lines from a list or an async iterable (scripted demos, tests); echoed."""

    echo = True

    def __init__(self, lines: Iterable[str] | AsyncIterable[str]):
        self._lines = _as_async(lines)

    async def read(self, prompt: str) -> str | None:
        return await anext(self._lines, None)

    def waiting_prompt(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class StdinInput:
    """Lines from stdin, read one at a time by a daemon thread (a pending read never blocks
    exit).

    On a terminal the line is read with readline: the terminal's own line editing cuts a
    line at 4,095 bytes (1,365 Chinese characters), readline has no such limit, edits the
    line, keeps a history and takes a pasted block (bracketed paste) as one line. Piped input
    is read as bytes and decoded leniently, and echoed like a script.
    """

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None):
        self.stdin = stdin or sys.stdin
        stdout = stdout or sys.stdout
        self.interactive = self.stdin.isatty() and stdout.isatty() and _load_readline()
        self.echo = not self.stdin.isatty()
        self._tty_state = _tty_state(self.stdin) if self.interactive else None
        self._requests: SimpleQueue = SimpleQueue()
        self._prompt: str | None = None
        threading.Thread(target=self._serve, name="terminal-stdin", daemon=True).start()

    async def read(self, prompt: str) -> Any:
        """The next line (UNREADABLE when it could not be decoded), None at end of input."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._requests.put((prompt, loop, answer))
        return await answer

    def waiting_prompt(self) -> str | None:
        """The prompt and what is typed so far, while a keyboard read is pending."""
        if not self.interactive or self._prompt is None:
            return None
        import readline

        return self._prompt + readline.get_line_buffer()

    def close(self) -> None:
        """Give the terminal back as it was (readline may be mid-read in its thread)."""
        if self._tty_state is not None:
            import termios

            with contextlib.suppress(termios.error, OSError, ValueError):
                termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._tty_state)

    def _serve(self) -> None:
        while True:
            prompt, loop, answer = self._requests.get()
            line = self._read_line(prompt)
            loop.call_soon_threadsafe(_settle, answer, line)
            if line is None:
                return

    def _read_line(self, prompt: str) -> Any:
        if self.interactive:
            self._prompt = prompt  # meanwhile output is written above the prompt
            try:
                return input(prompt)
            except EOFError:
                return None
            except UnicodeDecodeError:
                return UNREADABLE
            finally:
                self._prompt = None
        raw = self.stdin.buffer.readline()  # bytes: a broken character cannot stop the demo
        if not raw:
            return None
        return raw.decode(self.stdin.encoding or "utf-8", errors="replace").rstrip("\r\n")


def _settle(answer: asyncio.Future, line: Any) -> None:
    if not answer.done():
        answer.set_result(line)


def _load_readline() -> bool:
    try:
        import readline  # noqa: F401 - importing it makes input() use it
    except ImportError:  # e.g. Windows, whose console has no 4 KB line limit anyway
        return False
    return True


def _tty_state(stdin: TextIO) -> list | None:
    try:
        import termios

        return termios.tcgetattr(stdin.fileno())
    except (ImportError, OSError, ValueError):
        return None


async def _as_async(lines: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


async def run_terminal_chat(
    emu: TelegramEmulator,
    identities: dict[int, str],
    group_titles: dict[int, str],
    start_as: int,
    input_lines: Iterable[str] | AsyncIterable[str] | None = None,
    out: TextIO | None = None,
    roles: dict[int, Role] | None = None,
    intro: Iterable[str] = (),
    title: str = "",
) -> None:
    """Chat with the bot in the terminal until :quit or end of input.

    input_lines replaces stdin (lines are then echoed, for scripted sessions and tests);
    out replaces stdout; roles groups the identities in :who; the banner starts with title, intro lines follow
    it.
    """
    source = StdinInput() if input_lines is None else ScriptedInput(input_lines)
    chat = TerminalChat(
        emu,
        identities,
        group_titles,
        start_as,
        out or sys.stdout,
        echo=source.echo,
        roles=roles,
        source=source,
    )
    emu.add_listener(chat.on_event)
    try:
        chat.say(t.BANNER.format(title=title))
        for line in intro:
            chat.say(line)
        chat.say(t.NOW_AS_START.format(name=identities[start_as], uid=start_as))
        while (line := await source.read(chat.prompt())) is not None:
            if line is UNREADABLE:
                chat.say(t.UNREADABLE_INPUT)
            elif not await chat.feed(line):
                break
        else:
            await chat.finish()
    finally:
        emu.remove_listener(chat.on_event)
        source.close()
