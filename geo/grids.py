"""The grid hierarchy (网格): records, validation, and walking up and down the tree.

Levels run district > street > community > area > grid > micro; a level may be skipped
(片 "area" is optional). Codes nest by prefix (WC, WC-YLD, WC-YLD-YX …), the same way the
national statistical area codes (430112, 430112001 …) do.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("district", "street", "community", "area", "grid", "micro")
LEVEL_NAMES = {
    "district": "区",
    "street": "街道",
    "community": "社区",
    "area": "片区",
    "grid": "网格",
    "micro": "微网格",
}
# Gazetteers kept in spreadsheets by district staff often spell the level in Chinese.
LEVEL_ALIASES = {
    "区": "district",
    "县": "district",
    "街道": "street",
    "镇": "street",
    "乡": "street",
    "社区": "community",
    "村": "community",
    "片": "area",
    "片区": "area",
    "网格": "grid",
    "微网格": "micro",
}
GAZETTEER_COLUMNS = ("code", "name", "level", "parent", "places")
PLACE_SEPARATORS = re.compile(r"[|；;]")
PATH_SEPARATOR = " › "


class GridError(ValueError):
    """Grid data that cannot be used; `problems` lists every message (each names its code)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GridRecord:
    code: str
    name: str
    level: str
    parent: str | None = None
    places: tuple[str, ...] = ()


def parse_level(value: str) -> str | None:
    """The level key for an English or Chinese spelling, or None when unknown."""
    value = value.strip()
    if value in LEVELS:
        return value
    return LEVEL_ALIASES.get(value)


def split_places(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in PLACE_SEPARATORS.split(value) if p.strip())


class GridTree:
    """A validated grid hierarchy. Raises GridError listing every problem found."""

    def __init__(self, records: Iterable[GridRecord]):
        records = list(records)
        _raise_if_any(_check(records))
        self._records = {r.code: r for r in records}
        self._children: dict[str, list[str]] = {code: [] for code in self._records}
        for r in records:
            if r.parent:
                self._children[r.parent].append(r.code)
        for kids in self._children.values():
            kids.sort()
        self.roots = tuple(sorted(r.code for r in records if not r.parent))

    def __contains__(self, code: object) -> bool:
        return code in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[GridRecord]:
        return iter(self._records.values())

    def record(self, code: str) -> GridRecord:
        try:
            return self._records[code]
        except KeyError:
            raise KeyError(f"未知网格编码 {code}") from None

    def level_of(self, code: str) -> str:
        return self.record(code).level

    def depth(self, code: str) -> int:
        """Position of the code's level in LEVELS: larger is deeper (finer)."""
        return LEVELS.index(self.level_of(code))

    def children(self, code: str) -> tuple[str, ...]:
        self.record(code)
        return tuple(self._children[code])

    def ancestors(self, code: str) -> tuple[str, ...]:
        """Parent first, up to the root."""
        out = []
        parent = self.record(code).parent
        while parent:
            out.append(parent)
            parent = self._records[parent].parent
        return tuple(out)

    def lineage(self, code: str) -> tuple[str, ...]:
        """The code itself, then its ancestors: the order in which to look for someone responsible."""
        return (code, *self.ancestors(code))

    def descendants(self, code: str) -> tuple[str, ...]:
        """Every code below this one, depth first, in code order."""
        out: list[str] = []
        stack = list(reversed(self.children(code)))
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(self._children[current]))
        return tuple(out)

    def subtree(self, code: str) -> tuple[str, ...]:
        return (code, *self.descendants(code))

    def is_within(self, code: str, area: str) -> bool:
        """True when `code` is `area` or lies below it."""
        return code == area or area in self.ancestors(code)

    def path_names(self, code: str) -> str:
        """月亮岛街道 › 银星村 › 银星村第一网格: names from the street down (the district is implied)."""
        chain = [self._records[c] for c in reversed(self.lineage(code))]
        return PATH_SEPARATOR.join(r.name for r in chain if r.level != "district")

    def places(self) -> Iterator[tuple[str, str]]:
        """(place name, code) pairs; every grid's own name counts as one of its places."""
        for r in self._records.values():
            yield r.name, r.code
            for place in r.places:
                yield place, r.code


