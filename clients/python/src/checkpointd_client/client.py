"""A thin, typed gRPC client for checkpointd (sync over ``grpc``, async over ``grpc.aio``).

The client owns the channel configuration a production deployment needs: a per-call deadline,
retries with exponential backoff and full jitter (UNAVAILABLE, and any status the server marks as
safe to retry), a reconnect backoff capped at one second so that an agent works again right after
an outage, calls that wait for the connection within their deadline, HTTP/2 keepalive, TLS, an
optional bearer token (sync or async provider), gzip compression, message size limits and optional
round-robin load balancing over several replicas. Failed calls raise the exceptions of
:mod:`checkpointd_client.errors`.

One sync channel serves the sync methods from any thread other than one running an event loop
(there they raise ``asyncio.InvalidStateError`` unless ``allow_sync_on_event_loop=True``).
``grpc.aio`` channels are bound to the event loop that created them, so the async methods create
one channel per running loop, lazily, and ``aclose()`` closes them. A forked child process drops
the channels it inherited and creates its own.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import os
import random
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

import grpc
import grpc.aio

from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from checkpointd_client.errors import (
    CheckpointdError,
    UnavailableError,
    error_from_rpc_error,
    is_marked_retry_safe,
    pushback_ms,
)

__all__ = ["CheckpointdClient", "PlaintextTokenWarning", "RetryPolicy", "SERVICE_NAME", "TokenProvider", "pb"]

SERVICE_NAME = "checkpoint.v1.CheckpointService"
_HEALTH_METHOD = "/grpc.health.v1.Health/Check"
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

DEFAULT_TIMEOUT = 30.0
DEFAULT_LIST_TIMEOUT = 300.0
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_RECONNECT_BACKOFF_MAX = 1.0
DEFAULT_CONNECT_TIMEOUT = 2.0
_LOAD_BALANCING = ("pick_first", "round_robin")

#: A bearer token, or a function returning one per call; for the async methods the function may
#: be a coroutine function (``async def``).
TokenProvider = Union[str, Callable[[], Union[str, Awaitable[str]]]]

T = TypeVar("T")


class PlaintextTokenWarning(UserWarning):
    """A bearer token is sent without TLS to an address that is not the local machine."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed call is retried, in the client's call path (sync and async alike).

    A call is retried when its status is in ``status_codes`` (UNAVAILABLE by default), or, with
    ``server_marked`` (the default), when the server marked the status as safe to retry with the
    trailing metadata ``checkpointd-retry-safe: true`` (ABORTED after contention,
    RESOURCE_EXHAUSTED from overload; a RESOURCE_EXHAUSTED for a message over the size limit is
    not marked and not retried). Before retry n the client waits
    ``random(0, min(initial_backoff * backoff_multiplier**(n-1), max_backoff))`` (exponential backoff
    with full jitter), or the server's ``grpc-retry-pushback-ms`` when it sent one, plus up to half
    of it again as jitter (a negative pushback means: do not retry). Retries never go past the call's deadline: a retry
    whose wait would end after it is not made. Retries are throttled channel-wide as in gRFC A6
    (``throttle_max_tokens``/``throttle_token_ratio``): once too many attempts fail, calls fail
    without retrying, so that an outage does not multiply the load. Every checkpointd RPC is
    idempotent, so retrying is safe even when it is unknown whether the first attempt committed.
    A ``List`` stream is retried only before its first message.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    backoff_multiplier: float = 2.0
    status_codes: tuple[str, ...] = ("UNAVAILABLE",)
    throttle_max_tokens: int = 10
    throttle_token_ratio: float = 0.1
    server_marked: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts must be between 1 and 100 (pass retry=None to disable retries)")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoff values must be positive")
        unknown = [c for c in self.status_codes if c not in grpc.StatusCode.__members__]
        if unknown:
            raise ValueError(f"unknown status codes {unknown}; use names such as 'UNAVAILABLE'")
        if not self.status_codes and not self.server_marked:
            raise ValueError("nothing to retry: give status_codes or server_marked=True (or retry=None)")
        if self.throttle_max_tokens <= 0 or self.throttle_token_ratio <= 0:
            raise ValueError("throttle values must be positive")

    def retries(self, err: grpc.RpcError) -> bool:
        """Whether this policy retries a call that failed with ``err`` (its attempts permitting)."""
        try:
            code = err.code()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            return False
        if code is not None and code.name in self.status_codes:
            return True
        return self.server_marked and is_marked_retry_safe(err)

    def backoff(self, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (1 for the first retry): full jitter."""
        ceiling = min(self.initial_backoff * self.backoff_multiplier ** (retry_number - 1), self.max_backoff)
        return random.uniform(0.0, ceiling)


class _RetryThrottle:
    """gRFC A6 retry throttling: a token bucket shared by every call of one client.

    A failed attempt with a retryable status takes a token, a successful call gives back
    ``ratio``; retries are allowed while more than half of the tokens are left.
    """

    __slots__ = ("max_tokens", "ratio", "tokens")

    def __init__(self, max_tokens: int, ratio: float) -> None:
        self.max_tokens = float(max_tokens)
        self.ratio = ratio
        self.tokens = float(max_tokens)

    def record_success(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.ratio)

    def record_failure_and_allow_retry(self) -> bool:
        self.tokens = max(0.0, self.tokens - 1.0)
        return self.tokens > self.max_tokens / 2


def _running_loop_on_this_thread() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def sync_call_on_event_loop_error(owner: str, example: str) -> asyncio.InvalidStateError:
    """The error of a blocking call made on an event loop's thread (as ``AsyncPostgresSaver``'s)."""
    return asyncio.InvalidStateError(
        f"Synchronous calls to {owner} are only allowed from a different thread. From the main "
        f"thread, use the async interface. For example, use `{example}` or `await graph.ainvoke(...)`. "
        f"(A blocking call here would stall the event loop; pass allow_sync_on_event_loop=True to "
        f"allow it anyway.)"
    )


def _host_of_target(target: str) -> list[str] | None:
    """The host names or addresses a gRPC target names, or None for a local socket (unix:)."""
    t = target.strip()
    lowered = t.lower()
    if lowered.startswith(("unix:", "unix-abstract:", "vsock:")):
        return None
    if lowered.startswith(("ipv4:", "ipv6:")):
        addresses = t.split(":", 1)[1].split(",")
    elif lowered.startswith("dns:"):
        rest = t[4:]
        if rest.startswith("//"):  # dns://[authority]/host:port
            rest = rest[2:].split("/", 1)[1] if "/" in rest[2:] else rest[2:]
        addresses = [rest]
    else:
        addresses = [t]
    hosts = []
    for address in addresses:
        a = address.strip()
        if a.startswith("["):  # [v6]:port
            hosts.append(a[1 : a.index("]")] if "]" in a else a[1:])
        elif a.count(":") > 1:  # a bare IPv6 address without port
            hosts.append(a)
        else:
            hosts.append(a.rsplit(":", 1)[0] if ":" in a else a)
    return hosts


def _is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "ip6-localhost", "ip6-loopback") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_target(target: str) -> bool:
    """Whether every address of ``target`` is the local machine (loopback or a unix socket)."""
    hosts = _host_of_target(target)
    return hosts is None or all(_is_loopback_host(h) for h in hosts)


def _close_coroutine(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        close()


_COMPRESSION = {
    None: None,
    "none": grpc.Compression.NoCompression,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}


@dataclass
class _AioEntry:
    channel: grpc.aio.Channel
    stub: pb_grpc.CheckpointServiceStub
    health: Any


@dataclass(eq=False)  # identity equality and hashing: states are kept in a WeakSet
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sync_channel: grpc.Channel | None = None
    sync_stub: pb_grpc.CheckpointServiceStub | None = None
    sync_health: Any = None
    # One grpc.aio channel per event loop. Plain (strong) keys: not every loop type supports weak
    # references (uvloop's does not); entries of closed loops are dropped when a channel is added.
    aio: dict[asyncio.AbstractEventLoop, _AioEntry] = field(default_factory=dict)
    closed: bool = False
    # Set in a forked child when gRPC had been used in the parent: the pid of that parent.
    used_before_fork_in: int | None = None

    def forget_inherited_channels(self, parent_pid: int, grpc_used_in_parent: bool) -> None:
        """In a forked child: drop the parent's channels (never close them: that could disturb
        the parent's connections) and the lock another thread may have held at the fork.

        When the parent had opened channels (this client or another), the client refuses to work
        in the child (see ``_check_open``): gRPC skips its own fork handlers while another thread
        is inside gRPC (always the case once ``grpc.aio`` ran), and gRPC may then hang or crash
        the child. A client created in a parent that had not used gRPC yet works in the child.
        """
        if grpc_used_in_parent:
            self.used_before_fork_in = parent_pid
        _INHERITED_AT_FORK.append((self.sync_channel, list(self.aio.values())))
        self.lock = threading.Lock()
        self.sync_channel = self.sync_stub = self.sync_health = None
        self.aio = {}


# Every open client's state, so that a forked child can reset them (see _after_fork_in_child).
_LIVE_STATES: weakref.WeakSet[_State] = weakref.WeakSet()
# Channels inherited by a forked child, kept referenced so that they are never closed there.
_INHERITED_AT_FORK: list[Any] = []


_pid_before_fork = [os.getpid()]


def _before_fork() -> None:
    _pid_before_fork[0] = os.getpid()


# Whether this process opened a gRPC channel through this package (inherited by forked children).
_channels_opened = [False]


def _after_fork_in_child() -> None:
    """gRPC channels must not be shared across ``os.fork()`` (see ``forget_inherited_channels``)."""
    for state in list(_LIVE_STATES):
        state.forget_inherited_channels(_pid_before_fork[0], _channels_opened[0])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _trace_context_injector() -> Callable[[], tuple[tuple[str, str], ...]] | None:
    """The current OpenTelemetry context as gRPC metadata, or None without opentelemetry-api."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return None

    def inject() -> tuple[tuple[str, str], ...]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return tuple((k.lower(), v) for k, v in carrier.items())

    return inject


