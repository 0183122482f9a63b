"""Fixtures and helpers for driving a bot through the local Bot API emulator.

Use the `emulator` fixture for a started emulator with config.toml's staff, demo residents
and groups, then run an Application against it with `running_app(app, emulator)` (or
`start_app` / `stop_app`). Build the app with `app_builder(emulator)` so it points at the
emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from telegram.ext import Application, ApplicationBuilder

from bot.context import CONTEXT_TYPES
from emulator import TelegramEmulator
from whistle.config import load_settings
from whistle.demo import DEMO_RESIDENTS, add_people_from_settings

TEST_TOKEN = "123456789:TEST-emulator-token"
RESIDENT = next(iter(DEMO_RESIDENTS))  # a resident with no staff role
# Long-poll timeout for test apps: updates arrive at once anyway; this only bounds idle polls.
POLL_TIMEOUT = 5


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    """A started emulator with config.toml's staff, the demo residents and all groups."""
    emu = TelegramEmulator(token=TEST_TOKEN)
    add_people_from_settings(emu, load_settings())
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


def app_builder(emu: TelegramEmulator, token: str = TEST_TOKEN) -> ApplicationBuilder:
    """An ApplicationBuilder whose bot talks to the emulator, with the bot's typed context."""
    return (
        Application.builder()
        .token(token)
        .context_types(CONTEXT_TYPES)
        .base_url(emu.base_url)
        .base_file_url(emu.base_file_url)
    )


async def start_app(app: Application, emu: TelegramEmulator) -> Application:
    """Initialize and start `app`, polling the emulator with no delay between polls."""
    assert app.bot.base_url.startswith(emu.base_url), "app is not pointed at the emulator"
    await app.initialize()
    await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=POLL_TIMEOUT)
    return app


async def stop_app(app: Application) -> None:
    """Stop polling and the application, tolerating a partly started app."""
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    await app.shutdown()


@asynccontextmanager
async def running_app(app: Application, emu: TelegramEmulator) -> AsyncIterator[Application]:
    """`async with running_app(app, emu):` runs the app for the block, then stops it."""
    await start_app(app, emu)
    try:
        yield app
    finally:
        await stop_app(app)
