"""Python side of the cross-language resume tests in test/interop.test.ts.

A LangGraph (Python) graph with the same shape as the test's LangGraph.js graph, on checkpointd
through the Python client's GrpcCheckpointSaver:

    START -> prepare -> ask (interrupt) -> finish -> END

    python resume.py start  TARGET THREAD_ID   run until the interrupt
    python resume.py resume TARGET THREAD_ID   resume the thread with Command(resume="yes")
    python resume.py state  TARGET THREAD_ID   read the thread's state
    python resume.py continue TARGET THREAD_ID continue a thread stopped at the breakpoint before
                                               "ask" (interrupt_before), then resume its interrupt

Prints one JSON object: the graph's result (or the interrupt's value), and the channel versions of the
thread's latest checkpoint with their types (LangGraph compares the versions of one thread with each
other, so they must all be ints or all be strs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TypedDict

from checkpointd_client import GrpcCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt


class State(TypedDict, total=False):
    question: str
    summary: str
    answer: str
    steps: int


def build(checkpointer: GrpcCheckpointSaver, interrupt_before: list[str] | None = None):
    def prepare(state: State) -> dict[str, Any]:
        return {"summary": f"about {state['question']}", "steps": 1}

    def ask(state: State) -> dict[str, Any]:
        return {"answer": interrupt(state["question"])}

    def finish(state: State) -> dict[str, Any]:
        return {"summary": f"{state['summary']}: {state['answer']}", "steps": state["steps"] + 1}

    g = StateGraph(State)
    g.add_node("prepare", prepare)
    g.add_node("ask", ask)
    g.add_node("finish", finish)
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "ask")
    g.add_edge("ask", "finish")
    g.add_edge("finish", END)
    return g.compile(checkpointer=checkpointer, interrupt_before=interrupt_before)


def version_types(versions: dict[str, Any]) -> list[str]:
    return sorted({type(v).__name__ for v in versions.values()})


async def main() -> None:
    mode, target, thread_id = sys.argv[1:4]
    config = {"configurable": {"thread_id": thread_id}}
    async with GrpcCheckpointSaver.from_conn_string(target) as saver:
        graph = build(saver, ["ask"] if mode == "continue" else None)
        if mode == "start":
            result = await graph.ainvoke({"question": "Ship it?"}, config)
            out: dict[str, Any] = {"interrupt": result["__interrupt__"][0].value}
        elif mode == "resume":
            result = await graph.ainvoke(Command(resume="yes"), config)
            out = {"result": {k: result.get(k) for k in ("question", "summary", "answer", "steps")}}
        elif mode == "continue":
            paused = await graph.ainvoke(None, config)
            assert paused["__interrupt__"][0].value == "Ship it?", paused
            result = await graph.ainvoke(Command(resume="yes"), config)
            out = {"result": {k: result.get(k) for k in ("question", "summary", "answer", "steps")}}
        elif mode == "state":
            values = (await graph.aget_state(config)).values
            out = {"result": {k: values.get(k) for k in ("question", "summary", "answer", "steps")}}
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        latest = await saver.aget_tuple(config)
        versions = latest.checkpoint["channel_versions"]
        out["versions"] = {k: str(v) for k, v in versions.items()}
        out["version_types"] = version_types(versions)
        out["next"] = list((await graph.aget_state(config)).next)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
