"""Channel behaviour of CheckpointdClient / GrpcCheckpointSaver: retries, deadlines, metadata,
TLS, gzip, message limits, error translation, lifecycle, event loops, serializers."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from _harness import dump_tables, free_port
from checkpointd_client import (
    CheckpointdClient,
    CheckpointdError,
    DeadlineExceededError,
    FailedPreconditionError,
    GrpcCheckpointSaver,
    InvalidArgumentError,
    ResourceExhaustedError,
    RetryPolicy,
    UnavailableError,
)
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from checkpointd_client.saver import _LastSizes

# ---------------------------------------------------------------- a scriptable fake server


class FakeService(pb_grpc.CheckpointServiceServicer):
    """Answers GetTuple by a script of status codes, and records what it saw."""

    def __init__(self) -> None:
        self.script: list[tuple[grpc.StatusCode, str, tuple]] = []
        self.calls: list[dict] = []
        self.sleep = 0.0
        self.lock = threading.Lock()

    def GetTuple(self, request, context):  # noqa: N802 - gRPC naming
        with self.lock:
            self.calls.append(
                {
                    "metadata": dict(context.invocation_metadata()),
                    "time_remaining": context.time_remaining(),
                    "thread_id": request.thread_id,
                }
            )
            step = self.script.pop(0) if self.script else None
        if self.sleep:
            time.sleep(self.sleep)
        if step is not None:
            code, details, trailers = step
            if trailers:
                context.set_trailing_metadata(trailers)
            context.abort(code, details)
        return pb.GetTupleResponse()

    def List(self, request, context):  # noqa: N802
        for i in range(1000):
            yield pb.ListResponse(
                tuple=pb.CheckpointTuple(
                    config=pb.CheckpointConfig(thread_id="t", checkpoint_id=f"{1000 - i:08d}"),
                    checkpoint_json=b'{"v": 4, "id": "x", "channel_values": {}, "channel_versions": {}}',
                    metadata_json=b"{}",
                )
            )


@pytest.fixture
def fake():
    service = FakeService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_CheckpointServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    service.target = f"127.0.0.1:{port}"
    yield service
    server.stop(0)


FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


def test_unavailable_is_retried_with_backoff_then_succeeds(fake) -> None:
    fake.script = [(grpc.StatusCode.UNAVAILABLE, "db down", ())] * 3
    with CheckpointdClient(fake.target, retry=FAST_RETRY) as client:
        resp = client.get_tuple(pb.GetTupleRequest(thread_id="t"))
    assert not resp.HasField("tuple")
    assert len(fake.calls) == 4


async def test_unavailable_is_retried_async(fake) -> None:
    fake.script = [(grpc.StatusCode.UNAVAILABLE, "db down", ())] * 2
    async with GrpcCheckpointSaver(fake.target, retry=FAST_RETRY) as saver:
        assert await saver.aget_tuple({"configurable": {"thread_id": "t"}}) is None
    assert len(fake.calls) == 3


def test_retries_stop_after_max_attempts_and_raise_a_retryable_error(fake) -> None:
    fake.script = [(grpc.StatusCode.UNAVAILABLE, "db down", ())] * 10
    with GrpcCheckpointSaver(fake.target, retry=FAST_RETRY) as saver:
        with pytest.raises(UnavailableError) as info:
            saver.get_tuple({"configurable": {"thread_id": "t"}})
    err = info.value
    assert len(fake.calls) == 5
    assert err.retryable and err.method == "GetTuple" and err.code == grpc.StatusCode.UNAVAILABLE
    assert "GetTuple" in str(err) and "UNAVAILABLE" in str(err) and "db down" in str(err)
    assert "safe to retry" in str(err)
    assert isinstance(err, ConnectionError) and isinstance(err, CheckpointdError)


def test_no_retry_when_disabled(fake) -> None:
    fake.script = [(grpc.StatusCode.UNAVAILABLE, "db down", ())] * 3
    with CheckpointdClient(fake.target, retry=None) as client, pytest.raises(UnavailableError):
        client.get_tuple(pb.GetTupleRequest(thread_id="t"))
    assert len(fake.calls) == 1


@pytest.mark.parametrize(
    ("code", "exc", "retryable"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError, False),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError, True),
    ],
)
def test_other_errors_are_not_retried_and_say_whether_to_retry(fake, code, exc, retryable) -> None:
    fake.script = [(code, "thread_id: must not be empty", ())]
    with CheckpointdClient(fake.target, retry=FAST_RETRY) as client, pytest.raises(exc) as info:
        client.get_tuple(pb.GetTupleRequest(thread_id="t"))
    assert len(fake.calls) == 1
    assert info.value.retryable is retryable
    assert ("safe to retry" in str(info.value)) is retryable


def test_resource_exhausted_pushback_is_reported(fake) -> None:
    marked = (("grpc-retry-pushback-ms", "250"), ("checkpointd-retry-safe", "true"))
    fake.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "pool saturated", marked)]
    with CheckpointdClient(fake.target, retry=None) as client, pytest.raises(ResourceExhaustedError) as info:
        client.get_tuple(pb.GetTupleRequest(thread_id="t"))
    assert info.value.retry_after == 0.25 and info.value.retryable and info.value.retry_safe
    assert "safe to retry after 0.250s" in str(info.value)


def test_deadline_default_and_override(fake) -> None:
    with CheckpointdClient(fake.target, timeout=7.0) as client:
        client.get_tuple(pb.GetTupleRequest(thread_id="t"))
        client.get_tuple(pb.GetTupleRequest(thread_id="t"), timeout=2.0)
    assert 6.0 < fake.calls[0]["time_remaining"] <= 7.1
    assert 1.0 < fake.calls[1]["time_remaining"] <= 2.1
    fake.sleep = 0.5
    with GrpcCheckpointSaver(fake.target, timeout=0.1) as saver, pytest.raises(DeadlineExceededError) as info:
        saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert info.value.retryable and isinstance(info.value, TimeoutError)


def test_bearer_token_and_extra_metadata(fake) -> None:
    tokens = iter(["tok-1", "tok-2"])
    with CheckpointdClient(fake.target, token=lambda: next(tokens), metadata=[("traceparent", "00-abc-def-01")]) as c:
        c.get_tuple(pb.GetTupleRequest(thread_id="t"))
        c.get_tuple(pb.GetTupleRequest(thread_id="t"))
    assert [call["metadata"]["authorization"] for call in fake.calls] == ["Bearer tok-1", "Bearer tok-2"]
    assert fake.calls[0]["metadata"]["traceparent"] == "00-abc-def-01"
    with GrpcCheckpointSaver(fake.target, token="static") as saver:
        saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert fake.calls[-1]["metadata"]["authorization"] == "Bearer static"


def test_list_stops_early_without_draining_the_stream(fake) -> None:
    with CheckpointdClient(fake.target) as client:
        stream = client.list(pb.ListRequest())
        first = next(stream)
        stream.close()  # cancels the call
    assert first.tuple.config.checkpoint_id == "00001000"


def test_channel_options() -> None:
    client = CheckpointdClient("example:1", max_message_size=1 << 20, keepalive_time=20)
    opts = dict(client.channel_options)
    assert opts["grpc.max_send_message_length"] == opts["grpc.max_receive_message_length"] == 1 << 20
    assert opts["grpc.keepalive_time_ms"] == 20000 and opts["grpc.enable_retries"] == 1
    # Reconnect within about a second whatever the outage (gRPC's default grows towards 120 s).
    assert opts["grpc.max_reconnect_backoff_ms"] == 1000
    assert opts["grpc.initial_reconnect_backoff_ms"] == 100
    assert opts["grpc.min_reconnect_backoff_ms"] == 2000
    # Retries are in the client's call path, not in a gRPC service config.
    assert "grpc.service_config" not in opts
    with pytest.raises(ValueError, match="max_attempts must be between 1 and 100"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match=r"unknown status codes \['NOT_A_CODE'\]"):
        RetryPolicy(status_codes=("NOT_A_CODE",))
    with pytest.raises(ValueError, match="unknown compression 'brotli'"):
        CheckpointdClient("x:1", compression="brotli")
    with pytest.raises(ValueError, match="unknown load_balancing 'random'"):
        CheckpointdClient("x:1", load_balancing="random")
    with pytest.raises(ValueError, match="not a PostgreSQL connection string"):
        CheckpointdClient("postgresql://postgres@localhost/db")
    client.close()
    with pytest.raises(RuntimeError, match="CheckpointdClient is closed"):
        client.get_tuple(pb.GetTupleRequest(thread_id="t"))


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[bytes, bytes]:
    d: Path = tmp_path_factory.mktemp("tls")
    # openssl is a test prerequisite: without it the TLS tests fail (they are never skipped).
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
            "-subj", "/CN=checkpointd.test", "-addext", "subjectAltName=DNS:checkpointd.test",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return (d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes()


def test_tls_with_custom_root_certificate(tls_files) -> None:
    cert, key = tls_files
    service = FakeService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_CheckpointServiceServicer_to_server(service, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        target = f"127.0.0.1:{port}"
        with GrpcCheckpointSaver(
            target, root_certificates=cert, server_name_override="checkpointd.test", token="secret"
        ) as saver:
            assert saver.get_tuple({"configurable": {"thread_id": "tls"}}) is None
        assert service.calls[0]["metadata"]["authorization"] == "Bearer secret"
        # Plaintext to a TLS port fails as UNAVAILABLE (retryable), not with a hang.
        with CheckpointdClient(target, retry=None, timeout=2) as plain, pytest.raises(UnavailableError):
            plain.get_tuple(pb.GetTupleRequest(thread_id="t"))
    finally:
        server.stop(0)


# ---------------------------------------------------------------- against the real server


def test_server_errors_are_clear(server) -> None:
    with GrpcCheckpointSaver(server.target) as saver:
        with pytest.raises(InvalidArgumentError, match="target_thread_id must differ from source_thread_id") as info:
            saver.copy_thread("same", "same")
        assert not info.value.retryable and "CopyThread" in str(info.value)
        cp = empty_checkpoint()
        cp["channel_values"] = {"s": "nul\x00"}
        with pytest.raises(InvalidArgumentError, match=r"checkpoint_json contains a NUL character") as info:
            saver.put({"configurable": {"thread_id": "e", "checkpoint_ns": ""}}, cp, {}, {})
        assert isinstance(info.value, ValueError)
        with pytest.raises(InvalidArgumentError, match="thread_id is 600 bytes long; the limit is 512"):
            saver.get_tuple({"configurable": {"thread_id": "x" * 600}})


def test_health_and_unreachable_server(server) -> None:
    with CheckpointdClient(server.target) as client:
        assert client.health() == "SERVING"
        assert client.health("") == "SERVING"
    with CheckpointdClient(f"127.0.0.1:{free_port()}", retry=FAST_RETRY, timeout=1) as client:
        with pytest.raises(UnavailableError) as info:
            client.get_tuple(pb.GetTupleRequest(thread_id="t"))
        assert info.value.retryable and "no connection to" in str(info.value)
    # Without waiting for the connection, the call fails at once.
    with CheckpointdClient(f"127.0.0.1:{free_port()}", retry=None, wait_for_ready=False) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.get_tuple(pb.GetTupleRequest(thread_id="t"))
        assert time.monotonic() - started < 1.0


def _put_big(saver: GrpcCheckpointSaver, thread: str, size: int) -> dict:
    cp = empty_checkpoint()
    cp["channel_values"] = {"big": "x" * size, "blob": ["y" * size]}
    cp["channel_versions"] = {"big": 1, "blob": 1}
    return saver.put({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}, cp, {}, {"blob": 1})


def test_gzip_round_trip(server) -> None:
    thread = f"gzip-{uuid.uuid4()}"
    with GrpcCheckpointSaver(server.target, compression="gzip") as saver:
        _put_big(saver, thread, 200_000)
        got = saver.get_tuple({"configurable": {"thread_id": thread}})
    assert got.checkpoint["channel_values"]["blob"] == ["y" * 200_000]


def test_message_size_limit(server) -> None:
    with GrpcCheckpointSaver(server.target, max_message_size=64 * 1024) as saver:
        with pytest.raises(ResourceExhaustedError, match="larger than max") as info:
            _put_big(saver, f"big-{uuid.uuid4()}", 100_000)
    assert not info.value.retryable


async def test_sync_calls_on_the_event_loop_thread_work_when_allowed(server) -> None:
    """By default they raise InvalidStateError (see test_event_loop.py); opted in, they work."""
    thread = f"loop-{uuid.uuid4()}"
    async with GrpcCheckpointSaver(server.target, allow_sync_on_event_loop=True) as saver:
        config = _put_big(saver, thread, 10)  # sync, on the loop's own thread
        assert saver.get_tuple(config) == await saver.aget_tuple(config)
        assert list(saver.list(config)) == [t async for t in saver.alist(config)]
        await asyncio.gather(*(saver.aget_tuple(config) for _ in range(20)))  # concurrent async calls


def test_async_methods_work_on_successive_event_loops(server) -> None:
    """grpc.aio channels are per loop: a saver outlives the loops that use it."""
    saver = GrpcCheckpointSaver(server.target)
    thread = f"loops-{uuid.uuid4()}"
    config = _put_big(saver, thread, 10)

    async def read():
        return await saver.aget_tuple(config)

    first = asyncio.run(read())
    second = asyncio.run(read())
    assert first == second and first is not None

    def in_thread(out: list) -> None:
        out.append(asyncio.run(read()))

    out: list = []
    t = threading.Thread(target=in_thread, args=(out,))
    t.start()
    t.join()
    assert out == [first]
    saver.close()


class _ThreadRecordingSerde(JsonPlusSerializer):
    """Records the thread of every (de)serialization."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def dumps_typed(self, obj):
        self.threads.append(threading.get_ident())
        return super().dumps_typed(obj)

    def loads_typed(self, data):
        self.threads.append(threading.get_ident())
        return super().loads_typed(data)


