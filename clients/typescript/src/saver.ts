/**
 * `GrpcCheckpointSaver`: LangGraph.js's checkpointer interface over checkpointd.
 *
 * A drop-in replacement for `PostgresSaver` (`@langchain/langgraph-checkpoint-postgres`): the
 * client-side logic mirrors that saver, so both write the same rows in the same tables:
 *
 * - values are serialized here with `this.serde` (LangGraph.js's `JsonPlusSerializer` by default);
 *   the server stores the `(type, bytes)` pairs opaquely;
 * - `put` stores the checkpoint document without `channel_values`, and one blob per channel in
 *   `newVersions` (`"empty"` with no bytes for a channel that has no value), keyed by the version's
 *   `toString()`; channel versions are integers (the base class's `getNextVersion`);
 * - metadata goes through the serializer's JSON, as `PostgresSaver` does;
 * - reads decode the blobs (skipping `"empty"`), return pending writes in `writesSortKey` order, and
 *   fold a legacy (v < 4) checkpoint's pending sends into `channel_values.__pregel_tasks`;
 * - `getDeltaChannelHistory` (the base class's DeltaChannel walk) is one `GetDeltaChannelHistory`
 *   call instead of one `getTuple` per ancestor; the server walks the parent chain.
 *
 * Where the Python saver's data differs, the reader also understands it: channel values the Python
 * saver keeps inline in the document (`None`/str/int/float/bool) are returned under the blobs, and
 * string channel versions (Python's `"0000…0002.0.123"` format) are continued in that format by
 * `getNextVersion`; such a thread is also written in the Python saver's layout (inline values), see
 * `splitCheckpoint`. Pending writes are stored with their `taskPath` (the base class asks savers to
 * persist it; LangGraph's Python saver does, `PostgresSaver` of LangGraph.js leaves it `''`).
 */
import type { RunnableConfig } from "@langchain/core/runnables";
import {
  BaseCheckpointSaver,
  INTERRUPT,
  TASKS,
  maxChannelVersion,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointPendingWrite,
  type CheckpointTuple,
  type DeltaChannelHistory,
  type PendingWrite,
  type SerializerProtocol,
} from "@langchain/langgraph-checkpoint";

import { CheckpointdClient, type CallOptions, type CheckpointdClientOptions } from "./client.js";
import {
  PruneStrategy,
  type ChannelBlob,
  type CheckpointTuple as WireTuple,
  type DeltaChannelHistory as WireDeltaChannelHistory,
  type ListRequest,
  type PendingWrite as WirePendingWrite,
} from "./gen/checkpoint/v1/checkpoint.js";
import { PolyglotSerializer, interruptsForPython, interruptsFromPython } from "./serde.js";

export interface GrpcCheckpointSaverOptions extends CheckpointdClientOptions {
  /** The server, e.g. `"checkpointd:50051"` (or pass `client`). */
  target?: string;
  /** An existing client to use instead of `target` (not closed by `close()` unless `ownsClient`). */
  client?: CheckpointdClient;
  /** Whether `close()` closes the client. Default: true when the saver created it. */
  ownsClient?: boolean;
  /** The serializer (default LangGraph.js's `JsonPlusSerializer`), e.g. a `PolyglotSerializer`. */
  serde?: SerializerProtocol;
}

export type PruneStrategyName = "keep_latest" | "delete";

const PRUNE_STRATEGIES: Record<PruneStrategyName, PruneStrategy> = {
  keep_latest: PruneStrategy.PRUNE_STRATEGY_KEEP_LATEST,
  delete: PruneStrategy.PRUNE_STRATEGY_DELETE,
};

const UINT32_MAX = 2 ** 32 - 1;
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder("utf-8", { fatal: true });
const CLIENT_OPTION_KEYS = new Set(["target", "client", "ownsClient", "serde"]);

type Id = string | number;

function idText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  return undefined;
}

function requireId(field: string, value: unknown, op: string): string {
  const text = idText(value);
  if (text === undefined || text === "") {
    throw new TypeError(`${op}: config.configurable.${field} is required`);
  }
  return text;
}

