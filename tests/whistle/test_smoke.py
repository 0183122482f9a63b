"""README's command 1 as a user runs it: the installed `whistle` console script (next to this
interpreter, so in CI the fresh venv's) started as a process with its own config.

- `whistle run --no-dashboard` with a token, against a Bot API emulator started here: it
  polls, answers /start, and stops cleanly on SIGTERM.
- the same with the dashboard's port taken: one line says so, and the bot still answers.
- `whistle run` with no token: the demo terminal on stdin/stdout answers /start, the
  dashboard answers beside it, and :quit ends it with exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import httpx
import pytest

from emulator import TelegramEmulator
from tests.botapi import RESIDENT, TEST_TOKEN
from tests.startup_kit import (
    clean_env,
    free_port,
    taken_port,
    welcome_line,
    whistle_script,
    write_config,
)
from tests.test_bot_kit import model_path  # noqa: F401  (the session's trained model)
from whistle.config import load_settings
from whistle.demo import add_people_from_settings

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

START_TIMEOUT = 60.0  # imports, migrations and the model on a busy 2-core machine
STOP_TIMEOUT = 10.0


class Whistle:
    """A `whistle` process whose output is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, *argv: str, env: dict, cwd: Path) -> Whistle:
        proc = await asyncio.create_subprocess_exec(
            str(whistle_script()),
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode("utf-8", "replace"))

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    async def wait_for(self, predicate, what: str, timeout: float = START_TIMEOUT) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"whistle exited ({self.proc.returncode}) before {what}:\n"
                    f"{self.stdout}\n{self.stderr}"
                )
            if loop.time() > deadline:
                raise AssertionError(f"no {what} in {timeout:g}s:\n{self.stdout}\n{self.stderr}")
            await asyncio.sleep(0.05)

    async def type(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode("utf-8"))
        await self.proc.stdin.drain()

    async def finish(self, timeout: float = STOP_TIMEOUT) -> int:
        """Exit code once the process ends (and its output is read)."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for reader in self._readers:
            reader.cancel()


@contextlib.asynccontextmanager
async def whistle_process(*argv: str, env: dict, cwd: Path):
    process = await Whistle.start(*argv, env=env, cwd=cwd)
    try:
        yield process
    finally:
        await process.kill()


@pytest.fixture
async def bot_api(tmp_path, model_path):
    """An emulator with config.toml's people, and the environment pointing `whistle` at it."""
    config = write_config(tmp_path, model=model_path)
    emu = TelegramEmulator(token=TEST_TOKEN)
    add_people_from_settings(emu, load_settings(config, env={}))
    await emu.start()
    env = clean_env(
        WHISTLE_CONFIG=str(config), TELEGRAM_TOKEN=TEST_TOKEN, TELEGRAM_BASE_URL=emu.base_url
    )
    try:
        yield emu, env
    finally:
        await emu.stop()


async def answers_start(emu: TelegramEmulator, process: Whistle) -> None:
    """Wait until the bot polls, send /start as a resident, and expect the welcome."""
    await process.wait_for(lambda: emu.call_count("getUpdates") > 0, "getUpdates")
    emu.send_command(RESIDENT, "/start")
    answer = await emu.wait_for_message(RESIDENT, timeout=20)
    assert welcome_line() in answer.content


async def stops_on_sigterm(process: Whistle) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    process.proc.send_signal(signal.SIGTERM)
    code = await process.finish()
    assert code == 0, process.stderr
    assert loop.time() - began < STOP_TIMEOUT
    assert "Traceback" not in process.stdout + process.stderr


async def dashboard_health(port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(100):
            try:
                return (await http.get("/healthz")).text
            except httpx.ConnectError:
                await asyncio.sleep(0.1)
    return "no answer"


async def test_whistle_run_answers_start_and_stops_on_sigterm(bot_api, tmp_path):
    emu, env = bot_api
    async with whistle_process("run", "--no-dashboard", env=env, cwd=tmp_path) as process:
        await answers_start(emu, process)
        await stops_on_sigterm(process)
    assert (tmp_path / "var" / "whistle.db").exists()


async def test_a_taken_dashboard_port_leaves_the_bot_running(bot_api, tmp_path):
    emu, env = bot_api
    with taken_port() as sock:
        port = sock.getsockname()[1]
        async with whistle_process(
            "run", "--dashboard-port", str(port), env=env, cwd=tmp_path
        ) as process:
            await answers_start(emu, process)
            lines = [line for line in process.err if "指挥大屏" in line]
            assert len(lines) == 1, process.stderr
            assert f"127.0.0.1:{port} 启动（端口已被占用），机器人照常运行" in lines[0]
            assert "[dashboard] port" in lines[0] and "--dashboard-port" in lines[0]
            await stops_on_sigterm(process)


async def test_whistle_run_without_a_token_is_the_terminal_demo(tmp_path, model_path):
    env = clean_env(WHISTLE_CONFIG=str(write_config(tmp_path, model=model_path)))
    port = free_port()
    async with whistle_process(
        "run", "--dashboard-port", str(port), env=env, cwd=tmp_path
    ) as process:
        await process.wait_for(lambda: "演示终端" in process.stdout, "the demo terminal")
        await process.type("/start")
        await process.wait_for(lambda: welcome_line() in process.stdout, "an answer to /start")
        assert await dashboard_health(port) == "ok"  # the dashboard runs beside the demo
        await process.type(":quit")
        assert await process.finish() == 0, process.stderr
    assert "Traceback" not in process.stdout + process.stderr


async def test_a_token_the_bot_api_refuses_stops_with_one_line(bot_api, tmp_path):
    _, env = bot_api
    env = {**env, "TELEGRAM_TOKEN": "123456:not-the-emulators-token"}
    async with whistle_process("run", "--no-dashboard", env=env, cwd=tmp_path) as process:
        assert await process.finish(timeout=START_TIMEOUT) == 2
    lines = [line for line in process.err if line.startswith("✗")]
    assert len(lines) == 1 and "Bot API 拒绝了 TELEGRAM_TOKEN" in lines[0], process.stderr
    assert "Traceback" not in process.stderr
