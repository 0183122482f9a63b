"""The learning loop end to end (#16) on a small synthetic corpus: corrections arrive through
the bot, the learning duty trains a challenger in a separate process, the gate promotes it
(or refuses it), the bot answers with the new model without a restart, /model shows it and
rolls it back."""

from __future__ import annotations

import csv
import os
import random
import re
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from bot.duties import learning as duty
from classifier import Suggester
from classifier.registry import ModelRegistry
from models import cases, stats
from models.engine import session_scope
from models.tables import CHAMPION, REFUSED, RETIRED, ModelVersion
from tests.classifier.test_learning import NEW_TOPIC, TOPICS, make_corpus, message
from tests.startup_kit import clean_env, write_config
from tests.test_bot_kit import (
    ADMIN,
    RESIDENT,
    START,
    TRIAGE_STAFF,
    base_settings,
    to_triage,
    with_classifier,
)
from whistle import cli

pytest_plugins = ["tests.test_bot_kit"]  # make_bot, bot_engine

# The synthetic topics of tests/classifier/test_learning.py as this district's departments; 生态环境局
# (environment) is in no corpus: it can only be learned from corrections.
DEPARTMENT_OF = {"water": "water", "roads": "municipal", "school": "education", "clinic": "health"}
GARBAGE = [message(random.Random(100 + i), NEW_TOPIC, topic_words=4) for i in range(8)]


@pytest.fixture
def loop_settings(tmp_path):
    """A district whose corpus is the synthetic one; every case waits for triage."""
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    with open(corpus_dir / "seed.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((text, DEPARTMENT_OF[label]) for text, label in make_corpus(30))
    settings = with_classifier(
        to_triage(base_settings()),
        corpus_dir=str(corpus_dir),
        model_path=str(tmp_path / "serving" / "model.npz"),
    )
    learning = replace(
        settings.learning,
        retrain_after_corrections=6,
        check_seconds=3600,
        models_dir=str(tmp_path / "models"),
        margin=0.1,
        department_margin=0.3,
        min_held_out=0,  # a few synthetic decisions: no minimum of held-out ones
    )
    return replace(settings, learning=learning)


async def first_champion(settings, engine) -> str:
    """The loop's first model (no decisions yet): promoted, there is no champion to beat."""
    outcome = await duty.retrain_now(
        settings, lambda: session_scope(engine), START, trigger="manual"
    )
    assert outcome.promoted and outcome.result.pid != os.getpid()  # trained elsewhere
    return outcome.result.version


async def start_bot(make_bot, settings):
    return await make_bot(
        settings, suggester=Suggester.from_settings(settings), model=settings.model_path
    )


async def correct_to(bot, ref: str, department_name: str) -> None:
    """Triage changes the suggested department through the buttons."""
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "改派其他部门")
    picker = bot.emu.message(bot.triage_chat, post.message_id)
    await bot.press(TRIAGE_STAFF, picker, department_name)
    asked = bot.emu.message(bot.triage_chat, post.message_id)
    answer = await bot.press(TRIAGE_STAFF, asked, f"确认改派至 {department_name}")
    assert answer["text"] == "操作成功"


async def model_rows(bot) -> dict[str, ModelVersion]:
    async with bot.services.session() as session:
        return {r.version: r for r in (await session.exec(select(ModelVersion))).all()}


