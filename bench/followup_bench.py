"""Follow-up benchmark: the outbox sender's throughput and the follow-up engine's due scan.

    python bench/followup_bench.py [--pushes 10000] [--chats 2000] [--cases 1000000]
                                   [--scan-runs 30] [--skip-delivery] [--skip-scan]

1. Delivery: `--pushes` due pushes spread round-robin over `--chats` private chats, sent by
   bot.delivery.deliver_due through python-telegram-bot's HTTP stack to the local Bot API
   emulator with Telegram's flood limits enforced (enforce_limits=True: 30/s overall, ~1/s per
   chat). Reports messages per second against the configured delivery.global_per_second
   ceiling (target ≥ 95 % of it) and the 429 answers received (target 0).
2. Due scan: the read side of one follow-up pass (models.followup.due_alerts, the three survey
   queries and the status-event scan) against the store benchmark's 1,000,000-case SQLite file
   var/bench/store_<N>.db (built by bench/store_bench.py's loader if absent). Target ≤ 50 ms.

Prints a table and writes bench/results/followup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telegram.ext import Application

from bot.delivery import deliver_due, delivery_state
from bot.services import Services, utc_now
from emulator import TelegramEmulator
from models import followup as fq
from models import outbox
from models.deadlines import Rules
from models.engine import create_all, make_engine, session_scope
from whistle.config import DEFAULT_CONFIG, load_settings

TOKEN = "123456789:BENCH-emulator-token"
FIRST_CHAT = 200_001
RESULTS = ROOT / "bench" / "results" / "followup.json"
BENCH_DIR = ROOT / "var" / "bench"
THROUGHPUT_TARGET = 0.95  # of the configured ceiling
SCAN_TARGET_MS = 50.0
SCAN_NOW = datetime(2026, 11, 20, 6, 0)  # the store benchmark's "now"


# ---------------------------------------------------------------- delivery throughput


async def bench_delivery(settings, pushes: int, chats: int) -> dict:
    ceiling = settings.delivery.global_per_second
    emu = TelegramEmulator(token=TOKEN, enforce_limits=True)
    chat_ids = [FIRST_CHAT + i for i in range(chats)]
    for chat in chat_ids:
        emu.add_user(chat, f"企业{chat}")
    await emu.start()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'delivery.db'}"
        # As the bot runs: statements in place, scans through threaded connections.
        engine = make_engine(url, in_place=True)
        read_engine = make_engine(url, checkpoint_interval=None)
        await create_all(engine)
        now = utc_now()
        async with session_scope(engine) as session:
            for i in range(pushes):
                chat = chat_ids[i % chats]
                await outbox.enqueue(
                    session,
                    key=f"bench:{i}",
                    chat_id=chat,
                    kind="bench",
                    text=f"惠企政策推送 第{i}条",
                    now=now,
                )
        app = (
            Application.builder()
            .token(TOKEN)
            .base_url(emu.base_url)
            .base_file_url(emu.base_file_url)
            .build()
        )
        app.bot_data["services"] = Services(
            settings=settings,
            engine=engine,
            read_engine=read_engine,
            rules=Rules.from_settings(settings),
            suggester=None,
        )
        await app.initialize()
        started = time.monotonic()
        try:
            while True:
                await deliver_due(app, max_seconds=60)
                async with session_scope(engine) as session:
                    left = await outbox.pending_count(session)
                if left == 0:
                    break
                await asyncio.sleep(0.05)  # only postponed rows left: they are due shortly
        finally:
            wall = time.monotonic() - started
            await app.shutdown()
            await engine.dispose()
            await read_engine.dispose()
            await emu.stop()
    sends = sorted(c.time for c in emu.calls if c.method == "sendMessage")
    span = sends[-1] - sends[0] if len(sends) > 1 else float("nan")
    rate = (len(sends) - 1) / span if len(sends) > 1 else 0.0
    state = delivery_state(app)
    return {
        "pushes": pushes,
        "chats": chats,
        "ceiling_per_second": ceiling,
        "delivered": emu.stats["sent"],
        "send_requests": len(sends),
        "answers_429": emu.stats["429"],
        "wall_seconds": round(wall, 2),
        "first_to_last_send_seconds": round(span, 2),
        "messages_per_second": round(rate, 2),
        "share_of_ceiling": round(rate / ceiling, 4),
        "postponed_by_limiter": state.stats["postponed"],
        "target": f">= {THROUGHPUT_TARGET:.0%} of ceiling, 0 x 429",
        "meets_target": (
            rate >= THROUGHPUT_TARGET * ceiling
            and emu.stats["429"] == 0
            and emu.stats["sent"] == pushes
        ),
    }


# ---------------------------------------------------------------- due scan on 1M cases


def store_file(cases: int, settings) -> Path:
    """The store benchmark's SQLite file with `cases` cases, built with its loader if absent."""
    path = BENCH_DIR / f"store_{cases}.db"
    if not path.exists():
        print(
            f"{path} not found: building it with bench/store_bench.py's loader "
            "(several minutes for 1,000,000 cases)"
        )
        sys.path.insert(0, str(ROOT / "bench"))
        import store_bench

        path.parent.mkdir(parents=True, exist_ok=True)
        store_bench.load_sqlite(path, cases, settings, Rules.from_settings(settings))
    return path


