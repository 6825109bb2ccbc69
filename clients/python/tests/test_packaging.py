"""`pip install clients/python` into a fresh virtualenv gives a working saver, without psycopg."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from _harness import TESTS_DIR

CLIENT_ROOT = TESTS_DIR.parent

SMOKE = textwrap.dedent(
    """
    import asyncio, importlib.util, sys
    from checkpointd_client import GrpcCheckpointSaver, CheckpointdClient
    from langgraph.checkpoint.base import empty_checkpoint

    assert importlib.util.find_spec("psycopg") is None, "psycopg must not be needed"
    target = sys.argv[1]
    config = {"configurable": {"thread_id": "packaging-smoke", "checkpoint_ns": ""}}
    cp = empty_checkpoint()
    cp["channel_values"] = {"items": [1, 2, 3]}
    cp["channel_versions"] = {"items": 1}

    async def main():
        async with GrpcCheckpointSaver(target) as saver:
            stored = await saver.aput(config, cp, {"step": 1}, {"items": 1})
            got = await saver.aget_tuple(stored)
            assert got.checkpoint["channel_values"]["items"] == [1, 2, 3], got
            assert saver.get_tuple(stored) == got
            await saver.adelete_thread("packaging-smoke")
        with CheckpointdClient(target) as client:
            assert client.health() == "SERVING"

    asyncio.run(main())
    print("packaging smoke OK")
    """
)


def test_pip_install_into_a_fresh_venv(server, tmp_path: Path) -> None:
    source = tmp_path / "src-copy"  # build from a copy: the build leaves files next to its sources
    shutil.copytree(
        CLIENT_ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    smoke = subprocess.run(
        [str(python), "-c", SMOKE, server.target], capture_output=True, text=True, timeout=120, env=env
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "packaging smoke OK" in smoke.stdout
    # The wheel carries the generated stubs with their type stubs and the py.typed marker.
    site = next((venv / "lib").glob("python3*/site-packages"))
    package = site / "checkpointd_client"
    assert (package / "py.typed").exists()
    assert (package / "_proto" / "checkpoint" / "v1" / "checkpoint_pb2.pyi").exists()
