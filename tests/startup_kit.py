"""Helpers for the start-up tests: a temp copy of config.toml, the environment for a `whistle`
subprocess, the installed console script, and free or taken ports."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Settings the environment would override; a test sets the ones it wants.
WHISTLE_ENV = (
    "DATABASE_URL",
    "TELEGRAM_TOKEN",
    "TELEGRAM_BASE_URL",
    "TELEGRAM_WEBHOOK_SECRET",
    "WHISTLE_CONFIG",
)


def write_config(
    folder: Path, *, model: Path | None = None, text: str | None = None, database: str | None = None
) -> Path:
    """config.toml (or `text`) with var/ inside `folder`, the shipped corpus, dictionary and
    demo grids, and `model` as the model file; returns the new file's path."""
    text = (REPO / "config.toml").read_text(encoding="utf-8") if text is None else text
    paths = {
        "model_path": str(model or folder / "var" / "model.npz"),
        "corpus_dir": str(REPO / "classifier" / "corpus"),
        "userdict": str(REPO / "classifier" / "userdict.txt"),
        "gazetteer": str(REPO / "geo" / "demo" / "grids.csv"),
        "grid_boundaries": str(REPO / "geo" / "demo" / "boundaries.geojson"),
    }
    for key, value in paths.items():
        text = re.sub(rf'(?m)^{key}\s*=\s*"[^"]*"', f'{key} = "{value}"', text)
    url = database or f"sqlite+aiosqlite:///{folder / 'var' / 'whistle.db'}"
    text = re.sub(r'(?m)^url\s*=\s*"[^"]*"', f'url = "{url}"', text)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def without_section(text: str, header: str) -> str:
    """`text` with every `header` section (e.g. "[district]" or "[[departments]]") removed."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.strip() == header
        if not skipping:
            kept.append(line)
    return "".join(kept)


def clean_env(monkeypatch=None, **values: str) -> dict[str, str]:
    """os.environ without Whistle's settings, plus `values` (applied to os.environ too when a
    monkeypatch is given, for in-process runs)."""
    env = {k: v for k, v in os.environ.items() if k not in WHISTLE_ENV}
    env.update(values, PYTHONUNBUFFERED="1")
    if monkeypatch is not None:
        for name in WHISTLE_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return env


def whistle_script() -> Path:
    """The `whistle` console script of the interpreter running the tests (its venv's)."""
    script = Path(sys.executable).parent / ("whistle.exe" if os.name == "nt" else "whistle")
    assert script.exists(), (
        f"{script} is missing: install the project into this interpreter's "
        "environment (pip install -e '.[dev]')"
    )
    return script


def welcome_line() -> str:
    """The first line of the bot's answer to /start in config.toml's district."""
    from bot import texts

    return texts.WELCOME.format(district="望城区").splitlines()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def taken_port() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1 (close it when done)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock
