"""Event-loop safety: blocking calls on a loop's thread raise (as AsyncPostgresSaver's do) unless
allowed, async token providers, ``with_allowlist`` clones, ``os.fork()``, and where values are
(de)serialized in the async methods."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from concurrent import futures
from typing import Any

import grpc
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from _harness import dump_tables
from checkpointd_client import CheckpointdClient, GrpcCheckpointSaver
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from graph_scenarios import _hitl_graph


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def _checkpoint(value: Any, version: int = 1) -> dict[str, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = {"v": value}
    cp["channel_versions"] = {"v": version}
    return cp


# Each sync method, called with valid arguments, and the async method the error must name.
SYNC_CALLS = {
    "get_tuple": (lambda s, c: s.get_tuple(c), "aget_tuple"),
    "list": (lambda s, c: list(s.list(c)), "alist"),
    "put": (lambda s, c: s.put(c, _checkpoint([1]), {}, {"v": 1}), "aput"),
    "put_writes": (lambda s, c: s.put_writes({**c, "configurable": {**c["configurable"], "checkpoint_id": "x"}}, [("w", 1)], "t"), "aput_writes"),
    "delete_thread": (lambda s, c: s.delete_thread(c["configurable"]["thread_id"]), "adelete_thread"),
    "delete_for_runs": (lambda s, c: s.delete_for_runs(["run"]), "adelete_for_runs"),
    "copy_thread": (lambda s, c: s.copy_thread(c["configurable"]["thread_id"], "elsewhere"), "acopy_thread"),
    "prune": (lambda s, c: s.prune([c["configurable"]["thread_id"]]), "aprune"),
    "get_delta_channel_history": (lambda s, c: s.get_delta_channel_history(config=c, channels=["v"]), "aget_delta_channel_history"),
}


@pytest.mark.parametrize("method", sorted(SYNC_CALLS))
async def test_sync_methods_on_the_event_loop_thread_raise_invalid_state_error(server, method: str) -> None:
    call, async_name = SYNC_CALLS[method]
    thread = f"loop-{uuid.uuid4()}"
    async with GrpcCheckpointSaver(server.target) as saver:
        with pytest.raises(asyncio.InvalidStateError, match=rf"`await checkpointer\.{async_name}\(\.\.\.\)`"):
            call(saver, _config(thread))
    rows = dump_tables(server.database_url)
    assert not [r for table in rows.values() for r in table if r[0] == thread], "nothing may be written"


async def test_the_clients_sync_methods_on_the_event_loop_thread_raise_invalid_state_error(server) -> None:
    async with CheckpointdClient(server.target) as client:
        with pytest.raises(asyncio.InvalidStateError, match=r"await client\.aget_tuple"):
            client.get_tuple(pb.GetTupleRequest(thread_id="t"))
        with pytest.raises(asyncio.InvalidStateError, match=r"await client\.alist"):
            list(client.list(pb.ListRequest(thread_id="t")))
        assert (await client.aget_tuple(pb.GetTupleRequest(thread_id="t"))).HasField("tuple") is False


async def test_what_langgraph_calls_synchronously_on_the_loop_still_works(server) -> None:
    """get_next_version, setup, with_allowlist and the async graph API (which LangGraph and the
    Agent Server call on the loop) are not blocking calls."""
    async with GrpcCheckpointSaver(server.target) as saver:
        assert saver.get_next_version(None, None).startswith("0" * 31 + "1.")
        await saver.setup()
        clone = saver.with_allowlist([("builtins", "set")])
        graph = _hitl_graph(clone)
        config = {"configurable": {"thread_id": f"loop-graph-{uuid.uuid4()}"}}
        await graph.ainvoke({"log": []}, config)
        assert (await graph.aget_state(config)).next == ("ask",)


async def test_a_sync_graph_in_a_worker_thread_works_while_the_loop_runs(server) -> None:
    config = {"configurable": {"thread_id": f"worker-{uuid.uuid4()}"}}
    async with GrpcCheckpointSaver(server.target) as saver:
        graph = _hitl_graph(saver)
        await asyncio.to_thread(graph.invoke, {"log": []}, config)
        # the same thread, read back through the async API on the loop
        assert (await graph.aget_state(config)).next == ("ask",)


async def test_sync_calls_on_the_loop_thread_when_opted_in(server) -> None:
    async with GrpcCheckpointSaver(server.target, allow_sync_on_event_loop=True) as saver:
        config = saver.put(_config(f"opt-in-{uuid.uuid4()}"), _checkpoint([1]), {}, {"v": 1})
        assert saver.get_tuple(config) == await saver.aget_tuple(config)


# ---------------------------------------------------------------- token providers


class _RecordingService(pb_grpc.CheckpointServiceServicer):
    def __init__(self) -> None:
        self.authorization: list[str | None] = []

    def GetTuple(self, request, context):  # noqa: N802 - gRPC naming
        self.authorization.append(dict(context.invocation_metadata()).get("authorization"))
        return pb.GetTupleResponse()


@pytest.fixture
def recording():
    service = _RecordingService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_CheckpointServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    service.target = f"127.0.0.1:{port}"
    yield service
    server.stop(0)


async def test_an_async_token_provider_is_awaited_per_call(recording) -> None:
    issued = iter(["tok-1", "tok-2"])

    async def token() -> str:
        await asyncio.sleep(0)
        return next(issued)

    async with GrpcCheckpointSaver(recording.target, token=token) as saver:
        await saver.aget_tuple({"configurable": {"thread_id": "t"}})
        await saver.aget_tuple({"configurable": {"thread_id": "t"}})
        # The sync methods cannot await it: a clear error instead of a "Bearer <coroutine>".
        with pytest.raises(TypeError, match="token provider is async"):
            await asyncio.to_thread(saver.get_tuple, {"configurable": {"thread_id": "t"}})
    assert recording.authorization == ["Bearer tok-1", "Bearer tok-2"]


def test_a_token_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="token must be a str"):
        CheckpointdClient("127.0.0.1:1", token=b"bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- with_allowlist clones


async def test_closing_a_with_allowlist_clone_leaves_the_originals_channel_open(server) -> None:
    # A strict msgpack allowlist, so that with_allowlist really clones (LANGGRAPH_STRICT_MSGPACK).
    saver = GrpcCheckpointSaver(server.target, serde=JsonPlusSerializer(allowed_msgpack_modules=None))
    clone = saver.with_allowlist([("my_agent.state", "Ticket")])
    assert clone is not saver and clone.client is saver.client and clone.serde is not saver.serde
    config = await clone.aput(_config(f"clone-{uuid.uuid4()}"), _checkpoint([1, 2]), {}, {"v": 1})
    async with clone:
        pass
    clone.close()
    assert not saver.client.closed
    assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["v"] == [1, 2]
    await saver.aclose()
    assert saver.client.closed  # the owner closes the shared channels, for both
    with pytest.raises(RuntimeError, match="closed"):
        await clone.aget_tuple(config)


# ---------------------------------------------------------------- fork


def _in_forked_child(work: Any) -> dict[str, Any]:
    """Run ``work()`` in a forked child; returns what it returned (a JSON-able dict) or its error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            outcome = work()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            outcome = {"error": type(exc).__name__, "message": str(exc)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = json.loads(pipe.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return outcome


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_saver_used_before_a_fork_refuses_clearly_in_the_child(server) -> None:
    saver = GrpcCheckpointSaver(server.target)
    config = saver.put(_config(f"fork-{uuid.uuid4()}"), _checkpoint(["parent"]), {}, {"v": 1})
    inherited = saver.client._state.sync_channel

    def child() -> dict[str, Any]:
        saver.get_tuple(config)
        return {"error": None}

    outcome = _in_forked_child(child)
    assert outcome["error"] == "RuntimeError"
    assert "os.fork()" in outcome["message"] and "after the fork" in outcome["message"]
    # The parent's channel was not disturbed by the child.
    assert saver.client._state.sync_channel is inherited
    assert saver.get_tuple(config).checkpoint["channel_values"]["v"] == ["parent"]
    saver.close()


_FORK_IN_A_FRESH_PROCESS = """
import json, os, sys
from checkpointd_client import GrpcCheckpointSaver
from langgraph.checkpoint.base import empty_checkpoint

saver = GrpcCheckpointSaver(sys.argv[1])  # e.g. created at import time by a pre-fork server
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    cp = empty_checkpoint()
    cp["channel_values"] = {"v": ["child"]}
    cp["channel_versions"] = {"v": 1}
    config = saver.put({"configurable": {"thread_id": sys.argv[2], "checkpoint_ns": ""}}, cp, {}, {"v": 1})
    os.write(write_end, json.dumps(saver.get_tuple(config).checkpoint["channel_values"]["v"]).encode())
    os._exit(0)
os.close(write_end)
print(os.read(read_end, 1000).decode(), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_saver_created_before_gRPC_was_used_works_in_a_forked_child(server) -> None:
    """In a fresh process (this one has used gRPC already, so a child would refuse)."""
    import subprocess
    import sys

    thread = f"fork-{uuid.uuid4()}"
    done = subprocess.run(
        [sys.executable, "-c", _FORK_IN_A_FRESH_PROCESS, server.target, thread],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['["child"]', "0"], done.stderr
    with GrpcCheckpointSaver(server.target) as saver:
        assert saver.get_tuple(_config(thread)).checkpoint["channel_values"]["v"] == ["child"]


# ---------------------------------------------------------------- where values are serialized


class _ThreadRecordingSerde(JsonPlusSerializer):
    def __init__(self) -> None:
        super().__init__()
        self.dump_threads: list[int] = []

    def dumps_typed(self, obj):
        self.dump_threads.append(threading.get_ident())
        return super().dumps_typed(obj)


async def test_sizes_learned_from_a_read_send_the_next_large_write_off_the_loop(server) -> None:
    """A new saver (say, after a restart) reads a thread with large values: its first write of
    those channels is already dumped in a worker thread, not on the loop."""
    large = {"x": "y" * (GrpcCheckpointSaver.inline_serde_max_bytes + 1)}
    thread = f"sizes-{uuid.uuid4()}"
    async with GrpcCheckpointSaver(server.target) as writer:
        config = await writer.aput(_config(thread), _checkpoint(large, 1), {}, {"v": 1})
        await writer.aput_writes(config, [("v", large)], "task")

    serde = _ThreadRecordingSerde()
    loop_thread = threading.get_ident()
    async with GrpcCheckpointSaver(server.target, serde=serde) as saver:
        latest = await saver.aget_tuple(_config(thread))
        assert latest.checkpoint["channel_values"]["v"] == large
        config = await saver.aput(latest.config, _checkpoint(large, 2), {}, {"v": 2})
        await saver.aput_writes(config, [("v", large)], "task")
    assert len(serde.dump_threads) == 2 and loop_thread not in serde.dump_threads
