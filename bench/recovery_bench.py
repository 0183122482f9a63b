"""Recovery benchmark (issue #15): residents report while the bot is SIGKILLed and restarted.

    python bench/recovery_bench.py [--residents 40] [--reports 3] [--kill-every 5]
                                   [--kills 4] [--backlog 360]

The bot is the deployed `whistle run` process against the Bot API emulator (in this
process), on a SQLite file. Residents go through /report → description → /skip → /skip →
确认提交, each step driven by the bot's last message; a step that gets no answer within
--step-timeout seconds is sent again (a person pressing again), since an update the killed bot
had already fetched is not redelivered by Telegram. Every --kill-every seconds the bot is
killed (SIGKILL) and started again at once.

Counted at the end, from the store and from what the emulator received:
- lost: a resident pressed 确认提交 and never got a reference, or got one the store lacks;
- duplicated: more cases than references a resident got (a report stored twice), and
  references sent more than once ("已受理，编号 X" twice);
- recovery: start of the new process → its first answer (a probe /start), per kill;
- stop: SIGTERM with --backlog group posts pending → exit, and what stays queued.

Prints a table and writes bench/results/recovery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sqlite3
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import texts
from emulator import TelegramEmulator
from tests.startup_kit import clean_env, whistle_script, write_config
from whistle.config import load_settings
from whistle.demo import add_people_from_settings

TOKEN = "7000000098:RECOVERY-local-emulator"
FIRST_RESIDENT = 300_001
PROBE = 399_999
RESULTS = ROOT / "bench" / "results" / "recovery.json"
GROUPS = [
    -1000000000101,
    -1000000000102,
    -1000000000103,
    -1000000000104,
    -1000000000105,
    -1000000000106,
    -1000000000107,
    -1000000000108,
    -1000000000109,
]
PROBLEMS = [
    "停水两天了还没来水",
    "路灯坏了好几天，晚上一片漆黑",
    "井盖松动，车辆经过咚咚响",
    "工地夜间施工噪声太大，影响休息",
    "垃圾桶满了好几天没人清运",
    "排水管道堵塞，污水漫到路面",
]
REFERENCE_PREFIXES = ("已受理，编号 ", "这份反映已经提交过了，编号 ")


class Bot:
    """The `whistle run` process, restarted as often as the benchmark kills it."""

    def __init__(self, env: dict, cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            str(whistle_script()),
            "run",
            "--no-dashboard",
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def terminate(self) -> float:
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 60)
        return time.monotonic() - began


async def answered_probe(emu: TelegramEmulator, timeout: float = 60.0) -> float:
    """Seconds until the bot answers a probe /start (re-sent every 2 s while it is down)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        count = len(emu.messages(PROBE))
        emu.send_command(PROBE, "/start")
        try:
            await emu.wait_for_message(PROBE, timeout=2.0, after=count)
            return time.monotonic() - began
        except TimeoutError:
            continue
    raise TimeoutError("the bot did not come back")


async def resident(
    emu: TelegramEmulator,
    user: int,
    reports: int,
    rng: random.Random,
    step_timeout: float,
    deadline: float,
    pressed: Counter,
) -> None:
    """Make `reports` reports, each step driven by the bot's last message."""
    done = 0
    action = ("text", "/report")
    while done < reports and time.monotonic() < deadline:
        count = len(emu.messages(user))
        kind, what = action
        if kind == "press":
            try:
                emu.press(user, what, texts.BTN_SUBMIT)
            except KeyError:  # the button was taken off: the press went through
                action = ("text", "/my")
                continue
            pressed[user] += 1
        else:
            emu.send_text(user, what)
        try:
            reply = await emu.wait_for_message(user, timeout=step_timeout, after=count)
            await asyncio.sleep(0.2)  # let a second message of the same answer arrive
        except TimeoutError:
            continue  # no answer (the bot is down): do it again
        latest = emu.messages(user)[-1]
        content = latest.content
        if any(c.content.startswith(REFERENCE_PREFIXES) for c in emu.messages(user)[count:]):
            done += 1
            action = ("text", "/report")
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        elif any(label == texts.BTN_SUBMIT for label, _ in emu.buttons(latest)):
            action = ("press", latest)
        elif content == texts.ASK_DESCRIPTION or "描述" in content and "/skip" not in content:
            action = ("text", f"{rng.choice(PROBLEMS)}（{user}-{done}）")
        elif "/skip" in content:
            action = ("text", "/skip")
        elif reply is not None and action[0] == "press":
            action = ("text", "/report")  # e.g. 该按钮已过期: start again
        else:
            action = ("text", "/report")


