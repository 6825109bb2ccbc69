"""Real LangGraph graphs, run the same way against any checkpointer, producing a comparable trace.

Each scenario returns a JSON-like trace of everything a user can observe: invoke results
(including interrupts), get_state (with subgraphs), the full state history, forks. Checkpoint,
task and interrupt ids, timestamps and run ids differ between two runs, so ids are replaced by
ordinals in order of first appearance, and run ids / timestamps are dropped.
"""

from __future__ import annotations

import operator
import re
import uuid
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Interrupt, Send, StateSnapshot, interrupt
from typing_extensions import TypedDict

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


class Canon:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def _sub(self, m: re.Match[str]) -> str:
        return self.ids.setdefault(m.group(0), f"<id{len(self.ids)}>")

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, StateSnapshot):
            return self(
                {
                    "values": obj.values,
                    "next": obj.next,
                    "config": obj.config,
                    "metadata": {k: v for k, v in (obj.metadata or {}).items() if k != "run_id"},
                    "parent_config": obj.parent_config,
                    "tasks": [
                        {
                            "id": t.id,
                            "name": t.name,
                            "path": t.path,
                            "error": repr(t.error) if t.error else None,
                            "interrupts": t.interrupts,
                            "state": t.state,
                            "result": t.result,
                        }
                        for t in obj.tasks
                    ],
                    "interrupts": obj.interrupts,
                }
            )
        if isinstance(obj, Interrupt):
            return {"interrupt": self(obj.value), "id": self(obj.id)}
        if isinstance(obj, str):
            return _ID.sub(self._sub, obj)
        if isinstance(obj, dict):
            return {self(k): self(v) for k, v in obj.items() if k not in ("run_id", "ts", "created_at")}
        if isinstance(obj, (list, tuple)):
            return [self(x) for x in obj]
        return obj


class Runner:
    """Calls a compiled graph's sync or async API with the same code."""

    def __init__(self, graph: Any, is_async: bool) -> None:
        self.graph = graph
        self.is_async = is_async

    async def invoke(self, inp: Any, config: dict, **kw: Any) -> Any:
        if self.is_async:
            return await self.graph.ainvoke(inp, config, **kw)
        return self.graph.invoke(inp, config, **kw)

    async def get_state(self, config: dict, subgraphs: bool = False) -> StateSnapshot:
        if self.is_async:
            return await self.graph.aget_state(config, subgraphs=subgraphs)
        return self.graph.get_state(config, subgraphs=subgraphs)

    async def history(self, config: dict) -> list[StateSnapshot]:
        if self.is_async:
            return [s async for s in self.graph.aget_state_history(config)]
        return list(self.graph.get_state_history(config))

    async def update_state(self, config: dict, values: Any, as_node: str | None = None) -> dict:
        if self.is_async:
            return await self.graph.aupdate_state(config, values, as_node=as_node)
        return self.graph.update_state(config, values, as_node=as_node)


def _config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}, "metadata": {"user": "u1"}}


# ---------------------------------------------------------------- human in the loop


class HitlState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    answer: str


def _hitl_graph(checkpointer: Any) -> Any:
    def step1(state: HitlState) -> dict:
        return {"log": ["step1"]}

    def ask(state: HitlState) -> dict:
        answer = interrupt({"question": "what is your name?"})
        return {"answer": answer, "log": ["ask"]}

    def step3(state: HitlState) -> dict:
        return {"log": [f"hello {state['answer']}"]}

    g = StateGraph(HitlState)
    g.add_node("step1", step1)
    g.add_node("ask", ask)
    g.add_node("step3", step3)
    g.add_edge(START, "step1")
    g.add_edge("step1", "ask")
    g.add_edge("ask", "step3")
    g.add_edge("step3", END)
    return g.compile(checkpointer=checkpointer)


async def scenario_interrupt_resume(checkpointer: Any, is_async: bool) -> list[Any]:
    r = Runner(_hitl_graph(checkpointer), is_async)
    cfg = _config(f"hitl-{uuid.uuid4()}")
    canon = Canon()
    trace: list[Any] = []
    first = await r.invoke({"log": []}, cfg)
    assert "__interrupt__" in first, first
    trace.append(canon(first))
    paused = await r.get_state(cfg)
    assert paused.next == ("ask",)
    assert paused.tasks[0].interrupts[0].value == {"question": "what is your name?"}
    trace.append(canon(paused))
    final = await r.invoke(Command(resume="ada"), cfg)
    assert final["log"] == ["step1", "ask", "hello ada"], final
    trace.append(canon(final))
    trace.append(canon(await r.get_state(cfg)))
    trace.append(canon(await r.history(cfg)))
    return trace


# ---------------------------------------------------------------- Send fan-out


class FanState(TypedDict, total=False):
    items: list[str]
    results: Annotated[list[str], operator.add]


class WorkState(TypedDict):
    item: str


