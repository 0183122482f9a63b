"""Store benchmark: a year of cases (1,000,000 cases, 5,000,000 events) on SQLite and PostgreSQL.

    python bench/store_bench.py [--cases 1000000] [--engines sqlite,sqlite-inplace,postgresql]
                                [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
                                [--regenerate] [--runs 300]

Builds the schema with the real migrations, bulk-loads synthetic data (executemany on SQLite,
binary COPY on PostgreSQL, secondary indexes built after the load), then times through the
real store functions: creating a case with its first events, one transition (签收), the
"what is due now" scan (models.followup's deadline/survey queries + outbox claim_due) and one
month's statistics (models.stats). The SQLite file is cached as var/bench/store_<N>.db and the
PostgreSQL database as whistle_bench_<N>, both reused while their schema is at head.
Prints a table and writes bench/results/store.json.
Targets on SQLite: transition p99 <= 5 ms, due scan <= 50 ms, monthly statistics <= 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import cases, outbox, people, reference
from models.cases import Actor
from models.credit_code import check_character
from models.deadlines import Rules, deadline_after, yellow_at
from models.engine import make_engine, session_scope
from models.migrate import current_revision, head_revision, schema_differences, upgrade
from models.tables import Case, CaseEvent, Outbox, SQLModel
from whistle.config import DEFAULT_CONFIG, load_settings

NOW = datetime(2026, 11, 20, 6, 0)  # Friday 14:00 in Changsha; the data covers the year before
DAYS = 365
EVENTS_PER_CASE = 5
BATCH = 20_000
OFFSET = timedelta(hours=8)  # Asia/Shanghai has had no daylight saving since 1991
TARGETS_MS = {"transition_p99": 5.0, "due_scan": 50.0, "monthly_stats": 500.0}
BENCH_DIR = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results" / "store.json"

PLACES = [
    "月亮岛街道",
    "高塘岭街道",
    "银星村",
    "新城社区",
    "白沙洲",
    "丁字湾街道",
    "乔口镇",
    "金山桥街道",
    "黄金园街道",
    "望城经开区",
]
PROBLEMS = {
    "water": ["停水两天了", "自来水发黄", "水压太低", "下水道堵塞"],
    "municipal": ["路灯不亮", "井盖缺失", "垃圾没人清运", "人行道破损"],
    "housing": ["物业不作为", "电梯经常故障", "外墙脱落", "楼顶漏水"],
    "labor": ["工资被拖欠", "不签劳动合同", "社保没有缴纳"],
    "environment": ["夜间施工噪音", "餐馆油烟扰民", "工地扬尘严重"],
    "transport": ["公交车不按站停", "出租车拒载"],
    "education": ["学位不够", "校外培训退费难"],
    "health": ["诊所乱收费", "疫苗预约困难"],
    "commerce": ["超市卖过期食品", "商家虚假宣传"],
}
DEPT_WEIGHTS = {
    "water": 18,
    "municipal": 25,
    "housing": 20,
    "labor": 8,
    "environment": 12,
    "transport": 5,
    "education": 4,
    "health": 3,
    "commerce": 5,
}

CASE_COLS = [c.name for c in Case.__table__.columns]
EVENT_COLS = [c.name for c in CaseEvent.__table__.columns]
OUTBOX_COLS = [c.name for c in Outbox.__table__.columns]
BULK_TABLES = ("case", "caseevent", "outbox")
DATETIME_COLS = {
    c.name
    for t in BULK_TABLES
    for c in SQLModel.metadata.tables[t].columns
    if c.type.python_type is datetime
}


# ---------------------------------------------------------------- synthetic data


class Deadlines:
    """rules.deadlines() memoised per local start date (the arithmetic is per day)."""

    def __init__(self, rules: Rules):
        self.rules, self.cal, self.cache = rules, rules.calendar, {}

    def after(self, start: datetime, limit: str) -> datetime:
        if not limit.endswith("wd"):
            return deadline_after(start, limit, self.cal)
        day = (start + OFFSET).date()
        hit = self.cache.get((day, limit))
        if hit is None:
            probe = datetime.combine(day, dtime(12)) - OFFSET
            result = deadline_after(probe, limit, self.cal)
            # On a working day the time of day is kept; otherwise it is the next opening.
            hit = (True, result - probe) if self.cal.is_workday(day) else (False, result)
            self.cache[(day, limit)] = hit
        return start + hit[1] if hit[0] else hit[1]

    def pair(self, start: datetime, priority: str) -> tuple[datetime, datetime]:
        sign_limit, resolve_limit = self.rules.limits_for(None, priority)
        return self.after(start, sign_limit), self.after(start, resolve_limit)


def _ev(rows, ev_id, case_id, at, action, frm, to, actor_kind="system", actor_id=None):
    rows.append((ev_id, case_id, at, actor_kind, actor_id, action, frm, to, "{}"))


def _case_story(rng: random.Random, dl: Deadlines, created: datetime) -> dict:
    """One case's life up to NOW: status, times, deadlines and follow-up bookkeeping."""
    c = {
        "status": "submitted",
        "priority": "urgent" if rng.random() < 0.05 else "normal",
        "triaged": False,
        "merged": False,
        "reopen_count": 0,
        "satisfaction": None,
    }
    for key in (
        "dispatched_at",
        "signed_at",
        "resolved_at",
        "closed_at",
        "sign_by",
        "resolve_by",
        "yellow_notified_at",
        "red_notified_at",
        "escalated_at",
        "survey_sent_at",
        "survey_reminded_at",
    ):
        c[key] = None
    roll = rng.random()
    if roll < 0.01:
        c["merged"] = True
        return c
    c["triaged"] = rng.random() < 0.25
    dispatched = created + (
        timedelta(hours=rng.uniform(0.3, 8))
        if c["triaged"]
        else timedelta(minutes=rng.uniform(0.2, 5))
    )
    if dispatched > NOW:
        c["status"] = "triage" if c["triaged"] else "submitted"
        return c
    sign_by, resolve_by = dl.pair(dispatched, c["priority"])
    c.update(status="dispatched", dispatched_at=dispatched, sign_by=sign_by, resolve_by=resolve_by)
    stuck = roll > 0.996  # stragglers: never signed or never resolved
    signed = dispatched + (sign_by - dispatched) * rng.uniform(0.05, 1.15)
    if signed <= NOW and not (stuck and roll > 0.998):
        c.update(status="signed", signed_at=signed)
        resolved = signed + (resolve_by - signed) * rng.uniform(0.1, 1.2)
        if resolved <= NOW and not stuck:
            c.update(
                status="resolved",
                resolved_at=resolved,
                survey_sent_at=resolved + timedelta(minutes=1),
            )
            if resolved + timedelta(days=3) <= NOW:
                c["survey_reminded_at"] = resolved + timedelta(days=3)
            closed = resolved + timedelta(days=rng.uniform(0.02, 6.0))
            if closed <= NOW:
                r = rng.random()
                c.update(
                    status="closed",
                    closed_at=closed,
                    satisfaction="satisfied"
                    if r < 0.8
                    else "basic"
                    if r < 0.93
                    else "unsatisfied"
                    if r < 0.96
                    else "unrated",
                )
                if c["satisfaction"] == "unsatisfied":
                    c["reopen_count"] = 1
    # Alerts the follow-up engine has already sent for the running deadline.
    if c["status"] in ("dispatched", "signed"):
        deadline = sign_by if c["status"] == "dispatched" else resolve_by
        turned = yellow_at(dispatched, deadline, dl.rules.yellow_ratio)
        if turned < NOW - timedelta(minutes=5):
            c["yellow_notified_at"] = turned
        if deadline < NOW - timedelta(minutes=5):
            c["red_notified_at"] = deadline
        if deadline + timedelta(hours=24) < NOW - timedelta(minutes=5):
            c["escalated_at"] = deadline + timedelta(hours=24)
    return c


