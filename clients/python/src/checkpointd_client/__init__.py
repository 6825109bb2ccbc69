"""Python client of checkpointd: LangGraph checkpoints in PostgreSQL, over gRPC.

    from checkpointd_client import GrpcCheckpointSaver, CheckpointdClient
"""

from checkpointd_client.client import SERVICE_NAME, CheckpointdClient, PlaintextTokenWarning, RetryPolicy
from checkpointd_client.errors import (
    RETRY_SAFE_TRAILER,
    AbortedError,
    CheckpointdError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnexpectedStatusError,
)
from checkpointd_client.saver import GrpcCheckpointSaver

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "CheckpointdClient",
    "CheckpointdError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "GrpcCheckpointSaver",
    "InternalError",
    "InvalidArgumentError",
    "PermissionDeniedError",
    "PlaintextTokenWarning",
    "RETRY_SAFE_TRAILER",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SERVICE_NAME",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
    "__version__",
]
