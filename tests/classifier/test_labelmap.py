"""A district's own departments (#16): config.toml maps the corpus's labels onto them
(`corpus_labels` in [[departments]]); the learning duty, the baseline and the bot's suggester
all answer in the district's department codes."""

from __future__ import annotations

import csv
import random
from dataclasses import replace

import pytest

from bot.duties import learning as duty
from classifier import Suggester, build_default_model
from classifier import text as textmod
from classifier.labels import LabelMap
from models.engine import session_scope
from tests.bot.test_learning_loop import correct_to, start_bot
from tests.classifier.test_learning import NEW_TOPIC, TOPICS, make_corpus, message
from tests.startup_kit import clean_env
from tests.test_bot_kit import (
    RESIDENT,
    START,
    base_settings,
    model_path,  # noqa: F401  (the session's trained model)
    to_triage,
    with_classifier,
)
from tests.whistle.test_settings import config_with
from tests.whistle.test_startup import whistle
from whistle.config import ConfigError, load_settings, read_settings

pytest_plugins = ["tests.test_bot_kit"]  # make_bot, bot_engine

WATER_BLOCK = 'code = "water"\nname = "水务局"\n'
MUNICIPAL_BLOCK = 'code = "municipal"\nname = "市政局"\n'


# ---- config.toml ---------------------------------------------------------------------------


def test_by_default_each_department_takes_the_corpus_label_spelled_like_its_code():
    settings = base_settings()
    assert settings.corpus_label_table() == {d.code: (d.code,) for d in settings.departments}


def test_a_merged_department_takes_several_labels_and_the_others_keep_their_own(tmp_path):
    path = config_with(
        tmp_path,
        (MUNICIPAL_BLOCK, MUNICIPAL_BLOCK + 'corpus_labels = ["municipal", "water", "housing"]\n'),
    )
    settings = load_settings(path, env={})
    table = settings.corpus_label_table()
    assert table["municipal"] == ("municipal", "water", "housing")
    # 水务局 and 住建局 stay (other work), but their labels went to 市政局: they learn from
    # decisions alone; everyone else keeps the own-code default.
    assert table["water"] == table["housing"] == ()
    assert table["labor"] == ("labor",)
    label_map = LabelMap.from_settings(settings)
    assert label_map.department_of("water") == "municipal"
    assert set(label_map.without_corpus) == {"water", "housing"}


@pytest.mark.parametrize(
    "water, municipal, line",
    [
        ('["water", "drains"]', None, "部门 water 的 corpus_labels 中的 drains 不是语料的标签"),
        ('"water"', None, "corpus_labels 应为语料标签的列表（可为空列表 []），而不是 'water'"),
        ('["water", 3]', None, "部门 water 的 corpus_labels 应为语料标签的列表"),
        ('["water", " "]', None, "部门 water 的 corpus_labels 应为语料标签的列表"),
        (
            '["water", "municipal"]',
            '["municipal"]',
            "语料标签 municipal 只能归入一个部门，corpus_labels 中却同时归入 water、municipal",
        ),
    ],
)
def test_bad_corpus_labels_are_refused_with_a_line_naming_the_setting(
    tmp_path, water, municipal, line
):
    changes = [(WATER_BLOCK, WATER_BLOCK + f"corpus_labels = {water}\n")]
    if municipal:
        changes.append((MUNICIPAL_BLOCK, MUNICIPAL_BLOCK + f"corpus_labels = {municipal}\n"))
    with pytest.raises(ConfigError) as error:
        load_settings(config_with(tmp_path, *changes), env={})
    assert [p for p in error.value.problems if line in p], error.value.problems


def test_whistle_check_names_an_unknown_corpus_label(tmp_path, monkeypatch, capsys):
    path = config_with(tmp_path, (WATER_BLOCK, WATER_BLOCK + 'corpus_labels = ["watr"]\n'))
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    code, out, _ = whistle(capsys, "check")
    errors = [line for line in out.splitlines() if line.startswith("✗")]
    assert code == 2 and any("corpus_labels 中的 watr 不是语料的标签" in e for e in errors), out


def test_an_unreadable_corpus_leaves_the_map_unchecked_but_the_default_applies(tmp_path):
    path = config_with(tmp_path, ('corpus_dir = "', f'corpus_dir = "{tmp_path / "none"}'))
    settings, problems = read_settings(path, env={})
    assert not [p for p in problems if "corpus_labels" in p]
    assert settings.corpus_label_table()["water"] == ("water",)


# ---- the shipped model through the map -----------------------------------------------------


def merged(settings, **labels):
    """settings whose departments take `labels` (code = [corpus labels])."""
    return replace(
        settings,
        departments=tuple(
            replace(d, corpus_labels=tuple(labels[d.code])) if d.code in labels else d
            for d in settings.departments
        ),
    )


