"""Duplicate detector (classifier/similar.py) on the real messages in ../shared/data.

    python bench/duplicate_bench.py [--model PATH] [--no-speed] [--no-views]
                                    [--show KIND …] [--sample N] [--seed S]

The raw messages (three files, 8,458 messages with title, text and time; the same message is
sometimes in two files, reposted or edited) are paired and labelled by rules that do not use
the detector's vectors: how many of their rare character 4-grams (in ≤ RARE_SHINGLE_DF
messages) they share, over the smaller message's (the overlap), and how alike their titles
are (title similarity, see title_similarity):

- copy: the same characters; near copy: overlap ≥ 0.6; rewrite: overlap ≥ 0.25 and title
  similarity ≥ 0.5; retold: overlap ≥ 0.1 and title similarity ≥ 0.8: positives;
- grey (left out of precision and recall): any other pair with overlap ≥ 0.1 or title
  similarity ≥ 0.5;
- every other pair: negative. Hard negatives: negatives with the same suggested department,
  the same county (A3区, K9县, …) and a rare word (in ≤ RARE_WORD_DF messages) in common:
  the same kind of problem at the same place, another complaint.

The detector's score of a pair is the cosine of DuplicateFinder.vector, of the whole messages
and of the messages cut to their first 150, 80 and 50 characters (a report in the bot is a
line or two: the seed corpus's median is 44 characters, these messages' 224). Two settings:
- text only: every pair (place unknown: an open case anywhere may be the earlier report);
- same place: pairs that name the same county first, a stand-in for one grid (the messages
  have no coordinates or grid). A located message has 135 others in its county on average,
  the order of a grid's open cases (10,000 in 40 grids: 250); a grid's neighbours share more
  place names, hence the hard negatives.
For thresholds 0.30–0.70: precision, recall, F1, the hard negatives' false positive rate.
Chosen per setting: the lowest threshold from which precision stays ≥ TARGET_PRECISION at
every length (the strictest length decides). Also: recall per tier; which features separate
the pairs best (views of the model, --no-views skips it); how far apart in time the two
messages of a positive pair are (window_days); detection time against 10,000 open cases (the
real messages plus spliced halves of two, 40 grids, half with coordinates, churn: a case
opens and one closes before each query): p50/p99 of candidates() with the message already
cut into words (the bot cuts it once for the classifier) and from raw text, wall and CPU
time, memory of the index (--no-speed skips it).

--show KIND prints a random sample of pairs to read and check the labels: copy, near_copy,
rewrite, retold, grey, hard, flagged (negatives at or above the text-only threshold), missed
(positives below it); nothing is written. Otherwise prints the tables and writes
bench/results/duplicates.json. Skips when the data is missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from classifier import build_default_model, load_model
from classifier import text as textmod
from classifier.metrics import percentile_ms
from classifier.similar import DuplicateFinder, DuplicateRules
from whistle.config import load_settings

DATA = Path(os.environ.get("WHISTLE_SHARED_DATA", REPO.parent / "shared" / "data"))
FILES = (
    "teddy2020c_raw_train.csv",
    "teddy2020c_unlabeled_messages.csv",
    "teddy2020c_messages_with_replies.csv",
)
RESULTS = REPO / "bench" / "results"

RARE_SHINGLE_DF = 40  # a character 4-gram in at most this many messages is "rare"
MIN_SHINGLES = 5  # fewer rare 4-grams than this: the overlap says nothing
MIN_TITLE = 6  # shorter titles ("K市") are not compared
RARE_WORD_DF = 20
TIERS = ("copy", "near_copy", "rewrite", "retold")
GREY, NEGATIVE = -1, 0
TARGET_PRECISION = 0.9
THRESHOLDS = np.round(np.arange(0.30, 0.7001, 0.025), 3)
LOWEST_SCORE = 0.2  # pairs scoring less are never candidates
COUNTY = re.compile(r"[A-N]\d{1,2}[区县市]")
WINDOW_DAYS = (1, 7, 14, 30, 60, 90)
LENGTHS = (None, 150, 80, 50)  # whole messages, and cut to their first characters
OPEN_CASES = 10_000
QUERIES = 2_000


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    at: datetime | None

    @property
    def text(self) -> str:
        """As a resident would send it: the title (where there is one) on the first line."""
        return f"{self.title}\n{self.body}" if self.title else self.body


def load_messages() -> list[Message]:
    out = []
    for name in FILES:
        with (DATA / name).open(encoding="utf-8-sig", newline="") as fh:
            for rec in csv.DictReader(fh):
                title, body = (rec.get("title") or "").strip(), (rec.get("text") or "").strip()
                if title or body:
                    out.append(Message(title, body, _time(rec.get("time") or "")))
    return out


def _time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value.strip(), "%Y/%m/%d %H:%M:%S")
    except ValueError:
        return None


# ---- labels (no use of the detector's vectors) ------------------------------------------------


def normalised(text: str) -> str:
    return textmod.chars_of(textmod.prepare(text))


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def title_similarity(a: Message, b: Message, a_chars: str, b_chars: str) -> float:
    """Dice of the titles' character bigrams; when one message has no title (its title is
    run into its text), the share of the other's title bigrams found at its start; nan when
    there is no title of MIN_TITLE characters to compare."""
    ta, tb = normalised(a.title), normalised(b.title)
    if len(ta) >= MIN_TITLE and len(tb) >= MIN_TITLE:
        x, y = _bigrams(ta), _bigrams(tb)
        return 2 * len(x & y) / (len(x) + len(y))
    if ta and tb:
        return float("nan")
    title, other = (ta, b_chars) if ta else (tb, a_chars)
    if len(title) < MIN_TITLE:
        return float("nan")
    x = _bigrams(title)
    return len(x & _bigrams(other[: len(title) + 10])) / len(x)


@dataclass
class Pairs:
    """Labelled pairs (i < j) that share a rare 4-gram; all other pairs are negatives."""

    keys: np.ndarray  # i * n + j, sorted
    tier: np.ndarray  # 1..4 = TIERS, GREY or NEGATIVE
    overlap: np.ndarray
    title_sim: np.ndarray
    n: int

    def lookup(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        keys = i.astype(np.int64) * self.n + j
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, self.tier[pos], NEGATIVE)

    def count(self, tier: int) -> int:
        return int((self.tier == tier).sum())

    @property
    def n_positive(self) -> int:
        return int((self.tier > 0).sum())


def label_pairs(messages: list[Message]) -> Pairs:
    from sklearn.feature_extraction.text import CountVectorizer

    chars = [normalised(m.text) for m in messages]
    vec = CountVectorizer(
        analyzer="char", ngram_range=(4, 4), binary=True, max_df=RARE_SHINGLE_DF, dtype=np.float32
    )
    shingles = vec.fit_transform(chars).tocsr()
    sizes = np.asarray(shingles.sum(axis=1)).ravel()
    i, j, shared = _upper_pairs(shingles, 0.5)
    smaller = np.minimum(sizes[i], sizes[j])
    overlap = np.where(smaller >= MIN_SHINGLES, shared / np.maximum(smaller, 1), 0.0)
    title_sim = np.array(
        [
            title_similarity(messages[a], messages[b], chars[a], chars[b])
            for a, b in zip(i.tolist(), j.tolist())
        ]
    )
    same = np.array([chars[a] == chars[b] for a, b in zip(i.tolist(), j.tolist())])
    ts = np.nan_to_num(title_sim, nan=0.0)
    tier = np.full(len(i), NEGATIVE, dtype=np.int8)
    tier[(overlap >= 0.1) | (ts >= 0.5)] = GREY
    tier[(overlap >= 0.1) & (ts >= 0.8)] = 4
    tier[(overlap >= 0.25) & (ts >= 0.5)] = 3
    tier[overlap >= 0.6] = 2
    tier[same] = 1
    keys = i.astype(np.int64) * len(messages) + j
    order = np.argsort(keys)
    return Pairs(keys[order], tier[order], overlap[order], title_sim[order], len(messages))


def _upper_pairs(matrix: sp.csr_matrix, lowest: float, chunk: int = 1000):
    """(i, j, value) of matrix @ matrix.T with i < j and value ≥ lowest, by chunks of rows."""
    rows, cols, values = [], [], []
    t = matrix.T.tocsc()
    for start in range(0, matrix.shape[0], chunk):
        block = (matrix[start : start + chunk] @ t).tocoo()
        r = block.row + start
        keep = (r < block.col) & (block.data >= lowest)
        rows.append(r[keep])
        cols.append(block.col[keep])
        values.append(block.data[keep])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def hard_negatives(analyzed, departments, counties, pairs: Pairs) -> tuple:
    """(i, j) of negatives with the same department, the same county and a rare word."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(
        analyzer=lambda a: [w for w in a.words if len(w) >= 2],
        binary=True,
        max_df=RARE_WORD_DF,
        dtype=np.float32,
    )
    words = vec.fit_transform(analyzed).tocsr()
    i, j, _ = _upper_pairs(words, 1.0)
    keep = (
        (departments[i] == departments[j])
        & (counties[i] == counties[j])
        & (counties[i] != "")
        & (pairs.lookup(i, j) == NEGATIVE)
    )
    return i[keep], j[keep]


