"""Learning-loop benchmark on the real messages in ../shared/data (Teddy Cup 2020, problem C).

    python bench/learning_bench.py [--test-every 5] [--new-department 卫生计生] [--jobs 2]
                                   [--retrain-after 50] [--margin 0.02] [--department-margin 0.05]
                                   [--holdout-every 10] [--department-cap 5] [--min-held-out 50]
                                   [--skip-new] [--skip-studies] [--raw-only]

A district whose departments are the 7 Teddy categories, the shipped corpus's departments
mapped onto them (classifier/teddy2020c_map.toml). A triage clerk works through the raw
messages in the file's own order (not shuffled: the file comes in long runs of one category,
the first 637 all 城乡建设), confirming each right suggestion and correcting each wrong one;
the loop retrains (in a separate process) each time `--retrain-after` new corrections have
come in, the gate decides, a promotion hot-reloads the running Suggester.

Two stretches: the raw file's messages (2,281 after the test is held out, only ~360 of them
corrected), then — so that 1,000 corrections and more can be measured — the labelled messages
of the segmented file whose ids are not in the raw file, in that file's order, leaving out
copies of test messages (classifier.dedupe); their text was cut into words with stop words
removed by the data's editor: the words are joined again (no spaces), the title put before
them where the file has one. `--raw-only` replays the first stretch alone.

Held out from the stream: every `--test-every`-th raw message with its copies. Reports the
running model's accuracy on them after 0, 100, 300, 1,000 and 2,800 decisions and
corrections (as far as the stream goes, each point naming its stretch), every gate decision,
and:
- the same replay for a district whose `--new-department` takes no corpus label (learned from
  corrections alone): its recall after its first 50 corrections;
- the "why both sets" finding: the starting model retrained by hand on the first 300 (and 100)
  messages, unweighted and ungated, and what each held-out set says about it;
- what holding the reference slice out of the first model costs.
Prints a table and writes bench/results/learning.json. Skips when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from classifier import Suggester
from classifier import text as textmod
from classifier.data import Row, corpus_files, read_examples, read_label_map, read_rows
from classifier.dedupe import near_duplicate_groups
from classifier.labels import LabelMap
from classifier.learning import (
    CHALLENGER_PARAMS,
    ChallengerJob,
    LearningParams,
    StaffDecision,
    decision_weights,
    evaluate,
    gate,
    held_out,
    plan_training,
    retrain,
    train_challenger,
)
from classifier.metrics import in_file_terms
from classifier.model import load_model
from classifier.registry import ModelRegistry
from classifier.training import TrainParams, train

DATA = Path(os.environ.get("WHISTLE_SHARED_DATA", REPO.parent / "shared" / "data"))
RAW = DATA / "teddy2020c_raw_train.csv"
SEGMENTED = DATA / "teddy2020c_segmented_train.csv"
RESULTS = REPO / "bench" / "results"
TEDDY_MAP = REPO / "classifier" / "teddy2020c_map.toml"
CHECKPOINTS = (0, 100, 300, 1000, 2800)
NEW_DEPARTMENT_AFTER = 50  # corrections for the new department
WATCH_MARKS = (10, 25, 50, 100)  # its corrections at which the running model is measured
START = datetime(2024, 1, 1)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_stream() -> list[Row]:
    """The labelled raw messages in the file's order, each with a unique id."""
    rows = [r for r in read_rows(RAW, need_label=True) if r.text and r.label]
    seen: Counter = Counter()
    out = []
    for r in rows:
        seen[r.id] += 1
        out.append(
            Row(id=r.id if seen[r.id] == 1 else f"{r.id}#{seen[r.id]}", text=r.text, label=r.label)
        )
    return out


def _number(value: str) -> str:
    """An id as the files write it ("12" or "12.0") in one form."""
    try:
        return str(int(float(value)))
    except ValueError:
        return value


