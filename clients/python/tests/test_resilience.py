"""Resilience defaults: an agent works again right after an outage of any length, statuses the
server marks as safe are retried (and only those), pushback and deadlines bound the retries,
round-robin over replicas keeps the retries, and a token sent in plaintext warns once."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import pytest
from langgraph.checkpoint.base import empty_checkpoint

from _harness import Server, create_database, drop_database
from checkpointd_client import (
    AbortedError,
    CheckpointdClient,
    CheckpointdError,
    GrpcCheckpointSaver,
    PlaintextTokenWarning,
    ResourceExhaustedError,
    RetryPolicy,
    UnavailableError,
)
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc

MARKED = (("checkpointd-retry-safe", "true"),)
FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------- a scriptable fake server


class ScriptedService(pb_grpc.CheckpointServiceServicer):
    """Answers GetTuple with a script of (code, details, trailers) failures, then successes."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.script: list[tuple[grpc.StatusCode, str, tuple]] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    def GetTuple(self, request, context):  # noqa: N802 - gRPC naming
        with self.lock:
            self.times.append(time.monotonic())
            step = self.script.pop(0) if self.script else None
        if step is not None:
            code, details, trailers = step
            context.set_trailing_metadata(trailers)
            context.abort(code, details)
        return pb.GetTupleResponse()


def _serve(service: ScriptedService) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_CheckpointServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def scripted():
    service = ScriptedService()
    server, port = _serve(service)
    service.target = f"127.0.0.1:{port}"
    yield service
    server.stop(0)


def _get(client: CheckpointdClient, **kw: Any) -> pb.GetTupleResponse:
    return client.get_tuple(pb.GetTupleRequest(thread_id="t"), **kw)


# ---------------------------------------------------------------- which statuses are retried


@pytest.mark.parametrize(
    ("code", "exc"),
    [(grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError), (grpc.StatusCode.ABORTED, AbortedError)],
)
def test_a_status_marked_retry_safe_is_retried_and_an_unmarked_one_is_not(scripted, code, exc) -> None:
    with CheckpointdClient(scripted.target, retry=FAST) as client:
        scripted.script = [(code, "server overloaded", MARKED)] * 2
        assert not _get(client).HasField("tuple")
        assert len(scripted.times) == 3

        scripted.times.clear()
        scripted.script = [(code, "message larger than the limit", ())]
        with pytest.raises(exc) as info:
            _get(client)
        assert len(scripted.times) == 1
        assert not info.value.retry_safe
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # e.g. a message over the size limit
        assert not info.value.retryable and "will not help" in str(info.value)


async def test_the_async_path_retries_marked_statuses_too(scripted) -> None:
    scripted.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", MARKED)]
    async with CheckpointdClient(scripted.target, retry=FAST) as client:
        await client.aget_tuple(pb.GetTupleRequest(thread_id="t"))
        assert len(scripted.times) == 2
        scripted.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "too large", ())]
        with pytest.raises(ResourceExhaustedError):
            await client.aget_tuple(pb.GetTupleRequest(thread_id="t"))
        assert len(scripted.times) == 3


def test_the_servers_pushback_sets_the_wait_before_the_retry(scripted) -> None:
    scripted.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", MARKED + (("grpc-retry-pushback-ms", "300"),))]
    with CheckpointdClient(scripted.target, retry=FAST) as client:
        _get(client)
    first, second = scripted.times
    assert 0.29 <= second - first < 1.0


def test_a_negative_pushback_means_do_not_retry(scripted) -> None:
    scripted.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "go away", MARKED + (("grpc-retry-pushback-ms", "-1"),))]
    with CheckpointdClient(scripted.target, retry=FAST) as client, pytest.raises(ResourceExhaustedError):
        _get(client)
    assert len(scripted.times) == 1


def test_no_retry_waits_past_the_calls_deadline(scripted) -> None:
    scripted.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", MARKED + (("grpc-retry-pushback-ms", "5000"),))]
    started = time.monotonic()
    with CheckpointdClient(scripted.target, retry=FAST) as client, pytest.raises(ResourceExhaustedError) as info:
        _get(client, timeout=1.0)
    assert time.monotonic() - started < 1.0 and len(scripted.times) == 1
    assert info.value.retry_after == 5.0


