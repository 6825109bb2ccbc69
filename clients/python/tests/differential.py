"""Differential harness: run every operation against LangGraph's AsyncPostgresSaver and against
GrpcCheckpointSaver (each on its own database), and compare what they return, what they raise, and
the rows they leave in PostgreSQL."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import psycopg
from langgraph.checkpoint.base import WRITES_IDX_MAP
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot

from _harness import dump_tables
from checkpointd_client import CheckpointdError, GrpcCheckpointSaver

ERROR, SCHEDULED, INTERRUPT, RESUME = "__error__", "__scheduled__", "__interrupt__", "__resume__"
assert set(WRITES_IDX_MAP) == {ERROR, SCHEDULED, INTERRUPT, RESUME}
NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"


def outcome_error(exc: BaseException) -> tuple[str, str]:
    """Which kind of failure; the exact classes differ (psycopg vs gRPC), the kind must not."""
    if isinstance(exc, NotImplementedError):
        return ("error", "NotImplementedError")
    if isinstance(exc, (CheckpointdError, psycopg.Error)):
        return ("error", "rejected by the database/server")
    return ("error", type(exc).__name__)


def _nan_safe(obj: Any) -> Any:
    """NaN != NaN; make outcomes with NaN values comparable."""
    if isinstance(obj, float) and math.isnan(obj):
        return "<NaN>"
    if isinstance(obj, dict):
        return {k: _nan_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_nan_safe(v) for v in obj) if not hasattr(obj, "_fields") else type(obj)(*(_nan_safe(v) for v in obj))
    return obj


class Mismatch(AssertionError):
    pass


class Diff:
    """Runs the same call on both savers and requires the same outcome."""

    def __init__(self, pg: Any, grpc_saver: GrpcCheckpointSaver, pg_url: str, grpc_url: str, rng: random.Random | None = None) -> None:
        self.pg = pg
        self.grpc = grpc_saver
        self.pg_url = pg_url
        self.grpc_url = grpc_url
        self.rng = rng or random.Random(0)
        self.log: list[str] = []
        self.sync_ratio = 0.35  # how often the gRPC side uses its sync API (on the loop's thread)
        self._conns: dict[str, psycopg.Connection] = {}

    async def _run(self, saver: Any, method: str, args: tuple, kwargs: dict, use_sync: bool) -> Any:
        try:
            if method in ("list", "alist"):
                if use_sync:
                    return ("ok", list(saver.list(*args, **kwargs)))
                return ("ok", [t async for t in saver.alist(*args, **kwargs)])
            name = method if use_sync else "a" + method
            return ("ok", await getattr(saver, name)(*args, **kwargs) if not use_sync else getattr(saver, name)(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            return outcome_error(exc)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` is the sync name (get_tuple, list, put, ...); PG always runs its async twin."""
        self.log.append(f"{method}{_short(args, kwargs)}")
        # get_next_version draws from the global `random` (e.g. the version of folded legacy pending
        # sends when a checkpoint has no channel versions): give both savers the same draws.
        use_sync = self.rng.random() < self.sync_ratio
        draw_seed = self.rng.getrandbits(32)
        random.seed(draw_seed)
        want = await self._run(self.pg, method, copy.deepcopy(args), copy.deepcopy(kwargs), use_sync=False)
        random.seed(draw_seed)
        got = await self._run(self.grpc, method, copy.deepcopy(args), copy.deepcopy(kwargs), use_sync=use_sync)
        if _nan_safe(got) != _nan_safe(want) and not (method == "list" and _same_up_to_ties(got, want)):
            raise Mismatch(
                f"{method} differs ({'sync' if use_sync else 'async'} gRPC call)\n"
                f"  args: {args!r} {kwargs!r}\n{_explain(want, got)}\n"
                f"  after: {self.log[-15:]}"
            )
        return want

    async def call_delta_history(self, config: dict, channels: list[str]) -> Any:
        want = await self._plain(self.pg.aget_delta_channel_history(config=config, channels=channels))
        got = await self._plain(self.grpc.aget_delta_channel_history(config=config, channels=channels))
        if got != want:
            raise Mismatch(f"get_delta_channel_history differs for {config} {channels}:\n  pg:   {want!r}\n  grpc: {got!r}")
        return want

    @staticmethod
    async def _plain(coro: Any) -> Any:
        try:
            return ("ok", dict(await coro))
        except Exception as exc:  # noqa: BLE001
            return outcome_error(exc)

    def _conn(self, url: str) -> psycopg.Connection:
        conn = self._conns.get(url)
        if conn is None or conn.closed:
            conn = self._conns[url] = psycopg.connect(url, autocommit=True)
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    async def check_rows(self) -> None:
        want, got = dump_tables(self._conn(self.pg_url)), dump_tables(self._conn(self.grpc_url))
        for table in want:
            if want[table] != got[table]:
                only_pg = [r for r in want[table] if r not in got[table]]
                only_grpc = [r for r in got[table] if r not in want[table]]
                raise Mismatch(
                    f"rows of {table} differ\n  only postgres saver: {only_pg[:5]}\n  only grpc saver: {only_grpc[:5]}\n"
                    f"  after: {self.log[-15:]}"
                )

    async def check_state(self, threads: list[str], namespaces: list[str]) -> None:
        """Everything readable: list over all threads, per thread, per namespace, and the latest."""
        await self.call("list", None)
        for t in threads:
            await self.call("list", {"configurable": {"thread_id": t}})
            for ns in namespaces:
                await self.call("get_tuple", {"configurable": {"thread_id": t, "checkpoint_ns": ns}})
        await self.check_rows()


