"""The command dashboard (指挥大屏): a read-only Starlette app served beside the bot.

Routes: GET / (page; /?token=SCREEN_TOKEN signs a wall screen in), GET /api/data (JSON the
page polls), GET /api/grids and /api/grid_shapes (the grid view, web/grids.py),
GET /export.csv?from=&to= (staff only), GET/POST /login, POST /logout, GET /healthz,
GET /favicon.ico; the Open311 API under /open311/v2 (web/open311, its own API keys).
Everything else but /login, /healthz and the static files needs a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from models.auth import LOGIN_CODE_TTL, redeem_login_code
from models.deadlines import LIGHT_NAMES, Rules
from models.engine import make_engine, session_scope
from models.stats import dashboard_data
from web import open311
from web.access import (
    LoginThrottle,
    Viewer,
    current_viewer,
    matching_screen_token,
    remember_screen,
    remember_staff,
    screen_token_digests,
    session_secret,
)
from web.export import PeriodError, csv_chunks, parse_period
from web.grids import GridView, grid_routes
from web.model_file import ModelFile
from whistle.preflight import DashboardPortError, bind_port, dashboard_address

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "whistle_dashboard"
# Self-hosted scripts only: the page must work without internet, and nothing may be injected.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
NO_STORE = {"Cache-Control": "no-store"}
# A screen token may arrive in the URL: never pass that URL on to another site.
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", **NO_STORE}
FAVICON = HERE / "static" / "favicon.svg"

TOO_MANY_ATTEMPTS = "尝试次数过多，请 10 分钟后再试。"
NO_CREDENTIAL = "请输入登录码或大屏令牌。"
BAD_CREDENTIAL = "登录码或令牌无效，或登录码已过期、已使用。请在机器人中发送 /dashboard 重新获取。"
BAD_LINK = "链接中的大屏令牌无效或已停用。请向管理员索取新的大屏链接，或在下面输入登录码。"
SCREEN_EXPORT = (
    "大屏账号不能导出数据。请工作人员在机器人中发送 /dashboard 获取登录码，登录后再导出。"
)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class DataCache:
    """The dashboard data, recomputed at most every `seconds` (0 = on every request).

    Many screens then cost one set of queries. Once there is a value, a stale one is still
    served while a fresh one is computed in the background, so only the very first request
    waits for the queries; the data carries its own "updated at" time for the page to show.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._value: dict | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task | None = None

    async def get(self, compute: Callable[[], Awaitable[dict]]) -> dict:
        if self._value is None or self.seconds <= 0:
            async with self._lock:  # concurrent first requests wait for one computation
                if self._value is None or self.seconds <= 0:
                    await self._update(compute)
        elif time.monotonic() >= self._expires and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._update_quietly(compute))
        return self._value

    async def _update(self, compute: Callable[[], Awaitable[dict]]) -> None:
        self._value = await compute()
        self._expires = time.monotonic() + self.seconds

    async def _update_quietly(self, compute: Callable[[], Awaitable[dict]]) -> None:
        try:
            await self._update(compute)
        except Exception:  # keep serving the last good data (the page shows its age) ...
            log.exception("指挥大屏数据刷新失败")
            self._expires = time.monotonic() + self.seconds  # ... and try again later


@dataclass
class Dashboard:
    """What the request handlers share (app.state.dashboard)."""

    settings: Any
    engine: AsyncEngine
    rules: Rules
    clock: Callable[[], datetime]
    token_digests: frozenset[str]
    throttle: LoginThrottle
    cache: DataCache
    templates: Jinja2Templates
    model: ModelFile

    @property
    def title(self) -> str:
        return f"{self.settings.district.name}吹哨报到指挥大屏"

    @property
    def refresh_seconds(self) -> int:
        return max(5, int(self.settings.dashboard.refresh_seconds))

    async def viewer(self, request: Request) -> Viewer | None:
        return await current_viewer(request, self.engine, self.token_digests)

    def local(self, value: datetime) -> str:
        return self.rules.calendar.to_local(value).strftime("%Y-%m-%d %H:%M")

    def clock_state(self) -> dict[str, int]:
        """The server's time and the district's UTC offset: the header clock ticks from these,
        so it shows district time whatever the wall screen's own clock and time zone."""
        now = self.clock()
        offset = self.rules.calendar.to_local(now).utcoffset()
        return {
            "now_ms": int(now.replace(tzinfo=UTC).timestamp() * 1000),
            "utc_offset_minutes": int(offset.total_seconds() // 60) if offset else 0,
        }

    def zone_label(self) -> str:
        """ "望城区时间（UTC+8）": what the page's times are in, said on the page."""
        minutes = self.clock_state()["utc_offset_minutes"]
        hours, rest = divmod(abs(minutes), 60)
        offset = f"UTC{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02d}" if rest else "")
        return f"{self.settings.district.name or '当地'}时间（{offset}）"

    async def figures(self) -> dict:
        """dashboard_data, with 当前模型 from the model file the bot loads (when readable)."""
        figures = await dashboard_data(self.engine, now=self.clock(), rules=self.rules)
        loaded = await self.model.version()
        if loaded:
            figures["classifier"]["model_version"] = loaded
        return figures


