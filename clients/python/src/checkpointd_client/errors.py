"""Exceptions raised by checkpointd_client.

Every failed RPC surfaces as a :class:`CheckpointdError` subclass chosen by the gRPC status code.
Each one carries:

* ``method``: the RPC that failed, e.g. ``"Put"``;
* ``code``: the :class:`grpc.StatusCode`;
* ``details``: the server's message (it names the offending field for INVALID_ARGUMENT);
* ``retryable``: whether repeating the same call is safe and may succeed. Every checkpointd RPC is
  idempotent, so a call that failed with UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or an overloaded
  RESOURCE_EXHAUSTED can be repeated even when it is unknown whether the first attempt committed.
* ``retry_after``: the server's pushback in seconds (trailer ``grpc-retry-pushback-ms``), if any.

The classes also derive from the closest built-in exception (``ValueError``, ``ConnectionError``,
``TimeoutError``, ``PermissionError``), so generic handlers keep working.
"""

from __future__ import annotations

from typing import Any

import grpc

__all__ = [
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
]


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
    ) -> None:
        self.method = method
        self.code = code
        self.details = details
        self.retryable = self.retryable_default if retryable is None else retryable
        self.retry_after = retry_after
        code_name = code.name if code is not None else "UNKNOWN"
        advice = "safe to retry" if self.retryable else "retrying the same call will not help"
        if retry_after is not None:
            advice += f" after {retry_after:.3f}s"
        super().__init__(f"checkpointd {method} failed: {code_name}: {details} ({advice})")

    def __reduce__(self) -> tuple[Any, ...]:  # keep exceptions picklable
        return (
            _rebuild,
            (type(self), self.method, self.code, self.details, self.retryable, self.retry_after),
        )


def _rebuild(cls: type[CheckpointdError], method, code, details, retryable, retry_after):
    return cls(method, code, details, retryable=retryable, retry_after=retry_after)


class InvalidArgumentError(CheckpointdError, ValueError):
    """INVALID_ARGUMENT: a field is malformed (bad id, invalid JSON, NUL, NaN...). Nothing was written."""


class UnauthenticatedError(CheckpointdError, PermissionError):
    """UNAUTHENTICATED: the call carries no valid bearer token."""


class PermissionDeniedError(CheckpointdError, PermissionError):
    """PERMISSION_DENIED: the token is valid but not allowed to touch this thread."""


class ResourceExhaustedError(CheckpointdError):
    """RESOURCE_EXHAUSTED: a message over the size limit (not retryable), or the server's pool is
    saturated (retryable with backoff; ``retry_after`` may say when)."""


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


def _pushback_seconds(err: Any) -> float | None:
    try:
        trailers = err.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - a failed call may have no trailers at all
        return None
    for key, value in trailers:
        if key == "grpc-retry-pushback-ms":
            try:
                ms = int(value)
            except (TypeError, ValueError):
                return None
            return ms / 1000.0 if ms >= 0 else None
    return None


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
    retry_after = _pushback_seconds(err)
    retryable = None
    if cls is ResourceExhaustedError:
        # Overload (the server's pool is saturated) is retryable; an oversized message is not.
        lowered = details.lower()
        too_large = "larger than" in lowered or "too large" in lowered or "size limit" in lowered
        retryable = retry_after is not None or not too_large
    return cls(method, code, details or "(no details)", retryable=retryable, retry_after=retry_after)
