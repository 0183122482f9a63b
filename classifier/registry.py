"""Every model the learning loop trained, kept as files: `<version>.npz` and `<version>.json`
(its data counts, metrics and gate decision) under one folder, a pointer to the champion
(`champion.json`, with the champions before it for rollback) and the champion's file served
at one path the bot watches (`current.npz`, replaced atomically: a promotion hot-reloads).

Plain files and atomic renames, so a crash leaves either the old state or the new one; the
store's registry can mirror the JSON later. A model trained on staff decisions holds their
messages as bags of words: its files are personal data (written 0600, marked in the JSON).
The JSON holds counts and scores, never a message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from classifier.model import LinearModel, ModelError, load_model

CHAMPION = "champion.json"
SERVED = "current.npz"
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,79}$")


class RegistryError(Exception):
    """A registry request that cannot be done (unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class ModelEntry:
    version: str
    path: Path
    info: dict  # the <version>.json: counts, metrics, gate decision, personal_data
    champion: bool = False


class ModelRegistry:
    """The model folder (var/models/ by default) and the file the bot serves."""

    def __init__(self, root: str | os.PathLike, served: str | os.PathLike | None = None):
        self.root = Path(root)
        self.served = Path(served) if served is not None else self.root / SERVED

    # ---- reading -----------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        """Every kept model, oldest first."""
        champion = self.champion_version()
        found = []
        for meta in self.root.glob("*.json"):
            if meta.name == CHAMPION or not (self.root / f"{meta.stem}.npz").is_file():
                continue
            info = _read_json(meta)
            found.append(
                ModelEntry(meta.stem, self.root / f"{meta.stem}.npz", info, meta.stem == champion)
            )
        return sorted(found, key=lambda e: (str(e.info.get("created_at", "")), e.version))

    def entry(self, version: str) -> ModelEntry:
        path, meta = self._paths(version)
        if not path.is_file() or not meta.is_file():
            known = ", ".join(e.version for e in self.entries()) or "（无）"
            raise RegistryError(f"没有版本为 {version} 的模型；现有: {known}")
        return ModelEntry(version, path, _read_json(meta), version == self.champion_version())

    def champion_version(self) -> str | None:
        history = self.history()
        return history[-1] if history else None

    def champion(self) -> ModelEntry | None:
        version = self.champion_version()
        return None if version is None else self.entry(version)

    def history(self) -> list[str]:
        """The champions in the order they were put in service (the last one serves)."""
        path = self.root / CHAMPION
        return list(_read_json(path).get("history", [])) if path.is_file() else []

    # ---- changing ----------------------------------------------------------------------

    def add(self, model: LinearModel, info: dict) -> ModelEntry:
        """Keep a newly trained model (not yet in service) with its metadata."""
        version = self._free_version(model.model_version)
        path, meta = self._paths(version)
        model.save(path)
        _write_json(
            meta,
            {
                "version": version,
                "created_at": model.meta.get("created_at"),
                "labels": list(model.labels),
                **info,
            },
        )
        return ModelEntry(version, path, _read_json(meta))

    def record(self, version: str, **fields) -> ModelEntry:
        """Add fields (e.g. the gate's decision) to a model's metadata."""
        entry = self.entry(version)
        _write_json(self._paths(version)[1], entry.info | fields)
        return self.entry(version)

    def promote(self, version: str) -> ModelEntry:
        """Put a kept model in service: checked to load, then the pointer, then the served
        file (each replaced atomically; serve() repairs a crash between the two)."""
        entry = self.entry(version)
        _check_loads(entry.path)
        history = [v for v in self.history() if v != version] + [version]
        self._set_history(history)
        self.serve()
        return self.entry(version)

    def rollback(self) -> ModelEntry:
        """Put the champion before the current one back in service."""
        history = self.history()
        if len(history) < 2:
            raise RegistryError("没有可回滚的上一个模型")
        previous = history[-2]
        _check_loads(self.entry(previous).path)
        self._set_history(history[:-1])
        self.serve()
        return self.entry(previous)

    def serve(self) -> Path | None:
        """Make the served file the champion's (if it is not already): a new file under the
        served name, swapped in by one rename, so a reader sees the old model or the new."""
        champion = self.champion()
        if champion is None:
            return None
        if _same_file(champion.path, self.served):
            return self.served
        self.served.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.served.parent / f".{self.served.name}.{uuid.uuid4().hex}.tmp"
        try:
            try:
                os.link(champion.path, tmp)  # same content, no copy
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(champion.path, tmp)
                os.chmod(tmp, 0o600)  # personal data, like the file it copies
            os.replace(tmp, self.served)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.served

    # ---- helpers -----------------------------------------------------------------------

    def _paths(self, version: str) -> tuple[Path, Path]:
        if not _VERSION.match(version or ""):
            raise RegistryError(f"模型版本号格式不对: {version!r}")
        return self.root / f"{version}.npz", self.root / f"{version}.json"

    def _free_version(self, version: str) -> str:
        """The model's version, with a suffix if a model of that name is already kept."""
        candidate, n = version, 1
        while any(p.exists() for p in self._paths(candidate)):
            n += 1
            candidate = f"{version}-{n}"
        return candidate

    def _set_history(self, history: list[str]) -> None:
        _write_json(
            self.root / CHAMPION,
            {"history": history, "changed_at": datetime.now(UTC).isoformat(timespec="seconds")},
        )


def _check_loads(path: Path) -> None:
    try:
        load_model(path)
    except ModelError as exc:
        raise RegistryError(f"模型无法启用: {exc}") from exc


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) or (
        sa.st_size == sb.st_size and a.read_bytes() == b.read_bytes()
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"模型登记文件 {path} 无法读取: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"模型登记文件 {path} 格式不对")
    return data


def _write_json(path: Path, data: dict) -> None:
    """Written to a temp file (0600: it may describe personal data) and renamed over path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