def load_continuation(raw: list[Row], test: list[Row], jobs: int) -> list[Row]:
    """The second stretch: the segmented file's labelled messages whose ids are not in the raw
    file, in file order, their words joined again (after the title, if any), without copies
    of test messages. Ids are "seg:<id>"."""
    if not SEGMENTED.exists():
        return []
    raw_ids = {_number(r.id.split("#")[0]) for r in raw}
    rows = []
    for r in read_rows(SEGMENTED, need_label=True):
        if not r.label or _number(r.id) in raw_ids:
            continue
        # read_rows put the title (if any) before the text: only the words are joined
        title, _, words = r.text.rpartition("\n")
        text = (title + "\n" if title else "") + "".join(words.split())
        if text.strip():
            rows.append(Row(id=f"seg:{_number(r.id)}", text=text, label=r.label))
    docs = textmod.analyze_many([r.text for r in test] + [r.text for r in rows], jobs)
    groups = near_duplicate_groups(docs).tolist()
    of_test = set(groups[: len(test)])
    return [r for r, g in zip(rows, groups[len(test) :]) if g not in of_test]


def split_test(rows: list[Row], every: int, jobs: int) -> tuple[list[Row], list[Row]]:
    """(stream, test): every `every`-th message is a test message, with all its copies."""
    groups = near_duplicate_groups(textmod.analyze_many([r.text for r in rows], jobs))
    first: dict[int, int] = {}
    for i, g in enumerate(groups.tolist()):
        first.setdefault(g, i)
    is_test = [first[g] % every == 0 for g in groups.tolist()]
    return ([r for r, t in zip(rows, is_test) if not t], [r for r, t in zip(rows, is_test) if t])


def district_map(no_corpus: str | None = None) -> LabelMap:
    """The 7 categories as departments, taking the corpus labels of teddy2020c_map.toml
    (no_corpus: that one takes none)."""
    table = tomllib.loads(TEDDY_MAP.read_text(encoding="utf-8"))
    if no_corpus:
        table[no_corpus] = []
    return LabelMap.from_table(table, list(table))