async def test_small_values_are_serialized_on_the_loop_and_large_ones_in_a_thread(server) -> None:
    serde = _ThreadRecordingSerde()
    loop_thread = threading.get_ident()
    small = {"x": 1}
    large = {"x": "y" * (GrpcCheckpointSaver.inline_serde_max_bytes + 1)}

    def checkpoint(value: dict, version: int) -> dict:
        cp = empty_checkpoint()
        cp["channel_values"] = {"v": value}
        cp["channel_versions"] = {"v": version}
        return cp

    async with GrpcCheckpointSaver(server.target, serde=serde) as saver:
        config = {"configurable": {"thread_id": f"inline-{uuid.uuid4()}", "checkpoint_ns": ""}}
        config = await saver.aput(config, checkpoint(small, 1), {}, {"v": 1})
        await saver.aput_writes(config, [("w", small)], "task")
        assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["v"] == small
        assert set(serde.threads) == {loop_thread}

        # The first large value of a channel is dumped inline (its size is not known yet), the
        # next ones in a worker thread; a large row is loaded in a worker thread.
        serde.threads.clear()
        config = await saver.aput(config, checkpoint(large, 2), {}, {"v": 2})
        config = await saver.aput(config, checkpoint(large, 3), {}, {"v": 3})
        await saver.aput_writes(config, [("w", large)], "task")
        await saver.aput_writes(config, [("w", large)], "task2")
        assert (await saver.aget_tuple(config)).pending_writes[0][2] == large
        assert serde.threads[0] == loop_thread and serde.threads[2] == loop_thread
        assert loop_thread not in serde.threads[1:2] + serde.threads[3:]

        # A channel that became small again is back on the loop (after one dump in a thread).
        config = await saver.aput(config, checkpoint(small, 4), {}, {"v": 4})
        serde.threads.clear()
        config = await saver.aput(config, checkpoint(small, 5), {}, {"v": 5})
        assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["v"] == small
        assert set(serde.threads) == {loop_thread}

        # inline_serde_max_bytes = 0: always a worker thread, as AsyncPostgresSaver does.
        saver.inline_serde_max_bytes = 0
        serde.threads.clear()
        config = await saver.aput(config, checkpoint(small, 6), {}, {"v": 6})
        await saver.aput_writes(config, [("w", small)], "task")
        assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["v"] == small
        assert len(serde.threads) == 4 and loop_thread not in serde.threads


