"""Open311 benchmark: POST requests (sustained rate, p99) and GET requests p99 over many cases.

    python bench/open311_bench.py [--engines sqlite,postgresql] [--cases 1000000]
                                  [--rate 100,200] [--seconds 10] [--samples 200]
                                  [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]

The API runs as `whistle run` serves it (web.app.create_app under uvicorn) in a process of its
own; the load comes from this process over HTTP (httpx). POST: an open-loop arrival stream of
work orders at --rate per second for --seconds (each goes through the classifier and the
bot's create/dispatch path), then a closed loop of 16 clients for the ceiling. GET: the case
store of bench/store_bench.py (--cases cases, a year of them) and --samples of each query.
Prints a table and writes bench/results/open311.json. Goals: POST >= 200/s with p99 <= 50 ms
on SQLite; GET requests p99 <= 100 ms with 1M cases.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib.util
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "open311.json"


def _store_bench():
    spec = importlib.util.spec_from_file_location("store_bench", ROOT / "bench" / "store_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _settings(url: str, model_path: Path):
    from whistle.config import DEFAULT_CONFIG, load_settings

    base = load_settings(DEFAULT_CONFIG, env={})
    open311 = dataclasses.replace(
        base.open311, rate_per_second=100_000, rate_burst=100_000, callbacks=False
    )
    return dataclasses.replace(
        base,
        database_url=url,
        open311=open311,
        classifier=dataclasses.replace(base.classifier, model_path=str(model_path)),
    )


def _serve(url: str, model_path: str, port: int) -> None:
    """The API process: the dashboard app (with /open311/v2) under uvicorn."""
    import uvicorn

    from web.app import create_app

    app = create_app(_settings(url, Path(model_path)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The API in a spawned process, up until closed."""

    def __init__(self, url: str, model_path: Path):
        self.port = _free_port()
        ctx = multiprocessing.get_context("spawn")
        self.process = ctx.Process(target=_serve, args=(url, str(model_path), self.port))
        self.base = f"http://127.0.0.1:{self.port}/open311/v2"

    async def __aenter__(self) -> Self:
        self.process.start()
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"{self.base}/services.json")).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the API did not start")

    async def __aexit__(self, *exc) -> None:
        self.process.terminate()
        self.process.join(10)


def summarize(samples: list[float]) -> dict:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {
        "n": len(ordered),
        "p50_ms": round(pick(0.50) * 1000, 2),
        "p99_ms": round(pick(0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


DESCRIPTIONS = [
    "小区自来水管爆裂，路面积水严重",
    "道路井盖缺失，夜间行人容易摔倒",
    "工地夜间施工噪音扰民",
    "学校门口交通拥堵，缺少交警疏导",
    "菜市场占道经营，环境脏乱",
    "路灯不亮已经一周",
]


def _order(key: str, i: int, run: str) -> dict:
    return {
        "api_key": key,
        "description": DESCRIPTIONS[i % len(DESCRIPTIONS)] + f"（{i}）",
        "lat": "28.37",
        "long": "112.82",
        "attribute[external_id]": f"{run}-{i}",
        "first_name": "来电人",
        "phone": "13912345678",
    }


async def post_open_loop(base: str, key: str, rate: float, seconds: float) -> dict:
    """Work orders arriving at `rate` per second whatever the answers: latency and rate."""
    latencies, failures = [], 0
    tag = f"open{rate:g}-{time.time_ns()}"  # fresh external ids: every POST makes a case
    async with httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=256)
    ) as http:

        async def one(i: int) -> None:
            nonlocal failures
            t0 = time.perf_counter()
            try:
                response = await http.post("/requests.json", data=_order(key, i, tag))
                failures += response.status_code != 201
            except httpx.HTTPError:  # an overloaded server drops connections: a failure
                failures += 1
            latencies.append(time.perf_counter() - t0)

        tasks, start = [], time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(len(latencies) / elapsed, 1),
        "failures": failures,
        **summarize(latencies),
    }


async def post_closed_loop(base: str, key: str, clients: int, seconds: float) -> dict:
    """`clients` callers posting back to back: the ceiling."""
    latencies, failures, counter = [], 0, iter(range(10**9))
    tag = f"closed-{time.time_ns()}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await http.post("/requests.json", data=_order(key, next(counter), tag))
                latencies.append(time.perf_counter() - t0)
                failures += response.status_code != 201

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "per_s": round(len(latencies) / elapsed, 1),
        "failures": failures,
        **summarize(latencies),
    }


async def get_queries(base: str, samples: int, refs: list[str]) -> dict:
    """p50/p99 of the GET queries a client makes, one at a time."""
    queries = {
        "latest 50": ("/requests.json", {}),
        "status=open": ("/requests.json", {"status": "open"}),
        "service_code=water": ("/requests.json", {"service_code": "water"}),
        "one month": (
            "/requests.json",
            {"start_date": "2026-06-01T00:00:00+08:00", "end_date": "2026-06-30T23:59:59+08:00"},
        ),
        "page 100": ("/requests.json", {"page": "100"}),
        "by id (list)": ("/requests.json", {"service_request_id": ",".join(refs[:10])}),
        "requests/{id}": (None, {}),
    }
    out = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for name, (path, params) in queries.items():
            latencies = []
            for i in range(samples):
                target = path or f"/requests/{refs[i % len(refs)]}.json"
                t0 = time.perf_counter()
                response = await http.get(target, params=params)
                latencies.append(time.perf_counter() - t0)
                assert response.status_code == 200, response.text
            out[name] = summarize(latencies)
    return out