class Replay:
    """The clerk, the loop and the running model, for one district."""

    def __init__(
        self,
        name: str,
        label_map: LabelMap,
        corpus,
        test: list[Row],
        params: LearningParams,
        train_params: TrainParams,
        folder: Path,
        watch: str | None = None,
    ):
        self.name, self.test, self.watch, self.folder = name, test, watch, folder
        self.probe: dict | None = None
        self.watched: list[dict] = []  # the running model at the watched department's marks
        self.trained: dict[str, int] = {}  # version → its decisions of that department
        self.job = ChallengerJob(
            corpus=corpus,
            decisions=[],
            label_map=label_map,
            models_dir=folder / "models",
            params=params,
            train_params=train_params,
            userdict_words=tuple(textmod.read_userdict(textmod.DEFAULT_USERDICT)),
        )
        self.registry = ModelRegistry(self.job.models_dir)
        self.raw_count = 0  # the stream's first messages that are raw (set by run)
        self.scores: dict[str, dict] = {}  # version → test metrics
        self.events: list[dict] = []
        self.points: list[dict] = []

    def test_metrics(self, suggester: Suggester) -> dict:
        version = suggester.model_version
        if version not in self.scores:
            self.scores[version] = evaluate(suggester.model, [(r.text, r.label) for r in self.test])
        return self.scores[version]

    def point(self, suggester, decisions: int, corrections: int, watched: int) -> dict:
        m = self.test_metrics(suggester)
        row = {
            "stretch": "raw" if decisions <= self.raw_count else "segmented",
            "decisions": decisions,
            "corrections": corrections,
            "version": suggester.model_version,
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
        }
        if self.watch:
            row |= {
                "watched_corrections": watched,
                "watched_recall": m["departments"].get(self.watch, {}).get("recall", 0.0),
            }
        return row

    def run(self, stream: list[Row], raw_count: int | None = None) -> dict:
        """Replay the stream; its first raw_count messages (default all) are the raw stretch."""
        started = time.perf_counter()
        self.raw_count = len(stream) if raw_count is None else raw_count
        raw_end: dict | None = None
        first, _ = retrain(self.job)
        suggester = Suggester.from_path(self.registry.served)
        self.points.append(self.point(suggester, 0, 0, 0))
        say(f"[{self.name}] start {first.version}: test accuracy {self.points[0]['accuracy']:.4f}")
        decisions: list[StaffDecision] = []
        corrections = since = watched = 0
        by_decisions, by_corrections = set(CHECKPOINTS), set(CHECKPOINTS)
        for i, row in enumerate(stream, start=1):
            right = suggester.suggest(row.text).label == row.label
            decisions.append(
                StaffDecision(
                    row.id, row.text, row.label, START + timedelta(minutes=10 * i), not right
                )
            )
            corrections += not right
            since += not right
            new_watched = not right and row.label == self.watch
            watched += new_watched
            if new_watched and watched == NEW_DEPARTMENT_AFTER:
                self.probe = self.probe_at(decisions)
            if since >= self.job.params.retrain_after_corrections:
                self.retrain(decisions, suggester, corrections, watched)
                since = 0
            if new_watched and watched in WATCH_MARKS:
                self.watched.append(
                    self.point(suggester, i, corrections, watched)
                    | {"in_training": self.trained.get(suggester.model_version, 0)}
                )
            crossed = {c for c in by_corrections if c <= corrections}
            if i == self.raw_count < len(stream):
                raw_end = self.point(suggester, i, corrections, watched)
            if i in by_decisions or crossed:
                self.points.append(self.point(suggester, i, corrections, watched))
                by_decisions.discard(i)
                by_corrections -= crossed
        self.points.append(self.point(suggester, len(stream), corrections, watched))
        in_service = {p["version"] for p in self.points} | {
            e["version"] for e in self.events if e["promoted"]
        }
        return {
            "points": self.points,
            "events": self.events,
            "probe": self.probe,
            "watched": self.watched,
            "start_accuracy": self.points[0]["accuracy"],
            "raw_end": raw_end,
            "lowest_accuracy_in_service": min(
                self.scores[v]["accuracy"] for v in in_service if v in self.scores
            ),
            "decisions": len(stream),
            "corrections": corrections,
            "seconds": round(time.perf_counter() - started, 1),
        }

    def probe_at(self, decisions: list[StaffDecision]) -> dict:
        """A challenger trained right at this point, outside the loop (its own folder): what
        the watched department's recall would be had the loop retrained just then."""
        result = train_challenger(
            replace(self.job, decisions=list(decisions), models_dir=self.folder / "probe")
        )
        m = evaluate(load_model(result.path), [(r.text, r.label) for r in self.test])
        mine = m["departments"].get(self.watch, {})
        return {
            "decisions": len(decisions),
            "in_training": result.counts["per_department"][self.watch]["decisions"],
            "recall": mine.get("recall", 0.0),
            "precision": mine.get("precision", 0.0),
            "accuracy": m["accuracy"],
        }

    def retrain(self, decisions, suggester: Suggester, corrections: int, watched: int) -> None:
        result, decision = retrain(replace(self.job, decisions=list(decisions)))
        champion = self.test_metrics(suggester)
        challenger = evaluate(
            Suggester.from_path(result.path).model, [(r.text, r.label) for r in self.test]
        )
        self.scores.setdefault(result.version, challenger)
        suggester.reload_if_changed()  # the promotion replaced the served file
        event = {
            "stretch": "raw" if len(decisions) <= self.raw_count else "segmented",
            "decisions": len(decisions),
            "corrections": corrections,
            "version": result.version,
            "promoted": decision.promote,
            "reasons": list(decision.reasons),
            "challenger_test_accuracy": challenger["accuracy"],
            "champion_test_accuracy": champion["accuracy"],
            "recent": [
                result.champion_metrics["recent"]["macro_f1"],
                result.metrics["recent"]["macro_f1"],
                result.metrics["recent"]["n"],
            ],
            "reference": [
                result.champion_metrics["reference"]["macro_f1"],
                result.metrics["reference"]["macro_f1"],
                result.metrics["reference"]["n"],
            ],
            "training": {
                k: result.counts[k]
                for k in ("training_examples", "training_corrections", "training_confirmed")
            },
            "seconds": result.seconds,
        }
        if self.watch:
            self.trained[result.version] = result.counts["per_department"][self.watch]["decisions"]
            event |= {
                "watched_corrections": watched,
                "watched_in_training": result.counts["per_department"][self.watch]["decisions"],
                "watched_recall": challenger["departments"].get(self.watch, {}).get("recall", 0.0),
            }
        self.events.append(event)
        say(
            f"[{self.name}] {len(decisions)} decisions, {corrections} corrections: "
            f"challenger {challenger['accuracy']:.4f} vs champion {champion['accuracy']:.4f} → "
            + ("promoted" if decision.promote else "refused: " + " / ".join(decision.reasons))
        )