def _dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard


def _jsonable(value: Any, dash: Dashboard) -> Any:
    """Datetimes become district-local 'YYYY-MM-DD HH:MM' strings; containers are walked."""
    if isinstance(value, datetime):
        return dash.local(value)
    if isinstance(value, dict):
        return {k: _jsonable(v, dash) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, dash) for v in value]
    return value


# ---------------------------------------------------------------- pages


async def page(request: Request) -> Response:
    dash = _dashboard(request)
    token = request.query_params.get("token")
    if token is not None:
        return await _token_link(request, dash, token)
    viewer = await dash.viewer(request)
    if viewer is None:
        return RedirectResponse("/login", status_code=303)
    today = dash.rules.calendar.to_local(dash.clock()).date()
    return dash.templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "title": dash.title,
            "refresh_seconds": dash.refresh_seconds,
            "viewer": viewer,
            "export_from": today.replace(day=1).isoformat(),
            "export_to": today.isoformat(),
            "clock": dash.clock_state(),
            "zone_label": dash.zone_label(),
        },
        headers=PAGE_HEADERS,
    )


async def _token_link(request: Request, dash: Dashboard, token: str) -> Response:
    """/?token=…: a wall screen's saved link. Signs in once, then the cookie carries on, and
    the redirect to the bare URL keeps the token out of the address bar and history."""
    refused = await _attempt(request, dash, token.strip(), codes=False, refusal=BAD_LINK)
    return refused or RedirectResponse("/", status_code=303, headers=PAGE_HEADERS)


