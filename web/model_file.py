"""当前模型: the version of the classifier model file the bot loads, for the dashboard."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from classifier import ModelError, load_model

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _read_version(path: Path) -> str | None:
    try:
        return load_model(path).model_version or None
    except ModelError as exc:
        log.warning("指挥大屏无法读取模型版本: %s", exc)
        return None


class ModelFile:
    """The model file's version, read again only when the file changes.

    The bot loads (and reloads) this same file, so the dashboard names the model in use even
    on a fresh database where no case carries a version yet. load_model() is the check the
    bot applies: a file the bot would refuse gives None (the caller then falls back to the
    version on the latest case, i.e. the model the bot kept using).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._version: str | None = None

    async def version(self) -> str | None:
        stamp = _stamp(self.path)
        if stamp is None:
            return None
        if stamp != self._stamp:
            self._version = await asyncio.to_thread(_read_version, self.path)
            self._stamp = stamp
        return self._version