def test_remembered_sizes_are_bounded_and_drop_the_least_recently_dumped() -> None:
    sizes = _LastSizes(max_entries=3)
    for key in ("a", "b", "c"):
        sizes.record(key, 1)
    sizes.record("a", 5)  # now the most recent
    sizes.record("d", 2)  # over the bound: "b" goes
    assert sizes.total(["a", "b", "c", "d"]) == 8
    assert sizes.total(["b"]) == 0


async def test_setup_is_a_noop_both_ways(server) -> None:
    async with GrpcCheckpointSaver(server.target) as saver:
        await saver.setup()
        saver.setup()
        assert isinstance(saver, BaseCheckpointSaver)


async def test_with_allowlist_clone_shares_the_channel(server) -> None:
    async with GrpcCheckpointSaver(server.target) as saver:
        clone = saver.with_allowlist([("builtins", "set")])
        assert clone.client is saver.client
        cfg = {"configurable": {"thread_id": f"allow-{uuid.uuid4()}", "checkpoint_ns": ""}}
        cp = empty_checkpoint()
        cp["channel_values"] = {"v": [1, 2]}
        cp["channel_versions"] = {"v": 1}
        stored = await clone.aput(cfg, cp, {}, {"v": 1})
        assert (await saver.aget_tuple(stored)).checkpoint["channel_values"]["v"] == [1, 2]


