"""Grid dashboard benchmark: the dashboard's data with a Wangcheng-sized grid tree and a
million cases.

    python bench/grid_dashboard_bench.py [--cases 1000000] [--runs 7] [--regenerate]
                                        [--pg-url postgresql+asyncpg://...] [--without-index NAME]

Builds (once, kept under var/bench/grids_4411/) the synthetic district of bench/grid_bench.py
(11 streets / 127 communities / 605 片 / 4,411 grids + micro-grids, made-up polygons) and a
SQLite store with --cases synthetic cases (bench/dashboard_bench.py's generator) spread over
those grids (60 % of cases have a grid); open cases get a point inside their grid so that red
cases are drawn on the map. Then measures, uncached: the grid figures (models/gridstats.py)
query by query and whole, and over real HTTP on 127.0.0.1: GET /api/data, GET /api/grids at
the district, a street and a community, GET /api/grid_shapes cold (the boundaries loaded and
a street's outline made) and warm; wall time and the process's CPU time (server, SQLite
threads and client share the process). With --pg-url (default TEST_DATABASE_URL) the store is
copied into PostgreSQL database whistle_grids_<N>k (kept) and measured there too. Prints a
table and writes bench/results/grid_dashboard.json. Target: each data request ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dashboard_bench import describe_store, generate_store, in_session_of, serving, summarize
from grid_bench import VERTICES_PER_LEAF, district_records, write_geojson

from geo import GridTree, write_gazetteer
from geo.demo.synth import blob, partition
from models import gridstats, stats
from models.deadlines import Rules
from models.engine import create_all, make_engine, session_scope
from models.reference import sync_reference_data
from web.app import create_app
from whistle.config import DEFAULT_CONFIG, GridConfig, load_settings

TARGET_MS = 300.0
HERE = ROOT / "var" / "bench" / "grids_4411"
RESULTS = ROOT / "bench" / "results" / "grid_dashboard.json"
TOKEN = "bench-screen-token-0123456789"


async def timed(fn, runs: int) -> dict:
    """Wall time (as dashboard_bench) plus the process's CPU time per run: the server, its
    SQLite threads and the client all run in this process, so the CPU milliseconds are what
    one request costs, however loaded the shared machine is."""
    samples, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return summarize(samples) | {"cpu_median_ms": round(sorted(cpu)[len(cpu) // 2], 1)}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def district(regenerate: bool) -> tuple[GridTree, Path, Path]:
    """The synthetic district's gazetteer and boundaries (generated once, ~1 minute)."""
    csv, geojson = HERE / "grids.csv", HERE / "boundaries.geojson"
    rng = random.Random(0)
    tree = GridTree(district_records(rng, 2_000))
    if regenerate or not geojson.exists():
        HERE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        shapes = partition(
            tree, blob((112.80, 28.375), 0.17, 64, rng), seed=0, vertices_per_leaf=VERTICES_PER_LEAF
        )
        write_gazetteer(csv, tree)
        write_geojson(geojson, shapes)
        say(f"generated {len(tree):,} grid polygons in {time.perf_counter() - t0:.0f} s")
    return tree, csv, geojson


def synthetic_settings(settings, tree: GridTree, geojson: Path):
    """config.toml with the synthetic grids instead of the demo's (and no grid staff)."""
    grids = tuple(
        GridConfig(code=r.code, name=r.name, level=r.level, parent=r.parent) for r in tree
    )
    district_options = replace(
        settings.district, gazetteer="", grid_boundaries=str(geojson), bbox=None
    )
    staff = tuple(s for s in settings.staff if not getattr(s, "grid", None))
    return replace(settings, grids=grids, district=district_options, staff=staff)


