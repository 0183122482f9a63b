"""Classifier benchmark on the real messages in ../shared/data (Teddy Cup 2020, problem C).

    python bench/classifier_bench.py [--folds 5] [--jobs 2] [--quick] [--default-only]
                                     [--seed 0] [--param NAME=VALUE …]

--param overrides one TrainParams field for every model the bench trains (e.g.
`--param neighbours=0 --param lead_chars=0` measures the plain word + character linear
model); --seed changes the cross-validation's fold split.

Reports:
- cross-validated accuracy / macro-F1 on the raw messages, training on raw + segmented
  messages, with no test message (same id, or the same text / a near copy, see
  classifier.dedupe) leaking into training through the segmented file or a repost;
- seconds to train the final model (tokenisation, 5-fold calibration, fit) on 2 cores, and
  the expected calibration error (top label, 15 bins) of its held-out probabilities;
- single-message latency p50/p99 of Suggester.suggest on one core;
- cold start (import + load + first prediction, in a fresh subprocess) and its peak RSS;
- the default model (seed corpus only) on the raw messages, departments mapped to categories
  by classifier/teddy2020c_map.toml: accuracy, macro-F1, calibration error (the probability
  of the departments of the predicted category, and the top department's alone), and which
  share of the messages its thresholds (config.toml) mark confident / dispatch at once, and
  how many of those are right; its cross-validated calibration error on the seed corpus.
Prints a table and writes bench/results/classifier.json. Skips when the data is missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from classifier import Suggester
from classifier import text as textmod
from classifier.data import corpus_files, read_examples, read_label_map, read_rows
from classifier.dedupe import near_duplicate_groups
from classifier.metrics import (
    classification_report,
    expected_calibration_error,
    in_file_terms,
    percentile_ms,
)
from classifier.training import TrainParams, train
from whistle.config import load_settings

DATA = Path(os.environ.get("WHISTLE_SHARED_DATA", REPO.parent / "shared" / "data"))
RAW = DATA / "teddy2020c_raw_train.csv"
SEGMENTED = DATA / "teddy2020c_segmented_train.csv"
RESULTS = REPO / "bench" / "results"

DEPARTMENT_TO_CATEGORY = read_label_map(REPO / "classifier" / "teddy2020c_map.toml")
TARGETS = {
    "macro_f1": 0.94,
    "latency_ms_p50": 1.0,
    "train_seconds": 60.0,
    "cold_start_seconds": 2.0,
    "default_mapped_accuracy": 0.85,
    "ece": 0.05,
}
THRESHOLDS = (0.5, 0.55, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)  # swept for the default model


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def norm_id(value: str) -> str | None:
    try:
        return str(int(float(value)))
    except ValueError:
        return None


def load_raw() -> tuple[list[str], list[str], list[str | None]]:
    """Raw messages as the product reads them (title joined before text): texts, labels, ids."""
    with RAW.open(encoding="utf-8") as fh:
        recs = list(csv.DictReader(fh))
    rows = read_rows(RAW, need_label=True)
    keep = [i for i, r in enumerate(rows) if r.text and r.label]
    return (
        [rows[i].text for i in keep],
        [rows[i].label for i in keep],
        [norm_id(recs[i]["id"]) for i in keep],
    )


def load_segmented() -> tuple[list[str], list[str], list[str | None]]:
    """Segmented messages: their text already starts with the title, so the title is not
    joined again."""
    with SEGMENTED.open(encoding="utf-8") as fh:
        recs = [r for r in csv.DictReader(fh) if r["text"].strip() and r["label"].strip()]
    return [r["text"] for r in recs], [r["label"] for r in recs], [norm_id(r["id"]) for r in recs]


def message_groups(raw_an, seg_an, raw_ids, seg_ids, copies: str = "near") -> np.ndarray:
    """Group number per raw message, then per segmented one; a group is tested or trained on
    as a whole. Always together: a message, its exact reposts and its segmented copy (same
    id or same words). copies="near" also groups raw messages that are near copies of each
    other (an edited repost); copies="exact" leaves those apart, as the held-back test set
    was drawn (it holds no message of these files and no exact copy of one)."""
    position = {rid: i for i, rid in enumerate(raw_ids) if rid is not None}
    same_id = [(position[sid], len(raw_an) + j) for j, sid in enumerate(seg_ids) if sid in position]
    n_raw = len(raw_an)
    near_pair = None if copies == "near" else (lambda i, j: i >= n_raw or j >= n_raw)
    return near_duplicate_groups(raw_an + seg_an, same_id, near_pair)


def cross_validate(raw, seg, groups, folds, params, seed: int = 0) -> dict:
    """raw and seg: (texts, labels, analyzed); groups from message_groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    (raw_texts, raw_y, raw_an), (seg_texts, seg_y, seg_an) = raw, seg
    truth, pred, excluded = [], [], []
    y = np.array(raw_y)
    raw_groups, seg_groups = groups[: len(y)], groups[len(y) :]
    for k, (tr, te) in enumerate(splitter.split(np.zeros(len(y)), y, raw_groups), start=1):
        leak = np.isin(seg_groups, raw_groups[te])
        seg_keep = np.flatnonzero(~leak)
        excluded.append(int(leak.sum()))
        docs = [raw_an[i] for i in tr] + [seg_an[j] for j in seg_keep]
        examples = [(raw_texts[i], raw_y[i]) for i in tr] + [
            (seg_texts[j], seg_y[j]) for j in seg_keep
        ]
        # Calibration is skipped here: it does not change which label ranks first. The model
        # (its neighbour memory too) holds only this fold's training messages.
        model = train(
            examples, params, calibrate=False, analyzed=docs, progress=lambda m: None
        ).model
        for i in te:
            scores, _ = model.scores(raw_an[i])
            pred.append(model.labels[int(np.argmax(scores))])
            truth.append(raw_y[i])
        say(
            f"  fold {k}: train {len(docs)} (segmented rows withheld as test copies: "
            f"{excluded[-1]}), test {len(te)}"
        )
    report = classification_report(truth, pred)
    return {
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "n": report.n,
        "per_class": report.per_class,
        "segmented_rows_withheld_per_fold": excluded,
    }