# ---- the "why both sets" finding and the reference slice's cost ------------------------------


def naive_retrain(
    corpus,
    label_map: LabelMap,
    stream: list[Row],
    test: list[Row],
    params: LearningParams,
    train_params: TrainParams,
    words,
) -> dict:
    """The issue's finding: the starting model retrained by hand on the first n stream
    messages (whole mapped corpus plus those messages, unweighted, no gate). Then the gate's
    view of the first 300: champion = the loop's first model, challenger = it retrained on the
    300 (held-out ones left out) unweighted or weighted, judged on the recent set (the held-out
    of the 300) and on the reference set as it is at a cold start (the corpus slice) and in a
    district with a history (plus held-out older cases: those of the rest of the stream)."""
    textmod.add_words(list(words))
    quiet = {"userdict_words": words, "progress": lambda m: None}
    test_pairs = [(r.text, r.label) for r in test]
    mapped = label_map.apply(corpus)
    out: dict = {
        "start": _accuracy_and_share(
            train(mapped, train_params, calibrate=False, **quiet).model, test_pairs
        )
    }
    for n in (100, 300):
        model = train(
            mapped + [(r.text, r.label) for r in stream[:n]], train_params, calibrate=False, **quiet
        ).model
        out[f"first_{n}"] = _accuracy_and_share(model, test_pairs) | {
            "stream_labels": dict(Counter(r.label for r in stream[:n]))
        }

    plan0 = plan_training(corpus, [], label_map, params, n_jobs=train_params.n_jobs)
    champion = train(
        plan0.training.examples, train_params, analyzed=plan0.training.analyzed, **quiet
    ).model
    every = params.holdout_every
    burst, history = stream[:300], stream[300:]
    trained = [r for r in burst if not held_out(r.id, every)]
    sets = {
        "recent": [(r.text, r.label) for r in burst if held_out(r.id, every)],
        "reference_cold": plan0.reference,
        "reference_history": plan0.reference
        + [(r.text, r.label) for r in history if held_out(r.id, every)],
    }
    counts = Counter(r.label for r in trained)
    weight_of = decision_weights(dict(counts), label_map.departments, params.department_cap)
    before = {k: evaluate(champion, v, params.min_cases) for k, v in sets.items()}
    results = {}
    for name, weigh in (("unweighted", lambda r: 1.0), ("weighted", lambda r: weight_of[r.label])):
        model = train(
            plan0.training.examples + [(r.text, r.label) for r in trained],
            train_params,
            weights=plan0.training.weights + [weigh(r) for r in trained],
            **quiet,
        ).model
        after = {k: evaluate(model, v, params.min_cases) for k, v in sets.items()}
        gates = {}
        for view, names in (
            ("recent_only", ("recent",)),
            ("cold_start", ("recent", "reference_cold")),
            ("with_history", ("recent", "reference_history")),
        ):
            as_sets = dict(zip(("recent", "reference"), names))
            gates[view] = gate(
                {k: before[v] for k, v in as_sets.items()},
                {k: after[v] for k, v in as_sets.items()},
                params.margin,
                params.min_cases,
                params.department_margin,
            ).as_dict()
        # The sets alone say the above; the product's gate also wants min_held_out of them.
        gates["cold_start_product"] = gate(
            {"recent": before["recent"], "reference": before["reference_cold"]},
            {"recent": after["recent"], "reference": after["reference_cold"]},
            params.margin,
            params.min_cases,
            params.department_margin,
            params.min_held_out,
        ).as_dict()
        results[name] = {
            "test": _accuracy_and_share(model, test_pairs),
            "macro_f1": {
                k: [before[k]["macro_f1"], after[k]["macro_f1"], after[k]["n"]] for k in sets
            },
            "gate": gates,
        }
    out["champion_test"] = _accuracy_and_share(champion, test_pairs)
    out["gate_on_first_300"] = results
    return out


