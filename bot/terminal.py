"""Terminal chat for `whistle demo`: talk to the bot through the emulator as anyone.

Every bot message the current identity can see (its private chat and its groups) is printed
as it arrives; typed lines are sent as that identity. Commands start with ":" (see HELP).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, TextIO

from bot.emulator import BotMessage, TelegramEmulator

HELP = """可用命令：
  直接输入文字          以当前身份发送文字消息
  /命令                 发送机器人命令，例如 /start
  数字 N 或 :press N    点击最近一条消息上的第 N 个按钮
  :photo [说明]         发送一张示例照片（可附说明文字）
  :loc 纬度 经度         发送位置，例如 :loc 28.37 112.82
  :as ID或姓名          切换身份（居民 / 工作人员）
  :who                  列出所有可用身份
  :to 群ID              之后的文字发到该群；单独输入 :to 回到私聊
  :wait [N]             等待机器人的下一条（或 N 条）新消息
  :help                 显示本帮助
  :quit                 退出演示"""

# Where a reply-keyboard "send my location" button puts the demo user: 望城区 centre.
DEMO_LOCATION = (28.37, 112.82)
DEMO_PHONE = "13800000000"
WAIT_SECONDS = 5.0


class TerminalChat:
    """The REPL's state: who is typing, where text goes, and what was already shown."""

    def __init__(self, emu: TelegramEmulator, identities: dict[int, str],
                 group_titles: dict[int, str], start_as: int, out: TextIO, echo: bool):
        if start_as not in identities:
            raise ValueError(f"起始身份 {start_as} 不在身份列表中")
        self.emu = emu
        self.identities = identities
        self.group_titles = group_titles
        self.current = start_as
        self.target: int | None = None  # a group chat id, or None for the private chat
        self.out = out
        self.echo = echo
        self.seen = dict.fromkeys(identities, emu.last_seq)  # last event shown to each one
        self.my_queries: set[str] = set()
        self.events_since_action = 0
        self.new_event = asyncio.Event()

    # ------------------------------------------------------------ output

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        if hasattr(self.out, "flush"):
            self.out.flush()

    def chat_label(self, chat_id: int) -> str:
        if chat_id > 0:
            return "私聊"
        return self.group_titles.get(chat_id) or self.emu.chats[chat_id].title or str(chat_id)

    def show(self, msg: BotMessage, event: str = "message") -> None:
        bot = self.emu.bot_user["first_name"]
        label = f"[{self.chat_label(msg.chat_id)}] {bot}"
        if event == "delete":
            self.say(f"{label} 撤回了一条消息")
            return
        mark = "（已修改）" if event == "edit" else ""
        self.say(f"{label}{mark}：{describe(msg)}")
        if msg.buttons:
            self.say("    " + "  ".join(f"[{i}] {text}" for i, (text, _) in
                                         enumerate(msg.buttons, 1)))
        if msg.reply_keyboard:
            flat = [text for row in msg.reply_keyboard for text in row]
            self.say("    键盘：" + "  ".join(f"[{i}] {t}" for i, t in enumerate(flat, 1)))

    def on_event(self, event: str, data: Any) -> None:
        """Emulator listener: print what the current identity can see."""
        if event == "answer":
            if data["callback_query_id"] in self.my_queries:
                if data.get("text"):
                    prefix = "⚠ 弹窗" if data.get("show_alert") else "💬 提示"
                    self.say(f"    {prefix}：{data['text']}")
                self.count_event()
            return
        if data.chat_id not in self.emu.visible_chats(self.current):
            return
        self.show(data, event)
        self.seen[self.current] = self.emu.last_seq
        self.count_event()

    def count_event(self) -> None:
        self.events_since_action += 1
        self.new_event.set()

    def show_unread(self) -> None:
        """On switching identity, show what arrived for it while someone else was typing."""
        since = self.seen.get(self.current, 0)
        unread = [m for chat_id in self.emu.visible_chats(self.current)
                  for m in self.emu.messages(chat_id)
                  if m.changed_seq > since and not m.deleted]
        if unread:
            self.say(f"—— {len(unread)} 条未读消息 ——")
            for msg in sorted(unread, key=lambda m: m.changed_seq):
                self.show(msg, "edit" if msg.edits else "message")
                self.count_event()
        self.seen[self.current] = self.emu.last_seq

    # ------------------------------------------------------------ actions

    def action_done(self) -> None:
        self.events_since_action = 0
        self.new_event.clear()

    def send_text(self, text: str) -> None:
        self.emu.send_text(self.current, text, chat_id=self.target)
        self.action_done()

    def choices(self) -> tuple[str, Any, list] | None:
        """Buttons a bare number refers to: the newest inline keyboard or reply keyboard."""
        latest: BotMessage | None = None
        for chat_id in self.emu.visible_chats(self.current):
            for msg in reversed(self.emu.messages(chat_id)):
                if msg.buttons and not msg.deleted:
                    if latest is None or msg.seq > latest.seq:
                        latest = msg
                    break
        keyboard = self.emu.reply_keyboard(self.current)
        keyboard_msg = next((m for m in reversed(self.emu.messages(self.current))
                             if m.reply_keyboard is not None), None)
        if keyboard and keyboard_msg and (latest is None or keyboard_msg.seq > latest.seq):
            rows = self.emu.chats[self.current].reply_keyboard or []
            return "reply", self.current, [b for row in rows for b in row]
        if latest is not None:
            return "inline", latest, latest.buttons
        return None

    def press(self, number_text: str) -> None:
        found = self.choices()
        if found is None:
            self.say("当前没有可以点击的按钮。")
            return
        kind, where, buttons = found
        try:
            number = int(number_text)
        except ValueError:
            number = 0
        if not 1 <= number <= len(buttons):
            self.say(f"请输入 1 到 {len(buttons)} 之间的按钮编号。")
            return
        if kind == "reply":
            self.press_reply_button(buttons[number - 1])
            return
        text, data = buttons[number - 1]
        if data is None or data.startswith(("http://", "https://", "tg://")):
            self.say(f"“{text}”是链接按钮：{data or '（无链接）'}")
            return
        update = self.emu.press_button(self.current, where, data)
        self.my_queries.add(update["callback_query"]["id"])
        self.say(f"（已点击“{text}”）")
        self.action_done()

    def press_reply_button(self, button: dict) -> None:
        if button.get("request_location"):
            self.emu.send_location(self.current, *DEMO_LOCATION)
            self.say(f"（已发送演示位置 {DEMO_LOCATION[0]}, {DEMO_LOCATION[1]}）")
        elif button.get("request_contact"):
            self.emu.send_contact(self.current, DEMO_PHONE)
            self.say(f"（已发送演示电话 {DEMO_PHONE}）")
        else:
            self.emu.send_text(self.current, button["text"])
            self.say(f"（已发送“{button['text']}”）")
        self.action_done()

    def switch_to(self, who: str) -> None:
        match = self.find_identity(who)
        if match is None:
            self.say(f"没有这个身份：{who}。输入 :who 查看所有身份。")
            return
        self.current, self.target = match, None
        self.action_done()  # so ":wait" after switching waits for this identity's messages
        self.say(f"现在的身份：{self.identities[match]}（{match}）")
        self.show_unread()

    def find_identity(self, who: str) -> int | None:
        who = who.strip()
        if who.lstrip("-").isdigit() and int(who) in self.identities:
            return int(who)
        named = [uid for uid, name in self.identities.items() if who and who in name]
        return named[0] if len(named) == 1 else None

    def list_identities(self) -> None:
        self.say("可用身份：")
        for uid, name in self.identities.items():
            groups = [f"{self.chat_label(c)}（{c}）" for c in self.emu.visible_chats(uid)[1:]]
            where = f"，所在群：{'、'.join(groups)}" if groups else ""
            mark = " ← 当前" if uid == self.current else ""
            self.say(f"  {uid}  {name}{where}{mark}")

    def set_target(self, arg: str) -> None:
        if not arg:
            self.target = None
            self.say("之后的文字将发到私聊。")
            return
        try:
            chat_id = int(arg)
        except ValueError:
            chat_id = 0
        if chat_id not in self.emu.visible_chats(self.current)[1:]:
            self.say(f"{self.identities[self.current]}不在群 {arg} 中。输入 :who 查看所在群。")
            return
        self.target = chat_id
        self.say(f"之后的文字将发到“{self.chat_label(chat_id)}”。")

    def send_location(self, arg: str) -> None:
        try:
            lat, lon = (float(x) for x in arg.split())
        except ValueError:
            self.say("用法：:loc 纬度 经度，例如 :loc 28.37 112.82")
            return
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            self.say("纬度应在 -90 到 90 之间，经度应在 -180 到 180 之间。")
            return
        self.emu.send_location(self.current, lat, lon, chat_id=self.target)
        self.action_done()

    async def wait(self, arg: str) -> None:
        try:
            wanted = max(1, int(arg)) if arg else 1
        except ValueError:
            self.say("用法：:wait [条数]")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while self.events_since_action < wanted:
            self.new_event.clear()
            try:
                await asyncio.wait_for(self.new_event.wait(), deadline - loop.time())
            except TimeoutError:
                self.say(f"（等待 {WAIT_SECONDS:g} 秒，机器人没有新的回复）")
                return

    # ------------------------------------------------------------ dispatch

    async def handle(self, line: str) -> bool:
        """Run one input line; False means quit."""
        line = line.strip()
        if not line:
            return True
        if self.echo:
            self.say(f"{self.identities[self.current]}> {line}")
        if line.isdigit():
            self.press(line)
            return True
        if not line.startswith(":"):
            self.send_text(line)
            return True
        command, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        command = command.lower()
        if command in {"quit", "q", "exit"}:
            self.say("再见！")
            return False
        simple = {"help": lambda: self.say(HELP), "who": self.list_identities,
                  "as": lambda: self.switch_to(arg), "press": lambda: self.press(arg),
                  "to": lambda: self.set_target(arg), "loc": lambda: self.send_location(arg),
                  "photo": lambda: self.send_photo(arg)}
        if command in simple:
            simple[command]()
        elif command == "wait":
            await self.wait(arg)
        else:
            self.say(f"未知命令 :{command}，输入 :help 查看帮助。")
        return True

    def send_photo(self, caption: str) -> None:
        self.emu.send_photo(self.current, caption=caption or None, chat_id=self.target)
        self.say("（已发送一张示例照片）")
        self.action_done()


