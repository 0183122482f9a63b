"""The trained model as plain arrays: load, check, save, predict — numpy and jieba only.

The file is a NumPy .npz archive read with allow_pickle=False, so loading runs no code.
It holds TF-IDF vocabularies and weights, the linear model's coefficients, a temperature for
calibrated probabilities, the label set and metadata (versions, data fingerprint, model id).
Keeping scikit-learn out of this module keeps the bot's cold start and per-message latency low.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from classifier import text as textmod

FORMAT = "whistle-classifier"
FORMAT_VERSION = 2  # 2: character n-grams stored as int64 keys
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
        query, counts = np.unique(np.asarray(features, dtype=self.vocab.dtype),
                                  return_counts=True)
        pos = np.searchsorted(self.vocab, query)
        pos[pos == len(self.vocab)] = 0
        known = self.vocab[pos] == query
        if not known.any():
            return _EMPTY_INDEX, _EMPTY_VALUES
        index, counts = pos[known], counts[known]
        values = (1.0 + np.log(counts)) * self.idf[index]
        values *= self.weight / np.sqrt(np.dot(values, values))
        return index, values


_EMPTY_INDEX = np.zeros(0, dtype=np.int64)
_EMPTY_VALUES = np.zeros(0, dtype=np.float64)


@dataclass
class LinearModel:
    """TF-IDF over jieba words and character n-grams, a linear model, temperature scaling."""

    labels: tuple[str, ...]
    word: Block
    char: Block
    char_range: tuple[int, int]
    coef: np.ndarray  # (n_word + n_char, n_labels) float32
    intercept: np.ndarray  # (n_labels,)
    beta: float  # inverse temperature: probabilities = softmax(beta * scores)
    meta: dict

    @property
    def model_version(self) -> str:
        return str(self.meta.get("model_version", ""))

    @property
    def userdict_words(self) -> list[str]:
        return list(self.meta.get("userdict_words", []))

    def scores(self, analyzed: textmod.Analyzed) -> tuple[np.ndarray, bool]:
        """Decision values for one analysed message, and whether any feature was known."""
        w_idx, w_val = self.word.vector(analyzed.words)
        c_idx, c_val = self.char.vector(textmod.ngram_keys(analyzed.chars, *self.char_range))
        out = self.intercept.astype(np.float64)
        if len(w_idx):
            out = out + w_val @ self.coef[w_idx]
        if len(c_idx):
            out = out + c_val @ self.coef[len(self.word.vocab) + c_idx]
        return out, bool(len(w_idx) or len(c_idx))

    def probabilities(self, analyzed: textmod.Analyzed) -> tuple[np.ndarray, bool]:
        """Calibrated class probabilities (in label order) and whether any feature was known."""
        scores, known = self.scores(analyzed)
        z = self.beta * scores
        z = np.exp(z - z.max())
        return z / z.sum(), known

    # ---- persistence -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename), so a reader never sees half a model."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, labels=list(self.labels), char_range=list(self.char_range),
                    block_weights={"word": self.word.weight, "char": self.char.weight},
                    beta=float(self.beta), format=FORMAT, format_version=FORMAT_VERSION)
        buf = io.BytesIO()
        np.savez_compressed(
            buf, meta=np.array(json.dumps(meta, ensure_ascii=False)),
            word_vocab=self.word.vocab, word_idf=self.word.idf,
            char_vocab=self.char.vocab, char_idf=self.char.idf,
            coef=self.coef, intercept=self.intercept)
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
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"模型文件 {path} 的格式版本为 {meta.get('format_version')}，"
                         f"当前程序需要 {FORMAT_VERSION}；请重新训练")
    _check_versions(path, meta)
    try:
        model = _build(meta, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"模型文件 {path} 内容不完整或已损坏: {exc}") from exc
    _check_labels(path, model)
    _check_shapes(path, model)
    return model


def _check_versions(path: Path, meta: dict) -> None:
    trained = meta.get("libraries") or {}
    installed = library_versions()
    differ = [f"{name} {trained.get(name, '未知')} → 当前 {installed[name]}"
              for name in CHECKED_LIBRARIES if trained.get(name) != installed[name]]
    if differ:
        raise ModelError(f"模型文件 {path} 由不同版本的库训练（{'; '.join(differ)}），"
                         "为避免结果不一致已拒绝加载；请用 `python train.py fit` 重新训练")


def _build(meta: dict, arrays: dict[str, np.ndarray]) -> LinearModel:
    weights = meta["block_weights"]
    low, high = (int(v) for v in meta["char_range"])
    return LinearModel(
        labels=tuple(meta["labels"]),
        word=Block(_wide_words(arrays["word_vocab"]), arrays["word_idf"], float(weights["word"])),
        char=Block(arrays["char_vocab"], arrays["char_idf"], float(weights["char"])),
        char_range=(low, high),
        coef=arrays["coef"],
        intercept=arrays["intercept"],
        beta=float(meta["beta"]),
        meta=meta,
    )


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
    elif model.coef.ndim != 2 or model.coef.shape[1] != len(labels) \
            or model.intercept.shape != (len(labels),):
        problem = "标签数与模型权重不一致"
    if problem:
        raise ModelError(f"模型文件 {path} 的标签集合损坏: {problem} ({list(labels)[:20]})")


def _check_shapes(path: Path, model: LinearModel) -> None:
    blocks = (model.word, model.char)
    ok = (
        model.word.vocab.dtype.kind == "U" and model.char.vocab.dtype == np.int64
        and all(b.vocab.ndim == 1 and b.idf.shape == b.vocab.shape for b in blocks)
        and model.coef.shape[0] == len(model.word.vocab) + len(model.char.vocab)
        and model.coef.dtype.kind == "f" and model.intercept.dtype.kind == "f"
        and all(np.isfinite(a).all() for a in (model.coef, model.intercept,
                                                model.word.idf, model.char.idf))
        and all(len(b.vocab) < 2 or bool(np.all(b.vocab[:-1] < b.vocab[1:])) for b in blocks)
        and 1 <= model.char_range[0] <= model.char_range[1] <= textmod.MAX_NGRAM
        and np.isfinite(model.beta) and model.beta > 0
    )
    if not ok:
        raise ModelError(f"模型文件 {path} 的权重或词表损坏")
