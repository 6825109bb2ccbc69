"""Side-by-side benchmark of LangGraph's ``AsyncPostgresSaver`` and checkpointd's ``GrpcCheckpointSaver``.

This script owns the *Python-process* comparison: one asyncio event loop, one saver instance shared
by N concurrent tasks (each on its own thread id), exactly as an agent server runs a checkpointer.
It measures two operations on LangGraph-shaped checkpoints (a ``messages`` channel of 20 chat
messages of about 200 characters, stored as a msgpack blob, plus small inline channels):

* ``put``       -- every task extends its own checkpoint chain with ``aput``;
* ``get_tuple`` -- every task puts one checkpoint (untimed), then reads its latest with ``aget_tuple``.

Each window is a warm-up (calls not recorded) followed by the measured duration; a call counts when
it completes inside the measured part. Savers are interleaved per repetition so that machine noise
hits both alike. Results go to stdout as Markdown tables, optionally to a JSON file; progress goes
to stderr. It does not start servers: PostgreSQL and (for the checkpointd saver) a checkpointd
server must already be running.

    python benchmarks/compare_savers.py --target 127.0.0.1:50051 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
)
from langgraph.checkpoint.base.id import uuid6

SAVERS = ("postgres", "checkpointd")
OPS = ("put", "get_tuple")
MESSAGE_COUNT = 20
MESSAGE_CHARS = 200
# The checkpoint format version LangGraph's graph runtime writes (langgraph.pregel._checkpoint);
# base.empty_checkpoint() still says 2, and v < 4 makes the Postgres saver's reads look for legacy
# pending sends with an extra query.
GRAPH_CHECKPOINT_VERSION = 4
CONNECT_TIMEOUT_S = 10.0
LOREM = (
    "The quick brown fox jumps over the lazy dog while the agent plans its next tool call, "
    "summarises the conversation so far and drafts a careful answer for the user. "
)

Saver = BaseCheckpointSaver[str]
Call = Callable[[], Awaitable[None]]


# ---------------------------------------------------------------------------------- payload


def make_messages() -> list[BaseMessage]:
    """20 alternating human/AI messages of MESSAGE_CHARS characters each, with LangChain-style ids."""
    messages: list[BaseMessage] = []
    for i in range(MESSAGE_COUNT):
        text = (f"[{i:02d}] " + LOREM * 3)[:MESSAGE_CHARS]
        cls = HumanMessage if i % 2 == 0 else AIMessage
        messages.append(cls(content=text, id=str(uuid.uuid4())))
    return messages


MESSAGES = make_messages()


def blob_size(saver: Saver) -> int:
    """Size of the ``messages`` blob as the saver's serde writes it."""
    return len(saver.serde.dumps_typed(MESSAGES)[1])


class Chain:
    """One thread's checkpoint chain: builds each next ``aput`` and advances on success."""

    def __init__(self, saver: Saver, thread_id: str) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        self.versions: dict[str, str] = {}
        self.step = 0

    def _next(self) -> tuple[Checkpoint, CheckpointMetadata, dict[str, str]]:
        bumped = ("messages", "step") if self.versions else ("messages", "step", "note")
        new_versions = {ch: self.saver.get_next_version(self.versions.get(ch), None) for ch in bumped}
        previous = self.versions.get("messages")
        checkpoint = Checkpoint(
            v=GRAPH_CHECKPOINT_VERSION,
            id=str(uuid6(clock_seq=self.step)),
            ts=datetime.now(timezone.utc).isoformat(),
            channel_values={"messages": MESSAGES, "step": self.step, "note": "benchmark"},
            channel_versions={**self.versions, **new_versions},
            versions_seen={"model": {"messages": previous}} if previous else {},
            updated_channels=list(bumped),
        )
        metadata: CheckpointMetadata = {"source": "loop", "step": self.step, "parents": {}}
        return checkpoint, metadata, new_versions

    async def put(self) -> None:
        checkpoint, metadata, new_versions = self._next()
        self.config = await self.saver.aput(self.config, checkpoint, metadata, {**new_versions})
        self.versions.update(new_versions)
        self.step += 1


