"""LangGraph Agent Server for tests: a cached venv with the client beside langgraph-api, and a
`langgraph dev` process serving examples/langgraph-server against a checkpointd.

The venv (<repo>/target/python-venvs/agent-server) is created with ONE pip resolve of the client's
wheel together with examples/langgraph-server/requirements.txt, and recreated only when that file
or pyproject.toml changes; on every other run the freshly built wheel replaces the installed
client (same metadata, so the resolve still holds) and `pip check` runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from _harness import REPO_ROOT, TESTS_DIR, free_port, stop_process

CLIENT_ROOT = TESTS_DIR.parent
EXAMPLE_DIR = REPO_ROOT / "examples" / "langgraph-server"
EXAMPLE_REQUIREMENTS = EXAMPLE_DIR / "requirements.txt"
VENV_DIR = REPO_ROOT / "target" / "python-venvs" / "agent-server"
STAMP = VENV_DIR / ".checkpointd-venv-stamp"
PIP_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
# Keep `langgraph dev` offline apart from the test's own servers: no CLI analytics, no LangSmith.
OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
READY_TIMEOUT_S = 120.0


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Runs a command; raises with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=PIP_ENV)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def build_client_wheel(work_dir: Path) -> Path:
    """Builds the client's wheel from a copy of clients/python (the build writes beside its
    sources); returns the wheel's path."""
    source = work_dir / "client-src"
    shutil.copytree(
        CLIENT_ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"),
    )
    out = work_dir / "wheel"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)])
    (wheel,) = out.glob("checkpointd_client-*.whl")
    return wheel


def _wanted_stamp() -> str:
    digest = hashlib.sha256()
    for path in (EXAMPLE_REQUIREMENTS, CLIENT_ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class AgentServerVenv:
    python: Path
    langgraph: Path
    pip_check: str
    created: bool

    def installed_version(self, distribution: str) -> str:
        code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
        return _run([str(self.python), "-c", code]).stdout.strip()

    def client_location(self) -> Path:
        code = "import checkpointd_client; print(checkpointd_client.__file__)"
        return Path(_run([str(self.python), "-c", code]).stdout.strip())


def ensure_agent_server_venv(wheel: Path) -> AgentServerVenv:
    """Creates (one resolve) or refreshes the venv, then runs `pip check` (its output is kept)."""
    python = VENV_DIR / "bin" / "python"
    want = _wanted_stamp()
    created = not (python.exists() and STAMP.exists() and STAMP.read_text().strip() == want)
    if created:
        shutil.rmtree(VENV_DIR, ignore_errors=True)
        VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(VENV_DIR)])
        # ONE resolve: the client and the Agent Server's packages together. forbiddenfruit (a
        # dependency of the dev server's blocking-call detector) is published only as an sdist.
        _run([
            str(python), "-m", "pip", "install", "--quiet", "--no-binary", "forbiddenfruit",
            str(wheel), "-r", str(EXAMPLE_REQUIREMENTS),
        ])  # fmt: skip
        STAMP.write_text(want)
    else:
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)])
    check = subprocess.run(
        [str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=300, env=PIP_ENV
    )
    return AgentServerVenv(
        python=python,
        langgraph=VENV_DIR / "bin" / "langgraph",
        pip_check=f"exit {check.returncode}: {check.stdout}{check.stderr}",
        created=created,
    )


class HttpError(Exception):
    """An HTTP status other than 2xx from the Agent Server."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:2000]}")
        self.status = status


class LangGraphDev:
    """A `langgraph dev --no-browser --no-reload` process serving a copy of the example."""

    def __init__(self, venv: AgentServerVenv, app_dir: Path, checkpointd_address: str) -> None:
        self.venv = venv
        self.app_dir = app_dir
        self.checkpointd_address = checkpointd_address
        self.log_path = app_dir / "langgraph-dev.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LangGraphDev:
        env = {**os.environ, **OFFLINE_ENV, "CHECKPOINTD_ADDRESS": self.checkpointd_address}
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(self.venv.langgraph), "dev", "--no-browser", "--no-reload",
                        "--host", "127.0.0.1", "--port", str(self.port),
                    ],
                    cwd=self.app_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                )  # fmt: skip
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"langgraph dev did not become ready; log:\n{self.read_log()[-20000:]}")

    def _wait_ready(self) -> bool:
        """Polls GET /ok until it answers 200, the process exits, or READY_TIMEOUT_S passes."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                self.request("GET", "/ok", timeout=2)
                return True
            except (OSError, HttpError):
                time.sleep(0.2)
        return False

    def request(self, method: str, path: str, body: object | None = None, timeout: float = 60) -> object:
        """Sends a JSON request; returns the decoded JSON answer (None for an empty body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise HttpError(err.code, err.read().decode(errors="replace")) from None
        return json.loads(raw) if raw.strip() else None

    def stop(self) -> None:
        """SIGINT (the server's clean shutdown, which closes the checkpointer), then wait."""
        proc, self.proc = self.proc, None
        stop_process(proc, signal.SIGINT)

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
