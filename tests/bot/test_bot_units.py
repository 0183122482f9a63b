"""Unit tests of the bot's small parts: callback data, dates, URLs, persistence, the duplicate
guard (through Application.process_update) and post formatting."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import Forbidden, TimedOut
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from bot import callbacks as cb
from bot import posts, texts
from bot.app import api_urls
from bot.context import Context
from bot.department import parse_new_deadline
from bot.guards import AFTER_ALL, drop_duplicates, record_handled
from bot.persistence import StorePersistence
from bot.request import AiohttpRequest
from bot.services import SERVICES_KEY, Services
from emulator import sample_jpeg
from models import deadlines, drafts
from models.engine import TurnLock, create_all, make_engine, session_scope
from models.tables import Case, CasePart
from tests.botapi import app_builder
from tests.test_bot_kit import START, Clock, base_settings


@pytest.fixture
async def sqlite_engine(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'units.db'}")
    await create_all(engine)
    yield engine
    await engine.dispose()


def services_for(engine, clock=None) -> Services:
    settings = base_settings()
    return Services(
        settings=settings,
        engine=engine,
        rules=deadlines.Rules.from_settings(settings),
        suggester=None,
        clock=clock or Clock(),
    )


# ---------------------------------------------------------------- callback data


def test_callback_data_round_trips():
    data = cb.make(cb.TO, 42, 7, "housing")
    assert data == "to:42:7:housing"
    assert cb.parse(data) == cb.Callback("to", 42, 7, "housing")
    assert cb.parse(cb.make(cb.SIGN, 1, 0)) == cb.Callback("sign", 1, 0, None)


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "sign",
        "sign:1",
        "sign:x:1",
        "sign:1:-1",
        "SIGN:1:1",
        "sign:1:1:a:b",
        "sign:1:1:bad arg",
        "to:1:1:" + "a" * 40,
        "x" * 65,
        "sign:1:1:" + "é" * 30,
        "sign:9999999999999:1",
        "sign:1:1:",
        ":1:1",
    ],
)
def test_malformed_callback_data_is_rejected(data):
    assert cb.parse(data) is None


def test_making_bad_callback_data_fails_loudly():
    with pytest.raises(ValueError):
        cb.make("Sign", 1, 1)
    with pytest.raises(ValueError):
        cb.make(cb.TO, 1, 1, "has space")
    with pytest.raises(ValueError):
        cb.make("extendxx", 10**11, 10**11, "x" * 32)  # over 64 bytes


# ---------------------------------------------------------------- small helpers


def test_api_urls_accept_an_address_with_or_without_bot():
    assert api_urls("http://127.0.0.1:8081") == (
        "http://127.0.0.1:8081/bot",
        "http://127.0.0.1:8081/file/bot",
    )
    assert api_urls("http://127.0.0.1:8081/bot/") == (
        "http://127.0.0.1:8081/bot",
        "http://127.0.0.1:8081/file/bot",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", datetime(2026, 12, 1, 10, 0)),
        ("2026/12/1", datetime(2026, 12, 1, 10, 0)),
        ("12-01", datetime(2026, 12, 1, 10, 0)),
        ("12月1日", datetime(2026, 12, 1, 10, 0)),
        ("01-05", datetime(2027, 1, 5, 10, 0)),  # said in November: next January
        ("2026-11-24", None),  # today is not "later"
        ("2026-02-30", None),
        ("2030-01-01", None),  # more than a year ahead
        ("下周", None),
    ],
)
def test_new_deadline_dates(sqlite_engine, text, expected):
    services = services_for(sqlite_engine)
    assert parse_new_deadline(text, services, START) == expected


def test_posts_fit_telegram_limits(sqlite_engine):
    services = services_for(sqlite_engine)
    case = Case(
        id=5,
        ref="WC-20261124-0005",
        reporter_id=1,
        text="长" * 5000,
        photos=["photo-id"],
        suggestions=[["water", 0.9], ["housing", 0.05], ["municipal", 0.05]],
        suggested_department="water",
        suggested_confidence=0.9,
        status="triage",
        created_at=START,
    )
    caption = posts.triage_text(case, services)
    assert len(caption) <= 1024 and "候选：水务局 90%" in caption and caption.count("长") > 100
    case.photos = []
    assert len(posts.triage_text(case, services)) <= 4096
    keyboard = posts.triage_keyboard(case, services)
    assert [b.text for row in keyboard.inline_keyboard for b in row] == [
        texts.BTN_CONFIRM.format(department="水务局"),
        texts.BTN_PICK,
        texts.BTN_URGENT,
        texts.BTN_NOT_ACCEPT,
        texts.BTN_HARD,
    ]
    case.id, case.version = 10**12 - 1, 10**12 - 1  # the longest ids callback data allows
    every = (1 << len(services.settings.departments)) - 1
    part = CasePart(
        id=10**12 - 1,
        case_id=case.id,
        department_code="housing",
        version=10**12 - 1,
        dispatched_at=START,
        sign_by=START,
        resolve_by=START,
    )
    for markup in (
        posts.department_picker(case, services),
        posts.not_accept_keyboard(case),
        posts.confirm_keyboard(case, services, "environment"),
        posts.hard_lead_picker(case, services),
        posts.hard_co_picker(case, services, 0, every - 1),
        posts.part_keyboard(case, part),
    ):
        assert all(
            len(b.callback_data.encode()) <= 64 for row in markup.inline_keyboard for b in row
        )


# ---------------------------------------------------------------- the aiohttp transport


async def test_aiohttp_transport_sends_json_and_files_and_maps_errors(emulator):
    request = AiohttpRequest(read_timeout=0.5)
    app = app_builder(emulator).request(request).build()
    await app.initialize()
    try:
        sent = await app.bot.send_message(
            10001,
            "你好",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("按钮", callback_data="sign:1:0")]]
            ),
        )
        assert emulator.message(10001, sent.message_id).buttons == [("按钮", "sign:1:0")]
        photo = await app.bot.send_photo(10001, photo=sample_jpeg(3), caption="现场照片")
        assert emulator.file_bytes(photo.photo[-1].file_id) == sample_jpeg(3)
        emulator.fail_next("sendMessage", "timeout", hold=2.0)
        with pytest.raises(TimedOut):
            await app.bot.send_message(10001, "慢")
        emulator.fail_next("sendMessage", "blocked")
        with pytest.raises(Forbidden):
            await app.bot.send_message(10001, "被拉黑")
    finally:
        await app.shutdown()


# ---------------------------------------------------------------- persistence


async def test_persistence_keeps_drafts_and_conversation_states(engine):
    clock = Clock()
    services = services_for(engine, clock)
    first = StorePersistence(services.session, clock)
    draft = {"draft": {"nonce": 5, "text": "路灯不亮", "photos": ["p1"], "lat": 28.3}}
    await first.update_user_data(10001, draft)
    await first.update_user_data(10002, {"draft": {"nonce": 6}})
    await first.update_conversation("intake", (10001, 10001), 3)
    await first.update_conversation("staff", (-100123, 9002), 11)
    await first.update_user_data(10002, {})  # nothing pending any more: row removed
    await first.flush()

    second = StorePersistence(services.session, clock)
    assert await second.get_user_data() == {10001: draft}
    assert await second.get_conversations("intake") == {(10001, 10001): 3}
    assert await second.get_conversations("staff") == {(-100123, 9002): 11}
    await second.update_conversation("intake", (10001, 10001), None)
    assert await StorePersistence(services.session, clock).get_conversations("intake") == {}


# ---------------------------------------------------------------- duplicate guard


def _update(update_id: int, app: Application) -> Update:
    return Update.de_json(
        {
            "update_id": update_id,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 1, "type": "private"},
                "from": {"id": 1, "is_bot": False, "first_name": "a"},
                "text": "hi",
            },
        },
        app.bot,
    )


async def test_duplicate_guard_stops_a_second_delivery(sqlite_engine, emulator):
    app = app_builder(emulator).build()
    await app.initialize()
    app.bot_data[SERVICES_KEY] = services_for(sqlite_engine)
    seen: list[int] = []

    async def record(update, context):
        seen.append(update.update_id)

    app.add_handler(TypeHandler(Update, drop_duplicates), group=-1)
    app.add_handler(TypeHandler(Update, record))
    # The guard only looks; an update is recorded once its handlers are done.
    app.add_handler(TypeHandler(Update, record_handled), group=AFTER_ALL)
    for update_id in (1, 2, 1, 2, 3):
        await app.process_update(_update(update_id, app))
    assert seen == [1, 2, 3]

    # A new process (empty memory) still recognises them from the store.
    app.bot_data.pop("recent_update_ids")
    context = Context(app)
    with pytest.raises(ApplicationHandlerStop):
        await drop_duplicates(_update(2, app), context)
    await app.shutdown()


async def test_update_ids_are_remembered_for_a_while_only(engine):
    # Telegram numbers updates afresh after a week of silence: an id last seen long ago is new.
    day = timedelta(days=1)
    async with session_scope(engine) as session:
        assert await drafts.claim_updates(session, [7, 8], START, since=START - 2 * day) == {7, 8}
        assert await drafts.claim_updates(session, [8, 9], START + day, since=START - day) == {9}
        later = START + 10 * day
        assert await drafts.claim_updates(session, [7, 9], later, since=later - 2 * day) == {7, 9}
        assert await drafts.prune_processed_updates(session, later - day) == 1  # only 8 is old
        many = list(range(1000, 3500))  # a backlog after downtime: one call, many batches
        assert await drafts.claim_updates(session, many, later, since=later - 2 * day) == set(many)
        assert await drafts.claim_updates(session, many, later, since=later - 2 * day) == set()
        gone = later + 3 * day
        assert await drafts.prune_processed_updates(session, gone, limit=1000) == 1000
        assert await drafts.prune_processed_updates(session, gone) == 2500 - 1000 + 2  # 7, 9


async def test_the_prune_job_forgets_old_update_ids_batch_by_batch(
    sqlite_engine, emulator, monkeypatch
):
    from bot import app as app_module

    app = app_builder(emulator).build()
    services = app.bot_data[SERVICES_KEY] = services_for(sqlite_engine)
    old, recent = list(range(1, 12)), [100, 101]
    async with services.session() as session:
        then = services.clock() - timedelta(days=3)
        await drafts.claim_updates(session, old, then, since=then)
        now = services.clock()
        await drafts.claim_updates(session, recent, now, since=now)
    monkeypatch.setattr(app_module, "PRUNE_BATCH", 4)  # 11 old ids: three batches
    await app_module.prune_processed_updates(Context(app))
    async with services.session() as session:
        fresh = await drafts.claim_updates(
            session, old + recent, now, since=now - timedelta(days=2)
        )
    assert fresh == set(old)  # forgotten, so new again; the recent ones are still known


async def test_turn_lock_serves_urgent_waiters_first_and_survives_cancellation():
    lock = TurnLock()
    order: list[str] = []
    await lock.acquire()

    async def take(name: str, urgent: bool) -> None:
        await lock.acquire(urgent)
        order.append(name)
        lock.release()

    tasks = [
        asyncio.create_task(take(n, u))
        for n, u in (("a", False), ("b", False), ("x", True), ("gone", False), ("y", True))
    ]
    await asyncio.sleep(0)
    tasks[3].cancel()
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == ["x", "y", "a", "b"]
    await asyncio.wait_for(lock.acquire(), 1)  # free again


async def test_gathered_writes_share_one_transaction_and_share_its_failure(tmp_path):
    from contextlib import asynccontextmanager

    from sqlalchemy import text

    from models.engine import GatheredWrites

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER UNIQUE)"))
    transactions = 0

    @asynccontextmanager
    async def counted_session():
        nonlocal transactions
        transactions += 1
        async with session_scope(engine) as session:
            yield session

    def insert(n: int):
        return lambda session: session.exec(text(f"INSERT INTO t VALUES ({n})"))

    gathered = GatheredWrites(counted_session)
    try:
        await asyncio.gather(*(gathered.run(insert(n)) for n in range(5)))
        assert transactions == 1
        # One bad write fails its whole batch, and nothing of that batch is kept.
        results = await asyncio.gather(
            gathered.run(insert(10)), gathered.run(insert(1)), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results) and transactions == 2
        await gathered.run(insert(11))  # the next batch is fine again
        async with session_scope(engine) as session:
            rows = (await session.exec(text("SELECT n FROM t ORDER BY n"))).all()
        assert [r[0] for r in rows] == [0, 1, 2, 3, 4, 11]
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- one person's updates in order


def _text_update(update_id: int, user_id: int) -> Update:
    return Update.de_json(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 0,
                "text": "x",
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": "u"},
            },
        },
        None,
    )


async def test_one_persons_updates_run_in_order_and_others_alongside():
    from bot.ordering import OneAtATimePerPerson

    processor = OneAtATimePerPerson(16)
    log: list[tuple[str, int]] = []

    async def handle(update_id: int, seconds: float) -> None:
        log.append(("start", update_id))
        await asyncio.sleep(seconds)
        log.append(("end", update_id))

    # Person 1 sends three messages at once (the first is slow); person 2 sends one.
    jobs = [(1, 1, 0.05), (2, 1, 0.0), (3, 1, 0.0), (4, 2, 0.0)]
    await asyncio.gather(
        *(
            processor.process_update(_text_update(uid, user), handle(uid, t))
            for uid, user, t in jobs
        )
    )
    person1 = [entry for entry in log if entry[1] in (1, 2, 3)]
    assert person1 == [("start", 1), ("end", 1), ("start", 2), ("end", 2), ("start", 3), ("end", 3)]
    assert log.index(("end", 4)) < log.index(("end", 1))  # person 2 did not wait for person 1
    assert processor._turns == {}  # nothing kept for people who have gone quiet


async def test_a_job_cancelled_by_stopping_is_not_logged_as_a_failure(caplog):
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.run import _quiet_stopped_jobs

    _quiet_stopped_jobs()
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(10)

    async def failing() -> None:
        raise RuntimeError("a real failure")

    scheduler.add_job(slow)
    scheduler.add_job(failing)
    with caplog.at_level(logging.INFO, logger="apscheduler"):
        scheduler.start()
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.05)
        scheduler.shutdown(wait=False)  # cancels the job still running, as stopping does
        await asyncio.sleep(0.05)
    assert "a real failure" in caplog.text  # failures are still logged
    assert "CancelledError" not in caplog.text
