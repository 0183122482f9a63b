"""Reading labelled and unlabelled CSV files (UTF-8, columns text[,title][,label][,id]) and
label mapping files (CSV or TOML)."""

from __future__ import annotations

import csv
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

# The csv module refuses fields over 128 KiB by default; a long complaint may be larger.
csv.field_size_limit(16 * 1024 * 1024)


class DataError(Exception):
    """A data file or data set that cannot be used, with a message naming the problem."""


@dataclass(frozen=True)
class Row:
    """One message of a CSV file: its id (or row number), text (title joined) and label."""

    id: str
    text: str
    label: str | None


def read_rows(path: str | os.PathLike, *, need_label: bool) -> list[Row]:
    """Rows of a CSV file with a `text` column (and `label` when need_label); DataError if not."""
    path = Path(path)
    reader = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            # strict: a quote left open is an error, not the rest of the file in one field
            reader = csv.DictReader(fh, strict=True)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            _check_columns(path, columns, need_label)
            reader.fieldnames = columns
            return [_row(rec, n) for n, rec in enumerate(reader, start=1)]
    except FileNotFoundError as exc:
        raise DataError(f"文件不存在: {path}") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path} 是目录，不是 CSV 文件") from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} 不是 UTF-8 编码（第 {exc.start} 字节附近无法解码）；请另存为 UTF-8 后再试"
        ) from exc
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise DataError(
            f"{path} 第 {line} 行不是有效的 CSV（{exc}）；请检查该行之前的引号是否成对"
        ) from exc


def _check_columns(path: Path, columns: list[str], need_label: bool) -> None:
    needed = ["text", "label"] if need_label else ["text"]
    missing = [c for c in needed if c not in columns]
    if missing:
        found = ", ".join(columns) if columns else "（空文件）"
        hint = (
            "；看起来不是用逗号分隔的，请另存为逗号分隔的 CSV"
            if len(columns) == 1 and any(sep in columns[0] for sep in "\t;|")
            else ""
        )
        raise DataError(f"{path} 缺少列 {', '.join(missing)}；现有列: {found}{hint}")


def _row(rec: dict, number: int) -> Row:
    title = (rec.get("title") or "").strip()
    body = (rec.get("text") or "").strip()
    text = f"{title}\n{body}" if title and body else title or body
    label = (rec.get("label") or "").strip() or None
    row_id = (rec.get("id") or "").strip() or str(number)
    return Row(id=row_id, text=text, label=label)


def labelled_examples(rows: list[Row], path: str | os.PathLike) -> list[tuple[str, str]]:
    """(text, label) of rows that have both; DataError if a file holds none."""
    pairs = [(r.text, r.label) for r in rows if r.text and r.label]
    if not pairs:
        raise DataError(f"{path} 没有同时含 text 和 label 的数据行")
    return pairs


def read_examples(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Labelled (text, label) pairs of a training CSV."""
    return labelled_examples(read_rows(path, need_label=True), path)


def corpus_files(corpus_dir: Path) -> list[Path]:
    """The *.csv files of a corpus folder, sorted; DataError if there are none."""
    files = sorted(Path(corpus_dir).glob("*.csv"))
    if not files:
        raise DataError(f"语料目录 {corpus_dir} 中没有 CSV 文件")
    return files


def fingerprint(examples: list[tuple[str, str]]) -> str:
    """sha256 of the examples, independent of their order."""
    digest = hashlib.sha256()
    for text, label in sorted(examples):
        digest.update(label.encode("utf-8") + b"\x1f" + text.encode("utf-8") + b"\x1e")
    return digest.hexdigest()


def read_label_map(path: str | os.PathLike) -> dict[str, str]:
    """A mapping of a data file's labels to a model's labels, returned the other way round
    (model label → file label), for reading predictions in the file's terms.

    CSV: columns label,model_label, one pair a row. TOML: `"file label" = "model label"` or
    `= ["model label", …]`. A file label may stand for several model labels (城乡建设 → water,
    municipal, housing), a model label for one file label only."""
    path = Path(path)
    pairs = _toml_pairs(path) if path.suffix.lower() == ".toml" else _csv_pairs(path)
    to_file: dict[str, str] = {}
    for file_label, model_label in pairs:
        if not file_label or not model_label:
            raise DataError(f"映射文件 {path} 含有空标签")
        if to_file.setdefault(model_label, file_label) != file_label:
            raise DataError(
                f"映射文件 {path} 把模型标签 {model_label} 同时对应到 "
                f"{to_file[model_label]} 和 {file_label}；每个模型标签只能对应一个"
            )
    if not to_file:
        raise DataError(f"映射文件 {path} 是空的")
    return to_file


def _csv_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, strict=True)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if not {"label", "model_label"} <= set(columns):
                found = ", ".join(columns) if columns else "（空文件）"
                raise DataError(f"映射文件 {path} 需要列 label,model_label；现有列: {found}")
            reader.fieldnames = columns
            return [
                ((rec.get("label") or "").strip(), (rec.get("model_label") or "").strip())
                for rec in reader
            ]
    except FileNotFoundError as exc:
        raise DataError(f"映射文件不存在: {path}") from exc
    except (UnicodeDecodeError, csv.Error, IsADirectoryError) as exc:
        raise DataError(f"映射文件 {path} 无法读取（需要 UTF-8 编码的 CSV）: {exc}") from exc


def _toml_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"映射文件不存在: {path}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, IsADirectoryError) as exc:
        raise DataError(f"映射文件 {path} 无法读取（需要 UTF-8 编码的 TOML）: {exc}") from exc
    pairs = []
    for file_label, targets in table.items():
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise DataError(f"映射文件 {path} 中 {file_label} 的值应为模型标签或标签列表")
        pairs += [(file_label.strip(), t.strip()) for t in targets]
    return pairs
