"""LangGraph Agent Server with checkpointd as its checkpointer (examples/langgraph-server).

The client's wheel is installed beside langgraph-cli[inmem] / langgraph-api /
langgraph-runtime-inmem in one pip resolve (`pip check` clean), `langgraph dev` serves the
example against a real checkpointd, and every step of an interrupt / resume / history / copy /
delete flow over the Agent Server's HTTP API is compared with the rows in PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from _agent_server import (
    EXAMPLE_DIR,
    VENV_DIR,
    AgentServerVenv,
    LangGraphDev,
    build_client_wheel,
    ensure_agent_server_venv,
)
from _harness import Server, create_database, drop_database

GRAPH = "approval"
# What langgraph-api logs (as warnings, or as info for acopy_thread) for each recommended
# checkpointer method that the saver does not implement.
MISSING_CAPABILITY = re.compile(r"Custom checkpointer missing \w+")


@pytest.fixture(scope="module")
def agent_server_venv(tmp_path_factory: pytest.TempPathFactory) -> AgentServerVenv:
    wheel = build_client_wheel(tmp_path_factory.mktemp("agent-server-wheel"))
    return ensure_agent_server_venv(wheel)


@pytest.fixture(scope="module")
def checkpointd_database() -> Iterator[tuple[Server, str]]:
    """A fresh database and a checkpointd serving it: (server, database URL)."""
    name, url = create_database()
    server = Server(url)
    try:
        server.start()
        yield server, url
    finally:
        server.stop()
        drop_database(name)


@pytest.fixture(scope="module")
def langgraph_dev(
    agent_server_venv: AgentServerVenv,
    checkpointd_database: tuple[Server, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LangGraphDev]:
    app_dir = tmp_path_factory.mktemp("langgraph-server") / "app"
    shutil.copytree(EXAMPLE_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__", ".langgraph_api"))
    dev = LangGraphDev(agent_server_venv, app_dir, checkpointd_database[0].target)
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


def _rows(url: str, thread_id: str) -> dict[str, list[tuple]]:
    """The thread's rows in the three LangGraph tables, without the thread_id column."""
    queries = {
        "checkpoints": (
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata FROM checkpoints "
            'WHERE thread_id = %s ORDER BY checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C"'
        ),
        "checkpoint_writes": (
            "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob "
            'FROM checkpoint_writes WHERE thread_id = %s ORDER BY checkpoint_ns COLLATE "C", '
            'checkpoint_id COLLATE "C", task_id COLLATE "C", idx'
        ),
        "checkpoint_blobs": (
            "SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = %s "
            'ORDER BY checkpoint_ns COLLATE "C", channel COLLATE "C", version COLLATE "C"'
        ),
    }
    with psycopg.connect(url, autocommit=True) as conn:
        return {table: [tuple(r) for r in conn.execute(sql, (thread_id,)).fetchall()] for table, sql in queries.items()}


def _latest(rows: dict[str, list[tuple]]) -> tuple:
    """The newest root-namespace checkpoint row (checkpoint ids sort by time)."""
    return max((r for r in rows["checkpoints"] if r[0] == ""), key=lambda r: r[1])


def _writes_of(rows: dict[str, list[tuple]], checkpoint_id: str) -> list[str]:
    return [w[5] for w in rows["checkpoint_writes"] if w[1] == checkpoint_id]


def test_client_installs_beside_agent_server_in_one_resolve(agent_server_venv: AgentServerVenv) -> None:
    assert agent_server_venv.pip_check.startswith("exit 0:"), agent_server_venv.pip_check
    assert agent_server_venv.installed_version("langgraph-api") == "0.16.7"
    assert agent_server_venv.installed_version("langgraph-cli") == "0.4.40"
    assert agent_server_venv.installed_version("langgraph-runtime-inmem") == "0.36.7"
    # langgraph-api pins grpcio 1.81.x and protobuf 6.x: the client's stubs must import under those.
    assert agent_server_venv.installed_version("grpcio").startswith("1.81.")
    assert agent_server_venv.installed_version("protobuf").startswith("6.")
    # The client comes from the built wheel, installed into the venv (not an editable checkout).
    assert agent_server_venv.client_location().is_relative_to(VENV_DIR)


