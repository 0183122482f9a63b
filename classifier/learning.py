"""The learning loop, classifier side: a challenger trained on the corpus plus staff decisions
(in a separate process), judged against the champion on two held-out sets, promoted by a gate.

- Held out, never trained on: every `holdout_every`-th staff decision (chosen by its id, so a
  decision stays on its side for good), and a fixed stratified slice of the corpus. The
  latest `recent_decisions` held-out decisions are the *recent* set; the corpus slice plus
  the older held-out decisions are the *reference* set (it spans every department of the
  corpus, and in time those learned from decisions alone). Copies of a held-out message
  (reposts, near copies) are never trained on either.
- Every model the loop builds, the first one included, is trained without the corpus slice:
  so the champion and a challenger are compared on messages neither has seen.
- A department's decisions count for at most `department_cap` more than the median
  department's (see decision_weights): a busy stretch of one department's messages, all in
  the plain style of real messages, otherwise teaches the model that style means that
  department.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from classifier import text as textmod
from classifier.data import DataError
from classifier.dedupe import near_duplicate_groups
from classifier.labels import DEPARTMENT_CODES, LABEL_SPACE, MIN_DEPARTMENT_EXAMPLES, LabelMap
from classifier.model import LinearModel, load_model
from classifier.registry import ModelRegistry
from classifier.suggest import Suggester
from classifier.training import TrainParams, train

log = logging.getLogger(__name__)

# One core (the bot keeps the other); a department learned from fewer than 100 examples has
# its scores shifted (TrainParams.offset_labels_below): else it misses most of its cases.
CHALLENGER_PARAMS = TrainParams(n_jobs=1, offset_labels_below=100)
RECENT = "recent"
REFERENCE = "reference"
SET_NAMES = {RECENT: "最近的人工决定", REFERENCE: "参照集"}


class LearningError(Exception):
    """A challenger that could not be trained (the message says why)."""


@dataclass(frozen=True)
class StaffDecision:
    """A case whose department staff settled: the suggestion confirmed, or corrected."""

    id: str  # stable (the case id): it decides, for good, whether the decision is held out
    text: str
    department: str
    at: datetime
    corrected: bool = False


@dataclass(frozen=True)
class LearningParams:
    """The [learning] settings the classifier side uses."""

    retrain_after_corrections: int = 50  # new corrections that make a retraining worth it
    margin: float = 0.02  # macro-F1 a challenger may lose on a held-out set and still win
    department_margin: float = 0.05  # F1 it may lose on one department (fewer cases: noisier)
    min_cases: int = 20  # a department is compared on a set where it has this many cases
    holdout_every: int = 10  # every n-th staff decision is held out (never trained on)
    recent_decisions: int = 200  # the latest held-out decisions form the recent set
    reference_share: float = 0.1  # of each corpus label, held out for the reference set
    department_cap: int = 5  # see decision_weights
    # A challenger is promoted only once the recent set holds this many held-out decisions:
    # with n cases one case moves accuracy by 1/n, so below 1/margin (50 for 0.02) the set
    # cannot tell a challenger within the margin from one below it (see gate). 0: no minimum.
    min_held_out: int = 50

    def __post_init__(self) -> None:
        if self.retrain_after_corrections < 1 or self.min_cases < 1:
            raise ValueError("retrain_after_corrections 和 min_cases 至少为 1")
        if not (0 <= self.margin <= 1 and 0 <= self.department_margin <= 1):
            raise ValueError("margin 和 department_margin 应在 0 到 1 之间")
        if self.holdout_every < 2 or self.recent_decisions < 1:
            raise ValueError("holdout_every 至少为 2，recent_decisions 至少为 1")
        if not 0 < self.reference_share < 0.5 or self.department_cap < 0:
            raise ValueError("reference_share 应在 0 到 0.5 之间，department_cap 不能为负")
        if self.min_held_out < 0:
            raise ValueError("min_held_out 不能为负")


# ---- what is held out ------------------------------------------------------------------------


def held_out(decision_id: str, every: int) -> bool:
    """Whether a decision is held out: by a hash of its id, so about one in `every`, the same
    answer every time it is asked."""
    digest = hashlib.sha256(str(decision_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % every == 0


def reference_slice(
    analyzed: list[textmod.Analyzed], labels: Sequence[str], share: float
) -> np.ndarray:
    """A fixed stratified slice of a corpus: for each label, whole groups of copies (see
    classifier.dedupe) in the order of a hash of their text, until `share` of the label's
    examples are in. The same corpus always gives the same slice, whatever its order."""
    labels = list(labels)
    groups = near_duplicate_groups(analyzed).tolist()
    key: dict[int, str] = {}
    members: dict[int, list[int]] = {}
    for i, (doc, group) in enumerate(zip(analyzed, groups)):
        digest = hashlib.sha256(doc.chars.encode("utf-8")).hexdigest()
        key[group] = min(key.get(group, digest), digest)
        members.setdefault(group, []).append(i)
    chosen = np.zeros(len(analyzed), dtype=bool)
    for label, size in Counter(labels).items():
        taken, wanted = 0, round(share * size)
        for group in sorted(
            {g for g, lab in zip(groups, labels) if lab == label}, key=key.__getitem__
        ):
            if taken >= wanted:
                break
            new = [i for i in members[group] if not chosen[i]]
            chosen[new] = True
            taken += sum(1 for i in new if labels[i] == label)
    return chosen


# ---- the training set and the held-out sets --------------------------------------------------


@dataclass(frozen=True)
class TrainingSet:
    examples: list[tuple[str, str]]  # (text, department)
    weights: list[float]
    analyzed: list[textmod.Analyzed] = field(repr=False)


@dataclass(frozen=True)
class Plan:
    """What a challenger trains on and is judged on, with counts (never texts) to keep."""

    training: TrainingSet
    recent: list[tuple[str, str]]  # held-out decisions, the latest, oldest first
    reference: list[tuple[str, str]]  # the corpus slice, then older held-out decisions
    counts: dict


def decision_weights(
    counts: dict[str, int], departments: Sequence[str], cap: int
) -> dict[str, float]:
    """Per department, the weight of each of its decisions: together they count as at most
    `cap` + the median department's number of decisions (the corpus keeps weight 1).

    Real messages share a style the corpus lacks. While only some departments have decisions,
    that style would come to mean those departments: a stretch of one department's messages
    would drown the others. Once decisions span the departments the median is large and they
    count in full (a department may still have the median's number, no more)."""
    median = statistics.median([counts.get(d, 0) for d in departments]) if departments else 0
    limit = max(1.0, cap + median)
    return {d: min(1.0, limit / n) if n else 1.0 for d, n in counts.items()}


def plan_training(
    corpus: Sequence[tuple[str, str]],
    decisions: Sequence[StaffDecision],
    label_map: LabelMap,
    params: LearningParams,
    *,
    n_jobs: int = 1,
) -> Plan:
    """Split the corpus and the staff decisions into training and held-out sets (the
    userdict words must have been added to the tokenizer first)."""
    corpus = [(t, lab) for t, lab in corpus if t and t.strip() and label_map.department_of(lab)]
    known = set(label_map.departments)
    usable = sorted(
        (d for d in decisions if d.text and d.text.strip()), key=lambda d: (d.at, str(d.id))
    )
    unknown = [d for d in usable if d.department not in known]
    usable = [d for d in usable if d.department in known]

    corpus_docs = textmod.analyze_many([t for t, _ in corpus], n_jobs)
    decision_docs = textmod.analyze_many([d.text for d in usable], n_jobs)
    in_reference = reference_slice(corpus_docs, [lab for _, lab in corpus], params.reference_share)
    is_held = np.array([held_out(d.id, params.holdout_every) for d in usable], dtype=bool)
    # Copies of a held-out message (in the corpus slice or among held-out decisions) are
    # never trained on, wherever they turn up.
    groups = near_duplicate_groups(corpus_docs + decision_docs)
    evaluated = np.concatenate([in_reference, is_held])
    watched = set(groups[evaluated].tolist())
    copy_of_held = np.isin(groups, list(watched)) & ~evaluated

    mapped = label_map.apply(corpus)
    candidates = [
        ("corpus", i) for i in range(len(corpus)) if not in_reference[i] and not copy_of_held[i]
    ] + [
        ("decision", j)
        for j in range(len(usable))
        if not is_held[j] and not copy_of_held[len(corpus) + j]
    ]
    chosen = _latest_per_text(candidates, corpus_docs, decision_docs)
    training, counts = _weighted_training(
        chosen, mapped, corpus_docs, usable, decision_docs, label_map, params
    )

    held = [d for d, h in zip(usable, is_held) if h]
    split = max(0, len(held) - params.recent_decisions)
    recent, older = held[split:], held[:split]
    reference = [mapped[i] for i in np.flatnonzero(in_reference)] + [
        (d.text, d.department) for d in older
    ]
    counts |= {
        "corpus": len(corpus),
        "corpus_reference": int(in_reference.sum()),
        "decisions": len(usable),
        "decisions_unknown_department": len(unknown),
        "held_out_recent": len(recent),
        "held_out_older": len(older),
        "copies_of_held_out_left_out": int(copy_of_held.sum()),
        "duplicates_left_out": len(candidates) - len(chosen),
        "recent_from": recent[0].at.isoformat() if recent else None,
        "recent_to": recent[-1].at.isoformat() if recent else None,
    }
    return Plan(training, [(d.text, d.department) for d in recent], reference, counts)


def _latest_per_text(candidates, corpus_docs, decision_docs) -> list[tuple[str, int]]:
    """One example per text: a staff decision over the corpus, the latest decision over
    earlier ones (decisions come in time order)."""
    by_text: dict[str, tuple[str, int]] = {}
    for source, i in candidates:
        doc = corpus_docs[i] if source == "corpus" else decision_docs[i]
        by_text[doc.chars] = (source, i)
    return sorted(by_text.values(), key=lambda item: (item[0] != "corpus", item[1]))


def _weighted_training(
    chosen,
    mapped,
    corpus_docs,
    decisions: list[StaffDecision],
    decision_docs,
    label_map: LabelMap,
    params: LearningParams,
):
    """The training set, decisions weighted (decision_weights); departments with fewer than
    MIN_DEPARTMENT_EXAMPLES examples left out."""
    rows = [
        (mapped[i][0], mapped[i][1], corpus_docs[i], None)
        if source == "corpus"
        else (decisions[i].text, decisions[i].department, decision_docs[i], decisions[i])
        for source, i in chosen
    ]
    sizes = Counter(dept for _, dept, _, _ in rows)
    too_few = sorted(d for d in label_map.departments if sizes.get(d, 0) < MIN_DEPARTMENT_EXAMPLES)
    rows = [r for r in rows if r[1] not in too_few]
    per_department = Counter(dept for _, dept, _, d in rows if d is not None)
    weight_of = decision_weights(dict(per_department), label_map.departments, params.department_cap)
    weights = [1.0 if d is None else weight_of[dept] for _, dept, _, d in rows]
    training = TrainingSet(
        [(t, dept) for t, dept, _, _ in rows], weights, [doc for _, _, doc, _ in rows]
    )
    corrections = sum(1 for *_, d in rows if d is not None and d.corrected)
    counts = {
        "training_examples": len(rows),
        "training_corpus": sum(1 for *_, d in rows if d is None),
        "training_corrections": corrections,
        "training_confirmed": sum(per_department.values()) - corrections,
        "departments_too_few_examples": too_few,
        "per_department": {
            dept: {
                "corpus": sum(1 for _, x, _, d in rows if x == dept and d is None),
                "decisions": per_department.get(dept, 0),
                "decision_weight": round(weight_of.get(dept, 1.0), 4),
            }
            for dept in label_map.departments
        },
    }
    return training, counts


# ---- judging -----------------------------------------------------------------------------------


def set_metrics(truth: Sequence[str], predicted: Sequence[str | None], min_cases: int = 1) -> dict:
    """Accuracy, and F1 / recall / precision per department that is in the truth. Macro-F1 is
    the mean F1 of the departments with ≥ min_cases cases there (all, if none has): a
    department the set lacks does not punish a model for knowing it, and one with a few cases
    would swing the mean by chance (one case of nine moves its F1 by about 0.06)."""
    departments = sorted(set(truth))
    per = {}
    for dept in departments:
        tp = sum(1 for t, p in zip(truth, predicted) if t == p == dept)
        n = sum(1 for t in truth if t == dept)
        guessed = sum(1 for p in predicted if p == dept)
        recall = tp / n
        precision = tp / guessed if guessed else 0.0
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        per[dept] = {
            "n": n,
            "f1": round(f1, 4),
            "recall": round(recall, 4),
            "precision": round(precision, 4),
        }
    right = sum(1 for t, p in zip(truth, predicted) if t == p)
    averaged = [m["f1"] for m in per.values() if m["n"] >= min_cases] or [
        m["f1"] for m in per.values()
    ]
    return {
        "n": len(truth),
        "accuracy": round(right / len(truth), 4) if truth else 0.0,
        "macro_f1": round(float(np.mean(averaged)), 4) if averaged else 0.0,
        "departments": per,
    }


def evaluate(model: LinearModel, examples: Sequence[tuple[str, str]], min_cases: int = 1) -> dict:
    """set_metrics of the department the bot would suggest for each example (none: wrong)."""
    suggester = Suggester(model)
    return set_metrics(
        [dept for _, dept in examples],
        [suggester.suggest(text).label for text, _ in examples],
        min_cases,
    )


def evaluate_plan(model: LinearModel, plan: Plan, min_cases: int) -> dict:
    """The model's set_metrics on the recent and the reference set."""
    return {
        RECENT: evaluate(model, plan.recent, min_cases),
        REFERENCE: evaluate(model, plan.reference, min_cases),
    }


@dataclass(frozen=True)
class Decision:
    """The gate's answer: promote or not, and why not (every check that failed)."""

    promote: bool
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reasons": list(self.reasons)}


def gate(
    champion: dict | None,
    challenger: dict,
    margin: float,
    min_cases: int = 20,
    department_margin: float | None = None,
    min_held_out: int = 0,
) -> Decision:
    """Promote the challenger only if the recent set holds at least `min_held_out` held-out
    decisions, and, on each held-out set (recent decisions, reference), its macro-F1 (see
    set_metrics, measured with the same min_cases) is not below the champion's by more than
    `margin`, nor its F1 on any department with ≥ min_cases cases there by more than
    `department_margin` (default: margin).
    champion None: there is none yet, the challenger is the first model.

    Why a minimum: the reference set at a cold start is the corpus slice, in the corpus's
    style, which real messages the challenger learned from hardly change; the decisions are
    what can show a loss on real messages, and a handful cannot (the first challenger of the
    real stream, 175 decisions of one department, 28 held out, lost one test message of 575
    and passed both sets)."""
    if champion is None:
        return Decision(True)
    department_margin = margin if department_margin is None else department_margin
    reasons = []
    held = challenger.get(RECENT, {}).get("n", 0)
    if held < min_held_out:
        reasons.append(
            f"{SET_NAMES[RECENT]}只有 {held} 条留出，少于 {min_held_out} 条，尚不足以评判"
        )
    for name, title in SET_NAMES.items():
        old, new = champion.get(name), challenger.get(name)
        if not old or not new or not new["n"]:
            continue  # nothing held out there yet
        if new["macro_f1"] < old["macro_f1"] - margin:
            reasons.append(
                f"{title}（{new['n']} 条）: 宏平均 F1 {new['macro_f1']:.3f}，"
                f"比现用模型的 {old['macro_f1']:.3f} 低 "
                f"{old['macro_f1'] - new['macro_f1']:.3f}（允许 {margin:.3f}）"
            )
        for dept, was in sorted(old["departments"].items()):
            now = new["departments"].get(dept, {"f1": 0.0})
            if was["n"] >= min_cases and now["f1"] < was["f1"] - department_margin:
                reasons.append(
                    f"{title}: 部门 {dept}（{was['n']} 条）F1 {now['f1']:.3f}，"
                    f"比现用模型的 {was['f1']:.3f} 低 {was['f1'] - now['f1']:.3f}"
                    f"（允许 {department_margin:.3f}）"
                )
    return Decision(not reasons, tuple(reasons))


# ---- training a challenger in its own process ------------------------------------------------


@dataclass(frozen=True)
class ChallengerJob:
    """Everything the training process needs (it shares nothing else with the bot)."""

    corpus: list[tuple[str, str]]  # (text, corpus label)
    decisions: list[StaffDecision]
    label_map: LabelMap
    models_dir: Path
    served: Path | None = None  # the file the bot serves (default: models_dir/current.npz)
    params: LearningParams = field(default_factory=LearningParams)
    train_params: TrainParams = field(default_factory=lambda: CHALLENGER_PARAMS)
    userdict_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChallengerResult:
    version: str
    path: Path
    counts: dict
    metrics: dict  # {"recent": set_metrics, "reference": set_metrics}
    champion_version: str | None  # the champion it was compared with
    champion_metrics: dict | None  # the champion's on the same sets
    seconds: float
    pid: int  # the process that trained it


def run_challenger(job: ChallengerJob) -> ChallengerResult:
    """Plan, train, keep the model (not in service) and judge it and the champion on the
    held-out sets. Runs in the training process; callable directly in tests."""
    started = time.perf_counter()
    textmod.add_words(list(job.userdict_words))
    plan = plan_training(
        job.corpus, job.decisions, job.label_map, job.params, n_jobs=job.train_params.n_jobs
    )
    if len({dept for _, dept in plan.training.examples}) < 2:
        raise DataError(f"训练数据不足: 至少需要两个部门各有 {MIN_DEPARTMENT_EXAMPLES} 条样本")
    result = train(
        plan.training.examples,
        job.train_params,
        userdict_words=job.userdict_words,
        analyzed=plan.training.analyzed,
        weights=plan.training.weights,
        progress=log.info,
    )
    result.model.meta[LABEL_SPACE] = DEPARTMENT_CODES  # served as is, never folded
    registry = ModelRegistry(job.models_dir, job.served)
    champion = registry.champion()
    judged = job.params.min_cases
    metrics = evaluate_plan(result.model, plan, judged)
    champion_metrics = evaluate_plan(load_model(champion.path), plan, judged) if champion else None
    seconds = round(time.perf_counter() - started, 2)
    entry = registry.add(
        result.model,
        {
            "counts": plan.counts,
            "metrics": metrics,
            "compared_with": None
            if champion is None
            else {"version": champion.version, "metrics": champion_metrics},
            "personal_data": plan.counts["training_examples"] > plan.counts["training_corpus"],
            "cv": result.model.meta.get("cv"),
            "seconds": seconds,
        },
    )
    return ChallengerResult(
        entry.version,
        entry.path,
        plan.counts,
        metrics,
        champion and champion.version,
        champion_metrics,
        seconds,
        os.getpid(),
    )


def train_challenger(job: ChallengerJob, *, timeout: float | None = None) -> ChallengerResult:
    """run_challenger in a fresh process (spawned: it shares no threads, locks or memory with
    the caller), waiting for it; LearningError if it fails, dies or exceeds timeout (then it is
    stopped at once, and the model file it was writing removed)."""
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(job, writer), name="whistle-challenger")
    started = time.time()
    process.start()
    writer.close()
    try:
        if not reader.poll(timeout):
            process.kill()
            _remove_partial_models(job.models_dir, started)
            raise LearningError(f"训练超过 {timeout} 秒，已停止")
        status, payload = reader.recv()
    except EOFError:
        process.join()
        _remove_partial_models(job.models_dir, started)
        raise LearningError(f"训练进程意外退出（退出码 {process.exitcode}）") from None
    finally:
        reader.close()
        process.join(timeout=10)  # it has answered (or was killed): it is on its way out
        if process.is_alive():
            process.kill()
            process.join()
    if status != "ok":
        raise LearningError(payload)
    return payload