def test_retries_are_throttled_once_most_attempts_fail(scripted) -> None:
    """gRFC A6 throttling: an outage does not multiply the load by the number of attempts."""
    scripted.script = [(grpc.StatusCode.UNAVAILABLE, "db down", ())] * 100
    with CheckpointdClient(scripted.target, retry=FAST) as client:
        for _ in range(6):
            with pytest.raises(UnavailableError):
                _get(client)
    assert len(scripted.times) < 6 * FAST.max_attempts
    assert len(scripted.times) >= 6 + 4  # the first calls were retried


async def test_the_real_servers_overload_is_marked_retry_safe_and_retried() -> None:
    """checkpointd at its in-flight limit refuses with a marked RESOURCE_EXHAUSTED and a pushback;
    with the default policy, a few concurrent callers all get through."""
    name, url = create_database()
    server = Server(url, "--max-concurrent-requests", "1").start()
    try:
        requests = [pb.GetTupleRequest(thread_id=f"t{i}") for i in range(20)]
        async with CheckpointdClient(server.target, retry=None) as client:
            results = await asyncio.gather(*(client.aget_tuple(r) for r in requests), return_exceptions=True)
        refused = [r for r in results if isinstance(r, Exception)]
        assert refused and all(isinstance(e, ResourceExhaustedError) for e in refused), refused
        assert all(e.retry_safe and e.retryable and e.retry_after is not None for e in refused)
        async with CheckpointdClient(server.target) as client:
            await asyncio.gather(*(client.aget_tuple(r) for r in requests[:3]))
    finally:
        server.stop()
        drop_database(name)


# ---------------------------------------------------------------- defaults


def test_the_reconnect_backoff_is_capped_at_one_second_by_default() -> None:
    options = dict(CheckpointdClient("127.0.0.1:1").channel_options)
    assert options["grpc.max_reconnect_backoff_ms"] == 1000
    assert options["grpc.initial_reconnect_backoff_ms"] == 100
    assert dict(CheckpointdClient("127.0.0.1:1", reconnect_backoff_max=0.5).channel_options)[
        "grpc.max_reconnect_backoff_ms"
    ] == 500


def test_a_call_waits_for_the_connection_only_within_its_deadline() -> None:
    target = f"127.0.0.1:{_unused_port()}"
    with CheckpointdClient(target) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="no connection to"):
            _get(client, timeout=0.5)
        assert 0.4 < time.monotonic() - started < 2.0


def _unused_port() -> int:
    from _harness import free_port

    return free_port()


# ---------------------------------------------------------------- plaintext tokens


def test_a_token_sent_in_plaintext_to_a_remote_address_warns_once() -> None:
    target = f"10.255.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}:50051"  # never connected
    with pytest.warns(PlaintextTokenWarning, match="plaintext") as caught:
        CheckpointdClient(target, token="s3cret-value").close()
    assert "s3cret-value" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CheckpointdClient(target, token="s3cret-value").close()  # the same target: once only
        CheckpointdClient("127.0.0.1:50051", token="t").close()  # loopback
        CheckpointdClient("localhost:50051", token="t").close()
        CheckpointdClient("dns:///localhost:50051", token="t").close()
        CheckpointdClient("checkpointd:50051", token="t", tls=True).close()  # TLS
        CheckpointdClient("checkpointd:50051").close()  # no token


# ---------------------------------------------------------------- round robin over replicas


def test_round_robin_spreads_calls_over_replicas_and_keeps_retrying(scripted) -> None:
    other = ScriptedService("b")
    server_b, port_b = _serve(other)
    try:
        port_a = scripted.target.rsplit(":", 1)[1]
        target = f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}"
        with CheckpointdClient(target, load_balancing="round_robin", retry=FAST) as client:
            for _ in range(10):
                _get(client)
            assert len(scripted.times) >= 3 and len(other.times) >= 3
            # the retry policy still applies: a marked status is retried (on the next replica)
            scripted.script = [(grpc.StatusCode.ABORTED, "contention", MARKED)]
            other.script = [(grpc.StatusCode.ABORTED, "contention", MARKED)]
            before = len(scripted.times) + len(other.times)
            _get(client)
            assert len(scripted.times) + len(other.times) - before >= 2
    finally:
        server_b.stop(0)


