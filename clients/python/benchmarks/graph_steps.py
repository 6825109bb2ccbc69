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
AsyncPostgresSaver. It does not start servers.

    python benchmarks/graph_steps.py --database-url postgres://... --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import statistics
import sys
import time
import uuid
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


def build(kind: str, checkpointer: Any) -> Any:
    state = PlainState if kind == "plain" else DeltaState

    def respond(current: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"{len(current['messages'])}: {TEXT}")]}

    builder = StateGraph(state)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder.compile(checkpointer=checkpointer)


async def run_one(graph: Any, steps: int) -> dict[str, float]:
    config = {"configurable": {"thread_id": f"steps-{uuid.uuid4()}"}}
    per_step = []
    for _ in range(steps):
        started = time.perf_counter()
        await graph.ainvoke({"messages": []}, config)
        per_step.append((time.perf_counter() - started) * 1000)
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
                    result = await run_one(build(kind, saver), args.steps)
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
        kind: {
            name: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for name, results in by_saver.items()
        }
        for kind, by_saver in samples.items()
    }
    return {"steps": args.steps, "median": medians, "samples": samples}


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
    return "\n".join(lines)


def main() -> None:
    p = script_main.parser(__doc__, database_url=True)
    p.add_argument("--steps", type=int, default=150)
    script_main.run_and_report(p, run, table)


if __name__ == "__main__":
    main()
