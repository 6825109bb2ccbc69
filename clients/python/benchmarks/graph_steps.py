"""What one agent feels: a real LangGraph graph invoked step after step on one thread, per saver.

Two graphs, each a single node that appends one chat message (about 200 characters) per
invocation to ``messages``:

* ``plain``  -- ``messages: Annotated[list, operator.add]`` (the whole list is one blob per step);
* ``delta``  -- ``messages: Annotated[list, DeltaChannel(operator.add)]`` (LangGraph 1.2's beta
  channel: each step stores only its write, and a read rebuilds the list from the latest snapshot
  and the writes since, through ``get_delta_channel_history``).

For each graph and saver (LangGraph's ``AsyncPostgresSaver`` on one connection, as
``from_conn_string`` opens it, and checkpointd's ``GrpcCheckpointSaver``), interleaved, it invokes
the graph ``--steps`` times on a fresh thread, then times ``aget_state`` and one more step. Results:
median ms per step, ``aget_state`` ms and the last step's ms, with checkpointd's ratio to
AsyncPostgresSaver; and, over the steps, which saver methods LangGraph called how often and the
wall time spent inside them (a call can overlap the graph's own work, so they need not add up to
the step). It does not start servers.

    python benchmarks/graph_steps.py --database-url postgres://... --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import operator
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from langchain_core.messages import AIMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

import script_main

TEXT = "The agent plans its next tool call and drafts a careful answer for the user. " * 3


class PlainState(TypedDict):
    messages: Annotated[list, operator.add]


class DeltaState(TypedDict):
    messages: Annotated[list, DeltaChannel(operator.add)]


# The saver methods a graph run calls (in a step, or to rebuild a DeltaChannel).
TIMED_METHODS = ("aget_tuple", "aput", "aput_writes", "aget_delta_channel_history")


@contextmanager
def timed_calls(saver: Any) -> Iterator[dict[str, list[float]]]:
    """While active, every call of ``saver``'s ``TIMED_METHODS`` appends its wall ms to the
    method's list (the yielded dict). A graph compiled meanwhile copies the timing wrappers
    (``with_allowlist`` clones the saver's attributes), so build it inside."""
    times: dict[str, list[float]] = {name: [] for name in TIMED_METHODS}

    def timed(name: str, method: Any) -> Any:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                times[name].append((time.perf_counter() - started) * 1000)

        return call

    for name in TIMED_METHODS:
        setattr(saver, name, timed(name, getattr(saver, name)))
    try:
        yield times
    finally:
        for name in TIMED_METHODS:
            delattr(saver, name)


def call_summary(times: dict[str, list[float]], steps: int) -> dict[str, dict[str, float]]:
    """Per method called: calls per step, median ms per call and ms per step inside it."""
    return {
        name: {
            "per_step": len(samples) / steps,
            "ms_per_call": statistics.median(samples),
            "ms_per_step": sum(samples) / steps,
        }
        for name, samples in times.items()
        if samples
    }


def build(kind: str, checkpointer: Any) -> Any:
    state = PlainState if kind == "plain" else DeltaState

    def respond(current: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"{len(current['messages'])}: {TEXT}")]}

    builder = StateGraph(state)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder.compile(checkpointer=checkpointer)