def _fanout_graph(checkpointer: Any) -> Any:
    def prep(state: FanState) -> dict:
        return {"items": state["items"] + ["delta"]}

    def fan(state: FanState) -> list[Send]:
        return [Send("work", {"item": i}) for i in state["items"]]

    def work(state: WorkState) -> dict:
        return {"results": [state["item"].upper()]}

    def gather(state: FanState) -> dict:
        return {"results": [f"n={len(state['results'])}"]}

    g = StateGraph(FanState)
    g.add_node("prep", prep)
    g.add_node("work", work)
    g.add_node("gather", gather)
    g.add_edge(START, "prep")
    g.add_conditional_edges("prep", fan, ["work"])
    g.add_edge("work", "gather")
    g.add_edge("gather", END)
    return g.compile(checkpointer=checkpointer)


async def scenario_send_fanout(checkpointer: Any, is_async: bool) -> list[Any]:
    r = Runner(_fanout_graph(checkpointer), is_async)
    cfg = _config(f"fan-{uuid.uuid4()}")
    canon = Canon()
    out = await r.invoke({"items": ["alpha", "beta", "gamma"], "results": []}, cfg)
    assert sorted(out["results"][:-1]) == ["ALPHA", "BETA", "DELTA", "GAMMA"], out
    assert out["results"][-1] == "n=4"
    return [canon(out), canon(await r.get_state(cfg)), canon(await r.history(cfg))]


# ---------------------------------------------------------------- subgraphs (namespaces)


class ChildState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    approved: bool


def _subgraph_graph(checkpointer: Any) -> Any:
    def c1(state: ChildState) -> dict:
        return {"log": ["child1"]}

    def c2(state: ChildState) -> dict:
        ok = interrupt("approve?")
        return {"log": [f"child2:{ok}"], "approved": ok}

    child = StateGraph(ChildState)
    child.add_node("c1", c1)
    child.add_node("c2", c2)
    child.add_edge(START, "c1")
    child.add_edge("c1", "c2")
    child.add_edge("c2", END)
    child_graph = child.compile()

    def p1(state: ChildState) -> dict:
        return {"log": ["parent1"]}

    def p2(state: ChildState) -> dict:
        return {"log": ["parent2"]}

    g = StateGraph(ChildState)
    g.add_node("p1", p1)
    g.add_node("child", child_graph)
    g.add_node("p2", p2)
    g.add_edge(START, "p1")
    g.add_edge("p1", "child")
    g.add_edge("child", "p2")
    g.add_edge("p2", END)
    return g.compile(checkpointer=checkpointer)


async def scenario_subgraph(checkpointer: Any, is_async: bool) -> list[Any]:
    r = Runner(_subgraph_graph(checkpointer), is_async)
    thread = f"sub-{uuid.uuid4()}"
    cfg = _config(thread)
    canon = Canon()
    trace: list[Any] = []
    trace.append(canon(await r.invoke({"log": []}, cfg)))
    paused = await r.get_state(cfg, subgraphs=True)
    sub = paused.tasks[0].state
    assert isinstance(sub, StateSnapshot), paused
    assert sub.config["configurable"]["checkpoint_ns"].startswith("child:")
    assert sub.next == ("c2",)
    trace.append(canon(paused))
    # Every namespace of the thread, through the saver itself (list without checkpoint_ns).
    if is_async:
        rows = [t async for t in checkpointer.alist({"configurable": {"thread_id": thread}})]
    else:
        rows = list(checkpointer.list({"configurable": {"thread_id": thread}}))
    namespaces = sorted({t.config["configurable"]["checkpoint_ns"].split(":")[0] for t in rows})
    assert namespaces == ["", "child"], namespaces
    trace.append(canon([(t.config, t.metadata, t.pending_writes) for t in rows]))
    final = await r.invoke(Command(resume=True), cfg)
    # (The child returns its whole state, so the parent's reducer sees "parent1" twice.)
    assert final["log"][-3:] == ["child1", "child2:True", "parent2"], final
    assert final["approved"] is True
    trace.append(canon(final))
    trace.append(canon(await r.get_state(cfg, subgraphs=True)))
    trace.append(canon(await r.history(cfg)))
    return trace


# ---------------------------------------------------------------- time travel


class TravelState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