function jsonBytes(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), "utf8");
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  if (bytes.length === 0) return {};
  try {
    return JSON.parse(utf8.decode(bytes)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`checkpointd returned an invalid ${what} document: ${String(err)}`, { cause: err });
  }
}

/** Whether LangGraph's Python saver would keep this value inline in the checkpoint document. */
function isInlineValue(value: unknown): boolean {
  return (
    value === null ||
    typeof value === "string" ||
    typeof value === "boolean" ||
    (typeof value === "number" && Number.isFinite(value))
  );
}

/** Whether a checkpoint's channel versions are Python's strings (a thread LangGraph Python started). */
function hasPythonVersions(versions: ChannelVersions): boolean {
  return Object.values(versions).some((v) => typeof v === "string");
}

/**
 * The checkpoint document and the blobs `put` stores.
 *
 * A LangGraph.js thread is stored as `PostgresSaver` stores it: the document without
 * `channel_values`, one blob per channel in `newVersions`. A thread LangGraph's Python saver started
 * (string versions) is stored as that saver stores it: None/str/number/bool values inline in the
 * document, blobs for the other new values. That layout matters: Python's savers write no blob for an
 * inline value, so an unchanged channel's value exists only inline, and a checkpoint that left it out
 * of the document would lose it.
 */
function splitCheckpoint(
  checkpoint: Checkpoint,
  newVersions: ChannelVersions,
): { document: Record<string, unknown>; blobValues: Record<string, unknown>; blobVersions: ChannelVersions } {
  const { channel_values: values = {}, ...rest } = checkpoint;
  if (!hasPythonVersions(checkpoint.channel_versions ?? {})) {
    return { document: rest, blobValues: values, blobVersions: newVersions };
  }
  const inline: Record<string, unknown> = {};
  const blobValues: Record<string, unknown> = {};
  for (const [channel, value] of Object.entries(values)) {
    if (isInlineValue(value)) inline[channel] = value;
    else blobValues[channel] = value;
  }
  const blobVersions = Object.fromEntries(Object.entries(newVersions).filter(([channel]) => !(channel in inline)));
  return { document: { ...rest, channel_values: inline }, blobValues, blobVersions };
}

/** Python's `f"{random.random():016}"`. */
function pyRandom16(): string {
  return String(Math.random()).padStart(16, "0");
}

/** A LangGraph.js checkpointer that stores checkpoints in checkpointd over gRPC. */
export class GrpcCheckpointSaver extends BaseCheckpointSaver {
  readonly client: CheckpointdClient;
  private readonly ownsClient: boolean;

  constructor(target: string, options?: Omit<GrpcCheckpointSaverOptions, "target">);
  constructor(options: GrpcCheckpointSaverOptions);
  constructor(
    targetOrOptions: string | GrpcCheckpointSaverOptions,
    maybeOptions: Omit<GrpcCheckpointSaverOptions, "target"> = {},
  ) {
    const options: GrpcCheckpointSaverOptions =
      typeof targetOrOptions === "string" ? { ...maybeOptions, target: targetOrOptions } : targetOrOptions;
    super(options.serde);
    const clientOptions = Object.fromEntries(
      Object.entries(options).filter(([k]) => !CLIENT_OPTION_KEYS.has(k)),
    ) as CheckpointdClientOptions;
    if (options.client) {
      if (options.target !== undefined || Object.keys(clientOptions).length > 0) {
        throw new TypeError("pass either target (with channel options) or client, not both");
      }
      this.client = options.client;
      this.ownsClient = options.ownsClient ?? false;
    } else {
      if (!options.target) {
        throw new TypeError("pass a target such as 'checkpointd:50051' or a CheckpointdClient");
      }
      this.client = new CheckpointdClient(options.target, clientOptions);
      this.ownsClient = options.ownsClient ?? true;
    }
  }