def test_the_shipped_model_answers_in_the_districts_departments(model_path):
    # 市政局 takes water too (水务局 kept for other work), 商务市场局 nothing.
    settings = merged(
        with_classifier(base_settings(), model_path=str(model_path)),
        municipal=["municipal", "water"],
        water=[],
        commerce=[],
    )
    plain = Suggester.from_path(model_path)
    mapped = Suggester.from_settings(settings)
    for text in [
        "小区停水两天了，水压也很低",
        "路灯坏了一个星期",
        "超市卖过期牛奶",
        "工地晚上施工噪音太大",
    ]:
        proba, _ = plain.model.probabilities(textmod.analyze(text))
        of = dict(zip(plain.labels, proba.tolist()))
        expected = {"municipal": of.pop("municipal") + of.pop("water")}
        del of["commerce"]  # no department takes it: dropped, not spread over the others
        expected |= of
        best = sorted(expected.items(), key=lambda kv: -kv[1])[:3]
        answer = mapped.suggest(text)
        assert [label for label, _ in answer.top] == [label for label, _ in best], text
        assert [p for _, p in answer.top] == pytest.approx([p for _, p in best], abs=1e-9)
        assert answer.model_version == plain.model_version
    assert mapped.suggest("小区停水两天了，水压也很低").label == "municipal"
    assert plain.suggest("小区停水两天了，水压也很低").label == "water"


# ---- the learning loop with the district's departments --------------------------------------

# The synthetic corpus of tests/classifier/test_learning.py keeps its own labels; the district merges
# roads and school into 市政局, water and clinic keep a department each (水务局 by default,
# 卫健局 by name), and 生态环境局 (garbage) is in no corpus: it learns from corrections alone.
DISTRICT = {"municipal": ["roads", "school"], "health": ["clinic"], "environment": []}
GARBAGE = [message(random.Random(200 + i), NEW_TOPIC, topic_words=4) for i in range(10)]


@pytest.fixture
def district(tmp_path):
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    with open(corpus_dir / "seed.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(make_corpus(30))
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
    return merged(replace(settings, learning=learning), **DISTRICT)


async def test_a_merged_department_and_a_new_one_learned_from_corrections(
    make_bot, bot_engine, district
):
    assert set(TOPICS) == {"water", "roads", "school", "clinic"}
    # The shipped model (corpus labels) until the loop has trained one: answered in the
    # district's departments.
    build_default_model(district)
    bot = await start_bot(make_bot, district)
    assert set(bot.services.suggester.labels) == set(TOPICS)
    rng = random.Random(7)
    for topic, department in [
        ("roads", "municipal"),
        ("school", "municipal"),
        ("water", "water"),
        ("clinic", "health"),
    ]:
        ref = await bot.report(RESIDENT, message(rng, TOPICS[topic]))
        assert (await bot.case(ref)).suggested_department == department, topic

    # Garbage: never 生态环境局 (no corpus label) until triage has corrected enough of it.
    for text in GARBAGE[:8]:
        ref = await bot.report(RESIDENT, text)
        assert (await bot.case(ref)).suggested_department != "environment"
        await correct_to(bot, ref, "生态环境局")
    outcome = await duty.run_learning_pass(bot.services, {})
    assert outcome is not None and outcome.promoted, outcome and outcome.decision.reasons
    counts = outcome.result.counts["per_department"]
    assert counts["municipal"]["corpus"] > counts["water"]["corpus"] > 0  # two labels, one
    assert counts["environment"]["corpus"] == 0 and counts["environment"]["decisions"] >= 5
    assert counts["education"] == {"corpus": 0, "decisions": 0, "decision_weight": 1.0}

    # The retrained model gives department codes and the bot serves it without a restart.
    suggester = bot.services.suggester
    assert suggester.model_version == outcome.result.version
    assert set(suggester.labels) == {"municipal", "water", "health", "environment"}
    assert not suggester.folds(suggester.model)
    for text, department in [
        (GARBAGE[8], "environment"),
        (GARBAGE[9], "environment"),
        (message(rng, TOPICS["school"]), "municipal"),
        (message(rng, TOPICS["roads"]), "municipal"),
    ]:
        ref = await bot.report(RESIDENT, text)
        assert (await bot.case(ref)).suggested_department == department, text


async def test_the_loops_baseline_is_trained_in_the_districts_departments(bot_engine, district):
    outcome = await duty.retrain_now(
        district, lambda: session_scope(bot_engine), START, trigger="manual"
    )
    served = Suggester.from_settings(district)
    assert outcome.promoted and served.model_version == outcome.result.version
    assert set(served.labels) == {"municipal", "water", "health"}
    assert outcome.result.counts["departments_too_few_examples"] == sorted(
        d.code for d in district.departments if d.code not in ("municipal", "water", "health")
    )
