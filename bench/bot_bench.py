"""Bot benchmark: simulated residents report through the Bot API emulator on loopback.

    python bench/bot_bench.py [--residents 1000] [--reports 5000] [--rate 330]
                              [--concurrency 64] [--http-client aiohttp|httpx]
                              [--poll-interval SECONDS]
                              [--without-followup] [--without-duplicates]
                              [--duplicate-share P] [--spread-start SECONDS]
                              [--db var/bench/bot_bench.db]

The bot runs in its own process exactly as deployed (python-telegram-bot over real HTTP, long
polling, SQLite store, real classifier); this process runs the emulator and the residents.
Each resident holds one conversation at a time — /report, a description, /skip the photo,
/skip the location, 确认提交 — waiting for the bot's reply to each step and then "thinking"
for a random while, so about --rate updates per second reach the bot in total. Residents
take reports from a shared quota until --reports are made. The rate is reported over the
whole run and over its steady part (5th to 95th percentile of send times), which is what the
target is checked against. Latency is
measured from the moment an update is queued at the emulator to the moment the emulator
records the bot's reply. Afterwards the store must hold exactly one case per report.

--without-followup is a diagnostic: it keeps the follow-up engine's periodic pass from running,
to show what the intake path alone does. --without-duplicates switches [duplicates] off (no
question before the summary, no triage hint), for comparison with the default. Prints a table and writes bench/results/bot.json.
Target: ≥ 300 updates/s with p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator import BotMessage, TelegramEmulator
from whistle.config import DEFAULT_CONFIG, Settings, load_settings
from whistle.demo import add_people_from_settings

TOKEN = "7000000099:BENCH-local-emulator"
FIRST_RESIDENT = 200_001
STEP_TIMEOUT = 15.0
TARGET_UPDATES_PER_S = 300.0
TARGET_P99_MS = 100.0
RESULTS = ROOT / "bench" / "results" / "bot.json"

# Synthetic reports (written for this benchmark; no real citizen messages).
PLACES = [
    "高塘岭街道新城社区",
    "月亮岛街道银星村",
    "金星北路与普瑞大道交叉口",
    "腾飞路口",
    "滨水新城小区",
    "雷锋大道旁",
    "郭亮路菜市场",
    "黄金园街道",
    "白沙洲工业园",
]
PROBLEMS = [
    "停水两天了还没来水，水压也很低",
    "路灯坏了好几天，晚上一片漆黑",
    "井盖松动，车辆经过咚咚响",
    "物业不管电梯故障，老人上下楼困难",
    "工地夜间施工噪声太大，影响休息",
    "餐馆油烟直排进居民楼",
    "公司拖欠工资三个月还没发",
    "公交车班次太少，早上等车要四十分钟",
    "学校门口道路积水严重",
    "药店卖过期药品",
    "排水管道堵塞，污水漫到路面",
    "垃圾桶满了好几天没人清运",
]


def report_text(rng: random.Random) -> str:
    return f"{rng.choice(PLACES)}{rng.choice(PROBLEMS)}，请尽快处理"


class ReportTexts:
    """What the residents write. By default every report is one of the 96 texts above, so
    nearly every report resembles an open case and gets the duplicate question (#16): the
    worst case. With --duplicate-share P, a share P of the reports is taken from those and
    the rest are the seed corpus's own sentences (written for this project), each used once
    in a shuffled order, so that most of them resemble no open case."""

    def __init__(self, share: float | None, seed: int = 11) -> None:
        self.share = share
        self.sentences: list[str] = []
        if share is not None:
            import csv

            for path in sorted((ROOT / "classifier" / "corpus").glob("*.csv")):
                with path.open(encoding="utf-8") as f:
                    self.sentences += [row["text"] for row in csv.DictReader(f)]
            random.Random(seed).shuffle(self.sentences)
        self.used = 0

    def take(self, rng: random.Random) -> str:
        if self.share is None or rng.random() < self.share:
            return report_text(rng)
        sentence = self.sentences[self.used % len(self.sentences)]
        self.used += 1
        return f"{rng.choice(PLACES)}{sentence}"  # a place makes the shortest long enough


# ---------------------------------------------------------------- the bot process


def bench_settings(
    db_url: str,
    model_path: str,
    concurrency: int,
    http_client: str | None,
    followup: bool,
    poll_interval: float | None = None,
    duplicates: bool = True,
) -> Settings:
    settings = load_settings(DEFAULT_CONFIG, env={})
    telegram = replace(settings.telegram, concurrent_updates=concurrency)
    if poll_interval is not None:
        telegram = replace(telegram, poll_interval=poll_interval)
    if http_client:
        telegram = replace(telegram, http_client=http_client)
    follow = settings.followup
    if not followup:  # diagnostic: the follow-up scan runs once at start, then not again
        follow = replace(follow, poll_seconds=10**6)
    return replace(
        settings,
        database_url=db_url,
        telegram=telegram,
        followup=follow,
        duplicates=replace(settings.duplicates, enabled=duplicates and settings.duplicates.enabled),
        classifier=replace(settings.classifier, model_path=str(model_path)),
    )


async def _serve(port: int, settings: Settings, ready, stop) -> None:
    from bot.app import build_application
    from bot.run import start_application, stop_application

    app = build_application(settings, base_url=f"http://127.0.0.1:{port}/bot", token=TOKEN)
    await start_application(app, settings, mode="polling")
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    await stop_application(app)


def bot_process(port: int, settings: Settings, ready, stop) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="[bot] %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(port, settings, ready, stop))


# ---------------------------------------------------------------- preparing the store


async def prepare_store(settings: Settings, db_path: Path) -> None:
    from models.engine import create_all, make_engine, session_scope
    from models.reference import sync_reference_data

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(settings.database_url)
    try:
        await create_all(engine)
        async with session_scope(engine) as session:
            await sync_reference_data(session, settings)
    finally:
        await engine.dispose()


def ensure_model(settings: Settings) -> None:
    """The benchmark's own model file, (re)trained from the built-in corpus when missing or
    left over from an older classifier version."""
    from classifier import ModelError, build_default_model, load_model

    try:
        load_model(settings.model_path)
        return
    except (ModelError, OSError):
        pass
    print(f"训练分类模型 → {settings.model_path}")
    build_default_model(settings)


async def count_cases(settings: Settings) -> tuple[int, int]:
    from sqlmodel import func, select

    from models.engine import make_engine, session_scope
    from models.tables import Case

    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            cases = (await session.exec(select(func.count()).select_from(Case))).one()
            keys = (
                await session.exec(select(func.count(func.distinct(Case.idempotency_key))))
            ).one()
            return cases, keys
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- residents


@dataclass
class Waiter:
    predicate: object
    started: float
    future: asyncio.Future


@dataclass
class Recorder:
    """Times each reply from the update's injection to the emulator recording the reply."""

    waiting: dict[int, Waiter] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    replied: list[tuple[float, float]] = field(default_factory=list)  # (sent, latency)
    submit_latencies: list[float] = field(default_factory=list)
    questions: int = 0  # reports that got the duplicate question
    updates: int = 0
    sent_at: list[float] = field(default_factory=list)  # perf_counter() of each update
    errors: list[str] = field(default_factory=list)

    def listener(self, event: str, data) -> None:
        if event != "message":
            return
        waiter = self.waiting.get(data.chat_id)
        if waiter is not None and not waiter.future.done() and waiter.predicate(data):
            latency = time.perf_counter() - waiter.started
            self.latencies.append(latency)
            self.replied.append((waiter.started, latency))
            del self.waiting[data.chat_id]
            waiter.future.set_result(data)

    async def step(self, chat_id: int, inject, predicate, what: str) -> BotMessage | None:
        future = asyncio.get_running_loop().create_future()
        self.waiting[chat_id] = Waiter(predicate, time.perf_counter(), future)
        inject()
        self.updates += 1
        self.sent_at.append(time.perf_counter())
        try:
            return await asyncio.wait_for(future, STEP_TIMEOUT)
        except TimeoutError:
            self.waiting.pop(chat_id, None)
            self.errors.append(f"{chat_id}: no reply to {what} within {STEP_TIMEOUT}s")
            return None


def _has(text: str):
    return lambda m: text in m.content


def _has_button(label: str):
    return lambda m: any(label in text for text, _ in m.buttons)


CONFIRM, NOT_SAME = "确认提交", "不是，继续提交"


class Quota:
    """Reports still to be made. Residents keep reporting until it is used up, so nearly
    all of them are busy until the end instead of a few stragglers finishing alone."""

    def __init__(self, reports: int) -> None:
        self.left = reports

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def resident(
    emu: TelegramEmulator,
    rec: Recorder,
    user: int,
    quota: Quota,
    think: float,
    rng: random.Random,
    done: list[int],
    writing: ReportTexts,
    spread: float | None = None,
) -> None:
    # Residents don't all start at once: within two thinking times, or over `spread` seconds.
    await asyncio.sleep(rng.uniform(0, 2 * think if spread is None else spread))
    while quota.take():
        text = writing.take(rng)
        steps = [
            (lambda: emu.send_text(user, "/report"), _has("描述"), "/report"),
            (lambda t=text: emu.send_text(user, t), _has("照片"), "description"),
            (lambda: emu.send_text(user, "/skip"), _has("位置"), "/skip photo"),
            (lambda: emu.send_text(user, "/skip"), lambda m: bool(m.buttons), "/skip location"),
        ]
        summary = None
        for inject, predicate, what in steps:
            summary = await rec.step(user, inject, predicate, what)
            if summary is None:
                return
            await asyncio.sleep(rng.uniform(0, 2 * think))
        if _has_button(NOT_SAME)(summary):
            # 附近已有人反映 (#16): these residents report a problem of their own all the same.
            rec.questions += 1
            summary = await rec.step(
                user, lambda s=summary: emu.press(user, s, NOT_SAME), _has_button(CONFIRM), NOT_SAME
            )
            if summary is None:
                return
        started = time.perf_counter()
        reply = await rec.step(
            user, lambda s=summary: emu.press(user, s, CONFIRM), _has("已受理"), "确认提交"
        )
        if reply is None:
            return
        rec.submit_latencies.append(time.perf_counter() - started)
        done.append(user)
        await asyncio.sleep(rng.uniform(0, 2 * think))


# ---------------------------------------------------------------- main


def steady_rate(times: list[float]) -> float:
    """Updates per second between the 5th and the 95th percentile of their send times: the
    rate while the residents are all at it, without the ramp-up and the last stragglers."""
    if len(times) < 20:
        return float("nan")
    ordered = sorted(times)
    first, last = round(0.05 * (len(ordered) - 1)), round(0.95 * (len(ordered) - 1))
    span = ordered[last] - ordered[first]
    return (last - first) / span if span > 0 else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def keep_history_out_of_gc() -> None:
    """The emulator keeps every message; without this, this process's full garbage
    collections grow with that history to 100-200 ms pauses, which would be measured as the
    bot's latency. Freezing what exists each second keeps the pauses at a few ms."""
    while True:
        await asyncio.sleep(1.0)
        gc.freeze()


async def drive(emu: TelegramEmulator, bot_pid: int, residents: list[int], args):
    """Warm up, then run every resident; returns what was recorded and the CPU used."""
    rec = Recorder()
    emu.add_listener(rec.listener)
    # Warm-up (not measured): every code path once, so imports and caches are in place.
    writing = ReportTexts(args.duplicate_share)
    await resident(emu, rec, residents[0], Quota(1), 0.0, random.Random(7), [], writing)
    rec.questions = 0
    rec.latencies.clear()
    rec.replied.clear()
    rec.submit_latencies.clear()
    rec.sent_at.clear()
    rec.updates = 0

    freezer = asyncio.ensure_future(keep_history_out_of_gc())
    quota = Quota(args.reports)
    think = max(0.0, args.residents / args.rate - 0.005)
    done: list[int] = []
    cpu_before = _cpu_seconds(bot_pid)
    own_cpu_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            resident(
                emu, rec, user, quota, think, random.Random(user), done, writing, args.spread_start
            )
            for user in residents
        )
    )
    elapsed = time.perf_counter() - started
    freezer.cancel()
    return (
        rec,
        done,
        started,
        elapsed,
        _cpu_seconds(bot_pid) - cpu_before,
        time.process_time() - own_cpu_before,
    )