async def _new_client(url: str) -> str:
    from models import apiclients
    from models.engine import make_engine, session_scope

    engine = make_engine(url)
    async with session_scope(engine) as s:
        _, key = await apiclients.add_client(
            s, f"bench-{time.time_ns()}", datetime.now(UTC).replace(tzinfo=None)
        )
    await engine.dispose()
    return key


async def _some_refs(url: str) -> list[str]:
    from sqlalchemy import text

    from models.engine import make_engine

    engine = make_engine(url)
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT ref FROM \"case\" WHERE status != 'merged' ORDER BY id DESC LIMIT 200"
                    )
                )
            )
            .scalars()
            .all()
        )
    await engine.dispose()
    return list(rows)


async def bench_engine(
    name: str, fresh_url: str, big_url: str | None, args, model: Path, load
) -> dict:
    settings = _settings(fresh_url, model)
    result: dict = {}
    await _store_bench().fresh_schema(fresh_url, settings)
    key = await _new_client(fresh_url)
    async with Server(fresh_url, model) as server:
        await post_open_loop(server.base, key, 20, 1)  # warm-up (model loaded, pools filled)
        result["post_open_loop"] = [
            await post_open_loop(server.base, key, float(rate), args.seconds)
            for rate in args.rate.split(",")
        ]
        result["post_closed_loop"] = await post_closed_loop(server.base, key, 16, args.seconds)
    if big_url:
        result["load"] = await asyncio.to_thread(load)  # the loaders run their own loops
        async with Server(big_url, model) as server:
            refs = await _some_refs(big_url)
            await get_queries(server.base, 5, refs)  # warm-up
            result["get"] = await get_queries(server.base, args.samples, refs)
    return result


def print_table(report: dict) -> None:
    print(f"\nOpen311 bench — {report['cases']:,} cases for GET")
    for engine, r in report["engines"].items():
        c = r["post_closed_loop"]
        for o in r["post_open_loop"]:
            print(
                f"[{engine}] POST open loop {o['offered_per_s']}/s offered → "
                f"{o['achieved_per_s']}/s, p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms, "
                f"failures {o['failures']}"
            )
        print(
            f"[{engine}] POST 16 clients → {c['per_s']}/s, p50 {c['p50_ms']} ms, "
            f"p99 {c['p99_ms']} ms"
        )
        for query, s in r.get("get", {}).items():
            print(f"[{engine}] GET {query:<20} p50 {s['p50_ms']:>8} ms  p99 {s['p99_ms']:>8} ms")


def _cached(path: Path, build) -> dict:
    """Build the SQLite store unless an earlier run left it at `path`."""
    if path.exists():
        return {"reused": str(path)}
    return build()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--cases", type=int, default=1_000_000, help="cases for GET (0: skip)")
    ap.add_argument("--rate", default="100,200", help="offered POST rates per second")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = ap.parse_args()

    from classifier import build_default_model
    from models.deadlines import Rules

    sb = _store_bench()
    work = Path(tempfile.mkdtemp(prefix="open311_bench_"))
    model = ROOT / "var" / "bench" / "model.skops"
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        build_default_model(_settings("sqlite://", model))
    settings = _settings("sqlite://", model)
    rules = Rules.from_settings(settings)
    report = {
        "cases": args.cases,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
        "engines": {},
    }
    for engine in args.engines.split(","):
        if engine == "sqlite":
            fresh = f"sqlite+aiosqlite:///{work / 'post.db'}"
            # The big store is kept (var/bench, like store_bench's) and reused next time.
            big_path = ROOT / "var" / "bench" / f"open311_get_{args.cases}.db"
            big = f"sqlite+aiosqlite:///{big_path}" if args.cases else None
            load = functools.partial(
                _cached,
                big_path,
                functools.partial(sb.load_sqlite, big_path, args.cases, settings, rules),
            )
            report["engines"]["sqlite"] = asyncio.run(
                bench_engine("sqlite", fresh, big, args, model, load)
            )
        else:
            names = ("whistle_o311bench_post", "whistle_o311bench_get")

            async def admin(sql: str) -> None:
                conn = await asyncpg.connect(sb._pg_dsn(args.pg_url))
                await conn.execute(sql)
                await conn.close()

            for db in names:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            asyncio.run(admin(f'CREATE DATABASE "{names[0]}"'))
            big = sb._pg_url(args.pg_url, names[1]) if args.cases else None
            load = functools.partial(
                asyncio.run, sb.load_postgres(args.pg_url, names[1], args.cases, settings, rules)
            )
            try:
                report["engines"]["postgresql"] = asyncio.run(
                    bench_engine(
                        "postgresql", sb._pg_url(args.pg_url, names[0]), big, args, model, load
                    )
                )
            finally:
                for db in names:
                    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        print_table({**report, "engines": {engine: report["engines"][engine]}})
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    print(f"\n→ {args.out}")


if __name__ == "__main__":
    main()