def test_round_robin_over_real_replicas_survives_one_going_down() -> None:
    name, url = create_database()
    first, second = Server(url).start(), Server(url).start()
    try:
        target = f"ipv4:{first.target},{second.target}"
        with GrpcCheckpointSaver(target, load_balancing="round_robin") as saver:
            config = {"configurable": {"thread_id": f"rr-{uuid.uuid4()}", "checkpoint_ns": ""}}
            cp = empty_checkpoint()
            cp["channel_values"] = {"v": ["x"]}
            cp["channel_versions"] = {"v": 1}
            config = saver.put(config, cp, {}, {"v": 1})
            first.stop()
            for _ in range(10):  # every call succeeds on the replica that is left
                assert saver.get_tuple(config).checkpoint["channel_values"]["v"] == ["x"]
    finally:
        first.stop()
        second.stop()
        drop_database(name)


# ---------------------------------------------------------------- recovery after an outage

OUTAGE = 8.0  # seconds: by then gRPC's default reconnect backoff would wait 4-7 s more
RECOVERY_BOUND = 1.5
SLACK = 0.3


class _Agent:
    """Calls ``get_tuple`` (sync, in a thread) or ``aget_tuple`` (on its own event loop, in a
    thread) about every 0.25 s, like an agent taking steps, and records when calls succeed."""

    def __init__(self, saver: GrpcCheckpointSaver, config: dict, mode: str) -> None:
        self.saver, self.config, self.mode = saver, config, mode
        self.successes: list[float] = []
        self.failures: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _record(self, ok: bool) -> None:
        (self.successes if ok else self.failures).append(time.monotonic())

    def _run(self) -> None:
        if self.mode == "sync":
            while not self.stop.is_set():
                try:
                    self.saver.get_tuple(self.config)
                    self._record(True)
                except CheckpointdError:
                    self._record(False)
                self.stop.wait(0.25)  # the agent's pace, not synchronisation
        else:
            asyncio.run(self._arun())

    async def _arun(self) -> None:
        while not self.stop.is_set():
            try:
                await self.saver.aget_tuple(self.config)
                self._record(True)
            except CheckpointdError:
                self._record(False)
            await asyncio.sleep(0.25)

    def successes_after(self, t: float) -> list[float]:
        return [s for s in self.successes if s > t]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_agent_works_again_within_1_5_s_of_the_server_coming_back(mode: str) -> None:
    name, url = create_database()
    server = Server(url).start()
    port = server.port
    saver = GrpcCheckpointSaver(server.target)  # the defaults, as a user gets them
    agent = None
    try:
        cp = empty_checkpoint()
        cp["channel_values"] = {"v": ["x"]}
        cp["channel_versions"] = {"v": 1}
        config = saver.put({"configurable": {"thread_id": "agent", "checkpoint_ns": ""}}, cp, {}, {"v": 1})
        agent = _Agent(saver, config, mode)
        agent.thread.start()
        _wait_until(lambda: len(agent.successes) >= 2, 10, "the agent's first calls")

        server.proc.kill()  # a crash: no graceful shutdown
        server.proc.wait()
        down_at = time.monotonic()
        _wait_until(lambda: time.monotonic() - down_at >= OUTAGE, OUTAGE + 1, "the outage")
        assert not agent.successes_after(down_at + 0.5), "calls cannot succeed while the server is down"

        server.start(port=port)  # the same address; returns once the server reports SERVING
        ready_at = time.monotonic()
        _wait_until(lambda: agent.successes_after(down_at), 15, "the agent's first call after the outage")
        recovery = agent.successes_after(down_at)[0] - ready_at
        print(f"{mode}: first successful call {recovery:+.3f}s after the server reported ready")
        assert recovery <= RECOVERY_BOUND + SLACK
    finally:
        if agent is not None:
            agent.stop.set()
        server.stop()
        if agent is not None:
            agent.thread.join(timeout=35)
        saver.close()
        drop_database(name)
