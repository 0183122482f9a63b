"""A local Telegram Bot API (server.py) and a terminal chat against it (terminal.py).

Infrastructure for tests, benchmarks and `whistle demo`: it knows the Bot API, not Whistle,
and imports nothing of Whistle (tests/emulator/test_emulator.py checks). Whistle's demo cast is seeded
by whistle/demo.py.
"""

from emulator.server import BotMessage, TelegramEmulator, render_text, sample_jpeg
from emulator.terminal import Role, StdinInput, run_terminal_chat

__all__ = [
    "BotMessage",
    "Role",
    "StdinInput",
    "TelegramEmulator",
    "render_text",
    "run_terminal_chat",
    "sample_jpeg",
]