# ---- scores and metrics --------------------------------------------------------------------


def vectors(finder: DuplicateFinder, analyzed) -> sp.csr_matrix:
    rows = [finder.vector(a) for a in analyzed]
    indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in rows])])
    return sp.csr_matrix(
        (np.concatenate([v for _, v in rows]), np.concatenate([i for i, _ in rows]), indptr),
        shape=(len(rows), finder.n_features),
    )


def view_variants(model, finder: DuplicateFinder, analyzed) -> dict[str, sp.csr_matrix]:
    """Message vectors from other choices of the model's views, each row l2-normalised; the
    last is the finder's own."""
    rows = [model.vectors(a) for a in analyzed]
    index = [np.concatenate([i for i, _ in r]) for r in rows]
    values = [np.concatenate([v for _, v in r]) for r in rows]
    union = sp.csr_matrix(
        (
            np.concatenate(values),
            np.concatenate(index),
            np.concatenate([[0], np.cumsum([len(i) for i in index])]),
        ),
        shape=(len(rows), finder.n_features),
    )
    n_word, n_char = len(model.word.vocab), len(model.char.vocab)
    column = np.arange(finder.n_features)
    word, lead = column < n_word, column >= n_word + n_char
    char = ~word & ~lead
    single = np.zeros(finder.n_features, dtype=bool)
    single[n_word : n_word + n_char] = model.char.vocab <= textmod.ngram_key("\U0010ffff")
    masks = {
        "words": word,
        "characters (1-2)": char,
        "words + characters": word | char,
        "words + characters + lead (all)": word | char | lead,
        "all but single characters": ~single,
        "… and without the lead": ~single & ~lead,
    }
    out = {name: _rows_normalised(_columns(union, mask)) for name, mask in masks.items()}
    out["… and without common features (used)"] = vectors(finder, analyzed)
    return out


