"""The dashboard over real HTTP: uvicorn on 127.0.0.1, a seeded store, httpx as the client."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import socket
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlmodel import select

from classifier import load_model
from models.auth import issue_login_code
from models.engine import make_engine, session_scope
from models.reference import sync_reference_data
from models.tables import Case, Reporter, Staff
from tests.classifier.test_classifier import rewrite_model
from tests.models.test_stats import (
    NOW,
    RESIDENT_NAME,
    RESIDENT_PHONE,
    RESIDENT_TID,
    seed_known_cases,
)
from web.access import screen_token_digests, session_secret
from web.app import (
    BAD_LINK,
    SCREEN_EXPORT,
    DashboardError,
    DataCache,
    EmbeddedServer,
    create_app,
    serve_dashboard,
)
from whistle.config import DashboardSettings

pytest_plugins = ["tests.test_bot_kit"]  # the shared classifier model (model_path)

SCREEN_TOKEN = "screen-token-for-tests-0123456789"
PERSONAL = (
    RESIDENT_PHONE,
    RESIDENT_NAME,
    str(RESIDENT_TID),
    "测试诉求内容",
    "测试路1号",
    "测试企业主",
    "分拨员小李",
    "系统管理员",
)
LEADER, ADMIN = 9005, 9000  # config.toml's staff: a leader (no personal data) and the admin
NOW_MS = int(NOW.replace(tzinfo=UTC).timestamp() * 1000)
EMPTY_NOTES = ("league-empty", "trend-empty", "grid-empty", "red-empty", "corrections-empty")


def dashboard_settings(settings, model: Path | None = None, **options):
    """config.toml's settings with test [dashboard] options (a screen token, no caching) and
    the classifier model file `model` (default: none, so figures do not depend on var/)."""
    dash = dataclasses.replace(
        settings.dashboard,
        **{
            "screen_tokens": (SCREEN_TOKEN,),
            "cache_seconds": 0.0,
            "session_secret_env": "WHISTLE_TEST_SESSION_SECRET",
            **options,
        },
    )
    classifier = dataclasses.replace(
        settings.classifier, model_path=str(model or Path(__file__).parent / "no-such-model.npz")
    )
    return dataclasses.replace(settings, dashboard=dash, classifier=classifier)


@asynccontextmanager
async def running(app):
    """Serve `app` with uvicorn on a free 127.0.0.1 port in this event loop; yields its URL."""
    server = EmbeddedServer(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def site(engine, settings, monkeypatch):
    """The dashboard on the seeded store, with the clock at NOW; yields its base URL."""
    monkeypatch.delenv("WHISTLE_DASHBOARD_TOKENS", raising=False)
    await seed_known_cases(engine, settings)
    app = create_app(dashboard_settings(settings), engine=engine, clock=lambda: NOW)
    async with running(app) as url:
        yield url


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, follow_redirects=False, timeout=10)


async def login(http: httpx.AsyncClient, credential: str) -> httpx.Response:
    return await http.post("/login", data={"credential": credential})


async def code_for(engine, telegram_id: int) -> str:
    async with session_scope(engine) as s:
        return await issue_login_code(s, telegram_id, NOW)


async def staff_login(http: httpx.AsyncClient, engine, telegram_id: int) -> None:
    answer = await login(http, await code_for(engine, telegram_id))
    assert answer.status_code == 303


async def fresh_store(engine, settings) -> None:
    """What `whistle run` leaves on a new database: the schema and config.toml's reference data."""
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)


def inputs(page: str) -> list[dict[str, str | None]]:
    """The attributes of every <input> on a page."""
    found = []

    class Inputs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "input":
                found.append(dict(attrs))

    Inputs().feed(page)
    return found


def parse_csv(response: httpx.Response) -> list[list[str]]:
    assert response.content.startswith(b"\xef\xbb\xbf"), "CSV must start with a UTF-8 BOM"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


# ---------------------------------------------------------------- access


