"""``get_delta_channel_history`` over ``GetDeltaChannelHistory``: GrpcCheckpointSaver answers exactly
what LangGraph's ``PostgresSaver`` / ``AsyncPostgresSaver`` answer on the SAME database (checkpointd's
schema is LangGraph's), sync and async, with one call and no ``GetTuple`` walk; and a real graph with
a ``DeltaChannel`` runs the same on both savers.

The checkpoints are written by either saver (``writer``), so each scenario also checks that the rows
our saver writes are read back by the server's walk as LangGraph's own rows are.
"""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from _harness import PG_ADMIN_URL, Server, db_url, drop_database
from checkpointd_client import CheckpointdClient, GrpcCheckpointSaver

NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"
#: The client calls counted by ``_count_calls``.
COUNTED = ("get_tuple", "aget_tuple", "get_delta_channel_history", "aget_delta_channel_history")


# ---------------------------------------------------------------- helpers


def cid(n: int) -> str:
    """A checkpoint id; ids grow with ``n`` (uuid6 ids are time-ordered, LangGraph relies on it)."""
    return f"1ef00000-0000-6000-8000-{n:012d}"


def ver(n: int) -> str:
    """A channel version shaped as ``get_next_version`` makes them."""
    return f"{n:032}.{n / 7:016}"


def cfg(thread: str, ns: str | None = "", checkpoint_id: str | None = None) -> dict:
    conf: dict[str, Any] = {"thread_id": thread}
    if ns is not None:
        conf["checkpoint_ns"] = ns
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def cp(checkpoint_id: str, values: dict[str, Any], versions: dict[str, Any]) -> dict:
    return {
        "v": 4,
        "id": checkpoint_id,
        "ts": "2024-07-01T12:00:00+00:00",
        "channel_values": values,
        "channel_versions": versions,
        "versions_seen": {},
        "updated_channels": None,
    }


def exact(obj: Any) -> Any:
    """``obj`` with every value tagged by its type, so that ``True``/``1``/``1.0`` and a tuple and a
    ``_DeltaSnapshot`` (a NamedTuple) compare unequal."""
    if isinstance(obj, dict):
        return {k: exact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [exact(v) for v in obj])
    return (type(obj).__name__, obj)


