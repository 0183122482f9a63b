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
from tests.startup_kit import clean_env
from tests.test_bot_kit import model_path  # noqa: F401  (the session's trained model)
from tests.test_bot_kit import RESIDENT, base_settings, to_triage, with_classifier
from tests.test_learning import NEW_TOPIC, TOPICS, make_corpus, message
from tests.test_learning_loop import correct_to, start_bot
from tests.test_settings import config_with
from tests.test_startup import whistle
from whistle.config import ConfigError, load_settings, read_settings

pytest_plugins = ["tests.test_bot_kit"]  # make_bot, bot_engine

WATER_BLOCK = 'code = "water"\nname = "水务局"\n'
MUNICIPAL_BLOCK = 'code = "municipal"\nname = "市政局"\n'


# ---- config.toml ---------------------------------------------------------------------------

def test_by_default_each_department_takes_the_corpus_label_spelled_like_its_code():
    settings = base_settings()
    assert settings.corpus_label_table() == {d.code: (d.code,) for d in settings.departments}


def test_a_merged_department_takes_several_labels_and_the_others_keep_their_own(tmp_path):
    path = config_with(tmp_path, (MUNICIPAL_BLOCK, MUNICIPAL_BLOCK
                                  + 'corpus_labels = ["municipal", "water", "housing"]\n'))
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


@pytest.mark.parametrize("value, line", [
    ('["water", "drains"]', "部门 water 的 corpus_labels 中的 drains 不是语料的标签"),
    ('"water"', "部门 water 的 corpus_labels 应为语料标签的列表（可为空列表 []），而不是 'water'"),
    ('["water", 3]', "部门 water 的 corpus_labels 应为语料标签的列表"),
    ('["water", " "]', "部门 water 的 corpus_labels 应为语料标签的列表"),
    ('["water", "municipal"]', "语料标签 municipal 只能归入一个部门，corpus_labels 中却同时归入 "
                               "water、municipal"),
])
def test_bad_corpus_labels_are_refused_with_a_line_naming_the_setting(tmp_path, value, line):
    extra = '\ncorpus_labels = ["municipal"]\n' if "同时归入" in line else "\n"
    path = config_with(tmp_path, (WATER_BLOCK, WATER_BLOCK + f"corpus_labels = {value}\n"),
                       (MUNICIPAL_BLOCK, MUNICIPAL_BLOCK + extra.lstrip("\n")))
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
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
    return replace(settings, departments=tuple(
        replace(d, corpus_labels=tuple(labels[d.code])) if d.code in labels else d
        for d in settings.departments))


def test_the_shipped_model_answers_in_the_districts_departments(model_path):  # noqa: F811
    # 市政局 takes water too (水务局 kept for other work), 商务市场局 nothing.
    settings = merged(with_classifier(base_settings(), model_path=str(model_path)),
                      municipal=["municipal", "water"], water=[], commerce=[])
    plain = Suggester.from_path(model_path)
    mapped = Suggester.from_settings(settings)
    for text in ["小区停水两天了，水压也很低", "路灯坏了一个星期", "超市卖过期牛奶",
                 "工地晚上施工噪音太大"]:
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