  /**
   * A saver for the checkpointd at `target`, the counterpart of `PostgresSaver.fromConnString`:
   * where that took a database URL, this takes the server's address (`"checkpointd:50051"`,
   * `"grpc://host:port"`, or `"grpcs://host:port"` for TLS with the system roots), and the options of
   * the constructor. The server owns the database, so there is no `schema` option and `setup()` is a
   * no-op. Create one saver per process and share it: it holds one channel for every call.
   *
   * @example
   * const checkpointer = GrpcCheckpointSaver.fromConnString("checkpointd:50051");
   * const graph = workflow.compile({ checkpointer });
   */
  static fromConnString(target: string, options: Omit<GrpcCheckpointSaverOptions, "target" | "client"> = {}): GrpcCheckpointSaver {
    if (typeof target !== "string" || target.trim() === "") {
      throw new TypeError("fromConnString: pass checkpointd's address, e.g. 'checkpointd:50051'");
    }
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(target)?.[1]?.toLowerCase();
    if (scheme === "postgres" || scheme === "postgresql") {
      // The URL (with its password) is deliberately not echoed.
      throw new TypeError(
        "fromConnString: got a PostgreSQL URL; pass checkpointd's address (e.g. 'checkpointd:50051') " +
          "and give the database URL to the checkpointd server instead",
      );
    }
    if ("schema" in options) {
      throw new TypeError("fromConnString: checkpointd has no schema option (the server chooses its schema)");
    }
    if (scheme === "grpc" || scheme === "grpcs") {
      const address = target.slice(scheme.length + 3).replace(/\/+$/, "");
      return new GrpcCheckpointSaver(address, scheme === "grpcs" ? { tls: true, ...options } : options);
    }
    return new GrpcCheckpointSaver(target, options);
  }

  // ------------------------------------------------------------------ lifecycle

  /** No-op, for drop-in compatibility with PostgresSaver: the server migrates its database. */
  async setup(): Promise<void> {}

  /** Closes the client's channel (when the saver owns it). */
  async close(): Promise<void> {
    if (this.ownsClient) this.client.close();
  }

  /** Alias of {@link close}, like `PostgresSaver.end()`. */
  async end(): Promise<void> {
    await this.close();
  }

  // ------------------------------------------------------------------ versions

  /**
   * Integer versions (`undefined -> 1`, `n -> n + 1`), as LangGraph.js's savers. A string version
   * (a thread written by LangGraph's Python saver) continues in Python's format,
   * `"<int + 1, 32 digits>.<random>"`, so versions keep increasing. (Typed as numbers, like every
   * LangGraph.js checkpointer, since that is what `compile({ checkpointer })` accepts.)
   */
  override getNextVersion(current: number | undefined): number {
    const value: unknown = current;
    if (typeof value === "string") {
      const n = Number.parseInt(value.split(".")[0] ?? "", 10);
      if (!Number.isFinite(n)) throw new TypeError(`cannot continue channel version ${JSON.stringify(value)}`);
      return `${String(n + 1).padStart(32, "0")}.${pyRandom16()}` as unknown as number;
    }
    return typeof value === "number" ? value + 1 : 1;
  }

  // ------------------------------------------------------------------ writing

  override async put(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    newVersions: ChannelVersions,
  ): Promise<RunnableConfig> {
    if (config.configurable === undefined) {
      throw new Error(`Missing "configurable" field in "config" param`);
    }
    const { thread_id, checkpoint_ns = "", checkpoint_id } = config.configurable;
    const threadId = requireId("thread_id", thread_id, "put");
    const nextConfig: RunnableConfig = {
      configurable: { thread_id, checkpoint_ns, checkpoint_id: checkpoint.id },
    };
    const { document, blobValues, blobVersions } = splitCheckpoint(checkpoint, newVersions);
    const [blobs, metadataJson] = await Promise.all([
      this.dumpBlobs(blobValues, blobVersions),
      this.dumpMetadata(metadata),
    ]);
    const parent = idText(checkpoint_id);
    await this.client.put({
      threadId,
      checkpointNs: String(checkpoint_ns),
      checkpointId: checkpoint.id,
      parentCheckpointId: parent,
      checkpointJson: jsonBytes(document),
      metadataJson,
      blobs,
    });
    return nextConfig;
  }