def _count_calls(client: CheckpointdClient, counts: Counter[str]) -> None:
    """Count the client's GetTuple and GetDeltaChannelHistory calls (sync and async) in ``counts``.

    Clones made by ``with_allowlist`` (when a graph is compiled) share the client, so their calls
    are counted too.
    """
    for name in COUNTED:
        original = getattr(client, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _original(*args, **kwargs)

        setattr(client, name, counted)


@dataclass
class Savers:
    """LangGraph's savers and ours on one database; ``writer`` is the one that writes the rows."""

    pg: PostgresSaver
    apg: AsyncPostgresSaver
    grpc: GrpcCheckpointSaver
    writer: Any
    calls: Counter[str]
    database_url: str

    def thread(self) -> str:
        return f"delta-{uuid.uuid4().hex}"

    async def put(
        self,
        thread: str,
        checkpoint_id: str,
        parent: str | None,
        values: dict[str, Any],
        versions: dict[str, Any],
        ns: str = "",
    ) -> None:
        """Store a checkpoint; every channel in ``versions`` counts as new (blobs for non-primitives)."""
        await self.writer.aput(cfg(thread, ns, parent), cp(checkpoint_id, values, versions), {}, dict(versions))

    async def writes(
        self,
        thread: str,
        checkpoint_id: str,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
        ns: str = "",
    ) -> None:
        await self.writer.aput_writes(cfg(thread, ns, checkpoint_id), list(writes), task_id, task_path)

    async def history(
        self, config: dict, channels: list[str], *, reference_channels: list[str] | None = None
    ) -> dict[str, Any]:
        """Every saver's answer for ``channels`` at ``config`` (LangGraph's for ``reference_channels``
        when given), required to be equal: sync and async, ours and LangGraph's. Ours must make
        exactly one GetDeltaChannelHistory call per method and no GetTuple call."""
        ref = reference_channels if reference_channels is not None else channels
        want = dict(await self.apg.aget_delta_channel_history(config=config, channels=ref))
        want_sync = dict(
            await asyncio.to_thread(lambda: self.pg.get_delta_channel_history(config=config, channels=ref))
        )
        assert exact(want_sync) == exact(want), (want_sync, want)

        before = self.calls.copy()
        got = dict(await self.grpc.aget_delta_channel_history(config=config, channels=channels))
        got_sync = dict(
            await asyncio.to_thread(lambda: self.grpc.get_delta_channel_history(config=config, channels=channels))
        )
        made = {name: self.calls[name] - before[name] for name in COUNTED}
        for answer in (got, got_sync):
            assert exact(answer) == exact(want), f"{config} {channels}\n  langgraph:   {want!r}\n  checkpointd: {answer!r}"
        assert list(got) == list(want) == list(dict.fromkeys(channels))  # the order asked, once each
        assert made == {
            "get_tuple": 0,
            "aget_tuple": 0,
            "get_delta_channel_history": 1,
            "aget_delta_channel_history": 1,
        }, made
        return got


@pytest.fixture(params=["postgres", "checkpointd"])
async def savers(request: pytest.FixtureRequest, server: Server) -> AsyncIterator[Savers]:
    url = server.database_url
    calls: Counter[str] = Counter()
    async with AsyncPostgresSaver.from_conn_string(url) as apg:
        with PostgresSaver.from_conn_string(url) as pg:
            async with GrpcCheckpointSaver(server.target) as grpc_saver:
                _count_calls(grpc_saver.client, calls)
                writer = apg if request.param == "postgres" else grpc_saver
                yield Savers(pg, apg, grpc_saver, writer, calls, url)


# ---------------------------------------------------------------- scenarios


async def _linear_thread(s: Savers) -> str:
    """cp1 (root: a _DeltaSnapshot blob, a plain list blob, an inline int) -> cp2 -> cp3 -> cp4, with
    writes of several tasks at each checkpoint."""
    t = s.thread()
    root = {"msgs": _DeltaSnapshot(["a"]), "plain": ["p0"], "n": 1}
    await s.put(t, cid(1), None, root, {"msgs": ver(1), "plain": ver(1), "n": ver(1)})
    # One super-step's writes, stored out of order: input (no task path) first, then by task path.
    await s.writes(t, cid(1), [("msgs", "b1"), ("msgs", "b2"), ("n", 2)], "task-b", "~__pregel_pull, b")
    await s.writes(t, cid(1), [("msgs", "a1")], "task-a", "~__pregel_pull, a")
    await s.writes(t, cid(1), [("msgs", "in"), ("plain", "p1")], NULL_TASK_ID, "")
    await s.writes(t, cid(1), [("msgs", "a2")], "task-a2", "~__pregel_pull, a")  # same path, next task id
    await s.put(t, cid(2), cid(1), {"n": 2}, {"msgs": ver(2), "plain": ver(2), "n": ver(2)})
    await s.writes(t, cid(2), [("msgs", {"c": [1, 2]}), ("plain", "p2")], "task-c", "~__pregel_pull, c")
    await s.put(t, cid(3), cid(2), {"n": 3}, {"msgs": ver(3), "plain": ver(2), "n": ver(3)})
    await s.writes(t, cid(3), [("msgs", ["d", 4])], "task-d", "~__pregel_pull, d")
    await s.put(t, cid(4), cid(3), {"n": 4}, {"msgs": ver(4), "plain": ver(2), "n": ver(4)})
    await s.writes(t, cid(4), [("msgs", "pending")], "task-e", "~__pregel_pull, e")  # the target's own
    return t


async def test_linear_chain_with_writes_and_blob_seeds(savers: Savers) -> None:
    t = await _linear_thread(savers)
    channels = ["msgs", "plain", "n"]
    got = await savers.history(cfg(t, "", cid(4)), channels)
    assert got["msgs"] == {
        "writes": [
            (NULL_TASK_ID, "msgs", "in"),
            ("task-a", "msgs", "a1"),
            ("task-a2", "msgs", "a2"),
            ("task-b", "msgs", "b1"),
            ("task-b", "msgs", "b2"),
            ("task-c", "msgs", {"c": [1, 2]}),
            ("task-d", "msgs", ["d", 4]),
        ],
        "seed": _DeltaSnapshot(["a"]),
    }
    assert type(got["msgs"]["seed"]) is _DeltaSnapshot
    assert got["plain"] == {"writes": [(NULL_TASK_ID, "plain", "p1"), ("task-c", "plain", "p2")], "seed": ["p0"]}
    assert got["n"] == {"writes": [], "seed": 3}  # the parent's inline value
    for n in (3, 2):  # shorter walks: the target's own writes are never part of its history
        await savers.history(cfg(t, "", cid(n)), channels)
    assert await savers.history(cfg(t, "", cid(1)), channels) == {ch: {"writes": []} for ch in channels}  # a root


async def test_inline_primitive_seeds(savers: Savers) -> None:
    t = savers.thread()
    values = {"i": 5, "zero": 0, "s": "héllo ✓ \"q\"\n", "empty": "", "f": 1.5, "whole": 2.0, "yes": True, "no": False}
    await savers.put(t, cid(1), None, values, {ch: ver(1) for ch in values})
    await savers.writes(t, cid(1), [(ch, f"w-{ch}") for ch in values], "task", "~__pregel_pull, x")
    await savers.put(t, cid(2), cid(1), {}, {ch: ver(2) for ch in values})
    await savers.writes(t, cid(2), [("i", 6)], "task", "~__pregel_pull, x")
    await savers.put(t, cid(3), cid(2), {}, {ch: ver(3) for ch in values})
    got = await savers.history(cfg(t, "", cid(3)), list(values))
    for ch, value in values.items():
        assert exact(got[ch]["seed"]) == exact(value), ch
    assert got["i"]["writes"] == [("task", "i", "w-i"), ("task", "i", 6)]


async def test_inline_seed_numbers_round_trip_exactly(savers: Savers) -> None:
    """Inline values come back as JSON decodes them from PostgreSQL's jsonb: big ints stay ints,
    floats keep every digit, and a float jsonb prints without exponent (1.7976931348623157e308)
    comes back as the int it prints, from both savers."""
    t = savers.thread()
    values = {"big": 2**70, "neg": -(2**63) - 1, "tenth": 0.1 + 0.2, "tiny": 5e-324, "huge": 1.7976931348623157e308}
    await savers.put(t, cid(1), None, values, {ch: ver(1) for ch in values})
    await savers.put(t, cid(2), cid(1), {}, {ch: ver(2) for ch in values})
    got = await savers.history(cfg(t, "", cid(2)), list(values))
    for ch in ("big", "neg", "tenth", "tiny"):
        assert exact(got[ch]["seed"]) == exact(values[ch]), ch
    assert got["huge"]["seed"] == 17976931348623157 * 10**292


async def test_no_seed_walks_to_the_root(savers: Savers) -> None:
    t = savers.thread()
    await savers.put(t, cid(1), None, {}, {})
    await savers.writes(t, cid(1), [("msgs", "x1")], NULL_TASK_ID, "")
    await savers.put(t, cid(2), cid(1), {}, {"msgs": ver(1)})
    await savers.writes(t, cid(2), [("msgs", "x2"), ("msgs", "x3")], "task", "~__pregel_pull, n")
    await savers.put(t, cid(3), cid(2), {}, {"msgs": ver(2)})
    got = await savers.history(cfg(t, "", cid(3)), ["msgs", "never"])
    assert got == {
        "msgs": {"writes": [(NULL_TASK_ID, "msgs", "x1"), ("task", "msgs", "x2"), ("task", "msgs", "x3")]},
        "never": {"writes": []},
    }


async def test_forks_only_the_targets_ancestors_count(savers: Savers) -> None:
    t = savers.thread()
    await savers.put(t, cid(1), None, {"msgs": _DeltaSnapshot(["root"])}, {"msgs": ver(1)})
    await savers.writes(t, cid(1), [("msgs", "shared")], "task", "~__pregel_pull, a")
    await savers.put(t, cid(2), cid(1), {}, {"msgs": ver(2)})  # branch A
    await savers.writes(t, cid(2), [("msgs", "branch-a")], "task", "~__pregel_pull, a")
    await savers.put(t, cid(3), cid(1), {}, {"msgs": ver(2)})  # branch B: a second child of cp1
    await savers.writes(t, cid(3), [("msgs", "branch-b")], "task", "~__pregel_pull, a")
    await savers.put(t, cid(4), cid(3), {}, {"msgs": ver(3)})
    await savers.put(t, cid(5), cid(2), {}, {"msgs": ver(3)})  # newest, on branch A
    got_b = await savers.history(cfg(t, "", cid(4)), ["msgs"])
    assert [w[2] for w in got_b["msgs"]["writes"]] == ["shared", "branch-b"]
    got_a = await savers.history(cfg(t, "", cid(5)), ["msgs"])
    assert [w[2] for w in got_a["msgs"]["writes"]] == ["shared", "branch-a"]
    assert await savers.history(cfg(t), ["msgs"]) == got_a  # the latest is on branch A


async def test_subgraph_namespace(savers: Savers) -> None:
    """A subgraph's namespace has its own chain, even with the same checkpoint ids as the root's."""
    t = savers.thread()
    await savers.put(t, cid(1), None, {"msgs": _DeltaSnapshot(["root"])}, {"msgs": ver(1)})
    await savers.writes(t, cid(1), [("msgs", "root-w")], "task", "~__pregel_pull, a")
    await savers.put(t, cid(2), cid(1), {}, {"msgs": ver(2)})
    ns = "child:1"
    await savers.put(t, cid(1), None, {"msgs": ["child-seed"]}, {"msgs": ver(1)}, ns=ns)
    await savers.writes(t, cid(1), [("msgs", "child-w1")], "task", "~__pregel_pull, c", ns=ns)
    await savers.put(t, cid(2), cid(1), {}, {"msgs": ver(2)}, ns=ns)
    await savers.writes(t, cid(2), [("msgs", "child-w2")], "task", "~__pregel_pull, c", ns=ns)
    await savers.put(t, cid(3), cid(2), {}, {"msgs": ver(3)}, ns=ns)
    child = await savers.history(cfg(t, ns, cid(3)), ["msgs"])
    child_writes = [("task", "msgs", "child-w1"), ("task", "msgs", "child-w2")]
    assert child == {"msgs": {"writes": child_writes, "seed": ["child-seed"]}}
    assert await savers.history(cfg(t, ns), ["msgs"]) == child  # the namespace's latest
    root = await savers.history(cfg(t, "", cid(2)), ["msgs"])
    assert root == {"msgs": {"writes": [("task", "msgs", "root-w")], "seed": _DeltaSnapshot(["root"])}}
    assert await savers.history(cfg(t, "", cid(3)), ["msgs"]) == {"msgs": {"writes": []}}  # only in child:1


async def test_latest_checkpoint_without_checkpoint_id(savers: Savers) -> None:
    t = await _linear_thread(savers)
    at_latest = await savers.history(cfg(t, "", cid(4)), ["msgs", "n"])
    assert await savers.history(cfg(t), ["msgs", "n"]) == at_latest
    assert await savers.history(cfg(t, None), ["msgs", "n"]) == at_latest  # checkpoint_ns defaults to ""
    assert await savers.history(cfg(t, "", ""), ["msgs", "n"]) == at_latest  # an empty id: the latest too


async def test_missing_thread_checkpoint_or_namespace(savers: Savers) -> None:
    t = await _linear_thread(savers)
    nothing = {"msgs": {"writes": []}, "n": {"writes": []}}
    assert await savers.history(cfg(savers.thread()), ["msgs", "n"]) == nothing
    assert await savers.history(cfg(savers.thread(), "", cid(4)), ["msgs", "n"]) == nothing
    assert await savers.history(cfg(t, "", cid(99)), ["msgs", "n"]) == nothing
    assert await savers.history(cfg(t, "child:1"), ["msgs", "n"]) == nothing


async def test_several_channels_at_different_depths(savers: Savers) -> None:
    t = savers.thread()
    depth = {"deep": 1, "mid": 3, "shallow": 5}  # the checkpoint that stores each channel's value
    for n in range(1, 7):
        values: dict[str, Any] = {ch: _DeltaSnapshot([f"{ch}@{n}"]) for ch, d in depth.items() if d == n}
        if n == 2:
            values["inline"] = "at-2"
        parent = cid(n - 1) if n > 1 else None
        await savers.put(t, cid(n), parent, values, {ch: ver(n) for ch in [*depth, "inline", "none"]})
        await savers.writes(
            t, cid(n), [(ch, f"{ch}-w{n}") for ch in [*depth, "inline", "none"]], f"task-{n}", "~__pregel_pull, x"
        )
    channels = ["shallow", "none", "deep", "inline", "mid"]
    got = await savers.history(cfg(t, "", cid(6)), channels)
    depths = {ch: len(got[ch]["writes"]) for ch in channels}
    assert depths == {"shallow": 1, "none": 5, "deep": 5, "inline": 4, "mid": 3}
    assert got["mid"]["seed"] == _DeltaSnapshot(["mid@3"]) and got["inline"]["seed"] == "at-2"
    assert "seed" not in got["none"]


async def test_duplicate_channel_names_are_answered_once(savers: Savers) -> None:
    """Each channel once, as the base class does. (LangGraph's Postgres saver, given a channel
    twice, repeats each of its writes once per mention: compared with its answer without the
    repetitions.)"""
    t = await _linear_thread(savers)
    got = await savers.history(
        cfg(t, "", cid(4)), ["msgs", "n", "msgs", "plain", "n"], reference_channels=["msgs", "n", "plain"]
    )
    assert len(got["msgs"]["writes"]) == 7


async def test_no_channels_no_call(savers: Savers) -> None:
    t = await _linear_thread(savers)
    savers.calls.clear()
    assert await savers.grpc.aget_delta_channel_history(config=cfg(t), channels=[]) == {}
    assert await asyncio.to_thread(lambda: savers.grpc.get_delta_channel_history(config=cfg(t), channels=())) == {}
    assert not savers.calls, savers.calls
    assert await savers.apg.aget_delta_channel_history(config=cfg(t), channels=[]) == {}


# ---------------------------------------------------------------- LangGraph's walk rules at the edges


async def test_inline_null_does_not_stop_the_walk(savers: Savers) -> None:
    t = savers.thread()
    await savers.put(t, cid(1), None, {"x": 7}, {"x": ver(1)})
    await savers.writes(t, cid(1), [("x", 8)], "task", "~__pregel_pull, a")
    await savers.put(t, cid(2), cid(1), {"x": None}, {"x": ver(2)})
    await savers.writes(t, cid(2), [("x", 9)], "task", "~__pregel_pull, a")
    await savers.put(t, cid(3), cid(2), {}, {"x": ver(3)})
    got = await savers.history(cfg(t, "", cid(3)), ["x"])
    assert got == {"x": {"writes": [("task", "x", 8), ("task", "x", 9)], "seed": 7}}


async def test_inline_true_seed_and_snapshot_marker(savers: Savers) -> None:
    """A _DeltaSnapshot is stored as a blob with the inline marker ``true``: the blob wins; a
    genuine inline ``True`` is the seed itself."""
    t = savers.thread()
    await savers.put(t, cid(1), None, {"snap": _DeltaSnapshot([True]), "flag": True}, {"snap": ver(1), "flag": ver(1)})
    await savers.put(t, cid(2), cid(1), {}, {"snap": ver(2), "flag": ver(2)})
    got = await savers.history(cfg(t, "", cid(2)), ["snap", "flag"])
    want = {"snap": {"writes": [], "seed": _DeltaSnapshot([True])}, "flag": {"writes": [], "seed": True}}
    assert exact(got) == exact(want)


async def test_empty_blob_does_not_stop_the_walk(savers: Savers) -> None:
    """An ``"empty"`` blob at the channel's version (no value) is walked past."""
    t = savers.thread()
    await savers.put(t, cid(1), None, {"x": ["old"]}, {"x": ver(1)})
    await savers.writes(t, cid(1), [("x", "w1")], "task", "~__pregel_pull, a")
    await savers.put(t, cid(2), cid(1), {}, {"x": ver(2)})
    await savers.writes(t, cid(2), [("x", "w2")], "task", "~__pregel_pull, a")
    await savers.put(t, cid(3), cid(2), {}, {"x": ver(3)})
    with psycopg.connect(savers.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
            "VALUES (%s, '', 'x', %s, 'empty', NULL)",
            (t, ver(2)),
        )
    got = await savers.history(cfg(t, "", cid(3)), ["x"])
    assert got == {"x": {"writes": [("task", "x", "w1"), ("task", "x", "w2")], "seed": ["old"]}}


async def test_parent_newer_than_the_target_ends_the_walk(savers: Savers) -> None:
    """LangGraph reads only checkpoints up to the target's id (ancestors are older with uuid6 ids):
    a parent with a greater id is not part of the chain."""
    t = savers.thread()
    await savers.put(t, cid(9), None, {"x": 5}, {"x": ver(1)})
    await savers.writes(t, cid(9), [("x", 6)], "task", "")
    await savers.put(t, cid(4), cid(9), {}, {"x": ver(1)})
    await savers.history(cfg(t, "", cid(4)), ["x"])


async def test_inline_value_without_a_version(savers: Savers) -> None:
    """A value in ``channel_values`` whose channel has no entry in ``channel_versions`` ends the walk
    in LangGraph's saver without becoming the seed (its seed is looked up by version)."""
    t = savers.thread()
    await savers.put(t, cid(1), None, {"x": "hello"}, {})
    await savers.writes(t, cid(1), [("x", "w")], "task", "")
    await savers.put(t, cid(2), cid(1), {}, {})
    await savers.history(cfg(t, "", cid(2)), ["x"])


# ---------------------------------------------------------------- write order under another collation


@pytest.fixture(scope="module")
def icu_server() -> Iterator[Server]:
    """A checkpointd on a database whose collation is ICU ``en-US`` (not ``C``): upper and lower case,
    and punctuation, sort differently there than by code point."""
    name = f"lgtest_{uuid.uuid4().hex}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' '
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    srv = Server(db_url(name))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        drop_database(name)


async def test_writes_in_code_point_order_whatever_the_collation(icu_server: Server) -> None:
    """Writes of one checkpoint come back in ``writes_sort_key`` order, Python's string order, as
    LangGraph sorts them in Python; not in the database's collation order."""
    url = icu_server.database_url
    calls: Counter[str] = Counter()
    async with AsyncPostgresSaver.from_conn_string(url) as apg:
        with PostgresSaver.from_conn_string(url) as pg:
            async with GrpcCheckpointSaver(icu_server.target) as grpc_saver:
                _count_calls(grpc_saver.client, calls)
                s = Savers(pg, apg, grpc_saver, apg, calls, url)
                t = s.thread()
                await s.put(t, cid(1), None, {}, {})
                # (task path, task id, value): case, punctuation and "" order differently in en-US.
                stored = [
                    ("~__pregel_pull, beta", "task-1", "v1"),
                    ("~__pregel_pull, Alpha", "task-2", "v2"),
                    ("~__pregel_pull, alpha", "task-3", "v3"),
                    ("~__pregel_pull, a-b", "task-4", "v4"),
                    ("~__pregel_pull, ab", "task-5", "v5"),
                    ("~__pregel_push, 0", "task-6", "v6"),
                    ("~B", "task", "v7"),
                    ("~B", "Task", "v8"),
                    ("~a", "task-9", "v9"),
                    ("_z", "task-10", "v10"),
                    ("", NULL_TASK_ID, "v11"),
                ]
                for path, task_id, value in stored:
                    await s.writes(t, cid(1), [("x", value)], task_id, path)
                await s.put(t, cid(2), cid(1), {}, {})
                got = await s.history(cfg(t, "", cid(2)), ["x"])
                assert [w[2] for w in got["x"]["writes"]] == [value for _, _, value in sorted(stored)]


# ---------------------------------------------------------------- a real graph with a DeltaChannel


class DeltaState(TypedDict):
    items: Annotated[list, DeltaChannel(operator.add, snapshot_frequency=6)]
    turn: int


def _delta_graph(checkpointer: Any) -> Any:
    """Each turn: the input, then two parallel nodes and a join, all appending to ``items`` (a
    DeltaChannel); every appended value depends on the state the node saw."""

    def left(state: DeltaState) -> dict:
        return {"items": f"left{state['turn']}:{len(state['items'])}"}

    def right(state: DeltaState) -> dict:
        return {"items": f"right{state['turn']}:{state['items'][-1] if state['items'] else '-'}"}

    def join(state: DeltaState) -> dict:
        return {"items": f"join{state['turn']}:{len(state['items'])}", "turn": state["turn"] + 1}

    builder = StateGraph(DeltaState)
    builder.add_node("left", left)
    builder.add_node("right", right)
    builder.add_node("join", join)
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge(["left", "right"], "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


TURNS = 20


async def _run_turns(graph: Any, config: dict) -> list[Any]:
    outputs = []
    for turn in range(TURNS):
        outputs.append(await graph.ainvoke({"items": f"user{turn}", "turn": turn}, config))
    return outputs


async def test_graph_with_delta_channel_matches_async_postgres_saver(server: Server) -> None:
    calls: Counter[str] = Counter()
    async with AsyncPostgresSaver.from_conn_string(server.database_url) as apg:
        async with GrpcCheckpointSaver(server.target) as grpc_saver:
            _count_calls(grpc_saver.client, calls)
            pg_graph, grpc_graph = _delta_graph(apg), _delta_graph(grpc_saver)
            pg_cfg = {"configurable": {"thread_id": f"delta-graph-pg-{uuid.uuid4().hex}"}}
            grpc_cfg = {"configurable": {"thread_id": f"delta-graph-grpc-{uuid.uuid4().hex}"}}

            want_outputs = await _run_turns(pg_graph, pg_cfg)
            got_outputs = await _run_turns(grpc_graph, grpc_cfg)
            assert got_outputs == want_outputs
            assert len(got_outputs[-1]["items"]) == 4 * TURNS
            assert calls["aget_delta_channel_history"] > 0  # the runs rebuilt `items` through the RPC

            want_state = await pg_graph.aget_state(pg_cfg)
            calls.clear()
            got_state = await grpc_graph.aget_state(grpc_cfg)
            assert got_state.values == want_state.values
            # One GetTuple for the checkpoint, one GetDeltaChannelHistory for its ancestors: no walk.
            assert calls["aget_tuple"] == 1 and calls["aget_delta_channel_history"] <= 1, calls

            # Every checkpoint of the thread, rebuilt from its own history, as LangGraph's saver does.
            want_history = [snap.values async for snap in pg_graph.aget_state_history(pg_cfg)]
            got_configs = [snap.config async for snap in grpc_graph.aget_state_history(grpc_cfg)]
            assert len(got_configs) == len(want_history) >= 3 * TURNS
            calls.clear()
            got_history = [(await grpc_graph.aget_state(c)).values for c in got_configs]
            assert got_history == want_history
            assert calls["aget_tuple"] == len(got_configs), calls
            assert 0 < calls["aget_delta_channel_history"] <= len(got_configs), calls
            assert calls["get_tuple"] == calls["get_delta_channel_history"] == 0, calls

            # The same thread read through LangGraph's saver (one database): the same state.
            assert (await pg_graph.aget_state(grpc_cfg)).values == got_state.values


def test_sync_graph_with_delta_channel_matches_postgres_saver(server: Server) -> None:
    calls: Counter[str] = Counter()
    with PostgresSaver.from_conn_string(server.database_url) as pg:
        with GrpcCheckpointSaver(server.target) as grpc_saver:
            _count_calls(grpc_saver.client, calls)
            pg_graph, grpc_graph = _delta_graph(pg), _delta_graph(grpc_saver)
            pg_cfg = {"configurable": {"thread_id": f"delta-sync-pg-{uuid.uuid4().hex}"}}
            grpc_cfg = {"configurable": {"thread_id": f"delta-sync-grpc-{uuid.uuid4().hex}"}}
            for turn in range(TURNS // 2):
                want = pg_graph.invoke({"items": f"user{turn}", "turn": turn}, pg_cfg)
                got = grpc_graph.invoke({"items": f"user{turn}", "turn": turn}, grpc_cfg)
                assert got == want
            assert calls["get_delta_channel_history"] > 0 and calls["aget_delta_channel_history"] == 0
            want_history = [snap.values for snap in pg_graph.get_state_history(pg_cfg)]
            assert [snap.values for snap in grpc_graph.get_state_history(grpc_cfg)] == want_history
