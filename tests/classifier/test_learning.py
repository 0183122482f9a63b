"""The learning loop's classifier side on small synthetic corpora: label mapping, weights,
held-out sets, the gate, the model registry and training in a separate process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from classifier import Suggester, load_model
from classifier import text as textmod
from classifier.data import DataError
from classifier.labels import MIN_DEPARTMENT_EXAMPLES, LabelMap
from classifier.learning import (
    ChallengerJob,
    Decision,
    LearningError,
    LearningParams,
    StaffDecision,
    decision_weights,
    evaluate,
    gate,
    held_out,
    plan_training,
    reference_slice,
    retrain,
    retrain_async,
    run_challenger,
    set_metrics,
    settle,
    train_challenger,
)
from classifier.registry import ModelRegistry, RegistryError
from classifier.training import TrainParams, fit_label_offsets, train

FAST = TrainParams(n_jobs=1, cv_folds=3, offset_labels_below=100)

# Synthetic messages (written for these tests): what each department's messages are about,
# places, and the plain words of any message.
TOPICS = {
    "water": ["停水", "自来水", "水压", "水管", "漏水", "水费", "供水", "水质"],
    "roads": ["路灯", "井盖", "道路", "坑洼", "人行道", "护栏", "修路", "路面"],
    "school": ["学校", "入学", "老师", "学位", "校车", "课程", "学生", "幼儿园"],
    "clinic": ["医院", "挂号", "医生", "药品", "门诊", "疫苗", "看病", "护士"],
}
NEW_TOPIC = ["垃圾", "分类", "回收", "清运", "垃圾桶", "堆放", "异味", "保洁"]
PLACES = list("东南西北金星银杉枫林桂花梅溪湖滨江月亮岛白沙洲")
FILLER = ["最近", "一直", "附近", "居民", "情况", "问题", "很多", "现在", "已经", "我们"]
# What every real message says, whatever its department (greeting, request): the "style".
STYLE_OPEN = ["尊敬的领导您好", "领导同志您好", "尊敬的相关部门负责同志"]
STYLE_CLOSE = [
    "恳请相关部门高度重视尽快协调解决为盼",
    "强烈希望政府部门督促落实答复为谢",
    "万分感谢领导百忙之中关注督办落实",
]


def message(
    rng: random.Random, topic: list[str], styled: bool = False, topic_words: int = 3
) -> str:
    place = "".join(rng.sample(PLACES, 2)) + f"{rng.randint(1, 99)}栋"
    words = rng.sample(topic, topic_words) + rng.sample(FILLER, 3)
    body = f"{place}{words[-1]}{''.join(words[:topic_words])}，{words[-2]}{words[-3]}"
    if styled:
        return f"{rng.choice(STYLE_OPEN)}，{body}，{rng.choice(STYLE_CLOSE)}"
    return body


def make_corpus(per_label: int = 30, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [
        (message(rng, words), label) for label, words in TOPICS.items() for _ in range(per_label)
    ]


def make_decisions(
    department: str,
    n: int,
    *,
    start: int = 0,
    seed: int = 1,
    topic: list[str] | None = None,
    styled: bool = True,
    corrected: bool = True,
    prefix: str = "d",
) -> list[StaffDecision]:
    rng = random.Random(seed)
    words = topic or TOPICS[department]
    return [
        StaffDecision(
            f"{prefix}{start + i}",
            message(rng, words, styled),
            department,
            datetime(2024, 1, 1) + timedelta(hours=start + i),
            corrected,
        )
        for i in range(n)
    ]


DEPARTMENTS = tuple(TOPICS)
IDENTITY = LabelMap.identity(DEPARTMENTS)


# ---- the label mapping -------------------------------------------------------------------------


def test_corpus_labels_map_onto_a_districts_departments():
    table = {"城建": ["water", "roads"], "教育": "school", "卫健": [], "环卫": []}
    label_map = LabelMap.from_table(
        table, ["城建", "教育", "卫健", "环卫"], known_labels=DEPARTMENTS
    )
    corpus = make_corpus(3)
    mapped = label_map.apply(corpus)
    assert {d for _, d in mapped} == {"城建", "教育"}
    assert len(mapped) == 9  # water + roads + school; clinic is taken by no department
    assert label_map.department_of("roads") == "城建"
    assert label_map.department_of("clinic") is None
    assert label_map.without_corpus == ("卫健", "环卫")
    assert label_map.unused(DEPARTMENTS) == ["clinic"]
    # A department the table leaves out takes no corpus label either.
    assert LabelMap.from_table({"城建": "water"}, ["城建", "新部门"]).without_corpus == ("新部门",)
    assert IDENTITY.apply(corpus) == corpus


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"城建": "water", "别处": "roads"}, "别处 不在部门列表中"),
        ({"城建": ["water", "roads"], "教育": ["roads"]}, "roads 同时归入 城建、教育"),
        ({"城建": [1, 2]}, "应为语料标签或标签列表"),
        ({"城建": ["  "]}, "应为语料标签或标签列表"),
        ({"城建": "sewers"}, "语料中没有标签 sewers"),
    ],
)
def test_a_broken_label_mapping_is_a_clear_error(table, message):
    with pytest.raises(DataError, match=message):
        LabelMap.from_table(table, ["城建", "教育"], known_labels=DEPARTMENTS)


def test_departments_must_be_listed_once():
    with pytest.raises(DataError, match="重复"):
        LabelMap.from_table({}, ["城建", "城建"])


def test_a_department_without_corpus_is_learned_once_it_has_enough_decisions():
    label_map = LabelMap.from_table({d: d for d in DEPARTMENTS}, [*DEPARTMENTS, "sanitation"])
    params = LearningParams(holdout_every=1000)  # keep (nearly) every decision for training
    few = make_decisions("sanitation", MIN_DEPARTMENT_EXAMPLES - 1, topic=NEW_TOPIC)
    plan = plan_training(make_corpus(), few, label_map, params)
    assert "sanitation" in plan.counts["departments_too_few_examples"]
    assert "sanitation" not in {d for _, d in plan.training.examples}

    enough = make_decisions("sanitation", 25, topic=NEW_TOPIC)
    plan = plan_training(make_corpus(), enough, label_map, params)
    assert plan.counts["departments_too_few_examples"] == []
    model = train(
        plan.training.examples,
        FAST,
        analyzed=plan.training.analyzed,
        weights=plan.training.weights,
        progress=lambda m: None,
    ).model
    assert "sanitation" in model.labels
    fresh = make_decisions("sanitation", 20, topic=NEW_TOPIC, seed=99, prefix="t")
    metrics = evaluate(model, [(d.text, d.department) for d in fresh])
    assert metrics["departments"]["sanitation"]["recall"] >= 0.8


# ---- weights -------------------------------------------------------------------------------------


def test_decision_weights_cap_a_department_far_above_the_median():
    counts = {"water": 300, "roads": 10, "school": 12, "clinic": 8}
    weights = decision_weights(counts, DEPARTMENTS, cap=5)
    median = 11
    assert weights["water"] * 300 == pytest.approx(5 + median)
    assert weights["roads"] == weights["school"] == weights["clinic"] == 1.0
    # Balanced decisions count in full; a lone burst counts as `cap` examples.
    assert set(decision_weights({d: 40 for d in DEPARTMENTS}, DEPARTMENTS, 5).values()) == {1.0}
    assert decision_weights({"water": 200}, DEPARTMENTS, 5)["water"] * 200 == pytest.approx(5)
    assert decision_weights({"water": 200}, DEPARTMENTS, 0)["water"] > 0


def styled_accuracy(model, departments) -> float:
    rng = random.Random(7)
    pairs = [
        (message(rng, TOPICS[d], styled=True, topic_words=2), d)
        for d in departments
        for _ in range(15)
    ]
    return evaluate(model, pairs)["accuracy"]


def test_a_skewed_burst_does_not_swamp_the_other_departments():
    """A burst of one department's messages, all in the style real messages share: trained
    on as they come, that style comes to mean that department; weighted, it does not."""
    corpus = make_corpus(30)
    burst = make_decisions("water", 150)
    params = LearningParams(holdout_every=1000)
    plan = plan_training(corpus, burst, IDENTITY, params)
    others = [d for d in DEPARTMENTS if d != "water"]

    def fit(weights):
        return train(
            plan.training.examples,
            FAST,
            analyzed=plan.training.analyzed,
            weights=weights,
            progress=lambda m: None,
        ).model

    before = train(
        plan_training(corpus, [], IDENTITY, params).training.examples, FAST, progress=lambda m: None
    ).model
    unweighted = fit(None)
    weighted = fit(plan.training.weights)
    assert styled_accuracy(unweighted, others) < styled_accuracy(before, others) - 0.25
    assert styled_accuracy(weighted, others) >= styled_accuracy(before, others) - 0.1
    assert plan.counts["per_department"]["water"]["decision_weight"] < 0.1


def test_training_weights_are_checked_and_equal_weights_change_nothing():
    corpus = make_corpus(12)
    plain = train(corpus, FAST, calibrate=False, progress=lambda m: None).model
    same = train(
        corpus, FAST, calibrate=False, weights=[3.0] * len(corpus), progress=lambda m: None
    ).model
    np.testing.assert_array_equal(plain.coef, same.coef)
    for bad in ([1.0] * (len(corpus) - 1), [0.0] * len(corpus), [float("nan")] * len(corpus)):
        with pytest.raises(ValueError, match="weights"):
            train(corpus, FAST, weights=bad, progress=lambda m: None)


def test_label_offsets_make_a_shy_label_suggested_as_often_as_it_is_right():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [200, 200, 40])
    decision = rng.normal(size=(len(y), 3))
    decision[np.arange(len(y)), y] += 1.5
    decision[:, 2] -= 2.0  # label 2 is rarely predicted
    weights = np.ones(len(y))
    shy = np.bincount(decision.argmax(1), minlength=3)[2]
    offsets = fit_label_offsets(decision, y, weights, np.array([False, False, True]))
    after = np.bincount((decision + offsets).argmax(1), minlength=3)
    assert shy < 20 and abs(after[2] - 40) <= 8
    assert offsets[0] == offsets[1] == 0 and offsets[2] > 0


# ---- the held-out sets ---------------------------------------------------------------------------


def test_held_out_decisions_are_chosen_by_id_for_good():
    ids = [f"case-{i}" for i in range(2000)]
    chosen = [i for i in ids if held_out(i, 10)]
    assert 150 < len(chosen) < 250
    assert chosen == [i for i in ids if held_out(i, 10)]


def test_reference_slice_is_stratified_fixed_and_keeps_copies_together():
    corpus = make_corpus(40)
    corpus.append(corpus[0])  # a repost of the first water message
    analyzed = [textmod.analyze(t) for t, _ in corpus]
    labels = [lab for _, lab in corpus]
    chosen = reference_slice(analyzed, labels, 0.1)
    for label in DEPARTMENTS:
        picked = sum(1 for c, lab in zip(chosen, labels) if c and lab == label)
        assert 4 <= picked <= 6
    assert chosen[0] == chosen[-1]
    order = list(range(len(corpus)))
    random.Random(3).shuffle(order)
    again = reference_slice([analyzed[i] for i in order], [labels[i] for i in order], 0.1)
    assert {corpus[i] for i, c in zip(order, again) if c} == {
        corpus[i] for i, c in enumerate(chosen) if c
    }


def test_plan_never_trains_on_what_it_judges():
    corpus = make_corpus(30)
    decisions = (
        make_decisions("water", 60)
        + make_decisions("school", 60, start=60, seed=2)
        + make_decisions("roads", 60, start=120, seed=3)
    )
    # A repost (new case id) of a held-out decision, and an unknown department.
    held = next(d for d in decisions if held_out(d.id, 5))
    repost = replace(held, id="repost", at=held.at + timedelta(minutes=1))
    stray = replace(decisions[0], id="stray", department="parks")
    params = LearningParams(holdout_every=5, recent_decisions=20)
    plan = plan_training(corpus, [*decisions, repost, stray], IDENTITY, params)
    trained = {t for t, _ in plan.training.examples}
    judged = {t for t, _ in plan.recent} | {t for t, _ in plan.reference}
    assert not trained & judged
    assert held.text in judged and repost.text not in trained
    assert plan.counts["decisions_unknown_department"] == 1
    # The recent set: the latest held-out decisions, oldest first; the older ones join the
    # reference set after the corpus slice.
    held_all = [d for d in sorted([*decisions, repost], key=lambda d: d.at) if held_out(d.id, 5)]
    assert plan.recent == [(d.text, d.department) for d in held_all[-20:]]
    assert plan.reference[-len(held_all[:-20]) :] == [
        (d.text, d.department) for d in held_all[:-20]
    ]
    assert plan.counts["held_out_recent"] == 20
    # Fewer held out than the recent set takes: all of them are recent.
    held_here = [(d.text, d.department) for d in held_all if d.id != "repost"]
    few = plan_training(
        corpus, decisions, IDENTITY, replace(params, recent_decisions=len(held_here) + 10)
    )
    assert few.recent == held_here
    assert few.counts["held_out_older"] == 0
    assert len(plan.training.examples) == len(plan.training.weights) == len(plan.training.analyzed)


def test_the_latest_decision_about_a_text_wins():
    corpus = make_corpus(20)
    first = make_decisions("water", 1, prefix="x")[0]
    later = replace(first, id="y", department="roads", at=first.at + timedelta(days=1))
    params = LearningParams(holdout_every=1000)
    plan = plan_training(corpus, [later, first], IDENTITY, params)
    assert [d for t, d in plan.training.examples if t == first.text] == ["roads"]
    assert plan.counts["duplicates_left_out"] == 1


# ---- the gate --------------------------------------------------------------------------------


def metrics(macro: float, **departments: tuple[int, float]) -> dict:
    return {
        "n": sum(n for n, _ in departments.values()) or 100,
        "accuracy": macro,
        "macro_f1": macro,
        "departments": {
            d: {"n": n, "f1": f1, "recall": f1, "precision": f1}
            for d, (n, f1) in departments.items()
        },
    }


def both(recent: dict, reference: dict) -> dict:
    return {"recent": recent, "reference": reference}


def test_the_gate_promotes_a_challenger_not_worse_than_the_champion():
    champion = both(metrics(0.80, water=(30, 0.8)), metrics(0.90, water=(40, 0.9)))
    assert gate(None, champion, 0.02) == Decision(True)
    assert gate(champion, champion, 0.02).promote
    slightly = both(metrics(0.79, water=(30, 0.76)), metrics(0.89, water=(40, 0.86)))
    assert gate(champion, slightly, 0.02, department_margin=0.05).promote


def test_the_gate_refuses_a_drop_on_either_set_and_says_where():
    champion = both(metrics(0.80, water=(30, 0.8)), metrics(0.90, water=(40, 0.9)))
    worse_recent = both(metrics(0.75, water=(30, 0.8)), metrics(0.90, water=(40, 0.9)))
    decision = gate(champion, worse_recent, 0.02)
    assert not decision.promote
    assert decision.reasons == (
        ("最近的人工决定（30 条）: 宏平均 F1 0.750，比现用模型的 0.800 低 0.050（允许 0.020）"),
    )
    worse_reference = both(metrics(0.80, water=(30, 0.8)), metrics(0.80, water=(40, 0.9)))
    assert gate(champion, worse_reference, 0.02).reasons[0].startswith("参照集（40 条）")


def test_the_gate_checks_every_department_with_enough_cases():
    champion = both(metrics(0.8, water=(30, 0.9), roads=(19, 0.9)), metrics(0.9, water=(40, 0.9)))
    challenger = both(metrics(0.8, water=(30, 0.7), roads=(19, 0.1)), metrics(0.9, water=(40, 0.9)))
    decision = gate(champion, challenger, 0.02, min_cases=20, department_margin=0.05)
    assert not decision.promote
    assert len(decision.reasons) == 1  # roads has 19 cases: too few to judge
    assert "部门 water（30 条）F1 0.700，比现用模型的 0.900 低 0.200" in decision.reasons[0]
    # A department the challenger no longer suggests counts as F1 0.
    gone = both(metrics(0.8), metrics(0.9, water=(40, 0.9)))
    gone["recent"]["departments"] = {}
    assert "部门 water" in gate(champion, gone, 0.02).reasons[0]


def test_the_gate_skips_a_set_with_nothing_held_out():
    champion = both(metrics(0.0), metrics(0.9, water=(40, 0.9)))
    champion["recent"]["n"] = 0
    challenger = both(dict(champion["recent"]), metrics(0.9, water=(40, 0.9)))
    assert gate(champion, challenger, 0.02).promote


def test_the_gate_waits_for_enough_held_out_decisions_to_judge():
    """Fewer held-out recent decisions than min_held_out: refused, however good; from there
    on, judged as usual. The first model needs none (there is nothing to compare with)."""
    champion = both(metrics(0.80, water=(30, 0.8)), metrics(0.90, water=(40, 0.9)))
    better = both(metrics(0.95, water=(30, 0.95)), metrics(0.92, water=(40, 0.92)))
    decision = gate(champion, better, 0.02, min_held_out=31)
    assert decision == Decision(False, ("最近的人工决定只有 30 条留出，少于 31 条，尚不足以评判",))
    assert gate(champion, better, 0.02, min_held_out=30).promote
    assert gate(None, better, 0.02, min_held_out=1000).promote
    # Both checks speak: too few, and worse on the reference set.
    worse = both(metrics(0.95, water=(30, 0.95)), metrics(0.80, water=(40, 0.8)))
    reasons = gate(champion, worse, 0.02, min_held_out=31).reasons
    assert len(reasons) == 3 and reasons[0].startswith("最近的人工决定只有 30 条")
    assert LearningParams().min_held_out == round(1 / LearningParams().margin)


def test_set_metrics_average_the_departments_in_the_truth():
    m = set_metrics(["water"] * 4, ["water", "water", "roads", None])
    assert m["departments"] == {"water": {"n": 4, "f1": 0.6667, "recall": 0.5, "precision": 1.0}}
    assert m["macro_f1"] == 0.6667 and m["accuracy"] == 0.5
    assert set_metrics([], [])["n"] == 0
    # A department with fewer than min_cases cases is scored but not averaged in.
    m = set_metrics(["water"] * 5 + ["roads"], ["water"] * 5 + ["water"], min_cases=5)
    assert m["departments"]["roads"] == {"n": 1, "f1": 0.0, "recall": 0.0, "precision": 0.0}
    assert m["macro_f1"] == m["departments"]["water"]["f1"] == 0.9091
    assert set_metrics(["water"] * 5 + ["roads"], ["water"] * 6)["macro_f1"] == 0.4546


# ---- the registry ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    """Three small models with distinct versions."""
    out = []
    for seed in range(3):
        model = train(
            make_corpus(10, seed=seed), FAST, calibrate=False, progress=lambda m: None
        ).model
        model.meta["model_version"] = f"v{seed}"
        out.append(model)
    return out


def test_registry_promotes_serves_and_rolls_back(tmp_path, models):
    registry = ModelRegistry(tmp_path / "models")
    assert registry.champion() is None and registry.serve() is None
    for model in models:
        registry.add(model, {"counts": {"training_examples": 40}})
    assert [e.version for e in registry.entries()] == ["v0", "v1", "v2"]
    registry.promote("v0")
    suggester = Suggester.from_path(registry.served)
    assert suggester.model_version == "v0"
    registry.promote("v2")
    assert suggester.reload_if_changed() and suggester.model_version == "v2"
    assert registry.history() == ["v0", "v2"]
    assert [e.version for e in registry.entries() if e.champion] == ["v2"]
    assert registry.rollback().version == "v0"
    assert suggester.reload_if_changed() and suggester.model_version == "v0"
    with pytest.raises(RegistryError, match="没有可回滚"):
        registry.rollback()
    with pytest.raises(RegistryError, match="没有版本为 v9 的模型"):
        registry.promote("v9")
    with pytest.raises(RegistryError, match="格式不对"):
        registry.promote("../v0")


def test_a_model_that_does_not_load_is_never_served(tmp_path, models):
    registry = ModelRegistry(tmp_path)
    registry.add(models[0], {})
    registry.add(models[1], {})
    registry.promote("v0")
    (tmp_path / "v1.npz").write_bytes(b"not a model")
    with pytest.raises(RegistryError, match="模型无法启用"):
        registry.promote("v1")
    assert registry.champion_version() == "v0"
    assert load_model(registry.served).model_version == "v0"


def test_serve_repairs_a_crash_between_pointer_and_file(tmp_path, models):
    registry = ModelRegistry(tmp_path)
    for model in models[:2]:
        registry.add(model, {})
    registry.promote("v0")
    registry._set_history(["v0", "v1"])  # as if the process died before replacing the file
    assert load_model(registry.served).model_version == "v0"
    registry.serve()
    assert load_model(registry.served).model_version == "v1"


def test_a_reader_never_sees_half_a_model_while_promotions_go_on(tmp_path, models):
    registry = ModelRegistry(tmp_path)
    for model in models:
        registry.add(model, {})
    registry.promote("v0")
    seen, errors, done = set(), [], threading.Event()

    def read():
        while not done.is_set():
            try:
                seen.add(load_model(registry.served).model_version)
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            registry.promote(f"v{i % 3}")
    finally:
        done.set()
        reader.join()
    assert not errors and seen <= {"v0", "v1", "v2"} and len(seen) >= 2
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


SHM = Path("/dev/shm")


@pytest.mark.skipif(
    not SHM.is_dir() or SHM.stat().st_dev == Path(__file__).stat().st_dev,
    reason="needs /dev/shm on another file system than the test's folder",
)
def test_a_served_file_on_another_file_system_is_a_private_copy(tmp_path, models):
    served = SHM / f"whistle-test-{os.getpid()}.npz"
    try:
        registry = ModelRegistry(tmp_path, served=served)
        registry.add(models[0], {})
        registry.promote("v0")
        assert served.stat().st_ino != (tmp_path / "v0.npz").stat().st_ino
        assert served.stat().st_mode & 0o077 == 0
        assert load_model(served).model_version == "v0"
    finally:
        served.unlink(missing_ok=True)


def test_registry_files_are_private_and_versions_never_collide(tmp_path, models):
    registry = ModelRegistry(tmp_path)
    first = registry.add(models[0], {"personal_data": True})
    second = registry.add(models[0], {"personal_data": True})
    assert (first.version, second.version) == ("v0", "v0-2")
    for path in (first.path, tmp_path / "v0.json"):
        assert path.stat().st_mode & 0o077 == 0
    recorded = registry.record("v0", gate={"promote": False, "reasons": ["x"]})
    assert recorded.info["gate"]["reasons"] == ["x"] and recorded.info["personal_data"]


# ---- training in its own process ---------------------------------------------------------------


def job_for(folder: Path, decisions: list[StaffDecision], **changes) -> ChallengerJob:
    changes.setdefault("params", LearningParams(holdout_every=4, recent_decisions=40, min_cases=10))
    return ChallengerJob(
        corpus=make_corpus(30),
        decisions=decisions,
        label_map=IDENTITY,
        models_dir=folder,
        train_params=FAST,
        **changes,
    )


def balanced_decisions(n_per: int = 30) -> list[StaffDecision]:
    out = []
    for k, department in enumerate(DEPARTMENTS):
        out += make_decisions(
            department, n_per, start=k * 1000, seed=10 + k, prefix=f"{department}-"
        )
    return sorted(out, key=lambda d: d.at)


def test_first_model_then_a_challenger_judged_and_recorded(tmp_path):
    first, decision = retrain(job_for(tmp_path, []))
    assert decision.promote and first.champion_version is None
    registry = ModelRegistry(tmp_path)
    assert registry.champion_version() == first.version
    assert load_model(registry.served).model_version == load_model(first.path).model_version

    decisions = balanced_decisions()
    result, decision = retrain(job_for(tmp_path, decisions))
    assert result.champion_version == first.version
    assert set(result.metrics) == set(result.champion_metrics) == {"recent", "reference"}
    assert result.metrics["recent"]["n"] == result.counts["held_out_recent"] > 0
    info = registry.entry(result.version).info
    assert info["gate"]["promote"] == decision.promote
    assert info["gate"]["champion"] == first.version
    assert info["personal_data"] is True
    assert info["counts"]["training_corrections"] > 0
    assert registry.champion_version() == (result.version if decision.promote else first.version)
    # The registry never holds a message: not in any metadata file.
    texts = [t for t, _ in make_corpus(30)] + [d.text for d in decisions]
    for meta in tmp_path.glob("*.json"):
        content = meta.read_text(encoding="utf-8")
        assert not any(text in content for text in texts), meta.name
        json.loads(content)


def test_a_challenger_judged_on_too_few_held_out_decisions_is_refused_then_promoted(tmp_path):
    """The same challenger through settle(): refused while the recent set is below
    min_held_out (the champion keeps serving, the reason is recorded), promoted once the
    minimum is what the set holds."""
    first, _ = retrain(job_for(tmp_path, []))
    lenient = LearningParams(
        holdout_every=4, recent_decisions=40, min_cases=10, margin=1.0, department_margin=1.0
    )
    challenger = run_challenger(job_for(tmp_path, balanced_decisions(), params=lenient))
    held = challenger.metrics["recent"]["n"]
    assert 10 < held < 40
    decision = settle(
        challenger, job_for(tmp_path, [], params=replace(lenient, min_held_out=held + 1))
    )
    assert not decision.promote and f"只有 {held} 条留出" in decision.reasons[0]
    registry = ModelRegistry(tmp_path)
    assert registry.champion_version() == first.version
    assert registry.entry(challenger.version).info["gate"]["promote"] is False
    assert load_model(registry.served).model_version == first.version

    decision = settle(challenger, job_for(tmp_path, [], params=replace(lenient, min_held_out=held)))
    assert decision.promote, decision.reasons
    assert registry.champion_version() == challenger.version


def test_a_champion_changed_during_training_is_not_compared(tmp_path):
    first, _ = retrain(job_for(tmp_path, []))
    challenger = run_challenger(job_for(tmp_path, balanced_decisions(10)))
    assert challenger.champion_version == first.version
    other = run_challenger(job_for(tmp_path, balanced_decisions(12)))
    ModelRegistry(tmp_path).promote(other.version)  # an admin's promotion meanwhile
    decision = settle(challenger, job_for(tmp_path, []))
    assert decision == Decision(
        False, ((f"训练期间现用模型已从 {first.version} 换成 {other.version}，未作比较"),)
    )
    assert ModelRegistry(tmp_path).champion_version() == other.version


def test_training_failure_is_a_clear_error_and_keeps_nothing(tmp_path):
    one_label = ChallengerJob(
        corpus=[(t, "water") for t, _ in make_corpus(5)],
        decisions=[],
        label_map=LabelMap.identity(["water"]),
        models_dir=tmp_path,
        train_params=FAST,
    )
    with pytest.raises(LearningError, match="至少需要两个部门"):
        train_challenger(one_label)
    assert not list(tmp_path.glob("*.npz"))


def test_training_that_takes_too_long_is_stopped(tmp_path):
    started = time.perf_counter()
    with pytest.raises(LearningError, match="训练超过 0.5 秒"):
        train_challenger(job_for(tmp_path, balanced_decisions()), timeout=0.5)
    assert time.perf_counter() - started < 5
    time.sleep(3)  # were it still running, it would have saved its model by now
    assert not list(tmp_path.iterdir())


def test_training_runs_beside_the_event_loop_without_stalling_it(tmp_path):
    """The bot's loop keeps its pace while a challenger trains in another process: measured as
    the lateness of a 10 ms tick (training on the loop itself holds it for seconds)."""

    async def main():
        lateness = []
        task = asyncio.create_task(retrain_async(job_for(tmp_path, balanced_decisions())))
        ticks = 0
        while not task.done():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lateness.append(time.perf_counter() - before - 0.01)
            ticks += 1
        return await task, lateness, ticks

    (result, decision), lateness, ticks = asyncio.run(main())
    assert decision.promote and set(load_model(result.path).labels) == set(DEPARTMENTS)
    assert result.pid != os.getpid()
    assert ticks > 50  # training took a while, and the loop ran all along
    assert max(lateness) < 0.25, f"loop stalled {max(lateness):.3f} s"


@pytest.mark.parametrize(
    "change",
    [
        {"retrain_after_corrections": 0},
        {"margin": -0.1},
        {"department_margin": 2},
        {"holdout_every": 1},
        {"recent_decisions": 0},
        {"reference_share": 0.6},
        {"department_cap": -1},
        {"min_cases": 0},
        {"min_held_out": -1},
    ],
)
def test_learning_settings_are_checked(change):
    with pytest.raises(ValueError):
        LearningParams(**change)