def test_agent_server_flow_is_stored_in_checkpointd(
    langgraph_dev: LangGraphDev, checkpointd_database: tuple[Server, str]
) -> None:
    _server, url = checkpointd_database
    api = langgraph_dev.request

    # A new thread lives in the Agent Server only: no checkpoint yet.
    thread_id = api("POST", "/threads", {})["thread_id"]
    assert _rows(url, thread_id) == {"checkpoints": [], "checkpoint_writes": [], "checkpoint_blobs": []}

    # A run that stops at interrupt(): input, write_draft and the interrupted step are stored.
    out = api("POST", f"/threads/{thread_id}/runs/wait", {"assistant_id": GRAPH, "input": {"topic": "checkpointd"}})
    assert out["draft"] == "Announcing: checkpointd."
    assert out["__interrupt__"][0]["value"] == {"question": "Publish this draft?", "draft": out["draft"]}
    rows = _rows(url, thread_id)
    assert [r[4]["step"] for r in rows["checkpoints"]] == [-1, 0, 1]
    interrupted = _latest(rows)
    assert interrupted[3]["channel_values"]["draft"] == out["draft"]
    assert "__interrupt__" in _writes_of(rows, interrupted[1])

    # The thread state is the newest stored checkpoint, with its parent and its pending interrupt.
    state = api("GET", f"/threads/{thread_id}/state")
    assert state["checkpoint"]["checkpoint_id"] == interrupted[1]
    assert state["parent_checkpoint"]["checkpoint_id"] == interrupted[2]
    assert state["metadata"]["step"] == interrupted[4]["step"] == 1
    assert state["next"] == ["ask_reviewer"]
    assert state["values"] == {"topic": "checkpointd", "draft": out["draft"]}
    assert state["interrupts"][0]["value"]["question"] == "Publish this draft?"

    # Resume with Command(resume=...): the run finishes from the stored checkpoint.
    resume = {"assistant_id": GRAPH, "command": {"resume": {"approved": True, "note": "ship it"}}}
    done = api("POST", f"/threads/{thread_id}/runs/wait", resume)
    assert done["published"] == "Announcing: checkpointd." and done["note"] == "ship it"
    rows = _rows(url, thread_id)
    assert [r[4]["step"] for r in rows["checkpoints"]] == [-1, 0, 1, 2, 3]
    final = _latest(rows)
    assert final[2] > interrupted[1]  # descends from a checkpoint written after the interrupt
    assert final[3]["channel_values"]["published"] == done["published"]
    assert api("GET", f"/threads/{thread_id}/state")["checkpoint"]["checkpoint_id"] == final[1]

    # The history is every stored checkpoint, newest first, with the stored parents and steps.
    history = api("GET", f"/threads/{thread_id}/history?limit=50")
    stored = sorted(rows["checkpoints"], key=lambda r: r[1], reverse=True)
    assert [h["checkpoint"]["checkpoint_id"] for h in history] == [r[1] for r in stored]
    assert [(h["parent_checkpoint"] or {}).get("checkpoint_id") for h in history] == [r[2] for r in stored]
    assert [h["metadata"]["step"] for h in history] == [r[4]["step"] for r in stored]

    # POST /threads/{id}/copy: the copy has the same checkpoints, writes and blobs.
    copy_id = api("POST", f"/threads/{thread_id}/copy", {})["thread_id"]
    assert copy_id != thread_id
    copied = _rows(url, copy_id)
    assert [r[:4] for r in copied["checkpoints"]] == [r[:4] for r in rows["checkpoints"]]
    assert copied["checkpoint_writes"] == rows["checkpoint_writes"]
    assert copied["checkpoint_blobs"] == rows["checkpoint_blobs"]
    assert api("GET", f"/threads/{copy_id}/state")["values"] == api("GET", f"/threads/{thread_id}/state")["values"]

    # DELETE /threads/{id}: every row of the thread is gone, the copy's rows stay.
    api("DELETE", f"/threads/{thread_id}")
    assert _rows(url, thread_id) == {"checkpoints": [], "checkpoint_writes": [], "checkpoint_blobs": []}
    assert _rows(url, copy_id) == copied

    # The Agent Server used GrpcCheckpointSaver with every recommended method present.
    log = langgraph_dev.read_log()
    assert "Using custom checkpointer: GrpcCheckpointSaver" in log, log[-5000:]
    assert not MISSING_CAPABILITY.findall(log), MISSING_CAPABILITY.findall(log)
    assert "Traceback" not in log, log[-5000:]


def test_example_factory_refuses_a_missing_address(agent_server_venv: AgentServerVenv, tmp_path: Path) -> None:
    """The example's factory names the variable to set instead of failing inside gRPC."""
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); import checkpointer\n"
        "async def main():\n"
        "    async with checkpointer.checkpointer():\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [str(agent_server_venv.python), "-c", code, str(EXAMPLE_DIR)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert "RuntimeError: set CHECKPOINTD_ADDRESS" in done.stderr, done.stderr
