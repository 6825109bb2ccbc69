"""``GrpcCheckpointSaver``: LangGraph's checkpointer interface over checkpointd.

A drop-in replacement for ``AsyncPostgresSaver`` / ``PostgresSaver`` (langgraph-checkpoint-postgres
3.2.0): the client-side logic below mirrors that saver line by line, so both write the same rows:

* values are serialized here with ``self.serde`` (``JsonPlusSerializer`` by default, or any
  ``SerializerProtocol`` such as ``EncryptedSerializer``); the server stores ``(type, bytes)`` pairs
  opaquely;
* ``put`` keeps ``None``/``str``/``int``/``float``/``bool`` channel values inline in the checkpoint
  JSON, stores everything else as blobs (only for channels in ``new_versions``), and replaces a
  ``_DeltaSnapshot`` by the inline marker ``true`` with the snapshot in a blob;
* metadata goes through ``get_serializable_checkpoint_metadata``;
* ``get_next_version`` is the Postgres saver's formula, computed locally, except that an integer
  version (written by LangGraph.js) is continued as an integer;
* reads overlay blobs on inline values, skip ``"empty"`` blobs, return pending writes in
  ``writes_sort_key`` order (the server's order, not sorted again here), and fold a legacy
  (v < 4) checkpoint's pending sends into
  ``channel_values["__pregel_tasks"]``;
* ``get_delta_channel_history`` is one ``GetDeltaChannelHistory`` call: the server walks the
  parent chain with the Postgres saver's rules; the seed and the writes are deserialized here.

Every method is implemented natively twice: sync over a ``grpc`` channel and async over
``grpc.aio``. As with ``AsyncPostgresSaver``, a sync method called on the thread of a running event
loop raises ``asyncio.InvalidStateError`` (it would block the loop) unless the saver was created
with ``allow_sync_on_event_loop=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import grpc
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot

from checkpointd_client.client import CheckpointdClient, check_target, pb, sync_call_on_event_loop_error
from checkpointd_client.errors import FailedPreconditionError, InvalidArgumentError

__all__ = ["GrpcCheckpointSaver"]

PRUNE_STRATEGIES = {
    "keep_latest": pb.PRUNE_STRATEGY_KEEP_LATEST,
    "delete": pb.PRUNE_STRATEGY_DELETE,
}
_UINT32_MAX = 2**32 - 1
_T = TypeVar("_T")


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Ready:
    """The result of ``setup()``: nothing to do, awaitable or not (sync and async callers alike)."""

    __slots__ = ()

    def __await__(self):  # noqa: ANN204
        return iter(())

    def __repr__(self) -> str:
        return "<checkpointd: nothing to set up>"


def _pg_float_text(x: float) -> str:
    """PostgreSQL's ``float8`` text rendering (shortest round-trip digits, ``%g``-like layout).

    The Postgres saver stores a channel version by sending the Python value as a query parameter
    into a TEXT column, so PostgreSQL's cast decides its text: ``1.0`` becomes ``"1"``, ``1e15``
    becomes ``"1e+15"``. Reproduced here so float versions produce the same blob keys.
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    d = Decimal(repr(x)).normalize()
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    e10 = len(digits) - 1 + exponent
    s = "-" if sign else ""
    ds = "".join(map(str, digits))
    if e10 < -4 or e10 >= 15:
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mantissa}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    if e10 >= len(ds) - 1:  # an integer
        return s + ds + "0" * (e10 - (len(ds) - 1))
    if e10 >= 0:
        return s + ds[: e10 + 1] + "." + ds[e10 + 1 :]
    return s + "0." + "0" * (-e10 - 1) + ds


def _version_text(version: Any) -> str:
    """The text PostgreSQL stores for a channel version sent as a parameter (see above)."""
    if isinstance(version, str):
        return version
    if isinstance(version, bool):
        return "true" if version else "false"
    if isinstance(version, int):
        return str(version)
    if isinstance(version, float):
        return _pg_float_text(version)
    return str(version)