def _encode_health_request(service: str) -> bytes:
    raw = service.encode("utf-8")
    if not raw:
        return b""
    return b"\x0a" + _varint(len(raw)) + raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _decode_health_response(data: bytes) -> str:
    # HealthCheckResponse { ServingStatus status = 1; } - one varint field, absent means UNKNOWN.
    status = 0
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        if key == 0x08:
            value, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            status = value
        else:  # an unknown field: stop, the status (if any) came first
            break
    return _HEALTH_STATUS.get(status, f"UNKNOWN({status})")


class CheckpointdClient:
    """Typed client for ``checkpoint.v1.CheckpointService``.

    Args:
        target: ``host:port``, or any gRPC target: ``dns:///checkpointd:50051`` (every address the
            name resolves to), ``ipv4:10.0.0.1:50051,10.0.0.2:50051``, ``unix:/path``.
        timeout: default deadline of each unary call, in seconds (``None``: no deadline). Retries
            and the wait for a connection happen within it.
        list_timeout: deadline of a whole ``List`` stream, in seconds (``None``: no deadline).
        tls: use TLS with the system roots (implied by any of the certificate arguments).
        root_certificates, private_key, certificate_chain: PEM bytes for TLS / mutual TLS.
        credentials: ready-made ``grpc.ChannelCredentials`` (overrides the TLS arguments).
        server_name_override: TLS host name to verify instead of the target's (testing only).
        token: a bearer token, or a function returning one per call (for the async methods it may
            be a coroutine function); sent as ``authorization: Bearer <token>``. Sending it
            without TLS to an address that is not the local machine warns once
            (:class:`PlaintextTokenWarning`).
        compression: ``"gzip"`` (or ``"deflate"``) to compress requests; default none.
        max_message_size: largest message sent or received, in bytes (default 64 MiB, the
            server's default).
        retry: the :class:`RetryPolicy`; ``None`` disables retries.
        keepalive_time: seconds between HTTP/2 keepalive pings while calls are active.
        keepalive_timeout: seconds to wait for a ping's answer before the connection is dropped.
        wait_for_ready: whether a call made while the channel is (re)connecting waits for the
            connection instead of failing at once with UNAVAILABLE. ``None`` (the default): wait,
            but only for calls that have a deadline, so a wait never outlasts the deadline.
        reconnect_backoff_max: longest pause, in seconds, between two attempts to reconnect to an
            unreachable server (gRPC's own default grows to 120 s; 1 s means the client is back
            within about a second of the server, whatever the length of the outage).
        connect_timeout: the least time, in seconds, one connection attempt may take (TCP and TLS
            handshakes) before it is abandoned and retried.
        load_balancing: ``"round_robin"`` spreads calls over every address of the target (several
            replicas behind ``dns:///name:port`` or an ``ipv4:a:port,b:port`` list); the default
            (``None``, gRPC's ``pick_first``) uses one connection. Retries work the same way.
        allow_sync_on_event_loop: allow the sync (blocking) methods on a thread that runs an
            event loop. By default they raise ``asyncio.InvalidStateError`` there, as
            ``AsyncPostgresSaver``'s do, because they would stall the loop.
        metadata: extra headers sent with every call.
        propagate_trace_context: inject the caller's OpenTelemetry context (W3C ``traceparent``,
            ``tracestate``, ``baggage``) into every call, so checkpointd's spans join the
            agent's trace. Needs the ``opentelemetry-api`` package (the ``otel`` extra);
            without it nothing is sent. Turn it off when the standard
            ``opentelemetry-instrumentation-grpc`` client instrumentation is active, which
            injects the same headers itself.
        options: extra raw gRPC channel arguments, appended last (they win).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        list_timeout: float | None = DEFAULT_LIST_TIMEOUT,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        server_name_override: str | None = None,
        token: TokenProvider | None = None,
        compression: str | grpc.Compression | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        retry: RetryPolicy | None = RetryPolicy(),
        keepalive_time: float = 30.0,
        keepalive_timeout: float = 10.0,
        wait_for_ready: bool | None = None,
        reconnect_backoff_max: float = DEFAULT_RECONNECT_BACKOFF_MAX,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        load_balancing: str | None = None,
        allow_sync_on_event_loop: bool = False,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
        propagate_trace_context: bool = True,
    ) -> None:
        check_target(target)
        self.target = target
        self.timeout = timeout
        self.list_timeout = list_timeout
        self.wait_for_ready = wait_for_ready
        self.retry = retry
        self.allow_sync_on_event_loop = allow_sync_on_event_loop
        self._throttle = _RetryThrottle(retry.throttle_max_tokens, retry.throttle_token_ratio) if retry else None
        if isinstance(compression, str):
            key = compression.lower()
            if key not in _COMPRESSION:
                raise ValueError(f"unknown compression {compression!r}; use 'gzip' or None")
            compression = _COMPRESSION[key]
        self.compression: grpc.Compression | None = compression
        if credentials is None and (tls or root_certificates or private_key or certificate_chain):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
        self._credentials = credentials
        if token is not None and not (isinstance(token, str) or callable(token)):
            raise TypeError("token must be a str or a function returning one (sync or async)")
        self._token = token
        if token is not None and credentials is None and not is_local_target(target):
            _warn_plaintext_token(target)
        self._extra_metadata = tuple(metadata)
        self._inject = _trace_context_injector() if propagate_trace_context else None
        self.channel_options: tuple[tuple[str, Any], ...] = _channel_options(
            target=target,
            max_message_size=max_message_size,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
            reconnect_backoff_max=reconnect_backoff_max,
            connect_timeout=connect_timeout,
            load_balancing=load_balancing,
            server_name_override=server_name_override,
            extra=options,
        )
        self._state = _State()
        _LIVE_STATES.add(self._state)

    # ------------------------------------------------------------------ channels

    def _new_sync_channel(self) -> grpc.Channel:
        _channels_opened[0] = True
        if self._credentials is not None:
            return grpc.secure_channel(
                self.target, self._credentials, options=self.channel_options, compression=self.compression
            )
        return grpc.insecure_channel(self.target, options=self.channel_options, compression=self.compression)

    def _new_aio_channel(self) -> grpc.aio.Channel:
        _channels_opened[0] = True
        if self._credentials is not None:
            return grpc.aio.secure_channel(
                self.target, self._credentials, options=self.channel_options, compression=self.compression
            )
        return grpc.aio.insecure_channel(self.target, options=self.channel_options, compression=self.compression)

    def _check_open(self) -> None:
        st = self._state
        if st.closed:
            raise RuntimeError("CheckpointdClient is closed")
        if st.used_before_fork_in is not None:
            raise RuntimeError(
                f"this checkpointd client was created in process {st.used_before_fork_in}, which "
                f"had already used gRPC when it called os.fork(); it cannot be used in the forked "
                f"process {os.getpid()} (gRPC channels and gRPC's threads do not survive a fork). "
                "Create the saver (or CheckpointdClient) in each worker process after the fork, or "
                "make no calls in the parent before forking."
            )

    def _sync_stub(self) -> pb_grpc.CheckpointServiceStub:
        st = self._state
        stub = st.sync_stub
        if stub is not None:
            return stub
        with st.lock:
            self._check_open()
            if st.sync_stub is None:
                st.sync_channel = self._new_sync_channel()
                st.sync_health = st.sync_channel.unary_unary(
                    _HEALTH_METHOD,
                    request_serializer=_encode_health_request,
                    response_deserializer=_decode_health_response,
                )
                st.sync_stub = pb_grpc.CheckpointServiceStub(st.sync_channel)
            return st.sync_stub

    def _aio_entry(self) -> _AioEntry:
        loop = asyncio.get_running_loop()
        st = self._state
        entry = st.aio.get(loop)
        if entry is not None:
            return entry
        with st.lock:
            self._check_open()
            # Forget channels of loops that are gone (they cannot be closed from here).
            for old in [lp for lp in st.aio if lp.is_closed()]:
                del st.aio[old]
            entry = st.aio.get(loop)
            if entry is None:
                channel = self._new_aio_channel()
                entry = _AioEntry(
                    channel=channel,
                    stub=pb_grpc.CheckpointServiceStub(channel),
                    health=channel.unary_unary(
                        _HEALTH_METHOD,
                        request_serializer=_encode_health_request,
                        response_deserializer=_decode_health_response,
                    ),
                )
                st.aio[loop] = entry
            return entry

    def _take_channels(self) -> tuple[grpc.Channel | None, list[tuple[asyncio.AbstractEventLoop, _AioEntry]]]:
        """Mark the client closed and hand over its channels, for closing."""
        st = self._state
        with st.lock:
            st.closed = True
            channel, st.sync_channel, st.sync_stub, st.sync_health = st.sync_channel, None, None, None
            aio = list(st.aio.items())
            st.aio.clear()
        _LIVE_STATES.discard(st)
        return channel, aio

    def close(self) -> None:
        """Close the sync channel and forget the async ones (use ``aclose()`` from async code)."""
        channel, aio = self._take_channels()
        if channel is not None:
            channel.close()
        for loop, entry in aio:
            _close_aio_from_outside(loop, entry)

    async def aclose(self) -> None:
        """Close every channel: the current loop's async channel is closed gracefully."""
        current = asyncio.get_running_loop()
        channel, aio = self._take_channels()
        if channel is not None:
            channel.close()
        for loop, entry in aio:
            if loop is current:
                await entry.channel.close()
            else:
                _close_aio_from_outside(loop, entry)

    @property
    def closed(self) -> bool:
        return self._state.closed

    def __enter__(self) -> CheckpointdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> CheckpointdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ call plumbing

    def check_sync_call_allowed(self, example: str) -> None:
        """Raise ``asyncio.InvalidStateError`` naming ``example`` (the async way to make the call)
        when a blocking call is made on a thread running an event loop, unless allowed."""
        if not self.allow_sync_on_event_loop and _running_loop_on_this_thread() is not None:
            raise sync_call_on_event_loop_error(type(self).__name__, example)

    def _base_metadata(self) -> tuple[tuple[str, str], ...]:
        md = self._extra_metadata
        if self._inject is not None:
            md = md + self._inject()
        return md

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        md = self._base_metadata()
        token = self._token
        if token is None:
            return md
        value = token() if callable(token) else token
        if inspect.isawaitable(value):
            _close_coroutine(value)
            raise TypeError(
                "the token provider is async; the sync methods need a provider that returns a str "
                "(use the async methods, or pass a plain function)"
            )
        return md + (("authorization", f"Bearer {value}"),) if value else md

    async def _ametadata(self) -> tuple[tuple[str, str], ...]:
        md = self._base_metadata()
        token = self._token
        if token is None:
            return md
        value = token() if callable(token) else token
        if inspect.isawaitable(value):
            value = await value
        return md + (("authorization", f"Bearer {value}"),) if value else md

    def _deadline(self, timeout: float | None | type[...], default: float | None) -> float | None:
        """The absolute deadline (``time.monotonic()``) of a call, or None for no deadline."""
        seconds = default if timeout is ... else timeout
        return None if seconds is None else time.monotonic() + float(seconds)  # type: ignore[arg-type]

    def _wait(self, deadline: float | None) -> bool:
        """wait_for_ready for a call: by default only when the call has a deadline (bounded)."""
        if self.wait_for_ready is None:
            return deadline is not None
        return self.wait_for_ready

    def _retry_delay(self, err: grpc.RpcError, attempt: int, deadline: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` of a call that failed with ``err``, or
        None when it is not retried (status, attempts, throttling, pushback or deadline)."""
        policy, throttle = self.retry, self._throttle
        if policy is None or throttle is None or not policy.retries(err):
            return None
        if not throttle.record_failure_and_allow_retry() or attempt >= policy.max_attempts:
            return None
        pushback = pushback_ms(err)
        if pushback is not None and pushback < 0:
            return None
        delay = _jittered_pushback(pushback / 1000.0) if pushback is not None else policy.backoff(attempt)
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay

    def _final_error(
        self, err: grpc.RpcError, method: str, deadline: float | None, channel_ready: bool | None
    ) -> CheckpointdError:
        """The exception for a call that is not retried any more.

        A call that waited for a connection until its deadline ran out never reached the server:
        that is reported as the outage it is (a retryable :class:`UnavailableError`), not as
        DEADLINE_EXCEEDED.
        """
        error = error_from_rpc_error(err, method)
        if (
            error.code == grpc.StatusCode.DEADLINE_EXCEEDED
            and channel_ready is False
            and self._wait(deadline)
        ):
            return UnavailableError(
                method,
                grpc.StatusCode.UNAVAILABLE,
                f"no connection to {self.target} before the call's deadline: the server is down or "
                f"unreachable (gRPC: {error.details})",
            )
        return error

    def _record_success(self) -> None:
        if self._throttle is not None:
            self._throttle.record_success()

    def _unary(self, method: str, request: Any, timeout: Any) -> Any:
        self.check_sync_call_allowed(f"await client.{_ASYNC_NAMES[method]}(...)")
        fn = getattr(self._sync_stub(), method)
        deadline = self._deadline(timeout, self.timeout)
        attempt = 1
        while True:
            try:
                response = fn(
                    request,
                    timeout=_remaining(deadline),
                    metadata=self._metadata(),
                    wait_for_ready=self._wait(deadline),
                )
            except grpc.RpcError as err:
                delay = self._retry_delay(err, attempt, deadline)
                if delay is None:
                    raise self._final_error(err, method, deadline, _sync_channel_ready(self._state)) from err
            else:
                self._record_success()
                return response
            time.sleep(delay)
            attempt += 1

    async def _aunary(self, method: str, request: Any, timeout: Any) -> Any:
        fn = getattr(self._aio_entry().stub, method)
        deadline = self._deadline(timeout, self.timeout)
        attempt = 1
        while True:
            try:
                response = await fn(
                    request,
                    timeout=_remaining(deadline),
                    metadata=await self._ametadata(),
                    wait_for_ready=self._wait(deadline),
                )
            except grpc.RpcError as err:
                delay = self._retry_delay(err, attempt, deadline)
                if delay is None:
                    raise self._final_error(err, method, deadline, _aio_channel_ready(self._state)) from err
            else:
                self._record_success()
                return response
            await asyncio.sleep(delay)
            attempt += 1

    # ------------------------------------------------------------------ RPCs (sync)
    # ``timeout=...`` (the default) means the client's default deadline; None means no deadline.

    def put(self, request: pb.PutRequest, *, timeout: float | None = ...) -> pb.PutResponse:  # type: ignore[assignment]
        return self._unary("Put", request, timeout)

    def put_writes(self, request: pb.PutWritesRequest, *, timeout: float | None = ...) -> pb.PutWritesResponse:  # type: ignore[assignment]
        return self._unary("PutWrites", request, timeout)

    def get_tuple(self, request: pb.GetTupleRequest, *, timeout: float | None = ...) -> pb.GetTupleResponse:  # type: ignore[assignment]
        return self._unary("GetTuple", request, timeout)

    def list(self, request: pb.ListRequest, *, timeout: float | None = ...) -> Iterator[pb.ListResponse]:  # type: ignore[assignment]
        """Stream the matching checkpoints, newest first. Stopping early cancels the call.

        A failure before the first message is retried like a unary call; after it, it is raised.
        """
        self.check_sync_call_allowed("await client.alist(...)")
        stub = self._sync_stub()
        deadline = self._deadline(timeout, self.list_timeout)
        attempt = 1
        while True:
            call = stub.List(
                request,
                timeout=_remaining(deadline),
                metadata=self._metadata(),
                wait_for_ready=self._wait(deadline),
            )
            received = False
            try:
                for message in call:
                    received = True
                    yield message
                self._record_success()
                return
            except grpc.RpcError as err:
                delay = None if received else self._retry_delay(err, attempt, deadline)
                if delay is None:
                    raise self._final_error(err, "List", deadline, _sync_channel_ready(self._state)) from err
            finally:
                call.cancel()
            time.sleep(delay)
            attempt += 1

    def delete_thread(self, request: pb.DeleteThreadRequest, *, timeout: float | None = ...) -> pb.DeleteThreadResponse:  # type: ignore[assignment]
        return self._unary("DeleteThread", request, timeout)

    def delete_for_runs(self, request: pb.DeleteForRunsRequest, *, timeout: float | None = ...) -> pb.DeleteForRunsResponse:  # type: ignore[assignment]
        return self._unary("DeleteForRuns", request, timeout)

    def copy_thread(self, request: pb.CopyThreadRequest, *, timeout: float | None = ...) -> pb.CopyThreadResponse:  # type: ignore[assignment]
        return self._unary("CopyThread", request, timeout)

    def prune(self, request: pb.PruneRequest, *, timeout: float | None = ...) -> pb.PruneResponse:  # type: ignore[assignment]
        return self._unary("Prune", request, timeout)

    def get_delta_channel_history(self, request: pb.GetDeltaChannelHistoryRequest, *, timeout: float | None = ...) -> pb.GetDeltaChannelHistoryResponse:  # type: ignore[assignment]
        return self._unary("GetDeltaChannelHistory", request, timeout)

    def health(self, service: str = SERVICE_NAME, *, timeout: float | None = 5.0) -> str:
        """The gRPC health status of ``service``: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"...

        Not retried. With a ``timeout`` it waits up to that long for a connection (an older grpcio
        never reconnects a channel whose calls all fail fast); without one it answers at once.
        """
        self.check_sync_call_allowed("await client.ahealth(...)")
        self._sync_stub()
        fn = self._state.sync_health
        try:
            return fn(service, timeout=timeout, metadata=self._metadata(), wait_for_ready=timeout is not None)
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, "Health.Check") from err

    # ------------------------------------------------------------------ RPCs (async)

    async def aput(self, request: pb.PutRequest, *, timeout: float | None = ...) -> pb.PutResponse:  # type: ignore[assignment]
        return await self._aunary("Put", request, timeout)

    async def aput_writes(self, request: pb.PutWritesRequest, *, timeout: float | None = ...) -> pb.PutWritesResponse:  # type: ignore[assignment]
        return await self._aunary("PutWrites", request, timeout)

    async def aget_tuple(self, request: pb.GetTupleRequest, *, timeout: float | None = ...) -> pb.GetTupleResponse:  # type: ignore[assignment]
        return await self._aunary("GetTuple", request, timeout)

    async def alist(self, request: pb.ListRequest, *, timeout: float | None = ...) -> AsyncIterator[pb.ListResponse]:  # type: ignore[assignment]
        """Stream the matching checkpoints, newest first. Stopping early cancels the call.

        A failure before the first message is retried like a unary call; after it, it is raised.
        """
        stub = self._aio_entry().stub
        deadline = self._deadline(timeout, self.list_timeout)
        attempt = 1
        while True:
            call = stub.List(
                request,
                timeout=_remaining(deadline),
                metadata=await self._ametadata(),
                wait_for_ready=self._wait(deadline),
            )
            received = False
            try:
                async for message in call:
                    received = True
                    yield message
                self._record_success()
                return
            except grpc.RpcError as err:
                delay = None if received else self._retry_delay(err, attempt, deadline)
                if delay is None:
                    raise self._final_error(err, "List", deadline, _aio_channel_ready(self._state)) from err
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            attempt += 1

    async def adelete_thread(self, request: pb.DeleteThreadRequest, *, timeout: float | None = ...) -> pb.DeleteThreadResponse:  # type: ignore[assignment]
        return await self._aunary("DeleteThread", request, timeout)

    async def adelete_for_runs(self, request: pb.DeleteForRunsRequest, *, timeout: float | None = ...) -> pb.DeleteForRunsResponse:  # type: ignore[assignment]
        return await self._aunary("DeleteForRuns", request, timeout)

    async def acopy_thread(self, request: pb.CopyThreadRequest, *, timeout: float | None = ...) -> pb.CopyThreadResponse:  # type: ignore[assignment]
        return await self._aunary("CopyThread", request, timeout)

    async def aprune(self, request: pb.PruneRequest, *, timeout: float | None = ...) -> pb.PruneResponse:  # type: ignore[assignment]
        return await self._aunary("Prune", request, timeout)

    async def aget_delta_channel_history(self, request: pb.GetDeltaChannelHistoryRequest, *, timeout: float | None = ...) -> pb.GetDeltaChannelHistoryResponse:  # type: ignore[assignment]
        return await self._aunary("GetDeltaChannelHistory", request, timeout)

    async def ahealth(self, service: str = SERVICE_NAME, *, timeout: float | None = 5.0) -> str:
        fn = self._aio_entry().health
        try:
            return await fn(
                service, timeout=timeout, metadata=await self._ametadata(), wait_for_ready=timeout is not None
            )
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, "Health.Check") from err

    def __repr__(self) -> str:
        return f"CheckpointdClient(target={self.target!r}, timeout={self.timeout!r})"


_ASYNC_NAMES = {
    "Put": "aput",
    "PutWrites": "aput_writes",
    "GetTuple": "aget_tuple",
    "DeleteThread": "adelete_thread",
    "DeleteForRuns": "adelete_for_runs",
    "CopyThread": "acopy_thread",
    "Prune": "aprune",
    "GetDeltaChannelHistory": "aget_delta_channel_history",
}


def _sync_channel_ready(state: _State) -> bool | None:
    """Whether the sync channel is connected (None when unknown)."""
    channel = state.sync_channel
    try:
        return channel._channel.check_connectivity_state(False) == 2  # type: ignore[union-attr]  # READY
    except Exception:  # noqa: BLE001 - a private gRPC API: unknown is fine
        return None


def _aio_channel_ready(state: _State) -> bool | None:
    """Whether the current loop's async channel is connected (None when unknown)."""
    try:
        entry = state.aio.get(asyncio.get_running_loop())
        return None if entry is None else entry.channel.get_state(False) == grpc.ChannelConnectivity.READY
    except Exception:  # noqa: BLE001
        return None


def _jittered_pushback(seconds: float) -> float:
    """At least the server's pushback, plus up to half of it again, so that the callers the server
    turned away at the same moment do not all come back at the same moment."""
    return seconds + random.uniform(0.0, seconds / 2)


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (the timeout of the next attempt), or None."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def check_target(target: Any) -> None:
    """Raise ``ValueError`` unless ``target`` looks like a checkpointd address."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError("target is required, e.g. 'checkpointd:50051'")
    if target.lower().startswith(("postgres://", "postgresql://")) or "dbname=" in target:
        raise ValueError(
            "target is the address of a checkpointd server (e.g. 'checkpointd:50051'), not a "
            "PostgreSQL connection string: the server owns the database"
        )


_plaintext_warned: set[str] = set()


def _warn_plaintext_token(target: str) -> None:
    """Warn once per target that a bearer token travels unencrypted (the token is not shown)."""
    if target in _plaintext_warned:
        return
    _plaintext_warned.add(target)
    warnings.warn(
        f"checkpointd: a bearer token is sent over a plaintext channel to {target!r}, which is not "
        "the local machine; anyone on the network path can read it. Use tls=True (or "
        "root_certificates/credentials).",
        PlaintextTokenWarning,
        stacklevel=4,
    )


def _default_authority(target: str) -> str | None:
    """The HTTP/2 authority for an address-list target (``ipv4:a:p,b:p``): its first address.

    gRPC would send the whole list, which servers reject (a comma is not valid in an authority).
    """
    lowered = target.lower()
    if not lowered.startswith(("ipv4:", "ipv6:")) or "," not in target:
        return None
    return target.split(":", 1)[1].split(",")[0].strip()


def _channel_options(
    *,
    target: str,
    max_message_size: int,
    keepalive_time: float,
    keepalive_timeout: float,
    reconnect_backoff_max: float,
    connect_timeout: float,
    load_balancing: str | None,
    server_name_override: str | None,
    extra: Sequence[tuple[str, Any]],
) -> tuple[tuple[str, Any], ...]:
    """The gRPC channel arguments of a client (``extra`` last, so it wins)."""
    if reconnect_backoff_max <= 0 or connect_timeout <= 0:
        raise ValueError("reconnect_backoff_max and connect_timeout must be positive")
    if load_balancing is not None and load_balancing not in _LOAD_BALANCING:
        raise ValueError(f"unknown load_balancing {load_balancing!r}; use 'round_robin' or None")
    backoff_max_ms = int(reconnect_backoff_max * 1000)
    opts: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", int(max_message_size)),
        ("grpc.max_receive_message_length", int(max_message_size)),
        ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.primary_user_agent", "checkpointd-client-python"),
        # Reconnect quickly whatever the outage: gRPC's defaults grow the pause towards 120 s.
        ("grpc.initial_reconnect_backoff_ms", min(100, backoff_max_ms)),
        ("grpc.max_reconnect_backoff_ms", backoff_max_ms),
        ("grpc.min_reconnect_backoff_ms", int(connect_timeout * 1000)),
        # Re-resolve a DNS name soon after a connection is lost (replicas may have moved).
        ("grpc.dns_min_time_between_resolutions_ms", max(backoff_max_ms, 1000)),
        # Retries happen in the client's call path (they need the trailers); gRPC keeps its
        # transparent retries of attempts that never reached the server.
        ("grpc.enable_retries", 1),
    ]
    authority = _default_authority(target)
    if authority and not any(key == "grpc.default_authority" for key, _ in extra):
        opts.append(("grpc.default_authority", authority))
    if load_balancing is not None:
        opts.append(("grpc.service_config", json.dumps({"loadBalancingConfig": [{load_balancing: {}}]})))
    if server_name_override:
        opts.append(("grpc.ssl_target_name_override", server_name_override))
    opts += list(extra)
    return tuple(opts)


def _close_aio_from_outside(loop: asyncio.AbstractEventLoop, entry: _AioEntry) -> None:
    """Close an aio channel of another (or no running) loop as well as possible."""
    if loop.is_closed():
        return
    try:
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(entry.channel.close(), loop)
        else:
            loop.run_until_complete(entry.channel.close())
    except Exception:  # noqa: BLE001 - best effort; the channel is freed with the loop
        pass