def store_counts(db: Path) -> tuple[dict[int, list[str]], dict[str, int]]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            'SELECT r.telegram_id, c.ref FROM "case" c JOIN reporter r ON r.id = c.reporter_id'
        ).fetchall()
        outbox = dict(
            con.execute(
                "SELECT status, count(*) FROM outbox WHERE key LIKE 'backlog:%' GROUP BY status"
            ).fetchall()
        )
    cases: dict[int, list[str]] = {}
    for telegram_id, ref in rows:
        cases.setdefault(int(telegram_id), []).append(ref)
    return cases, outbox


def references_seen(emu: TelegramEmulator, user: int) -> Counter:
    seen: Counter = Counter()
    for message in emu.messages(user):
        for prefix in REFERENCE_PREFIXES:
            if message.content.startswith(prefix):
                ref = message.content[len(prefix) :].split("，")[0].split("。")[0]
                seen[(prefix, ref)] += 1
    return seen


async def queue_backlog(db_url: str, count: int) -> None:
    from models import outbox
    from models.engine import make_engine, session_scope

    engine = make_engine(db_url, checkpoint_interval=None)
    try:
        async with session_scope(engine) as session:
            now = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
            await outbox.enqueue_many(
                session,
                [
                    outbox.push_row(
                        key=f"backlog:{i}",
                        chat_id=GROUPS[i % len(GROUPS)],
                        text=f"积压通知 {i}",
                        kind="department",
                        now=now,
                    )
                    for i in range(count)
                ],
            )
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> dict:
    folder = ROOT / "var" / "bench" / "recovery"
    (folder / "var").mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / 'var' / 'whistle.db'}{suffix}").unlink(missing_ok=True)
    model = ROOT / "var" / "bench" / "bot_model.skops"
    config = write_config(folder, model=model if model.exists() else None)
    settings = load_settings(config, env={})
    emu = TelegramEmulator(token=TOKEN)
    residents = {FIRST_RESIDENT + i: f"居民{i}" for i in range(args.residents)}
    add_people_from_settings(emu, settings, residents={**residents, PROBE: "探针"})
    await emu.start()
    env = clean_env(
        WHISTLE_CONFIG=str(config), TELEGRAM_TOKEN=TOKEN, TELEGRAM_BASE_URL=emu.base_url
    )
    bot = Bot(env, folder)
    recoveries: list[float] = []
    try:
        await bot.start()
        first_start = await answered_probe(emu, timeout=180)
        rng = random.Random(15)
        pressed: Counter = Counter()
        deadline = time.monotonic() + args.max_seconds
        people = [
            asyncio.create_task(
                resident(
                    emu,
                    user,
                    args.reports,
                    random.Random(user),
                    args.step_timeout,
                    deadline,
                    pressed,
                )
            )
            for user in residents
        ]
        for _ in range(args.kills):
            await asyncio.sleep(args.kill_every * rng.uniform(0.7, 1.3))
            await bot.kill()
            await bot.start()
            recoveries.append(await answered_probe(emu))
        await asyncio.gather(*people)
        await queue_backlog(f"sqlite+aiosqlite:///{folder / 'var' / 'whistle.db'}", args.backlog)
        await asyncio.sleep(7)  # the sender's next pass is busy with the backlog
        stop_seconds = await bot.terminate()
    finally:
        await bot.kill()
        await emu.stop()

    cases, backlog = store_counts(folder / "var" / "whistle.db")
    lost = duplicated = double_refs = unconfirmed = 0
    confirmed = 0
    for user in residents:
        seen = references_seen(emu, user)
        refs = {ref for _, ref in seen}
        stored = cases.get(user, [])
        confirmed += len(refs)
        lost += len(refs - set(stored))
        duplicated += max(0, len(stored) - len(set(stored))) + max(0, len(set(stored)) - len(refs))
        double_refs += sum(
            n - 1 for (prefix, _), n in seen.items() if prefix == REFERENCE_PREFIXES[0] and n > 1
        )
        unconfirmed += max(0, args.reports - len(refs))
    return {
        "residents": args.residents,
        "reports_each": args.reports,
        "kills": args.kills,
        "reports_confirmed": confirmed,
        "cases_stored": sum(len(v) for v in cases.values()),
        "lost": lost,
        "stored_twice_or_unconfirmed": duplicated,
        "reference_sent_twice": double_refs,
        "reports_not_finished": unconfirmed,
        "presses": sum(pressed.values()),
        "first_start_s": round(first_start, 2),
        "recovery_s": [round(r, 2) for r in recoveries],
        "recovery_median_s": round(statistics.median(recoveries), 2) if recoveries else None,
        "stop_s_with_backlog": round(stop_seconds, 2),
        "backlog": args.backlog,
        "backlog_after_stop": backlog,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=40)
    parser.add_argument("--reports", type=int, default=3, help="reports per resident")
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    parser.add_argument("--step-timeout", type=float, default=6.0)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--backlog", type=int, default=360, help="group posts pending at stop")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"→ {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