async def test_corrections_train_a_challenger_that_is_promoted_served_and_rolled_back(
    make_bot, bot_engine, loop_settings
):
    v1 = await first_champion(loop_settings, bot_engine)
    bot = await start_bot(make_bot, loop_settings)
    assert bot.services.suggester.model_version == v1
    assert "environment" not in bot.services.suggester.labels

    # Five corrections are not enough (retrain_after_corrections = 6): nothing is trained.
    state: dict = {}
    for i, text in enumerate(GARBAGE[:6]):
        ref = await bot.report(RESIDENT, text)
        await correct_to(bot, ref, "生态环境局")
        if i == 4:
            assert await duty.run_learning_pass(bot.services, state) is None
    assert len(await bot.corrections()) == 6

    outcome = await duty.run_learning_pass(bot.services, state)
    assert outcome is not None and outcome.promoted, outcome and outcome.decision.reasons
    v2 = outcome.result.version
    assert v2 != v1 and outcome.result.counts["training_corrections"] == 6
    # No restart: the very next report is classified by the new model, which has learned
    # the department it only ever saw in corrections.
    assert bot.services.suggester.model_version == v2
    ref = await bot.report(RESIDENT, GARBAGE[7])
    case = await bot.case(ref)
    assert (case.model_version, case.suggested_department) == (v2, "environment")
    rows = await model_rows(bot)
    assert (rows[v1].status, rows[v2].status) == (RETIRED, CHAMPION)
    assert rows[v2].corrections_seen == 6
    # Triage keeps the new model's suggestion: the learning curve (dashboard and /model) says so.
    post = await bot.group_post(bot.triage_chat, ref)
    assert (await bot.press(TRIAGE_STAFF, post, "确认派至"))["text"] == "操作成功"
    async with bot.services.session() as session:
        curve = await stats.learning_curve(session, since=START - timedelta(days=7))
    assert [(p["model_version"], p["reviewed"], p["accepted"]) for p in curve] == [
        (v1, 6, 0),
        (v2, 1, 1),
    ]
    # Nothing new since: the duty waits.
    assert await duty.run_learning_pass(bot.services, state) is None

    # /model tells an admin the versions, counts and scores, never a message.
    shown = (await bot.say(ADMIN, "/model")).content
    assert f"当前在用：{v2}" in shown and f"✅ 在用 {v2}" in shown and f"⏸ 已退役 {v1}" in shown
    assert "人工改派 6" in shown and "建议采纳率 100%（1/1）" in shown
    assert "建议采纳率 0%（0/6）" in shown
    assert not any(text[:8] in shown for text in GARBAGE)
    # …and only to an admin.
    assert "管理员" in (await bot.say(RESIDENT, "/model")).content

    answer = await bot.say(ADMIN, "/model rollback")
    assert answer.content == f"已回滚到模型 {v1}，机器人已改用该模型（无需重启）。"
    assert bot.services.suggester.model_version == v1
    ref = await bot.report(RESIDENT, GARBAGE[7] + "，请尽快处理")
    assert (await bot.case(ref)).model_version == v1
    rows = await model_rows(bot)
    assert (rows[v1].status, rows[v2].status) == (CHAMPION, RETIRED)
    assert ModelRegistry(loop_settings.models_dir).champion_version() == v1

    # Bad input: a polite answer, nothing changed.
    answer = await bot.say(ADMIN, "/model promote 不存在的版本")
    assert answer.content.startswith("操作未完成：")
    assert (await bot.say(ADMIN, "/model frobnicate")).content.startswith("用法：/model")
    assert bot.services.suggester.model_version == v1
    # …and promoting by hand puts it back.
    answer = await bot.say(ADMIN, f"/model promote {v2}")
    assert answer.content == f"已启用模型 {v2}，机器人已改用该模型（无需重启）。"
    assert bot.services.suggester.model_version == v2


async def test_a_challenger_worse_on_the_reference_set_is_refused_and_never_served(
    make_bot, bot_engine, loop_settings
):
    # Uncapped decisions (department_cap huge) so a wrong burst can swamp the corpus.
    settings = replace(
        loop_settings,
        learning=replace(
            loop_settings.learning,
            margin=0.02,
            department_margin=0.05,
            department_cap=100_000,
            retrain_after_corrections=40,
        ),
    )
    # No champion yet: the bot serves the model built from the corpus at its first start.
    bot = await start_bot(make_bot, settings)
    shipped = bot.services.suggester.model_version
    # A clerk who files every water complaint under 教育局: 60 wrong corrections.
    rng = random.Random(7)
    async with bot.services.session() as session:
        for i in range(60):
            case = await cases.create_case(
                session,
                reporter_telegram_id=RESIDENT,
                text=message(rng, TOPICS["water"]),
                now=START,
                suggestions=[("water", 0.9)],
                model_version=shipped,
            )
            await cases.dispatch(
                session,
                case.id,
                "education",
                cases.Actor.staff(TRIAGE_STAFF),
                START,
                rules=bot.services.rules,
            )

    outcome = await duty.run_learning_pass(bot.services, {})
    assert outcome is not None and not outcome.promoted
    # The first pass trained a baseline on the corpus alone to judge the challenger against
    # (the shipped model saw the reference set) and put it in service.
    registry = ModelRegistry(settings.models_dir)
    [v1] = registry.history()
    assert outcome.result.champion_version == v1 != shipped
    assert registry.entry(v1).info["counts"]["training_corrections"] == 0
    assert any("参照集" in reason for reason in outcome.decision.reasons)
    assert bot.services.suggester.model_version == v1
    rows = await model_rows(bot)
    refused = rows[outcome.result.version]
    assert (rows[v1].status, refused.status) == (CHAMPION, REFUSED)
    assert refused.gate["reasons"] == list(outcome.decision.reasons)
    assert registry.champion_version() == v1
    # The refused model is listed with its reason; the served file is still the champion's.
    shown = (await bot.say(ADMIN, "/model")).content
    assert f"🚫 未通过 {refused.version}" in shown and "未通过原因" in shown
    ref = await bot.report(RESIDENT, "自来水停水两天了水压很低")
    assert (await bot.case(ref)).model_version == v1


