"""Dashboard benchmark: how fast the data endpoint answers with a million cases in the store.

    python bench/dashboard_bench.py [--db var/bench/....db] [--cases 1000000] [--runs 7]
                                   [--pg-url postgresql+asyncpg://...] [--regenerate]

Reuses an existing SQLite store with at least --cases cases (--db, else bench/store_bench.py's
var/bench/store_<N>.db, else an earlier var/bench/dashboard_*.db); otherwise generates
var/bench/dashboard_1000k.db (synthetic cases over two years, about a minute). Also measures
store_bench.py's PostgreSQL database whistle_bench_<N> when it is loaded on --pg-url
(default TEST_DATABASE_URL). "Now" is just after the newest case in the store.
Measures each statistics query uncached, the whole dashboard_data() uncached, then
GET /api/data over real HTTP on 127.0.0.1 uncached and cached, and one month's CSV export.
Prints a table and writes bench/results/dashboard.json. Target: /api/data ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import stats
from models.auth import issue_login_code
from models.deadlines import Rules
from models.engine import create_all, make_engine, session_scope
from models.reference import sync_reference_data
from web.app import EmbeddedServer, create_app
from whistle.config import DEFAULT_CONFIG, load_settings

GEN_NOW = datetime(2026, 6, 29, 6, 0)  # generated stores end late in a month (~4 weeks of it)
DAYS = 730
TARGET_MS = 300.0
TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores datetimes in SQLite


# ---------------------------------------------------------------- synthetic store


def _ts(value: datetime | None) -> str | None:
    return value.strftime(TS) if value else None


def _case_rows(n: int, settings, rng: random.Random):
    """Synthetic cases, oldest first: status mix by age, some late, some reopened or merged."""
    departments = [d.code for d in settings.departments]
    weights = [30, 22, 18, 9, 8, 5, 3, 3, 2][: len(departments)]
    grids = [g.code for g in settings.grids if g.level in ("grid", "micro", "community")]
    start = GEN_NOW - timedelta(days=DAYS)
    step = DAYS * 86400 / n
    for i in range(n):
        created = start + timedelta(seconds=i * step + rng.random() * step)
        age_days = (GEN_NOW - created).total_seconds() / 86400
        dept = rng.choices(departments, weights)[0]
        suggested = dept if rng.random() < 0.85 else rng.choice(departments)
        version = f"2026.{int((created - start).days // 120) + 1:02d}"
        kind = "enterprise" if rng.random() < 0.1 else "resident"
        grid = rng.choice(grids) if rng.random() < 0.6 else None
        dispatched = created + timedelta(minutes=rng.randint(1, 240))
        sign_by, resolve_by = dispatched + timedelta(days=1), dispatched + timedelta(days=7)
        signed = resolved = closed = satisfaction = None
        roll = rng.random()
        if age_days > 30:
            status = (
                "closed"
                if roll < 0.95
                else "resolved"
                if roll < 0.985
                else "merged"
                if roll < 0.99
                else "signed"
            )
        else:
            finished = min(0.9, age_days / 12)
            status = (
                "closed"
                if roll < finished * 0.8
                else "resolved"
                if roll < finished
                else "signed"
                if roll < finished + 0.5 * (1 - finished)
                else "dispatched"
                if roll < 0.97
                else "triage"
            )
        if status in ("signed", "resolved", "closed"):
            signed = dispatched + timedelta(hours=rng.uniform(0.2, 30))
        if status in ("resolved", "closed"):
            resolved = signed + timedelta(hours=rng.uniform(1, 200))
            if resolved > GEN_NOW:
                resolved, status = None, "signed"
        if status == "closed":
            closed = resolved + timedelta(days=rng.uniform(0, 3))
            r = rng.random()
            satisfaction = (
                "satisfied"
                if r < 0.7
                else "basic"
                if r < 0.85
                else "unsatisfied"
                if r < 0.9
                else "unrated"
            )
        if status in ("triage", "merged"):
            dispatched = sign_by = resolve_by = None
            dept = None if status == "triage" else dept
        # 吹哨报到 (#13): half the cases with a grid start there; of those done, most stay in
        # the grid or the street (resolved_level), the rest were whistled up to a department.
        in_grid = grid is not None and rng.random() < 0.5
        level = whistled = None
        if in_grid and status in ("resolved", "closed"):
            level = rng.choices(("grid", "street", "department"), (70, 15, 15))[0]
            whistled = dispatched if level != "grid" else None
        channel = "hotline" if not in_grid and rng.random() < 0.4 else "telegram"
        yield (
            f"B{i:07d}",
            kind,
            rng.randint(1, 50_000),
            "基准测试合成案件",
            "[]",
            "[]",
            grid,
            suggested,
            0.5 + rng.random() / 2,
            version,
            dept,
            status,
            "normal",
            _ts(created),
            _ts(dispatched),
            _ts(signed),
            _ts(resolved),
            _ts(closed),
            _ts(sign_by),
            _ts(resolve_by),
            satisfaction,
            0,
            0,
            0,
            0,
            int(in_grid),
            _ts(whistled),
            level,
            int(rng.random() < 0.001),
            channel,
        )


def generate_store(path: Path, n: int, settings) -> None:
    """A fresh SQLite store at `path` with the real schema and `n` synthetic cases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)

    async def schema() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        async with session_scope(engine) as s:
            await create_all(engine)
            await sync_reference_data(s, settings)
        await engine.dispose()

    asyncio.run(schema())
    rng = random.Random(1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    made = GEN_NOW.strftime(TS)
    db.executemany(
        "INSERT INTO reporter (telegram_id, kind, display_name, phone_consent, reachable,"
        " created_at) VALUES (?, 'resident', '', 0, 1, ?)",
        ((100_000 + i, made) for i in range(1, 50_001)),
    )
    columns = (
        "ref, kind, reporter_id, text, photos, suggestions, grid_code, "
        "suggested_department, suggested_confidence, model_version, department_code, "
        "status, priority, created_at, dispatched_at, signed_at, resolved_at, closed_at, "
        "sign_by, resolve_by, satisfaction, reopen_count, out_of_area, version, "
        "out_of_grid, started_in_grid, whistled_at, resolved_level, is_hard, channel"
    )
    marks = ", ".join("?" * len(columns.split(", ")))
    db.executemany(f'INSERT INTO "case" ({columns}) VALUES ({marks})', _case_rows(n, settings, rng))
    # Staff corrections: one per case dispatched away from the suggestion.
    db.execute(
        "INSERT INTO labelcorrection (case_id, text, suggested_label, corrected_label,"
        " staff_telegram_id, model_version, at) SELECT id, text, suggested_department,"
        ' department_code, 9001, model_version, COALESCE(dispatched_at, created_at) FROM "case"'
        " WHERE department_code IS NOT NULL AND department_code != suggested_department"
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


def find_store(wanted: int) -> Path | None:
    """An existing store under var/bench with at least `wanted` cases, store_bench.py's first."""
    bench = ROOT / "var" / "bench"
    candidates = sorted(bench.glob("store_*.db")) + sorted(bench.glob("dashboard_*.db"))
    for path in candidates:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                if db.execute('SELECT count(*) FROM "case"').fetchone()[0] >= wanted:
                    return path
        except sqlite3.Error:
            continue
    return None


# ---------------------------------------------------------------- measuring


def summarize(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {
        "runs": len(ordered),
        "min_ms": round(ordered[0], 1),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def timed(fn, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return summarize(samples)


def in_session_of(engine, call):
    """A no-argument coroutine function that runs `call(session)` in a session of its own,
    so that each timed run pays for its session as a request does."""

    async def one():
        async with session_scope(engine) as s:
            return await call(s)

    return one


async def describe_store(engine) -> tuple[datetime, int, int]:
    """(now, cases, open cases): "now" is the minute after the newest case in the store."""
    async with engine.connect() as conn:
        newest, cases = (
            await conn.execute(text('SELECT max(created_at), count(*) FROM "case"'))
        ).one()
        open_cases = (
            await conn.execute(
                text(
                    'SELECT count(*) FROM "case" WHERE status IN '
                    "('submitted', 'triage', 'dispatched', 'signed')"
                )
            )
        ).scalar_one()
    if isinstance(newest, str):  # SQLite hands back the stored text
        newest = datetime.fromisoformat(newest)
    return newest.replace(second=0, microsecond=0) + timedelta(minutes=1), cases, open_cases


async def measure_queries(engine, rules, now: datetime, runs: int) -> dict:
    """Uncached time of each statistics query and of the whole dashboard_data()."""
    cal = rules.calendar
    month = stats.month_bounds(now, cal)
    trend = stats.last_days_bounds(now, cal, 30)

    def in_session(call):
        return in_session_of(engine, call)

    parts = {
        "month tallies (办结率, 满意率, league...)": lambda s: stats._period_tallies(s, *month),
        "open cases and lights now": lambda s: stats._open_tallies(s, now, rules.yellow_ratio),
        "today": lambda s: stats._period_tallies(s, *stats.today_bounds(now, cal)),
        "30-day trend by department": lambda s: stats.daily_counts(
            s, start=trend[0], end=trend[1], calendar=cal
        ),
        "cases by community": lambda s: stats.by_grid(s, start=month[0], end=month[1]),
        "red cases (top 20)": lambda s: stats.red_cases(s, now=now, rules=rules),
        "recent corrections + model": lambda s: stats.recent_corrections(s),
    }

    async def everything():
        await stats.dashboard_data(engine, now=now, rules=rules)

    cold = await timed(everything, 1)
    results = {name: await timed(in_session(call), runs) for name, call in parts.items()}
    results["sum of the parts (one after another)"] = {
        key: round(sum(r[key] for r in results.values()), 1)
        for key in ("min_ms", "median_ms", "p95_ms", "max_ms")
    } | {"runs": runs}
    results["dashboard_data (parts run at once)"] = await timed(everything, runs)
    results["dashboard_data, first run (cold)"] = cold
    return results


async def staff_code(settings, engine, now: datetime) -> str:
    """A login code for a non-admin staff member: wall screens may not export (no personal
    columns either way). The store gets config.toml's staff first (an idempotent upsert)."""
    leader = next(s.telegram_id for s in settings.staff if s.role == "leader")
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
        return await issue_login_code(s, leader, now)


@asynccontextmanager
async def serving(app) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1 for the block: its base URL."""
    server = EmbeddedServer(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def measure_http(settings, engine, now: datetime, runs: int) -> dict:
    """GET /api/data over real HTTP on 127.0.0.1, uncached and cached, plus a month's CSV."""
    out = {}
    for label, cache_seconds in (("GET /api/data uncached", 0), ("GET /api/data cached", 5)):
        token = "bench-screen-token-0123456789"
        dash = replace(settings.dashboard, screen_tokens=(token,), cache_seconds=cache_seconds)
        app = create_app(replace(settings, dashboard=dash), engine=engine, clock=lambda: now)
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
            await http.post("/login", data={"credential": token})
            await http.get("/api/data")  # warm

            async def get():
                answer = await http.get("/api/data")
                answer.raise_for_status()

            out[label] = await timed(get, runs)
            if cache_seconds == 0:
                await http.post(
                    "/login", data={"credential": await staff_code(settings, engine, now)}
                )
                today = Rules.from_settings(settings).calendar.to_local(now).date()
                t0 = time.perf_counter()
                answer = await http.get(
                    "/export.csv",
                    params={"from": today.replace(day=1).isoformat(), "to": today.isoformat()},
                )
                seconds = time.perf_counter() - t0
                answer.raise_for_status()
                rows = answer.content.count(b"\n") - 1
                out["GET /export.csv (this month)"] = {
                    "rows": rows,
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(rows / seconds),
                    "bytes": len(answer.content),
                }
    return out


async def run(url: str, label: str, runs: int, settings) -> dict:
    engine = make_engine(url)
    rules = Rules.from_settings(settings)
    try:
        now, cases, open_cases = await describe_store(engine)
        queries = await measure_queries(engine, rules, now, runs)
        http = await measure_http(settings, engine, now, runs)
    finally:
        await engine.dispose()
    return {
        "store": label,
        "database": engine.dialect.name,
        "cases": cases,
        "open_cases": open_cases,
        "now": now.isoformat(),
        "queries": queries,
        "http": http,
        "api_uncached_p95_ms": http["GET /api/data uncached"]["p95_ms"],
    }


async def pg_store(url: str | None, wanted: int) -> str | None:
    """store_bench.py's PostgreSQL database whistle_bench_<N> on the test server, if loaded."""
    if not url:
        return None
    candidate = make_url(url).set(database=f"whistle_bench_{wanted}")
    candidate = candidate.render_as_string(hide_password=False)
    engine = make_engine(candidate)
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(text('SELECT count(*) FROM "case"'))).scalar_one()
        return candidate if count >= wanted else None
    except (OSError, SQLAlchemyError, asyncpg.PostgresError):  # not loaded (yet)
        return None
    finally:
        await engine.dispose()


def print_table(result: dict) -> None:
    print(
        f"\n{result['database']} store {result['store']}: {result['cases']:,} cases, "
        f"{result['open_cases']:,} open, now {result['now']}"
    )
    print(f"{'measurement':<46} {'runs':>5} {'min':>8} {'median':>8} {'p95':>8} {'max':>8}")
    for section in ("queries", "http"):
        for name, r in result[section].items():
            if "median_ms" in r:
                print(
                    f"{name:<46} {r['runs']:>5} {r['min_ms']:>8.1f} {r['median_ms']:>8.1f} "
                    f"{r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}"
                )
            else:
                print(
                    f"{name:<46} {r['rows']:>,} rows in {r['seconds']} s "
                    f"({r['rows_per_s']:,} rows/s)"
                )
    cached = result["http"]["GET /api/data cached"]["p95_ms"]
    for what, ms in (("uncached", result["api_uncached_p95_ms"]), ("cached", cached)):
        verdict = "OK" if ms <= TARGET_MS else "over"
        print(f"/api/data {what} p95 {ms} ms (target ≤ {TARGET_MS:.0f} ms): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, help="an existing SQLite benchmark store")
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="PostgreSQL server holding store_bench.py's whistle_bench_<N>",
    )
    args = parser.parse_args()
    settings = load_settings(DEFAULT_CONFIG, env={})

    db = args.db or (None if args.regenerate else find_store(args.cases))
    if db is None:
        db = ROOT / "var" / "bench" / f"dashboard_{args.cases // 1000}k.db"
        print(f"generating {args.cases:,} synthetic cases in {db} ...", flush=True)
        t0 = time.perf_counter()
        generate_store(db, args.cases, settings)
        print(f"  done in {time.perf_counter() - t0:.0f} s")
    label = str(db.relative_to(ROOT) if db.is_relative_to(ROOT) else db)
    results = [asyncio.run(run(f"sqlite+aiosqlite:///{db}", label, args.runs, settings))]
    pg = asyncio.run(pg_store(args.pg_url, args.cases))
    if pg:
        results.append(asyncio.run(run(pg, make_url(pg).database, args.runs, settings)))
    else:
        print(
            "PostgreSQL: no whistle_bench_<N> database loaded (run bench/store_bench.py); "
            "measured on SQLite only"
        )
    for result in results:
        print_table(result)
    out = ROOT / "bench" / "results" / "dashboard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"target_ms": TARGET_MS, "stores": results}, ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