# ---------------------------------------------------------------------------------- measuring


@dataclass
class Window:
    """The measured part of a run, in perf_counter_ns time; calls stop being started at ``end_ns``."""

    start_ns: int
    end_ns: int

    @classmethod
    def after(cls, warmup_s: float, duration_s: float) -> Window:
        start = time.perf_counter_ns() + int(warmup_s * 1e9)
        return cls(start, start + int(duration_s * 1e9))

    def records(self, done_ns: int) -> bool:
        return self.start_ns <= done_ns <= self.end_ns


@dataclass
class Tally:
    """Latencies (ns) of the calls completed inside the window, and errors of the whole run."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"


async def call_loop(call: Call, window: Window, tally: Tally) -> None:
    """Call ``call`` back to back until the window ends, recording what completes inside it."""
    while (started := time.perf_counter_ns()) < window.end_ns:
        try:
            await call()
        except Exception as exc:  # counted, not fatal
            tally.error(exc)
            continue
        done = time.perf_counter_ns()
        if window.records(done):
            tally.latencies_ns.append(done - started)


def percentile_ms(sorted_ns: Sequence[int], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of sorted nanosecond samples, in milliseconds."""
    if not sorted_ns:
        return None
    rank = max(1, round(q / 100 * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1] / 1e6


def get_tuple_call(saver: Saver, thread_id: str) -> Call:
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}

    async def call() -> None:
        if await saver.aget_tuple(config) is None:
            raise LookupError(f"aget_tuple returned None for thread {thread_id}")

    return call


async def prepare_calls(saver: Saver, op: str, thread_ids: Sequence[str]) -> list[Call]:
    """One call per task; for ``get_tuple``, first put (untimed) the checkpoint it will read."""
    chains = [Chain(saver, t) for t in thread_ids]
    if op == "put":
        return [chain.put for chain in chains]
    await asyncio.gather(*(chain.put() for chain in chains))
    return [get_tuple_call(saver, t) for t in thread_ids]


async def cleanup(saver: Saver, thread_ids: Sequence[str]) -> None:
    """Delete the window's threads (untimed) so the tables do not grow from window to window."""
    results = await asyncio.gather(*(saver.adelete_thread(t) for t in thread_ids), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"  warning: {len(failed)} thread deletions failed: {failed[0]!r}", file=sys.stderr)


# ---------------------------------------------------------------------------------- results


@dataclass
class Step:
    saver: str
    op: str
    concurrency: int
    repetition: int
    duration_s: float
    tally: Tally

    @property
    def ops(self) -> int:
        return len(self.tally.latencies_ns)

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.tally.latencies_ns)
        return {
            "saver": self.saver,
            "op": self.op,
            "concurrency": self.concurrency,
            "repetition": self.repetition,
            "ops": self.ops,
            "ops_per_sec": self.ops / self.duration_s,
            "p50_ms": percentile_ms(lat, 50),
            "p99_ms": percentile_ms(lat, 99),
            "errors": self.tally.errors,
        }


