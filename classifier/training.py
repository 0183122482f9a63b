"""Training: a scikit-learn pipeline (TF-IDF over jieba words, character n-grams and the
n-grams of a message's first characters; LinearSVC) plus a vote of the most similar training
messages, cross-validated, calibrated on held-out sub-topics and compiled into a LinearModel
file."""

from __future__ import annotations

import logging
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.optimize import minimize, minimize_scalar
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from classifier import text as textmod
from classifier.data import DataError, fingerprint
from classifier.dedupe import near_duplicate_groups
from classifier.metrics import Report, classification_report, expected_calibration_error
from classifier.model import (
    BLOCKS,
    NO_TOP_LABEL_SCALING,
    Block,
    LinearModel,
    Memory,
    calibrated,
    empty_block,
    library_versions,
    top_log_odds,
)

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
    # The probabilities are calibrated on folds that hold out whole sub-topics (k-means
    # clusters of about this many messages within each label): real messages bring wording
    # and topics the training data lacks, and folds that only keep copies apart are much
    # easier than that (calibrated on those, the model was too sure of itself on real
    # messages). 0: calibrate on the report's folds.
    topic_size: int = 30
    # Labels with fewer examples than this get their scores shifted so that, on the held-out
    # sub-topics, each is suggested about as often as it is right (see fit_label_offsets): a
    # label learned from a few dozen messages is otherwise suggested only when the model is
    # sure, and misses most of its messages. Larger labels are left alone: their imbalance on
    # the sub-topics is the corpus's own and did not carry over to real messages (shifting
    # every label cost 1.9 points of accuracy there). 0: no shifts.
    offset_labels_below: int = 0
    cv_folds: int = 5
    n_jobs: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.neighbour_max_df <= 1 or self.neighbours < 0:
            raise ValueError("neighbours ≥ 0 and 0 < neighbour_max_df ≤ 1 are required")
        if self.topic_size < 0:
            raise ValueError("topic_size ≥ 0 is required")


@dataclass
class TrainResult:
    model: LinearModel
    report: Report | None  # cross-validated, None when cross-validation was skipped
    # Held-out probabilities: each fold's, calibrated without that fold's messages.
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
        return TfidfVectorizer(
            analyzer=analyzer,
            sublinear_tf=True,
            min_df=min_df,
            max_features=max_features,
            dtype=np.float32,
        )

    views = [
        ("word", tfidf(_words, params.word_min_df), params.word_weight),
        (
            "char",
            tfidf(
                partial(_char_ngrams, low=low, high=high),
                params.char_min_df,
                params.char_max_features,
            ),
            params.char_weight,
        ),
        (
            "lead",
            tfidf(partial(_lead_ngrams, n=params.lead_chars, low=low, high=high), 1),
            params.lead_weight if params.lead_chars > 0 else 0.0,
        ),
    ]
    # Words (first: the neighbour memory uses their columns) and characters are always in.
    used = [(name, vec, w) for name, vec, w in views if w > 0 or name in ("word", "char")]
    features = FeatureUnion(
        [(name, vec) for name, vec, _ in used], transformer_weights={name: w for name, _, w in used}
    )
    svm = LinearSVC(C=params.C, class_weight=params.class_weight, random_state=params.seed)
    return Pipeline([("features", features), ("svm", svm)])


def rare_labels(labels: list[str], progress: Progress) -> dict[str, int]:
    """Labels with fewer than MIN_EXAMPLES_PER_LABEL examples (announced: they are left out)."""
    counts = Counter(labels)
    rare = {label: n for label, n in counts.items() if n < MIN_EXAMPLES_PER_LABEL}
    for label, n in sorted(rare.items()):
        progress(
            f"警告: 标签 {label!r} 只有 {n} 条样本（至少需要 {MIN_EXAMPLES_PER_LABEL} 条），"
            "已跳过该标签"
        )
    if len(counts) - len(rare) < 2:
        raise DataError(
            "训练数据至少需要两个标签，且每个标签至少 "
            f"{MIN_EXAMPLES_PER_LABEL} 条样本；现有: {dict(counts)}"
        )
    return rare