async def test_encrypted_serializer_interoperates_with_postgres_saver(server) -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"0123456789abcdef")
    thread = f"aes-{uuid.uuid4()}"
    cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    cp = empty_checkpoint()
    cp["channel_values"] = {"secret": {"card": "4111"}, "n": 1}
    cp["channel_versions"] = {"secret": 1, "n": 1}
    async with GrpcCheckpointSaver(server.target, serde=serde) as saver:
        stored = await saver.aput(cfg, cp, {"step": 1}, {"secret": 1, "n": 1})
        await saver.aput_writes(stored, [("w", {"x": 1})], "task")
        mine = await saver.aget_tuple(stored)
    async with AsyncPostgresSaver.from_conn_string(server.database_url, serde=serde) as pg:
        theirs = await pg.aget_tuple(stored)
    assert mine == theirs
    assert mine.checkpoint["channel_values"]["secret"] == {"card": "4111"}
    rows = dump_tables(server.database_url)
    blob_types = {r[4] for r in rows["checkpoint_blobs"] if r[0] == thread}
    assert blob_types == {"msgpack+aes"}
    assert all(b"4111" not in r[5] for r in rows["checkpoint_blobs"] if r[0] == thread)
    # Without the key the values cannot be read (the server never decodes them): the plain
    # serializer refuses the encrypted type by name, exactly as it does under AsyncPostgresSaver.
    async with GrpcCheckpointSaver(server.target, serde=JsonPlusSerializer()) as plain:
        with pytest.raises(NotImplementedError, match=r"Unknown serialization type: msgpack\+aes"):
            await plain.aget_tuple(stored)


