"""The context every handler and job gets: PTB's CallbackContext plus a typed `services`.

Wired in through PTB's public `ContextTypes(context=...)` by bot/app.py, so handlers write
`context.services` instead of digging in `bot_data`.
"""

from __future__ import annotations

from telegram.ext import CallbackContext, ContextTypes, ExtBot

from bot.services import Services, services_of


class Context(CallbackContext[ExtBot, dict, dict, dict]):
    """A CallbackContext whose `services` are the Application's (settings, store, clock …)."""

    @property
    def services(self) -> Services:
        return services_of(self.application)


CONTEXT_TYPES = ContextTypes(context=Context)