def place_open_cases(db_path: Path, geojson: Path) -> int:
    """Open cases with a grid get a point inside it (the map's red dots need coordinates)."""
    from shapely.geometry import shape

    features = json.loads(geojson.read_text(encoding="utf-8"))["features"]
    points = []
    for f in features:
        p = shape(f["geometry"]).representative_point()
        points.append((f["properties"]["code"], p.y, p.x))
    db = sqlite3.connect(db_path)
    db.execute("CREATE TEMP TABLE point (code TEXT PRIMARY KEY, lat REAL, lon REAL)")
    db.executemany("INSERT INTO point VALUES (?, ?, ?)", points)
    changed = db.execute(
        'UPDATE "case" SET latitude = (SELECT lat FROM point WHERE code = grid_code),'
        " longitude = (SELECT lon FROM point WHERE code = grid_code)"
        " WHERE status IN ('dispatched', 'signed') AND grid_code IS NOT NULL"
    ).rowcount
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return changed


async def ensure_indexes(engine, without: tuple[str, ...] = ()) -> list[str]:
    """A store built by an earlier run gets the indexes the models have gained since (as
    `whistle migrate` would give a deployed one), except those named in `without`, which are
    dropped (to measure the store without them); returns what it created or dropped."""
    from sqlalchemy import inspect
    from sqlmodel import SQLModel

    def create_missing(conn) -> list[str]:
        changed = []
        for table in SQLModel.metadata.sorted_tables:
            have = {i["name"] for i in inspect(conn).get_indexes(table.name)}
            for index in table.indexes:
                if index.name in without and index.name in have:
                    index.drop(conn)
                    changed.append(f"dropped {index.name}")
                elif index.name not in without and index.name not in have:
                    index.create(conn)
                    changed.append(f"created {index.name}")
        if changed:
            conn.exec_driver_sql("ANALYZE")
        return changed

    async with engine.begin() as conn:
        return await conn.run_sync(create_missing)


async def measure_queries(engine, rules, now, runs: int) -> dict:
    month = stats.month_bounds(now, rules.calendar)

    def in_session(call):
        return in_session_of(engine, call)

    parts = {
        "grid table (tree)": gridstats.grid_index,
        "month by grid": lambda s: gridstats._period_by_grid(s, *month),
        "open by grid (lights now)": lambda s: gridstats._open_by_grid(s, now, rules.yellow_ratio),
        "red points": lambda s: gridstats.red_points(s, now=now, rules=rules),
        "channels and 报到 per department": lambda s: gridstats.channels_and_report_times(
            s, start=month[0], end=month[1]
        ),
    }
    out = {name: await timed(in_session(call), runs) for name, call in parts.items()}
    index = await in_session(gridstats.grid_index)()
    period = await in_session(parts["month by grid"])()
    current = await in_session(parts["open by grid (lights now)"])()

    async def roll():
        gridstats.roll_up(index, period, current)

    out["roll-up along the tree (Python)"] = await timed(roll, runs)

    async def league():
        await gridstats.grid_league(engine, now=now, rules=rules, index=index)

    out["grid_league (queries at once + roll-up)"] = await timed(league, runs)
    return out


async def measure_http(settings, engine, now, runs: int, tree: GridTree) -> dict:
    street = tree.children("WC")[0]
    community = tree.children(street)[0]
    out = {}
    for cache_seconds in (0, 5):
        dash = replace(settings.dashboard, screen_tokens=(TOKEN,), cache_seconds=cache_seconds)
        app = create_app(replace(settings, dashboard=dash), engine=engine, clock=lambda: now)
        suffix = "uncached" if cache_seconds == 0 else "cached"
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=120) as http:
            await http.post("/login", data={"credential": TOKEN})
            if cache_seconds == 0:
                t0 = time.perf_counter()
                first = await http.get("/api/grid_shapes")
                first.raise_for_status()
                cold_ms = (time.perf_counter() - t0) * 1000
                out["GET /api/grid_shapes, first (load boundaries)"] = summarize([cold_ms])
                t0 = time.perf_counter()
                (await http.get("/api/grid_shapes", params={"code": street})).raise_for_status()
                out["GET /api/grid_shapes street, first"] = summarize(
                    [(time.perf_counter() - t0) * 1000]
                )
            for label, path, params in (
                ("/api/data", "/api/data", {}),
                ("/api/grids district", "/api/grids", {}),
                ("/api/grids street", "/api/grids", {"code": street}),
                ("/api/grids community", "/api/grids", {"code": community}),
                ("/api/grid_shapes district (kept)", "/api/grid_shapes", {}),
            ):
                if cache_seconds and "grid_shapes" in path:
                    continue
                await http.get(path, params=params)  # warm

                async def get(path=path, params=params):
                    (await http.get(path, params=params)).raise_for_status()

                out[f"GET {label} {suffix}"] = await timed(get, runs)
            sizes = {
                "district": len((await http.get("/api/grids")).content),
                "shapes_district": len((await http.get("/api/grid_shapes")).content),
            }
    out["bytes"] = sizes
    return out


