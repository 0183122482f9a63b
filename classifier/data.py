"""Reading labelled and unlabelled CSV files (UTF-8, columns text[,title][,label][,id])."""

from __future__ import annotations

import csv
import hashlib
import os
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
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            _check_columns(path, columns, need_label)
            reader.fieldnames = columns
            return [_row(rec, n) for n, rec in enumerate(reader, start=1)]
    except FileNotFoundError as exc:
        raise DataError(f"文件不存在: {path}") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path} 是目录，不是 CSV 文件") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} 不是 UTF-8 编码（第 {exc.start} 字节附近无法解码）；"
                        "请另存为 UTF-8 后再试") from exc
    except csv.Error as exc:
        raise DataError(f"{path} 不是有效的 CSV 文件: {exc}") from exc


def _check_columns(path: Path, columns: list[str], need_label: bool) -> None:
    needed = ["text", "label"] if need_label else ["text"]
    missing = [c for c in needed if c not in columns]
    if missing:
        found = ", ".join(columns) if columns else "（空文件）"
        raise DataError(f"{path} 缺少列 {', '.join(missing)}；现有列: {found}")


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