def _explain(want: Any, got: Any) -> str:
    """Where two outcomes differ, field by field for checkpoint tuples."""
    if want[0] != "ok" or got[0] != "ok":
        return f"  postgres saver: {want!r}\n  grpc saver:     {got!r}"
    w, g = want[1], got[1]
    if isinstance(w, list) and isinstance(g, list):
        if len(w) != len(g):
            return f"  {len(w)} rows from the postgres saver, {len(g)} from the grpc saver\n  pg: {[t.config for t in w]}\n  grpc: {[t.config for t in g]}"
        for i, (a, b) in enumerate(zip(w, g)):
            if _nan_safe(a) != _nan_safe(b):
                return f"  row {i}:\n" + _explain(("ok", a), ("ok", b))
    if hasattr(w, "_fields") and hasattr(g, "_fields"):
        lines = []
        for field in w._fields:
            a, b = getattr(w, field), getattr(g, field)
            if _nan_safe(a) != _nan_safe(b):
                if isinstance(a, dict) and isinstance(b, dict):
                    for k in sorted(set(a) | set(b), key=str):
                        if _nan_safe(a.get(k, "<missing>")) != _nan_safe(b.get(k, "<missing>")):
                            lines.append(f"  {field}[{k!r}]: pg={a.get(k, '<missing>')!r} grpc={b.get(k, '<missing>')!r}")
                else:
                    lines.append(f"  {field}: pg={a!r} grpc={b!r}")
        return f"  config {w.config}\n" + "\n".join(lines)
    return f"  postgres saver: {want!r}\n  grpc saver:     {got!r}"


def _same_up_to_ties(got: Any, want: Any) -> bool:
    """List is ordered by checkpoint_id only: rows sharing an id (same id in two threads or
    namespaces) come in an unspecified order in PostgreSQL, so compare those groups as multisets."""
    if got[0] != "ok" or want[0] != "ok" or len(got[1]) != len(want[1]):
        return False

    def groups(rows: list) -> list[list[str]]:
        out: dict[str, list[str]] = {}
        for t in rows:
            out.setdefault(t.config["configurable"]["checkpoint_id"], []).append(repr(_nan_safe(t)))
        return [sorted(v) for v in out.values()]

    return [t.config["configurable"]["checkpoint_id"] for t in got[1]] == [
        t.config["configurable"]["checkpoint_id"] for t in want[1]
    ] and groups(got[1]) == groups(want[1])


def _short(args: tuple, kwargs: dict) -> str:
    text = repr(args)[:160]
    if kwargs:
        text += " " + repr(kwargs)[:120]
    return text


# ---------------------------------------------------------------- random operation sequences


