"""Does models/engine/one_trip.py earn its keep? store_bench's operations through threaded
SQLite connections, one-trip ones against plain aiosqlite ones, on an idle event loop and on
one kept busy (1 ms of CPU per loop turn, as a loaded bot's: the bot's read_session and the
dashboard of `whistle run` read through threaded connections on the bot's loop).

    python bench/one_trip_bench.py [--cases 100000] [--runs 150] [--rounds 3]

Each measurement gets a freshly generated store (var/bench/store_<N>.db: the transitions use
up dispatched cases), variants alternate so that a shared machine's load falls on both.
Prints the medians of each round (ms) and writes bench/results/one_trip.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import store_bench

from models.deadlines import Rules
from models.engine import db
from whistle.config import DEFAULT_CONFIG, load_settings

RESULTS = ROOT / "bench" / "results" / "one_trip.json"
OPERATIONS = (
    "baseline_select_1",
    "create_case",
    "transition_sign",
    "due_scan",
    "monthly_stats_summary",
    "monthly_stats_by_department",
)
SPIN_S = 0.001  # CPU per loop turn on the busy loop


async def _measure(url: str, settings, rules: Rules, runs: int, busy: bool) -> dict:
    stop = asyncio.Event()

    async def spin() -> None:
        while not stop.is_set():
            end = time.perf_counter() + SPIN_S
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    spinner = asyncio.create_task(spin()) if busy else None
    try:
        return await store_bench.measure(url, settings, rules, runs)
    finally:
        stop.set()
        if spinner is not None:
            await spinner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settings = load_settings(DEFAULT_CONFIG, env={})
    rules = Rules.from_settings(settings)
    path = store_bench.BENCH_DIR / f"store_{args.cases}.db"
    url = f"sqlite+aiosqlite:///{path}"
    one_trip = db.one_trip_creator
    results: dict = {}
    for _ in range(args.rounds):
        for variant in ("one_trip", "plain"):
            # None: SQLAlchemy's own aiosqlite connections (four trips per statement).
            db.one_trip_creator = one_trip if variant == "one_trip" else (lambda _path: None)
            for loop in ("idle", "busy"):
                for stale in path.parent.glob(f"{path.name}*"):
                    stale.unlink()
                store_bench.load_sqlite(path, args.cases, settings, rules)
                timings = asyncio.run(_measure(url, settings, rules, args.runs, loop == "busy"))
                results.setdefault(loop, {}).setdefault(variant, []).append(timings)
                print(loop, variant, {k: timings[k]["median_ms"] for k in OPERATIONS}, flush=True)
    db.one_trip_creator = one_trip
    print(f"\nmedian ms per round ({args.cases} cases, {args.runs} runs)")
    for loop, variants in results.items():
        for variant, rounds in variants.items():
            cells = ["/".join(f"{r[k]['median_ms']:g}" for r in rounds) for k in OPERATIONS]
            print(f"{loop:5} {variant:9} " + " | ".join(cells))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"cases": args.cases, "runs": args.runs, "results": results},
            ensure_ascii=False,
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