def _remove_partial_models(folder: Path, since: float) -> None:
    """Temp files of a model save the stopped process began (LinearModel.save's names)."""
    for tmp in Path(folder).glob("*.npz.*.tmp"):
        try:
            if tmp.stat().st_mtime >= since - 1:
                tmp.unlink()
        except FileNotFoundError:
            pass


def _child(job: ChallengerJob, conn) -> None:
    try:
        os.nice(5)  # the bot's process comes first
    except OSError:
        pass
    try:
        conn.send(("ok", run_challenger(job)))
    except Exception as exc:  # noqa: BLE001 - the parent raises it as LearningError
        conn.send(("error", f"训练失败: {exc}"))
    finally:
        conn.close()


def retrain(
    job: ChallengerJob, *, timeout: float | None = None
) -> tuple[ChallengerResult, Decision]:
    """The scheduled duty: train a challenger (separate process), then settle it."""
    result = train_challenger(job, timeout=timeout)
    return result, settle(result, job)


def settle(result: ChallengerResult, job: ChallengerJob) -> Decision:
    """Gate a trained challenger against the champion it was compared with, record the
    decision in its metadata and promote it if it passed. A champion changed meanwhile (an
    admin's promotion or rollback) is not overruled: the challenger is not promoted."""
    registry = ModelRegistry(job.models_dir, job.served)
    current = registry.champion_version()
    p = job.params
    if current != result.champion_version:
        changed = f"训练期间现用模型已从 {result.champion_version} 换成 {current}，未作比较"
        decision = Decision(False, (changed,))
    else:
        decision = gate(
            result.champion_metrics,
            result.metrics,
            p.margin,
            p.min_cases,
            p.department_margin,
            p.min_held_out,
        )
    registry.record(
        result.version,
        gate=decision.as_dict()
        | {"champion": current, "at": datetime.now(UTC).isoformat(timespec="seconds")},
    )
    if decision.promote:
        registry.promote(result.version)
    return decision


async def retrain_async(
    job: ChallengerJob, *, timeout: float | None = None
) -> tuple[ChallengerResult, Decision]:
    """retrain without blocking the event loop (a thread waits for the training process)."""
    return await asyncio.to_thread(retrain, job, timeout=timeout)
