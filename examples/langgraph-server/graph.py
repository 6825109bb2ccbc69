"""A small approval graph for LangGraph Agent Server: draft, ask a human (interrupt), publish.

The graph is compiled without a checkpointer: the Agent Server supplies the one that
langgraph.json names (checkpointd, through checkpointer.py).
"""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    topic: str
    draft: str
    approved: bool
    note: str
    published: str


def write_draft(state: State) -> State:
    """Drafts a one-line announcement about the topic."""
    return {"draft": f"Announcing: {state['topic']}."}


def ask_reviewer(state: State) -> State:
    """Stops the run until a human answers; the answer is the value of Command(resume=...)."""
    answer = interrupt({"question": "Publish this draft?", "draft": state["draft"]})
    return {"approved": bool(answer.get("approved")), "note": str(answer.get("note", ""))}


def publish(state: State) -> State:
    """Publishes the draft when the reviewer approved it."""
    return {"published": state["draft"] if state["approved"] else ""}


builder = StateGraph(State)
builder.add_node("write_draft", write_draft)
builder.add_node("ask_reviewer", ask_reviewer)
builder.add_node("publish", publish)
builder.add_edge(START, "write_draft")
builder.add_edge("write_draft", "ask_reviewer")
builder.add_edge("ask_reviewer", "publish")
builder.add_edge("publish", END)
graph = builder.compile()
