"""A thin, typed gRPC client for checkpointd (sync over ``grpc``, async over ``grpc.aio``).

The client owns the channel configuration a production deployment needs: a per-call deadline,
retry of UNAVAILABLE with exponential backoff and full jitter (a gRPC service-config retry policy,
so the retries happen inside gRPC, with its retry throttling), HTTP/2 keepalive, TLS, an optional
bearer token, gzip compression and message size limits. Failed calls raise the exceptions of
:mod:`checkpointd_client.errors`.

One sync channel serves the sync methods from any thread, including a thread that runs an event
loop. ``grpc.aio`` channels are bound to the event loop that created them, so the async methods
create one channel per running loop, lazily, and ``aclose()`` closes them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio

from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from checkpointd_client.errors import error_from_rpc_error

__all__ = ["CheckpointdClient", "RetryPolicy", "SERVICE_NAME", "pb"]

SERVICE_NAME = "checkpoint.v1.CheckpointService"
_HEALTH_METHOD = "/grpc.health.v1.Health/Check"
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

DEFAULT_TIMEOUT = 30.0
DEFAULT_LIST_TIMEOUT = 300.0
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC retry policy (gRFC A6) applied to every checkpointd method.

    gRPC waits ``random(0, min(initial_backoff * multiplier**(n-1), max_backoff))`` before retry n
    (exponential backoff with full jitter), honours the server's ``grpc-retry-pushback-ms``, never
    retries past the call's deadline, and throttles retries channel-wide once too many calls fail
    (``throttle_max_tokens``/``throttle_token_ratio``). Only calls whose status is in
    ``status_codes`` are retried; every checkpointd RPC is idempotent, so that is always safe.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    backoff_multiplier: float = 2.0
    status_codes: tuple[str, ...] = ("UNAVAILABLE",)
    throttle_max_tokens: int = 10
    throttle_token_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be between 2 and 5 (gRPC caps it at 5)")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoff values must be positive")
        if not self.status_codes:
            raise ValueError("status_codes must not be empty (pass retry=None to disable retries)")

    def service_config(self) -> str:
        def secs(x: float) -> str:
            return f"{x:.3f}s"

        return json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{"service": SERVICE_NAME}],
                        "retryPolicy": {
                            "maxAttempts": self.max_attempts,
                            "initialBackoff": secs(self.initial_backoff),
                            "maxBackoff": secs(self.max_backoff),
                            "backoffMultiplier": self.backoff_multiplier,
                            "retryableStatusCodes": list(self.status_codes),
                        },
                    }
                ],
                "retryThrottling": {
                    "maxTokens": self.throttle_max_tokens,
                    "tokenRatio": self.throttle_token_ratio,
                },
            }
        )


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


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sync_channel: grpc.Channel | None = None
    sync_stub: pb_grpc.CheckpointServiceStub | None = None
    sync_health: Any = None
    # One grpc.aio channel per event loop. Plain (strong) keys: not every loop type supports weak
    # references (uvloop's does not); entries of closed loops are dropped when a channel is added.
    aio: dict[asyncio.AbstractEventLoop, _AioEntry] = field(default_factory=dict)
    closed: bool = False


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
        target: ``host:port`` (or any gRPC target such as ``dns:///checkpointd:50051``).
        timeout: default deadline of each unary call, in seconds (``None``: no deadline).
        list_timeout: deadline of a whole ``List`` stream, in seconds (``None``: no deadline).
        tls: use TLS with the system roots (implied by any of the certificate arguments).
        root_certificates, private_key, certificate_chain: PEM bytes for TLS / mutual TLS.
        credentials: ready-made ``grpc.ChannelCredentials`` (overrides the TLS arguments).
        server_name_override: TLS host name to verify instead of the target's (testing only).
        token: a bearer token, or a callable returning one per call; sent as
            ``authorization: Bearer <token>``.
        compression: ``"gzip"`` (or ``"deflate"``) to compress requests; default none.
        max_message_size: largest message sent or received, in bytes (default 64 MiB, the
            server's default).
        retry: the :class:`RetryPolicy`; ``None`` disables gRPC retries.
        keepalive_time: seconds between HTTP/2 keepalive pings while calls are active.
        keepalive_timeout: seconds to wait for a ping's answer before the connection is dropped.
        wait_for_ready: queue calls while the channel is connecting instead of failing fast
            with UNAVAILABLE (the deadline still applies).
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
        token: str | Callable[[], str] | None = None,
        compression: str | grpc.Compression | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        retry: RetryPolicy | None = RetryPolicy(),
        keepalive_time: float = 30.0,
        keepalive_timeout: float = 10.0,
        wait_for_ready: bool = False,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
        propagate_trace_context: bool = True,
    ) -> None:
        if not target:
            raise ValueError("target is required, e.g. 'checkpointd:50051'")
        self.target = target
        self.timeout = timeout
        self.list_timeout = list_timeout
        self.wait_for_ready = wait_for_ready
        self.retry = retry
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
        self._token = token
        self._extra_metadata = tuple(metadata)
        self._inject = _trace_context_injector() if propagate_trace_context else None
        opts: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", int(max_message_size)),
            ("grpc.max_receive_message_length", int(max_message_size)),
            ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.primary_user_agent", "checkpointd-client-python"),
        ]
        if retry is not None:
            opts += [
                ("grpc.enable_retries", 1),
                ("grpc.service_config", retry.service_config()),
            ]
        else:
            opts += [("grpc.enable_retries", 0)]
        if server_name_override:
            opts.append(("grpc.ssl_target_name_override", server_name_override))
        opts += list(options)
        self.channel_options: tuple[tuple[str, Any], ...] = tuple(opts)
        self._state = _State()

    # ------------------------------------------------------------------ channels

    def _new_sync_channel(self) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(
                self.target, self._credentials, options=self.channel_options, compression=self.compression
            )
        return grpc.insecure_channel(self.target, options=self.channel_options, compression=self.compression)

    def _new_aio_channel(self) -> grpc.aio.Channel:
        if self._credentials is not None:
            return grpc.aio.secure_channel(
                self.target, self._credentials, options=self.channel_options, compression=self.compression
            )
        return grpc.aio.insecure_channel(self.target, options=self.channel_options, compression=self.compression)

    def _check_open(self) -> None:
        if self._state.closed:
            raise RuntimeError("CheckpointdClient is closed")

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

    def close(self) -> None:
        """Close the sync channel and forget the async ones (use ``aclose()`` from async code)."""
        st = self._state
        with st.lock:
            st.closed = True
            channel, st.sync_channel, st.sync_stub, st.sync_health = st.sync_channel, None, None, None
            aio = list(st.aio.items())
            st.aio.clear()
        if channel is not None:
            channel.close()
        for loop, entry in aio:
            _close_aio_from_outside(loop, entry)

    async def aclose(self) -> None:
        """Close every channel: the current loop's async channel is closed gracefully."""
        st = self._state
        current = asyncio.get_running_loop()
        with st.lock:
            st.closed = True
            channel, st.sync_channel, st.sync_stub, st.sync_health = st.sync_channel, None, None, None
            aio = list(st.aio.items())
            st.aio.clear()
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

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        md = self._extra_metadata
        if self._inject is not None:
            md = md + self._inject()
        token = self._token
        if token is not None:
            value = token() if callable(token) else token
            if value:
                md = md + (("authorization", f"Bearer {value}"),)
        return md

    def _deadline(self, timeout: float | None | type[...], default: float | None) -> float | None:
        return default if timeout is ... else timeout  # type: ignore[return-value]

    def _unary(self, method: str, request: Any, timeout: Any) -> Any:
        fn = getattr(self._sync_stub(), method)
        try:
            return fn(
                request,
                timeout=self._deadline(timeout, self.timeout),
                metadata=self._metadata(),
                wait_for_ready=self.wait_for_ready,
            )
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, method) from err

    async def _aunary(self, method: str, request: Any, timeout: Any) -> Any:
        fn = getattr(self._aio_entry().stub, method)
        try:
            return await fn(
                request,
                timeout=self._deadline(timeout, self.timeout),
                metadata=self._metadata(),
                wait_for_ready=self.wait_for_ready,
            )
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, method) from err

    # ------------------------------------------------------------------ RPCs (sync)
    # ``timeout=...`` (the default) means the client's default deadline; None means no deadline.

    def put(self, request: pb.PutRequest, *, timeout: float | None = ...) -> pb.PutResponse:  # type: ignore[assignment]
        return self._unary("Put", request, timeout)

    def put_writes(self, request: pb.PutWritesRequest, *, timeout: float | None = ...) -> pb.PutWritesResponse:  # type: ignore[assignment]
        return self._unary("PutWrites", request, timeout)

    def get_tuple(self, request: pb.GetTupleRequest, *, timeout: float | None = ...) -> pb.GetTupleResponse:  # type: ignore[assignment]
        return self._unary("GetTuple", request, timeout)

    def list(self, request: pb.ListRequest, *, timeout: float | None = ...) -> Iterator[pb.ListResponse]:  # type: ignore[assignment]
        """Stream the matching checkpoints, newest first. Stopping early cancels the call."""
        stub = self._sync_stub()
        call = stub.List(
            request,
            timeout=self._deadline(timeout, self.list_timeout),
            metadata=self._metadata(),
            wait_for_ready=self.wait_for_ready,
        )
        try:
            for message in call:
                yield message
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, "List") from err
        finally:
            call.cancel()

    def delete_thread(self, request: pb.DeleteThreadRequest, *, timeout: float | None = ...) -> pb.DeleteThreadResponse:  # type: ignore[assignment]
        return self._unary("DeleteThread", request, timeout)

    def delete_for_runs(self, request: pb.DeleteForRunsRequest, *, timeout: float | None = ...) -> pb.DeleteForRunsResponse:  # type: ignore[assignment]
        return self._unary("DeleteForRuns", request, timeout)

    def copy_thread(self, request: pb.CopyThreadRequest, *, timeout: float | None = ...) -> pb.CopyThreadResponse:  # type: ignore[assignment]
        return self._unary("CopyThread", request, timeout)

    def prune(self, request: pb.PruneRequest, *, timeout: float | None = ...) -> pb.PruneResponse:  # type: ignore[assignment]
        return self._unary("Prune", request, timeout)

    def health(self, service: str = SERVICE_NAME, *, timeout: float | None = 5.0) -> str:
        """The gRPC health status of ``service``: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"..."""
        self._sync_stub()
        fn = self._state.sync_health
        try:
            return fn(service, timeout=timeout, metadata=self._metadata())
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
        """Stream the matching checkpoints, newest first. Stopping early cancels the call."""
        call = self._aio_entry().stub.List(
            request,
            timeout=self._deadline(timeout, self.list_timeout),
            metadata=self._metadata(),
            wait_for_ready=self.wait_for_ready,
        )
        try:
            async for message in call:
                yield message
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, "List") from err
        finally:
            call.cancel()

    async def adelete_thread(self, request: pb.DeleteThreadRequest, *, timeout: float | None = ...) -> pb.DeleteThreadResponse:  # type: ignore[assignment]
        return await self._aunary("DeleteThread", request, timeout)

    async def adelete_for_runs(self, request: pb.DeleteForRunsRequest, *, timeout: float | None = ...) -> pb.DeleteForRunsResponse:  # type: ignore[assignment]
        return await self._aunary("DeleteForRuns", request, timeout)

    async def acopy_thread(self, request: pb.CopyThreadRequest, *, timeout: float | None = ...) -> pb.CopyThreadResponse:  # type: ignore[assignment]
        return await self._aunary("CopyThread", request, timeout)

    async def aprune(self, request: pb.PruneRequest, *, timeout: float | None = ...) -> pb.PruneResponse:  # type: ignore[assignment]
        return await self._aunary("Prune", request, timeout)

    async def ahealth(self, service: str = SERVICE_NAME, *, timeout: float | None = 5.0) -> str:
        fn = self._aio_entry().health
        try:
            return await fn(service, timeout=timeout, metadata=self._metadata())
        except grpc.RpcError as err:
            raise error_from_rpc_error(err, "Health.Check") from err

    def __repr__(self) -> str:
        return f"CheckpointdClient(target={self.target!r}, timeout={self.timeout!r})"


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

