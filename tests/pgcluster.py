"""A throwaway PostgreSQL cluster of a test's own, which the test may stop and start.

The shared server on 127.0.0.1:5432 serves everyone's tests and is never restarted; a test
that needs PostgreSQL to go away under the bot (issue #15) runs `initdb` into a temporary
folder and `pg_ctl` on a free port, with its unix socket in that folder. As root, initdb
refuses to run, so the cluster then belongs to the `postgres` user (through runuser).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.startup_kit import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
OWNER = "postgres"  # the account the cluster runs as when the tests run as root


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder with initdb and pg_ctl, if any."""
    found = [
        Path(p)
        for p in glob.glob(PG_BIN_GLOB)
        if (Path(p) / "initdb").exists() and (Path(p) / "pg_ctl").exists()
    ]
    return max(found, key=lambda p: int(p.parent.name), default=None) if found else None


def unavailable() -> str | None:
    """Why a private cluster cannot run here (a skip reason), or None when it can."""
    if pg_bin() is None:
        return f"no PostgreSQL server binaries (initdb, pg_ctl) under {PG_BIN_GLOB}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OWNER)
        except KeyError:
            return f"running as root (initdb refuses) and there is no '{OWNER}' user to run it as"
        if shutil.which("runuser") is None:
            return "running as root (initdb refuses) and runuser is missing"
    return None


class PgCluster:
    """initdb, start, stop (-m immediate, like a crash or `systemctl restart`), remove."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="whistle-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if self.as_root:  # the folder (data and socket) must belong to the cluster's owner
            owner = pwd.getpwnam(OWNER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the cluster's `postgres` database (trust auth, TCP)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", OWNER, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self) -> None:
        """Stop at once, without a checkpoint: every connection is cut, as in a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)