  override async putWrites(
    config: RunnableConfig,
    writes: PendingWrite[],
    taskId: string,
    taskPath = "",
  ): Promise<void> {
    const { thread_id, checkpoint_ns = "", checkpoint_id } = config.configurable ?? {};
    const threadId = requireId("thread_id", thread_id, "putWrites");
    const checkpointId = requireId("checkpoint_id", checkpoint_id, "putWrites");
    if (writes.length === 0) return;
    const pythonInterrupts = this.serde instanceof PolyglotSerializer && this.serde.pythonInterrupts;
    const values = await Promise.all(
      writes.map(async ([channel, value]) => {
        const stored = pythonInterrupts && channel === INTERRUPT ? interruptsForPython(value) : value;
        const [type, data] = await this.serde.dumpsTyped(stored);
        return { channel, value: { type, data } };
      }),
    );
    await this.client.putWrites({
      threadId,
      checkpointNs: String(checkpoint_ns),
      checkpointId,
      taskId,
      taskPath,
      writes: values,
    });
  }

  // ------------------------------------------------------------------ reading

  override async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    const { thread_id, checkpoint_ns, checkpoint_id } = config.configurable ?? {};
    const threadId = idText(thread_id);
    // PostgresSaver matches `thread_id = NULL` here, i.e. nothing.
    if (threadId === undefined || threadId === "") return undefined;
    const res = await this.client.getTuple({
      threadId,
      checkpointNs: checkpoint_ns === undefined || checkpoint_ns === null ? "" : String(checkpoint_ns),
      checkpointId: checkpoint_id ? String(checkpoint_id) : undefined,
    });
    if (!res.tuple) return undefined;
    return this.loadTuple(res.tuple);
  }

  override async *list(
    config: RunnableConfig | undefined,
    options?: CheckpointListOptions,
  ): AsyncGenerator<CheckpointTuple> {
    const request = this.listRequest(config, options);
    for await (const message of this.client.list(request)) {
      if (message.tuple) yield await this.loadTuple(message.tuple);
    }
  }

  /** The List request for `list()`'s arguments, with PostgresSaver's filter rules. */
  private listRequest(
    config: RunnableConfig | undefined,
    options: CheckpointListOptions | undefined,
  ): Partial<ListRequest> {
    const { filter, before, limit } = options ?? {};
    const req: Partial<ListRequest> = {};
    const configurable = config?.configurable;
    if (configurable?.thread_id) req.threadId = String(configurable.thread_id);
    if (configurable?.checkpoint_ns !== undefined && configurable?.checkpoint_ns !== null) {
      req.checkpointNs = String(configurable.checkpoint_ns);
    }
    if (configurable?.checkpoint_id) req.checkpointId = String(configurable.checkpoint_id);
    if (filter && Object.keys(filter).length > 0) req.filterJson = jsonBytes(filter);
    if (before?.configurable?.checkpoint_id !== undefined) {
      // A `before` whose checkpoint_id is null matches nothing (SQL `checkpoint_id < NULL`).
      const id = before.configurable.checkpoint_id;
      req.before = { checkpointId: id === null ? undefined : String(id) };
    }
    if (limit !== undefined && limit !== null) {
      const n = Number.parseInt(String(limit), 10);
      if (!Number.isFinite(n)) throw new TypeError(`list: limit must be an integer, got ${String(limit)}`);
      if (n < 0) throw new RangeError("list: LIMIT must not be negative");
      req.limit = Math.min(n, UINT32_MAX);
    }
    return req;
  }

  /**
   * What a LangGraph `DeltaChannel` needs to rebuild its value at the checkpoint `config` names (the
   * latest of its namespace without a `checkpoint_id`), in one `GetDeltaChannelHistory` call: for
   * each channel, the value stored at the nearest ancestor of that checkpoint that has one (`seed`,
   * absent when the walk reached the root without one) and the channel's pending writes from that
   * ancestor down to the target's parent, oldest checkpoint first, each checkpoint's writes in
   * `writesSortKey` order (the target's own writes are not included). The contract is the base
   * class's (beta); a missing thread or checkpoint gives every channel no writes and no seed.
   */
  override async getDeltaChannelHistory(options: {
    config: RunnableConfig;
    channels: string[];
  }): Promise<Record<string, DeltaChannelHistory>> {
    const { config, channels } = options;
    if (channels.length === 0) return {};
    const { thread_id, checkpoint_ns, checkpoint_id } = config.configurable ?? {};
    const threadId = idText(thread_id);
    if (threadId === undefined || threadId === "") {
      // As getTuple: no thread matches nothing, so every channel starts empty.
      return Object.fromEntries(channels.map((channel) => [channel, { writes: [] }]));
    }
    const res = await this.client.getDeltaChannelHistory({
      threadId,
      checkpointNs: checkpoint_ns === undefined || checkpoint_ns === null ? "" : String(checkpoint_ns),
      checkpointId: checkpoint_id ? String(checkpoint_id) : undefined,
      channels,
    });
    const byChannel = new Map(res.channels.map((h) => [h.channel, h]));
    const result: Record<string, DeltaChannelHistory> = {};
    for (const channel of channels) {
      if (Object.prototype.hasOwnProperty.call(result, channel)) continue;
      const history = byChannel.get(channel);
      if (history === undefined) {
        throw new Error(`checkpointd returned no delta channel history for channel ${JSON.stringify(channel)}`);
      }
      result[channel] = await this.loadDeltaChannelHistory(history);
    }
    return result;
  }

  override async deleteThread(threadId: Id): Promise<void> {
    await this.client.deleteThread({ threadId: String(threadId) });
  }

  // ------------------------------------------------------------------ extensions (not in PostgresSaver)

  /**
   * Removes the checkpoints whose metadata `run_id` is one of `runIds`, in every thread, with their
   * writes and the blobs nothing else refers to. An empty list is a no-op.
   */
  async deleteForRuns(runIds: Iterable<Id>, call?: CallOptions): Promise<void> {
    if (typeof runIds === "string") throw new TypeError("runIds must be a list of run ids, not a string");
    const ids = Array.from(runIds, String);
    if (ids.length === 0) return;
    await this.client.deleteForRuns({ runIds: ids }, call);
  }

  /** Copies every checkpoint, blob and write of a thread (all namespaces) to another thread id. */
  async copyThread(sourceThreadId: Id, targetThreadId: Id, call?: CallOptions): Promise<void> {
    await this.client.copyThread(
      { sourceThreadId: String(sourceThreadId), targetThreadId: String(targetThreadId) },
      call,
    );
  }

  /**
   * Shrinks threads like LangGraph's Python Postgres saver: `"keep_latest"` (default) keeps the
   * latest checkpoint of each namespace, `"delete"` removes the threads. Rejects with a
   * `FailedPreconditionError` for `keep_latest` on a thread that uses a DeltaChannel.
   */
  async prune(
    threadIds: Iterable<Id>,
    options: { strategy?: PruneStrategyName } & CallOptions = {},
  ): Promise<void> {
    if (typeof threadIds === "string") throw new TypeError("threadIds must be a list of thread ids, not a string");
    const strategy = options.strategy ?? "keep_latest";
    const wire = PRUNE_STRATEGIES[strategy];
    if (wire === undefined) throw new RangeError(`Unknown prune strategy: ${JSON.stringify(strategy)}`);
    const ids = Array.from(threadIds, String);
    if (ids.length === 0) return;
    const { strategy: _s, ...call } = options;
    await this.client.prune({ threadIds: ids, strategy: wire }, call);
  }

  // ------------------------------------------------------------------ (de)serialization

  private async dumpBlobs(values: Record<string, unknown>, versions: ChannelVersions): Promise<Partial<ChannelBlob>[]> {
    return Promise.all(
      Object.entries(versions).map(async ([channel, version]) => {
        if (channel in values) {
          const [type, data] = await this.serde.dumpsTyped(values[channel]);
          return { channel, version: version.toString(), value: { type, data } };
        }
        return { channel, version: version.toString(), value: { type: "empty" } };
      }),
    );
  }

  private async dumpMetadata(metadata: CheckpointMetadata): Promise<Uint8Array> {
    const [, serialized] = await this.serde.dumpsTyped(metadata);
    const text = new TextDecoder().decode(serialized).replace(/\0/g, "");
    return jsonBytes(JSON.parse(text));
  }

  private async loadMetadata(metadata: Record<string, unknown>): Promise<CheckpointMetadata> {
    const [type, dumped] = await this.serde.dumpsTyped(metadata);
    return (await this.serde.loadsTyped(type, dumped)) as CheckpointMetadata;
  }

  /** A pending write as `getTuple` returns it: the value decoded (interrupts from Python's layout). */
  private async loadWrite(w: WirePendingWrite): Promise<CheckpointPendingWrite> {
    const value = await this.serde.loadsTyped(w.value?.type ?? "", w.value?.data ?? EMPTY);
    return [w.taskId, w.channel, w.channel === INTERRUPT ? interruptsFromPython(value) : value];
  }

  /** One channel's history: writes kept in the server's order (oldest checkpoint first). */
  private async loadDeltaChannelHistory(h: WireDeltaChannelHistory): Promise<DeltaChannelHistory> {
    const writes = await Promise.all(h.writes.map((w) => this.loadWrite(w)));
    if (h.seedBlob !== undefined) {
      return { writes, seed: await this.serde.loadsTyped(h.seedBlob.type, h.seedBlob.data ?? EMPTY) };
    }
    if (h.seedInlineJson !== undefined) {
      let seed: unknown;
      try {
        seed = JSON.parse(utf8.decode(h.seedInlineJson));
      } catch (err) {
        throw new Error(`checkpointd returned an invalid inline seed for channel ${JSON.stringify(h.channel)}: ${String(err)}`, {
          cause: err,
        });
      }
      return { writes, seed };
    }
    return { writes };
  }

  private async loadTuple(t: WireTuple): Promise<CheckpointTuple> {
    const document = parseJson(t.checkpointJson, "checkpoint");
    const metadata = parseJson(t.metadataJson, "metadata");
    const threadId = t.config?.threadId ?? "";
    const checkpointNs = t.config?.checkpointNs ?? "";
    const checkpointId = t.config?.checkpointId ?? "";
    const parentId = t.parentConfig?.checkpointId || undefined;

    const channelVersions = (document.channel_versions ?? {}) as ChannelVersions;
    const blobs: Array<[string, string, Uint8Array]> = [];
    for (const b of t.channelValues) {
      const type = b.value?.type ?? "empty";
      if (type !== "empty") blobs.push([b.channel, type, b.value?.data ?? EMPTY]);
    }
    if ((document.v as number) < 4 && parentId !== undefined && t.pendingSends.length > 0) {
      // Legacy checkpoint: fold the parent's pending sends into __pregel_tasks (as PostgresSaver).
      const sends = await Promise.all(t.pendingSends.map((s) => this.serde.loadsTyped(s.type, s.data ?? EMPTY)));
      const [type, data] = await this.serde.dumpsTyped(sends);
      blobs.push([TASKS, type, data]);
      channelVersions[TASKS] =
        Object.keys(channelVersions).length > 0
          ? maxChannelVersion(...Object.values(channelVersions))
          : this.getNextVersion(undefined);
    }
    const inline = (document.channel_values ?? {}) as Record<string, unknown>;
    const loaded = await Promise.all(
      blobs.map(async ([channel, type, data]) => [channel, await this.serde.loadsTyped(type, data)] as const),
    );
    const checkpoint = {
      ...document,
      channel_versions: channelVersions,
      versions_seen: document.versions_seen ?? {},
      channel_values: { ...inline, ...Object.fromEntries(loaded) },
    } as Checkpoint;

    // Already in writesSortKey order: the server sorts by (task_path, task_id, idx), by code point.
    const pendingWrites = await Promise.all(t.pendingWrites.map((w) => this.loadWrite(w)));

    return {
      config: { configurable: { thread_id: threadId, checkpoint_ns: checkpointNs, checkpoint_id: checkpointId } },
      checkpoint,
      metadata: await this.loadMetadata(metadata),
      parentConfig:
        parentId !== undefined
          ? { configurable: { thread_id: threadId, checkpoint_ns: checkpointNs, checkpoint_id: parentId } }
          : undefined,
      pendingWrites,
    };
  }
}
