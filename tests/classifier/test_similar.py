"""Duplicate finder (classifier/similar.py) with the shipped default model, on texts written for
these tests: near copies found, other problems not, time/distance/grid filters, closing cases,
ordering, the index against brute force, speed on 10,000 cases."""

from __future__ import annotations

import dataclasses
import random
import time
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from classifier import build_default_model, load_model, similar
from classifier.similar import (
    APART,
    NEAR,
    TAIL_ROWS,
    UNKNOWN,
    DuplicateFinder,
    DuplicateRules,
    Place,
    distance_m,
    place_relation,
)
from whistle.config import load_settings

T0 = datetime(2025, 3, 1, 8, 0)
GRID = "WC-YLD-YX-01"
OUTAGE = (
    "银星村三组从昨天下午四点开始停水，事先也没看到任何停水通知，家里有老人小孩，"
    "做饭洗漱都成问题，请问什么时候能恢复供水？"
)
OUTAGE_EDITED = (
    "银星村三组从昨天下午四点就开始停水了，事先没看到任何停水通知，家里有老人小孩，"
    "做饭洗漱都成问题，什么时候能恢复供水？"
)
OUTAGE_REPOST = (
    "【再次反映】银星村三组从昨天下午四点开始停水，事先也没看到任何停水通知，"
    "家里有老人小孩，做饭洗漱都成问题，请问什么时候能恢复供水？已经一天了！"
)
SAME_PLACE_OTHER_PROBLEM = (
    "银星村三组村口的垃圾池好多天没人清运了，臭气熏天，苍蝇蚊子到处飞，请环卫部门尽快处理。"
)
SAME_PROBLEM_ELSEWHERE = "郭亮社区雅典城5栋从昨天下午开始停水，没有任何通知，请问什么时候恢复供水？"
UNRELATED = "312路公交车半小时才来一趟，司机还经常甩站不停"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The shipped default model: trained from classifier/corpus as the bot does at start."""
    base = load_settings()
    path = tmp_path_factory.mktemp("model") / "model.npz"
    settings = dataclasses.replace(
        base, classifier=dataclasses.replace(base.classifier, model_path=str(path))
    )
    return load_model(build_default_model(settings))


@pytest.fixture
def finder(model) -> DuplicateFinder:
    return DuplicateFinder(model)


def ids(found: list[tuple[int, float]]) -> list[int]:
    return [case_id for case_id, _ in found]


# ---- what counts as the same problem ---------------------------------------------------------


@pytest.mark.parametrize("report", [OUTAGE, OUTAGE_EDITED, OUTAGE_REPOST])
def test_a_near_copy_of_an_open_case_is_found(finder, report):
    finder.add(1, OUTAGE, T0, GRID)
    found = finder.candidates(report, T0 + timedelta(hours=3), GRID)
    assert ids(found) == [1]
    assert found[0][1] >= finder.rules.text_only_threshold  # found even without a place
    assert found[0][1] == pytest.approx(finder.similarity(OUTAGE, report), abs=1e-5)


@pytest.mark.parametrize("report", [UNRELATED, SAME_PLACE_OTHER_PROBLEM, SAME_PROBLEM_ELSEWHERE])
def test_another_problem_is_not_found(finder, report):
    finder.add(1, OUTAGE, T0, GRID)
    assert finder.candidates(report, T0 + timedelta(hours=3), GRID) == []
    assert finder.similarity(OUTAGE, report) < finder.rules.threshold


def test_similarity_is_a_cosine(finder):
    assert finder.similarity(OUTAGE, OUTAGE) == pytest.approx(1.0, abs=1e-5)
    assert finder.similarity(OUTAGE, OUTAGE_EDITED) == pytest.approx(
        finder.similarity(OUTAGE_EDITED, OUTAGE), abs=1e-6
    )
    assert finder.similarity(OUTAGE, UNRELATED) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("text", ["", "   ", "😀😀👍", "hello water", "12345"])
def test_a_text_without_chinese_finds_nothing_and_is_never_found(model, text):
    finder = DuplicateFinder(model, DuplicateRules(threshold=0.01, text_only_threshold=0.01))
    finder.add(1, OUTAGE, T0, GRID)
    finder.add(2, text, T0, GRID)  # between two cases with words
    finder.add(3, "停水停水", T0, GRID)
    assert finder.candidates(text, T0, GRID) == []
    assert ids(finder.candidates("停水停水", T0, GRID)) == [3, 1]
    assert 2 not in ids(finder.candidates(OUTAGE_EDITED, T0, GRID))
    assert 2 in finder and finder.remove(2)


# ---- time window -----------------------------------------------------------------------------


def test_only_cases_opened_within_the_window(model):
    finder = DuplicateFinder(model, DuplicateRules(window_days=30))
    finder.add(1, OUTAGE, T0, GRID)
    assert ids(finder.candidates(OUTAGE_EDITED, T0 + timedelta(days=29, hours=23), GRID)) == [1]
    assert finder.candidates(OUTAGE_EDITED, T0 + timedelta(days=30, seconds=1), GRID) == []
    # A case opened later than the report's time (a report sent while offline) counts too.
    assert ids(finder.candidates(OUTAGE_EDITED, T0 - timedelta(days=2), GRID)) == [1]
    assert finder.candidates(OUTAGE_EDITED, T0 - timedelta(days=31), GRID) == []


def test_naive_times_are_utc_and_aware_ones_are_converted(model):
    finder = DuplicateFinder(model, DuplicateRules(window_days=1))
    finder.add(1, OUTAGE, T0, GRID)  # naive: UTC
    beijing = timezone(timedelta(hours=8))
    same_moment = (T0 + timedelta(hours=8)).replace(tzinfo=beijing)
    assert ids(finder.candidates(OUTAGE_EDITED, same_moment + timedelta(hours=23), GRID)) == [1]
    assert finder.candidates(OUTAGE_EDITED, same_moment + timedelta(hours=25), GRID) == []
    assert ids(finder.candidates(OUTAGE_EDITED, T0.replace(tzinfo=UTC), GRID)) == [1]


# ---- place -----------------------------------------------------------------------------------

YINXING = (28.3520, 112.8190)


def north_of(point: tuple[float, float], metres: float) -> tuple[float, float]:
    return point[0] + metres / 111_195.0, point[1]


def test_distance_is_haversine():
    a = Place(lat=YINXING[0], lon=YINXING[1])
    assert distance_m(a, a) == 0.0
    assert distance_m(Place(lat=0.0, lon=0.0), Place(lat=1.0, lon=0.0)) == pytest.approx(
        111_195, rel=1e-3
    )
    b = Place(lat=YINXING[0], lon=YINXING[1] + 0.01)  # 0.01° of longitude at 28°N ≈ 980 m
    assert distance_m(a, b) == pytest.approx(979, abs=3)
    assert distance_m(a, b) == distance_m(b, a)


def test_within_distance_counts_as_the_same_place(model):
    finder = DuplicateFinder(model, DuplicateRules(distance_m=300))
    finder.add(1, OUTAGE, T0, None, *YINXING)
    assert ids(finder.candidates(OUTAGE_EDITED, T0, None, *north_of(YINXING, 250))) == [1]
    assert finder.candidates(OUTAGE_EDITED, T0, None, *north_of(YINXING, 2000)) == []
    # Different grids (a grid's edge runs between them) but close: the same place.
    finder.add(2, OUTAGE, T0, "WC-GTL-XC-01", *YINXING)
    assert ids(finder.candidates(OUTAGE_EDITED, T0, GRID, *north_of(YINXING, 100))) == [1, 2]


def test_the_same_grid_counts_however_far_apart_the_points(finder):
    finder.add(1, OUTAGE, T0, GRID, *YINXING)
    assert ids(finder.candidates(OUTAGE_EDITED, T0, GRID, *north_of(YINXING, 5000))) == [1]


def test_grids_that_do_not_nest_are_apart(finder):
    finder.add(1, OUTAGE, T0, GRID)
    assert finder.candidates(OUTAGE, T0, "WC-GTL-XC-01") == []
    assert finder.candidates(OUTAGE, T0, "WC-YLD-YX-02") == []


def test_nested_or_unknown_place_needs_the_text_only_threshold(model):
    """One grid inside the other (a report placed only at its community), or no place on one
    side: the stricter text-only threshold; the same grid: the lower one."""
    rules = DuplicateRules(threshold=0.5, text_only_threshold=0.95)
    finder = DuplicateFinder(model, rules)
    finder.add(1, OUTAGE, T0, GRID)
    score = finder.similarity(OUTAGE, OUTAGE_EDITED)
    assert 0.5 < score < 0.95
    assert ids(finder.candidates(OUTAGE_EDITED, T0, GRID)) == [1]
    for place in [("WC-YLD-YX",), ("WC-YLD-YX-01-A",), (None,), (None, *YINXING)]:
        assert finder.candidates(OUTAGE_EDITED, T0, *place) == [], place
        assert ids(finder.candidates(OUTAGE, T0, *place)) == [1], place  # identical: 1.0


@pytest.mark.parametrize(
    "a, b, relation",
    [
        (Place(GRID), Place(GRID), NEAR),
        (Place(GRID, *YINXING), Place(GRID, 28.0, 112.0), NEAR),
        (Place(None, *YINXING), Place(None, *north_of(YINXING, 299)), NEAR),
        (Place("WC-A", *YINXING), Place("WC-B", *north_of(YINXING, 10)), NEAR),
        (Place(None, *YINXING), Place(None, *north_of(YINXING, 301)), APART),
        (Place("WC-YLD-YX", *YINXING), Place(GRID, *north_of(YINXING, 900)), APART),
        (Place(GRID), Place("WC-YLD-YX-02"), APART),
        (Place(GRID), Place("WC-YLD-YX-011"), APART),  # a prefix, but not a parent
        (Place(GRID), Place("WC-YLD-YX"), UNKNOWN),
        (Place("WC-YLD"), Place(GRID), UNKNOWN),
        (Place(GRID), Place(), UNKNOWN),
        (Place(GRID), Place(None, *YINXING), UNKNOWN),
        (Place(), Place(), UNKNOWN),
    ],
)
def test_place_relation(a, b, relation):
    assert place_relation(a, b, 300.0) == relation
    assert place_relation(b, a, 300.0) == relation


def test_numeric_grid_codes_nest_as_the_districts_tree_says():
    """统计用区划代码-style codes don't nest by spelling: the district's rule is passed in."""
    parent = {"430112001001": "430112001000", "430112001000": None, "430112002000": None}

    def within(code: str, area: str) -> bool:
        while code is not None:
            if code == area:
                return True
            code = parent.get(code)
        return False

    community, street, other = Place("430112001001"), Place("430112001000"), Place("430112002000")
    assert place_relation(community, street, 300.0) == APART  # by spelling: apart
    assert place_relation(community, street, 300.0, within) == UNKNOWN  # one inside the other
    assert place_relation(street, community, 300.0, within) == UNKNOWN
    assert place_relation(community, other, 300.0, within) == APART


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lat": 28.0}, "同时给出纬度和经度"),
        ({"lon": 112.0}, "同时给出纬度和经度"),
        ({"lat": 91.0, "lon": 112.0}, "坐标超出范围"),
        ({"lat": 28.0, "lon": -181.0}, "坐标超出范围"),
        ({"lat": float("nan"), "lon": 112.0}, "坐标超出范围"),
    ],
)
def test_a_broken_point_is_refused(finder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        finder.candidates(OUTAGE, T0, **kwargs)
    with pytest.raises(ValueError, match=message):
        finder.add(1, OUTAGE, T0, **kwargs)
    assert len(finder) == 0  # nothing half-added


# ---- cases opening and closing, ordering -----------------------------------------------------


def test_a_closed_case_is_no_longer_found(finder):
    finder.add(1, OUTAGE, T0, GRID)
    finder.add(2, OUTAGE_REPOST, T0, GRID)
    assert finder.remove(1) is True
    assert finder.remove(1) is False
    assert 1 not in finder and len(finder) == 1
    assert ids(finder.candidates(OUTAGE_EDITED, T0, GRID)) == [2]
    assert finder.remove(2) and finder.candidates(OUTAGE_EDITED, T0, GRID) == []


def test_update_replaces_the_text_and_place(finder):
    finder.add(1, OUTAGE, T0, GRID)
    finder.update(1, SAME_PLACE_OTHER_PROBLEM, T0, GRID)
    assert len(finder) == 1
    assert finder.candidates(OUTAGE_EDITED, T0, GRID) == []
    finder.update(1, OUTAGE, T0, "WC-GTL-XC-01")
    assert finder.candidates(OUTAGE_EDITED, T0, GRID) == []
    assert ids(finder.candidates(OUTAGE_EDITED, T0, "WC-GTL-XC-01")) == [1]


def test_best_first_then_newest_at_most_k(model):
    finder = DuplicateFinder(model, DuplicateRules(k=3))
    finder.add(10, OUTAGE_REPOST, T0, GRID)
    finder.add(11, OUTAGE, T0, GRID)
    finder.add(12, OUTAGE, T0 + timedelta(hours=1), GRID)  # same text, newer
    finder.add(13, OUTAGE_EDITED, T0, GRID)
    finder.add(14, UNRELATED, T0, GRID)
    found = finder.candidates(OUTAGE, T0 + timedelta(hours=2), GRID)
    assert ids(found) == [12, 11, 10] and found[0][1] == found[1][1] > found[2][1]
    everything = finder.candidates(OUTAGE, T0 + timedelta(hours=2), GRID, k=10)
    assert ids(everything) == [12, 11, 10, 13]
    assert [s for _, s in everything] == sorted((s for _, s in everything), reverse=True)
    assert ids(finder.candidates(OUTAGE, T0, GRID, k=10, exclude={11, 12})) == [10, 13]


def test_duplicates_of_an_indexed_case(finder):
    finder.add(1, OUTAGE, T0, GRID)
    finder.add(2, OUTAGE_REPOST, T0 + timedelta(days=1), GRID)
    finder.add(3, UNRELATED, T0, GRID)
    finder.add(4, OUTAGE_EDITED, T0 + timedelta(days=3), "WC-GTL-XC-01")  # elsewhere
    assert ids(finder.duplicates_of(2)) == [1]
    assert finder.duplicates_of(3) == []
    with pytest.raises(KeyError, match="99"):
        finder.duplicates_of(99)


# ---- the index: incremental updates against brute force ---------------------------------------

PLACES = [
    "银星村",
    "郭亮社区",
    "新城社区",
    "金星北路",
    "雷锋大道",
    "月亮岛路",
    "高塘岭",
    "黄金园",
    "普瑞大道",
    "腾飞路",
    "旺旺路",
    "丁字湾",
    "乌山",
    "白箬铺",
    "茶亭镇",
    "靖港镇",
    "乔口镇",
    "铜官街道",
    "桥驿镇",
    "书堂山",
]
PROBLEMS = [
    "停水两天了，做饭洗衣都成问题",
    "路灯坏了好几盏，晚上一片漆黑",
    "垃圾没人清运，臭气熏天",
    "烧烤店油烟直排，噪音扰民到凌晨",
    "井盖松动，车一压就响",
    "物业不作为，电梯坏了一个月",
    "工地夜间施工，吵得睡不着",
    "公交车半小时才来一趟",
    "老板拖欠三个月工资不发",
    "下水道堵了，污水漫到路上",
    "违章搭建占用消防通道",
    "小区停车位被外来车占满",
    "学校门口交通拥堵，接送孩子危险",
    "自来水发黄有沉淀",
    "河边有人偷倒建筑垃圾",
]
DETAILS = [
    "已经好几天了",
    "希望尽快处理",
    "打了电话没人管",
    "老人小孩很不方便",
    "请相关部门重视",
    "多次反映没有结果",
    "昨天晚上开始的",
    "附近居民意见很大",
]


def synthetic_cases(n: int, seed: int = 0) -> list[tuple]:
    """(case_id, text, at, grid, lat, lon): invented reports, many alike (same place and
    problem, other details), a third with coordinates."""
    rng = random.Random(seed)
    out = []
    for case_id in range(n):
        place = rng.randrange(len(PLACES))
        text = (
            f"{PLACES[place]}{rng.randint(1, 30)}栋附近{rng.choice(PROBLEMS)}，"
            f"{rng.choice(DETAILS)}，{rng.choice(DETAILS)}。"
        )
        at = T0 + timedelta(minutes=rng.randrange(60 * 24 * 40))
        lat = lon = None
        if rng.random() < 0.33:
            lat, lon = 28.30 + 0.01 * place + rng.uniform(-0.002, 0.002), 112.8
        grid = f"WC-G{place:02d}" if rng.random() < 0.8 else None
        out.append((case_id, text, at, grid, lat, lon))
    return out


def brute_force(finder: DuplicateFinder, cases: dict, query: tuple, k: int) -> list:
    """What candidates() must return, computed pair by pair."""
    _, text, at, *place = query
    rules = finder.rules
    hits = []
    for case_id, (_, other, opened, *where) in cases.items():
        score = finder.similarity(text, other)
        relation = place_relation(Place(*place), Place(*where), rules.distance_m)
        needed = rules.threshold if relation == NEAR else rules.text_only_threshold
        if (
            relation != APART
            and score >= needed
            and abs((opened - at).total_seconds()) <= rules.window_days * 86400
        ):
            hits.append((case_id, score, opened))
    hits.sort(key=lambda h: (-h[1], -h[2].timestamp(), h[0]))
    return hits[:k]


def test_the_index_matches_brute_force_through_folds_removals_and_compaction(model):
    rules = DuplicateRules(threshold=0.3, text_only_threshold=0.45, window_days=20, k=50)
    finder = DuplicateFinder(model, rules)
    cases = synthetic_cases(3 * TAIL_ROWS + 40, seed=1)
    live = {}
    rng = random.Random(2)
    for n, case in enumerate(cases):
        finder.add(*case)
        live[case[0]] = case
        if n % 3 == 2:  # every third step a random case closes
            gone = rng.choice(sorted(live))
            assert finder.remove(gone)
            del live[gone]
        if n % 100 == 99:  # and now and then one is edited
            case_id = rng.choice(sorted(live))
            edited = (case_id, cases[rng.randrange(len(cases))][1], *live[case_id][2:])
            finder.update(*edited)
            live[case_id] = edited
    check_against_brute_force(finder, live, rng)  # postings, a tail, removed slots
    for gone in rng.sample(sorted(live), len(live) * 3 // 4):  # most close: compaction
        finder.remove(gone)
        del live[gone]
    check_against_brute_force(finder, live, rng)
    assert len(finder) == len(live)


def check_against_brute_force(finder: DuplicateFinder, live: dict, rng: random.Random) -> None:
    for query in synthetic_cases(30, seed=rng.randrange(1000)) + rng.sample(
        list(live.values()), 10
    ):
        expected = brute_force(finder, live, query, finder.rules.k)
        found = finder.candidates(query[1], query[2], *query[3:])
        assert ids(found) == [h[0] for h in expected]
        assert [s for _, s in found] == pytest.approx([h[1] for h in expected], abs=1e-5)


def test_from_cases_is_the_same_as_adding_one_by_one(model):
    cases = synthetic_cases(600, seed=4)
    one_by_one = DuplicateFinder(model)
    for case in cases:
        one_by_one.add(*case)
    at_once = DuplicateFinder.from_cases(model, DuplicateRules(), cases)
    assert len(at_once) == len(one_by_one) == 600
    for query in synthetic_cases(40, seed=5):
        found, expected = at_once.candidates(*query[1:]), one_by_one.candidates(*query[1:])
        assert ids(found) == ids(expected)
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_ten_thousand_open_cases_answer_quickly(model):
    """A loose bound (shared CI machines): the bench measures p99 ≈ 1 ms here."""
    cases = synthetic_cases(10_000, seed=6)
    began = time.perf_counter()
    finder = DuplicateFinder.from_cases(model, DuplicateRules(), cases)
    assert time.perf_counter() - began < 60
    queries = synthetic_cases(200, seed=7)
    analyzed = [finder.vector(q[1]) for q in queries]  # warm up jieba
    assert all(len(index) for index, _ in analyzed)
    began = time.perf_counter()
    found = [finder.candidates(q[1], q[2], *q[3:]) for q in queries]
    assert (time.perf_counter() - began) / len(queries) < 0.025
    assert sum(map(bool, found)) > 100  # the invented reports do repeat one another


# ---- rules -----------------------------------------------------------------------------------


def test_rules_from_a_config_table():
    rules = DuplicateRules.from_mapping(
        {"threshold": 0.5, "text_only_threshold": 0.6, "distance_m": 200, "window_days": 14, "k": 5}
    )
    assert rules == DuplicateRules(0.5, 0.6, 200.0, 14.0, 5)
    assert DuplicateRules.from_mapping({}) == DuplicateRules()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"threshold": 0}, "threshold 应在 0 到 1 之间"),
        ({"text_only_threshold": 1.5}, "text_only_threshold 应在 0 到 1 之间"),
        ({"distance_m": -1}, "distance_m 不能为负数"),
        ({"window_days": 0}, "window_days 应大于 0"),
        ({"k": 0}, "k 至少为 1"),
        ({"k": 2.5}, "k 应为整数"),
        ({"threshold": "高"}, "threshold 应为数字"),
        ({"threshold": True}, "threshold 应为数字"),
        ({"treshold": 0.5}, "未知的设置项 treshold"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(table, message):
    with pytest.raises(ValueError, match=message):
        DuplicateRules.from_mapping(table)


def test_every_problem_of_the_rules_is_named_at_once():
    with pytest.raises(ValueError) as exc:
        DuplicateRules(threshold=2.0, window_days=-3, k=0)
    assert all(name in str(exc.value) for name in ("threshold", "window_days", "k"))


def test_a_text_is_vectorised_once_for_the_question_the_hint_and_the_index(finder, monkeypatch):
    calls = []
    vectorise = finder._vector
    monkeypatch.setattr(finder, "_vector", lambda analyzed: calls.append(1) or vectorise(analyzed))
    text = "小区门口的路灯坏了好几天，晚上很黑"
    first = finder.vector(text)
    assert finder.vector(text) is first and len(calls) == 1
    for n in range(similar.RECENT_VECTORS):  # pushed out by as many other texts
        finder.vector(f"第{n}栋楼道堆满杂物")
    again = finder.vector(text)
    assert len(calls) == similar.RECENT_VECTORS + 2
    assert np.array_equal(again[0], first[0]) and np.allclose(again[1], first[1])
