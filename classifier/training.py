"""Training: a scikit-learn pipeline (TF-IDF over jieba words + character n-grams, LinearSVC),
cross-validated, temperature-calibrated and compiled into a LinearModel file."""

from __future__ import annotations

import logging
import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy.optimize import minimize_scalar
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from classifier import text as textmod
from classifier.data import DataError, fingerprint
from classifier.dedupe import near_duplicate_groups
from classifier.metrics import Report, classification_report
from classifier.model import Block, LinearModel, library_versions

log = logging.getLogger(__name__)

MIN_EXAMPLES_PER_LABEL = 2  # fewer cannot be cross-validated or learned from

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters. The defaults were chosen by cross-validation on real messages."""

    C: float = 0.5
    class_weight: str | None = "balanced"
    char_range: tuple[int, int] = (1, 2)
    word_min_df: int = 1
    char_min_df: int = 2
    char_max_features: int | None = None
    word_weight: float = 1.0
    char_weight: float = 1.5
    cv_folds: int = 5
    n_jobs: int = 2
    seed: int = 0


@dataclass
class TrainResult:
    model: LinearModel
    report: Report | None  # cross-validated, None when cross-validation was skipped
    oof_probabilities: np.ndarray | None = field(default=None, repr=False)
    truth: np.ndarray | None = field(default=None, repr=False)  # label index per example
    pipeline: Pipeline | None = field(default=None, repr=False)  # the fitted scikit-learn form
    dropped_labels: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# Analyzers: module-level functions so the pipeline can be sent to worker processes.
def _words(doc: textmod.Analyzed) -> tuple[str, ...]:
    return doc.words


def _char_ngrams(doc: textmod.Analyzed, low: int, high: int) -> list[str]:
    return textmod.char_ngrams(doc.chars, low, high)


def make_pipeline(params: TrainParams) -> Pipeline:
    """The scikit-learn pipeline over analysed messages (see classifier.text.analyze)."""
    low, high = params.char_range
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer=_words, sublinear_tf=True,
                                     min_df=params.word_min_df, dtype=np.float32)),
            ("char", TfidfVectorizer(analyzer=partial(_char_ngrams, low=low, high=high),
                                     sublinear_tf=True, min_df=params.char_min_df,
                                     max_features=params.char_max_features, dtype=np.float32)),
        ],
        transformer_weights={"word": params.word_weight, "char": params.char_weight},
    )
    svm = LinearSVC(C=params.C, class_weight=params.class_weight, random_state=params.seed)
    return Pipeline([("features", features), ("svm", svm)])


def rare_labels(labels: list[str], progress: Progress) -> dict[str, int]:
    """Labels with fewer than MIN_EXAMPLES_PER_LABEL examples (announced: they are left out)."""
    counts = Counter(labels)
    rare = {label: n for label, n in counts.items() if n < MIN_EXAMPLES_PER_LABEL}
    for label, n in sorted(rare.items()):
        progress(f"警告: 标签 {label!r} 只有 {n} 条样本（至少需要 {MIN_EXAMPLES_PER_LABEL} 条），"
                 "已跳过该标签")
    if len(counts) - len(rare) < 2:
        raise DataError("训练数据至少需要两个标签，且每个标签至少 "
                        f"{MIN_EXAMPLES_PER_LABEL} 条样本；现有: {dict(counts)}")
    return rare


def train(
    examples: list[tuple[str, str]],
    params: TrainParams = TrainParams(),
    *,
    userdict_words: list[str] | tuple[str, ...] = (),
    calibrate: bool = True,
    progress: Progress | None = None,
    analyzed: list[textmod.Analyzed] | None = None,
) -> TrainResult:
    """Fit on (text, label) examples. With calibrate, cross-validate to report and to fit the
    temperature; without, only fit (argmax is unchanged by calibration)."""
    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    examples = [(t, lab) for t, lab in examples if t and t.strip() and lab and lab.strip()]
    if not examples:
        raise DataError("没有可用的训练样本")
    textmod.add_words(list(userdict_words))
    if analyzed is None:
        say(f"分词: {len(examples)} 条 …")
        analyzed = textmod.analyze_many(
            [t for t, _ in examples], params.n_jobs,
            progress=lambda i, n: say(f"  分词 {i}/{n}"))
    elif len(analyzed) != len(examples):
        raise ValueError("analyzed must match the examples one to one")
    examples, analyzed, dropped = _usable(examples, analyzed, say)
    labels = sorted({lab for _, lab in examples})
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[lab] for _, lab in examples])

    folds = _folds(analyzed, y, params) if calibrate else []
    say(f"训练: {len(examples)} 条, {len(labels)} 个标签"
        + (f", {len(folds)} 折交叉验证" if folds else "") + " …")
    pipeline, decision = _fit(params, analyzed, y, folds)

    report, oof_proba, beta = None, None, 1.0
    if folds:
        beta = fit_temperature(decision, y)
        oof_proba = softmax(beta * decision)
        report = classification_report([labels[i] for i in y],
                                       [labels[i] for i in decision.argmax(1)], labels)
    model = compile_pipeline(pipeline, labels, beta, params)
    model.meta.update(_metadata(examples, labels, params, userdict_words, report))
    seconds = time.perf_counter() - started
    model.meta["train_seconds"] = round(seconds, 2)
    say(f"完成: {seconds:.1f} 秒, 模型版本 {model.model_version}")
    return TrainResult(model=model, report=report, oof_probabilities=oof_proba, truth=y,
                       pipeline=pipeline, dropped_labels=dropped, seconds=seconds)


def _usable(examples, analyzed, say: Progress):
    """Leave out examples without usable text and labels with too few examples."""
    usable = [i for i, a in enumerate(analyzed) if a.words or a.chars]
    if len(usable) < len(examples):
        say(f"跳过 {len(examples) - len(usable)} 条没有可用文字的样本")
    dropped = rare_labels([examples[i][1] for i in usable], say)
    keep = [i for i in usable if examples[i][1] not in dropped]
    return [examples[i] for i in keep], [analyzed[i] for i in keep], dropped


def _fit(params: TrainParams, analyzed, y: np.ndarray, folds) -> tuple[Pipeline, np.ndarray]:
    """The pipeline fitted on everything, and out-of-fold decision values for `folds`."""
    # TF-IDF is fitted once on all texts (it sees no labels) and shared by the folds: the
    # folds then only refit the linear model, which keeps training within seconds.
    pipeline = make_pipeline(params)
    features = pipeline.named_steps["features"].fit_transform(analyzed)
    svm = pipeline.named_steps["svm"]
    jobs = [delayed(_fold_logits)(svm, features, y, tr, te) for tr, te in folds]
    jobs.append(delayed(_fit_svm)(svm, features, y))
    # Threads: liblinear releases the GIL, and the feature matrix is not copied.
    outputs = Parallel(n_jobs=min(params.n_jobs, len(jobs)), prefer="threads")(jobs)
    pipeline.steps[-1] = ("svm", outputs[-1])
    decision = np.zeros((len(y), int(y.max()) + 1))
    for (_, te), scores in zip(folds, outputs[:-1]):
        decision[te] = scores
    return pipeline, decision


def _folds(analyzed: list[textmod.Analyzed], y: np.ndarray, params: TrainParams):
    """Stratified folds that keep copies of a message together: a fold never tests a message
    it trained on, so the report and the calibration are not flattered by duplicates."""
    smallest = int(np.bincount(y).min())
    n_splits = max(2, min(params.cv_folds, smallest))
    groups = near_duplicate_groups(analyzed)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=params.seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def _fit_svm(svm: LinearSVC, features, y: np.ndarray) -> LinearSVC:
    return clone(svm).fit(features, y)


def _fold_logits(svm: LinearSVC, features, y: np.ndarray, train_idx, test_idx) -> np.ndarray:
    """Out-of-fold decision values, with a column per label even if a fold lacks one."""
    fitted = _fit_svm(svm, features[train_idx], y[train_idx])
    scores = fitted.decision_function(features[test_idx])
    if scores.ndim == 1:  # binary: one score for classes[1]
        scores = np.column_stack([-scores, scores])
    # A label missing from a fold's training part can't be predicted there.
    out = np.full((len(test_idx), int(y.max()) + 1), -1e3)
    out[:, fitted.classes_] = scores
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(decision: np.ndarray, y: np.ndarray) -> float:
    """Inverse temperature beta minimising the log loss of softmax(beta * decision)."""
    rows = np.arange(len(y))

    def log_loss(log_beta: float) -> float:
        z = np.exp(log_beta) * decision
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y]))

    result = minimize_scalar(log_loss, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(result.x))


def compile_pipeline(pipe: Pipeline, labels: list[str], beta: float,
                     params: TrainParams) -> LinearModel:
    """The fitted pipeline as plain arrays (vocabularies sorted, weights per label column)."""
    vectorizers = dict(pipe.named_steps["features"].transformer_list)
    svm = pipe.named_steps["svm"]
    coef = svm.coef_.T.astype(np.float64)
    intercept = np.asarray(svm.intercept_, dtype=np.float64)
    if coef.shape[1] == 1:  # binary: softmax over (-d, d), as in temperature scaling
        coef = np.hstack([-coef, coef])
        intercept = np.concatenate([-intercept, intercept])
    full_coef = np.zeros((coef.shape[0], len(labels)))
    full_intercept = np.full(len(labels), -1e3)
    full_coef[:, svm.classes_] = coef
    full_intercept[svm.classes_] = intercept

    blocks, columns, offset = {}, [], 0
    for name in ("word", "char"):
        vec = vectorizers[name]
        terms = [str(t) for t in vec.get_feature_names_out()]
        if name == "word":
            vocab = np.array(terms, dtype=str)
        else:
            vocab = np.array([textmod.ngram_key(t) for t in terms], dtype=np.int64)
        order = np.argsort(vocab, kind="stable")
        weight = params.word_weight if name == "word" else params.char_weight
        blocks[name] = Block(vocab=vocab[order], idf=vec.idf_.astype(np.float32)[order],
                             weight=float(weight))
        columns.append(offset + order)
        offset += len(vocab)
    return LinearModel(
        labels=tuple(labels), word=blocks["word"], char=blocks["char"],
        char_range=tuple(params.char_range),
        coef=full_coef[np.concatenate(columns)].astype(np.float32),
        intercept=full_intercept, beta=beta, meta={})


def _metadata(examples, labels, params: TrainParams, userdict_words, report) -> dict:
    created = datetime.now(UTC)
    fp = fingerprint(examples)
    return {
        "model_version": f"{created:%Y%m%d-%H%M%S}-{fp[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "data_fingerprint": fp,
        "n_examples": len(examples),
        "label_counts": dict(sorted(Counter(lab for _, lab in examples).items())),
        "libraries": library_versions(),
        "python": platform.python_version(),
        "params": asdict(params),
        "userdict_words": list(userdict_words),
        "cv": None if report is None else {"accuracy": report.accuracy,
                                           "macro_f1": report.macro_f1, "n": report.n},
        "labels": labels,
    }


def train_from_files(paths: list[Path], params: TrainParams = TrainParams(), *,
                     userdict: Path | None = None, extra: list[tuple[str, str]] = (),
                     progress: Progress | None = None) -> TrainResult:
    """Read CSVs (+ extra examples such as staff corrections) and train."""
    from classifier.data import read_examples

    examples = [ex for p in paths for ex in read_examples(p)] + list(extra)
    words = textmod.read_userdict(userdict or textmod.DEFAULT_USERDICT)
    return train(examples, params, userdict_words=words, progress=progress)