def _accuracy_and_share(model, pairs) -> dict:
    suggester = Suggester(model)
    predicted = [suggester.suggest(t).label for t, _ in pairs]
    top, count = Counter(predicted).most_common(1)[0]
    right = sum(p == t for p, (_, t) in zip(predicted, pairs))
    return {
        "accuracy": round(right / len(pairs), 4),
        "top_department": top,
        "top_share": round(count / len(pairs), 4),
    }


def reference_cost(corpus, label_map, test: list[Row], params, train_params, words) -> dict:
    """Test accuracy of the first model with and without the reference slice held out, and of
    the shipped default model (9 departments, mapped to the categories)."""
    textmod.add_words(list(words))
    pairs = [(r.text, r.label) for r in test]
    plan = plan_training(corpus, [], label_map, params, n_jobs=train_params.n_jobs)
    held = train(
        plan.training.examples,
        train_params,
        userdict_words=words,
        analyzed=plan.training.analyzed,
        progress=lambda m: None,
    ).model
    full = train(
        label_map.apply(corpus), train_params, userdict_words=words, progress=lambda m: None
    ).model
    default = train(list(corpus), train_params, userdict_words=words, progress=lambda m: None).model
    to_category = read_label_map(TEDDY_MAP)
    suggester = Suggester(default)
    mapped = [in_file_terms(suggester.suggest(t).top, to_category)[0] for t, _ in pairs]
    return {
        "without_reference_slice": evaluate(held, pairs)["accuracy"],
        "whole_corpus": evaluate(full, pairs)["accuracy"],
        "default_9_departments_mapped": round(
            sum(p == t for p, (_, t) in zip(mapped, pairs)) / len(pairs), 4
        ),
        "reference_slice_examples": plan.counts["corpus_reference"],
    }


def ceiling(
    corpus,
    label_map: LabelMap,
    stream: list[Row],
    more: list[Row],
    test: list[Row],
    train_params,
    words,
) -> dict:
    """What training on stream messages can reach at all, order aside: the mapped corpus plus
    every raw stream message, or plus 1,000 drawn at random (all departments by then), or plus
    both stretches, unweighted, nothing held out (calibration left out: it never changes the
    label suggested)."""
    pairs = [(r.text, r.label) for r in test]
    mapped = label_map.apply(corpus)
    drawn = random.Random(0).sample(stream, 1000)
    out = {}
    runs = [("all_stream", stream), ("random_1000", drawn)]
    if more:
        runs.append(("both_stretches", stream + more))
    for name, rows in runs:
        model = train(
            mapped + [(r.text, r.label) for r in rows],
            train_params,
            userdict_words=words,
            calibrate=False,
            progress=lambda m: None,
        ).model
        out[name] = evaluate(model, pairs)["accuracy"]
    return out


# ---- report ------------------------------------------------------------------------------------


def checkpoint_rows(run: dict, key: str) -> list[tuple]:
    """(count, accuracy, version) at each checkpoint the stream reached, by decisions or
    corrections."""
    rows = []
    for mark in CHECKPOINTS:
        hits = [p for p in run["points"] if p[key] >= mark]
        rows.append((mark, hits[0] if hits else None))
    return rows


def print_report(r: dict) -> None:
    if "main" in r:
        print_main(r)
    if "new_department" in r:
        print_new_department(r["new_department"])
    if "naive" in r:
        print_naive(r["naive"])