def _columns(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    matrix = matrix.copy()
    matrix.data[~keep[matrix.indices]] = 0
    matrix.eliminate_zeros()
    return matrix


def _rows_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.diags(1 / np.where(norms > 0, norms, 1)) @ matrix


def ranking(matrix: sp.csr_matrix, pairs: Pairs) -> dict:
    """Every pair ranked by score (text only, grey left out): average precision, and the best
    recall at precision ≥ TARGET_PRECISION with its threshold."""
    i, j, scores = _upper_pairs(matrix.astype(np.float32).tocsr(), LOWEST_SCORE)
    labels = pairs.lookup(i, j)
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    kept = labels != GREY
    labels, scores = labels[kept], scores[kept]
    hits = np.cumsum(labels > 0)
    precision = hits / np.arange(1, len(labels) + 1)
    recall = hits / pairs.n_positive
    good = np.flatnonzero(precision >= TARGET_PRECISION)
    best = good[np.argmax(recall[good])] if len(good) else None
    return {
        "average_precision": float(precision[labels > 0].sum() / pairs.n_positive),
        "recall_at_target": float(recall[best]) if best is not None else 0.0,
        "its_threshold": float(scores[best]) if best is not None else None,
        "features_per_message": float(matrix.getnnz() / matrix.shape[0]),
    }


def sweep(scores: np.ndarray, labels: np.ndarray, n_positive: int) -> list[dict]:
    """Precision, recall, F1 at each threshold (grey pairs left out)."""
    out = []
    for t in THRESHOLDS:
        flagged = scores >= t
        tp = int((flagged & (labels > 0)).sum())
        fp = int((flagged & (labels == NEGATIVE)).sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / n_positive if n_positive else 0.0
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        out.append(
            {
                "threshold": float(t),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "true_positives": tp,
                "false_positives": fp,
                "grey_flagged": int((flagged & (labels == GREY)).sum()),
            }
        )
    return out


def chosen_threshold(rows: list[dict]) -> float:
    """The lowest threshold from which precision stays ≥ TARGET_PRECISION."""
    best = rows[-1]["threshold"]
    for row in reversed(rows):
        if row["precision"] < TARGET_PRECISION:
            break
        best = row["threshold"]
    return best


def tier_recall(tiers: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Share of each tier's positive pairs (their tiers and scores) scoring ≥ threshold."""
    return {
        name: float((scores[tiers == k] >= threshold).mean()) if (tiers == k).any() else None
        for k, name in enumerate(TIERS, start=1)
    }


def window_shares(messages: list[Message], pairs: Pairs) -> dict:
    """Share of the dated positive pairs whose two messages are at most d days apart."""
    n = pairs.n
    gaps = []
    for key in pairs.keys[pairs.tier > 0].tolist():
        a, b = messages[key // n].at, messages[key % n].at
        if a and b:
            gaps.append(abs((a - b).total_seconds()) / 86400)
    gaps = np.array(gaps)
    return {
        "dated_pairs": len(gaps),
        **{f"within_{d}_days": float((gaps <= d).mean()) for d in WINDOW_DAYS},
    }


# ---- detection time ------------------------------------------------------------------------


class Timer:
    """Wall and CPU (this thread's) seconds of each timed call: on a shared machine the wall
    time's tail is mostly other processes holding the core."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, fn, *args):
        wall, cpu = time.perf_counter(), time.thread_time()
        out = fn(*args)
        self.cpu.append(time.thread_time() - cpu)
        self.wall.append(time.perf_counter() - wall)
        return out

    def summary(self, name: str) -> dict:
        return {
            f"{name}_ms_p50": percentile_ms(self.wall, 50),
            f"{name}_ms_p99": percentile_ms(self.wall, 99),
            f"{name}_cpu_ms_p50": percentile_ms(self.cpu, 50),
            f"{name}_cpu_ms_p99": percentile_ms(self.cpu, 99),
        }


def time_detection(
    model, messages: list[Message], analyzed, rules: DuplicateRules, seed: int
) -> dict:
    """10,000 open cases from real texts; queries with churn (one case opens and one closes
    before each query)."""
    rng = np.random.default_rng(seed)
    texts = [m.text for m in messages]
    spliced = []
    for _ in range(max(0, OPEN_CASES - len(texts))):
        a, b = rng.choice(len(texts), 2, replace=False)
        spliced.append(texts[a][: len(texts[a]) // 2] + texts[b][len(texts[b]) // 2 :])
    pool = texts + spliced
    pool_an = list(analyzed) + textmod.analyze_many(spliced)
    start = datetime(2024, 1, 1)
    grids = [f"WC-G{g:02d}" for g in range(40)]
    centres = {g: (28.30 + 0.02 * (k // 8), 112.80 + 0.02 * (k % 8)) for k, g in enumerate(grids)}

    def case(case_id: int, k: int) -> tuple:
        grid = grids[rng.integers(len(grids))]
        lat = lon = None
        if rng.random() < 0.5:
            lat, lon = (c + rng.normal(0, 0.003) for c in centres[grid])
        at = start + timedelta(days=float(rng.uniform(0, rules.window_days)))
        return case_id, pool_an[k], at, grid, lat, lon

    tracemalloc.start()
    began = time.perf_counter()
    finder = DuplicateFinder.from_cases(model, rules, (case(c, c) for c in range(OPEN_CASES)))
    build = time.perf_counter() - began
    traced = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()

    search, end_to_end, adds, removes = Timer(), Timer(), Timer(), Timer()
    open_ids = list(range(OPEN_CASES))
    queries = rng.choice(len(pool), QUERIES)
    textmod.analyze(texts[0])  # jieba's dictionary is loaded before timing
    for n, k in enumerate(queries.tolist()):
        new_id = OPEN_CASES + n
        adds(finder.add, *case(new_id, int(rng.integers(len(pool)))))
        gone = open_ids.pop(int(rng.integers(len(open_ids))))
        open_ids.append(new_id)
        removes(finder.remove, gone)
        _, _, at, grid, lat, lon = case(-1, k)
        search(finder.candidates, pool_an[k], at, grid, lat, lon)
        if n % 4 == 0:  # cutting into words is the same work as the classifier's
            end_to_end(finder.candidates, pool[k], at, grid, lat, lon)
    return {
        "open_cases": len(finder),
        "queries": len(search.wall),
        **search.summary("search"),
        **end_to_end.summary("with_jieba"),
        **adds.summary("add"),
        **removes.summary("remove"),
        "build_seconds": build,
        "index_mb": finder.nbytes() / 2**20,
        "index_traced_mb": traced,
        "features_per_case": float(np.mean([len(finder.vector(a)[0]) for a in pool_an[:2000]])),
    }


# ---- main ------------------------------------------------------------------------------------


@dataclass
class Scored:
    """Every pair's score (≥ LOWEST_SCORE) for messages cut to one length, and the metrics."""

    i: np.ndarray
    j: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    text_only: list[dict]
    same_county: list[dict]
    pos_scores: np.ndarray
    hard_scores: np.ndarray


def score_pairs(finder, analyzed, pairs: Pairs, counties, positives, hard) -> Scored:
    matrix = vectors(finder, analyzed)
    i, j, scores = _upper_pairs(matrix, LOWEST_SCORE)
    labels = pairs.lookup(i, j)
    same = (counties[i] == counties[j]) & (counties[i] != "")
    pos_i, pos_j, pos_county = positives
    pos_scores = _pair_scores(matrix, pos_i, pos_j)
    hard_scores = _pair_scores(matrix, *hard)
    text_rows = sweep(scores, labels, len(pos_i))
    county_rows = sweep(scores[same], labels[same], int(pos_county.sum()))
    for row in text_rows:
        row["hard_negative_fpr"] = float((hard_scores >= row["threshold"]).mean())
    return Scored(i, j, scores, labels, text_rows, county_rows, pos_scores, hard_scores)


def _pair_scores(matrix: sp.csr_matrix, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.asarray(matrix[i].multiply(matrix[j]).sum(axis=1)).ravel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        help="model file (default: the default model, trained afresh from the seed corpus)",
    )
    parser.add_argument(
        "--show",
        nargs="+",
        choices=[*TIERS, "grey", "hard", "flagged", "missed"],
        help="print a random sample of these pairs to read (nothing written)",
    )
    parser.add_argument("--sample", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-speed", action="store_true", help="skip the detection timing")
    parser.add_argument(
        "--no-views",
        action="store_true",
        help="skip the comparison of views (which features make the vector)",
    )
    args = parser.parse_args()
    missing = [name for name in FILES if not (DATA / name).exists()]
    if missing:
        print(f"跳过: 找不到 {DATA} 中的真实留言数据（需要 {', '.join(missing)}）")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or default_model(Path(tmp))
        model = load_model(model_path)
    textmod.add_words(model.userdict_words)
    messages = load_messages()
    say(f"{len(messages)} messages; labelling pairs …")
    pairs = label_pairs(messages)
    say("cutting into words …")
    analyzed = textmod.analyze_many([m.text for m in messages], n_jobs=2)
    counties = np.array([(COUNTY.findall(m.text) or [""])[0] for m in messages])
    departments = np.array(
        [model.labels[int(np.argmax(model.probabilities(a)[0]))] for a in analyzed]
    )
    hard = hard_negatives(analyzed, departments, counties, pairs)
    positive = pairs.tier > 0
    pos_i, pos_j = pairs.keys[positive] // pairs.n, pairs.keys[positive] % pairs.n
    pos_tiers = pairs.tier[positive]
    pos_county = (counties[pos_i] == counties[pos_j]) & (counties[pos_i] != "")
    finder = DuplicateFinder(model)

    scored = {}
    for length in LENGTHS:
        say(f"scoring every pair, messages {'whole' if length is None else f'cut to {length}'} …")
        cut = (
            analyzed
            if length is None
            else textmod.analyze_many([m.text[:length] for m in messages], n_jobs=2)
        )
        scored[length] = score_pairs(finder, cut, pairs, counties, (pos_i, pos_j, pos_county), hard)
    if not args.no_views and not args.show:
        say("comparing choices of views …")
        views = {}
        for length in (None, 50):
            cut = (
                analyzed
                if length is None
                else textmod.analyze_many([m.text[:length] for m in messages], n_jobs=2)
            )
            for name, matrix in view_variants(model, finder, cut).items():
                views.setdefault(name, {})[_length_name(length)] = ranking(matrix, pairs)
    # A threshold must keep its precision for short reports too (a report in the bot is
    # usually a line or two): the strictest length decides.
    county_t = max(chosen_threshold(s.same_county) for s in scored.values())
    text_t = max(chosen_threshold(s.text_only) for s in scored.values())

    for kind in args.show or ():
        whole = scored[None]
        show(kind, args, messages, pairs, whole, hard, text_t)
    if args.show:
        return 0

    located = counties[counties != ""]
    county_sizes = np.unique(located, return_counts=True)[1]
    results = {
        "model_version": model.model_version,
        "model_examples": model.meta.get("n_examples"),
        "messages": len(messages),
        "message_chars_p50": float(np.median([len(m.text) for m in messages])),
        "pairs": {name: pairs.count(k) for k, name in enumerate(TIERS, start=1)}
        | {
            "grey": pairs.count(GREY),
            "hard_negatives": len(hard[0]),
            "same_county_positives": int(pos_county.sum()),
        },
        # How many others a located message has in its county: the candidates a query
        # competes with in the same-place setting (a grid's open cases in the product).
        "same_county_others_mean": float(
            (county_sizes * (county_sizes - 1)).sum() / max(1, len(located))
        ),
        "target_precision": TARGET_PRECISION,
        "chosen": {"threshold": county_t, "text_only_threshold": text_t},
        "lengths": {
            _length_name(length): {
                "chosen": {
                    "threshold": chosen_threshold(s.same_county),
                    "text_only_threshold": chosen_threshold(s.text_only),
                },
                "tier_recall_same_place": tier_recall(
                    pos_tiers[pos_county], s.pos_scores[pos_county], county_t
                ),
                "tier_recall_text_only": tier_recall(pos_tiers, s.pos_scores, text_t),
                "same_county": s.same_county,
                "text_only": s.text_only,
            }
            for length, s in scored.items()
        },
        "window": window_shares(messages, pairs),
    }
    if not args.no_views:
        results["views"] = views
    if not args.no_speed:
        say("detection time against 10,000 open cases …")
        rules = DuplicateRules(threshold=county_t, text_only_threshold=max(county_t, text_t))
        results["speed"] = time_detection(model, messages, analyzed, rules, args.seed)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "duplicates.json").write_text(json.dumps(results, ensure_ascii=False, indent=2))
    say(f"written {RESULTS / 'duplicates.json'}")
    return 0


def _length_name(length: int | None) -> str:
    return "whole" if length is None else f"first_{length}"


def default_model(folder: Path) -> Path:
    say("training the default model (seed corpus) …")
    base = load_settings()
    settings = replace(
        base, classifier=replace(base.classifier, model_path=str(folder / "model.npz"))
    )
    return build_default_model(settings)


def show(kind, args, messages, pairs, whole: Scored, hard, text_t) -> None:
    """A random sample of one kind of pair (scores of the whole messages), to read."""
    rng = np.random.default_rng(args.seed)
    score_of = dict(zip(zip(whole.i.tolist(), whole.j.tolist()), whole.scores.tolist()))
    if kind == "hard":
        chosen = list(zip(hard[0].tolist(), hard[1].tolist()))
    elif kind == "flagged":
        keep = (whole.labels == NEGATIVE) & (whole.scores >= text_t)
        chosen = list(zip(whole.i[keep].tolist(), whole.j[keep].tolist()))
    else:
        tier = {"grey": GREY, "missed": None} | {n: k for k, n in enumerate(TIERS, start=1)}
        wanted = tier[kind]
        keys = pairs.keys[pairs.tier > 0 if wanted is None else pairs.tier == wanted]
        chosen = [(k // pairs.n, k % pairs.n) for k in keys.tolist()]
        if wanted is None:
            chosen = [p for p in chosen if score_of.get(p, 0.0) < text_t]
    print(f"##### {kind}: {len(chosen)} pairs")
    for n in rng.permutation(len(chosen))[: args.sample].tolist():
        a, b = chosen[n]
        score = score_of.get((a, b))
        print(f"=== score {'< ' + str(LOWEST_SCORE) if score is None else f'{score:.3f}'}")
        for m in (messages[a], messages[b]):
            print(f"  [{m.at or '无时间'}] {m.title} | {m.body[:160]}".replace("\n", " "))


def print_table(r: dict) -> None:
    print(
        f"{r['messages']} messages (median {r['message_chars_p50']:.0f} characters); "
        f"pairs: {r['pairs']}; others in a message's county: "
        f"{r['same_county_others_mean']:.0f} on average"
    )
    names = list(r["lengths"])
    for setting, key in (
        ("same place (same county)", "same_county"),
        ("text only (every pair)", "text_only"),
    ):
        print(f"\n{setting}: precision / recall, messages whole or cut to their first characters")
        print(
            f"{'t':>6} "
            + "".join(f"{name:>15}" for name in names)
            + ("   hard-neg FPR whole / first_50" if key == "text_only" else "")
        )
        rows = zip(*(r["lengths"][name][key] for name in names))
        for row in rows:
            cells = "".join(
                f"{x['precision']:>8.3f}/{x['recall']:.3f}"[-15:].rjust(15) for x in row
            )
            extra = (
                f"   {row[0]['hard_negative_fpr']:.4f} / {row[-1]['hard_negative_fpr']:.4f}"
                if key == "text_only"
                else ""
            )
            print(f"{row[0]['threshold']:>6.3f} {cells}{extra}")
        print(
            "chosen (lowest with precision ≥ "
            f"{r['target_precision']} from there up): "
            + ", ".join(f"{name} {r['lengths'][name]['chosen'][_CHOSEN[key]]}" for name in names)
        )
    c = r["chosen"]
    print(
        f"\n→ threshold = {c['threshold']}, text_only_threshold = "
        f"{c['text_only_threshold']} (the strictest length)"
    )
    for name in names:
        x = r["lengths"][name]
        print(
            f"recall per tier, {name}: same place {_rounded(x['tier_recall_same_place'])}; "
            f"text only {_rounded(x['tier_recall_text_only'])}"
        )
    print(f"positive pairs within d days: {_rounded(r['window'])}")
    if "views" in r:
        print(
            "\nwhich features: text only, every pair; average precision, recall at precision "
            f"≥ {r['target_precision']} (its threshold), whole / first 50 characters"
        )
        for name, m in r["views"].items():
            w, f = m["whole"], m["first_50"]
            print(
                f"  {name:<40} AP {w['average_precision']:.3f} / {f['average_precision']:.3f}"
                f"   R {w['recall_at_target']:.3f} ({w['its_threshold'] or 0:.2f}) / "
                f"{f['recall_at_target']:.3f} ({f['its_threshold'] or 0:.2f})"
                f"   {w['features_per_message']:.0f} features"
            )
    if "speed" in r:
        s = r["speed"]
        print(
            f"\n{s['open_cases']} open cases, {s['queries']} queries with churn; ms p50 / p99, "
            "wall (CPU of the thread)"
        )
        for name, what in (
            ("search", "candidates(), words cut (target p99 ≤ 5)"),
            ("with_jieba", "candidates(), raw text"),
            ("add", "add()"),
            ("remove", "remove()"),
        ):
            print(
                f"  {what:<42} {s[name + '_ms_p50']:7.3f} / {s[name + '_ms_p99']:7.3f}"
                f"   ({s[name + '_cpu_ms_p50']:.3f} / {s[name + '_cpu_ms_p99']:.3f})"
            )
        print(
            f"  built in {s['build_seconds']:.1f} s; index {s['index_mb']:.1f} MB of arrays, "
            f"{s['index_traced_mb']:.1f} MB allocated in all; "
            f"{s['features_per_case']:.0f} features per case"
        )


_CHOSEN = {"same_county": "threshold", "text_only": "text_only_threshold"}


def _rounded(d: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


if __name__ == "__main__":
    sys.exit(main())