def test_whistle_model_trains_lists_promotes_and_rolls_back(
    tmp_path, loop_settings, monkeypatch, capsys
):
    text = write_config(tmp_path).read_text(encoding="utf-8")
    text = re.sub(r"(?m)^corpus_dir\s*=.*$", f'corpus_dir = "{loop_settings.corpus_dir}"', text)
    text = re.sub(r"(?m)^models_dir\s*=.*$", f'models_dir = "{tmp_path / "models"}"', text)
    text = re.sub(r"(?m)^min_held_out\s*=.*$", "min_held_out = 0", text)
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    clean_env(monkeypatch)

    def whistle(*args: str) -> tuple[int, str, str]:
        status = cli.main(["--config", str(config), "model", *args])
        out, err = capsys.readouterr()
        return status, out, err

    status, out, _ = whistle("list")
    assert status == 0 and "还没有由学习闭环训练的模型" in out
    status, _, err = whistle("rollback")
    assert status == 1 and "没有可回滚的上一个模型" in err
    status, out, _ = whistle("train")
    assert status == 0 and "已启用" in out
    first = ModelRegistry(tmp_path / "models").champion_version()
    status, out, _ = whistle("train")  # nothing new: as good as the champion, promoted
    second = ModelRegistry(tmp_path / "models").champion_version()
    assert status == 0 and second != first
    status, out, _ = whistle("list")
    assert f"当前在用：{second}" in out and f"⏸ 已退役 {first}" in out
    status, out, _ = whistle("rollback")
    assert status == 0 and out.strip() == f"已回滚到模型 {first}"
    status, _, err = whistle("promote", "no-such-version")
    assert status == 1 and "没有版本为 no-such-version 的模型" in err
    status, out, _ = whistle("promote", second)
    assert status == 0 and ModelRegistry(tmp_path / "models").champion_version() == second


@pytest.mark.parametrize(
    "now, last, due",
    [
        # 02:30 in Wangcheng is 18:30 UTC the day before.
        (datetime(2026, 11, 24, 18, 29), datetime(2026, 11, 23, 18, 31), False),  # not yet today
        (datetime(2026, 11, 24, 18, 31), datetime(2026, 11, 23, 18, 31), True),  # passed since
        (
            datetime(2026, 11, 24, 18, 31),
            datetime(2026, 11, 24, 18, 30, 30),
            False,
        ),  # trained since
        (datetime(2026, 11, 24, 18, 31), None, True),
    ],
)
def test_the_daily_retraining_time_is_district_time(loop_settings, now, last, due):
    assert duty.retrain_at_due(loop_settings, now, last) is due
    off = replace(loop_settings, learning=replace(loop_settings.learning, retrain_at=""))
    assert duty.retrain_at_due(off, now, last) is False


async def test_a_training_that_fails_keeps_the_model_and_waits_for_new_corrections(
    make_bot, loop_settings, tmp_path, caplog
):
    bot = await start_bot(make_bot, loop_settings)
    served = bot.services.suggester.model_version
    # The corpus is gone by the time the duty trains (a broken deployment, say).
    broken = tmp_path / "empty-corpus"
    broken.mkdir()
    settings = replace(
        with_classifier(loop_settings, corpus_dir=str(broken)),
        learning=replace(loop_settings.learning, retrain_after_corrections=2),
    )
    services = replace(bot.services, settings=settings)
    for text in GARBAGE[:2]:
        ref = await bot.report(RESIDENT, text)
        await correct_to(bot, ref, "生态环境局")
    state: dict = {}
    assert await duty.run_learning_pass(services, state) is None
    assert state["failed_seen"] == 2 and "挑战模型训练失败" in caplog.text
    assert bot.services.suggester.model_version == served
    assert await model_rows(bot) == {}
    # The same corrections do not start it again; new ones do.
    assert await duty.due_trigger(settings, services.session, START, state["failed_seen"]) is None
    ref = await bot.report(RESIDENT, GARBAGE[2])
    await correct_to(bot, ref, "生态环境局")
    assert (
        await duty.due_trigger(settings, services.session, START, state["failed_seen"])
        == "corrections"
    )