async def run(args) -> dict:
    db_path = Path(args.db).resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    model_path = str(Path(args.model).resolve())
    settings = bench_settings(
        f"sqlite+aiosqlite:///{db_path}",
        model_path,
        args.concurrency,
        args.http_client,
        not args.without_followup,
        args.poll_interval,
        not args.without_duplicates,
    )
    ensure_model(settings)
    await prepare_store(settings, db_path)

    emu = TelegramEmulator(token=TOKEN)
    residents = list(range(FIRST_RESIDENT, FIRST_RESIDENT + args.residents))
    add_people_from_settings(emu, settings, residents={u: f"居民{u}" for u in residents})
    await emu.start()

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=bot_process, args=(emu.port, settings, ready, stop), daemon=True)
    proc.start()
    try:
        if not await asyncio.to_thread(_wait_ready, ready, proc):
            raise SystemExit("机器人进程未能启动")
        rec, done, started, elapsed, cpu_used, emulator_cpu = await drive(
            emu, proc.pid, residents, args
        )
    finally:
        stop.set()
        await asyncio.to_thread(proc.join, 60)
        await emu.stop()
    cases, distinct_keys = await count_cases(settings)

    lat_ms = [x * 1000 for x in rec.latencies]
    result = {
        "residents": args.residents,
        "reports_requested": args.reports,
        "reports_completed": len(done),
        "updates": rec.updates,
        "seconds": round(elapsed, 2),
        "updates_per_s": round(rec.updates / elapsed, 1),
        "updates_per_s_steady": round(steady_rate(rec.sent_at), 1),
        "reports_per_s": round(len(done) / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(lat_ms, 0.50), 1),
            "p90": round(percentile(lat_ms, 0.90), 1),
            "p99": round(percentile(lat_ms, 0.99), 1),
            "max": round(max(lat_ms), 1) if lat_ms else None,
            "mean": round(statistics.fmean(lat_ms), 1) if lat_ms else None,
        },
        "timeline": timeline(rec.replied, started),
        "submit_p99_ms": round(percentile([x * 1000 for x in rec.submit_latencies], 0.99), 1),
        "errors": len(rec.errors),
        "error_samples": rec.errors[:5],
        "cases_in_store": cases - 1,  # minus the warm-up report
        "duplicate_cases": cases - distinct_keys,
        "bot_cpu_percent": round(100 * cpu_used / elapsed, 1) if cpu_used else None,
        # The bot's CPU per update and per report: what other work on the machine inflates
        # least (it slows the bot down but does not add to the bot's own CPU time).
        "bot_cpu_ms_per_update": round(1000 * cpu_used / rec.updates, 2) if cpu_used else None,
        "bot_cpu_ms_per_report": round(1000 * cpu_used / len(done), 2)
        if cpu_used and done
        else None,
        "emulator_cpu_percent": round(100 * emulator_cpu / elapsed, 1),
        "concurrency": args.concurrency,
        "http_client": settings.telegram.http_client,
        "poll_interval": settings.telegram.poll_interval,
        "followup_pass": not args.without_followup,
        "duplicates": settings.duplicates.enabled,
        "duplicate_share": args.duplicate_share,
        "spread_start_s": args.spread_start,
        "duplicate_questions": rec.questions,
        "target_rate": args.rate,
        "targets": {"updates_per_s": TARGET_UPDATES_PER_S, "p99_ms": TARGET_P99_MS},
        "database": "sqlite",
        # Other work on the machine competes for the same 2 cores: recorded for context.
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    result["meets_target"] = (
        result["updates_per_s_steady"] >= TARGET_UPDATES_PER_S
        and result["latency_ms"]["p99"] <= TARGET_P99_MS
        and result["errors"] == 0
        and result["cases_in_store"] == args.reports
    )
    return result


