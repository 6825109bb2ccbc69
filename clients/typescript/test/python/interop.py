"""Python side of the TypeScript client's interop test (test/interop.test.ts).

It uses LangGraph's own AsyncPostgresSaver (langgraph-checkpoint-postgres) directly on the database a
checkpointd server serves, so the test does not depend on the Python client package.

    python interop.py write DATABASE_URL THREAD_ID   run a small graph (subgraph, Send fan-out,
                                                      interrupt, resume) and print the thread
    python interop.py read DATABASE_URL THREAD_ID    print a thread another client wrote

The thread is printed as JSON on stdout, newest checkpoint first, as AsyncPostgresSaver.alist
returns it: ids, namespaces, parents, metadata, channel versions, the values LangGraph's Postgres
saver keeps inline (None/str/int/float/bool), and pending writes (task id, channel).
"""

from __future__ import annotations

import asyncio
import json
import operator
import sys
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt


class State(TypedDict, total=False):
    topic: str
    items: Annotated[list[str], operator.add]
    count: int
    approved: bool
    summary: str


class Inner(TypedDict, total=False):
    items: list[str]
    summary: str


def build(checkpointer: AsyncPostgresSaver):
    inner = StateGraph(Inner)
    inner.add_node("count", lambda s: {"summary": f"{len(s['items'])} items"})
    inner.add_edge(START, "count")
    inner.add_edge("count", END)
    summarize = inner.compile()

    async def summarize_node(state: State, config) -> dict[str, Any]:
        out = await summarize.ainvoke({"items": state["items"]}, config)
        return {"summary": out["summary"], "count": len(state["items"])}

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "approve?", "summary": state["summary"]})
        return {"approved": answer == "yes", "items": [f"answer:{answer}"]}

    g = StateGraph(State)
    g.add_node("plan", lambda s: {"items": [f"plan:{s['topic']}"]})
    g.add_node("work", lambda s: {"items": [f"work:{s['item']}"]})
    g.add_node("summarize", summarize_node)
    g.add_node("ask", ask)
    g.add_node("finish", lambda s: {"items": ["done" if s.get("approved") else "rejected"]})
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("work", {"item": "a"}), Send("work", {"item": "b"})])
    g.add_edge("work", "summarize")
    g.add_edge("summarize", "ask")
    g.add_edge("ask", "finish")
    g.add_edge("finish", END)
    return g.compile(checkpointer=checkpointer)


def inline(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


async def dump(saver: AsyncPostgresSaver, thread_id: str) -> list[dict[str, Any]]:
    out = []
    async for t in saver.alist({"configurable": {"thread_id": thread_id}}):
        c = t.config["configurable"]
        out.append(
            {
                "thread_id": c["thread_id"],
                "checkpoint_ns": c["checkpoint_ns"],
                "checkpoint_id": c["checkpoint_id"],
                "parent_checkpoint_id": t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None,
                "metadata": t.metadata,
                "v": t.checkpoint["v"],
                "ts": t.checkpoint["ts"],
                "channel_versions": {k: str(v) for k, v in t.checkpoint["channel_versions"].items()},
                "channels": sorted(t.checkpoint["channel_values"].keys()),
                "inline_values": {k: v for k, v in t.checkpoint["channel_values"].items() if inline(v)},
                "pending_writes": [[w[0], w[1]] for w in t.pending_writes or []],
            }
        )
    return out


async def main() -> None:
    mode, url, thread_id = sys.argv[1:4]
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        await saver.setup()  # a no-op on checkpointd's schema, which is already current
        if mode == "write":
            graph = build(saver)
            config = {"configurable": {"thread_id": thread_id}, "metadata": {"user": "py-user", "lang": "python"}}
            first = await graph.ainvoke({"topic": "interop"}, config)
            assert "__interrupt__" in first, first
            final = await graph.ainvoke(Command(resume="yes"), config)
            assert final["items"][-1] == "done", final
        elif mode != "read":
            raise SystemExit(f"unknown mode {mode!r}")
        json.dump(await dump(saver, thread_id), sys.stdout, default=str)


if __name__ == "__main__":
    asyncio.run(main())