class RandomOps:
    """A seeded generator of checkpointer operations covering the semantics notes' section 10 gaps."""

    THREADS = ["t-0", "t-1", "t-ü"]
    NAMESPACES = ["", "child:1", "a:x|b:y"]
    CHANNELS = ["messages", "count", "note", "flag", "items", "blob", "snap", "opt", TASKS]
    TASK_IDS = ["task-a", "task-b", NULL_TASK_ID]
    TASK_PATHS = ["", "~__pregel_pull, a", "~__pregel_push, 0000000000, 0000000000", "~__pregel_pull, b", "zz"]
    WRITE_CHANNELS = ["ch", "ch2", "messages", TASKS, ERROR, SCHEDULED, INTERRUPT, RESUME]
    RUN_IDS = ["run-1", "run-2", "run-3"]
    TAGS = ["x", "y", "z"]

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids: list[tuple[str, str, str]] = []  # (thread, ns, checkpoint_id) put so far
        self.version_counter = 0

    # --- values

    def value(self, depth: int = 0, allow_huge: bool = False) -> Any:
        """A random value; ints beyond 64 bits (msgpack cannot hold them) only inline."""
        r = self.rng
        kind = r.choice(["int", "str", "float", "bool", "none", "list", "dict", "bytes", "bigint", "unicode"] + (["nested"] if depth == 0 else []))
        if kind == "int":
            return r.randint(-5, 100)
        if kind == "bigint":
            return r.choice([2**40, -(2**62)] + ([2**70] if allow_huge else []))
        if kind == "str":
            return r.choice(["", "hello", "with space", "quote\"s", "new\nline"])
        if kind == "unicode":
            return r.choice(["ünïcödé", "日本語", "emoji 🎉"])
        if kind == "float":
            return r.choice([0.5, -1.25, 1e-7, 3.0, 1e20])
        if kind == "bool":
            return r.random() < 0.5
        if kind == "none":
            return None
        if kind == "list":
            return [self.value(depth + 1) for _ in range(r.randint(0, 3))]
        if kind == "dict":
            return {f"k{i}": self.value(depth + 1) for i in range(r.randint(0, 3))}
        if kind == "bytes":
            return bytes(r.randrange(256) for _ in range(r.randint(0, 6)))
        return {"inner": [self.value(depth + 1), {"deep": self.value(depth + 1)}]}

    def version(self) -> Any:
        self.version_counter += 1
        n = self.version_counter
        r = self.rng.random()
        if r < 0.5:
            return f"{n:032}.{self.rng.random():016}"
        if r < 0.85:
            return n
        return float(n) + self.rng.choice([0.0, 0.5])

    def checkpoint_id(self) -> str:
        # uuid6-shaped, random but drawn from the seeded generator, so both savers see the same ids.
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-6{h[13:16]}-{h[16:20]}-{h[20:]}"

    def metadata(self) -> dict[str, Any]:
        r = self.rng
        md: dict[str, Any] = {
            "source": r.choice(["input", "loop", "update", "fork"]),
            "step": r.randint(-1, 4),
            "parents": r.choice([{}, {"": "p-1"}]),
            "run_id": r.choice(self.RUN_IDS),
        }
        if r.random() < 0.6:
            md["tags"] = r.sample(self.TAGS, r.randint(0, 3))
        if r.random() < 0.6:
            md["nested"] = {"a": r.randint(0, 2), "b": {"c": r.choice(["u", "v"]), "d": r.randint(0, 1)}}
        if r.random() < 0.3:
            md["flag"] = r.choice([None, True, False])
        if r.random() < 0.3:
            md["score"] = r.choice([0.5, 2, -3.25])
        if r.random() < 0.2:
            md["writes"] = {"node": {"x": 1}}  # dropped by get_serializable_checkpoint_metadata
        if r.random() < 0.15:
            md["who"] = "nul\x00inside"  # top-level NUL is stripped by both
        return md

    # --- operations: each returns (method, args, kwargs) for Diff.call

    def op(self) -> tuple[str, tuple, dict]:
        r = self.rng
        if not self.ids:
            return self.put()
        choice = r.choices(
            ["put", "reput", "put_writes", "get_tuple", "list", "delete_thread", "prune", "poison"],
            weights=[26, 6, 26, 8, 22, 3, 4, 5],
        )[0]
        return getattr(self, choice)()

    def _config(self, thread: str, ns: str, checkpoint_id: str | None = None, *, extras: bool = False) -> dict:
        conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
        if checkpoint_id is not None:
            conf["checkpoint_id"] = checkpoint_id
        cfg: dict[str, Any] = {"configurable": conf}
        if extras and self.rng.random() < 0.5:
            conf.update({"user_conf": "c", "langgraph_step": 3, "__secret": "s", "num": 7, "obj": {"no": 1}})
            cfg["metadata"] = {"user_meta": "m", "__hidden": 1, "checkpoint_map": {"": "x"}, "ratio": 0.25, "lst": [1]}
        return cfg

    def _known(self, thread: str | None = None, ns: str | None = None) -> tuple[str, str, str] | None:
        pool = [k for k in self.ids if (thread is None or k[0] == thread) and (ns is None or k[1] == ns)]
        return self.rng.choice(pool) if pool else None

    def put(self, checkpoint_id: str | None = None, thread: str | None = None, ns: str | None = None) -> tuple[str, tuple, dict]:
        r = self.rng
        thread = thread or r.choice(self.THREADS)
        ns = ns if ns is not None else r.choice(self.NAMESPACES)
        cid = checkpoint_id or self.checkpoint_id()
        parent = self._known(thread, ns) if r.random() < 0.7 else None
        channels = r.sample(self.CHANNELS, r.randint(0, len(self.CHANNELS)))
        values: dict[str, Any] = {}
        versions: dict[str, Any] = {}
        for ch in channels:
            versions[ch] = self.version()
            roll = r.random()
            if roll < 0.1:
                continue  # a version without a value
            if roll < 0.18:
                values[ch] = _DeltaSnapshot(self.value())
            else:
                values[ch] = self.value(allow_huge=True)
        new_versions = {k: v for k, v in versions.items() if r.random() < 0.75}
        if r.random() < 0.1:
            new_versions["not-a-channel"] = self.version()
        cp = {
            "v": r.choice([1, 2, 3, 4, 4, 4]),
            "id": cid,
            "ts": "2024-07-01T12:00:00.000000+00:00",
            "channel_values": values,
            "channel_versions": versions,
            "versions_seen": {"node": {k: v for k, v in list(versions.items())[:2]}},
            "updated_channels": sorted(values) if r.random() < 0.5 else None,
        }
        if cp["v"] < 4 and r.random() < 0.5:
            cp["pending_sends"] = []
        config = self._config(thread, ns, parent[2] if parent else None, extras=True)
        if (thread, ns, cid) not in self.ids:
            self.ids.append((thread, ns, cid))
        return "put", (config, cp, self.metadata(), new_versions), {}

    def reput(self) -> tuple[str, tuple, dict]:
        """Re-put a known checkpoint id: the document/metadata change, the parent must not."""
        thread, ns, cid = self.rng.choice(self.ids)
        return self.put(checkpoint_id=cid, thread=thread, ns=ns)

    def put_writes(self) -> tuple[str, tuple, dict]:
        r = self.rng
        if r.random() < 0.85:
            thread, ns, cid = r.choice(self.ids)
        else:  # writes may arrive before (or without) their checkpoint
            thread, ns, cid = r.choice(self.THREADS), r.choice(self.NAMESPACES), self.checkpoint_id()
        kind = r.random()
        if kind < 0.3:
            chans = r.choices([ERROR, SCHEDULED, INTERRUPT, RESUME], k=r.randint(1, 3))
        elif kind < 0.5:
            chans = [r.choice([ERROR, INTERRUPT, RESUME])] + r.choices(self.WRITE_CHANNELS[:4], k=r.randint(1, 2))
            r.shuffle(chans)
        else:
            chans = r.choices(self.WRITE_CHANNELS, k=r.randint(0, 4))
        writes = [(c, self.value()) for c in chans]
        return (
            "put_writes",
            (self._config(thread, ns, cid), writes, r.choice(self.TASK_IDS)),
            {"task_path": r.choice(self.TASK_PATHS)},
        )

    def get_tuple(self) -> tuple[str, tuple, dict]:
        r = self.rng
        thread, ns, cid = r.choice(self.ids)
        roll = r.random()
        if roll < 0.35:
            conf = {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": cid}
        elif roll < 0.55:
            conf = {"thread_id": thread, "checkpoint_ns": ns}
        elif roll < 0.7:
            conf = {"thread_id": thread}  # no checkpoint_ns key: the root namespace
        elif roll < 0.85:
            conf = {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": self.checkpoint_id()}
        else:
            conf = {"thread_id": "no-such-thread", "checkpoint_ns": ""}
        return "get_tuple", ({"configurable": conf},), {}

    def list(self) -> tuple[str, tuple, dict]:
        r = self.rng
        thread, ns, cid = r.choice(self.ids)
        config = r.choice(
            [
                None,
                {"configurable": {"thread_id": thread}},
                {"configurable": {"thread_id": thread, "checkpoint_ns": ns}},
                {"configurable": {"thread_id": thread, "checkpoint_ns": None}},
                {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": cid}},
                {},
            ]
        )
        kwargs: dict[str, Any] = {}
        filt = r.choice(
            [
                None,
                None,
                {},
                {"source": "loop"},
                {"step": r.randint(-1, 4)},
                {"run_id": r.choice(self.RUN_IDS)},
                {"tags": [r.choice(self.TAGS)]},
                {"tags": r.sample(self.TAGS, 2)},
                {"tags": []},
                {"nested": {"a": r.randint(0, 2)}},
                {"nested": {"b": {"c": "u"}}},
                {"nested": {}},
                {"flag": None},
                {"missing": None},
                {"score": 0.5},
                {"writes": {"node": {"x": 1}}},
                {"user_meta": "m"},
                {"who": "nulinside"},
                {"source": "loop", "step": r.randint(0, 3)},
            ]
        )
        if filt is not None:
            kwargs["filter"] = filt
        roll = r.random()
        if roll < 0.25:
            kwargs["before"] = {"configurable": {"thread_id": thread, "checkpoint_id": r.choice(self.ids)[2]}}
        elif roll < 0.32:
            kwargs["before"] = {"configurable": {"thread_id": thread}}  # no id: matches nothing
        if r.random() < 0.4:
            kwargs["limit"] = r.choice([0, 1, 2, 5])
        return "list", (config,), kwargs

    def delete_thread(self) -> tuple[str, tuple, dict]:
        thread = self.rng.choice(self.THREADS)
        self.ids = [k for k in self.ids if k[0] != thread] or self.ids
        return "delete_thread", (thread,), {}

    def prune(self) -> tuple[str, tuple, dict]:
        r = self.rng
        threads = r.sample(self.THREADS, r.randint(0, 2)) + (["no-such-thread"] if r.random() < 0.2 else [])
        strategy = r.choice(["keep_latest", "keep_latest", "delete"])
        return "prune", (threads,), {"strategy": strategy}

    def poison(self) -> tuple[str, tuple, dict]:
        """Values PostgreSQL's JSONB rejects: both savers must fail and write nothing."""
        method, (config, cp, md, nv), kw = self.put(thread=self.rng.choice(self.THREADS))
        self.ids = [k for k in self.ids if k[2] != cp["id"]] or self.ids
        which = self.rng.choice(["nul_value", "nan_value", "inf_value", "nan_metadata", "nul_nested_metadata", "nul_key"])
        if which == "nul_value":
            cp["channel_values"]["bad"] = "a\x00b"
        elif which == "nan_value":
            cp["channel_values"]["bad"] = float("nan")
        elif which == "inf_value":
            cp["channel_values"]["bad"] = float("-inf")
        elif which == "nan_metadata":
            md["score"] = float("nan")
        elif which == "nul_nested_metadata":
            md["nested"] = {"s": "x\x00y"}
        else:
            cp["channel_values"]["bad\x00key"] = 1
        cp["channel_versions"]["bad"] = self.version()
        return method, (config, cp, md, nv), kw
