"""Named points where a test can stop the bot to kill it there (fault-injection tests).

`WHISTLE_FAILPOINT=NAME` in the environment makes the bot, on reaching NAME, print
"failpoint NAME reached" to stderr and wait there forever; the test then SIGKILLs the
process and restarts it without the variable. Unset (always, outside such tests), a point
costs one dictionary look-up.
"""

from __future__ import annotations

import asyncio
import os
import sys

from telegram import Update

ENV = "WHISTLE_FAILPOINT"


def update_point(update: Update) -> str:
    """The point name of an update about to be handled: "update:callback" for a button,
    "update:/my" etc. for a message (its first word)."""
    if update.callback_query is not None:
        return "update:callback"
    message = update.effective_message
    words = (message.text or "").split() if message is not None else []
    return "update:" + (words[0] if words else "message")


async def reached(name: str) -> None:
    """Hold here for good if the environment names this point."""
    if os.environ.get(ENV) != name:
        return
    print(f"failpoint {name} reached", file=sys.stderr, flush=True)
    await asyncio.Event().wait()