def summarize(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Per (saver, op, concurrency): throughput median/min/max over repetitions; latency
    percentiles over the calls of all repetitions pooled."""
    groups: dict[tuple[str, str, int], list[Step]] = {}
    for step in steps:
        groups.setdefault((step.saver, step.op, step.concurrency), []).append(step)
    summary = []
    for (saver, op, concurrency), group in groups.items():
        rates = [s.ops / s.duration_s for s in group]
        pooled = sorted(ns for s in group for ns in s.tally.latencies_ns)
        summary.append(
            {
                "saver": saver,
                "op": op,
                "concurrency": concurrency,
                "repetitions": len(group),
                "ops_per_sec_median": statistics.median(rates),
                "ops_per_sec_min": min(rates),
                "ops_per_sec_max": max(rates),
                "p50_ms": percentile_ms(pooled, 50),
                "p99_ms": percentile_ms(pooled, 99),
                "errors": sum(s.tally.errors for s in group),
            }
        )
    return summary


def ratios(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """checkpointd relative to postgres, for every (op, concurrency) that both savers ran."""
    by_key = {(r["saver"], r["op"], r["concurrency"]): r for r in summary}
    out = []
    for r in summary:
        if r["saver"] != "postgres":
            continue
        other = by_key.get(("checkpointd", r["op"], r["concurrency"]))
        if other is None:
            continue
        out.append(
            {
                "op": r["op"],
                "concurrency": r["concurrency"],
                "throughput_ratio": safe_div(other["ops_per_sec_median"], r["ops_per_sec_median"]),
                "p50_ratio": safe_div(other["p50_ms"], r["p50_ms"]),
            }
        )
    return out


def safe_div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def markdown(summary: Sequence[dict[str, Any]], ratio_rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| op | concurrency | saver | reps | ops/s median | ops/s min–max | p50 ms | p99 ms | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r['op']} | {r['concurrency']} | {r['saver']} | {r['repetitions']} "
            f"| {r['ops_per_sec_median']:.1f} | {r['ops_per_sec_min']:.1f}–{r['ops_per_sec_max']:.1f} "
            f"| {fmt(r['p50_ms'], '.2f')} | {fmt(r['p99_ms'], '.2f')} | {r['errors']} |"
        )
    if ratio_rows:
        lines += [
            "",
            "| op | concurrency | throughput checkpointd/postgres | p50 checkpointd/postgres |",
            "|---|---:|---:|---:|",
        ]
        for r in ratio_rows:
            lines.append(
                f"| {r['op']} | {r['concurrency']} | {fmt(r['throughput_ratio'], '.2f', '×')} "
                f"| {fmt(r['p50_ratio'], '.2f', '×')} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- savers


@asynccontextmanager
async def open_postgres(database_url: str, pool_size: int) -> AsyncIterator[Saver]:
    """``AsyncPostgresSaver`` on an ``AsyncConnectionPool``, configured as production users do."""
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    try:  # a direct connection first, for psycopg's own error rather than a pool timeout
        probe = await psycopg.AsyncConnection.connect(database_url, connect_timeout=int(CONNECT_TIMEOUT_S))
        await probe.close()
    except psycopg.Error as exc:
        raise SystemExit(f"error: cannot connect to PostgreSQL (--database-url): {exc}") from exc
    pool = AsyncConnectionPool(
        database_url,
        max_size=pool_size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        await pool.close()
        raise SystemExit(f"error: cannot connect to PostgreSQL (--database-url): {exc}") from exc
    try:
        yield saver
    finally:
        await pool.close()


@asynccontextmanager
async def open_checkpointd(target: str) -> AsyncIterator[Saver]:
    """One ``GrpcCheckpointSaver`` (one gRPC channel), after checking that the server is SERVING."""
    from checkpointd_client import CheckpointdError, GrpcCheckpointSaver

    saver = GrpcCheckpointSaver(target)
    try:
        status = await saver.client.ahealth(timeout=CONNECT_TIMEOUT_S)
    except CheckpointdError as exc:
        await saver.aclose()
        raise SystemExit(f"error: cannot reach checkpointd at {target} (--target): {exc}") from exc
    if status != "SERVING":
        await saver.aclose()
        raise SystemExit(f"error: checkpointd at {target} reports {status}, not SERVING")
    try:
        yield saver
    finally:
        await saver.aclose()


async def open_savers(stack: AsyncExitStack, args: argparse.Namespace) -> dict[str, Saver]:
    savers: dict[str, Saver] = {}
    for name in args.savers:
        if name == "postgres":
            savers[name] = await stack.enter_async_context(open_postgres(args.database_url, args.pool_size))
        else:
            savers[name] = await stack.enter_async_context(open_checkpointd(args.target))
    return savers


# ---------------------------------------------------------------------------------- driver


async def run_step(
    saver_name: str, saver: Saver, op: str, concurrency: int, repetition: int, args: argparse.Namespace
) -> Step:
    prefix = f"bench-{args.run_id}-{saver_name}-{op}-c{concurrency}-r{repetition}"
    thread_ids = [f"{prefix}-t{i}" for i in range(concurrency)]
    calls = await prepare_calls(saver, op, thread_ids)
    window = Window.after(args.warmup, args.duration)
    tally = Tally()
    await asyncio.gather(*(call_loop(call, window, tally) for call in calls))
    if not args.keep_data:
        await cleanup(saver, thread_ids)
    return Step(saver_name, op, concurrency, repetition, args.duration, tally)


def report_progress(step: Step, repetitions: int) -> None:
    row = step.to_json()
    print(
        f"{step.op:<9} c={step.concurrency:<3} rep {step.repetition}/{repetitions} {step.saver:<11} "
        f"{row['ops']:>7} ops {row['ops_per_sec']:>9.1f} ops/s  p50 {fmt(row['p50_ms'], '7.2f')} ms  "
        f"p99 {fmt(row['p99_ms'], '7.2f')} ms  errors {row['errors']}",
        file=sys.stderr,
    )
    if step.tally.first_error:
        print(f"  first error: {step.tally.first_error}", file=sys.stderr)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    steps: list[Step] = []
    async with AsyncExitStack() as stack:
        savers = await open_savers(stack, args)
        first = next(iter(savers.values()))
        blob_bytes = blob_size(first)
        print(f"run {args.run_id}: messages blob {blob_bytes} bytes", file=sys.stderr)
        for op in args.ops:
            for concurrency in args.concurrency:
                for repetition in range(1, args.repetitions + 1):
                    for name, saver in savers.items():
                        step = await run_step(name, saver, op, concurrency, repetition, args)
                        report_progress(step, args.repetitions)
                        steps.append(step)
    summary = summarize(steps)
    return {
        "python": platform.python_version(),
        "langgraph_checkpoint_postgres": package_version("langgraph-checkpoint-postgres"),
        "blob_bytes": blob_bytes,
        "steps": [s.to_json() for s in steps],
        "summary": summary,
        "ratios": ratios(summary),
    }


# ---------------------------------------------------------------------------------- CLI


def csv_of(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [x for x in items if x not in choices]
        if not items or unknown:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {', '.join(choices)}")
        return list(dict.fromkeys(items))

    return parse


def positive_ints(text: str) -> list[int]:
    try:
        values = list(dict.fromkeys(int(x) for x in text.split(",") if x.strip()))
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers, e.g. 1,8,32")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL for AsyncPostgresSaver (default: %(default)s)")
    p.add_argument("--target", help="checkpointd host:port (required with the checkpointd saver)")
    p.add_argument("--savers", type=csv_of(SAVERS), default=list(SAVERS), help="default: postgres,checkpointd")
    p.add_argument("--ops", type=csv_of(OPS), default=list(OPS), help="default: put,get_tuple")
    p.add_argument("--concurrency", type=positive_ints, default=[1, 8, 32],
                   help="tasks sharing the saver (default: 1,8,32)")
    p.add_argument("--repetitions", type=int, default=3, help="default: %(default)s")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds not recorded per window (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per window (default: %(default)s)")
    p.add_argument("--pool-size", type=int, default=32, help="AsyncConnectionPool max_size (default: %(default)s)")
    p.add_argument("--keep-data", action="store_true", help="do not delete each window's threads afterwards")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = p.parse_args(argv)
    if "checkpointd" in args.savers and not args.target:
        p.error("--target is required when the checkpointd saver is selected")
    if args.repetitions < 1 or args.duration <= 0 or args.warmup < 0 or args.pool_size < 1:
        p.error("--repetitions and --pool-size must be >= 1, --duration > 0, --warmup >= 0")
    args.run_id = uuid.uuid4().hex[:8]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    print(markdown(result["summary"], result["ratios"]))


if __name__ == "__main__":
    main()