def _login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    dash = _dashboard(request)
    minutes = int(LOGIN_CODE_TTL.total_seconds() // 60)
    return dash.templates.TemplateResponse(
        request,
        "login.html",
        {"title": dash.title, "error": error, "code_minutes": minutes},
        status_code=status,
        headers=PAGE_HEADERS,
    )


async def login_form(request: Request) -> Response:
    if await _dashboard(request).viewer(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_page(request)


async def login(request: Request) -> Response:
    dash = _dashboard(request)
    form = await request.form()
    credential = str(form.get("credential", "")).strip()
    refused = await _attempt(request, dash, credential, codes=True, refusal=BAD_CREDENTIAL)
    return refused or RedirectResponse("/", status_code=303)


async def _attempt(
    request: Request, dash: Dashboard, credential: str, *, codes: bool, refusal: str
) -> Response | None:
    """Sign in with `credential` (throttled per client); the login page to answer on failure."""
    client = request.client.host if request.client else "?"
    if dash.throttle.blocked(client):
        return _login_page(request, TOO_MANY_ATTEMPTS, status=429)
    if not credential:
        return _login_page(request, NO_CREDENTIAL, status=400)
    if not await _sign_in(request, dash, credential, codes=codes):
        dash.throttle.failed(client)
        return _login_page(request, refusal, status=401)
    dash.throttle.succeeded(client)
    return None


async def _sign_in(request: Request, dash: Dashboard, credential: str, *, codes: bool) -> bool:
    """Start the session of a screen token or (if `codes`) of a staff one-time login code."""
    digest = matching_screen_token(credential, dash.token_digests)
    if digest is not None:
        remember_screen(request, digest)
        return True
    if not codes:
        return False
    async with session_scope(dash.engine) as session:
        staff = await redeem_login_code(session, credential, dash.clock())
    if staff is None:
        return False
    remember_staff(request, staff.telegram_id)
    return True


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def favicon(request: Request) -> Response:
    # For clients that ask /favicon.ico without reading the page's <link rel="icon">.
    return FileResponse(
        FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )


async def database_unavailable(request: Request, exc: Exception) -> Response:
    log.error("指挥大屏读取数据库失败: %s", exc)
    message = "数据暂时无法读取，请稍后重试。"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=503, headers=NO_STORE)
    return PlainTextResponse(message, status_code=503, headers=NO_STORE)


# ---------------------------------------------------------------- data and export


async def data(request: Request) -> Response:
    dash = _dashboard(request)
    viewer = await dash.viewer(request)
    if viewer is None:
        return JSONResponse({"error": "请先登录指挥大屏"}, status_code=401, headers=NO_STORE)

    figures = await dash.cache.get(dash.figures)
    body = _jsonable(figures, dash)
    updated = dash.rules.calendar.to_local(figures["now"]).strftime("%H:%M:%S")
    body.update(
        title=dash.title,
        refresh_seconds=dash.refresh_seconds,
        updated_at=updated,
        viewer={
            "kind": viewer.kind,
            "label": viewer.label,
            "admin": viewer.is_admin,
            "export": viewer.can_export,
        },
        light_names=LIGHT_NAMES,
        clock=dash.clock_state(),
    )
    return JSONResponse(body, headers=NO_STORE)


async def export_csv(request: Request) -> Response:
    dash = _dashboard(request)
    viewer = await dash.viewer(request)
    if viewer is None:
        return PlainTextResponse("请先登录指挥大屏后再导出。", status_code=401, headers=NO_STORE)
    if not viewer.can_export:
        return PlainTextResponse(SCREEN_EXPORT, status_code=403, headers=NO_STORE)
    now = dash.clock()
    try:
        first, last = parse_period(
            request.query_params.get("from"),
            request.query_params.get("to"),
            now,
            dash.rules.calendar,
        )
    except PeriodError as exc:
        return PlainTextResponse(str(exc), status_code=400, headers=NO_STORE)
    name = f"whistle-cases-{first:%Y%m%d}-{last:%Y%m%d}.csv"
    chunks = csv_chunks(
        dash.engine, first, last, now=now, rules=dash.rules, include_personal=viewer.is_admin
    )
    return StreamingResponse(
        (chunk.encode("utf-8") async for chunk in chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )


# ---------------------------------------------------------------- assembly


def create_app(
    settings, engine: AsyncEngine | None = None, clock: Callable[[], datetime] | None = None
) -> Starlette:
    """The dashboard app; creates (and later disposes) its own engine when none is given."""
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url, echo=settings.database_echo)
    options = settings.dashboard
    open311_api = open311.mount(settings, engine, clock or utc_now)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        async with open311.running(open311_api):
            yield
        if own_engine:
            await engine.dispose()

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/data", data),
            Route("/export.csv", export_csv),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/favicon.ico", favicon),
            *grid_routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            open311_api,
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(options),
                session_cookie=SESSION_COOKIE,
                max_age=options.session_days * 86400,
                same_site="lax",
                https_only=options.cookie_secure,
            )
        ],
        exception_handlers={SQLAlchemyError: database_unavailable},
        lifespan=lifespan,
    )
    app.state.dashboard = Dashboard(
        settings=settings,
        engine=engine,
        rules=Rules.from_settings(settings),
        clock=clock or utc_now,
        token_digests=screen_token_digests(options),
        throttle=LoginThrottle(),
        cache=DataCache(options.cache_seconds),
        templates=Jinja2Templates(directory=HERE / "templates"),
        model=ModelFile(settings.model_path),
    )
    dash = app.state.dashboard
    app.state.grids = GridView(
        settings, engine, dash.rules, dash.clock, DataCache(dash.cache.seconds)
    )
    return app


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the host process (whistle run) owns them."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


# The dashboard could not start: its port is taken (the message says how to change it).
DashboardError = DashboardPortError


async def serve_dashboard(settings, engine: AsyncEngine | None = None) -> None:
    """Serve the dashboard in the current event loop until cancelled, then shut down cleanly.

    The port is bound before anything else, so a taken port is one DashboardError at once
    (uvicorn would log its own error and exit the process)."""
    host, port = dashboard_address(settings)
    sock = bind_port(host, port)
    config = uvicorn.Config(
        create_app(settings, engine),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        lifespan="on",
    )
    server = EmbeddedServer(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits the process when its start-up fails
            raise DashboardError(host, port, "启动失败") from exc
        finally:
            sock.close()

    log.info("指挥大屏已启动: http://%s:%s/", host, port)
    task = asyncio.ensure_future(run())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise
    log.info("指挥大屏已停止")
