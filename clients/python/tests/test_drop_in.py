"""Drop-in parity with LangGraph's Postgres savers: ``from_conn_string`` (async and sync forms) and
threads whose channel versions are integers, as LangGraph.js writes them, resumed by a Python graph."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.types import Command

from checkpointd_client import GrpcCheckpointSaver
from graph_scenarios import _hitl_graph


def _thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"dropin-{uuid.uuid4()}"}}


async def test_from_conn_string_async_form_runs_a_graph_and_closes_its_channels(server) -> None:
    config = _thread()
    async with GrpcCheckpointSaver.from_conn_string(server.target, timeout=10) as checkpointer:
        await checkpointer.setup()
        graph = _hitl_graph(checkpointer)
        await graph.ainvoke({"log": []}, config)  # stops at the interrupt
        out = await graph.ainvoke(Command(resume="ada"), config)
        assert out["log"] == ["step1", "ask", "hello ada"]
        assert checkpointer.client.timeout == 10
    assert checkpointer.client.closed


def test_from_conn_string_sync_form_runs_a_sync_graph_and_closes_its_channels(server) -> None:
    config = _thread()
    with GrpcCheckpointSaver.from_conn_string(server.target) as checkpointer:
        checkpointer.setup()
        graph = _hitl_graph(checkpointer)
        graph.invoke({"log": []}, config)
        out = graph.invoke(Command(resume="bob"), config)
        assert out["log"] == ["step1", "ask", "hello bob"]
        assert len(list(graph.get_state_history(config))) > 2
    assert checkpointer.client.closed


def test_from_conn_string_rejects_a_postgresql_url() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL connection string"):
        GrpcCheckpointSaver.from_conn_string("postgresql://postgres@localhost:5432/postgres")
    with pytest.raises(ValueError, match="target is required"):
        GrpcCheckpointSaver.from_conn_string("")


def test_string_versions_keep_the_postgres_savers_format() -> None:
    ours = GrpcCheckpointSaver("127.0.0.1:1")
    theirs = PostgresSaver.__new__(PostgresSaver)  # get_next_version needs no connection
    for current in (None, "00000000000000000000000000000007.0.5"):
        mine, reference = ours.get_next_version(current, None), theirs.get_next_version(current, None)
        counter, _, random_part = mine.partition(".")
        assert counter == reference.partition(".")[0] and re.fullmatch(r"\d{32}", counter)
        assert 0 <= float(random_part) < 1 and len(random_part) >= 16
    ours.close()


def test_integer_versions_continue_as_integers() -> None:
    with GrpcCheckpointSaver("127.0.0.1:1") as saver:
        assert saver.get_next_version(5, None) == 6
        assert saver.get_next_version(0, None) == 1


class _LangGraphJsLikeSaver(GrpcCheckpointSaver):
    """Writes what LangGraph.js (and the TypeScript client) write: integer channel versions."""

    def get_next_version(self, current: Any, channel: None) -> int:  # type: ignore[override]
        return 1 if current is None else int(current) + 1


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_a_thread_with_integer_versions_resumes_in_python(server, mode: str) -> None:
    """A run paused by a writer with integer versions resumes with a real Python graph. Before,
    get_next_version turned the int into a string and LangGraph failed comparing str with int."""
    config = _thread()
    async with _LangGraphJsLikeSaver(server.target) as writer:
        await _hitl_graph(writer).ainvoke({"log": []}, config)
        paused = await writer.aget_tuple(config)
    versions = paused.checkpoint["channel_versions"]
    assert versions and all(type(v) is int for v in versions.values()), versions

    if mode == "async":
        async with GrpcCheckpointSaver.from_conn_string(server.target) as checkpointer:
            graph = _hitl_graph(checkpointer)
            out = await graph.ainvoke(Command(resume="grace"), config)
            resumed = await checkpointer.aget_tuple(config)
            history = [s async for s in graph.aget_state_history(config)]
    else:
        import asyncio

        def run_sync() -> tuple[Any, Any, list[Any]]:  # a sync graph, off the event loop's thread
            with GrpcCheckpointSaver.from_conn_string(server.target) as checkpointer:
                graph = _hitl_graph(checkpointer)
                result = graph.invoke(Command(resume="grace"), config)
                return result, checkpointer.get_tuple(config), list(graph.get_state_history(config))

        out, resumed, history = await asyncio.to_thread(run_sync)

    assert out["log"] == ["step1", "ask", "hello grace"]
    after = resumed.checkpoint["channel_versions"]
    assert all(type(v) is int for v in after.values()), after
    assert max(after.values()) > max(versions.values())
    assert history[0].values["log"] == ["step1", "ask", "hello grace"] and not history[0].next
