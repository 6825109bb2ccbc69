"""Test harness: scratch PostgreSQL databases and checkpointd server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from checkpointd_client import CheckpointdClient, CheckpointdError

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parents[2]  # clients/python/tests -> repository root
PG_ADMIN_URL = os.environ.get("CHECKPOINTD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def server_binary() -> Path:
    path = Path(os.environ.get("CHECKPOINTD_BIN", REPO_ROOT / "target" / "debug" / "checkpointd"))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"checkpointd binary not found at {path}: build it (cargo build) or set CHECKPOINTD_BIN"
        )
    return path


def db_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def create_database() -> tuple[str, str]:
    """Create a scratch database; returns (name, url)."""
    name = f"lgtest_{uuid.uuid4().hex}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, db_url(name)


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def stop_process(proc: subprocess.Popen | None, sig: int, timeout: float = 30.0) -> None:
    """Ask a running ``proc`` to stop with ``sig``; kill it if it is still there after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

class Server:
    """A checkpointd process serving one database."""

    def __init__(self, database_url: str, *extra_args: str) -> None:
        self.database_url = database_url
        self.extra_args = extra_args
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="checkpointd-", suffix=".log", delete=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, port: int | None = None) -> Server:
        """Start the server on ``port`` (e.g. to restart it where it was), or on a free port."""
        binary = server_binary()
        for _attempt in range(1 if port else 3):  # a free port can be taken between probe and bind
            self.port = port or free_port()
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "warn")
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    "serve",
                    "--listen",
                    self.target,
                    "--database-url",
                    self.database_url,
                    *self.extra_args,
                ],
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            if self._wait_ready(timeout):
                return self
            self._terminate()
        log = self.read_log()
        self.stop()
        raise RuntimeError(f"checkpointd did not become SERVING; log:\n{log}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        # A probe that also works from async tests (a short blocking wait on the loop is fine here).
        # (reconnecting every 50 ms: the moment it is ready is seen at once, see test_resilience.py)
        with CheckpointdClient(
            self.target, retry=None, allow_sync_on_event_loop=True, reconnect_backoff_max=0.05
        ) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                try:
                    if client.health(timeout=1.0) == "SERVING":
                        return True
                except CheckpointdError:
                    pass
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then wait) and remove its log file."""
        self._terminate()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, signal.SIGTERM)

    def read_log(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def truncate_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes")


def dump_tables(url: str | psycopg.Connection) -> dict[str, list[tuple]]:
    """Every row of the three LangGraph tables, in a canonical order (for row-level comparison)."""
    queries = {
        "checkpoints": (
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
            "checkpoint::text, metadata::text FROM checkpoints "
            'ORDER BY thread_id COLLATE "C", checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C"'
        ),
        "checkpoint_blobs": (
            "SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs "
            'ORDER BY thread_id COLLATE "C", checkpoint_ns COLLATE "C", channel COLLATE "C", version COLLATE "C"'
        ),
        "checkpoint_writes": (
            "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob "
            'FROM checkpoint_writes ORDER BY thread_id COLLATE "C", checkpoint_ns COLLATE "C", '
            'checkpoint_id COLLATE "C", task_id COLLATE "C", idx'
        ),
    }
    if isinstance(url, psycopg.Connection):
        return {table: [tuple(r) for r in url.execute(sql).fetchall()] for table, sql in queries.items()}
    with psycopg.connect(url, autocommit=True) as conn:
        return dump_tables(conn)
