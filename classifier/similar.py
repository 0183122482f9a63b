"""Likely duplicates (重复件) of a report among the open cases.

Text similarity is the cosine of the classifier's own TF-IDF vectors (its word, character and
lead views with their weights; single characters and common features left out), so no second
model is trained.
A case is a candidate when it is close enough in place and time:

- same place (the same grid code, or both located within `distance_m`): score ≥ `threshold`;
- place unknown (no grid or coordinates to compare, or one grid inside the other, e.g. a
  report placed only at its community): score ≥ `text_only_threshold`, which is higher
  because the candidates then come from every open case instead of one grid's;
- known to be apart (grids that don't nest, or coordinates farther than `distance_m` without
  a common grid): never.

The thresholds were chosen on real messages (bench/duplicate_bench.py). The index grows and
shrinks as cases open and close, without refitting; a query costs a few posting lists, not a
pass over every case.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from classifier import text as textmod
from classifier.model import LinearModel

NEAR, UNKNOWN, APART = "near", "unknown", "apart"
EARTH_RADIUS_M = 6_371_008.8
# Cases added since the posting lists were last built are scored row by row; past this many
# they are folded into the posting lists (a rebuild of a few milliseconds per 10,000 cases).
TAIL_ROWS = 256
RECENT_VECTORS = 64  # texts whose vectors are kept (DuplicateFinder.vector)
# A feature in more than this share of the model's training messages is left out (its idf,
# ln((1 + n) / (1 + df)) + 1, is then below 1 + ln(1 / COMMON_SHARE)).
COMMON_SHARE = 0.05


@dataclass(frozen=True)
class DuplicateRules:
    """When an open case counts as a likely duplicate (config.toml [duplicates])."""

    threshold: float = 0.50  # cosine, same grid or within distance_m
    text_only_threshold: float = 0.55  # cosine, place unknown
    distance_m: float = 300.0
    window_days: float = 30.0  # the case was opened at most this long before (or after)
    k: int = 3  # at most this many candidates, best first

    def __post_init__(self) -> None:
        problems = []
        for name in ("threshold", "text_only_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                problems.append(f"{name} 应在 0 到 1 之间（不含 0），现为 {value}")
        if not self.distance_m >= 0:
            problems.append(f"distance_m 不能为负数，现为 {self.distance_m}")
        if not self.window_days > 0:
            problems.append(f"window_days 应大于 0，现为 {self.window_days}")
        if self.k < 1:
            problems.append(f"k 至少为 1，现为 {self.k}")
        if problems:
            raise ValueError("重复件规则有误: " + "；".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping) -> DuplicateRules:
        """Rules from a config table ([duplicates]); ValueError naming every problem."""
        names = [f.name for f in fields(cls)]
        problems = [
            f"未知的设置项 {key}（可用: {', '.join(names)}）" for key in values if key not in names
        ]
        problems += [
            f"{key} 应为{'整数' if key == 'k' else '数字'}，现为 {value!r}"
            for key, value in values.items()
            if key in names
            and (
                isinstance(value, bool) or not isinstance(value, int if key == "k" else int | float)
            )
        ]
        if problems:
            raise ValueError("重复件规则有误: " + "；".join(problems))
        return cls(**{key: int(v) if key == "k" else float(v) for key, v in values.items()})


@dataclass(frozen=True)
class Place:
    """Where a report is: its grid code and coordinates, each may be unknown."""

    grid_code: str | None = None
    lat: float | None = None
    lon: float | None = None

    def __post_init__(self) -> None:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("坐标需同时给出纬度和经度")
        if self.lat is not None and not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"坐标超出范围: ({self.lat}, {self.lon})")

    @property
    def has_point(self) -> bool:
        return self.lat is not None


def grid_within(code: str, area: str) -> bool:
    """True when grid `code` is `area` or lies below it, judged by the codes alone (WC-YLD-YX-01
    is in WC-YLD-YX): the default where no grid tree is known. A district's tree knows better
    (numeric codes such as 430112001001 do not nest by prefix): pass its rule as `within`."""
    return code == area or code.startswith(area + "-")


Within = Callable[[str, str], bool]  # (code, area): is grid `code` area or below it?


def distance_m(a: Place, b: Place) -> float:
    """Great-circle (haversine) distance in metres between two located places."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin(math.radians(b.lon - a.lon) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def place_relation(a: Place, b: Place, within_m: float, within: Within = grid_within) -> str:
    """NEAR (same grid, or within `within_m`), APART (grids that don't nest, or points farther
    apart) or UNKNOWN (nothing to compare, or one grid inside the other)."""
    if a.grid_code and a.grid_code == b.grid_code:
        return NEAR
    if a.has_point and b.has_point:
        return NEAR if distance_m(a, b) <= within_m else APART
    if (
        a.grid_code
        and b.grid_code
        and not (within(a.grid_code, b.grid_code) or within(b.grid_code, a.grid_code))
    ):
        return APART
    return UNKNOWN


