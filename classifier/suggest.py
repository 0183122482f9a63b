"""The bot's API: Suggester.suggest(text) → top-3 departments with calibrated probabilities."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classifier import text as textmod
from classifier.labels import CORPUS_LABELS, LABEL_SPACE, LabelMap
from classifier.model import FORMAT_VERSION, LinearModel, ModelError, load_model
from whistle.config import ClassifierSettings

if TYPE_CHECKING:
    from whistle.config import Settings

log = logging.getLogger(__name__)

TOP_K = 3
# config.toml's [classifier] defaults, written once in whistle/config.py.
DEFAULT_CONFIDENCE = ClassifierSettings.confidence_threshold
DEFAULT_AUTO_DISPATCH = ClassifierSettings.auto_dispatch_threshold
# The bot asks about the same text twice (for the summary, then on submit), often seconds
# apart: the latest answers are kept, per model, so the second asking costs nothing.
RECENT_ANSWERS = 2048

# Reasons for falling back to "unsure" (no suggestion at all).
EMPTY = "empty"
NO_CHINESE = "no_chinese"
NO_KNOWN_WORDS = "no_known_words"


@dataclass(frozen=True)
class Suggestion:
    """Up to three (department_code, probability), best first, and what to do with them."""

    top: tuple[tuple[str, float], ...]
    confident: bool  # top probability ≥ confidence_threshold
    auto_dispatch: bool  # top probability ≥ auto_dispatch_threshold
    model_version: str
    reason: str | None = None  # why there is no suggestion (EMPTY, NO_CHINESE, NO_KNOWN_WORDS)

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    @property
    def probability(self) -> float:
        return self.top[0][1] if self.top else 0.0


@dataclass
class Suggester:
    """A loaded model plus the thresholds; re-loads the file when it is replaced."""

    model: LinearModel
    path: Path | None = None
    confidence_threshold: float = DEFAULT_CONFIDENCE
    auto_dispatch_threshold: float = DEFAULT_AUTO_DISPATCH
    # The district's departments: a model that gives corpus labels (the shipped one, until
    # the learning loop has trained one) is answered in departments through it.
    label_map: LabelMap | None = None
    _stamp: tuple | None = field(default=None, repr=False)
    _refused_stamp: tuple | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recent: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_threshold <= self.auto_dispatch_threshold <= 1.0:
            raise ValueError(
                "需要 0 ≤ confidence_threshold ≤ auto_dispatch_threshold ≤ 1，"
                f"现为 {self.confidence_threshold} / {self.auto_dispatch_threshold}"
            )
        textmod.add_words(self.model.userdict_words)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike,
        *,
        confidence_threshold: float = DEFAULT_CONFIDENCE,
        auto_dispatch_threshold: float = DEFAULT_AUTO_DISPATCH,
    ) -> Suggester:
        """Load a model file (ModelError naming the file if it can't be used)."""
        path = Path(path)
        stamp = _file_stamp(path)
        model = load_model(path)
        _warn_if_outdated(model, path)
        return cls(
            model=model,
            path=path,
            _stamp=stamp,
            confidence_threshold=confidence_threshold,
            auto_dispatch_threshold=auto_dispatch_threshold,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, model_path: str | os.PathLike | None = None
    ) -> Suggester:
        """settings.model_path (built from settings.corpus_dir first when it doesn't exist), or
        model_path, with the thresholds of config.toml."""
        cfg = settings.classifier
        if model_path is None and not settings.model_path.exists():
            log.info(
                "model %s missing: training it from %s", settings.model_path, settings.corpus_dir
            )
            build_default_model(settings)
        suggester = cls.from_path(
            model_path or settings.model_path,
            confidence_threshold=cfg.confidence_threshold,
            auto_dispatch_threshold=cfg.auto_dispatch_threshold,
        )
        # The model's own labels stand for the corpus's (the map was checked against the
        # corpus when config.toml was read).
        suggester.label_map = LabelMap.from_settings(settings, known_labels=suggester.labels)
        unknown = sorted(set(suggester.labels) - {d.code for d in settings.departments})
        if suggester.folds(suggester.model) and suggester.label_map.without_corpus:
            log.info(
                "部门 %s 没有语料标签：学习闭环用足够的人工改派训练后才会被建议",
                ", ".join(suggester.label_map.without_corpus),
            )
        if unknown and model_path is None and not suggester.folds(suggester.model):
            log.warning(
                "模型 %s 的标签 %s 不是 config.toml 中的部门编码",
                settings.model_path,
                ", ".join(unknown),
            )
        return suggester

    @property
    def model_version(self) -> str:
        return self.model.model_version

    @property
    def labels(self) -> tuple[str, ...]:
        """What the model gives (corpus labels, for a model that folds)."""
        return self.model.labels

    def folds(self, model: LinearModel) -> bool:
        """Whether `model`'s labels are corpus labels answered through the label map."""
        return self.label_map is not None and self.label_map.gives_corpus_labels(
            model.meta, model.labels
        )

    def suggest(self, text: str | None) -> Suggestion:
        """Top-3 (label, probability) for a message, or an "unsure" suggestion with a reason."""
        model = self.model  # one consistent model even if a reload swaps it meanwhile
        key = (model.model_version, text)
        known = self._recent.get(key)
        if known is not None:
            self._recent.move_to_end(key)
            return known
        answer = self._suggest(model, text)
        self._recent[key] = answer
        if len(self._recent) > RECENT_ANSWERS:
            self._recent.popitem(last=False)
        return answer

    def _suggest(self, model: LinearModel, text: str | None) -> Suggestion:
        prepared = textmod.prepare(text or "")
        if not prepared:
            return self._unsure(model, EMPTY)
        if not textmod.has_chinese(prepared):
            return self._unsure(model, NO_CHINESE)
        analyzed = textmod.analyze_prepared(prepared)
        proba, known = model.probabilities(analyzed)
        if not known:
            return self._unsure(model, NO_KNOWN_WORDS)
        labels = model.labels
        if self.folds(model):
            labels, proba = self.label_map.fold(labels, proba)
            if not labels:
                return self._unsure(model, NO_KNOWN_WORDS)
        order = np.argsort(-proba)[:TOP_K]
        top = tuple((labels[i], float(proba[i])) for i in order)
        best = float(proba[order[0]])
        return Suggestion(
            top=top,
            confident=best >= self.confidence_threshold,
            auto_dispatch=best >= self.auto_dispatch_threshold,
            model_version=model.model_version,
        )

    def _unsure(self, model: LinearModel, reason: str) -> Suggestion:
        return Suggestion(
            top=(),
            confident=False,
            auto_dispatch=False,
            model_version=model.model_version,
            reason=reason,
        )

    def reload_if_changed(self) -> bool:
        """Load the model file again if it was replaced; a broken file is refused (logged) and
        the current model stays in service. True when a new model was put in service."""
        if self.path is None:
            return False
        with self._lock:
            stamp = _file_stamp(self.path)
            if stamp is None or stamp == self._stamp or stamp == self._refused_stamp:
                return False
            try:
                model = load_model(self.path)
            except ModelError as exc:
                self._refused_stamp = stamp  # log once per file version, not every check
                log.error("新模型未启用，继续使用 %s: %s", self.model_version, exc)
                return False
            textmod.add_words(model.userdict_words)
            _warn_if_outdated(model, self.path)
            self.model, self._stamp, self._refused_stamp = model, stamp, None
            log.info("classifier model %s loaded from %s", model.model_version, self.path)
            return True


def _warn_if_outdated(model: LinearModel, path: Path) -> None:
    """An older model file works, but its probabilities are too sure of themselves."""
    if model.meta.get("format_version") != FORMAT_VERSION:
        log.warning(
            "模型 %s 是旧格式（%s），概率未按新方法校准、偏于自信；"
            "请用 `python train.py fit` 重新训练（默认模型可直接删除，下次启动时会重建）",
            path,
            model.meta.get("format_version"),
        )


def _file_stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def build_default_model(settings: Settings, *, progress=None) -> Path:
    """Train on every *.csv in settings.corpus_dir and save to settings.model_path."""
    from classifier.data import corpus_files
    from classifier.training import TrainParams, train_from_files

    files = corpus_files(settings.corpus_dir)
    userdict = settings.userdict_path if settings.userdict_path.exists() else None
    # One process: this may run inside the bot, where forking workers is unwelcome.
    result = train_from_files(files, TrainParams(n_jobs=1), userdict=userdict, progress=progress)
    result.model.meta[LABEL_SPACE] = CORPUS_LABELS  # answered through the district's label map
    return result.model.save(settings.model_path)
