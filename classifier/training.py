"""Training: a scikit-learn pipeline (TF-IDF over jieba words, character n-grams and the
n-grams of a message's first characters; LinearSVC) plus a vote of the most similar training
messages, cross-validated, temperature-calibrated and compiled into a LinearModel file."""

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
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.optimize import minimize_scalar
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from classifier import text as textmod
from classifier.data import DataError, fingerprint
from classifier.dedupe import near_duplicate_groups
from classifier.metrics import Report, classification_report
from classifier.model import BLOCKS, Block, LinearModel, Memory, empty_block, library_versions

log = logging.getLogger(__name__)

MIN_EXAMPLES_PER_LABEL = 2  # fewer cannot be cross-validated or learned from

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters. The defaults were chosen by cross-validation on real messages
    (bench/classifier_bench.py, several fold seeds)."""

    C: float = 0.5
    class_weight: str | None = "balanced"
    char_range: tuple[int, int] = (1, 2)
    word_min_df: int = 1
    char_min_df: int = 2
    char_max_features: int | None = None
    word_weight: float = 1.0
    char_weight: float = 1.5
    # The first characters of a message as a view of their own: they are its title where it
    # has one, and say what it is about more often than the rest. 0 leaves the view out.
    lead_chars: int = 20
    lead_weight: float = 0.9
    # A vote of the most similar training messages (cosine over their words, leaving out
    # words in more than neighbour_max_df of them), added to the linear scores: it catches
    # messages about the same place or case that a linear model misses. 0: no vote.
    neighbours: int = 7
    neighbour_weight: float = 2.5
    neighbour_max_df: float = 0.05
    cv_folds: int = 5
    n_jobs: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.neighbour_max_df <= 1 or self.neighbours < 0:
            raise ValueError("neighbours ≥ 0 and 0 < neighbour_max_df ≤ 1 are required")


@dataclass
class TrainResult:
    model: LinearModel
    report: Report | None  # cross-validated, None when cross-validation was skipped
    oof_probabilities: np.ndarray | None = field(default=None, repr=False)
    truth: np.ndarray | None = field(default=None, repr=False)  # label index per example
    # The fitted scikit-learn form of the linear part (the neighbour vote is not in it).
    pipeline: Pipeline | None = field(default=None, repr=False)
    dropped_labels: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# Analyzers: module-level functions so the pipeline can be sent to worker processes.
def _words(doc: textmod.Analyzed) -> tuple[str, ...]:
    return doc.words


def _char_ngrams(doc: textmod.Analyzed, low: int, high: int) -> list[str]:
    return textmod.char_ngrams(doc.chars, low, high)


def _lead_ngrams(doc: textmod.Analyzed, n: int, low: int, high: int) -> list[str]:
    return textmod.char_ngrams(doc.chars[:n], low, high)


def make_pipeline(params: TrainParams) -> Pipeline:
    """The scikit-learn pipeline over analysed messages (see classifier.text.analyze); its
    views in the order of BLOCKS, those with weight 0 left out."""
    low, high = params.char_range

    def tfidf(analyzer, min_df: int, max_features: int | None = None) -> TfidfVectorizer:
        return TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=min_df,
                               max_features=max_features, dtype=np.float32)

    views = [
        ("word", tfidf(_words, params.word_min_df), params.word_weight),
        ("char", tfidf(partial(_char_ngrams, low=low, high=high), params.char_min_df,
                       params.char_max_features), params.char_weight),
        ("lead", tfidf(partial(_lead_ngrams, n=params.lead_chars, low=low, high=high), 1),
         params.lead_weight if params.lead_chars > 0 else 0.0),
    ]
    # Words (first: the neighbour memory uses their columns) and characters are always in.
    used = [(name, vec, w) for name, vec, w in views if w > 0 or name in ("word", "char")]
    features = FeatureUnion([(name, vec) for name, vec, _ in used],
                            transformer_weights={name: w for name, _, w in used})
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
    pipeline, decision, memory = _fit(params, analyzed, y, folds)

    report, oof_proba, beta = None, None, 1.0
    if folds:
        beta = fit_temperature(decision, y)
        oof_proba = softmax(beta * decision)
        report = classification_report([labels[i] for i in y],
                                       [labels[i] for i in decision.argmax(1)], labels)
    model = compile_pipeline(pipeline, labels, beta, params, memory, y)
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


def _fit(params: TrainParams, analyzed, y: np.ndarray, folds):
    """The pipeline fitted on everything, out-of-fold decision values (linear scores plus
    the neighbour vote) for `folds`, and the neighbour memory of all examples (or None)."""
    # TF-IDF is fitted once on all texts (it sees no labels) and shared by the folds: the
    # folds then only refit the linear model, which keeps training within seconds.
    pipeline = make_pipeline(params)
    union = pipeline.named_steps["features"]
    features = union.fit_transform(analyzed).tocsr()
    neighbour = neighbour_features(union, features) if params.neighbours else None
    svm = pipeline.named_steps["svm"]
    jobs = [delayed(_fold_logits)(svm, features, y, tr, te, neighbour, params)
            for tr, te in folds]
    jobs.append(delayed(_fit_svm)(svm, features, y))
    # Threads: liblinear releases the GIL, and the feature matrix is not copied.
    outputs = Parallel(n_jobs=min(params.n_jobs, len(jobs)), prefer="threads")(jobs)
    pipeline.steps[-1] = ("svm", outputs[-1])
    decision = np.zeros((len(y), int(y.max()) + 1))
    for (_, te), scores in zip(folds, outputs[:-1]):
        decision[te] = scores
    memory = None if neighbour is None else memory_rows(neighbour, params.neighbour_max_df)[0]
    return pipeline, decision, memory


def neighbour_features(union: FeatureUnion, features) -> sp.csr_matrix:
    """The word columns of the union's output (neighbours are found by their words)."""
    return features[:, :len(union.transformer_list[0][1].vocabulary_)].tocsr()