def timestamp(at: datetime) -> float:
    """Seconds since the epoch; a naive datetime is UTC, as everywhere in Whistle."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


class DuplicateFinder:
    """The open cases' vectors, times and places; `candidates()` for a new report,
    `duplicates_of()` for a case already in the index (what triage sees)."""

    def __init__(
        self,
        model: LinearModel,
        rules: DuplicateRules = DuplicateRules(),
        within: Within = grid_within,
    ):
        self.model = model
        self.rules = rules
        self.within = within
        views = (model.word, model.char, model.lead)
        self.n_features = sum(len(b.vocab) for b in views)
        # Single characters and features in more than COMMON_SHARE of the training messages
        # (by their idf) say little about which problem a message reports, blur the score,
        # and have the longest posting lists.
        kept = np.concatenate([b.idf for b in views]) >= 1.0 + math.log(1.0 / COMMON_SHARE)
        start = len(model.word.vocab)
        kept[start : start + len(model.char.vocab)] &= model.char.vocab > textmod.ngram_key(
            "\U0010ffff"
        )
        self._kept = kept
        self._lock = threading.RLock()
        # A report's text is vectorised for the resident's question, the triage hint and the
        # index within a second: the latest few vectors are kept (they are never changed).
        self._recent: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._slot_of: dict[int, int] = {}
        self._ids: list[int] = []
        self._places: list[Place] = []
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []
        self._at = np.zeros(0)
        self._alive = np.zeros(0, dtype=bool)
        self._indexed = 0  # slots [0, _indexed) are in the posting lists, the rest in the tail
        self._postings = _Postings.build([], self.n_features)
        self._dense = np.zeros(self.n_features, dtype=np.float32)  # see _Tail.dot
        self._tail = _Tail(self._dense)

    @classmethod
    def from_cases(
        cls, model: LinearModel, rules: DuplicateRules, cases: Iterable[tuple]
    ) -> DuplicateFinder:
        """An index of (case_id, text, at, grid_code, lat, lon) tuples, e.g. the open cases
        read at start-up or after a new model was loaded."""
        finder = cls(model, rules)
        for case_id, text, at, *place in cases:
            finder._append(case_id, finder.vector(text), timestamp(at), _place(*place))
        finder._rebuild()
        return finder

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._slot_of

    # ---- vectors ---------------------------------------------------------------------------

    def vector(self, text: str | textmod.Analyzed) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, values) of a message, l2-normalised: the cosine is a dot product.
        Empty without Chinese (as the classifier, which makes no suggestion for those)."""
        if not isinstance(text, str):
            return self._vector(text)
        with self._lock:
            row = self._recent.get(text)
            if row is not None:
                self._recent.move_to_end(text)
                return row
        row = self._vector(textmod.analyze(text))
        with self._lock:
            self._recent[text] = row
            if len(self._recent) > RECENT_VECTORS:
                self._recent.popitem(last=False)
        return row

    def _vector(self, analyzed: textmod.Analyzed) -> tuple[np.ndarray, np.ndarray]:
        if not textmod.has_chinese(analyzed.chars):
            return _EMPTY_ROW
        views = self.model.vectors(analyzed)
        index = np.concatenate([i for i, _ in views])
        values = np.concatenate([v for _, v in views])
        kept = self._kept[index]
        index, values = index[kept], values[kept]
        if len(index):
            values = values / math.sqrt(float(np.dot(values, values)))
        return index.astype(np.int32), values.astype(np.float32)

    def similarity(self, a: str | textmod.Analyzed, b: str | textmod.Analyzed) -> float:
        """Cosine similarity of two messages (what a candidate's score means)."""
        (ia, va), (ib, vb) = self.vector(a), self.vector(b)
        common, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
        return float(np.dot(va[pa], vb[pb])) if len(common) else 0.0

    # ---- cases opening and closing ---------------------------------------------------------

    def add(
        self,
        case_id: int,
        text: str | textmod.Analyzed,
        at: datetime,
        grid_code: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> None:
        """Index an open case; a case already indexed is replaced (its text or place changed)."""
        place = _place(grid_code, lat, lon)
        row = self.vector(text)
        when = timestamp(at)
        with self._lock:
            self._append(case_id, row, when, place)
            if len(self._ids) - self._indexed > TAIL_ROWS:
                self._fold_tail()

    def _append(
        self, case_id: int, row: tuple[np.ndarray, np.ndarray], when: float, place: Place
    ) -> None:
        if case_id in self._slot_of:
            self._remove(case_id)
        slot = len(self._ids)
        self._ids.append(case_id)
        self._places.append(place)
        self._rows.append(row)
        self._at = _grown(self._at, slot)
        self._alive = _grown(self._alive, slot)
        self._at[slot], self._alive[slot] = when, True
        self._slot_of[case_id] = slot
        self._tail.append(row)

    update = add

    def remove(self, case_id: int) -> bool:
        """Forget a case (closed, merged, not accepted); False if it was not indexed."""
        with self._lock:
            return self._remove(case_id)

    def _remove(self, case_id: int) -> bool:
        slot = self._slot_of.pop(case_id, None)
        if slot is None:
            return False
        self._alive[slot] = False
        self._rows[slot] = _EMPTY_ROW  # its memory back now; the slot goes at the next rebuild
        if len(self._ids) > 2 * TAIL_ROWS and len(self._slot_of) < len(self._ids) // 2:
            self._compact()
        return True

    def _compact(self) -> None:
        """Drop the slots of removed cases once they are most of the index."""
        live = [s for s in range(len(self._ids)) if self._alive[s]]
        self._ids = [self._ids[s] for s in live]
        self._places = [self._places[s] for s in live]
        self._rows = [self._rows[s] for s in live]
        self._at = self._at[live]
        self._alive = np.ones(len(live), dtype=bool)
        self._slot_of = {case_id: s for s, case_id in enumerate(self._ids)}
        self._rebuild()

    def _rebuild(self) -> None:
        """Posting lists of every slot, built afresh."""
        self._postings = _Postings.build(self._rows, self.n_features)
        self._indexed, self._tail = len(self._ids), _Tail(self._dense)

    def _fold_tail(self) -> None:
        """Merge the tail's slots into the posting lists (no re-sorting of the others)."""
        tail = _Postings.build(self._rows[self._indexed :], self.n_features, self._indexed)
        self._postings = self._postings.merged(tail)
        self._indexed, self._tail = len(self._ids), _Tail(self._dense)

    # ---- queries ---------------------------------------------------------------------------

    def candidates(
        self,
        text: str | textmod.Analyzed,
        at: datetime,
        grid_code: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        *,
        k: int | None = None,
        exclude: Iterable[int] = (),
    ) -> list[tuple[int, float]]:
        """Open cases that are likely the same problem as this report: (case_id, score),
        best first (then the newest), at most k (rules.k)."""
        place = _place(grid_code, lat, lon)
        return self._search(self.vector(text), timestamp(at), place, k, set(exclude))

    def duplicates_of(self, case_id: int, *, k: int | None = None) -> list[tuple[int, float]]:
        """candidates() for an indexed case, from its stored vector, time and place."""
        with self._lock:
            slot = self._slot_of.get(case_id)
            if slot is None:
                raise KeyError(f"案件 {case_id} 不在重复件索引中")
            row, when, place = self._rows[slot], float(self._at[slot]), self._places[slot]
        return self._search(row, when, place, k, {case_id})

    def _search(
        self,
        row: tuple[np.ndarray, np.ndarray],
        when: float,
        place: Place,
        k: int | None,
        exclude: set,
    ) -> list[tuple[int, float]]:
        rules = self.rules
        index, values = row
        if not len(index):
            return []
        with self._lock:
            n = len(self._ids)
            scores = self._scores(index, values)
            lowest = min(rules.threshold, rules.text_only_threshold)
            window = rules.window_days * 86400.0
            hits = np.flatnonzero(
                (scores >= lowest) & self._alive[:n] & (np.abs(self._at[:n] - when) <= window)
            )
            found = []
            for slot in hits.tolist():
                case_id, score = self._ids[slot], float(scores[slot])
                relation = place_relation(place, self._places[slot], rules.distance_m, self.within)
                needed = rules.threshold if relation == NEAR else rules.text_only_threshold
                if relation != APART and score >= needed and case_id not in exclude:
                    found.append((case_id, score, float(self._at[slot])))
        found.sort(key=lambda hit: (-hit[1], -hit[2], hit[0]))
        return [(case_id, score) for case_id, score, _ in found[: k or rules.k]]

    def _scores(self, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Cosine with every slot: posting lists for the indexed slots, rows for the tail."""
        scores = np.zeros(len(self._ids), dtype=np.float32)
        scores[: self._indexed] = self._postings.dot(index, values)
        if self._indexed < len(self._ids):
            scores[self._indexed :] = self._tail.dot(index, values)
        return scores

    def nbytes(self) -> int:
        """Memory held by the vectors and posting lists (not Python's per-object overhead)."""
        rows = sum(i.nbytes + v.nbytes for i, v in self._rows)
        return rows + self._postings.nbytes() + self._at.nbytes + self._alive.nbytes


def _place(
    grid_code: str | None = None, lat: float | None = None, lon: float | None = None
) -> Place:
    return Place(
        grid_code or None, None if lat is None else float(lat), None if lon is None else float(lon)
    )


_EMPTY_ROW = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))


def _grown(array: np.ndarray, slot: int) -> np.ndarray:
    """The array, with room for array[slot] (doubling: appends cost O(1) on average)."""
    if slot < len(array):
        return array
    grown = np.zeros(max(16, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


@dataclass
class _Postings:
    """Slots stored by feature (a features × slots CSR matrix, each row in slot order): a
    query reads only the rows of its own features."""

    indptr: np.ndarray
    slots: np.ndarray
    values: np.ndarray
    n_slots: int

    def __post_init__(self) -> None:
        self.matrix = sp.csr_matrix(
            (self.values, self.slots, self.indptr), shape=(len(self.indptr) - 1, self.n_slots)
        )

    @classmethod
    def build(
        cls, rows: list[tuple[np.ndarray, np.ndarray]], n_features: int, first_slot: int = 0
    ) -> _Postings:
        """Posting lists of rows, the first being slot first_slot."""
        lengths = [len(i) for i, _ in rows]
        features = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int32)
        values = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
        slots = np.repeat(np.arange(first_slot, first_slot + len(rows), dtype=np.int32), lengths)
        order = np.argsort(features, kind="stable")
        indptr = np.zeros(n_features + 1, dtype=np.int64)
        np.cumsum(np.bincount(features, minlength=n_features), out=indptr[1:])
        return cls(indptr, slots[order], values[order], first_slot + len(rows))

    def merged(self, later: _Postings) -> _Postings:
        """These posting lists followed, feature by feature, by those of later slots."""
        mine, theirs = np.diff(self.indptr), np.diff(later.indptr)
        size = len(self.slots) + len(later.slots)
        # A feature's own postings move down by the later postings of the features before
        # it; the later ones land right after the feature's own.
        to_mine = np.arange(len(self.slots)) + np.repeat(later.indptr[:-1], mine)
        to_theirs = np.arange(len(later.slots)) + np.repeat(self.indptr[1:], theirs)
        slots = np.empty(size, dtype=np.int32)
        values = np.empty(size, dtype=np.float32)
        slots[to_mine], slots[to_theirs] = self.slots, later.slots
        values[to_mine], values[to_theirs] = self.values, later.values
        return _Postings(self.indptr + later.indptr, slots, values, later.n_slots)

    def dot(self, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The query's dot product with every slot."""
        return self.matrix[index].T @ values

    def nbytes(self) -> int:
        return self.indptr.nbytes + self.slots.nbytes + self.values.nbytes


class _Tail:
    """The slots added since the posting lists were built, scored row by row (removed ones
    too: the caller leaves those out)."""

    def __init__(self, dense: np.ndarray):
        self.dense = dense  # the query spread over all features; all zero between queries
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []
        self._joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def append(self, row: tuple[np.ndarray, np.ndarray]) -> None:
        self.rows.append(row)
        self._joined = None

    def dot(self, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        if self._joined is None:  # once per change, not per query
            lengths = np.array([len(i) for i, _ in self.rows], dtype=np.int64)
            self._joined = (
                np.cumsum(lengths) - lengths,
                np.concatenate([i for i, _ in self.rows]),
                np.concatenate([v for _, v in self.rows]),
            )
        starts, features, row_values = self._joined
        if not len(features):
            return np.zeros(len(starts), dtype=np.float32)
        self.dense[index] = values
        products = self.dense[features] * row_values
        self.dense[index] = 0.0
        # reduceat gives a lone element for an empty row (a text without known words): 0.
        sums = np.add.reduceat(products, np.minimum(starts, len(products) - 1))
        sums[np.diff(np.append(starts, len(products))) == 0] = 0.0
        return sums