def train(
    examples: list[tuple[str, str]],
    params: TrainParams = TrainParams(),
    *,
    userdict_words: list[str] | tuple[str, ...] = (),
    calibrate: bool = True,
    progress: Progress | None = None,
    analyzed: list[textmod.Analyzed] | None = None,
    weights: Sequence[float] | None = None,
) -> TrainResult:
    """Fit on (text, label) examples. With calibrate, cross-validate to report and to fit the
    calibration; without, only fit (calibration never changes which label ranks first).
    weights (one per example, > 0) say how much each example counts, in the linear model and
    in the neighbour vote; class_weight "balanced" then balances the labels' weighted totals."""
    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    weights = _checked_weights(weights, len(examples))
    if analyzed is not None and len(analyzed) != len(examples):
        raise ValueError("analyzed must match the examples one to one")
    present = [i for i, (t, lab) in enumerate(examples) if t and t.strip() and lab and lab.strip()]
    if not present:
        raise DataError("没有可用的训练样本")
    examples, weights = [examples[i] for i in present], weights[present]
    textmod.add_words(list(userdict_words))
    if analyzed is None:
        say(f"分词: {len(examples)} 条 …")
        analyzed = textmod.analyze_many(
            [t for t, _ in examples], params.n_jobs, progress=lambda i, n: say(f"  分词 {i}/{n}")
        )
    else:
        analyzed = [analyzed[i] for i in present]
    keep, dropped = _usable(examples, analyzed, say)
    examples, analyzed = [examples[i] for i in keep], [analyzed[i] for i in keep]
    weights = weights[keep]
    labels = sorted({lab for _, lab in examples})
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[lab] for _, lab in examples])

    # TF-IDF is fitted once on all texts (it sees no labels) and shared by the folds: the
    # folds then only refit the linear model, which keeps training within seconds.
    pipeline = make_pipeline(params)
    union = pipeline.named_steps["features"]
    features = union.fit_transform(analyzed).tocsr()
    words = neighbour_features(union, features)
    fold_sets = _fold_sets(analyzed, words, y, params) if calibrate else []
    say(
        f"训练: {len(examples)} 条, {len(labels)} 个标签"
        + (f", {len(fold_sets[0])} 折交叉验证" if fold_sets else "")
        + " …"
    )
    fitting = Fitting(features, words, y, weights)
    svm, decisions = _fit(pipeline.named_steps["svm"], fitting, fold_sets, params)
    pipeline.steps[-1] = ("svm", svm)
    memory = (
        weighted_rows(memory_rows(words, params.neighbour_max_df)[0], weights)
        if params.neighbours
        else None
    )

    report, oof_proba, calibration = None, None, (1.0, NO_TOP_LABEL_SCALING)
    offsets = np.zeros(len(labels))
    if fold_sets:
        held_out, topic_held_out = decisions[0], decisions[-1]
        small = np.bincount(y, minlength=len(labels)) < params.offset_labels_below
        if small.any():
            offsets = fit_label_offsets(topic_held_out, y, weights, small)
            held_out, topic_held_out = held_out + offsets, topic_held_out + offsets
        calibration = fit_calibration(topic_held_out, y)
        oof_proba = held_out_probabilities(held_out, topic_held_out, y, fold_sets[0])
        report = classification_report(
            [labels[i] for i in y], [labels[i] for i in held_out.argmax(1)], labels
        )
        report.ece = expected_calibration_error(oof_proba.max(1), oof_proba.argmax(1) == y)
    model = compile_pipeline(pipeline, labels, calibration, params, memory, y)
    model.intercept = model.intercept + offsets
    model.meta.update(_metadata(examples, labels, params, userdict_words, report))
    seconds = time.perf_counter() - started
    model.meta["train_seconds"] = round(seconds, 2)
    say(f"完成: {seconds:.1f} 秒, 模型版本 {model.model_version}")
    return TrainResult(
        model=model,
        report=report,
        oof_probabilities=oof_proba,
        truth=y,
        pipeline=pipeline,
        dropped_labels=dropped,
        seconds=seconds,
    )


def _checked_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    out = np.asarray(weights, dtype=np.float64)
    if out.shape != (n,) or not np.all(np.isfinite(out)) or not np.all(out > 0):
        raise ValueError("weights: one finite weight > 0 per example is required")
    return out