def print_main(r: dict) -> None:
    main = r["main"]
    print(
        f"stream: {r['stream']} raw messages (file order), then {r['continuation']} segmented "
        f"ones (ids not in the raw file, file order); test {r['test']} raw messages held out; "
        f"retrain after {r['params']['retrain_after_corrections']} corrections, margin "
        f"{r['params']['margin']}, department margin {r['params']['department_margin']}"
    )
    cost = r.get("reference_cost")
    print(
        f"first model: {main['start_accuracy']:.4f} on the test messages"
        + (
            f" (whole corpus: {cost['whole_corpus']:.4f}; shipped 9-department "
            f"default mapped: {cost['default_9_departments_mapped']:.4f})"
            if cost
            else ""
        )
    )
    if main.get("raw_end"):
        e = main["raw_end"]
        print(
            f"end of the raw stretch: {e['decisions']} decisions, {e['corrections']} "
            f"corrections, accuracy {e['accuracy']:.4f}; the segmented stretch follows"
        )
    for key, title in (("decisions", "decisions"), ("corrections", "corrections")):
        print(f"running model after N {title}:")
        for mark, p in checkpoint_rows(main, key):
            shown = (
                "(stream ended: " + f"{main[key]} in all)"
                if p is None
                else f"{p['accuracy']:.4f}  ({p['decisions']} decisions, {p['corrections']} "
                f"corrections, {p['stretch']} stretch, model {p['version']})"
            )
            print(f"  {mark:>5}  {shown}")
        end = main["points"][-1]
        print(
            f"    end  {end['accuracy']:.4f}  ({end['decisions']} decisions, "
            f"{end['corrections']} corrections)"
        )
    if "ceiling" in r:
        c = r["ceiling"]
        print(
            f"ceiling, order aside (corpus + stream messages, unweighted, none held out): raw "
            f"{c['all_stream']:.4f}, 1,000 raw drawn at random {c['random_1000']:.4f}"
            + (f", both stretches {c['both_stretches']:.4f}" if "both_stretches" in c else "")
        )
    print(
        f"lowest accuracy of any model in service: {main['lowest_accuracy_in_service']:.4f} "
        f"(start {main['start_accuracy']:.4f})"
    )
    print("gate decisions:")
    for e in main["events"]:
        verdict = "promoted" if e["promoted"] else "refused"
        print(
            f"  {e['decisions']:>5} dec {e['corrections']:>4} corr ({e['stretch']})  challenger "
            f"{e['challenger_test_accuracy']:.4f} vs {e['champion_test_accuracy']:.4f}  "
            f"recent {e['recent'][0]:.3f}→{e['recent'][1]:.3f} ({e['recent'][2]})  "
            f"reference {e['reference'][0]:.3f}→{e['reference'][1]:.3f}  {verdict}"
        )
        for reason in e["reasons"]:
            print(f"        {reason}")


def print_new_department(nd: dict) -> None:
    """The replay of a district whose new department takes no corpus label."""
    print(
        f"new department {nd['department']} (no corpus label): start accuracy "
        f"{nd['run']['start_accuracy']:.4f}, lowest in service "
        f"{nd['run']['lowest_accuracy_in_service']:.4f}"
    )
    for e in nd["run"]["events"]:
        print(
            f"  {e['decisions']:>5} dec  its corrections {e['watched_corrections']:>4} "
            f"(in training {e['watched_in_training']:>4})  its recall "
            f"{e['watched_recall']:.3f}  accuracy {e['challenger_test_accuracy']:.4f}  "
            + ("promoted" if e["promoted"] else "refused")
        )
    probe = nd["run"]["probe"]
    if probe:
        print(
            f"  a challenger trained at its {NEW_DEPARTMENT_AFTER}th correction "
            f"({probe['in_training']} of them trained on, the rest held out): recall "
            f"{probe['recall']:.3f}, precision {probe['precision']:.3f}, accuracy "
            f"{probe['accuracy']:.4f}"
        )
    for p in nd["run"]["watched"]:
        print(
            f"  running model at its {p['watched_corrections']}th correction: recall "
            f"{p['watched_recall']:.3f} (model trained on {p['in_training']} of its "
            f"decisions), accuracy {p['accuracy']:.4f}"
        )