def generate(n: int, rules: Rules, n_reporters: int, seed: int = 7):
    """Batches of (case rows, event rows, outbox rows), oldest first, with explicit ids."""
    rng = random.Random(seed)
    dl = Deadlines(rules)
    depts, weights = list(DEPT_WEIGHTS), list(DEPT_WEIGHTS.values())
    grids = ["WC-YLD-YX-01", "WC-YLD-YX-01-A", "WC-GTL-XC-01", None, None]
    start = NOW - timedelta(days=DAYS)
    step = DAYS * 86400 / n
    day_seq: dict[str, int] = {}
    cases, events, pushes = [], [], []
    ev_id = 0
    for i in range(1, n + 1):
        created = start + timedelta(seconds=(i - 1) * step + rng.random() * step * 0.9)
        day = (created + OFFSET).strftime("%Y%m%d")
        day_seq[day] = seq = day_seq.get(day, 0) + 1
        dept = rng.choices(depts, weights)[0]
        suggested = dept if rng.random() < 0.85 else rng.choice(depts)
        conf = round(rng.uniform(0.3, 0.99), 3)
        story = _case_story(rng, dl, created)
        status = "merged" if story["merged"] else story["status"]
        has_dept = story["dispatched_at"] is not None
        reporter = rng.randint(1, n_reporters)
        row = {
            "id": i,
            "ref": f"WC-{day}-{seq:04d}",
            "idempotency_key": None,
            "kind": "enterprise" if rng.random() < 0.08 else "resident",
            "reporter_id": reporter,
            "enterprise_id": None,
            "text": f"{rng.choice(PLACES)}{rng.choice(PROBLEMS[dept])}，请尽快处理",
            "photos": "[]",
            "latitude": None,
            "longitude": None,
            "address": None,
            "out_of_area": False,
            "grid_code": rng.choice(grids),
            "suggested_department": suggested,
            "suggested_confidence": conf,
            "suggestions": json.dumps([[suggested, conf]]),
            "model_version": "bench-1",
            "department_code": dept if has_dept else None,
            "status": status,
            "priority": story["priority"],
            "created_at": created,
            "resolution": "已处理完毕" if story["resolved_at"] else None,
            "resolution_photo": None,
            "satisfaction_comment": None,
            "merged_into_id": max(1, i - 1) if status == "merged" else None,
            "version": 0,
            # One in four is a 12345 热线哨 (as in the seed), from no API client here.
            "channel": "hotline" if i % 4 == 0 else "telegram",
            "api_client_id": None,
            "external_id": None,
            "caller": None,
        }
        for key in (
            "dispatched_at",
            "signed_at",
            "resolved_at",
            "closed_at",
            "sign_by",
            "resolve_by",
            "satisfaction",
            "yellow_notified_at",
            "red_notified_at",
            "escalated_at",
            "survey_sent_at",
            "survey_reminded_at",
            "reopen_count",
        ):
            row[key] = story[key]
        # Exactly EVENTS_PER_CASE audit events, following the case's path.
        path = [(created, "created", None, "submitted", "reporter", 10_000_000 + reporter)]
        path.append((created, "classified", None, None, "system", None))
        if story["triaged"]:
            path.append((created, "to_triage", "submitted", "triage", "system", None))
        if has_dept:
            path.append(
                (
                    story["dispatched_at"],
                    "dispatched",
                    "triage" if story["triaged"] else "submitted",
                    "dispatched",
                    "staff" if story["triaged"] else "system",
                    9001,
                )
            )
        if story["signed_at"]:
            path.append((story["signed_at"], "signed", "dispatched", "signed", "staff", 9002))
        if story["resolved_at"]:
            path.append((story["resolved_at"], "resolved", "signed", "resolved", "staff", 9002))
        if story["closed_at"]:
            path.append((story["closed_at"], "closed", "resolved", "closed", "reporter", None))
        if status == "merged":
            path.append(
                (created + timedelta(hours=1), "merged", "submitted", "merged", "staff", 9001)
            )
        while len(path) > EVENTS_PER_CASE:  # drop the least telling ones first
            drop = next(k for k, p in enumerate(path) if p[1] in ("classified", "to_triage"))
            path.pop(drop)
        while len(path) < EVENTS_PER_CASE:
            at = path[-1][0]
            path.append((at, "progress_note", status, status, "staff", 9002))
        row["version"] = sum(1 for p in path if p[1] not in ("created", "classified"))
        for at, action, frm, to, kind, actor in path:
            ev_id += 1
            _ev(events, ev_id, i, at, action, frm, to, kind, actor)
        cases.append(tuple(row[c] for c in CASE_COLS))
        # One push per case (the department post), sent; the newest ones still pending.
        pending = created > NOW - timedelta(minutes=3)
        due = created + timedelta(seconds=2)
        pushes.append(
            tuple(
                {
                    "id": i,
                    "key": f"case:{i}:dispatched:1:-1000000000101",
                    "chat_id": -1000000000101,
                    "kind": "progress",
                    "text": "新案件待签收",
                    "reply_markup": None,
                    "photo": None,
                    "case_id": i,
                    "status": "pending" if pending else "sent",
                    "due_at": due,
                    "attempts": 0 if pending else 1,
                    "last_error": None,
                    "lease_owner": None,
                    "lease_until": None,
                    "sent_at": None if pending else due + timedelta(seconds=1),
                    "sent_message_id": None if pending else i,
                    "created_at": created,
                }[c]
                for c in OUTBOX_COLS
            )
        )
        if len(cases) >= BATCH:
            yield cases, events, pushes
            cases, events, pushes = [], [], []
    if cases:
        yield cases, events, pushes
    yield "counters", day_seq, None