def sample_weights(y: np.ndarray, weights: np.ndarray, class_weight: str | None) -> np.ndarray:
    """Each example's weight in the linear model: its own weight, times its label's factor
    when class_weight is "balanced" (every label's weighted total then counts the same, as
    scikit-learn's "balanced" does for plain counts)."""
    if class_weight is None:
        return weights
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or None, not {class_weight!r}")
    totals = np.bincount(y, weights=weights)
    present = totals > 0
    factors = np.zeros_like(totals)
    factors[present] = totals.sum() / (present.sum() * totals[present])
    return weights * factors[y]


def weighted_rows(rows: sp.csr_matrix, weights: np.ndarray) -> sp.csr_matrix:
    """Memory rows scaled by their example's weight (relative to the heaviest): a light
    example is a weaker neighbour and votes less."""
    if np.all(weights == weights.max()):
        return rows
    return sp.diags(weights / weights.max()) @ rows


def _usable(examples, analyzed, say: Progress) -> tuple[list[int], dict[str, int]]:
    """The examples to keep (without those lacking usable text, and labels with too few
    examples), and the labels left out."""
    usable = [i for i, a in enumerate(analyzed) if a.words or a.chars]
    if len(usable) < len(examples):
        say(f"跳过 {len(examples) - len(usable)} 条没有可用文字的样本")
    dropped = rare_labels([examples[i][1] for i in usable], say)
    return [i for i in usable if examples[i][1] not in dropped], dropped


@dataclass(frozen=True)
class Fitting:
    """What the final fit and the folds share: features, their word columns, label indices
    and the examples' weights."""

    features: sp.csr_matrix
    words: sp.csr_matrix
    y: np.ndarray
    weights: np.ndarray


def _fit(
    svm: LinearSVC, data: Fitting, fold_sets, params: TrainParams
) -> tuple[LinearSVC, list[np.ndarray]]:
    """The linear model fitted on everything and, per list of folds, the out-of-fold decision
    values (linear scores plus the vote of the fold's training messages)."""
    y = data.y
    jobs = [
        delayed(_fold_logits)(svm, data, tr, te, params) for folds in fold_sets for tr, te in folds
    ]
    jobs.append(delayed(_fit_svm)(svm, data.features, y, data.weights))
    # Threads: liblinear releases the GIL, and the feature matrix is not copied.
    outputs = iter(Parallel(n_jobs=min(params.n_jobs, len(jobs)), prefer="threads")(jobs))
    decisions = []
    for folds in fold_sets:
        decision = np.zeros((len(y), int(y.max()) + 1))
        for (_, te), scores in zip(folds, outputs):
            decision[te] = scores
        decisions.append(decision)
    return next(outputs), decisions


def neighbour_features(union: FeatureUnion, features) -> sp.csr_matrix:
    """The word columns of the union's output (neighbours are found by their words)."""
    return features[:, : len(union.transformer_list[0][1].vocabulary_)].tocsr()