async def test_unauthenticated_requests_are_refused(site):
    async with client(site) as http:
        page = await http.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        data = await http.get("/api/data")
        assert data.status_code == 401 and data.json() == {"error": "请先登录指挥大屏"}
        export = await http.get("/export.csv")
        assert export.status_code == 401 and "请先登录" in export.text
        http.cookies.set("whistle_dashboard", "eyJraW5kIjoic2NyZWVuIn0=")  # unsigned
        assert (await http.get("/api/data")).status_code == 401
        form = await http.get("/login")
        assert form.status_code == 200 and "望城区吹哨报到指挥大屏" in form.text
        assert (await http.get("/healthz")).text == "ok"


async def test_bad_credentials_are_refused_then_throttled(site):
    async with client(site) as http:
        empty = await login(http, "  ")
        assert empty.status_code == 400 and "请输入登录码" in empty.text
        for _ in range(10):
            wrong = await login(http, "WRONG-CODE")
            assert wrong.status_code == 401 and "登录码或令牌无效" in wrong.text
        blocked = await login(http, SCREEN_TOKEN)
        assert blocked.status_code == 429 and "尝试次数过多" in blocked.text
        assert (await http.get("/api/data")).status_code == 401


async def test_screen_sees_live_figures_without_personal_data(site, engine):
    async with client(site) as http:
        answer = await login(http, SCREEN_TOKEN)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        page = await http.get("/")
        assert page.status_code == 200
        assert "<title>望城区吹哨报到指挥大屏</title>" in page.text
        assert "cdn" not in page.text.lower() and 'src="http' not in page.text
        data = (await http.get("/api/data")).json()
        assert data["headline"] == {
            "today": 4,
            "month": 12,
            "open": 8,
            "yellow": 2,
            "red": 3,
            "completion_rate": 0.5,
            "on_time_rate": 0.8,
            "satisfaction_rate": 0.75,
            "enterprise": 2,
            "enterprise_completion_rate": 0.5,
        }
        assert data["departments"][0]["name"] == "水务局"
        assert data["red_cases"][0] == {
            "ref": "P1",
            "department_code": "municipal",
            "department": "市政局",
            "stage": "办理超时",
            "priority": "normal",
            "deadline": "2026-02-27 08:00",
            "hours_overdue": 462.0,
        }
        assert data["refresh_seconds"] == 30 and data["viewer"]["admin"] is False
        assert data["viewer"]["export"] is False
        # No model file here: 当前模型 falls back to the version on the latest case.
        assert data["classifier"]["model_version"] == "v3"
        raw = (await http.get("/api/data")).text
        for secret in PERSONAL:
            assert secret not in raw

        # A new case today shows up on the next poll (no caching in this app).
        async with session_scope(engine) as s:
            reporter = (await s.exec(select(Reporter))).first()
            s.add(
                Case(
                    ref="NEW",
                    reporter_id=reporter.id,
                    text="新诉求",
                    created_at=datetime(2026, 3, 18, 5, 30),
                )
            )
        assert (await http.get("/api/data")).json()["headline"]["today"] == 5


async def test_screen_token_from_environment(engine, settings, monkeypatch):
    monkeypatch.setenv("WHISTLE_DASHBOARD_TOKENS", "short, env-token-abcdefghijklmnop ")
    app = create_app(
        dashboard_settings(settings, screen_tokens=[]), engine=engine, clock=lambda: NOW
    )
    async with running(app) as url, client(url) as http:
        assert (await login(http, "short")).status_code == 401  # too short to be a token
        assert (await login(http, "env-token-abcdefghijklmnop")).status_code == 303
        assert (await http.get("/api/data")).status_code == 200


