"""Differential tests for what the conformance suite does not cover (semantics notes, section 10):
each operation runs against LangGraph's AsyncPostgresSaver and GrpcCheckpointSaver, on two
databases, and must return (or raise) the same thing and leave the same rows."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot

from _harness import Server, create_database, drop_database, dump_tables, truncate_tables
from checkpointd_client import GrpcCheckpointSaver
from differential import ERROR, INTERRUPT, NULL_TASK_ID, RESUME, SCHEDULED, Diff, RandomOps

SEEDS = range(int(os.environ.get("DIFF_SEEDS", "8")))
STEPS = int(os.environ.get("DIFF_STEPS", "60"))


@pytest.fixture(scope="module")
def diff_env() -> Iterator[tuple[Server, str]]:
    grpc_db, grpc_url = create_database()
    pg_db, pg_url = create_database()
    server = Server(grpc_url)
    try:
        server.start()
        import asyncio

        async def setup() -> None:
            async with AsyncPostgresSaver.from_conn_string(pg_url) as saver:
                await saver.setup()

        asyncio.run(setup())
        yield server, pg_url
    finally:
        server.stop()
        drop_database(grpc_db)
        drop_database(pg_db)


@pytest.fixture
async def diff(diff_env) -> AsyncIterator[Diff]:
    server, pg_url = diff_env
    truncate_tables(pg_url)
    truncate_tables(server.database_url)
    async with AsyncPostgresSaver.from_conn_string(pg_url) as pg:
        # Some steps use the sync API on the loop's thread (see differential.py): opted in.
        async with GrpcCheckpointSaver(server.target, allow_sync_on_event_loop=True) as grpc_saver:
            diff = Diff(pg, grpc_saver, pg_url, server.database_url)
            try:
                yield diff
            finally:
                diff.close()


def cfg(thread: str = "t", ns: str = "", checkpoint_id: str | None = None) -> dict:
    conf = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def cp(cid: str, values: dict | None = None, versions: dict | None = None, v: int = 4) -> dict:
    values = values or {}
    return {
        "v": v,
        "id": cid,
        "ts": "2024-07-01T12:00:00+00:00",
        "channel_values": values,
        "channel_versions": versions if versions is not None else {k: 1 for k in values},
        "versions_seen": {},
        "updated_channels": None,
    }


def cid(n: int) -> str:
    return f"1ef00000-0000-6000-8000-{n:012d}"


# ---------------------------------------------------------------- random sequences


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_operation_sequence(diff: Diff, seed: int) -> None:
    ops = RandomOps(seed)
    diff.rng.seed(seed)
    outcomes = {"ok": 0, "error": 0}
    by_kind: dict[str, int] = {}
    for _step in range(STEPS):
        method, args, kwargs = ops.op()
        result = await diff.call(method, *args, **kwargs)
        outcomes[result[0]] += 1
        kind = f"{method}:{result[0] if result[0] == 'ok' else result[1]}"
        by_kind[kind] = by_kind.get(kind, 0) + 1
        await diff.check_state(ops.THREADS, ops.NAMESPACES)
    print(f"seed {seed}: {sorted(by_kind.items())}")
    for thread, ns, checkpoint_id in ops.ids[-5:]:
        await diff.call_delta_history(cfg(thread, ns, checkpoint_id), ["messages", "snap", "count", TASKS])
    # The sequence exercised both successes and rejections.
    assert outcomes["ok"] > STEPS // 2, outcomes


# ---------------------------------------------------------------- list: filters and scopes


async def test_filter_containment_on_nested_and_array_values(diff: Diff) -> None:
    metas = [
        {"source": "loop", "step": 1, "nested": {"a": 1, "b": 2}, "tags": ["x", "y"]},
        {"source": "loop", "step": 2, "nested": {"a": 1, "b": {"c": 3}}, "tags": ["y"], "k": None},
        {"source": "input", "step": -1, "nested": {"a": 2}, "tags": [], "k": 0},
    ]
    for i, md in enumerate(metas):
        await diff.call("put", cfg(), cp(cid(i)), md, {})
    filters = [
        {"nested": {"a": 1}},
        {"nested": {"b": {"c": 3}}},
        {"nested": {}},
        {"tags": ["x"]},
        {"tags": ["y"]},
        {"tags": ["x", "y"]},
        {"tags": []},
        {"tags": "x"},
        {"k": None},
        {"missing": None},
        {"k": 0},
        {"step": 1.0},
        {"source": "loop", "nested": {"a": 1}},
        {},
    ]
    for f in filters:
        result = await diff.call("list", cfg(), filter=f)
        assert result[0] == "ok"
    # The containment semantics really are in force (not just equal on both sides).
    nested = await diff.call("list", cfg(), filter={"nested": {"a": 1}})
    assert len(nested[1]) == 2
    only_null = await diff.call("list", cfg(), filter={"k": None})
    assert [t.metadata["step"] for t in only_null[1]] == [2]


async def test_list_scopes_config_none_and_namespaces(diff: Diff) -> None:
    for thread in ("t1", "t2"):
        for j, ns in enumerate(["", "child:1", "child:2"]):
            await diff.call("put", cfg(thread, ns), cp(cid(10 * j + int(thread[1]))), {"step": j}, {})
    everything = await diff.call("list", None)
    assert len(everything[1]) == 6
    assert len((await diff.call("list", {"configurable": {"thread_id": "t1"}}))[1]) == 3
    assert len((await diff.call("list", cfg("t1", "")))[1]) == 1
    await diff.call("list", {"configurable": {"thread_id": "t1", "checkpoint_ns": None}})
    await diff.call("list", {"configurable": {"thread_id": "t1", "checkpoint_id": cid(11)}})
    await diff.call("list", {})  # an empty config is falsy: every thread
    await diff.call("list", None, filter={"step": 1}, limit=1)
    await diff.call("list", None, limit=0)
    await diff.check_rows()


async def test_before_with_and_without_checkpoint_id(diff: Diff) -> None:
    for i in range(4):
        await diff.call("put", cfg("t", "", cid(i - 1) if i else None), cp(cid(i)), {"step": i}, {})
    older = await diff.call("list", cfg("t"), before=cfg("t", "", cid(2)))
    assert [t.metadata["step"] for t in older[1]] == [1, 0]
    none = await diff.call("list", cfg("t"), before={"configurable": {"thread_id": "t"}})
    assert none == ("ok", [])
    await diff.call("list", cfg("t"), before={"configurable": {"checkpoint_id": ""}})
    await diff.call("list", cfg("t"), before=cfg("t", "", cid(3)), limit=2)
    await diff.call("list", None, before=cfg("x", "", cid(2)))


# ---------------------------------------------------------------- put_writes


async def test_mixed_and_special_write_batches(diff: Diff) -> None:
    await diff.call("put", cfg(), cp(cid(1)), {}, {})
    c = cfg("t", "", cid(1))
    await diff.call("put_writes", c, [(ERROR, "e1")], "task")
    await diff.call("put_writes", c, [(ERROR, "e2")], "task")  # all special: last wins
    await diff.call("put_writes", c, [(INTERRUPT, "i1"), ("ch2", "m1")], "task2")
    await diff.call("put_writes", c, [(INTERRUPT, "i2"), ("ch2", "m2")], "task2")  # mixed: first wins
    await diff.call("put_writes", c, [("ch", "first")], "task3")
    await diff.call("put_writes", c, [("ch", "second")], "task3")
    await diff.call("put_writes", c, [(RESUME, 1), (SCHEDULED, 2), (RESUME, 3)], "task4")  # last write for an idx wins
    await diff.call("put_writes", c, [], "task5")
    # The null task re-sends a growing list; insert-if-absent by position keeps it duplicate-free.
    await diff.call("put_writes", c, [("a", 1)], NULL_TASK_ID)
    await diff.call("put_writes", c, [("a", 1), ("b", 2)], NULL_TASK_ID)
    got = await diff.call("get_tuple", c)
    writes = got[1].pending_writes
    assert ("task", ERROR, "e2") in writes and ("task2", INTERRUPT, "i1") in writes
    assert ("task3", "ch", "first") in writes and ("task4", RESUME, 3) in writes
    assert [w for w in writes if w[0] == NULL_TASK_ID] == [(NULL_TASK_ID, "a", 1), (NULL_TASK_ID, "b", 2)]
    await diff.check_rows()


async def test_pending_writes_ordering(diff: Diff) -> None:
    await diff.call("put", cfg(), cp(cid(1)), {}, {})
    c = cfg("t", "", cid(1))
    batches = [
        ("task-z", "~__pregel_pull, a", [("x", 1), ("y", 2)]),
        ("task-a", "~__pregel_push, 0000000001, 0000000000", [("x", 3)]),
        ("task-b", "~__pregel_push, 0000000000, 0000000000", [("x", 4), (ERROR, "boom")]),
        ("task-c", "", [("x", 5)]),
        ("task-0", "~__pregel_pull, a", [("x", 6)]),
        (NULL_TASK_ID, "", [(RESUME, "r")]),
    ]
    for task_id, path, writes in batches:
        await diff.call("put_writes", c, writes, task_id, task_path=path)
    got = await diff.call("get_tuple", c)
    assert [w[2] for w in got[1].pending_writes] == ["r", 5, 6, 1, 2, "boom", 4, 3]
    await diff.call("list", cfg())


async def test_writes_before_their_checkpoint(diff: Diff) -> None:
    await diff.call("put_writes", cfg("t", "", cid(5)), [("early", {"v": 1})], "task", task_path="p")
    assert (await diff.call("get_tuple", cfg("t", "", cid(5)))) == ("ok", None)
    await diff.call("put", cfg(), cp(cid(5)), {}, {})
    got = await diff.call("get_tuple", cfg("t", "", cid(5)))
    assert got[1].pending_writes == [("task", "early", {"v": 1})]


# ---------------------------------------------------------------- put: blobs, parents, inline values


async def test_first_blob_wins_and_parent_kept_on_reput(diff: Diff) -> None:
    await diff.call("put", cfg(), cp(cid(1), {"items": [1]}, {"items": "1"}), {"step": 0}, {"items": "1"})
    await diff.call("put", cfg("t", "", cid(1)), cp(cid(2), {"items": [1, 2]}, {"items": "2"}), {"step": 1}, {"items": "2"})
    # Re-put checkpoint 2: new parent (none), same version with another value, new metadata.
    await diff.call("put", cfg(), cp(cid(2), {"items": ["changed"]}, {"items": "2"}), {"step": 9}, {"items": "2"})
    got = await diff.call("get_tuple", cfg("t", "", cid(2)))
    assert got[1].checkpoint["channel_values"]["items"] == [1, 2]  # first value for the version
    assert got[1].metadata["step"] == 9  # metadata replaced
    assert got[1].parent_config["configurable"]["checkpoint_id"] == cid(1)  # parent kept
    await diff.call("put", cfg("t", "", cid(7)), cp(cid(1), {"items": [0]}, {"items": "1"}), {}, {"items": "1"})
    got = await diff.call("get_tuple", cfg("t", "", cid(1)))
    assert got[1].parent_config is None
    await diff.check_rows()


async def test_inline_primitives_blobs_and_delta_snapshot_marker(diff: Diff) -> None:
    values = {
        "n": 3,
        "s": "text",
        "f": 1.5,
        "b": False,
        "none": None,
        "big": 2**70,
        "lst": [1, "a"],
        "dct": {"k": "v"},
        "raw": b"\x00\x01",
        "tup": (1, 2),
        "snap": _DeltaSnapshot(["a", "b"]),
        "unversioned": [9],  # in channel_values but not in new_versions: no blob
    }
    versions = {k: 1 for k in values}
    new_versions = {k: 1 for k in values if k != "unversioned"}
    await diff.call("put", cfg(), cp(cid(1), values, versions), {}, new_versions)
    got = await diff.call("get_tuple", cfg())
    channel_values = got[1].checkpoint["channel_values"]
    assert "unversioned" not in channel_values
    assert channel_values["snap"] == _DeltaSnapshot(["a", "b"])
    rows = dump_tables(diff.grpc_url)
    assert sorted(r[2] for r in rows["checkpoint_blobs"]) == ["dct", "lst", "raw", "snap", "tup"]
    assert '"snap": true' in rows["checkpoints"][0][5]
    await diff.check_rows()
    # A channel dropped from channel_versions is not read back from its old blob.
    await diff.call("put", cfg("t", "", cid(1)), cp(cid(2), {"lst": [1, "a"]}, {"lst": 1}), {}, {})
    got = await diff.call("get_tuple", cfg())
    assert got[1].checkpoint["channel_values"] == {"lst": [1, "a"]}
    # keep_latest refuses threads that use a DeltaChannel (both raise NotImplementedError).
    assert (await diff.call("prune", ["t"])) == ("error", "NotImplementedError")
    await diff.call("prune", ["t"], strategy="delete")
    await diff.check_rows()


async def test_int_float_and_string_versions(diff: Diff) -> None:
    versions = {"a": 1, "b": 2.0, "c": 2.5, "d": "00000000000000000000000000000003.0.5", "e": 1e15, "f": 10**20}
    values = {k: [k] for k in versions}
    await diff.call("put", cfg(), cp(cid(1), values, versions), {}, versions)
    await diff.call("get_tuple", cfg())
    await diff.check_rows()


async def test_metadata_merging_and_cleaning(diff: Diff) -> None:
    config = {
        "configurable": {
            "thread_id": "t",
            "checkpoint_ns": "",
            "user_conf": "c\x00c",
            "langgraph_step": 3,
            "__secret": "s",
            "num": 7,
            "obj": {"no": 1},
            "source": "shadowed",
        },
        "metadata": {"user_meta": "m", "__hidden": 1, "checkpoint_map": {}, "ratio": 0.25, "flag": True},
    }
    md = {"source": "loop", "step": 1, "writes": {"n": 1}, "note": "a\x00b", "parents": {}}
    await diff.call("put", config, cp(cid(1)), md, {})
    got = await diff.call("get_tuple", cfg())
    assert got[1].metadata == {
        "source": "loop",
        "step": 1,
        "note": "ab",
        "parents": {},
        "user_meta": "m",
        "ratio": 0.25,
        "flag": True,
        "user_conf": "cc",
        "num": 7,
    }


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "poison",
    ["nul_in_value", "nan_in_value", "inf_in_value", "nan_in_metadata", "nul_nested_metadata", "nul_in_key", "ns_none"],
)
async def test_values_postgres_rejects_fail_on_both(diff: Diff, poison: str) -> None:
    values = {"ok": [1], "s": "fine"}
    md = {"step": 1}
    config = cfg()
    if poison == "nul_in_value":
        values["s"] = "a\x00b"
    elif poison == "nan_in_value":
        values["s"] = float("nan")
    elif poison == "inf_in_value":
        values["s"] = float("inf")
    elif poison == "nan_in_metadata":
        md["score"] = float("nan")
    elif poison == "nul_nested_metadata":
        md["nested"] = {"x": "a\x00b"}
    elif poison == "nul_in_key":
        values["bad\x00key"] = 1
    elif poison == "ns_none":
        config["configurable"]["checkpoint_ns"] = None
    result = await diff.call("put", config, cp(cid(1), values), md, {"ok": 1, "s": 1})
    assert result == ("error", "rejected by the database/server")
    await diff.check_rows()
    assert dump_tables(diff.grpc_url)["checkpoint_blobs"] == []  # atomic: no orphan blob


async def test_missing_config_keys_raise_key_error_on_both(diff: Diff) -> None:
    assert (await diff.call("put", {"configurable": {"thread_id": "t"}}, cp(cid(1)), {}, {}))[1] == "KeyError"
    assert (await diff.call("put_writes", cfg(), [("a", 1)], "task"))[1] == "KeyError"
    assert (await diff.call("get_tuple", {"configurable": {}}))[1] == "KeyError"
    assert (await diff.call("list", {"configurable": {"checkpoint_ns": ""}}))[1] == "KeyError"
    assert (await diff.call("prune", "t"))[1] == "TypeError"
    assert (await diff.call("prune", ["t"], strategy="bogus"))[1] == "ValueError"
    await diff.call("get_tuple", {"configurable": {"thread_id": "t", "checkpoint_ns": None}})


# ---------------------------------------------------------------- legacy pending sends


async def test_legacy_pending_sends_folded_for_v_below_4(diff: Diff) -> None:
    for v in (1, 4):
        thread = f"legacy-v{v}"
        first, second = cid(10 * v + 1), cid(10 * v + 2)
        parent = cp(first, {"x": [1]}, {"x": "00000000000000000000000000000001.0.1"}, v=v)
        await diff.call("put", cfg(thread), parent, {"step": 0}, parent["channel_versions"])
        pc = cfg(thread, "", first)
        await diff.call("put_writes", pc, [(TASKS, {"send": "b"}), (TASKS, {"send": "c"})], "task-2", task_path="~b")
        await diff.call("put_writes", pc, [(TASKS, {"send": "a"})], "task-1", task_path="~a")
        await diff.call("put_writes", pc, [("other", 1)], "task-1", task_path="~a")
        child = cp(second, {"x": [1]}, {"x": "00000000000000000000000000000002.0.2"}, v=v)
        await diff.call("put", pc, child, {"step": 1}, {})
        got = await diff.call("get_tuple", cfg(thread))
        values = got[1].checkpoint["channel_values"]
        if v < 4:
            assert values[TASKS] == [{"send": "a"}, {"send": "b"}, {"send": "c"}]
            assert got[1].checkpoint["channel_versions"][TASKS] == "00000000000000000000000000000002.0.2"
        else:
            assert TASKS not in values
        await diff.call("list", cfg(thread))
        await diff.call("list", None)
    await diff.check_rows()


# ---------------------------------------------------------------- delta channel history


async def test_get_delta_channel_history(diff: Diff) -> None:
    versions = {"msgs": 1, "n": 1}
    await diff.call("put", cfg(), cp(cid(1), {"msgs": _DeltaSnapshot(["a"]), "n": 1}, versions), {}, versions)
    await diff.call("put_writes", cfg("t", "", cid(1)), [("msgs", "b"), ("n", 2)], "task", task_path="~a")
    await diff.call("put", cfg("t", "", cid(1)), cp(cid(2), {"n": 2}, {"msgs": 2, "n": 2}), {}, {"n": 2})
    await diff.call("put_writes", cfg("t", "", cid(2)), [("msgs", "c")], "task", task_path="~a")
    await diff.call("put", cfg("t", "", cid(2)), cp(cid(3), {"n": 3}, {"msgs": 3, "n": 3}), {}, {"n": 3})
    result = await diff.call_delta_history(cfg("t", "", cid(3)), ["msgs", "n", "absent"])
    assert result[1]["msgs"]["writes"] == [("task", "msgs", "b"), ("task", "msgs", "c")]
    await diff.call_delta_history(cfg("t", ""), ["msgs"])
    await diff.call_delta_history(cfg("nope", ""), ["msgs"])


async def test_legacy_pending_sends_across_namespaces_and_threads(diff: Diff) -> None:
    """The Postgres saver reads a parent's sends by (thread, checkpoint_id) in every namespace,
    and in a listing over several threads only for the first row's thread.

    (Not reproduced, deliberately: when a listing spans threads and another thread's v<4 row has a
    parent id that also exists in the first row's thread, the Postgres saver folds the *first*
    thread's sends into it. Distinct ids per thread here, as uuid6 ids are in practice.)"""
    for thread, parent_id, child_id in (("la", cid(101), cid(102)), ("lb", cid(111), cid(112))):
        for ns in ("", "child:1"):
            parent = cp(parent_id, {"x": [1]}, {"x": "00000000000000000000000000000001.0.1"}, v=2)
            await diff.call("put", cfg(thread, ns), parent, {"step": 0}, parent["channel_versions"])
            await diff.call(
                "put_writes", cfg(thread, ns, parent_id), [(TASKS, f"{thread}{ns}-send")], f"task{ns}", task_path=f"~{ns}"
            )
        child = cp(child_id, {}, {"x": "00000000000000000000000000000002.0.2"}, v=2)
        await diff.call("put", cfg(thread, "child:1", parent_id), child, {"step": 1}, {})
    for thread in ("la", "lb"):
        got = await diff.call("get_tuple", cfg(thread, "child:1"))
        assert got[1].checkpoint["channel_values"][TASKS] == [f"{thread}-send", f"{thread}child:1-send"]
        await diff.call("list", {"configurable": {"thread_id": thread}})
    listed = await diff.call("list", None, filter={"step": 1})
    folded = [TASKS in t.checkpoint["channel_values"] for t in listed[1]]
    assert folded == [True, False]  # only the first row's thread
    await diff.call("list", None)


async def test_long_thread_paging(diff: Diff) -> None:
    """Listings longer than the server's page (256 rows): order, filters, before and limit."""
    n = 600
    for i in range(n):
        md = {"step": i, "source": "loop" if i % 7 else "input", "parity": i % 2}
        parent = cfg("long", "", cid(i - 1)) if i else cfg("long")
        # Straight to both savers (the outcome of each put is compared once, below, by rows).
        await diff.pg.aput(parent, cp(cid(i)), md, {})
        await diff.grpc.aput(parent, cp(cid(i)), md, {})
    await diff.check_rows()
    everything = await diff.call("list", cfg("long"))
    assert [t.metadata["step"] for t in everything[1]] == list(range(n - 1, -1, -1))
    await diff.call("list", cfg("long"), filter={"source": "input"})
    await diff.call("list", cfg("long"), filter={"source": "input"}, limit=30)
    await diff.call("list", cfg("long"), limit=300)
    await diff.call("list", cfg("long"), before=cfg("long", "", cid(400)), limit=260)
    await diff.call("list", cfg("long"), before=cfg("long", "", cid(400)), filter={"parity": 1})
    await diff.call("list", None, limit=257)


async def test_concurrent_writes(diff: Diff) -> None:
    """Many concurrent calls on one thread (LangGraph sends writes in the background)."""
    import asyncio

    async def run(saver) -> None:
        await saver.aput(cfg("c"), cp(cid(1), {"v": [1]}), {}, {"v": 1})
        parent = cfg("c", "", cid(1))
        await asyncio.gather(
            *(saver.aput_writes(parent, [(f"ch{i}", i), ("shared", "same")], f"task-{i}", task_path=f"~{i:03d}") for i in range(40)),
            *(saver.aput_writes(parent, [("dup", "same")], "task-dup") for _ in range(10)),
            *(saver.aput(cfg("c", "", cid(1)), cp(cid(10 + i), {"v": [i]}, {"v": 10 + i}), {"step": i}, {"v": 10 + i}) for i in range(20)),
        )

    await run(diff.pg)
    await run(diff.grpc)
    await diff.check_rows()
    await diff.call("get_tuple", cfg("c", "", cid(1)))
    await diff.call("list", cfg("c"))