def print_naive(n: dict) -> None:
    print(
        f"naive retrain (whole corpus + first n messages, unweighted, no gate): start "
        f"{n['start']['accuracy']:.4f}; first 100 → {n['first_100']['accuracy']:.4f} "
        f"({n['first_100']['top_share']:.0%} to {n['first_100']['top_department']}); "
        f"first 300 → {n['first_300']['accuracy']:.4f} "
        f"({n['first_300']['top_share']:.0%} to {n['first_300']['top_department']})"
    )
    for name, g in n["gate_on_first_300"].items():
        f1 = g["macro_f1"]
        print(
            f"  first model retrained on the first 300 ({name}): test "
            f"{g['test']['accuracy']:.4f} ({g['test']['top_share']:.0%} to "
            f"{g['test']['top_department']}); macro-F1 "
            + ", ".join(f"{k} {v[0]:.3f}→{v[1]:.3f} ({v[2]})" for k, v in f1.items())
        )
        for view, d in g["gate"].items():
            print(f"    gate {view}: {'promote' if d['promote'] else 'refuse'}")
            for reason in d["reasons"]:
                print(f"        {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-every", type=int, default=5)
    parser.add_argument("--new-department", default="卫生计生")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--retrain-after", type=int, default=50)
    parser.add_argument("--margin", type=float, default=LearningParams.margin)
    parser.add_argument("--department-margin", type=float, default=LearningParams.department_margin)
    parser.add_argument("--holdout-every", type=int, default=LearningParams.holdout_every)
    parser.add_argument("--department-cap", type=int, default=LearningParams.department_cap)
    parser.add_argument("--min-held-out", type=int, default=LearningParams.min_held_out)
    parser.add_argument("--skip-new", action="store_true", help="skip the new-department replay")
    parser.add_argument("--skip-studies", action="store_true", help="replays only (no ceiling …)")
    parser.add_argument("--raw-only", action="store_true", help="the raw stretch alone")
    parser.add_argument("--new-only", action="store_true", help="only the new-department replay")
    parser.add_argument("--out", default=str(RESULTS / "learning.json"))
    args = parser.parse_args()
    if not RAW.exists():
        print(f"跳过: 找不到 {RAW}（真实留言数据）")
        return 0
    params = LearningParams(
        retrain_after_corrections=args.retrain_after,
        margin=args.margin,
        department_margin=args.department_margin,
        holdout_every=args.holdout_every,
        department_cap=args.department_cap,
        min_held_out=args.min_held_out,
    )
    train_params = replace(CHALLENGER_PARAMS, n_jobs=args.jobs)
    words = textmod.read_userdict(textmod.DEFAULT_USERDICT)
    textmod.add_words(words)
    corpus = [ex for p in corpus_files(REPO / "classifier" / "corpus") for ex in read_examples(p)]
    stream, test = split_test(load_stream(), args.test_every, args.jobs)
    more = [] if args.raw_only else load_continuation(stream + test, test, args.jobs)
    say(
        f"stream {len(stream)} raw + {len(more)} segmented, test {len(test)} "
        f"{dict(Counter(r.label for r in test))}"
    )
    results: dict = {
        "params": vars(params) | {"test_every": args.test_every},
        "stream": len(stream),
        "continuation": len(more),
        "continuation_labels": dict(Counter(r.label for r in more)),
        "test": len(test),
    }
    label_map = district_map()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_studies:
            say("reference slice cost …")
            results["reference_cost"] = reference_cost(
                corpus, label_map, test, params, train_params, words
            )
            say("naive retrain …")
            results["naive"] = naive_retrain(
                corpus, label_map, stream, test, params, train_params, words
            )
            say("ceiling …")
            results["ceiling"] = ceiling(corpus, label_map, stream, more, test, train_params, words)
        if not args.new_only:
            say("replay …")
            results["main"] = Replay(
                "7 categories", label_map, corpus, test, params, train_params, Path(tmp) / "main"
            ).run(stream + more, len(stream))
        if not args.skip_new:
            new = args.new_department
            run = Replay(
                f"new {new}",
                district_map(new),
                corpus,
                test,
                params,
                train_params,
                Path(tmp) / "new",
                watch=new,
            ).run(stream + more, len(stream))
            results["new_department"] = {"department": new, "run": run}
    print_report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    say(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
