"""A district's departments and the shipped corpus's labels: which corpus labels each
department takes (several, one or none), applied when training from the corpus."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from classifier.data import DataError

if TYPE_CHECKING:
    from whistle.config import Settings

# A department learned from staff decisions alone is trained (and suggested) once it has this
# many examples. Fewer cannot be cross-validated fairly (the 5 calibration folds each need one
# of every label, and with fewer every other label is calibrated on fewer folds), and a
# department known from one to four messages is mostly their words: suggested for any message
# that shares one of them, which costs the other departments more than it gains.
MIN_DEPARTMENT_EXAMPLES = 5

# Which labels a model file gives, in its meta: the learning loop's models give department
# codes, the model built from the shipped corpus gives corpus labels. Older files say
# nothing: theirs are department codes when each is a department's code.
LABEL_SPACE = "label_space"
CORPUS_LABELS = "corpus"
DEPARTMENT_CODES = "departments"


@dataclass(frozen=True)
class LabelMap:
    """department → the corpus labels it takes; a department may take none (it is then
    learned from staff decisions alone). Corpus labels no department takes are not used."""

    departments: tuple[str, ...]
    corpus_labels: Mapping[str, tuple[str, ...]]

    @classmethod
    def identity(cls, departments: Sequence[str]) -> LabelMap:
        """Each department takes the corpus label spelled like its code (the shipped case)."""
        return cls(tuple(departments), {d: (d,) for d in departments})

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, object],
        departments: Sequence[str],
        known_labels: Collection[str] | None = None,
    ) -> LabelMap:
        """From a config table `department = "label"` or `= ["label", …]` (or `= []`);
        departments it leaves out take no corpus label. DataError names any mistake."""
        departments = tuple(departments)
        if len(set(departments)) != len(departments) or not departments:
            raise DataError("部门列表为空或有重复的部门编码")
        taken: dict[str, tuple[str, ...]] = {d: () for d in departments}
        for department, value in table.items():
            if department not in taken:
                raise DataError(
                    f"语料标签映射中的部门 {department} 不在部门列表中"
                    f"（部门: {', '.join(departments)}）"
                )
            taken[department] = _labels_of(department, value)
        _check_each_label_once(taken)
        if known_labels is not None:
            unknown = sorted({lab for labs in taken.values() for lab in labs} - set(known_labels))
            if unknown:
                raise DataError(
                    f"语料中没有标签 {', '.join(unknown)}"
                    f"（语料的标签: {', '.join(sorted(known_labels))}）"
                )
        return cls(departments, taken)

    @classmethod
    def from_settings(
        cls, settings: Settings, known_labels: Collection[str] | None = None
    ) -> LabelMap:
        """The district's map: each department's `corpus_labels` in config.toml (default: its
        own code, when known_labels has it)."""
        table = settings.corpus_label_table(known_labels)
        return cls.from_table({d: list(labs) for d, labs in table.items()}, list(table))

    def department_of(self, corpus_label: str) -> str | None:
        for department, labels in self.corpus_labels.items():
            if corpus_label in labels:
                return department
        return None

    def apply(self, examples: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Corpus (text, label) pairs as (text, department); labels no department takes are
        left out."""
        to_department = {lab: d for d, labs in self.corpus_labels.items() for lab in labs}
        return [(text, to_department[lab]) for text, lab in examples if lab in to_department]

    def gives_corpus_labels(self, meta: Mapping[str, object], labels: Sequence[str]) -> bool:
        """Whether a model (its meta and labels) gives corpus labels, to be folded."""
        space = meta.get(LABEL_SPACE)
        if space in (CORPUS_LABELS, DEPARTMENT_CODES):
            return space == CORPUS_LABELS
        return not set(labels) <= set(self.departments)

    def fold(self, labels: Sequence[str], proba: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        """A corpus-label model's probabilities as the departments': a department's is the sum
        of its labels' (the chance the message is any of them). Labels no department takes
        are dropped, their share is not spread over the rest (that would overstate the
        others); departments that take none of `labels` are not among the answers."""
        index = {lab: i for i, lab in enumerate(labels)}
        departments, folded = [], []
        for department in self.departments:
            taken = [index[lab] for lab in self.corpus_labels.get(department, ()) if lab in index]
            if taken:
                departments.append(department)
                folded.append(float(np.sum(proba[taken])))
        return tuple(departments), np.asarray(folded, dtype=float)

    @property
    def without_corpus(self) -> tuple[str, ...]:
        """Departments learned from staff decisions alone."""
        return tuple(d for d in self.departments if not self.corpus_labels.get(d))

    def unused(self, corpus_labels: Iterable[str]) -> list[str]:
        """Corpus labels that no department takes (their examples are not trained on)."""
        taken = {lab for labs in self.corpus_labels.values() for lab in labs}
        return sorted(set(corpus_labels) - taken)


def _labels_of(department: str, value: object) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise DataError(
            f"语料标签映射中部门 {department} 的值应为语料标签或标签列表"
            f"（可为空列表），现为 {value!r}"
        )
    return tuple(v.strip() for v in values)


def _check_each_label_once(taken: Mapping[str, tuple[str, ...]]) -> None:
    counts = Counter(lab for labs in taken.values() for lab in labs)
    twice = sorted(lab for lab, n in counts.items() if n > 1)
    if twice:
        owners = {lab: [d for d, labs in taken.items() if lab in labs] for lab in twice}
        raise DataError(
            "每个语料标签只能归入一个部门；"
            + "；".join(f"{lab} 同时归入 {'、'.join(ds)}" for lab, ds in owners.items())
        )