async def test_database_trouble_gets_a_clear_answer(tmp_path, settings):
    empty = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")  # no schema
    app = create_app(dashboard_settings(settings), engine=empty, clock=lambda: NOW)
    try:
        async with running(app) as url, client(url) as http:
            assert (await login(http, SCREEN_TOKEN)).status_code == 303
            answer = await http.get("/api/data")
            assert answer.status_code == 503
            assert answer.json() == {"error": "数据暂时无法读取，请稍后重试。"}
    finally:
        await empty.dispose()


def test_session_secret_from_the_named_env_var_or_random():
    options = DashboardSettings(session_secret_env="MY_SECRET")
    assert session_secret(options, {"MY_SECRET": "s3cret-value"}) == "s3cret-value"
    first, second = session_secret(options, {}), session_secret(options, {})
    assert first != second and len(first) >= 32


def test_screen_token_digests_merge_config_and_env():
    config = DashboardSettings(screen_tokens=("config-token-0123456789", ""))
    env = {"WHISTLE_DASHBOARD_TOKENS": "env-token-0123456789,,tiny"}
    assert len(screen_token_digests(config, env)) == 2
    assert screen_token_digests(DashboardSettings(), {}) == frozenset()


async def test_staff_login_code_is_single_use_and_logout_ends_session(site, engine):
    code = await code_for(engine, 9005)  # leader
    async with client(site) as http:
        assert (await login(http, code)).status_code == 303
        data = (await http.get("/api/data")).json()
        assert data["viewer"] == {
            "kind": "staff",
            "label": "工作人员",
            "admin": False,
            "export": True,
        }
        assert (await http.post("/logout")).status_code == 303
        assert (await http.get("/api/data")).status_code == 401
        again = await login(http, code)
        assert again.status_code == 401 and "已使用" in again.text


async def test_deactivated_staff_lose_access(site, engine):
    async with client(site) as http:
        assert (await login(http, await code_for(engine, 9002))).status_code == 303
        assert (await http.get("/api/data")).status_code == 200
        async with session_scope(engine) as s:
            staff = (await s.exec(select(Staff).where(Staff.telegram_id == 9002))).one()
            staff.active = False
            s.add(staff)
        assert (await http.get("/api/data")).status_code == 401


async def test_data_cache_serves_the_last_data_while_it_refreshes():
    answers = iter([{"n": 1}, {"n": 2}, RuntimeError("database gone")])

    async def compute() -> dict:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = DataCache(0.05)
    assert await cache.get(compute) == {"n": 1}
    assert await cache.get(compute) == {"n": 1}  # fresh: no queries
    await asyncio.sleep(0.06)
    assert await cache.get(compute) == {"n": 1}  # stale: answered at once, refreshed behind
    await asyncio.sleep(0.01)
    assert await cache.get(compute) == {"n": 2}
    await asyncio.sleep(0.06)
    assert await cache.get(compute) == {"n": 2}
    await asyncio.sleep(0.01)  # the refresh failed: the last good data stays
    assert await cache.get(compute) == {"n": 2}

    calls = []

    async def counting() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    uncached = DataCache(0)
    assert [await uncached.get(counting) for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]


# ---------------------------------------------------------------- wall-screen links


async def test_token_in_the_url_signs_a_screen_in_once_then_the_cookie(site, engine):
    async with client(site) as http:
        answer = await http.get("/", params={"token": SCREEN_TOKEN})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "whistle_dashboard" in answer.cookies
        page = await http.get("/")  # the bare URL: no token left in the address bar
        assert page.status_code == 200 and SCREEN_TOKEN not in page.text
        assert (await http.get("/api/data")).json()["viewer"]["kind"] == "screen"

    async with client(site) as http:
        wrong = await http.get("/", params={"token": "not-a-screen-token-0123456789"})
        assert wrong.status_code == 401 and BAD_LINK in wrong.text
        assert "whistle_dashboard" not in wrong.cookies
        assert (await http.get("/api/data")).status_code == 401
        empty = await http.get("/", params={"token": " "})
        assert empty.status_code == 400 and "请输入登录码或大屏令牌" in empty.text

        # One-time staff codes are typed, never put in links: the code is not used up.
        code = await code_for(engine, LEADER)
        assert (await http.get("/", params={"token": code})).status_code == 401
        assert (await login(http, code)).status_code == 303

    async with client(site) as http:  # guessing tokens in URLs is throttled like the form
        for _ in range(10):
            await http.get("/", params={"token": "guess-0123456789abcdef"})
        blocked = await http.get("/", params={"token": SCREEN_TOKEN})
        assert blocked.status_code == 429 and "尝试次数过多" in blocked.text