# ---------------------------------------------------------------- PostgreSQL copy

CASE_COLUMNS = (
    "ref",
    "kind",
    "reporter_id",
    "text",
    "photos",
    "suggestions",
    "grid_code",
    "suggested_department",
    "suggested_confidence",
    "model_version",
    "department_code",
    "status",
    "priority",
    "created_at",
    "dispatched_at",
    "signed_at",
    "resolved_at",
    "closed_at",
    "sign_by",
    "resolve_by",
    "satisfaction",
    "reopen_count",
    "out_of_area",
    "version",
    "out_of_grid",
    "latitude",
    "longitude",
    "started_in_grid",
    "whistled_at",
    "resolved_level",
    "is_hard",
    "channel",
)
DATES = {
    "created_at",
    "dispatched_at",
    "signed_at",
    "resolved_at",
    "closed_at",
    "sign_by",
    "resolve_by",
    "whistled_at",
}
FLAGS = {"out_of_area", "out_of_grid", "started_in_grid", "is_hard"}


def _converted(rows, columns):
    """SQLite's text datetimes and 0/1 flags as asyncpg's binary COPY wants them."""
    dates = [i for i, c in enumerate(columns) if c in DATES]
    flags = [i for i, c in enumerate(columns) if c in FLAGS]
    for row in rows:
        row = list(row)
        for i in dates:
            if row[i] is not None:
                row[i] = datetime.fromisoformat(row[i])
        for i in flags:
            row[i] = bool(row[i])
        yield row


async def pg_copy(base_url: str, db: Path, settings, wanted: int) -> str:
    """The SQLite store copied into PostgreSQL database whistle_grids_<N>k (kept for later
    runs); returns its URL."""
    name = f"whistle_grids_{wanted // 1000}k"
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin_dsn = make_url(dsn).set(database="postgres").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn)
        have = await conn.fetchval('SELECT count(*) FROM "case"')
        await conn.close()
        if have >= wanted:
            return url
    except (OSError, asyncpg.PostgresError):
        pass
    say(f"copying the store into PostgreSQL {name} ...")
    t0 = time.perf_counter()
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    engine = make_engine(url)
    await create_all(engine)
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
    await engine.dispose()
    source = sqlite3.connect(db)
    conn = await asyncpg.connect(dsn)
    reporter_columns = (
        "id",
        "telegram_id",
        "kind",
        "display_name",
        "phone_consent",
        "reachable",
        "created_at",
    )
    reporters = source.execute(f"SELECT {', '.join(reporter_columns)} FROM reporter").fetchall()
    await conn.copy_records_to_table(
        "reporter",
        columns=reporter_columns,
        records=[(*r[:4], bool(r[4]), bool(r[5]), datetime.fromisoformat(r[6])) for r in reporters],
    )
    cursor = source.execute(f'SELECT {", ".join(CASE_COLUMNS)} FROM "case" ORDER BY id')
    while rows := cursor.fetchmany(50_000):
        await conn.copy_records_to_table(
            "case", columns=CASE_COLUMNS, records=list(_converted(rows, CASE_COLUMNS))
        )
    await conn.execute("ANALYZE")
    await conn.close()
    source.close()
    say(f"  done in {time.perf_counter() - t0:.0f} s")
    return url


# ---------------------------------------------------------------- a run


