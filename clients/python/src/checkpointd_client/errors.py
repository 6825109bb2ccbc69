"""Exceptions raised by checkpointd_client.

Every failed RPC surfaces as a :class:`CheckpointdError` subclass chosen by the gRPC status code.
Each one carries:

* ``method``: the RPC that failed, e.g. ``"Put"``;
* ``code``: the :class:`grpc.StatusCode`;
* ``details``: the server's message (it names the offending field for INVALID_ARGUMENT);
* ``retryable``: whether repeating the same call is safe and may succeed. Every checkpointd RPC is
  idempotent, so a call that failed with UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED can be repeated
  even when it is unknown whether the first attempt committed. RESOURCE_EXHAUSTED is retryable
  only when the server marked it so (overload, not a message over the size limit).
* ``retry_safe``: the server marked this status as safe to retry (trailing metadata
  ``checkpointd-retry-safe: true``, see :data:`RETRY_SAFE_TRAILER`).
* ``retry_after``: the server's pushback in seconds (trailer ``grpc-retry-pushback-ms``), if any.

The classes also derive from the closest built-in exception (``ValueError``, ``ConnectionError``,
``TimeoutError``, ``PermissionError``), so generic handlers keep working.
"""

from __future__ import annotations

from typing import Any

import grpc

__all__ = [
    "RETRY_SAFE_TRAILER",
    "CheckpointdError",
    "InvalidArgumentError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "FailedPreconditionError",
    "UnavailableError",
    "DeadlineExceededError",
    "AbortedError",
    "InternalError",
    "UnexpectedStatusError",
    "error_from_rpc_error",
    "is_marked_retry_safe",
    "pushback_ms",
]

#: Trailing metadata key with which checkpointd marks a failed status as safe to retry (value "true").
RETRY_SAFE_TRAILER = "checkpointd-retry-safe"
_PUSHBACK_TRAILER = "grpc-retry-pushback-ms"


class CheckpointdError(Exception):
    """A checkpointd RPC failed. See the module docstring for the attributes."""

    #: Whether repeating the call is safe and may succeed (class default; see ``retryable``).
    retryable_default: bool = False

    def __init__(
        self,
        method: str,
        code: grpc.StatusCode | None,
        details: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        retry_safe: bool = False,
    ) -> None:
        self.method = method
        self.code = code
        self.details = details
        self.retryable = self.retryable_default if retryable is None else retryable
        self.retry_after = retry_after
        self.retry_safe = retry_safe
        code_name = code.name if code is not None else "UNKNOWN"
        advice = "safe to retry" if self.retryable else "retrying the same call will not help"
        if retry_after is not None and self.retryable:
            advice += f" after {retry_after:.3f}s"
        super().__init__(f"checkpointd {method} failed: {code_name}: {details} ({advice})")

    def __reduce__(self) -> tuple[Any, ...]:  # keep exceptions picklable
        return (
            _rebuild,
            (type(self), self.method, self.code, self.details, self.retryable, self.retry_after, self.retry_safe),
        )


def _rebuild(cls: type[CheckpointdError], method, code, details, retryable, retry_after, retry_safe=False):
    return cls(method, code, details, retryable=retryable, retry_after=retry_after, retry_safe=retry_safe)


class InvalidArgumentError(CheckpointdError, ValueError):
    """INVALID_ARGUMENT: a field is malformed (bad id, invalid JSON, NUL, NaN...). Nothing was written."""


class UnauthenticatedError(CheckpointdError, PermissionError):
    """UNAUTHENTICATED: the call carries no valid bearer token."""


class PermissionDeniedError(CheckpointdError, PermissionError):
    """PERMISSION_DENIED: the token is valid but not allowed to touch this thread."""


class ResourceExhaustedError(CheckpointdError):
    """RESOURCE_EXHAUSTED: a message over the size limit (not retryable), or the server is
    overloaded (marked retry-safe by the server; ``retry_after`` may say when)."""


class FailedPreconditionError(CheckpointdError):
    """FAILED_PRECONDITION: the operation cannot apply to this data. Nothing was changed."""


class UnavailableError(CheckpointdError, ConnectionError):
    """UNAVAILABLE: the server or its database could not be reached. Safe to retry."""

    retryable_default = True


class DeadlineExceededError(CheckpointdError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's deadline passed. Safe to retry (every RPC is idempotent)."""

    retryable_default = True


class AbortedError(CheckpointdError):
    """ABORTED: serialization failures or deadlocks persisted after the server's retries. Safe to retry."""

    retryable_default = True


class InternalError(CheckpointdError):
    """INTERNAL: an unexpected server-side failure; details are in the server's logs."""


class UnexpectedStatusError(CheckpointdError):
    """Any other status (UNIMPLEMENTED, UNKNOWN, CANCELLED, DATA_LOSS...)."""


_BY_CODE: dict[grpc.StatusCode, type[CheckpointdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def _trailers(err: Any) -> tuple[tuple[str, Any], ...]:
    """The trailing metadata of a failed call (sync or aio), or () when it has none."""
    try:
        return tuple(err.trailing_metadata() or ())
    except Exception:  # noqa: BLE001 - a failed call may have no trailers at all
        return ()


def _trailer(err: Any, key: str) -> Any:
    for k, value in _trailers(err):
        if k == key:
            return value
    return None


def is_marked_retry_safe(err: Any) -> bool:
    """Whether the server marked this failed call as safe to retry (``checkpointd-retry-safe: true``)."""
    value = _trailer(err, RETRY_SAFE_TRAILER)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return isinstance(value, str) and value.strip().lower() == "true"


def pushback_ms(err: Any) -> int | None:
    """The server's ``grpc-retry-pushback-ms`` (may be negative: "do not retry"), or None."""
    value = _trailer(err, _PUSHBACK_TRAILER)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # malformed pushback: gRFC A6 says not to retry


def _pushback_seconds(err: Any) -> float | None:
    ms = pushback_ms(err)
    return ms / 1000.0 if ms is not None and ms >= 0 else None


def error_from_rpc_error(err: grpc.RpcError, method: str) -> CheckpointdError:
    """Translate a ``grpc.RpcError`` (sync or aio) into the matching :class:`CheckpointdError`."""
    try:
        code = err.code()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        code = None
    try:
        details = err.details() or ""  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        details = str(err)
    cls = _BY_CODE.get(code, UnexpectedStatusError) if code is not None else UnexpectedStatusError
    retry_safe = is_marked_retry_safe(err)
    retryable = None
    if cls is ResourceExhaustedError:
        # Overload is marked retry-safe by the server; a message over the size limit is not.
        retryable = retry_safe
    elif retry_safe:
        retryable = True
    return cls(
        method,
        code,
        details or "(no details)",
        retryable=retryable,
        retry_after=_pushback_seconds(err),
        retry_safe=retry_safe,
    )