def memory_rows(
    rows: sp.csr_matrix, max_df: float, kept: np.ndarray | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows without the features in more than max_df of them (or outside `kept`), each
    l2-normalised (cosine similarity is then a dot product); and the kept-feature mask."""
    if kept is None:
        df = np.bincount(rows.indices, minlength=rows.shape[1])
        kept = df <= max(1.0, max_df * rows.shape[0])
    rows = rows.copy()
    rows.data[~kept[rows.indices]] = 0
    rows.eliminate_zeros()
    return normalize(rows), kept


def neighbour_votes(
    memory: sp.csr_matrix,
    memory_labels: np.ndarray,
    kept: np.ndarray,
    queries: sp.csr_matrix,
    k: int,
    n_labels: int,
) -> np.ndarray:
    """Per query, the sum of the cosine similarities of its k most similar memory rows, per
    label, divided by k (Memory.vote for many queries at once)."""
    queries, _ = memory_rows(queries, 1.0, kept)
    k = min(k, memory.shape[0])
    votes = np.zeros((queries.shape[0], n_labels))
    for start in range(0, queries.shape[0], 1000):  # chunks: the similarities are dense
        sim = (queries[start : start + 1000] @ memory.T).toarray()
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(sim, nearest, axis=1)
        rows = np.repeat(np.arange(start, start + len(sim)), k)
        np.add.at(votes, (rows, memory_labels[nearest].ravel()), weights.ravel())
    return votes / k


def _fold_sets(
    analyzed: list[textmod.Analyzed], words: sp.csr_matrix, y: np.ndarray, params: TrainParams
) -> list[list]:
    """The report's folds and, unless topic_size is 0, the calibration's (see topic_groups)."""
    copies = near_duplicate_groups(analyzed)
    folds = _folds(analyzed, y, params, copies)
    if not params.topic_size:
        return [folds]
    return [folds, _split(y, topic_groups(words, y, copies, params), params)]


def _folds(
    analyzed: list[textmod.Analyzed],
    y: np.ndarray,
    params: TrainParams,
    copies: np.ndarray | None = None,
):
    """Stratified folds that keep copies of a message together: a fold never tests a message
    it trained on, so the report is not flattered by duplicates."""
    return _split(y, near_duplicate_groups(analyzed) if copies is None else copies, params)


def _split(y: np.ndarray, groups: np.ndarray, params: TrainParams):
    smallest = int(np.bincount(y).min())
    n_splits = max(2, min(params.cv_folds, smallest))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=params.seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def topic_groups(
    words: sp.csr_matrix, y: np.ndarray, copies: np.ndarray, params: TrainParams
) -> np.ndarray:
    """A sub-topic number per message: k-means clusters of about topic_size messages within
    each label, over their word vectors (at least cv_folds per label, so that every fold
    trains on every label); copies of a message join the sub-topic of its first copy."""
    groups = np.zeros(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        k = min(len(members), max(params.cv_folds, round(len(members) / params.topic_size)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct texts than k
            found = KMeans(k, n_init=1, random_state=params.seed).fit_predict(words[members])
        groups[members] = offset + found
        offset += k
    _, first, inverse = np.unique(copies, return_index=True, return_inverse=True)
    return groups[first[inverse]]


def _fit_svm(svm: LinearSVC, features, y: np.ndarray, weights: np.ndarray) -> LinearSVC:
    """The linear model, its labels balanced by weighted totals (see sample_weights)."""
    if np.all(weights == weights[0]):  # unweighted: exactly the model trained before weights
        return clone(svm).fit(features, y)
    fitted = clone(svm).set_params(class_weight=None)
    return fitted.fit(
        features, y, sample_weight=sample_weights(y, weights, svm.get_params()["class_weight"])
    )


def _fold_logits(
    svm: LinearSVC, data: Fitting, train_idx, test_idx, params: TrainParams
) -> np.ndarray:
    """Out-of-fold decision values, with a column per label even if a fold lacks one; the
    neighbour vote counts only the fold's training messages."""
    y = data.y
    fitted = _fit_svm(svm, data.features[train_idx], y[train_idx], data.weights[train_idx])
    scores = fitted.decision_function(data.features[test_idx])
    if scores.ndim == 1:  # binary: one score for classes[1]
        scores = np.column_stack([-scores, scores])
    # A label missing from a fold's training part can't be predicted there.
    n_labels = int(y.max()) + 1
    out = np.full((len(test_idx), n_labels), -1e3)
    out[:, fitted.classes_] = scores
    if params.neighbours:
        memory, kept = memory_rows(data.words[train_idx], params.neighbour_max_df)
        memory = weighted_rows(memory, data.weights[train_idx])
        out += params.neighbour_weight * neighbour_votes(
            memory, y[train_idx], kept, data.words[test_idx], params.neighbours, n_labels
        )
    return out


def fit_label_offsets(
    decision: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    adjusted: np.ndarray,
    rounds: int = 200,
) -> np.ndarray:
    """An offset per label (0 for those not `adjusted`), added to its scores, so that on
    held-out decision values each adjusted label is predicted about as often (by weight) as
    it is the truth: its precision and recall then about meet. Small steps on the log of the
    two counts' ratio."""
    n_labels = decision.shape[1]
    truth = np.bincount(y, weights=weights, minlength=n_labels)
    offsets = np.zeros(n_labels)
    step = 0.05 * float(np.std(decision))
    for _ in range(rounds):
        predicted = np.bincount(
            (decision + offsets).argmax(axis=1), weights=weights, minlength=n_labels
        )
        offsets += adjusted * step * np.log((truth + 1.0) / (predicted + 1.0))
    return offsets


def fit_temperature(decision: np.ndarray, y: np.ndarray) -> float:
    """Inverse temperature beta minimising the log loss of softmax(beta * decision)."""
    rows = np.arange(len(y))

    def log_loss(log_beta: float) -> float:
        z = np.exp(log_beta) * decision
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y]))

    result = minimize_scalar(log_loss, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(result.x))


