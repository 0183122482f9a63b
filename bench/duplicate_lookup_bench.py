"""The bot's duplicate question end to end (bot/duplicates.py, #16): what a resident's report
waits for before its summary, against N open cases in a SQLite store.

    python bench/duplicate_lookup_bench.py [--cases 10000] [--queries 300] [--model PATH]

Open cases are the seed corpus's messages (written for this project) with a place and a
number changed, in the 8 demo grids' area, opened over the last 30 days. Measured: building
the index at start-up; then per report: similar_to_draft (the grid, the finder, and only when
it finds something one read of the candidates left for this reporter; the store is asked for
cases opened elsewhere at most every READ_SECONDS), with a new case opened elsewhere before
each query and the sweep of closed cases with a read forced every 50th query here; and
queue_hint (triage's hint, in a write transaction as in the case's own). Prints a table and
writes bench/results/duplicate_lookup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bot import duplicates
from bot.services import Services, utc_now
from classifier import Suggester, build_default_model
from classifier.data import corpus_files, read_examples
from models import cases, deadlines, reference
from models.engine import create_all, make_engine, session_scope
from models.tables import TRIAGE, Case, Reporter
from whistle.config import load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "duplicate_lookup.json"
CENTRE = (28.37, 112.82)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def variant(rng: random.Random, text: str) -> str:
    return f"{rng.choice('东南西北')}{rng.randint(1, 40)}栋，{text}"


async def seed(engine, settings, texts: list[str], n: int, rng: random.Random) -> None:
    async with session_scope(engine) as session:
        await reference.sync_reference_data(session, settings)
        now = utc_now()
        reporters = [
            {"telegram_id": 50_000 + i, "display_name": "", "kind": "resident", "created_at": now}
            for i in range(500)
        ]
        await session.exec(insert(Reporter), params=reporters)
        rows = []
        for i in range(n):
            lat = CENTRE[0] + rng.uniform(-0.05, 0.05)
            lon = CENTRE[1] + rng.uniform(-0.05, 0.05)
            rows.append(
                {
                    "ref": f"WC-B-{i:06d}",
                    "kind": "resident",
                    "reporter_id": 1 + i % 500,
                    "text": variant(rng, rng.choice(texts)),
                    "photos": [],
                    "suggestions": [],
                    "latitude": lat,
                    "longitude": lon,
                    "status": TRIAGE,
                    "priority": "normal",
                    "out_of_area": False,
                    "out_of_grid": False,
                    "reopen_count": 0,
                    "version": 0,
                    "created_at": now - timedelta(days=rng.uniform(0, 29)),
                }
            )
        for start in range(0, n, 2000):
            await session.exec(insert(Case), params=rows[start : start + 2000])


async def run(args) -> dict:
    rng = random.Random(0)
    folder = Path(tempfile.mkdtemp(prefix="dup-lookup-"))
    settings = load_settings(env={})
    model = Path(args.model) if args.model else folder / "model.npz"
    settings = replace(settings, classifier=replace(settings.classifier, model_path=str(model)))
    if not model.exists():
        print("training the default model …", flush=True)
        build_default_model(settings)
    texts = [t for path in corpus_files(settings.corpus_dir) for t, _ in read_examples(path)]
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    engine = make_engine(url, in_place=True)
    read_engine = make_engine(url, checkpoint_interval=None)
    await create_all(engine)
    await seed(engine, settings, texts, args.cases, rng)
    services = Services(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        rules=deadlines.Rules.from_settings(settings),
        suggester=Suggester.from_settings(settings),
    )
    index = duplicates.index_of(services)
    started = time.perf_counter()
    await index.refresh(services)
    build = time.perf_counter() - started

    asks, hints, found = [], [], 0
    for q in range(args.queries):
        # A case opens elsewhere before each report (the index reads it at the next look).
        async with services.session() as session:
            case = await cases.create_case(
                session,
                reporter_telegram_id=60_000 + q,
                text=variant(rng, rng.choice(texts)),
                now=utc_now(),
                latitude=CENTRE[0],
                longitude=CENTRE[1],
            )
        if q % 50 == 0:
            index.expire()  # a read and the sweep of closed cases, due every REFRESH_SECONDS
        draft = {
            "text": variant(rng, rng.choice(texts)),
            "lat": CENTRE[0] + 0.001,
            "lon": CENTRE[1] + 0.001,
            "address": None,
            "kind": "resident",
        }
        t0 = time.perf_counter()
        similar = await duplicates.similar_to_draft(services, 70_000 + q, draft)
        asks.append((time.perf_counter() - t0) * 1000)
        found += bool(similar)
        t0 = time.perf_counter()
        async with services.session() as session:
            await duplicates.queue_hint(session, services, case)
        hints.append((time.perf_counter() - t0) * 1000)
    await engine.dispose()
    await read_engine.dispose()
    return {
        "open_cases": args.cases,
        "queries": args.queries,
        "index_build_s": round(build, 2),
        "ask_ms": {
            "p50": round(statistics.median(asks), 2),
            "p99": round(percentile(asks, 0.99), 2),
        },
        "hint_ms": {
            "p50": round(statistics.median(hints), 2),
            "p99": round(percentile(hints, 0.99), 2),
        },
        "reports_asked": found,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--model", help="a model file (default: train one from the corpus)")
    result = asyncio.run(run(parser.parse_args()))
    print(f"open cases {result['open_cases']:,}, index built in {result['index_build_s']} s")
    print("| step | p50 ms | p99 ms |\n|---|---|---|")
    print(
        f"| resident's question (similar_to_draft) | {result['ask_ms']['p50']} | "
        f"{result['ask_ms']['p99']} |"
    )
    print(
        f"| triage's hint (queue_hint) | {result['hint_ms']['p50']} | {result['hint_ms']['p99']} |"
    )
    print(f"reports that were asked: {result['reports_asked']} of {result['queries']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