def _raise_if_any(problems: list[str]) -> None:
    if problems:
        raise GridError(problems)


def _check(records: list[GridRecord]) -> list[str]:
    problems: list[str] = []
    by_code: dict[str, GridRecord] = {}
    for r in records:
        problems += _check_record(r)
        if r.code in by_code:
            problems.append(f"网格编码 {r.code} 重复")
        by_code[r.code] = r
    known_levels = [r.level for r in records if r.level in LEVELS]
    top = min(known_levels, key=LEVELS.index) if known_levels else None
    for r in records:
        if r.level not in LEVELS:
            continue
        if not r.parent:
            if r.level != top:
                problems.append(f"网格 {r.code}（{r.name}）缺少上级网格")
            continue
        parent = by_code.get(r.parent)
        if parent is None:
            problems.append(f"网格 {r.code} 的上级 {r.parent} 不存在")
            continue
        if parent.level in LEVELS and LEVELS.index(r.level) <= LEVELS.index(parent.level):
            problems.append(
                f"网格 {r.code} 的层级（{LEVEL_NAMES[r.level]}）应低于上级 {parent.code}"
                f"（{LEVEL_NAMES[parent.level]}）"
            )
    return problems


def _check_record(r: GridRecord) -> list[str]:
    label = r.code or f"（名称 {r.name}）"
    problems = []
    if not r.code or r.code != r.code.strip() or any(ch.isspace() for ch in r.code):
        problems.append(f"网格编码 {label!r} 不能为空或含空格")
    if not r.name.strip():
        problems.append(f"网格 {label} 缺少名称")
    if r.level not in LEVELS:
        problems.append(f"网格 {label} 的层级 {r.level!r} 无效，应为 {'、'.join(LEVELS)} 之一")
    if r.parent == r.code:
        problems.append(f"网格 {label} 不能以自己为上级")
    return problems


def records_from_config(entries: Iterable[Mapping]) -> list[GridRecord]:
    """GridRecords from config.toml's [[grids]] tables (plain dicts)."""
    records, problems = [], []
    for i, entry in enumerate(entries, start=1):
        code = str(entry.get("code", "")).strip()
        places = entry.get("places", [])
        if isinstance(places, str) or not all(isinstance(p, str) for p in places):
            problems.append(f"第 {i} 个 [[grids]]（{code}）的 places 应为字符串列表")
            places = []
        level = parse_level(str(entry.get("level", ""))) or str(entry.get("level", ""))
        records.append(
            GridRecord(
                code=code,
                name=str(entry.get("name", "")).strip(),
                level=level,
                parent=entry.get("parent") or None,
                places=tuple(p.strip() for p in places if p.strip()),
            )
        )
    _raise_if_any(problems)
    return records


def load_gazetteer(path: str | Path) -> list[GridRecord]:
    """Grid records from a CSV gazetteer (code,name,level,parent,places; places split by | or ；)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GridError([f"网格表文件不存在: {path}"]) from None
    except UnicodeDecodeError:
        raise GridError([f"网格表 {path} 不是 UTF-8 编码，请另存为“CSV UTF-8”后再试"]) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in GAZETTEER_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        header = ",".join(GAZETTEER_COLUMNS)
        raise GridError([f"网格表 {path} 缺少列: {', '.join(missing)}（表头应为 {header}）"])
    records, problems = [], []
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        if None in row:
            problems.append(f"网格表 {path} 第 {line} 行的列数多于表头")
            continue
        level_text = (row["level"] or "").strip()
        level = parse_level(level_text)
        if level is None:
            problems.append(f"网格表 {path} 第 {line} 行: 层级 {level_text!r} 无效")
            continue
        records.append(
            GridRecord(
                code=(row["code"] or "").strip(),
                name=(row["name"] or "").strip(),
                level=level,
                parent=(row["parent"] or "").strip() or None,
                places=split_places(row["places"] or ""),
            )
        )
    _raise_if_any(problems)
    return records


def write_gazetteer(path: str | Path, records: Iterable[GridRecord]) -> None:
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(GAZETTEER_COLUMNS)
        for r in records:
            writer.writerow([r.code, r.name, r.level, r.parent or "", "|".join(r.places)])