def _text(value: Any) -> str | None:
    """An id as text. The Postgres saver passes ids to TEXT columns as query parameters, so
    PostgreSQL's cast turns e.g. an int thread id into "1" when writing (reads with a non-text id
    fail there with "operator does not exist: text = smallint"; here they just work)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _required(method: str, field: str, value: Any) -> str:
    """A NOT NULL column: the Postgres saver fails with NotNullViolation, and so does this one."""
    text = _text(value)
    if text is None:
        raise InvalidArgumentError(method, grpc.StatusCode.INVALID_ARGUMENT, f"{field} must not be None (nothing was written)")
    return text


def _json_bytes(obj: Any) -> bytes:
    # psycopg's Jsonb adapter uses the default json.dumps; the same text goes over the wire here.
    return json.dumps(obj).encode("utf-8")


def _typed_value(type_: str, data: bytes | None) -> pb.TypedValue:
    if data is None:
        return pb.TypedValue(type=type_)
    return pb.TypedValue(type=type_, data=bytes(data))


def _row_size(value: dict[str, Any]) -> int:
    """The serialized bytes that loading a row (see ``_row``) deserializes: blobs and writes."""
    blobs = sum(len(data) for _, type_, data in value["channel_values"] or () if data and type_ != "empty")
    return blobs + sum(len(w[3]) for w in value["pending_writes"] or ())


class _LastSizes:
    """The serialized size of the value last dumped per key (thread, namespace, channel).

    Writes do not know the size of a value before dumping it; the size the same key had the last
    time is the guess. Holds at most ``max_entries`` keys, dropping the least recently dumped.
    """

    __slots__ = ("_sizes", "max_entries")

    def __init__(self, max_entries: int = 10_000) -> None:
        self._sizes: dict[Hashable, int] = {}
        self.max_entries = max_entries

    def total(self, keys: Iterable[Hashable]) -> int:
        """The last sizes of ``keys`` added up; a key not seen yet counts as 0."""
        get = self._sizes.get
        return sum(get(key, 0) for key in keys)

    def record(self, key: Hashable, size: int) -> None:
        """Remember ``size`` as the last size of ``key``, dropping the oldest key when full."""
        sizes = self._sizes
        sizes.pop(key, None)  # re-inserted last: the dict's order is the order of the dumps
        sizes[key] = size
        if len(sizes) > self.max_entries:
            # Another thread (event loop) may change the dict meanwhile: then a later call evicts.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del sizes[next(iter(sizes))]


class _SaverContext:
    """What ``GrpcCheckpointSaver.from_conn_string`` returns: a context manager for ``with`` and
    for ``async with`` that creates the saver on entry and closes its channels on exit."""

    __slots__ = ("_factory", "_target", "_options", "_saver")

    def __init__(self, factory: type[GrpcCheckpointSaver], target: str, options: dict[str, Any]) -> None:
        self._factory = factory
        self._target = target
        self._options = options
        self._saver: GrpcCheckpointSaver | None = None

    def _open(self) -> GrpcCheckpointSaver:
        if self._saver is not None:
            raise RuntimeError("this from_conn_string(...) context is already in use; call it again")
        self._saver = self._factory(self._target, **self._options)
        return self._saver

    def _taken(self) -> GrpcCheckpointSaver | None:
        saver, self._saver = self._saver, None
        return saver

    def __enter__(self) -> GrpcCheckpointSaver:
        return self._open()

    def __exit__(self, *exc: object) -> None:
        saver = self._taken()
        if saver is not None:
            saver.close()

    async def __aenter__(self) -> GrpcCheckpointSaver:
        return self._open()

    async def __aexit__(self, *exc: object) -> None:
        saver = self._taken()
        if saver is not None:
            await saver.aclose()


class GrpcCheckpointSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that stores checkpoints in checkpointd over gRPC.

    Args:
        target: the server, e.g. ``"checkpointd:50051"``.
        serde: the serializer (default ``JsonPlusSerializer``), e.g. an ``EncryptedSerializer``.
        client: an existing :class:`CheckpointdClient` to use instead of ``target`` (not closed by
            ``close()`` unless ``owns_client=True``).
        **client_options: channel options for the :class:`CheckpointdClient` (``timeout``,
            ``tls``, ``token``, ``compression``, ``retry``, ``load_balancing``,
            ``allow_sync_on_event_loop``...).

    Use ``GrpcCheckpointSaver.from_conn_string(target, **options)`` (``async with`` or ``with``),
    use the saver itself as a context manager, or call ``close()`` / ``aclose()``.

    ``with_allowlist`` (which LangGraph calls when a graph is compiled) returns a clone that
    shares this saver's channels without owning them: closing the clone leaves them open, closing
    this saver closes them for both.
    """

    inline_serde_max_bytes: int = 32 * 1024
    """The async methods (de)serialize a call's values on the event loop when they add up to at
    most this many serialized bytes (such values take about as long as the thread hop, which
    would not free the loop from the GIL anyway), else in a worker thread.
    ``0``: always in a worker thread, as ``AsyncPostgresSaver`` does. Settable per instance."""

    def __init__(
        self,
        target: str | None = None,
        *,
        serde: SerializerProtocol | None = None,
        client: CheckpointdClient | None = None,
        owns_client: bool | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(serde=serde)
        if client is None:
            if not target:
                raise ValueError("pass a target such as 'checkpointd:50051' or a CheckpointdClient")
            client = CheckpointdClient(target, **client_options)
            owns_client = True if owns_client is None else owns_client
        elif target is not None or client_options:
            raise ValueError("pass either target (with channel options) or client, not both")
        self.client = client
        self._owns_client = bool(owns_client)
        # Sizes of the last blob and the last write per (thread, namespace, channel), kept apart:
        # a channel's writes are often much smaller than its value (e.g. one message vs the list).
        self._blob_sizes = _LastSizes()
        self._write_sizes = _LastSizes()

    @classmethod
    def from_conn_string(cls, target: str, **options: Any) -> _SaverContext:
        """A saver for the checkpointd server at ``target``, as a context manager that closes its
        channels on exit; the counterpart of ``AsyncPostgresSaver.from_conn_string`` (use
        ``async with``) and ``PostgresSaver.from_conn_string`` (use ``with``)::

            async with GrpcCheckpointSaver.from_conn_string("checkpointd:50051") as checkpointer:
                graph = builder.compile(checkpointer=checkpointer)

        ``options`` are the constructor's: ``serde`` and the :class:`CheckpointdClient` options.
        """
        check_target(target)
        return _SaverContext(cls, target, options)

    def __copy__(self) -> GrpcCheckpointSaver:
        """A shallow clone (``with_allowlist``) that borrows the channels: closing it keeps them open."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._owns_client = False
        return clone

    def _check_sync(self, example: str) -> None:
        """Refuse a blocking call on an event loop's thread (see the module docstring)."""
        client = self.client
        if not client.allow_sync_on_event_loop and _on_event_loop_thread():
            raise sync_call_on_event_loop_error(type(self).__name__, f"await checkpointer.{example}(...)")

    # ------------------------------------------------------------------ lifecycle

    def setup(self) -> _Ready:
        """No-op, for drop-in compatibility: the server migrates its database when it starts.

        Works both as ``saver.setup()`` and as ``await saver.setup()``.
        """
        return _Ready()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def __enter__(self) -> GrpcCheckpointSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> GrpcCheckpointSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"GrpcCheckpointSaver(target={self.client.target!r})"

    # ------------------------------------------------------------------ LangGraph logic (shared)

    def get_next_version(self, current: str | int | None, channel: None) -> str | int:  # type: ignore[override]
        """The Postgres saver's next version (``"<32-digit counter>.<random>"``), except that an
        integer version, as LangGraph.js writes, continues as an integer (``current + 1``): LangGraph
        compares the versions of a thread with each other, and a str cannot be compared with an int.
        """
        if isinstance(current, int) and not isinstance(current, bool):
            return current + 1
        if current is None:
            current_v = 0
        else:
            current_v = int(current.split(".")[0])
        next_v = current_v + 1
        next_h = random.random()
        return f"{next_v:032}.{next_h:016}"

    def _split_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> tuple[str, str, str | None, dict[str, Any], dict[str, Any], dict[str, Any], RunnableConfig]:
        configurable = config["configurable"].copy()
        thread_id = configurable.pop("thread_id")
        checkpoint_ns = configurable.pop("checkpoint_ns")
        checkpoint_id = configurable.pop("checkpoint_id", None)

        copy = checkpoint.copy()
        copy["channel_values"] = copy["channel_values"].copy()
        next_config: RunnableConfig = {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }
        # inline primitive values in the checkpoint document, others are stored as blobs
        blob_values: dict[str, Any] = {}
        for k, v in checkpoint["channel_values"].items():
            if isinstance(v, _DeltaSnapshot):
                blob_values[k] = copy["channel_values"].pop(k)
                copy["channel_values"][k] = True
            elif v is None or isinstance(v, (str, int, float, bool)):
                pass
            else:
                blob_values[k] = copy["channel_values"].pop(k)
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        return thread_id, checkpoint_ns, checkpoint_id, copy, blob_values, blob_versions, next_config

    def _dump_blobs(self, values: dict[str, Any], versions: ChannelVersions) -> list[pb.ChannelBlob]:
        if not versions:
            return []
        blobs = []
        for k, ver in versions.items():
            type_, data = self.serde.dumps_typed(values[k]) if k in values else ("empty", None)
            blobs.append(pb.ChannelBlob(channel=k, version=_version_text(ver), value=_typed_value(type_, data)))
        return blobs

    def _put_request(
        self,
        config: RunnableConfig,
        metadata: CheckpointMetadata,
        thread_id: str,
        checkpoint_ns: str,
        parent_id: str | None,
        copy: dict[str, Any],
        blobs: list[pb.ChannelBlob],
    ) -> pb.PutRequest:
        req = pb.PutRequest(
            thread_id=_required("Put", "thread_id", thread_id),
            checkpoint_ns=_required("Put", "checkpoint_ns", checkpoint_ns),
            checkpoint_id=_required("Put", "checkpoint id", copy["id"]),
            checkpoint_json=_json_bytes(copy),
            metadata_json=_json_bytes(get_serializable_checkpoint_metadata(config, metadata)),
            blobs=blobs,
        )
        if parent_id is not None:
            req.parent_checkpoint_id = _text(parent_id)
        return req

    def _dump_writes(self, writes: Sequence[tuple[str, Any]]) -> list[pb.PutWritesRequest.Write]:
        out = []
        for _idx, (channel, value) in enumerate(writes):
            type_, data = self.serde.dumps_typed(value)
            out.append(
                pb.PutWritesRequest.Write(
                    channel=_required("PutWrites", "channel", channel), value=_typed_value(type_, data)
                )
            )
        return out

    def _writes_request(
        self,
        config: RunnableConfig,
        task_id: str,
        task_path: str,
        params: list[pb.PutWritesRequest.Write],
    ) -> pb.PutWritesRequest | None:
        """The request, or None for an empty batch (the Postgres saver then sends no rows).

        The server applies LangGraph's rules itself: idx = WRITES_IDX_MAP.get(channel, position),
        and upsert when every channel is special, insert-if-absent otherwise.
        """
        configurable = config["configurable"]  # the same KeyErrors as the Postgres saver
        thread_id = configurable["thread_id"]
        checkpoint_ns = configurable["checkpoint_ns"]
        checkpoint_id = configurable["checkpoint_id"]
        if not params:
            return None
        return pb.PutWritesRequest(
            thread_id=_required("PutWrites", "thread_id", thread_id),
            checkpoint_ns=_required("PutWrites", "checkpoint_ns", checkpoint_ns),
            checkpoint_id=_required("PutWrites", "checkpoint_id", checkpoint_id),
            task_id=_required("PutWrites", "task_id", task_id),
            task_path=_required("PutWrites", "task_path", task_path),
            writes=params,
        )

    def _get_request(self, config: RunnableConfig) -> pb.GetTupleRequest | None:
        """The request, or None when nothing can match (a None id compares as SQL NULL)."""
        thread_id = _text(config["configurable"]["thread_id"])
        checkpoint_id = get_checkpoint_id(config)
        checkpoint_ns = _text(config["configurable"].get("checkpoint_ns", ""))
        if thread_id is None or checkpoint_ns is None:
            return None
        req = pb.GetTupleRequest(thread_id=thread_id, checkpoint_ns=checkpoint_ns)
        if checkpoint_id:
            req.checkpoint_id = _text(checkpoint_id)
        return req

    def _list_request(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> pb.ListRequest | None:
        """The request, or None when nothing can match (a None thread id compares as SQL NULL)."""
        req = pb.ListRequest()
        nothing = False
        if config:
            thread_id = _text(config["configurable"]["thread_id"])
            if thread_id is None:
                nothing = True
            else:
                req.thread_id = thread_id
            checkpoint_ns = config["configurable"].get("checkpoint_ns")
            if checkpoint_ns is not None:
                req.checkpoint_ns = _text(checkpoint_ns)
            if checkpoint_id := get_checkpoint_id(config):
                req.checkpoint_id = _text(checkpoint_id)
        if filter:
            req.filter_json = _json_bytes(filter)
        if before is not None:
            before_id = _text(get_checkpoint_id(before))
            req.before.SetInParent()
            if before_id is not None:
                req.before.checkpoint_id = before_id
        if limit is not None:
            n = int(limit)
            if n < 0:
                raise ValueError("LIMIT must not be negative")
            req.limit = min(n, _UINT32_MAX)
        return None if nothing else req

    def _prune_request(self, thread_ids: Sequence[str], strategy: str) -> pb.PruneRequest | None:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        ids = [str(t) for t in thread_ids]
        if not ids:
            return None
        return pb.PruneRequest(thread_ids=ids, strategy=PRUNE_STRATEGIES[strategy])

    @staticmethod
    def _run_ids(run_ids: Sequence[str]) -> list[str]:
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        return [str(r) for r in run_ids]

    # --- reading

    def _row(self, t: pb.CheckpointTuple, fold_sends: bool = True) -> dict[str, Any]:
        """The wire tuple as the Postgres saver's row (before `_load_checkpoint_tuple`).

        ``fold_sends=False`` skips the legacy pending-sends fold (see ``_list_rows``).
        """
        value: dict[str, Any] = {
            "thread_id": t.config.thread_id,
            "checkpoint_ns": t.config.checkpoint_ns,
            "checkpoint_id": t.config.checkpoint_id,
            "parent_checkpoint_id": (t.parent_config.checkpoint_id if t.HasField("parent_config") else None)
            or None,
            "checkpoint": json.loads(t.checkpoint_json),
            "metadata": json.loads(t.metadata_json) if t.metadata_json else {},
            "channel_values": [
                (b.channel, b.value.type, b.value.data if b.value.HasField("data") else None)
                for b in t.channel_values
            ]
            or None,
            "pending_writes": [
                (w.task_id, w.channel, w.value.type, w.value.data, w.task_path, w.idx)
                for w in t.pending_writes
            ]
            or None,
        }
        # migrate pending sends if necessary (legacy checkpoints, v < 4, with a parent)
        if fold_sends and value["checkpoint"]["v"] < 4 and value["parent_checkpoint_id"] and len(t.pending_sends):
            if value["channel_values"] is None:
                value["channel_values"] = []
            self._migrate_pending_sends(
                [(s.type, s.data) for s in t.pending_sends],
                value["checkpoint"],
                value["channel_values"],
            )
        return value

    def _migrate_pending_sends(
        self,
        pending_sends: list[tuple[str, bytes]],
        checkpoint: dict[str, Any],
        channel_values: list[tuple[str, str, bytes | None]],
    ) -> None:
        if not pending_sends:
            return
        # add to values
        enc, blob = self.serde.dumps_typed([self.serde.loads_typed((c, b)) for c, b in pending_sends])
        channel_values.append((TASKS, enc, blob))
        # add to versions
        checkpoint["channel_versions"][TASKS] = (
            max(checkpoint["channel_versions"].values())
            if checkpoint["channel_versions"]
            else self.get_next_version(None, None)
        )

    def _load_blobs(self, blob_values: list[tuple[str, str, bytes | None]] | None) -> dict[str, Any]:
        if not blob_values:
            return {}
        return {k: self.serde.loads_typed((t, v)) for k, t, v in blob_values if t != "empty"}

    def _load_writes(
        self, writes: list[tuple[str, str, str, bytes, str, int]] | None
    ) -> list[tuple[str, str, Any]]:
        # Already in writes_sort_key order: the server sorts by (task_path, task_id, idx).
        return [(tid, channel, self.serde.loads_typed((t, v))) for tid, channel, t, v, _, _ in writes or []]

    def _make_tuple(self, value: dict[str, Any]) -> CheckpointTuple:
        """The tuple of a row (see ``_row``): deserializes its pending writes and blobs."""
        pending_writes = self._load_writes(value["pending_writes"])
        return CheckpointTuple(
            {
                "configurable": {
                    "thread_id": value["thread_id"],
                    "checkpoint_ns": value["checkpoint_ns"],
                    "checkpoint_id": value["checkpoint_id"],
                }
            },
            {
                **value["checkpoint"],
                "channel_values": {
                    **(value["checkpoint"].get("channel_values") or {}),
                    **self._load_blobs(value["channel_values"]),
                },
            },
            value["metadata"],
            (
                {
                    "configurable": {
                        "thread_id": value["thread_id"],
                        "checkpoint_ns": value["checkpoint_ns"],
                        "checkpoint_id": value["parent_checkpoint_id"],
                    }
                }
                if value["parent_checkpoint_id"]
                else None
            ),
            pending_writes,
        )

    def _learn_sizes(self, t: pb.CheckpointTuple) -> None:
        """Remember the serialized sizes of a read checkpoint's blobs and pending writes, so that
        the next async write of those channels knows where to serialize before its first dump."""
        thread_id, checkpoint_ns = t.config.thread_id, t.config.checkpoint_ns
        for blob in t.channel_values:
            if blob.value.type != "empty":
                self._blob_sizes.record((thread_id, checkpoint_ns, blob.channel), len(blob.value.data))
        for write in t.pending_writes:
            self._write_sizes.record((thread_id, checkpoint_ns, write.channel), len(write.value.data))

    def _load_tuple(self, t: pb.CheckpointTuple, fold_sends: bool = True) -> CheckpointTuple:
        return self._make_tuple(self._row(t, fold_sends))

    async def _aload_tuple(self, t: pb.CheckpointTuple, fold_sends: bool = True) -> CheckpointTuple:
        value = self._row(t, fold_sends)
        return await self._aserde(_row_size(value), self._make_tuple, value)

    @staticmethod
    def _fold_in_list(first_thread: list[str], t: pb.CheckpointTuple) -> bool:
        """Whether ``list`` folds this row's legacy pending sends.

        The Postgres saver's ``list`` reads pending sends with one query for the thread of the
        *first* row (``values[0]["thread_id"]``), so when a listing spans threads (``config=None``)
        only rows of that thread get their sends folded. Reproduced for identical results.
        """
        if not first_thread:
            first_thread.append(t.config.thread_id)
        return t.config.thread_id == first_thread[0]

    # --- get_delta_channel_history (one GetDeltaChannelHistory call)

    def _delta_history_request(
        self, config: RunnableConfig, channels: Sequence[str]
    ) -> pb.GetDeltaChannelHistoryRequest | None:
        """The request for ``channels`` at the checkpoint ``config`` names (the latest of its
        namespace without a checkpoint id), or None when nothing can match (see ``_get_request``)."""
        target = self._get_request(config)
        if target is None:
            return None
        req = pb.GetDeltaChannelHistoryRequest(
            thread_id=target.thread_id, checkpoint_ns=target.checkpoint_ns, channels=list(channels)
        )
        if target.HasField("checkpoint_id"):
            req.checkpoint_id = target.checkpoint_id
        return req

    @staticmethod
    def _no_delta_history(channels: Sequence[str]) -> dict[str, DeltaChannelHistory]:
        """The answer for a missing checkpoint: no writes and no seed for every channel."""
        return {ch: {"writes": []} for ch in channels}

    @staticmethod
    def _delta_history_size(resp: pb.GetDeltaChannelHistoryResponse) -> int:
        """The serialized bytes that loading ``resp`` (see ``_load_delta_history``) deserializes."""
        size = 0
        for history in resp.channels:
            size += sum(len(w.value.data) for w in history.writes)
            if history.WhichOneof("seed") == "seed_blob":
                size += len(history.seed_blob.data)
        return size

    def _load_delta_history(self, resp: pb.GetDeltaChannelHistoryResponse) -> dict[str, DeltaChannelHistory]:
        """The histories of a response, in its order (the order asked, each channel once)."""
        return {history.channel: self._load_channel_history(history) for history in resp.channels}

    def _load_channel_history(self, history: pb.DeltaChannelHistory) -> DeltaChannelHistory:
        """One channel's writes (oldest first) and seed, deserialized as ``get_tuple`` does: writes
        and blobs with ``self.serde``, an inline value as JSON (as in the checkpoint document)."""
        entry: DeltaChannelHistory = {
            "writes": [
                (w.task_id, w.channel, self.serde.loads_typed((w.value.type, w.value.data))) for w in history.writes
            ]
        }
        seed = history.WhichOneof("seed")
        if seed == "seed_blob":
            blob = history.seed_blob
            entry["seed"] = self.serde.loads_typed((blob.type, blob.data if blob.HasField("data") else None))
        elif seed == "seed_inline_json":
            entry["seed"] = json.loads(history.seed_inline_json)
        return entry

    # --- (de)serialization in async methods: on the event loop, or in a worker thread

    async def _aserde(self, size: int, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the event loop when ``size`` (serialized bytes) is at most
        ``inline_serde_max_bytes``, else in a worker thread."""
        limit = self.inline_serde_max_bytes
        if 0 < limit and size <= limit:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def _adump_blobs(
        self, thread_id: Any, checkpoint_ns: Any, values: dict[str, Any], versions: ChannelVersions
    ) -> list[pb.ChannelBlob]:
        """``_dump_blobs`` for ``aput``, on the loop or in a thread (see ``_adump``)."""
        channels = [k for k in versions if k in values]  # the others get an "empty" marker
        return await self._adump(
            self._blob_sizes, (thread_id, checkpoint_ns), channels, self._dump_blobs, values, versions
        )

    async def _adump_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]]
    ) -> list[pb.PutWritesRequest.Write]:
        """``_dump_writes`` for ``aput_writes``, on the loop or in a thread (see ``_adump``).

        A config without thread id or namespace fails after the dump (in ``_writes_request``), as
        in ``put_writes``.
        """
        configurable = config.get("configurable") or {}
        scope = (configurable.get("thread_id"), configurable.get("checkpoint_ns"))
        return await self._adump(self._write_sizes, scope, [w[0] for w in writes], self._dump_writes, writes)

    async def _adump(
        self,
        sizes: _LastSizes,
        scope: tuple[Any, Any],
        channels: Iterable[Any],
        dump: Callable[..., list[Any]],
        *args: Any,
    ) -> list[Any]:
        """``dump(*args)``, placed by ``_aserde`` by the sizes that ``channels`` of ``scope``
        (thread id, namespace) had the last time (a channel not seen yet counts as small), then
        records their new sizes.

        So the first large value of a channel is dumped on the loop, the next ones in a thread;
        and a channel that became small again is back on the loop after one dump in a thread.
        """
        thread_id, checkpoint_ns = _text(scope[0]), _text(scope[1])
        dumped = await self._aserde(
            sizes.total((thread_id, checkpoint_ns, channel) for channel in channels), dump, *args
        )
        for item in dumped:  # pb.ChannelBlob or pb.PutWritesRequest.Write
            value = item.value
            if value.type != "empty":  # a blob marking a channel without a value: nothing dumped
                sizes.record((thread_id, checkpoint_ns, item.channel), len(value.data))
        return dumped

    # ------------------------------------------------------------------ sync API

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._check_sync("aget_tuple")
        req = self._get_request(config)
        if req is None:
            return None
        resp = self.client.get_tuple(req)
        if not resp.HasField("tuple"):
            return None
        self._learn_sizes(resp.tuple)
        return self._load_tuple(resp.tuple)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """What a ``DeltaChannel`` needs to rebuild each of ``channels`` at the checkpoint ``config``
        names (its latest without a checkpoint id): the writes along its ancestors, oldest first,
        and the nearest stored value as ``seed`` (omitted when the walk found none).

        One ``GetDeltaChannelHistory`` call, with the Postgres saver's semantics (the server walks
        the parent chain); a channel named twice is answered once (the Postgres saver repeats its
        writes, the base class does not). No channels: ``{}`` without a call.
        """
        self._check_sync("aget_delta_channel_history")
        if not channels:
            return {}
        req = self._delta_history_request(config, channels)
        if req is None:
            return self._no_delta_history(channels)
        return self._load_delta_history(self.client.get_delta_channel_history(req))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        self._check_sync("alist")
        req = self._list_request(config, filter, before, limit)
        if req is None:
            return
        first_thread: list[str] = []
        for message in self.client.list(req):
            yield self._load_tuple(message.tuple, self._fold_in_list(first_thread, message.tuple))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._check_sync("aput")
        thread_id, ns, parent, copy, blob_values, blob_versions, next_config = self._split_put(
            config, checkpoint, new_versions
        )
        blobs = self._dump_blobs(blob_values, blob_versions) if blob_versions else []
        self.client.put(self._put_request(config, metadata, thread_id, ns, parent, copy, blobs))
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._check_sync("aput_writes")
        all(w[0] in WRITES_IDX_MAP for w in writes)  # as the Postgres saver: each write is a pair
        params = self._dump_writes(writes)
        req = self._writes_request(config, task_id, task_path, params)
        if req is not None:
            self.client.put_writes(req)

    def delete_thread(self, thread_id: str) -> None:
        self._check_sync("adelete_thread")
        self.client.delete_thread(pb.DeleteThreadRequest(thread_id=str(thread_id)))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._check_sync("adelete_for_runs")
        ids = self._run_ids(run_ids)
        if ids:
            self.client.delete_for_runs(pb.DeleteForRunsRequest(run_ids=ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._check_sync("acopy_thread")
        self.client.copy_thread(
            pb.CopyThreadRequest(source_thread_id=str(source_thread_id), target_thread_id=str(target_thread_id))
        )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._check_sync("aprune")
        req = self._prune_request(thread_ids, strategy)
        if req is None:
            return
        try:
            self.client.prune(req)
        except FailedPreconditionError as err:
            raise NotImplementedError(err.details) from err

    # ------------------------------------------------------------------ async API

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        req = self._get_request(config)
        if req is None:
            return None
        resp = await self.client.aget_tuple(req)
        if not resp.HasField("tuple"):
            return None
        self._learn_sizes(resp.tuple)
        return await self._aload_tuple(resp.tuple)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async ``get_delta_channel_history``: one call, deserialized on the loop or in a worker
        thread by size (see ``inline_serde_max_bytes``)."""
        if not channels:
            return {}
        req = self._delta_history_request(config, channels)
        if req is None:
            return self._no_delta_history(channels)
        resp = await self.client.aget_delta_channel_history(req)
        return await self._aserde(self._delta_history_size(resp), self._load_delta_history, resp)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        req = self._list_request(config, filter, before, limit)
        if req is None:
            return
        stream = self.client.alist(req)
        try:
            first_thread: list[str] = []
            async for message in stream:
                yield await self._aload_tuple(message.tuple, self._fold_in_list(first_thread, message.tuple))
        finally:
            await stream.aclose()

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns, parent, copy, blob_values, blob_versions, next_config = self._split_put(
            config, checkpoint, new_versions
        )
        blobs = await self._adump_blobs(thread_id, ns, blob_values, blob_versions) if blob_versions else []
        await self.client.aput(self._put_request(config, metadata, thread_id, ns, parent, copy, blobs))
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        all(w[0] in WRITES_IDX_MAP for w in writes)  # as the Postgres saver: each write is a pair
        params = await self._adump_writes(config, writes)
        req = self._writes_request(config, task_id, task_path, params)
        if req is not None:
            await self.client.aput_writes(req)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.client.adelete_thread(pb.DeleteThreadRequest(thread_id=str(thread_id)))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        ids = self._run_ids(run_ids)
        if ids:
            await self.client.adelete_for_runs(pb.DeleteForRunsRequest(run_ids=ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.client.acopy_thread(
            pb.CopyThreadRequest(source_thread_id=str(source_thread_id), target_thread_id=str(target_thread_id))
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        req = self._prune_request(thread_ids, strategy)
        if req is None:
            return
        try:
            await self.client.aprune(req)
        except FailedPreconditionError as err:
            raise NotImplementedError(err.details) from err