async def run(
    url: str, label: str, settings, tree: GridTree, runs: int, without: tuple[str, ...] = ()
) -> dict:
    engine = make_engine(url)
    if changed := await ensure_indexes(engine, without):
        say(f"indexes of {label}: {', '.join(changed)}")
    rules = Rules.from_settings(settings)
    load_before = round(os.getloadavg()[0], 2)
    try:
        now, cases, open_cases = await describe_store(engine)
        queries = await measure_queries(engine, rules, now, runs)
        http = await measure_http(settings, engine, now, runs, tree)
        async with session_scope(engine) as s:
            grids = len((await gridstats.grid_index(s)).names)
    finally:
        await engine.dispose()
    return {
        "store": label,
        "database": engine.dialect.name,
        "cases": cases,
        "open_cases": open_cases,
        "grids": grids,
        "now": now.isoformat(),
        "queries": queries,
        "http": http,
        "without_indexes": list(without),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
    }


def print_table(result: dict) -> None:
    print(
        f"\n{result['database']} store {result['store']}: {result['cases']:,} cases, "
        f"{result['open_cases']:,} open, {result['grids']:,} grids, now {result['now']}"
    )
    print(f"load average before / after: {result['load_before']} / {result['load_after']}")
    if result["without_indexes"]:
        print(f"without the indexes {', '.join(result['without_indexes'])}")
    print(
        f"{'measurement (ms)':<48} {'runs':>5} {'min':>8} {'median':>8} {'p95':>8} {'max':>8}"
        f" {'CPU':>8}"
    )
    for section in ("queries", "http"):
        for name, r in result[section].items():
            if "median_ms" in r:
                print(
                    f"{name:<48} {r['runs']:>5} {r['min_ms']:>8.1f} {r['median_ms']:>8.1f} "
                    f"{r['p95_ms']:>8.1f} {r['max_ms']:>8.1f} {r.get('cpu_median_ms', ''):>8}"
                )
    sizes = result["http"]["bytes"]
    print(
        f"answer sizes: /api/grids district {sizes['district']:,} B, "
        f"/api/grid_shapes district {sizes['shapes_district']:,} B"
    )
    for name, r in result["http"].items():
        if name.startswith("GET /api/") and "uncached" in name:
            verdict = "OK" if r["p95_ms"] <= TARGET_MS else "over"
            print(f"{name}: p95 {r['p95_ms']} ms (target ≤ {TARGET_MS:.0f} ms): {verdict}")


def _cases_in(db: Path) -> int:
    """Cases in an earlier run's store (0 when there is none or it was left half-made)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute('SELECT count(*) FROM "case"').fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument(
        "--without-index",
        action="append",
        default=[],
        metavar="NAME",
        help="measure without this index of the models (dropped; the next run makes it again)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="a PostgreSQL server to copy the store to and measure as well",
    )
    args = parser.parse_args()
    tree, _, geojson = district(args.regenerate)
    settings = synthetic_settings(load_settings(DEFAULT_CONFIG, env={}), tree, geojson)
    db = HERE / f"store_{args.cases // 1000}k.db"
    if args.regenerate or _cases_in(db) < args.cases:
        say(f"generating {args.cases:,} synthetic cases in {db} ...")
        t0 = time.perf_counter()
        generate_store(db, args.cases, settings)
        placed = place_open_cases(db, geojson)
        say(f"  done in {time.perf_counter() - t0:.0f} s ({placed:,} open cases placed)")
    results = [
        asyncio.run(
            run(
                f"sqlite+aiosqlite:///{db}",
                str(db.relative_to(ROOT)),
                settings,
                tree,
                args.runs,
                tuple(args.without_index),
            )
        )
    ]
    if args.pg_url:
        pg = asyncio.run(pg_copy(args.pg_url, db, settings, args.cases))
        label = make_url(pg).database
        without = tuple(args.without_index)
        results.append(asyncio.run(run(pg, label, settings, tree, args.runs, without)))
    else:
        print("PostgreSQL: no --pg-url (or TEST_DATABASE_URL): measured on SQLite only")
    for result in results:
        print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"target_ms": TARGET_MS, "stores": results}, ensure_ascii=False, indent=2)
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
