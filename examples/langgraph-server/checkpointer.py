"""The checkpointer factory that langgraph.json names: checkpointd, through GrpcCheckpointSaver.

LangGraph Agent Server (`langgraph dev`, `langgraph up`, a self-hosted langgraph-api) enters this
async context manager when it starts, uses the saver for every thread, and leaves it (closing the
gRPC channel) when it stops.

Environment:
    CHECKPOINTD_ADDRESS  checkpointd's gRPC address, e.g. "checkpointd:50051" (required).
    CHECKPOINTD_TOKEN    a bearer token, when the server was started with --auth-token (optional).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from checkpointd_client import GrpcCheckpointSaver

ADDRESS_VARIABLE = "CHECKPOINTD_ADDRESS"
TOKEN_VARIABLE = "CHECKPOINTD_TOKEN"


def _address() -> str:
    address = os.environ.get(ADDRESS_VARIABLE, "").strip()
    if not address:
        raise RuntimeError(f"set {ADDRESS_VARIABLE} to checkpointd's gRPC address, e.g. checkpointd:50051")
    return address


@asynccontextmanager
async def checkpointer() -> AsyncIterator[GrpcCheckpointSaver]:
    """Yields a GrpcCheckpointSaver connected to $CHECKPOINTD_ADDRESS; closes it on exit."""
    options = {}
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        options["token"] = token
    async with GrpcCheckpointSaver(_address(), **options) as saver:
        yield saver