async def bench_scan(settings, cases: int, runs: int) -> dict:
    rules = Rules.from_settings(settings)
    path = store_file(cases, settings)
    f = settings.followup
    escalate = timedelta(hours=f.escalate_after_red_hours)
    remind = timedelta(days=f.survey_reminder_days)
    close = timedelta(days=f.survey_close_days)
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    found: dict = {}
    try:
        async with session_scope(engine) as session:
            total = await _count_cases(session)
            cursor = await fq.last_event_before(session, SCAN_NOW - timedelta(minutes=10))

        async def scan() -> None:
            async with session_scope(engine) as session:
                alerts = await fq.due_alerts(session, SCAN_NOW, rules, escalate_after=escalate)
                new = await fq.surveys_due(session)
                reminders = await fq.survey_reminders_due(session, SCAN_NOW, after=remind)
                expired = await fq.surveys_expired(session, SCAN_NOW, after=close)
                events = await fq.status_events(session, after_id=cursor)
            found.update(
                yellow=len(alerts.yellow),
                red=len(alerts.red),
                escalation=len(alerts.escalation),
                surveys=len(new),
                survey_reminders=len(reminders),
                surveys_to_close=len(expired),
                status_events=len(events),
            )

        for _ in range(3):  # warm the page cache
            await scan()
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await scan()
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        await engine.dispose()
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {
        "store_file": str(path.relative_to(ROOT)),
        "cases": total,
        "runs": runs,
        "now": SCAN_NOW.isoformat(),
        "found": found,
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(p95, 2),
        "max_ms": round(samples[-1], 2),
        "target": f"<= {SCAN_TARGET_MS:g} ms",
        "meets_target": statistics.median(samples) <= SCAN_TARGET_MS,
    }


async def _count_cases(session) -> int:
    from models.cases import count_cases

    return await count_cases(session)


# ---------------------------------------------------------------- report


def print_table(report: dict) -> None:
    rows = []
    d = report.get("delivery")
    if d:
        share = f"{d['share_of_ceiling']:.1%}"
        rows += [
            ("delivery: pushes / chats", f"{d['pushes']} / {d['chats']}"),
            (
                "delivery: messages per second",
                f"{d['messages_per_second']} ({share} of the {d['ceiling_per_second']:g}/s ceiling)",
            ),
            ("delivery: 429 answers", str(d["answers_429"])),
            ("delivery: delivered", str(d["delivered"])),
            ("delivery: wall time", f"{d['wall_seconds']} s"),
            ("delivery: meets target", "yes" if d["meets_target"] else "NO"),
        ]
    s = report.get("due_scan")
    if s:
        rows += [
            ("due scan: cases in store", f"{s['cases']:,}"),
            (
                "due scan: median / p95 / max",
                f"{s['median_ms']} / {s['p95_ms']} / {s['max_ms']} ms",
            ),
            ("due scan: found", ", ".join(f"{k} {v}" for k, v in s["found"].items())),
            ("due scan: meets target", "yes" if s["meets_target"] else "NO"),
        ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushes", type=int, default=10_000)
    ap.add_argument("--chats", type=int, default=2_000)
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--scan-runs", type=int, default=30)
    ap.add_argument("--skip-delivery", action="store_true")
    ap.add_argument("--skip-scan", action="store_true")
    args = ap.parse_args()
    settings = load_settings(DEFAULT_CONFIG, env={})
    # A part that is skipped keeps its figures from the previous run.
    report: dict = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    report["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    stamp = utc_now().isoformat(timespec="seconds")
    if not args.skip_delivery:
        report["delivery"] = asyncio.run(bench_delivery(settings, args.pushes, args.chats))
        report["delivery"]["run_at"] = stamp
    if not args.skip_scan:
        report["due_scan"] = asyncio.run(bench_scan(settings, args.cases, args.scan_runs))
        report["due_scan"]["run_at"] = stamp
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nwritten {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