def test_server_restart_is_survived_by_the_same_saver(tmp_path) -> None:
    """The agent keeps one saver across a server restart: calls fail with a retryable
    UnavailableError while it is down, and work again once it is back, on the same channel."""
    from _harness import Server, create_database, drop_database

    name, url = create_database()
    first = Server(url).start()
    saver = GrpcCheckpointSaver(first.target, retry=FAST_RETRY, timeout=2)
    try:
        config = _put_big(saver, "restart", 10)
        first.stop()
        with pytest.raises(UnavailableError) as info:
            saver.get_tuple(config)
        assert info.value.retryable
        second = Server(url)
        second.port = first.port
        second.proc = subprocess.Popen(
            [str(_server_bin()), "serve", "--listen", first.target, "--database-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    got = saver.get_tuple(config)
                    break
                except UnavailableError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert got is not None and got.checkpoint["channel_values"]["blob"] == ["y" * 10]

            async def read_async():
                return await saver.aget_tuple(config)

            assert asyncio.run(read_async()) == got
        finally:
            second.stop()
    finally:
        saver.close()
        first.stop()
        drop_database(name)


def _server_bin():
    from _harness import server_binary

    return server_binary()


def test_the_callers_trace_context_travels_with_every_call(fake) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("agent")
    with CheckpointdClient(fake.target) as client, tracer.start_as_current_span("agent step") as span:
        client.get_tuple(pb.GetTupleRequest(thread_id="t"))
        context = span.get_span_context()
    traceparent = fake.calls[-1]["metadata"]["traceparent"]
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    with CheckpointdClient(fake.target, propagate_trace_context=False) as client:
        with tracer.start_as_current_span("untraced"):
            client.get_tuple(pb.GetTupleRequest(thread_id="t"))
    assert "traceparent" not in fake.calls[-1]["metadata"]
