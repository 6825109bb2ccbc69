from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from _harness import Server, create_database, drop_database


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One checkpointd on one scratch database, shared by the tests that do not need their own."""
    name, url = create_database()
    srv = Server(url)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        drop_database(name)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A second scratch database, migrated by LangGraph's own saver (for differential tests)."""
    name, url = create_database()

    async def setup() -> None:
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()

    asyncio.run(setup())
    try:
        yield url
    finally:
        drop_database(name)