def memory_rows(rows: sp.csr_matrix, max_df: float,
                kept: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows without the features in more than max_df of them (or outside `kept`), each
    l2-normalised (cosine similarity is then a dot product); and the kept-feature mask."""
    if kept is None:
        df = np.bincount(rows.indices, minlength=rows.shape[1])
        kept = df <= max(1.0, max_df * rows.shape[0])
    rows = rows.copy()
    rows.data[~kept[rows.indices]] = 0
    rows.eliminate_zeros()
    return normalize(rows), kept


def neighbour_votes(memory: sp.csr_matrix, memory_labels: np.ndarray, kept: np.ndarray,
                    queries: sp.csr_matrix, k: int, n_labels: int) -> np.ndarray:
    """Per query, the sum of the cosine similarities of its k most similar memory rows, per
    label, divided by k (Memory.vote for many queries at once)."""
    queries, _ = memory_rows(queries, 1.0, kept)
    k = min(k, memory.shape[0])
    votes = np.zeros((queries.shape[0], n_labels))
    for start in range(0, queries.shape[0], 1000):  # chunks: the similarities are dense
        sim = (queries[start:start + 1000] @ memory.T).toarray()
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(sim, nearest, axis=1)
        rows = np.repeat(np.arange(start, start + len(sim)), k)
        np.add.at(votes, (rows, memory_labels[nearest].ravel()), weights.ravel())
    return votes / k


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


def _fold_logits(svm: LinearSVC, features, y: np.ndarray, train_idx, test_idx,
                 neighbour: sp.csr_matrix | None, params: TrainParams) -> np.ndarray:
    """Out-of-fold decision values, with a column per label even if a fold lacks one; the
    neighbour vote counts only the fold's training messages."""
    fitted = _fit_svm(svm, features[train_idx], y[train_idx])
    scores = fitted.decision_function(features[test_idx])
    if scores.ndim == 1:  # binary: one score for classes[1]
        scores = np.column_stack([-scores, scores])
    # A label missing from a fold's training part can't be predicted there.
    n_labels = int(y.max()) + 1
    out = np.full((len(test_idx), n_labels), -1e3)
    out[:, fitted.classes_] = scores
    if neighbour is not None:
        memory, kept = memory_rows(neighbour[train_idx], params.neighbour_max_df)
        out += params.neighbour_weight * neighbour_votes(
            memory, y[train_idx], kept, neighbour[test_idx], params.neighbours, n_labels)
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


def compile_pipeline(pipe: Pipeline, labels: list[str], beta: float, params: TrainParams,
                     memory: sp.csr_matrix | None = None,
                     memory_labels: np.ndarray | None = None) -> LinearModel:
    """The fitted pipeline as plain arrays (vocabularies sorted, weights per label column),
    with the neighbour memory (rows from memory_rows, labels by index) when given."""
    union = pipe.named_steps["features"]
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

    blocks, orders, rows, offset = {}, {}, [], 0
    for name, vec in union.transformer_list:
        vocab = _compiled_vocab(name, [str(t) for t in vec.get_feature_names_out()])
        orders[name] = np.argsort(vocab, kind="stable")
        blocks[name] = Block(vocab=vocab[orders[name]],
                             idf=vec.idf_.astype(np.float32)[orders[name]],
                             weight=float(union.transformer_weights[name]))
        rows.append(offset + orders[name])
        offset += len(vocab)
    model = LinearModel(
        labels=tuple(labels), **blocks, char_range=tuple(params.char_range),
        lead_chars=params.lead_chars if "lead" in blocks else 0,
        coef=full_coef[np.concatenate(rows)].astype(np.float32),
        intercept=full_intercept, beta=beta, meta={})
    for name in BLOCKS:  # views left out (weight 0) are empty
        if name not in blocks:
            setattr(model, name, empty_block(np.int64))
    if memory is not None:  # its columns: the words, in the compiled order
        model.memory = _compile_memory(memory[:, orders["word"]], memory_labels, params)
    return model


def _compiled_vocab(name: str, terms: list[str]) -> np.ndarray:
    """A view's vocabulary as the model file stores it: words as text, n-grams as int64 keys."""
    if name == "word":  # as wide as any token, so a query is never cut to match a word
        return np.array(terms, dtype=f"<U{textmod.MAX_TOKEN_CHARS}")
    return np.array([textmod.ngram_key(t) for t in terms], dtype=np.int64)


def _compile_memory(rows: sp.csr_matrix, labels: np.ndarray, params: TrainParams) -> Memory:
    """Memory rows (from memory_rows, columns in the compiled order) stored by feature."""
    by_feature = rows.tocsc()
    by_feature.sort_indices()
    return Memory(indptr=by_feature.indptr.astype(np.int64),
                  docs=by_feature.indices.astype(np.int32),
                  values=by_feature.data.astype(np.float16),
                  doc_labels=np.asarray(labels, dtype=np.int32),
                  k=params.neighbours, weight=params.neighbour_weight)


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
