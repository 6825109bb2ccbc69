"""Real graphs through checkpointd, sync and async, compared with LangGraph's own Postgres savers
run the same way on the same database."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from checkpointd_client import GrpcCheckpointSaver, InvalidArgumentError
from graph_scenarios import SCENARIOS


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_graph_matches_postgres_saver(server, scenario: str, mode: str) -> None:
    run = SCENARIOS[scenario]
    is_async = mode == "async"
    # The sync API runs here on the event loop's own thread, which both savers forbid by default
    # (allow_sync_on_event_loop=True opts in; PostgresSaver, the sync reference, does not check).
    if is_async:
        async with GrpcCheckpointSaver(server.target) as saver:
            got = await run(saver, True)
        async with AsyncPostgresSaver.from_conn_string(server.database_url) as ref:
            want = await run(ref, True)
    else:
        with GrpcCheckpointSaver(server.target, allow_sync_on_event_loop=True) as saver:
            got = await run(saver, False)
        with PostgresSaver.from_conn_string(server.database_url) as ref:
            want = await run(ref, False)
    assert got == want


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_copy_thread_and_delete_for_runs_on_graph_threads(server, mode: str) -> None:
    """The extended capabilities (which LangGraph's Postgres saver lacks) on real graph threads."""
    import uuid

    from langgraph.types import Command

    from graph_scenarios import Canon, Runner, _hitl_graph

    is_async = mode == "async"
    async with GrpcCheckpointSaver(server.target, allow_sync_on_event_loop=not is_async) as saver:
        r = Runner(_hitl_graph(saver), is_async)
        source = f"copy-src-{uuid.uuid4()}"
        target = f"copy-dst-{uuid.uuid4()}"
        cfg = {"configurable": {"thread_id": source}}
        run1, run2 = str(uuid.uuid4()), str(uuid.uuid4())
        await r.invoke({"log": []}, {**cfg, "metadata": {"run_id": run1}})  # paused at the interrupt
        paused_history = await r.history(cfg)
        await r.invoke(Command(resume="first"), {**cfg, "metadata": {"run_id": run2}})
        full_history = await r.history(cfg)
        assert {s.metadata.get("run_id") for s in full_history} == {run1, run2}

        # copy: the target has the same history (ids, parents, metadata, writes), independently.
        if is_async:
            await saver.acopy_thread(source, target)
        else:
            saver.copy_thread(source, target)
        tcfg = {"configurable": {"thread_id": target}}
        copied = await r.history(tcfg)

        def strip(history):
            return Canon()([(s.values, s.next, s.metadata, s.tasks, s.config["configurable"]["checkpoint_id"]) for s in history])

        assert strip(copied) == strip(full_history)
        # Copying a thread onto itself is refused by the server's validation, naming the field.
        with pytest.raises(InvalidArgumentError, match="target_thread_id must differ from source_thread_id"):
            if is_async:
                await saver.acopy_thread(source, source)
            else:
                saver.copy_thread(source, source)

        # delete_for_runs: the second run's checkpoints go, in every thread (the copy carries the
        # same run ids); the first run's stay as they were (pending writes belong to the
        # checkpoint they were written against, so the paused checkpoint keeps the writes the
        # second run made on it).
        if is_async:
            await saver.adelete_for_runs([run2])
        else:
            saver.delete_for_runs([run2])

        def checkpoints(history):
            return Canon()([(s.values, s.next, s.metadata, s.config, s.parent_config) for s in history])

        assert checkpoints(await r.history(cfg)) == checkpoints(paused_history)
        copied_after = await r.history(tcfg)
        assert [(s.values, s.next) for s in copied_after] == [(s.values, s.next) for s in paused_history]
        out = await r.invoke(None, cfg)  # finishes from the kept writes
        assert out["log"] == ["step1", "ask", "hello first"], out