async def run_one(kind: str, saver: Any, steps: int) -> dict[str, Any]:
    config = {"configurable": {"thread_id": f"steps-{uuid.uuid4()}"}}
    per_step = []
    with timed_calls(saver) as times:
        graph = build(kind, saver)
        for _ in range(steps):
            started = time.perf_counter()
            await graph.ainvoke({"messages": []}, config)
            per_step.append((time.perf_counter() - started) * 1000)
    graph = build(kind, saver)
    started = time.perf_counter()
    state = await graph.aget_state(config)
    get_state_ms = (time.perf_counter() - started) * 1000
    messages = len(state.values["messages"])
    started = time.perf_counter()
    await graph.ainvoke({"messages": []}, config)
    last_ms = (time.perf_counter() - started) * 1000
    return {
        "step_ms": statistics.median(per_step),
        "get_state_ms": get_state_ms,
        "last_step_ms": last_ms,
        "messages": messages,
        "calls": call_summary(times, steps),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    from checkpointd_client import GrpcCheckpointSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row

    conn = await psycopg.AsyncConnection.connect(
        args.database_url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    postgres = AsyncPostgresSaver(conn)  # type: ignore[arg-type]
    await postgres.setup()
    checkpointd = GrpcCheckpointSaver(args.target)
    savers = {"postgres": postgres, "checkpointd": checkpointd}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {"plain": {}, "delta": {}}
    try:
        for round_number in range(args.repetitions):
            for kind in samples:
                for name, saver in savers.items():
                    result = await run_one(kind, saver, args.steps)
                    samples[kind].setdefault(name, []).append(result)
            for kind, by_saver in samples.items():
                counts = {name: results[-1]["messages"] for name, results in by_saver.items()}
                if len(set(counts.values())) != 1:
                    raise SystemExit(f"the savers disagree on the {kind} graph's state: {counts}")
            print(f"round {round_number + 1}/{args.repetitions} done", file=sys.stderr)
    finally:
        await checkpointd.aclose()
        await conn.close()
    medians = {
        kind: {name: median_of(results) for name, results in by_saver.items()} for kind, by_saver in samples.items()
    }
    return {"steps": args.steps, "median": medians, "samples": samples}


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each measure over the repetitions, the call figures per method included."""
    medians: dict[str, Any] = {
        key: statistics.median(r[key] for r in results) for key in results[0] if key != "calls"
    }
    methods = {method for r in results for method in r["calls"]}
    medians["calls"] = {
        method: {
            figure: statistics.median(r["calls"].get(method, {}).get(figure, 0.0) for r in results)
            for figure in ("per_step", "ms_per_call", "ms_per_step")
        }
        for method in sorted(methods, key=TIMED_METHODS.index)
    }
    return medians


def table(result: dict[str, Any]) -> str:
    lines = [
        f"A graph invoked {result['steps']} times on one thread, then `aget_state` and one more step "
        "(median ms; ratio = checkpointd / AsyncPostgresSaver)",
        "",
        "| graph | measure | AsyncPostgresSaver | checkpointd | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, by in result["median"].items():
        for key, label in [("step_ms", "per step"), ("get_state_ms", "aget_state"), ("last_step_ms", "one more step")]:
            pg, ours = by["postgres"][key], by["checkpointd"][key]
            lines.append(f"| {kind} | {label} | {pg:.1f} | {ours:.1f} | {ours / pg:.2f} |")
    lines += [
        "",
        "Inside the saver during those steps: calls per step, median ms per call, and ms per step spent "
        "inside the method (calls overlap the graph's own work)",
        "",
        "| graph | method | calls per step | AsyncPostgresSaver ms/call | checkpointd ms/call "
        "| AsyncPostgresSaver ms/step | checkpointd ms/step |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind, by in result["median"].items():
        pg_calls, our_calls = by["postgres"]["calls"], by["checkpointd"]["calls"]
        for method in sorted(set(pg_calls) | set(our_calls), key=TIMED_METHODS.index):
            pg, ours = pg_calls.get(method, {}), our_calls.get(method, {})
            lines.append(
                f"| {kind} | {method} | {ours.get('per_step', 0):.2f} | {pg.get('ms_per_call', 0):.2f} "
                f"| {ours.get('ms_per_call', 0):.2f} | {pg.get('ms_per_step', 0):.2f} | {ours.get('ms_per_step', 0):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = script_main.parser(__doc__, database_url=True)
    p.add_argument("--steps", type=int, default=150)
    script_main.run_and_report(p, run, table)


if __name__ == "__main__":
    main()
