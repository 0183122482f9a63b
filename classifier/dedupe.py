"""Near-duplicate messages (reposts, the same message cut into words) grouped together, so
cross-validation never tests a message whose copy it trained on."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import CountVectorizer

from classifier.text import Analyzed

# Two messages are "the same" when this share of the smaller one's distinctive words (those
# in at most RARE_SHARE of all messages, or RARE_MIN) is also in the other one ...
SAME_SHARE = 0.8
RARE_SHARE = 0.01
RARE_MIN = 20
# ... and it has at least this many distinctive words; shorter ones only match exactly.
MIN_WORDS = 5
_CHUNK = 2000


def _distinct_words(doc: Analyzed) -> tuple[str, ...]:
    return doc.words


def near_duplicate_groups(
    docs: list[Analyzed],
    same_pairs: Iterable[tuple[int, int]] = (),
    near_pair: Callable[[int, int], bool] | None = None,
) -> np.ndarray:
    """A group number per document: exact copies, near copies and `same_pairs` (known to be
    one message, e.g. by id) share a group. `near_pair(i, j)` may restrict which near copies
    count (default: all)."""
    n = len(docs)
    rows, cols = [], []
    first_of: dict[str, int] = {}
    for i, doc in enumerate(docs):  # exact copies
        j = first_of.setdefault(doc.chars, i)
        if j != i:
            rows.append(i)
            cols.append(j)
    for i, j in same_pairs:
        rows.append(i)
        cols.append(j)
    for i, j in _near_copies(docs):
        if near_pair is not None and not near_pair(i, j):
            continue
        rows.append(i)
        cols.append(j)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _near_copies(docs: list[Analyzed]) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, sharing ≥ SAME_SHARE of the smaller one's distinctive words."""
    if len(docs) < 2:
        return []
    max_df = max(RARE_MIN, int(RARE_SHARE * len(docs)))
    vec = CountVectorizer(analyzer=_distinct_words, binary=True, max_df=max_df, dtype=np.float32)
    try:
        words = vec.fit_transform(docs).tocsr()
    except ValueError:  # no word is distinctive (tiny or empty data)
        return []
    sizes = np.asarray(words.sum(axis=1)).ravel()
    pairs = []
    for start in range(0, len(docs), _CHUNK):
        shared = (words[start : start + _CHUNK] @ words.T).tocoo()
        i, j = shared.row + start, shared.col
        smaller = np.minimum(sizes[i], sizes[j])
        hit = (i < j) & (smaller >= MIN_WORDS) & (shared.data >= SAME_SHARE * smaller)
        pairs.extend(zip(i[hit].tolist(), j[hit].tolist()))
    return pairs