def enterprise_rows(count: int, now: datetime):
    for i in range(1, count + 1):
        body = f"914301{i % 100:02d}MA{i:07d}Q"[:17]
        yield (
            i,
            f"望城合成企业{i}有限公司",
            body + check_character(body),
            "制造业",
            "望城经开区",
            True,
            now,
        )


# ---------------------------------------------------------------- loading


def _secondary_indexes():
    """Non-unique indexes of the bulk tables: dropped before the load, built after it."""
    for name in BULK_TABLES:
        for index in SQLModel.metadata.tables[name].indexes:
            if not index.unique:
                yield index


async def fresh_schema(url: str, settings) -> None:
    """The schema by the migrations and the reference data (departments, grids) in an empty
    database, as `whistle run` leaves it (bench/open311_bench.py too)."""
    await upgrade(url)
    engine = make_engine(url)
    async with session_scope(engine) as s:
        await reference.sync_reference_data(s, settings)
    await engine.dispose()


async def _prepare_schema(url: str, settings) -> None:
    await fresh_schema(url, settings)
    engine = make_engine(url)
    async with engine.begin() as conn:
        for index in _secondary_indexes():
            await conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))
    await engine.dispose()


async def _build_indexes(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        for index in _secondary_indexes():
            await conn.run_sync(index.create)
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


def _ts(v):
    return v.isoformat(" ", "microseconds") if isinstance(v, datetime) else v


def _sqlite_rows(rows, cols: list[str] | None = None):
    """Rows with datetimes as SQLAlchemy stores them in SQLite (text with microseconds)."""
    if cols is None:
        return [tuple(_ts(v) for v in r) for r in rows]
    at = [i for i, c in enumerate(cols) if c in DATETIME_COLS]
    out = []
    for r in rows:
        r = list(r)
        for i in at:
            if r[i] is not None:
                r[i] = r[i].isoformat(" ", "microseconds")
        out.append(r)
    return out


def _insert_sql(table: str, cols: list[str]) -> str:
    return f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})'


