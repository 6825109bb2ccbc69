"""Both savers on one database: threads written by LangGraph's AsyncPostgresSaver read back
identically through GrpcCheckpointSaver (state, history, pending writes), and the reverse; a run
paused under one saver resumes under the other."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command

from checkpointd_client import GrpcCheckpointSaver
from graph_scenarios import _fanout_graph, _hitl_graph, _subgraph_graph, _travel_graph


async def _write_threads(saver: Any) -> dict[str, str]:
    """Run graphs with `saver`, leaving a mix of finished, paused and forked threads."""
    threads = {k: f"interop-{k}-{uuid.uuid4()}" for k in ("hitl", "sub", "fan", "travel")}

    def cfg(key: str) -> dict:
        return {"configurable": {"thread_id": threads[key]}, "metadata": {"origin": type(saver).__name__}}

    await _hitl_graph(saver).ainvoke({"log": []}, cfg("hitl"))  # paused at the interrupt
    await _subgraph_graph(saver).ainvoke({"log": []}, cfg("sub"))  # paused inside the subgraph
    await _fanout_graph(saver).ainvoke({"items": ["x", "y"], "results": []}, cfg("fan"))
    travel = _travel_graph(saver)
    await travel.ainvoke({"log": ["start"]}, cfg("travel"))
    history = [s async for s in travel.aget_state_history(cfg("travel"))]
    old = next(s for s in history if s.next == ("b",))
    fork = await travel.aupdate_state(old.config, {"log": ["edited"]})
    await travel.ainvoke(None, fork)
    return threads


async def _read_thread(saver: Any, thread_id: str) -> dict[str, Any]:
    """Everything the checkpointer API returns about a thread."""
    rows = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}})]
    out: dict[str, Any] = {"list_all_namespaces": rows}
    out["get_tuple_each"] = [await saver.aget_tuple(t.config) for t in rows]
    namespaces = sorted({t.config["configurable"]["checkpoint_ns"] for t in rows})
    out["latest_per_namespace"] = [
        await saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}) for ns in namespaces
    ]
    out["list_per_namespace"] = [
        [t async for t in saver.alist({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}})]
        for ns in namespaces
    ]
    out["filtered"] = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}}, filter={"source": "loop"})]
    return out


async def _graph_view(saver: Any, threads: dict[str, str]) -> dict[str, Any]:
    graphs = {"hitl": _hitl_graph, "sub": _subgraph_graph, "fan": _fanout_graph, "travel": _travel_graph}
    view = {}
    for key, build in graphs.items():
        g = build(saver)
        cfg = {"configurable": {"thread_id": threads[key]}}
        view[key] = {
            "state": await g.aget_state(cfg, subgraphs=True),
            "history": [s async for s in g.aget_state_history(cfg)],
        }
    return view


#: Pending writes per checkpoint, newest checkpoint first, that `_write_threads` leaves in each
#: thread (all namespaces). The same under either saver; a count that drops means writes were lost.
EXPECTED_PENDING_WRITES = {
    "hitl": [1, 2, 2],  # the interrupt, then each step's update and branch
    "sub": [1, 2, 2, 1, 2, 2],  # the subgraph's three checkpoints, then the parent's three
    "fan": [0, 1, 6, 4, 3],  # the finished run's last checkpoint has none; the fan-out step has six
    "travel": [0, 1, 2, 0, 1, 2, 2, 2],  # the forked run, then the original run
}


def _pending_write_counts(thread: dict[str, Any]) -> list[int]:
    return [len(t.pending_writes or []) for t in thread["list_all_namespaces"]]


def _schema_state(url: str) -> dict[str, list]:
    """The migration versions recorded and the indexes that exist (with their definitions)."""
    with psycopg.connect(url, autocommit=True) as conn:
        versions = [row[0] for row in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return {"versions": versions, "indexes": indexes}


def _sync_read(saver: GrpcCheckpointSaver, thread_id: str) -> list[Any]:
    return list(saver.list({"configurable": {"thread_id": thread_id}}))


async def test_postgres_saver_threads_read_back_through_grpc(server) -> None:
    async with AsyncPostgresSaver.from_conn_string(server.database_url) as pg:
        before = _schema_state(server.database_url)
        # checkpointd migrated this database when it started: LangGraph's versions and its own index.
        assert before["versions"] and "checkpointd_checkpoints_run_id_idx" in {name for name, _ in before["indexes"]}
        await pg.setup()  # the server migrated already: this must be a no-op
        assert _schema_state(server.database_url) == before
        threads = await _write_threads(pg)
        want = {k: await _read_thread(pg, t) for k, t in threads.items()}
        want_view = await _graph_view(pg, threads)
    async with GrpcCheckpointSaver(server.target) as grpc_saver:
        got = {k: await _read_thread(grpc_saver, t) for k, t in threads.items()}
        for key in threads:
            assert got[key] == want[key], key
            assert _pending_write_counts(got[key]) == EXPECTED_PENDING_WRITES[key], key
        assert await _graph_view(grpc_saver, threads) == want_view
        # The sync API from a worker thread (on the loop's own thread it raises InvalidStateError).
        assert await asyncio.to_thread(_sync_read, grpc_saver, threads["sub"]) == want["sub"]["list_all_namespaces"]
        # Resume, under checkpointd, the runs that LangGraph's saver paused.
        out = await _hitl_graph(grpc_saver).ainvoke(Command(resume="grace"), {"configurable": {"thread_id": threads["hitl"]}})
        assert out["log"] == ["step1", "ask", "hello grace"]
        out = await _subgraph_graph(grpc_saver).ainvoke(Command(resume=False), {"configurable": {"thread_id": threads["sub"]}})
        assert out["log"][-2:] == ["child2:False", "parent2"] and out["approved"] is False


async def test_grpc_saver_threads_read_back_through_postgres_saver(server) -> None:
    async with GrpcCheckpointSaver(server.target) as grpc_saver:
        threads = await _write_threads(grpc_saver)
        want = {k: await _read_thread(grpc_saver, t) for k, t in threads.items()}
        want_view = await _graph_view(grpc_saver, threads)
    async with AsyncPostgresSaver.from_conn_string(server.database_url) as pg:
        got = {k: await _read_thread(pg, t) for k, t in threads.items()}
        for key in threads:
            assert got[key] == want[key], key
            assert _pending_write_counts(got[key]) == EXPECTED_PENDING_WRITES[key], key
        assert await _graph_view(pg, threads) == want_view
        out = await _hitl_graph(pg).ainvoke(Command(resume="linus"), {"configurable": {"thread_id": threads["hitl"]}})
        assert out["log"] == ["step1", "ask", "hello linus"]
        out = await _subgraph_graph(pg).ainvoke(Command(resume=True), {"configurable": {"thread_id": threads["sub"]}})
        assert out["log"][-2:] == ["child2:True", "parent2"]