async def test_screens_have_no_export_controls_and_exports_refuse_them(site, engine):
    async with client(site) as http:
        await login(http, SCREEN_TOKEN)
        page = (await http.get("/")).text
        assert 'action="/export.csv"' not in page and "导出 CSV" not in page
        refused = await http.get("/export.csv", params={"from": "2026-03-01"})
        assert refused.status_code == 403 and refused.text == SCREEN_EXPORT

    async with client(site) as http:
        await staff_login(http, engine, LEADER)
        page = (await http.get("/")).text
        # Text fields in 年-月-日 order whatever the browser's locale; each has a calendar
        # (the browser's date picker, unnamed, so only the text field is sent).
        dates = [
            (i["name"], i["type"], i["value"], i["lang"], i["placeholder"])
            for i in inputs(page)
            if i.get("name") in ("from", "to")
        ]
        assert dates == [
            ("from", "text", "2026-03-01", "zh-CN", "YYYY-MM-DD"),
            ("to", "text", "2026-03-18", "zh-CN", "YYYY-MM-DD"),
        ]
        pickers = [i for i in inputs(page) if i.get("type") == "date"]
        assert len(pickers) == 2 and not any("name" in i for i in pickers)
        for label in (
            '<label for="export-from">开始日期</label>',
            '<label for="export-to">结束日期</label>',
            "（年-月-日）",
        ):
            assert label in page


# ---------------------------------------------------------------- clock, model, favicon


async def test_page_and_data_carry_district_time(site):
    async with client(site) as http:
        await login(http, SCREEN_TOKEN)
        page = (await http.get("/")).text
        data = (await http.get("/api/data")).json()
    # NOW is 06:00 UTC = 14:00 in Asia/Shanghai: the clock ticks from the server's time.
    assert f'data-now-ms="{NOW_MS}"' in page and 'data-utc-offset="480"' in page
    assert "时间为望城区时间（UTC+8）" in page
    assert data["clock"] == {"now_ms": NOW_MS, "utc_offset_minutes": 480}
    assert data["updated_at"] == "14:00:00"


async def test_fresh_database_shows_the_loaded_model_and_empty_panels(
    engine, settings, model_path, tmp_path
):
    await fresh_store(engine, settings)
    model = tmp_path / "model.npz"
    model.write_bytes(model_path.read_bytes())
    version = load_model(model).model_version
    app = create_app(dashboard_settings(settings, model=model), engine=engine, clock=lambda: NOW)
    async with running(app) as url, client(url) as http:
        await login(http, SCREEN_TOKEN)
        page = (await http.get("/")).text
        for note in EMPTY_NOTES:
            assert f'id="{note}" hidden>暂无数据</p>' in page
        data = (await http.get("/api/data")).json()
        assert data["classifier"]["model_version"] == version and version
        assert data["red_cases"] == [] and data["grids"] == [] and data["trend"]["series"] == []
        assert data["classifier"]["recent_corrections"] == []
        assert all(d["created"] == 0 and d["open"] == 0 for d in data["departments"])

        # A retrained model replaces the file: the next poll names it.
        rewrite_model(
            model_path,
            model,
            meta_change=lambda meta: meta.update(model_version="20260318-140000-new"),
        )
        data = (await http.get("/api/data")).json()
        assert data["classifier"]["model_version"] == "20260318-140000-new"

        # A file the bot would refuse is not named; without cases there is nothing to show.
        model.write_bytes(b"not a model")
        assert (await http.get("/api/data")).json()["classifier"]["model_version"] is None