def fit_calibration(decision: np.ndarray, y: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The temperature (multi-class log loss), then the top label's scaling (a, b) (see
    model.calibrated), fitted on held-out decision values. A temperature alone cannot do: it
    leaves unsure answers too unsure and sure ones too sure."""
    beta = fit_temperature(decision, y)
    z = beta * decision
    return beta, fit_platt(top_log_odds(z), z.argmax(axis=1) == y)


LOG_ODDS_CAP = 40.0  # a fold that lacks a label gives near-infinite log-odds


def fit_platt(log_odds: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(a, b) of P(right) = sigmoid(a·log_odds + b), a > 0, by Platt's method: targets
    (n₊+1)/(n₊+2) and 1/(n₋+2) rather than 1 and 0, so that folds without a wrong answer
    still leave some doubt."""
    n_right = int(right.sum())
    target = np.where(right, (n_right + 1) / (n_right + 2), 1 / (len(right) - n_right + 2))
    t = np.clip(log_odds, -LOG_ODDS_CAP, LOG_ODDS_CAP)

    def loss_and_gradient(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = w[0] * t + w[1]
        g = 1.0 / (1.0 + np.exp(-m)) - target
        return float(np.mean(np.logaddexp(0.0, m) - target * m)), np.array(
            [np.mean(g * t), np.mean(g)]
        )

    result = minimize(
        loss_and_gradient,
        x0=np.array([1.0, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(1e-3, 10.0), (-20.0, 20.0)],
    )
    return float(result.x[0]), float(result.x[1])


def held_out_probabilities(
    held_out: np.ndarray, topic_held_out: np.ndarray, y: np.ndarray, folds
) -> np.ndarray:
    """Each fold's held-out decision values, calibrated by a calibration fitted without that
    fold's messages: probabilities whose calibration error is measured honestly."""
    proba = np.zeros_like(held_out)
    for train_idx, test_idx in folds:
        beta, top_label = fit_calibration(topic_held_out[train_idx], y[train_idx])
        proba[test_idx] = calibrated(held_out[test_idx], beta, top_label)
    return proba


def compile_pipeline(
    pipe: Pipeline,
    labels: list[str],
    calibration: tuple[float, tuple[float, float]],
    params: TrainParams,
    memory: sp.csr_matrix | None = None,
    memory_labels: np.ndarray | None = None,
) -> LinearModel:
    """The fitted pipeline as plain arrays (vocabularies sorted, weights per label column),
    with its calibration (beta, (a, b)) and the neighbour memory (rows from memory_rows,
    labels by index) when given."""
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
        blocks[name] = Block(
            vocab=vocab[orders[name]],
            idf=vec.idf_.astype(np.float32)[orders[name]],
            weight=float(union.transformer_weights[name]),
        )
        rows.append(offset + orders[name])
        offset += len(vocab)
    model = LinearModel(
        labels=tuple(labels),
        **blocks,
        char_range=tuple(params.char_range),
        lead_chars=params.lead_chars if "lead" in blocks else 0,
        coef=full_coef[np.concatenate(rows)].astype(np.float32),
        intercept=full_intercept,
        beta=calibration[0],
        top_label=calibration[1],
        meta={},
    )
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
    return Memory(
        indptr=by_feature.indptr.astype(np.int64),
        docs=by_feature.indices.astype(np.int32),
        values=by_feature.data.astype(np.float16),
        doc_labels=np.asarray(labels, dtype=np.int32),
        k=params.neighbours,
        weight=params.neighbour_weight,
    )


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
        "cv": None
        if report is None
        else {
            "accuracy": report.accuracy,
            "macro_f1": report.macro_f1,
            "n": report.n,
            "ece": report.ece,
        },
        "labels": labels,
    }


def train_from_files(
    paths: list[Path],
    params: TrainParams = TrainParams(),
    *,
    userdict: Path | None = None,
    extra: list[tuple[str, str]] = (),
    progress: Progress | None = None,
) -> TrainResult:
    """Read CSVs (+ extra examples such as staff corrections) and train."""
    from classifier.data import read_examples

    examples = [ex for p in paths for ex in read_examples(p)] + list(extra)
    words = textmod.read_userdict(userdict or textmod.DEFAULT_USERDICT)
    return train(examples, params, userdict_words=words, progress=progress)