def _travel_graph(checkpointer: Any) -> Any:
    g = StateGraph(TravelState)
    for name in ("a", "b", "c"):
        g.add_node(name, lambda state, name=name: {"log": [name]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile(checkpointer=checkpointer)


async def scenario_time_travel(checkpointer: Any, is_async: bool) -> list[Any]:
    r = Runner(_travel_graph(checkpointer), is_async)
    cfg = _config(f"travel-{uuid.uuid4()}")
    canon = Canon()
    trace: list[Any] = []
    out = await r.invoke({"log": ["start"]}, cfg)
    assert out["log"] == ["start", "a", "b", "c"]
    history = await r.history(cfg)
    trace.append(canon(history))
    before_b = next(s for s in history if s.next == ("b",))
    assert before_b.values["log"] == ["start", "a"]
    # Replay from the old checkpoint, then fork it with update_state and run the fork.
    replay = await r.invoke(None, before_b.config)
    assert replay["log"] == ["start", "a", "b", "c"]
    trace.append(canon(replay))
    fork_cfg = await r.update_state(before_b.config, {"log": ["edited"]})
    forked = await r.get_state(fork_cfg)
    assert forked.values["log"] == ["start", "a", "edited"]
    assert forked.metadata["source"] == "update"
    assert forked.parent_config["configurable"]["checkpoint_id"] == before_b.config["configurable"]["checkpoint_id"]
    trace.append(canon(forked))
    out2 = await r.invoke(None, fork_cfg)
    assert out2["log"] == ["start", "a", "edited", "b", "c"], out2
    trace.append(canon(out2))
    trace.append(canon(await r.history(cfg)))
    return trace


# ---------------------------------------------------------------- durability modes


async def scenario_durability(checkpointer: Any, is_async: bool) -> list[Any]:
    trace: list[Any] = []
    for mode in ("sync", "async", "exit"):
        r = Runner(_hitl_graph(checkpointer), is_async)
        cfg = _config(f"dur-{mode}-{uuid.uuid4()}")
        canon = Canon()
        first = await r.invoke({"log": []}, cfg, durability=mode)
        assert "__interrupt__" in first
        paused = await r.get_state(cfg)
        assert paused.next == ("ask",), (mode, paused)
        final = await r.invoke(Command(resume=mode), cfg, durability=mode)
        assert final["log"] == ["step1", "ask", f"hello {mode}"], (mode, final)
        history = await r.history(cfg)
        trace.append({"mode": mode, "first": canon(first), "paused": canon(paused), "final": canon(final), "history": canon(history)})
    by_mode = {t["mode"]: len(t["history"]) for t in trace}
    # "exit" saves only when the run stops (at the interrupt and at the end).
    assert by_mode["exit"] < by_mode["sync"] == by_mode["async"], by_mode
    return trace


SCENARIOS = {
    "interrupt_resume": scenario_interrupt_resume,
    "send_fanout": scenario_send_fanout,
    "subgraph": scenario_subgraph,
    "time_travel": scenario_time_travel,
    "durability": scenario_durability,
}


# ---------------------------------------------------------------- maintenance on graph threads


async def _aprune(checkpointer: Any, is_async: bool, threads: list[str], strategy: str) -> None:
    if is_async:
        await checkpointer.aprune(threads, strategy=strategy)
    else:
        checkpointer.prune(threads, strategy=strategy)


async def scenario_prune(checkpointer: Any, is_async: bool) -> list[Any]:
    """keep_latest on paused and finished threads, then resume; delete removes everything."""
    hitl = Runner(_hitl_graph(checkpointer), is_async)
    sub = Runner(_subgraph_graph(checkpointer), is_async)
    travel = Runner(_travel_graph(checkpointer), is_async)
    cfg_h, cfg_s, cfg_t = (_config(f"prune-{k}-{uuid.uuid4()}") for k in "hst")
    ids = [c["configurable"]["thread_id"] for c in (cfg_h, cfg_s, cfg_t)]
    canon = Canon()
    await hitl.invoke({"log": []}, cfg_h)
    await sub.invoke({"log": []}, cfg_s)
    await travel.invoke({"log": ["start"]}, cfg_t)
    before = [await hitl.get_state(cfg_h), await sub.get_state(cfg_s, subgraphs=True), await travel.get_state(cfg_t)]
    await _aprune(checkpointer, is_async, ids, "keep_latest")
    after = [await hitl.get_state(cfg_h), await sub.get_state(cfg_s, subgraphs=True), await travel.get_state(cfg_t)]
    assert [s.values for s in after] == [s.values for s in before]
    assert [s.next for s in after] == [s.next for s in before]
    histories = [await r.history(c) for r, c in ((hitl, cfg_h), (sub, cfg_s), (travel, cfg_t))]
    assert [len(h) for h in histories] == [1, 1, 1], [len(h) for h in histories]
    trace: list[Any] = [canon(after), canon(histories)]
    out = await hitl.invoke(Command(resume="after-prune"), cfg_h)
    assert out["log"] == ["step1", "ask", "hello after-prune"], out
    out = await sub.invoke(Command(resume=True), cfg_s)
    assert out["log"][-2:] == ["child2:True", "parent2"], out
    trace.append(canon([await hitl.history(cfg_h), await sub.history(cfg_s)]))
    await _aprune(checkpointer, is_async, ids, "delete")
    assert [len(await r.history(c)) for r, c in ((hitl, cfg_h), (sub, cfg_s), (travel, cfg_t))] == [0, 0, 0]
    return trace


SCENARIOS["prune"] = scenario_prune
