"""Open311 GeoReport v2 for the 12345 hotline and other systems (issue #14 §1).

`mount()` is the sub-application web/app.py serves at /open311/v2; `running()` runs its status
callback sender while the dashboard runs. Settings: [open311] in config.toml.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.routing import Mount

from web.open311.api import Open311, http_errors, routes
from web.open311.callbacks import CallbackSender
from web.open311.callbacks import running as _running

PREFIX = "/open311/v2"


def mount(
    settings, engine: AsyncEngine, clock: Callable[[], datetime], services_factory=None
) -> Mount:
    """The Open311 sub-application, mounted at PREFIX."""
    app = Starlette(routes=routes(), exception_handlers=http_errors())
    app.state.open311 = Open311.from_settings(settings, engine, clock, services_factory)
    return Mount(PREFIX, app=app)


@contextlib.asynccontextmanager
async def running(mounted: Mount) -> AsyncIterator[None]:
    """Send status callbacks in the background (unless [open311] callbacks = false)."""
    state: Open311 = mounted.app.state.open311
    sender = None
    if state.options.callbacks:
        sender = CallbackSender.from_options(state.engine, state.clock, state.local, state.options)
    async with _running(sender):
        yield