def time_training(
    raw_texts, raw_y, seg_texts, seg_y, params, folder: Path
) -> tuple[float, int, float, Path]:
    """Train the final model from text (tokenisation included); seconds, peak RSS KiB, the
    held-out calibration error of its cross-validation, path."""
    out = folder / "teddy.model"
    code = (
        "import json,sys,time,resource\n"
        f"sys.path.insert(0,{str(REPO)!r})\n"
        "from classifier.training import TrainParams, train\n"
        "from classifier import text as t\n"
        "d=json.load(sys.stdin)\n"
        "t0=time.perf_counter()\n"
        "r=train(list(zip(d['texts'],d['labels'])), TrainParams(**d['params']),\n"
        "        userdict_words=t.read_userdict(t.DEFAULT_USERDICT), progress=print)\n"
        "s=time.perf_counter()-t0\n"
        "r.model.save(d['out'])\n"
        "hwm=[ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "peak=max(int(hwm.split()[1]), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print('RESULT', json.dumps({'seconds': s, 'peak_kib': peak, 'ece': r.report.ece}))\n"
    )
    payload = json.dumps(
        {
            "texts": raw_texts + seg_texts,
            "labels": raw_y + seg_y,
            "params": _params_dict(params),
            "out": str(out),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=payload, text=True, capture_output=True, check=True
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    return result["seconds"], result["peak_kib"], result["ece"], out


def _params_dict(params: TrainParams) -> dict:
    from dataclasses import asdict

    return asdict(params)


def parse_params(overrides: list[str], jobs: int) -> TrainParams:
    """TrainParams with NAME=VALUE overrides (values as Python literals, e.g. (1, 3))."""
    import ast
    from dataclasses import fields

    known = {f.name for f in fields(TrainParams)}
    values: dict = {"n_jobs": jobs}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise SystemExit(
                f"--param {item!r}: expected NAME=VALUE with NAME one of "
                + ", ".join(sorted(known))
            )
        try:
            values[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            values[name] = value  # a bare string
    return TrainParams(**values)


def latency_one_core(model_path: Path, texts: list[str]) -> dict:
    """suggest() one message at a time, the process pinned to one CPU."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        suggester = Suggester.from_path(model_path)
        suggester.suggest("预热")
        seconds = []
        for text in texts:
            t0 = time.perf_counter()
            suggester.suggest(text)
            seconds.append(time.perf_counter() - t0)
    finally:
        os.sched_setaffinity(0, before)
    return {
        "latency_ms_p50": percentile_ms(seconds, 50),
        "latency_ms_p99": percentile_ms(seconds, 99),
        "messages": len(seconds),
    }


def cold_start(model_path: Path, runs: int = 3) -> dict:
    """Fresh interpreter: import classifier, load the model, first suggestion (best of runs)."""
    code = (
        "import time; t0=time.perf_counter()\n"
        f"import sys; sys.path.insert(0,{str(REPO)!r})\n"
        "from classifier import Suggester\n"
        f"s=Suggester.from_path({str(model_path)!r})\n"
        "s.suggest('小区门口的路灯坏了一个星期，晚上很黑')\n"
        "t1=time.perf_counter()-t0\n"
        # VmHWM, not ru_maxrss: the latter keeps the parent's size from before exec.
        "hwm=[ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "print(t1, hwm.split()[1])\n"
    )
    walls, inner, rss = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        walls.append(time.perf_counter() - t0)
        seconds, kib = out.stdout.split()
        inner.append(float(seconds))
        rss.append(int(kib))
    return {
        "cold_start_seconds": min(walls),
        "cold_start_in_process_seconds": min(inner),
        "cold_start_peak_rss_mb": max(rss) / 1024,
    }


def default_model_on_raw(raw_texts, raw_y, folder: Path, params: TrainParams) -> dict:
    """The seed-corpus model, its departments mapped to the seven categories."""
    examples = [ex for p in corpus_files(REPO / "classifier" / "corpus") for ex in read_examples(p)]
    result = train(
        examples,
        params,
        progress=lambda m: None,
        userdict_words=textmod.read_userdict(textmod.DEFAULT_USERDICT),
    )
    path = folder / "default.model"
    result.model.save(path)
    cfg = load_settings().classifier
    suggester = Suggester.from_path(
        path,
        confidence_threshold=float(cfg["confidence_threshold"]),
        auto_dispatch_threshold=float(cfg["auto_dispatch_threshold"]),
    )
    suggestions = [suggester.suggest(text) for text in raw_texts]
    mapped = [in_file_terms(s.top, DEPARTMENT_TO_CATEGORY) for s in suggestions]
    pred = [label for label, _ in mapped]
    report = classification_report(raw_y, pred)
    correct = np.array([p == t for p, t in zip(pred, raw_y)])
    shown = np.array([s.probability for s in suggestions])  # the top department's
    report.ece = expected_calibration_error(np.array([p for _, p in mapped]), correct)
    return {
        "default_mapped_accuracy": report.accuracy,
        "default_mapped_macro_f1": report.macro_f1,
        "default_mapped_ece": report.ece,
        "default_mapped_ece_top_department": expected_calibration_error(shown, correct),
        "default_confidence_threshold": suggester.confidence_threshold,
        "default_auto_dispatch_threshold": suggester.auto_dispatch_threshold,
        **_share_and_precision(
            "default_confident", np.array([s.confident for s in suggestions]), correct
        ),
        **_share_and_precision(
            "default_auto_dispatch", np.array([s.auto_dispatch for s in suggestions]), correct
        ),
        "default_thresholds": {
            str(t): _share_and_precision("", shown >= t, correct) for t in THRESHOLDS
        },
        "default_mapped_report": report,
        "default_corpus_rows": len(examples),
        "default_cv_macro_f1": result.report.macro_f1 if result.report else None,
        "default_cv_ece": result.report.ece if result.report else None,
        "default_train_seconds": result.seconds,
    }


def _share_and_precision(prefix: str, chosen: np.ndarray, correct: np.ndarray) -> dict:
    """Which share of the messages `chosen` holds, and the share of those that are right."""
    key = f"{prefix}_" if prefix else ""
    return {
        f"{key}share": float(chosen.mean()),
        f"{key}precision": float(correct[chosen].mean()) if chosen.any() else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="skip cross-validation")
    parser.add_argument(
        "--default-only",
        action="store_true",
        help="only the default model on the raw messages, with its per-category "
        "table and confusion matrix (seconds; writes no results file)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    parser.add_argument(
        "--copies",
        choices=["near", "exact"],
        default="near",
        help="which copies of a test message cross-validation withholds from "
        "training: near (default: also edited reposts) or exact (as the "
        "held-back set was drawn; see message_groups)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a TrainParams field (repeatable)",
    )
    args = parser.parse_args()
    if not RAW.exists() or not SEGMENTED.exists():
        print(f"跳过: 找不到 {DATA} 中的真实留言数据（需要 {RAW.name} 和 {SEGMENTED.name}）")
        return 0
    params = parse_params(args.param, args.jobs)
    if args.default_only:
        return default_only(params)
    results: dict = {"params": _params_dict(params), "cv_seed": args.seed, "cv_copies": args.copies}

    raw_texts, raw_y, raw_ids = load_raw()
    seg_texts, seg_y, seg_ids = load_segmented()
    say(f"raw {len(raw_texts)} messages {dict(Counter(raw_y))}; segmented {len(seg_texts)}")

    with tempfile.TemporaryDirectory() as tmp:
        say("training the final model on raw + segmented (timed, fresh process) …")
        seconds, peak_kib, ece, model_path = time_training(
            raw_texts, raw_y, seg_texts, seg_y, params, Path(tmp)
        )
        results |= {
            "train_seconds": seconds,
            "train_peak_rss_mb": peak_kib / 1024,
            "train_cv_ece": ece,
            "train_examples": len(raw_texts) + len(seg_texts),
            "model_file_mb": model_path.stat().st_size / 2**20,
        }

        say("latency and cold start …")
        results |= latency_one_core(model_path, raw_texts)
        results |= cold_start(model_path)

        say("default model (seed corpus) on the raw messages …")
        results |= default_model_on_raw(raw_texts, raw_y, Path(tmp), params)
        results.pop("default_mapped_report")

    if not args.quick:
        say("cross-validation on raw messages …")
        textmod.load_userdict()
        raw_an = textmod.analyze_many(raw_texts, args.jobs)
        seg_an = textmod.analyze_many(seg_texts, args.jobs)
        groups = message_groups(raw_an, seg_an, raw_ids, seg_ids, args.copies)
        results["raw_messages_with_a_copy_in_raw"] = int(
            len(raw_an) - len(set(groups[: len(raw_an)].tolist()))
        )
        cv = cross_validate(
            (raw_texts, raw_y, raw_an),
            (seg_texts, seg_y, seg_an),
            groups,
            args.folds,
            params,
            args.seed,
        )
        results |= {"cv_" + k: v for k, v in cv.items()}
    results["peak_rss_bench_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classifier.json").write_text(json.dumps(results, ensure_ascii=False, indent=2))
    say(f"written {RESULTS / 'classifier.json'}")
    return 0


def default_only(params: TrainParams) -> int:
    """The default-model part alone: mapped accuracy, per-category table, confusion matrix."""
    raw_texts, raw_y, _ = load_raw()
    with tempfile.TemporaryDirectory() as tmp:
        r = default_model_on_raw(raw_texts, raw_y, Path(tmp), params)
    print(r.pop("default_mapped_report").table())
    for key, value in r.items():
        print(f"{key}: {value}")
    return 0


def print_table(r: dict) -> None:
    rows = [
        (
            f"CV macro-F1, raw messages (copies withheld: {r.get('cv_copies')})",
            r.get("cv_macro_f1"),
            "≥ 0.94",
        ),
        ("CV accuracy, raw messages", r.get("cv_accuracy"), ""),
        ("training seconds (raw+segmented, 2 cores)", r["train_seconds"], "≤ 60"),
        ("training peak RSS MB", r["train_peak_rss_mb"], ""),
        ("latency p50 ms (one core)", r["latency_ms_p50"], "≤ 1"),
        ("latency p99 ms (one core)", r["latency_ms_p99"], ""),
        ("cold start s (subprocess wall)", r["cold_start_seconds"], "≤ 2"),
        ("cold start peak RSS MB", r["cold_start_peak_rss_mb"], ""),
        ("model file MB", r["model_file_mb"], ""),
        ("default model → 7 categories, accuracy", r["default_mapped_accuracy"], "≥ 0.85"),
        ("default model → 7 categories, macro-F1", r["default_mapped_macro_f1"], ""),
        ("default model → 7 categories, ECE", r["default_mapped_ece"], "≤ 0.05"),
        (
            "default model → 7 categories, ECE (top department)",
            r["default_mapped_ece_top_department"],
            "",
        ),
        ("default model, seed corpus CV, ECE", r["default_cv_ece"], "≤ 0.05"),
        (
            f"confident (≥ {r['default_confidence_threshold']}): share",
            r["default_confident_share"],
            "",
        ),
        ("  … right (category)", r["default_confident_precision"], ""),
        (
            f"auto-dispatched (≥ {r['default_auto_dispatch_threshold']}): share",
            r["default_auto_dispatch_share"],
            "",
        ),
        ("  … right (category)", r["default_auto_dispatch_precision"], ""),
        ("default model training seconds", r["default_train_seconds"], ""),
    ]
    if "train_cv_ece" in r:
        rows.insert(3, ("raw+segmented model, held-out ECE", r["train_cv_ece"], "≤ 0.05"))
    print(f"{'measure':<50}{'value':>12}  target")
    for name, value, target in rows:
        shown = "—" if value is None else f"{value:.4f}" if value < 10 else f"{value:.1f}"
        print(f"{name:<50}{shown:>12}  {target}")
    print("default model: top department's probability ≥ t → share of messages, right")
    for t, m in r["default_thresholds"].items():
        right = "—" if m["precision"] is None else f"{m['precision']:.4f}"
        print(f"  t = {t:<5} {m['share']:.4f}  {right}")


if __name__ == "__main__":
    sys.exit(main())
