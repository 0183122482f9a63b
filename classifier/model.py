"""The trained model as plain arrays: load, check, save, predict — numpy and jieba only.

The file is a NumPy .npz archive read with allow_pickle=False, so loading runs no code.
It holds TF-IDF vocabularies and weights, the linear model's coefficients, the training
messages' vectors for a nearest-neighbour vote, the calibration (a temperature, then a scaling
of the top label's log-odds), the label set and metadata (versions, data fingerprint, model id).
Keeping scikit-learn out of this module keeps the bot's cold start and per-message latency low.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from classifier import text as textmod

FORMAT = "whistle-classifier"
# 2: character n-grams stored as int64 keys; 3: lead view, neighbours; 4: top-label scaling.
FORMAT_VERSION = 4
# Older files load without the parts they lack: a version 3 file keeps its temperature alone
# (probabilities too sure of themselves: retrain it), a version 2 file is a linear model.
READABLE_VERSIONS = (2, 3, 4)
NO_TOP_LABEL_SCALING = (1.0, 0.0)
# Libraries whose version must match between training and loading: jieba cuts the words,
# scikit-learn fitted the weights, numpy stores them.
CHECKED_LIBRARIES = ("jieba", "scikit-learn", "numpy")


class ModelError(Exception):
    """A model file that is missing, damaged, or was made by other library versions."""


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a model depends on (read without importing them)."""
    found = {}
    for name in CHECKED_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


