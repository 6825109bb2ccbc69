"""langgraph-checkpoint-conformance 0.0.2 against GrpcCheckpointSaver (every capability) and, as
the reference, against LangGraph's AsyncPostgresSaver on the same PostgreSQL."""

from __future__ import annotations

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability
from langgraph.checkpoint.conformance.report import CapabilityReport, ProgressCallbacks
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from _harness import Server, create_database, drop_database
from checkpointd_client import GrpcCheckpointSaver

ALL_CAPABILITIES = {c.value for c in Capability}
# Tests per capability in langgraph-checkpoint-conformance 0.0.2 (81 in all).
EXPECTED_COUNTS = {
    "put": 17,
    "put_writes": 10,
    "get_tuple": 10,
    "list": 16,
    "delete_thread": 5,
    "delete_for_runs": 7,
    "copy_thread": 8,
    "prune": 8,
}

_grpc_state: dict[str, object] = {}


async def grpc_lifespan():
    """Once per validate(): a fresh database and a checkpointd serving it."""
    name, url = create_database()
    server = Server(url)
    try:
        server.start()
        _grpc_state["target"] = server.target
        yield
    finally:
        server.stop()
        drop_database(name)


@checkpointer_test(name="GrpcCheckpointSaver", lifespan=grpc_lifespan)
async def grpc_checkpointer():
    saver = GrpcCheckpointSaver(_grpc_state["target"])
    try:
        yield saver
    finally:
        await saver.aclose()


_pg_state: dict[str, str] = {}


async def pg_lifespan():
    name, url = create_database()
    try:
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
        _pg_state["url"] = url
        yield
    finally:
        drop_database(name)


@checkpointer_test(name="AsyncPostgresSaver", lifespan=pg_lifespan)
async def pg_checkpointer():
    async with AsyncPostgresSaver.from_conn_string(_pg_state["url"]) as saver:
        yield saver


def _summary(report: CapabilityReport) -> str:
    lines = [f"conformance of {report.checkpointer_name}:"]
    total_p = total_f = 0
    for cap in sorted(report.results):
        r = report.results[cap]
        state = "not implemented" if not r.detected else f"{r.tests_passed} passed, {r.tests_failed} failed"
        lines.append(f"  {cap:16s} {state}")
        for failure in r.failures:
            lines.append("    " + failure.replace("\n", "\n    "))
        total_p += r.tests_passed
        total_f += r.tests_failed
    lines.append(f"  total            {total_p} passed, {total_f} failed")
    return "\n".join(lines)


async def test_conformance_grpc_saver_every_capability() -> None:
    report = await validate(grpc_checkpointer, progress=ProgressCallbacks.verbose())
    report.print_report()
    summary = _summary(report)
    print(summary)
    assert report.passed_all_base() and report.passed_all(), summary
    # Every capability was detected and ran all of its tests.
    assert set(report.results) == ALL_CAPABILITIES, summary
    for cap, expected in EXPECTED_COUNTS.items():
        result = report.results[cap]
        assert result.detected, f"{cap} not detected\n{summary}"
        assert (result.tests_passed, result.tests_failed) == (expected, 0), summary
    assert sum(r.tests_passed for r in report.results.values()) == 81, summary


async def test_conformance_reference_postgres_saver() -> None:
    """The baseline the gRPC saver is measured against: 66 passed, 0 failed."""
    report = await validate(pg_checkpointer, progress=ProgressCallbacks.quiet())
    summary = _summary(report)
    print(summary)
    assert report.passed_all_base() and report.passed_all(), summary
    assert sum(r.tests_passed for r in report.results.values()) == 66, summary
    assert not report.results["delete_for_runs"].detected
    assert not report.results["copy_thread"].detected