def describe(msg: BotMessage) -> str:
    """One line (or a few) saying what a bot message shows."""
    if msg.photo:
        return "[图片] " + (msg.caption or "")
    if msg.document:
        return f"[文件 {msg.document.get('file_name', '')}] " + (msg.caption or "")
    if msg.venue:
        venue = msg.venue
        return f"[地点] {venue['title']}（{venue['address']}）"
    if msg.location:
        return f"[位置] {msg.location[0]:.5f}, {msg.location[1]:.5f}"
    return (msg.text or "").replace("\n", "\n    ")


async def _stdin_lines() -> AsyncIterator[str]:
    """Lines from stdin, read by a daemon thread so a pending read never blocks exit."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="terminal-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


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
) -> None:
    """Chat with the bot in the terminal until :quit or end of input.

    input_lines replaces stdin (lines are then echoed, for scripted sessions and tests);
    out replaces stdout.
    """
    chat = TerminalChat(emu, identities, group_titles, start_as, out or sys.stdout,
                        echo=input_lines is not None)
    emu.add_listener(chat.on_event)
    try:
        chat.say("吹哨报到 演示终端。输入 :help 查看命令，:who 查看身份，:quit 退出。")
        chat.say(f"现在的身份：{identities[start_as]}（{start_as}），直接输入文字即可发送。")
        lines = _stdin_lines() if input_lines is None else _as_async(input_lines)
        async for line in lines:
            if not await chat.handle(line):
                break
    finally:
        emu.remove_listener(chat.on_event)