async def test_favicon_is_shipped_linked_and_served(site):
    async with client(site) as http:
        icon = await http.get("/static/favicon.svg")
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.text.startswith("<svg")
        legacy = await http.get("/favicon.ico")
        assert legacy.status_code == 200 and legacy.content == icon.content
        assert legacy.headers["content-type"].startswith("image/svg+xml")
        link = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        assert link in (await http.get("/login")).text
        await login(http, SCREEN_TOKEN)
        assert link in (await http.get("/")).text


# ---------------------------------------------------------------- export


async def test_export_for_staff_has_no_personal_data(site, engine):
    async with client(site) as http:
        await staff_login(http, engine, LEADER)
        answer = await http.get("/export.csv", params={"from": "2026-02-01", "to": "2026-03-31"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "whistle-cases-20260201-20260331.csv" in answer.headers["content-disposition"]
    rows = parse_csv(answer)
    header, body = rows[0], rows[1:]
    assert "联系电话" not in header and "反映内容" not in header
    assert len(body) == 16  # every seeded case, the merged one too
    for secret in PERSONAL:
        assert secret not in answer.content.decode("utf-8-sig")
    c1 = dict(zip(header, next(r for r in body if r[0] == "C1"), strict=True))
    assert (c1["承办部门"], c1["状态"], c1["提交时间"]) == ("水务局", "已结案", "2026-03-02 09:00")
    assert (c1["按时办结"], c1["满意度"], c1["网格"]) == ("是", "满意", "汉王陵片区微网格")
    c6 = dict(zip(header, next(r for r in body if r[0] == "C6"), strict=True))
    assert (c6["当前灯色"], c6["类型"]) == ("红灯", "企业")


async def test_admin_export_includes_personal_data(site, engine):
    async with client(site) as http:
        await staff_login(http, engine, ADMIN)
        answer = await http.get("/export.csv")  # default: this month up to today
    rows = parse_csv(answer)
    header, body = rows[0], rows[1:]
    # Local 03-01 .. 03-18: C1-C12 and B1 (B0 is 02-28 23:59:59 local).
    assert sorted(r[0] for r in body) == sorted(
        ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10", "C11", "C12", "B1"]
    )
    c1 = dict(zip(header, next(r for r in body if r[0] == "C1"), strict=True))
    assert (c1["联系电话"], c1["反映人"], c1["反映人Telegram ID"]) == (
        RESIDENT_PHONE,
        RESIDENT_NAME,
        str(RESIDENT_TID),
    )
    assert c1["反映内容"].startswith("C1 测试诉求内容")


async def test_export_rejects_bad_dates_clearly(site, engine):
    async with client(site) as http:
        await staff_login(http, engine, LEADER)
        bad = await http.get("/export.csv", params={"from": "2026-13-01"})
        assert bad.status_code == 400
        assert "日期格式不正确" in bad.text and "YYYY-MM-DD" in bad.text
        backwards = await http.get("/export.csv", params={"from": "2026-03-10", "to": "2026-03-01"})
        assert backwards.status_code == 400 and "晚于结束日期" in backwards.text
        assert backwards.headers["content-type"].startswith("text/plain")


# ---------------------------------------------------------------- serving beside the bot


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_dashboard_runs_until_cancelled(engine, settings):
    port = _free_port()
    task = asyncio.create_task(serve_dashboard(dashboard_settings(settings, port=port), engine))
    async with client(f"http://127.0.0.1:{port}") as http:
        for _ in range(200):
            try:
                answer = await http.get("/healthz")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.02)
        assert answer.text == "ok"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(httpx.ConnectError):
            await http.get("/healthz")


async def test_serve_dashboard_reports_a_taken_port(engine, settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match="无法在"):
            await serve_dashboard(dashboard_settings(settings, port=port), engine)