def load_sqlite(path: Path, n: int, settings, rules: Rules) -> dict:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{path}"
    t0 = time.perf_counter()
    asyncio.run(_prepare_schema(url, settings))
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    n_reporters = max(10, n // 5)
    db.executemany(
        _insert_sql(
            "reporter",
            [
                "id",
                "telegram_id",
                "kind",
                "display_name",
                "phone_consent",
                "reachable",
                "created_at",
            ],
        ),
        (
            (i, 10_000_000 + i, "resident", f"居民{i}", 0, 1, _ts(NOW - timedelta(days=DAYS)))
            for i in range(1, n_reporters + 1)
        ),
    )
    db.executemany(
        _insert_sql(
            "enterprise",
            ["id", "name", "credit_code", "industry", "park", "news_subscribed", "created_at"],
        ),
        _sqlite_rows(enterprise_rows(max(1, n // 200), NOW)),
    )
    counts = {"cases": 0, "events": 0, "outbox": 0}

    def write(cases, events, pushes) -> None:
        db.executemany(_insert_sql("case", CASE_COLS), cases)
        db.executemany(_insert_sql("caseevent", EVENT_COLS), events)
        db.executemany(_insert_sql("outbox", OUTBOX_COLS), pushes)

    # The next batch is generated while the previous one is written.
    with ThreadPoolExecutor(1) as writer:
        pending = None
        for cases, events, pushes in generate(n, rules, n_reporters):
            if cases == "counters":
                day_seq = events
                continue
            batch = (
                _sqlite_rows(cases, CASE_COLS),
                _sqlite_rows(events, EVENT_COLS),
                _sqlite_rows(pushes, OUTBOX_COLS),
            )
            if pending is not None:
                pending.result()
            pending = writer.submit(write, *batch)
            counts["cases"] += len(cases)
            counts["events"] += len(events)
            counts["outbox"] += len(pushes)
        if pending is not None:
            pending.result()
    db.executemany("INSERT INTO casecounter (day, last) VALUES (?, ?)", sorted(day_seq.items()))
    db.commit()
    loaded = time.perf_counter() - t0
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    asyncio.run(_build_indexes(url))
    return {**counts, "load_s": round(loaded, 1), "total_s": round(time.perf_counter() - t0, 1)}


def _pg_dsn(url: str, database: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    return (u.set(database=database) if database else u).render_as_string(hide_password=False)


def _pg_url(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


async def load_postgres(base_url: str, database: str, n: int, settings, rules: Rules) -> dict:
    admin = await asyncpg.connect(_pg_dsn(base_url))
    await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    url = _pg_url(base_url, database)
    t0 = time.perf_counter()
    await _prepare_schema(url, settings)
    conn = await asyncpg.connect(_pg_dsn(base_url, database))
    n_reporters = max(10, n // 5)
    await conn.copy_records_to_table(
        "reporter",
        columns=[
            "id",
            "telegram_id",
            "kind",
            "display_name",
            "phone_consent",
            "reachable",
            "created_at",
        ],
        records=[
            (i, 10_000_000 + i, "resident", f"居民{i}", False, True, NOW - timedelta(days=DAYS))
            for i in range(1, n_reporters + 1)
        ],
    )
    await conn.copy_records_to_table(
        "enterprise",
        columns=["id", "name", "credit_code", "industry", "park", "news_subscribed", "created_at"],
        records=list(enterprise_rows(max(1, n // 200), NOW)),
    )
    counts = {"cases": 0, "events": 0, "outbox": 0}
    batches = generate(n, rules, n_reporters)
    # The next batch is generated on a thread while the server ingests the previous one.
    item = await asyncio.to_thread(next, batches, None)
    while item is not None:
        cases, events, pushes = item
        if cases == "counters":
            await conn.copy_records_to_table(
                "casecounter", columns=["day", "last"], records=sorted(events.items())
            )
            break
        upcoming = asyncio.create_task(asyncio.to_thread(next, batches, None))
        await conn.copy_records_to_table("case", columns=CASE_COLS, records=cases)
        await conn.copy_records_to_table("caseevent", columns=EVENT_COLS, records=events)
        await conn.copy_records_to_table("outbox", columns=OUTBOX_COLS, records=pushes)
        counts["cases"] += len(cases)
        counts["events"] += len(events)
        counts["outbox"] += len(pushes)
        item = await upcoming
    for table in ("case", "caseevent", "outbox", "reporter", "enterprise"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
            f'(SELECT max(id) FROM "{table}"))'
        )
    await conn.close()
    loaded = time.perf_counter() - t0
    await _build_indexes(url)
    return {**counts, "load_s": round(loaded, 1), "total_s": round(time.perf_counter() - t0, 1)}


async def _case_count(url: str) -> int | None:
    """Cases in an existing benchmark store at head, else None (it must be regenerated)."""
    try:
        if await current_revision(url) != head_revision():
            return None
        engine = make_engine(url)
        async with engine.connect() as conn:
            differs = await conn.run_sync(schema_differences)
        await engine.dispose()
        if differs:
            return None
        engine = make_engine(url)
        async with engine.connect() as conn:
            count = (await conn.execute(text('SELECT max(id) FROM "case"'))).scalar()
        await engine.dispose()
        return count
    except Exception:  # noqa: BLE001 - a missing or broken store is simply rebuilt
        return None


# ---------------------------------------------------------------- measuring


def summarize(samples: list[float]) -> dict:
    s = sorted(samples)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 2)
    return {
        "runs": len(s),
        "median_ms": round(statistics.median(s), 2),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "max_ms": round(s[-1], 2),
    }


async def timed(fn, runs: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return summarize(samples)


async def measure(url: str, settings, rules: Rules, runs: int, in_place: bool = False) -> dict:
    engine = make_engine(url, in_place=in_place)
    results: dict = {}
    rng = random.Random(11)
    now = NOW

    # The noise floor: one trivial round trip through the driver (threads, event loop, load).
    async with engine.connect() as conn:

        async def ping():
            await conn.execute(text("SELECT 1"))

        results["baseline_select_1"] = await timed(ping, runs)

    # Create a case with its first events (reporter lookup, ref counter, 2 events), committed.
    counter = iter(range(10**9))

    async def create():
        async with session_scope(engine) as s:
            await cases.create_case(
                s,
                reporter_telegram_id=10_000_000 + rng.randint(1, 1000),
                text="路灯不亮，请修理",
                now=now,
                suggestions=[("municipal", 0.9)],
                model_version="bench-1",
                idempotency_key=f"bench:{os.getpid()}:{time.time_ns()}:{next(counter)}",
            )

    results["create_case"] = await timed(create, runs)

    # One transition (签收 by the department's staff), committed: dispatched cases, one each.
    signers = {d.code: 9100 + k for k, d in enumerate(settings.departments)}
    async with session_scope(engine) as s:
        for code, telegram_id in signers.items():
            await people.upsert_staff(
                s, telegram_id, f"基准测试{code}", "department", department_code=code
            )
    async with engine.connect() as conn:
        rows = list(
            await conn.execute(
                text(
                    "SELECT id, department_code FROM \"case\" WHERE status = 'dispatched' "
                    "ORDER BY id DESC LIMIT :n"
                ),
                {"n": runs + 2},
            )
        )
    todo = iter(rows)

    async def sign():
        case_id, code = next(todo)
        async with session_scope(engine) as s:
            await cases.sign_for(s, case_id, Actor.staff(signers[code]), now, rules=rules)

    results["transition_sign"] = await timed(sign, min(runs, len(rows) - 2))

    # "What is due now": deadline alerts, surveys, and the outbox claim.
    try:
        from models import followup
    except ImportError:  # pragma: no cover - the follow-up helper's module is optional here
        followup = None
    escalate = timedelta(hours=settings.followup.escalate_after_red_hours)
    remind = timedelta(days=settings.followup.survey_reminder_days)
    close = timedelta(days=settings.followup.survey_close_days)
    found: dict = {}

    async def due_scan():
        async with session_scope(engine) as s:
            if followup is not None:
                alerts = await followup.due_alerts(s, now, rules, escalate_after=escalate)
                surveys = await followup.surveys_due(s)
                reminders = await followup.survey_reminders_due(s, now, after=remind)
                expired = await followup.surveys_expired(s, now, after=close)
                found.update(
                    yellow=len(alerts.yellow),
                    red=len(alerts.red),
                    escalation=len(alerts.escalation),
                    surveys=len(surveys),
                    reminders=len(reminders),
                    expired=len(expired),
                )
            pushes = await outbox.claim_due(s, now, worker="bench", limit=100)
            found["outbox_claimed"] = found.get("outbox_claimed", 0) + len(pushes)

    results["due_scan"] = await timed(due_scan, max(20, runs // 10))
    results["due_scan"]["found_last_run"] = dict(found)
    results["due_scan"]["uses"] = (
        "models.followup.due_alerts + surveys_* + outbox.claim_due"
        if followup
        else "outbox.claim_due only"
    )

    # One month's statistics: October, the last full month.
    try:
        from models import stats
    except ImportError:  # pragma: no cover
        stats = None
    if stats is not None:
        start, end = stats.local_days_bounds(date(2026, 10, 1), date(2026, 10, 31), rules.calendar)

        async def month_summary():
            async with session_scope(engine) as s:
                results.setdefault(
                    "_summary", await stats.summary(s, start=start, end=end, now=now, rules=rules)
                )

        async def month_league():
            async with session_scope(engine) as s:
                await stats.by_department(s, start=start, end=end, now=now, rules=rules)

        results["monthly_stats_summary"] = await timed(month_summary, 7, warmup=1)
        results["monthly_stats_by_department"] = await timed(month_league, 7, warmup=1)
        figures = results.pop("_summary")
        results["monthly_stats_summary"]["figures"] = {
            k: v for k, v in figures.items() if isinstance(v, (int, float)) or v is None
        }
    await engine.dispose()
    return results


# ---------------------------------------------------------------- report


def verdicts(engine_results: dict) -> dict:
    r = engine_results
    out = {
        "transition_p99_ms": (r["transition_sign"]["p99_ms"], TARGETS_MS["transition_p99"]),
        "due_scan_median_ms": (r["due_scan"]["median_ms"], TARGETS_MS["due_scan"]),
    }
    if "monthly_stats_summary" in r:
        out["monthly_stats_median_ms"] = (
            r["monthly_stats_summary"]["median_ms"],
            TARGETS_MS["monthly_stats"],
        )
    return {k: {"value": v, "target": t, "met": v <= t} for k, (v, t) in out.items()}


OPERATIONS = (
    "baseline_select_1",
    "create_case",
    "transition_sign",
    "due_scan",
    "monthly_stats_summary",
    "monthly_stats_by_department",
)


def print_table(report: dict) -> None:
    """Operations down, engines side by side (median / p99 / max ms each)."""
    engines = list(report["engines"])
    rows = [("operation", *(f"{e} {col}" for e in engines for col in ("median", "p99", "max")))]
    for name in OPERATIONS:
        timings = [report["engines"][e]["timings"].get(name) for e in engines]
        if any(timings):
            rows.append(
                (
                    name,
                    *(
                        v
                        for t in timings
                        for v in (
                            (t["median_ms"], t["p99_ms"], t["max_ms"]) if t else ("-", "-", "-")
                        )
                    ),
                )
            )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print(
            "  ".join(
                str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    for engine, res in report["engines"].items():
        load = res["load_avg"]
        print(
            f"\n{engine}: data {res['data']}\n  load average (1/5/15 min) before "
            f"{load['before']}, after {load['after']}"
        )
        for name, v in res["targets"].items():
            print(
                f"  {name}: {v['value']} (target ≤ {v['target']}) {'OK' if v['met'] else 'MISSED'}"
            )


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _previous_generation(engine: str, cases: int) -> dict | None:
    """How long generating the reused store took, from the last report that generated it."""
    try:
        old = json.loads(RESULTS.read_text())
        data = old["engines"][engine]["data"]
    except (OSError, ValueError, KeyError):
        return None
    if old.get("cases") != cases:
        return None
    return data.get("generated") if "reused" in data else data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--engines", default="sqlite,sqlite-inplace,postgresql")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--regenerate", action="store_true", help="rebuild even if cached")
    ap.add_argument("--runs", type=int, default=300, help="samples for create and transition")
    args = ap.parse_args()

    settings = load_settings(DEFAULT_CONFIG, env={})
    rules = Rules.from_settings(settings)
    report = {
        "cases": args.cases,
        "events_per_case": EVENTS_PER_CASE,
        "now": NOW.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "load_avg_at_start": _load_avg(),
        },
        "engines": {},
    }
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        # "sqlite-inplace": the same file through the connections the bot uses, which run
        # each statement on the event loop's thread (models/engine/inline.py).
        in_place = engine == "sqlite-inplace"
        if in_place:
            engine = "sqlite"
        if engine == "sqlite":
            path = BENCH_DIR / f"store_{args.cases}.db"
            url = f"sqlite+aiosqlite:///{path}"
        else:
            database = f"whistle_bench_{args.cases}"
            url = _pg_url(args.pg_url, database)
        cached = None if args.regenerate else asyncio.run(_case_count(url))
        if cached is not None and cached >= args.cases:
            data = {
                "reused": str(path) if engine == "sqlite" else database,
                "cases": cached,
                "generated": _previous_generation(engine, args.cases),
            }
            print(f"{engine}: reusing {data['reused']} ({cached} cases)", flush=True)
        else:
            print(f"{engine}: generating {args.cases} cases ...", flush=True)
            data = (
                load_sqlite(path, args.cases, settings, rules)
                if engine == "sqlite"
                else asyncio.run(load_postgres(args.pg_url, database, args.cases, settings, rules))
            )
            print(f"{engine}: generated {data}", flush=True)
        if engine == "sqlite":
            data["file_mb"] = round(path.stat().st_size / 2**20)
        # The machine is shared: the load next to the timings says how quiet it was.
        load_before = _load_avg()
        timings = asyncio.run(measure(url, settings, rules, args.runs, in_place))
        report["engines"]["sqlite-inplace" if in_place else engine] = {
            "data": data,
            "timings": timings,
            "targets": verdicts(timings),
            "load_avg": {"before": load_before, "after": _load_avg()},
        }
    print()
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