@dataclass
class Block:
    """One TF-IDF view: sorted vocabulary, idf weights and the block's weight in the union."""

    vocab: np.ndarray  # sorted: unicode words, or int64 character n-gram keys
    idf: np.ndarray  # float32, one per vocabulary entry
    weight: float

    def vector(self, features: tuple[str, ...] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and TF-IDF values (sublinear tf, l2-normalised) of known features."""
        if len(features) == 0 or len(self.vocab) == 0:
            return _EMPTY_INDEX, _EMPTY_VALUES
        # Same dtype as the vocabulary (else numpy copies it on every call); sorted distinct
        # queries make the binary searches cheaper.
        query, counts = np.unique(np.asarray(features, dtype=self.vocab.dtype), return_counts=True)
        pos = np.searchsorted(self.vocab, query)
        pos[pos == len(self.vocab)] = 0
        known = self.vocab[pos] == query
        if not known.any():
            return _EMPTY_INDEX, _EMPTY_VALUES
        index, counts = pos[known], counts[known]
        values = (1.0 + np.log(counts)) * self.idf[index]
        values *= self.weight / np.sqrt(np.dot(values, values))
        return index, values


def empty_block(dtype) -> Block:
    """A view the model does not use (a version 2 file, or a weight of 0 in training)."""
    return Block(vocab=np.zeros(0, dtype=dtype), idf=np.zeros(0, dtype=np.float32), weight=0.0)


@dataclass
class Memory:
    """The training messages' word vectors, kept for a nearest-neighbour vote.

    Stored by word (CSC): the messages holding word w are docs[indptr[w]:indptr[w+1]], with
    values l2-normalised per message over the words kept (the commonest are left out: they
    say little about a message's topic and make the lookup slow)."""

    indptr: np.ndarray  # int64, one more than the words of the vocabulary
    docs: np.ndarray  # int32 message number per stored value
    values: np.ndarray  # float16
    doc_labels: np.ndarray  # int32 label index per message
    k: int  # neighbours that vote
    weight: float  # the vote's weight next to the linear scores

    def __post_init__(self) -> None:
        self.kept = np.diff(self.indptr) > 0
        self._values32 = self.values.astype(np.float32)  # float16 is slow to compute with

    def vote(self, index: np.ndarray, values: np.ndarray, n_labels: int) -> np.ndarray:
        """weight × (sum of cosine similarities of the k nearest messages, per label) / k."""
        kept = self.kept[index]
        index, values = index[kept], values[kept]
        if len(index) == 0:
            return np.zeros(n_labels)
        values = values / np.sqrt(np.dot(values, values))
        starts, stops = self.indptr[index], self.indptr[index + 1]
        lengths = stops - starts
        # Positions of all postings of the query's features, without a Python loop.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(int(lengths.sum()))
        similarity = np.bincount(
            self.docs[positions],
            weights=self._values32[positions] * np.repeat(values, lengths),
            minlength=len(self.doc_labels),
        )
        k = min(self.k, len(similarity))
        nearest = np.argpartition(-similarity, k - 1)[:k]
        votes = np.bincount(
            self.doc_labels[nearest], weights=similarity[nearest], minlength=n_labels
        )
        return self.weight * votes / self.k


def calibrated(
    scores: np.ndarray, beta: float, top_label: tuple[float, float] = NO_TOP_LABEL_SCALING
) -> np.ndarray:
    """Probabilities from decision values (one row per message, or one message): softmax of
    beta × scores, then the top label's log-odds t become a·t + b, the other labels sharing the
    rest in their proportions. Always above the runner-up, so the ranking (and the label
    suggested) is the scores'. With (a, b) = (1, 0) this is the softmax."""
    z = beta * np.atleast_2d(np.asarray(scores, dtype=np.float64))
    rows = np.arange(len(z))
    top = z.argmax(axis=1)
    shares, log_odds = _shares_and_log_odds(z, rows, top)
    a, b = top_label
    with np.errstate(divide="ignore", over="ignore"):
        # The top label ties with the runner-up at log-odds log(runner-up's share): a hair
        # above that is the floor that keeps the top label first.
        floor = np.log(shares.max(axis=1)) + _ABOVE
        odds = np.maximum(a * log_odds + b, floor)
        top_p, rest_p = 1.0 / (1.0 + np.exp(-odds)), 1.0 / (1.0 + np.exp(odds))
    out = shares * rest_p[:, None]
    out[rows, top] = top_p
    return out if np.ndim(scores) == 2 else out[0]


def top_log_odds(z: np.ndarray) -> np.ndarray:
    """log(p_top / (1 − p_top)) of softmax(z) per row, exact however sure the softmax is."""
    return _shares_and_log_odds(z, np.arange(len(z)), z.argmax(axis=1))[1]


def _shares_and_log_odds(z: np.ndarray, rows: np.ndarray, top: np.ndarray):
    """How the labels other than the top one share the rest between them (0 for the top),
    and the top label's log-odds; in logs, so nothing underflows however sure the top is."""
    gap = z - z[rows, top][:, None]  # ≤ 0
    gap[rows, top] = -np.inf
    nearest = gap.max(axis=1, keepdims=True)
    weights = np.exp(gap - nearest)
    total = weights.sum(axis=1, keepdims=True)
    return weights / total, -(nearest + np.log(total))[:, 0]


_ABOVE = 1e-6  # in log-odds: the top label stays this much (relatively) above the runner-up
BLOCKS = ("word", "char", "lead")  # the views, in the order of coef's rows
_EMPTY_INDEX = np.zeros(0, dtype=np.int64)
_EMPTY_VALUES = np.zeros(0, dtype=np.float64)


@dataclass
class LinearModel:
    """TF-IDF over jieba words, character n-grams and the n-grams of a message's first
    characters; a linear model plus a nearest-neighbour vote; calibrated probabilities."""

    labels: tuple[str, ...]
    word: Block
    char: Block
    char_range: tuple[int, int]
    coef: np.ndarray  # (n_word + n_char + n_lead, n_labels) float32
    intercept: np.ndarray  # (n_labels,)
    beta: float  # inverse temperature: softmax(beta * scores), then top_label (calibrated())
    meta: dict
    lead: Block = field(default_factory=lambda: empty_block(np.int64))  # n-gram keys
    lead_chars: int = 0  # the lead view's n-grams come from this many first characters
    memory: Memory | None = None
    top_label: tuple[float, float] = NO_TOP_LABEL_SCALING  # (a, b), see calibrated()

    @property
    def model_version(self) -> str:
        return str(self.meta.get("model_version", ""))

    @property
    def userdict_words(self) -> list[str]:
        return list(self.meta.get("userdict_words", []))

    def vectors(self, analyzed: textmod.Analyzed) -> list[tuple[np.ndarray, np.ndarray]]:
        """(row indices into coef, TF-IDF values) of each view: words, characters, lead."""
        keys = textmod.ngram_keys
        views = [
            self.word.vector(analyzed.words),
            self.char.vector(keys(analyzed.chars, *self.char_range)),
            self.lead.vector(keys(analyzed.chars[: self.lead_chars], *self.char_range)),
        ]
        out, offset = [], 0
        for (index, values), block in zip(views, (self.word, self.char, self.lead)):
            out.append((offset + index, values))
            offset += len(block.vocab)
        return out

    def scores(self, analyzed: textmod.Analyzed) -> tuple[np.ndarray, bool]:
        """Decision values for one analysed message, and whether any feature was known."""
        views = self.vectors(analyzed)
        index = np.concatenate([i for i, _ in views])
        if not len(index):
            return self.intercept.astype(np.float64), False
        out = self.intercept + np.concatenate([v for _, v in views]) @ self.coef[index]
        if self.memory is not None:
            out = out + self.memory.vote(*views[0], len(self.labels))  # by the word view
        return out, True

    def probabilities(self, analyzed: textmod.Analyzed) -> tuple[np.ndarray, bool]:
        """Calibrated class probabilities (in label order) and whether any feature was known."""
        scores, known = self.scores(analyzed)
        return calibrated(scores, self.beta, self.top_label), known

    # ---- persistence -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename), so a reader never sees half a model."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        memory = self.memory
        meta = dict(
            self.meta,
            labels=list(self.labels),
            char_range=list(self.char_range),
            block_weights={name: getattr(self, name).weight for name in BLOCKS},
            lead_chars=self.lead_chars,
            neighbours=None if memory is None else {"k": memory.k, "weight": memory.weight},
            beta=float(self.beta),
            top_label=[float(v) for v in self.top_label],
            format=FORMAT,
            format_version=FORMAT_VERSION,
        )
        arrays = {
            f"{name}_{part}": getattr(getattr(self, name), part)
            for name in BLOCKS
            for part in ("vocab", "idf")
        }
        if memory is not None:
            arrays |= {
                "memory_indptr": memory.indptr,
                "memory_docs": memory.docs,
                "memory_values": memory.values,
                "memory_labels": memory.doc_labels,
            }
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            meta=np.array(json.dumps(meta, ensure_ascii=False)),
            coef=self.coef,
            intercept=self.intercept,
            **arrays,
        )
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def load_model(path: str | os.PathLike) -> LinearModel:
    """Read and check a model file; ModelError (naming the file) if it can't be used."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"模型文件不存在: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"模型文件 {path} 无法读取（已损坏或不是 Whistle 模型）: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"模型文件 {path} 不是 Whistle 分类模型")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ModelError(
            f"模型文件 {path} 的格式版本为 {meta.get('format_version')}，"
            f"当前程序需要 {FORMAT_VERSION}；请重新训练"
        )
    _check_versions(path, meta)
    try:
        model = _build(meta, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"模型文件 {path} 内容不完整或已损坏: {exc}") from exc
    _check_labels(path, model)
    _check_shapes(path, model)
    _check_memory(path, model)
    return model


def _check_versions(path: Path, meta: dict) -> None:
    trained = meta.get("libraries") or {}
    installed = library_versions()
    differ = [
        f"{name} {trained.get(name, '未知')} → 当前 {installed[name]}"
        for name in CHECKED_LIBRARIES
        if trained.get(name) != installed[name]
    ]
    if differ:
        raise ModelError(
            f"模型文件 {path} 由不同版本的库训练（{'; '.join(differ)}），"
            "为避免结果不一致已拒绝加载；请用 `python train.py fit` 重新训练"
        )


def _build(meta: dict, arrays: dict[str, np.ndarray]) -> LinearModel:
    weights = meta["block_weights"]
    low, high = (int(v) for v in meta["char_range"])
    blocks = {}
    for name in BLOCKS:
        if f"{name}_vocab" not in arrays and meta["format_version"] == 2:
            blocks[name] = empty_block(np.int64)  # version 2: words and characters only
            continue
        vocab = arrays[f"{name}_vocab"]
        blocks[name] = Block(
            _wide_words(vocab) if name == "word" else vocab,
            arrays[f"{name}_idf"],
            float(weights[name]),
        )
    neighbours = meta.get("neighbours")
    memory = (
        None
        if not neighbours
        else Memory(
            indptr=arrays["memory_indptr"],
            docs=arrays["memory_docs"],
            values=arrays["memory_values"],
            doc_labels=arrays["memory_labels"],
            k=int(neighbours["k"]),
            weight=float(neighbours["weight"]),
        )
    )
    return LinearModel(
        labels=tuple(meta["labels"]),
        **blocks,
        char_range=(low, high),
        lead_chars=int(meta.get("lead_chars", 0)),
        coef=arrays["coef"],
        intercept=arrays["intercept"],
        beta=float(meta["beta"]),
        memory=memory,
        meta=meta,
        top_label=_top_label(meta),
    )


def _top_label(meta: dict) -> tuple[float, float]:
    if meta["format_version"] < 4:
        return NO_TOP_LABEL_SCALING
    a, b = (float(v) for v in meta["top_label"])
    return a, b


def _wide_words(vocab: np.ndarray) -> np.ndarray:
    """The word vocabulary as fixed-width strings every token fits in, so a query cast to its
    dtype is never truncated (a cut-off long word could match a short one)."""
    if vocab.dtype.kind != "U" or vocab.dtype.itemsize // 4 > textmod.MAX_TOKEN_CHARS:
        raise ValueError("词表格式不对")
    return vocab.astype(f"<U{textmod.MAX_TOKEN_CHARS}")


def _check_labels(path: Path, model: LinearModel) -> None:
    labels = model.labels
    problem = None
    if len(labels) < 2:
        problem = "少于两个标签"
    elif not all(isinstance(lab, str) and lab.strip() for lab in labels):
        problem = "含有空标签或非文本标签"
    elif len(set(labels)) != len(labels):
        problem = "标签重复"
    elif (
        model.coef.ndim != 2
        or model.coef.shape[1] != len(labels)
        or model.intercept.shape != (len(labels),)
    ):
        problem = "标签数与模型权重不一致"
    if problem:
        raise ModelError(f"模型文件 {path} 的标签集合损坏: {problem} ({list(labels)[:20]})")


def _check_shapes(path: Path, model: LinearModel) -> None:
    blocks = [getattr(model, name) for name in BLOCKS]
    ok = (
        model.word.vocab.dtype.kind == "U"
        and all(b.vocab.dtype == np.int64 for b in (model.char, model.lead))
        and all(b.vocab.ndim == 1 and b.idf.shape == b.vocab.shape for b in blocks)
        and model.coef.shape[0] == sum(len(b.vocab) for b in blocks)
        and model.lead_chars >= 0
        and model.coef.dtype.kind == "f"
        and model.intercept.dtype.kind == "f"
        and all(
            np.isfinite(a).all()
            for a in (model.coef, model.intercept, model.word.idf, model.char.idf)
        )
        and all(len(b.vocab) < 2 or bool(np.all(b.vocab[:-1] < b.vocab[1:])) for b in blocks)
        and 1 <= model.char_range[0] <= model.char_range[1] <= textmod.MAX_NGRAM
        and np.isfinite(model.beta)
        and model.beta > 0
        and all(np.isfinite(model.top_label))
        and model.top_label[0] > 0
    )
    if not ok:
        raise ModelError(f"模型文件 {path} 的权重、词表或校准参数损坏")


def _check_memory(path: Path, model: LinearModel) -> None:
    """The neighbour memory must index only the messages and labels it holds."""
    memory = model.memory
    if memory is None:
        return
    n_docs = len(memory.doc_labels)
    arrays = (memory.indptr, memory.docs, memory.values, memory.doc_labels)
    ok = (
        all(a.ndim == 1 for a in arrays)
        and memory.indptr.dtype == np.int64
        and memory.docs.dtype == np.int32
        and memory.values.dtype.kind == "f"
        and memory.doc_labels.dtype == np.int32
        and len(memory.indptr) == len(model.word.vocab) + 1
        and memory.indptr[0] == 0
        and bool(np.all(np.diff(memory.indptr) >= 0))
        and memory.indptr[-1] == len(memory.docs) == len(memory.values)
        and n_docs > 0
        and memory.k >= 1
        and np.isfinite(memory.weight)
        and memory.weight >= 0
        and (len(memory.docs) == 0 or 0 <= memory.docs.min() <= memory.docs.max() < n_docs)
        and 0 <= memory.doc_labels.min() <= memory.doc_labels.max() < len(model.labels)
        and bool(np.isfinite(memory.values).all())
    )
    if not ok:
        raise ModelError(f"模型文件 {path} 的近邻数据损坏")