def timeline(replied: list[tuple[float, float]], started: float) -> list[list[float]]:
    """[second of the run, updates sent in it, their p99 latency in ms], second by second:
    shows whether slow replies come in bursts (a periodic job) or all along (saturation)."""
    seconds: dict[int, list[float]] = {}
    for sent, latency in replied:
        seconds.setdefault(int(sent - started), []).append(latency * 1000)
    return [
        [second, len(lat), round(percentile(lat, 0.99), 1)]
        for second, lat in sorted(seconds.items())
    ]


def _wait_ready(ready, proc, timeout: float = 120.0) -> bool:
    """Until the bot process says it is ready; False if it died or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        if ready.wait(0.2):
            return True
    return False


def _cpu_seconds(pid: int) -> float:
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except Exception:  # noqa: BLE001 - psutil is a dev dependency; the figure is optional
        return 0.0


def print_table(r: dict) -> None:
    lat = r["latency_ms"]
    rows = [
        ("居民（并发会话）", f"{r['residents']}"),
        ("完成的反映", f"{r['reports_completed']} / {r['reports_requested']}"),
        ("处理的更新", f"{r['updates']}"),
        ("用时", f"{r['seconds']} s"),
        ("更新/秒（平稳段）", f"{r['updates_per_s_steady']}  (目标 ≥ {TARGET_UPDATES_PER_S:.0f})"),
        ("更新/秒（全程）", f"{r['updates_per_s']}"),
        ("完整反映/秒", f"{r['reports_per_s']}"),
        ("回复延迟 p50", f"{lat['p50']} ms"),
        ("回复延迟 p90", f"{lat['p90']} ms"),
        ("回复延迟 p99", f"{lat['p99']} ms  (目标 ≤ {TARGET_P99_MS:.0f})"),
        ("回复延迟 max", f"{lat['max']} ms"),
        ("确认提交 p99", f"{r['submit_p99_ms']} ms"),
        ("错误", f"{r['errors']}"),
        ("库中案件 / 重复", f"{r['cases_in_store']} / {r['duplicate_cases']}"),
        ("机器人进程 CPU", f"{r['bot_cpu_percent']} %"),
        ("机器人 CPU / 更新", f"{r['bot_cpu_ms_per_update']} ms"),
        ("机器人 CPU / 反映", f"{r['bot_cpu_ms_per_report']} ms"),
        (
            "重复件提问",
            f"{r['duplicate_questions']} 次（{r['duplicate_questions'] / max(1, r['reports_completed']):.0%} 的反映）"
            if r["duplicates"]
            else "关",
        ),
        ("模拟器与居民进程 CPU", f"{r['emulator_cpu_percent']} %"),
        ("机器负载（1 分钟）", f"{r['load_average_1min_at_end']}"),
        ("达标", "是" if r["meets_target"] else "否"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    print("\n机器人基准测试（模拟器，127.0.0.1，SQLite）")
    for key, value in rows:
        print(f"  {key:<{width}}{value}")
    worst = sorted(r["timeline"], key=lambda row: -row[2])[:5]
    print(
        "  最慢的几秒（秒, 更新数, p99 ms）: "
        + "  ".join(f"{sec}s/{n}/{p99:.0f}" for sec, n, p99 in sorted(worst))
    )
    for sample in r["error_samples"]:
        print(f"  ! {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument(
        "--rate",
        type=float,
        default=330.0,
        help="updates per second the residents aim to send in total",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="ApplicationBuilder.concurrent_updates"
    )
    parser.add_argument(
        "--http-client",
        default=None,
        choices=["httpx", "aiohttp"],
        help="the bot's HTTP client (default: config.toml's)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="telegram.poll_interval for the bot (default: config.toml's)",
    )
    parser.add_argument(
        "--without-followup",
        action="store_true",
        help="diagnostic: don't run the follow-up engine's periodic pass",
    )
    parser.add_argument(
        "--without-duplicates",
        action="store_true",
        help="for comparison: [duplicates] off (no duplicate question, no triage hint)",
    )
    parser.add_argument(
        "--duplicate-share",
        type=float,
        default=None,
        help="share of reports that resemble an open case (default: nearly all, the worst case)",
    )
    parser.add_argument(
        "--spread-start",
        type=float,
        default=None,
        help="diagnostic: residents start over this many seconds (default: two thinking times, "
        "so the first reports of all reach 确认提交 within a few seconds of each other)",
    )
    parser.add_argument("--db", default=str(ROOT / "var" / "bench" / "bot_bench.db"))
    parser.add_argument(
        "--model",
        default=str(ROOT / "var" / "bench" / "bot_model.skops"),
        help="classifier model (trained from the built-in corpus if missing)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\n结果已写入 {RESULTS}")


if __name__ == "__main__":
    main()
