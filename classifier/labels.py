"""A district's departments and the shipped corpus's labels: which corpus labels each
department takes (several, one or none), applied when training from the corpus."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from classifier.data import DataError

# A department learned from staff decisions alone is trained (and suggested) once it has this
# many examples. Fewer cannot be cross-validated fairly (the 5 calibration folds each need one
# of every label, and with fewer every other label is calibrated on fewer folds), and a
# department known from one to four messages is mostly their words: suggested for any message
# that shares one of them, which costs the other departments more than it gains.
MIN_DEPARTMENT_EXAMPLES = 5


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
    def from_table(cls, table: Mapping[str, object], departments: Sequence[str],
                   known_labels: Collection[str] | None = None) -> LabelMap:
        """From a config table `department = "label"` or `= ["label", …]` (or `= []`);
        departments it leaves out take no corpus label. DataError names any mistake."""
        departments = tuple(departments)
        if len(set(departments)) != len(departments) or not departments:
            raise DataError("部门列表为空或有重复的部门编码")
        taken: dict[str, tuple[str, ...]] = {d: () for d in departments}
        for department, value in table.items():
            if department not in taken:
                raise DataError(f"语料标签映射中的部门 {department} 不在部门列表中"
                                f"（部门: {', '.join(departments)}）")
            taken[department] = _labels_of(department, value)
        _check_each_label_once(taken)
        if known_labels is not None:
            unknown = sorted({lab for labs in taken.values() for lab in labs}
                             - set(known_labels))
            if unknown:
                raise DataError(f"语料中没有标签 {', '.join(unknown)}"
                                f"（语料的标签: {', '.join(sorted(known_labels))}）")
        return cls(departments, taken)

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
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip()
                                               for v in values):
        raise DataError(f"语料标签映射中部门 {department} 的值应为语料标签或标签列表"
                        f"（可为空列表），现为 {value!r}")
    return tuple(v.strip() for v in values)


def _check_each_label_once(taken: Mapping[str, tuple[str, ...]]) -> None:
    counts = Counter(lab for labs in taken.values() for lab in labs)
    twice = sorted(lab for lab, n in counts.items() if n > 1)
    if twice:
        owners = {lab: [d for d, labs in taken.items() if lab in labs] for lab in twice}
        raise DataError("每个语料标签只能归入一个部门；"
                        + "；".join(f"{lab} 同时归入 {'、'.join(ds)}"
                                   for lab, ds in owners.items()))
