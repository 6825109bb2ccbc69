/**
 * GrpcCheckpointSaver beyond the validation suite: it writes the same rows as LangGraph.js's
 * PostgresSaver (differential, on one database), reads data laid out by LangGraph's Python saver,
 * and implements the extensions (deleteForRuns, copyThread, prune).
 */
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import {
  TASKS,
  emptyCheckpoint,
  type BaseCheckpointSaver,
  type Checkpoint,
  type CheckpointMetadata,
  type CheckpointTuple,
} from "@langchain/langgraph-checkpoint";
import type { RunnableConfig } from "@langchain/core/runnables";

import {
  CheckpointdClient,
  FailedPreconditionError,
  ForeignValue,
  GrpcCheckpointSaver,
  InvalidArgumentError,
  PolyglotSerializer,
} from "../src/index.js";
import { Server, closePools, dropDatabase, dumpTables, startServerWithDatabase, type ScratchDb } from "./harness.js";

let db: ScratchDb | undefined;
let server: Server | undefined;
let grpcSaver: GrpcCheckpointSaver;
let pgSaver: PostgresSaver;
let raw: CheckpointdClient;

beforeAll(async () => {
  ({ db, server } = await startServerWithDatabase("tsclient_saver"));
  grpcSaver = new GrpcCheckpointSaver(server.target);
  pgSaver = PostgresSaver.fromConnString(db.url);
  raw = new CheckpointdClient(server.target);
});

afterAll(async () => {
  await grpcSaver?.close();
  await pgSaver?.end();
  raw?.close();
  await server?.stop();
  await closePools();
  await dropDatabase(db);
});

const meta = (extra: Record<string, unknown> = {}): CheckpointMetadata =>
  ({ source: "loop", step: 0, parents: {}, ...extra }) as CheckpointMetadata;

function checkpoint(id: string, values: Record<string, unknown>, versions: Record<string, number | string>, v = 4): Checkpoint {
  return {
    v,
    id,
    ts: "2024-05-01T10:00:00.000Z",
    channel_values: values,
    channel_versions: versions,
    versions_seen: { node: { a: 1 } },
  };
}

/** The same sequence of saver calls, for any saver, on one thread. */
async function scenario(saver: BaseCheckpointSaver, thread: string) {
  const root: RunnableConfig = { configurable: { thread_id: thread, checkpoint_ns: "" } };
  const values = {
    text: "x",
    count: 3,
    flag: true,
    nothing: null,
    list: [1, "two", { three: 3 }],
    nested: { set: new Set([1, 2]), map: new Map([["k", "v"]]), when: new Error("boom") },
    raw: new Uint8Array([0, 1, 2, 255]),
    undef: undefined,
  };
  const c1 = await saver.put(
    root,
    checkpoint("1ef00000-0000-6000-8000-000000000001", values, { text: 1, count: 1, flag: 1, nothing: 1, list: 1, nested: 1, raw: 1, undef: 1, gone: 1 }),
    meta({ source: "input", step: -1, user: "u1", tags: ["a", "b"], deep: { x: { y: 1 } } }),
    { text: 1, count: 1, flag: 1, nothing: 1, list: 1, nested: 1, raw: 1, undef: 1, gone: 1 },
  );
  await saver.putWrites(c1, [["text", "y"], ["__interrupt__", { value: "ask" }]], "task-b", "");
  await saver.putWrites(c1, [["text", "ignored"], ["__interrupt__", "ignored"]], "task-b", ""); // first wins
  await saver.putWrites(c1, [["__error__", "e1"]], "task-a", "");
  await saver.putWrites(c1, [["__error__", "e2"]], "task-a", ""); // all special: last wins
  await saver.putWrites(c1, [["count", 1], ["count", 2]], "task-c", "");
  await saver.putWrites(c1, [], "task-d", "");
  await saver.putWrites(c1, [["__error__", "x1"], ["__error__", "x2"]], "task-e", ""); // one request, all special: last wins
  await saver.putWrites(c1, [["__error__", "y1"], ["__error__", "y2"], ["ch", "v"]], "task-f", ""); // mixed: first wins
  const c2 = await saver.put(
    c1,
    checkpoint("1ef00000-0000-6000-8000-000000000002", { ...values, text: "z", count: 4 }, { text: 2, count: 2, flag: 1, nothing: 1, list: 1, nested: 1, raw: 1, undef: 1 }),
    meta({ step: 1 }),
    { text: 2, count: 2 },
  );
  // A re-put replaces the document and metadata but keeps the first parent.
  await saver.put(
    { configurable: { thread_id: thread, checkpoint_ns: "", checkpoint_id: "1ef00000-0000-6000-8000-00000000000f" } },
    checkpoint("1ef00000-0000-6000-8000-000000000002", { text: "again" }, { text: 2 }),
    meta({ step: 2, replaced: true }),
    { text: 2 },
  );
  // A subgraph namespace.
  const child = await saver.put(
    { configurable: { thread_id: thread, checkpoint_ns: "child:1" } },
    checkpoint("1ef00000-0000-6000-8000-000000000003", { inner: ["i"] }, { inner: 1 }),
    meta({ parents: { "": c2.configurable?.checkpoint_id } }),
    { inner: 1 },
  );
  await saver.putWrites(child, [["inner", ["j"]]], "task-x", "");
  // A legacy (v1) checkpoint whose parent has pending sends.
  const l1 = await saver.put(
    { configurable: { thread_id: thread, checkpoint_ns: "legacy" } },
    checkpoint("1ef00000-0000-6000-8000-000000000004", {}, {}, 1),
    meta(),
    {},
  );
  await saver.putWrites(l1, [[TASKS, "send-1"], [TASKS, "send-2"]], "task-1", "");
  await saver.putWrites(l1, [[TASKS, "send-3"]], "task-0", "");
  await saver.put(l1, checkpoint("1ef00000-0000-6000-8000-000000000005", {}, { other: 3 }, 1), meta({ step: 1 }), {});
  return { c1, c2, child };
}

function normalize<T>(value: T, from: string, to: string): T {
  return JSON.parse(JSON.stringify(value, (_k, v) => (v === from ? to : v)), (_k, v) => v) as T;
}

async function readAll(saver: BaseCheckpointSaver, thread: string) {
  const list: CheckpointTuple[] = [];
  for await (const t of saver.list({ configurable: { thread_id: thread } })) list.push(t);
  const latest = await saver.getTuple({ configurable: { thread_id: thread } });
  const legacy = await saver.getTuple({ configurable: { thread_id: thread, checkpoint_ns: "legacy" } });
  return { list, latest, legacy };
}

describe("GrpcCheckpointSaver and PostgresSaver", () => {
  const pgThread = `diff-pg-${Date.now()}`;
  const grpcThread = `diff-grpc-${Date.now()}`;

  beforeAll(async () => {
    await scenario(pgSaver, pgThread);
    await scenario(grpcSaver, grpcThread);
  });

  it("write the same rows", async () => {
    const pgRows = await dumpTables(db!.url, [pgThread]);
    const grpcRows = await dumpTables(db!.url, [grpcThread]);
    expect(grpcRows.checkpoints.length).toBe(5);
    expect(grpcRows.checkpoint_blobs.length).toBe(12);
    expect(grpcRows.checkpoint_writes.length).toBe(12);
    const relabel = (rows: typeof pgRows) =>
      JSON.parse(JSON.stringify(rows).replaceAll(pgThread, "THREAD").replaceAll(grpcThread, "THREAD"));
    expect(relabel(grpcRows)).toEqual(relabel(pgRows));
    // Spot checks of what the rows hold.
    const c1 = grpcRows.checkpoints.find((r) => r.checkpoint_id === "1ef00000-0000-6000-8000-000000000001")!;
    expect(c1.checkpoint).not.toHaveProperty("channel_values");
    expect(c1.parent_checkpoint_id).toBeNull();
    expect(c1.metadata).toEqual({ source: "input", step: -1, parents: {}, user: "u1", tags: ["a", "b"], deep: { x: { y: 1 } } });
    const c2 = grpcRows.checkpoints.find((r) => r.checkpoint_id === "1ef00000-0000-6000-8000-000000000002")!;
    expect(c2.parent_checkpoint_id).toBe("1ef00000-0000-6000-8000-000000000001");
    expect(c2.metadata).toMatchObject({ replaced: true, step: 2 });
    const blobs = grpcRows.checkpoint_blobs.map((r) => `${r.channel}@${r.version}:${r.type}`);
    expect(blobs).toContain("gone@1:empty");
    expect(blobs).toContain("raw@1:bytes");
    expect(blobs).toContain("text@2:json");
    expect(grpcRows.checkpoint_writes.map((r) => [r.task_id, r.idx, r.channel, Buffer.from(r.blob as Buffer).toString()])).toEqual(
      expect.arrayContaining([
        ["task-a", -1, "__error__", '"e2"'],
        ["task-b", -3, "__interrupt__", '{"value":"ask"}'],
        ["task-b", 0, "text", '"y"'],
        ["task-c", 0, "count", "1"],
        ["task-c", 1, "count", "2"],
        ["task-e", -1, "__error__", '"x2"'],
        ["task-f", -1, "__error__", '"y1"'],
        ["task-f", 2, "ch", '"v"'],
      ]),
    );
  });

  it("read the same tuples back", async () => {
    const fromPg = await readAll(pgSaver, pgThread);
    const fromGrpc = await readAll(grpcSaver, grpcThread);
    expect(fromGrpc.list.map((t) => [t.config.configurable?.checkpoint_ns, t.checkpoint.id])).toEqual([
      ["legacy", "1ef00000-0000-6000-8000-000000000005"],
      ["legacy", "1ef00000-0000-6000-8000-000000000004"],
      ["child:1", "1ef00000-0000-6000-8000-000000000003"],
      ["", "1ef00000-0000-6000-8000-000000000002"],
      ["", "1ef00000-0000-6000-8000-000000000001"],
    ]);
    expect(normalize(fromGrpc, grpcThread, "THREAD")).toEqual(normalize(fromPg, pgThread, "THREAD"));
    // Values come back as the serializer made them (not via JSON): Sets, Maps, bytes.
    const first = fromGrpc.list[4]!;
    expect(first.checkpoint.channel_values).toMatchObject({ text: "x", count: 3, flag: true, nothing: null });
    expect((first.checkpoint.channel_values.nested as { set: Set<number> }).set).toEqual(new Set([1, 2]));
    expect(first.checkpoint.channel_values.raw).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(first.checkpoint.channel_values.raw as Uint8Array)).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(first.checkpoint.channel_values).not.toHaveProperty("gone");
    expect(first.pendingWrites).toEqual([
      ["task-a", "__error__", "e2"],
      ["task-b", "__interrupt__", { value: "ask" }],
      ["task-b", "text", "y"],
      ["task-c", "count", 1],
      ["task-c", "count", 2],
      ["task-e", "__error__", "x2"],
      ["task-f", "__error__", "y1"],
      ["task-f", "ch", "v"],
    ]);
    expect(fromGrpc.legacy?.checkpoint.channel_values).toEqual({ [TASKS]: ["send-3", "send-1", "send-2"] });
    expect(fromGrpc.legacy?.checkpoint.channel_versions[TASKS]).toBe(3);
  });

  it("list with the same filters", async () => {
    const cases = [
      { filter: { user: "u1" } },
      { filter: { deep: { x: {} } } },
      { filter: { tags: ["b"] } },
      { filter: { user: null } },
      { filter: {} },
      { limit: 2 },
      { limit: 0 },
      { before: { configurable: { checkpoint_id: "1ef00000-0000-6000-8000-000000000003" } } },
      { before: { configurable: { checkpoint_id: null } } },
      { before: { configurable: {} } },
      { filter: { source: "loop" }, limit: 1 },
    ];
    for (const options of cases) {
      for (const ns of [undefined, "", "child:1"]) {
        const ids = async (saver: BaseCheckpointSaver, thread: string) => {
          const out: string[] = [];
          for await (const t of saver.list({ configurable: { thread_id: thread, checkpoint_ns: ns } }, options)) out.push(t.checkpoint.id);
          return out;
        };
        expect(await ids(grpcSaver, grpcThread), JSON.stringify({ options, ns })).toEqual(await ids(pgSaver, pgThread));
      }
    }
  });
});

describe("GrpcCheckpointSaver", () => {
  it("stores the task path with pending writes and orders writes by (task_path, task_id, idx)", async () => {
    const config = await grpcSaver.put({ configurable: { thread_id: "paths" } }, emptyCheckpoint(), meta(), {});
    await grpcSaver.putWrites(config, [["c", "second"]], "task-a", "~__pregel_pull, b");
    await grpcSaver.putWrites(config, [["c", "first"]], "task-z", "~__pregel_pull, a");
    await grpcSaver.putWrites(config, [["c", "input"]], "task-q", "");
    const t = await grpcSaver.getTuple(config);
    expect(t?.pendingWrites?.map((w) => w[2])).toEqual(["input", "first", "second"]);
    const rows = await dumpTables(db!.url, ["paths"]);
    expect(rows.checkpoint_writes.map((r) => r.task_path).sort()).toEqual(["", "~__pregel_pull, a", "~__pregel_pull, b"]);
  });

  it("validates its arguments like PostgresSaver", async () => {
    const cp = emptyCheckpoint();
    await expect(grpcSaver.put({}, cp, meta(), {})).rejects.toThrow(/configurable/);
    await expect(grpcSaver.put({ configurable: { checkpoint_ns: "" } }, cp, meta(), {})).rejects.toThrow(/thread_id/);
    await expect(grpcSaver.putWrites({ configurable: { thread_id: "t" } }, [["a", 1]], "task")).rejects.toThrow(/checkpoint_id/);
    expect(await grpcSaver.getTuple({ configurable: {} })).toBeUndefined();
    await expect(grpcSaver.list({ configurable: { thread_id: "t" } }, { limit: -1 }).next()).rejects.toThrow(RangeError);
    // Numeric thread ids are stored as text, as node-postgres does.
    const c = await grpcSaver.put({ configurable: { thread_id: 42 } }, cp, meta(), {});
    expect((await grpcSaver.getTuple(c))?.config.configurable?.thread_id).toBe("42");
  });

  it("reports a value PostgreSQL cannot store with the server's INVALID_ARGUMENT", async () => {
    const err = await grpcSaver
      .put({ configurable: { thread_id: "nul" } }, emptyCheckpoint(), meta({ note: "a\u0000b" }), {})
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).details).toMatch(/^metadata_json contains a NUL character \(\\u0000\) at byte \d+, which PostgreSQL cannot store$/);
    // PostgresSaver fails on the same input too (PostgreSQL rejects \u0000 in JSONB).
    await expect(pgSaver.put({ configurable: { thread_id: "nul" } }, emptyCheckpoint(), meta({ note: "a\u0000b" }), {})).rejects.toThrow(/unsupported Unicode escape sequence/);
  });

  it("uses integer channel versions, and continues Python's string versions in their format", () => {
    expect(grpcSaver.getNextVersion(undefined)).toBe(1);
    expect(grpcSaver.getNextVersion(41)).toBe(42);
    const next = grpcSaver.getNextVersion("00000000000000000000000000000002.0.4712819046467180" as unknown as number) as unknown as string;
    expect(next).toMatch(/^00000000000000000000000000000003\.\d*\.?\d+/);
    expect(next > "00000000000000000000000000000002.0.9999999999999999").toBe(true);
  });

  it("reads a checkpoint written the Python saver's way (inline values, string versions, msgpack blobs)", async () => {
    const v1 = "00000000000000000000000000000001.0.1234567890123456";
    const doc = {
      v: 4,
      id: "1ef00000-0000-6000-8000-0000000000a1",
      ts: "2024-05-01T10:00:00+00:00",
      channel_values: { count: 3, note: "hi", "branch:to:a": null },
      channel_versions: { count: v1, note: v1, items: v1, "branch:to:a": v1 },
      versions_seen: {},
      updated_channels: ["count"],
    };
    await raw.put({
      threadId: "from-python",
      checkpointId: doc.id,
      checkpointJson: Buffer.from(JSON.stringify(doc)),
      metadataJson: Buffer.from(JSON.stringify({ source: "loop", step: 0, parents: {}, user: "u1" })),
      blobs: [{ channel: "items", version: v1, value: { type: "msgpack", data: Buffer.from([0x92, 0x01, 0x02]) } }],
    });
    await raw.putWrites({
      threadId: "from-python",
      checkpointId: doc.id,
      taskId: "t",
      writes: [{ channel: "branch:to:a", value: { type: "null", data: Buffer.alloc(0) } }],
    });
    // LangGraph.js's JsonPlusSerializer does not know msgpack: the default saver says so.
    await expect(grpcSaver.getTuple({ configurable: { thread_id: "from-python" } })).rejects.toThrow(/msgpack/);
    const polyglot = new GrpcCheckpointSaver({ client: raw, serde: new PolyglotSerializer() });
    const t = await polyglot.getTuple({ configurable: { thread_id: "from-python" } });
    expect(t?.checkpoint.channel_values).toEqual({
      count: 3,
      note: "hi",
      "branch:to:a": null,
      items: new ForeignValue("msgpack", new Uint8Array([0x92, 0x01, 0x02])),
    });
    expect(t?.checkpoint.channel_versions.count).toBe(v1);
    expect(t?.metadata).toEqual({ source: "loop", step: 0, parents: {}, user: "u1" });
    expect(t?.pendingWrites).toEqual([["t", "branch:to:a", null]]);
    // Re-saving a foreign value writes its bytes unchanged.
    const next = await polyglot.put(
      t!.config,
      { ...t!.checkpoint, id: "1ef00000-0000-6000-8000-0000000000a2" },
      t!.metadata!,
      { items: polyglot.getNextVersion(v1 as unknown as number) },
    );
    const rows = await dumpTables(db!.url, ["from-python"]);
    const items = rows.checkpoint_blobs.filter((r) => r.channel === "items");
    expect(items.map((r) => [r.type, Buffer.from(r.blob as Buffer).toString("hex")])).toEqual([
      ["msgpack", "920102"],
      ["msgpack", "920102"],
    ]);
    expect((await polyglot.getTuple(next))?.parentConfig?.configurable?.checkpoint_id).toBe(doc.id);
  });

  it("deletes a thread in every namespace", async () => {
    for (const ns of ["", "child:1"]) {
      await grpcSaver.put({ configurable: { thread_id: "del", checkpoint_ns: ns } }, emptyCheckpoint(), meta(), {});
    }
    await grpcSaver.put({ configurable: { thread_id: "keep" } }, emptyCheckpoint(), meta(), {});
    await grpcSaver.deleteThread("del");
    await grpcSaver.deleteThread("never-existed");
    const rows = await dumpTables(db!.url, ["del", "keep"]);
    expect(rows.checkpoints.map((r) => r.thread_id)).toEqual(["keep"]);
  });

  it("deletes the checkpoints of runs", async () => {
    const a = await grpcSaver.put({ configurable: { thread_id: "runs" } }, emptyCheckpoint(), meta({ run_id: "r1" }), {});
    const b = await grpcSaver.put(a, emptyCheckpoint(), meta({ run_id: "r2" }), {});
    await grpcSaver.deleteForRuns([]);
    await grpcSaver.deleteForRuns(["r1"]);
    const left: CheckpointTuple[] = [];
    for await (const t of grpcSaver.list({ configurable: { thread_id: "runs" } })) left.push(t);
    expect(left.map((t) => t.checkpoint.id)).toEqual([b.configurable?.checkpoint_id]);
    expect(left[0]!.parentConfig).toBeUndefined();
    await expect(grpcSaver.deleteForRuns("r2" as unknown as string[])).rejects.toThrow(TypeError);
  });

  it("copies a thread", async () => {
    const a = await grpcSaver.put({ configurable: { thread_id: "src" } }, emptyCheckpoint(), meta({ step: 0 }), {});
    await grpcSaver.putWrites(a, [["x", 1]], "task");
    const b = await grpcSaver.put(a, { ...emptyCheckpoint(), channel_values: { v: [1] }, channel_versions: { v: 1 } }, meta({ step: 1 }), { v: 1 });
    await grpcSaver.copyThread("src", "dst");
    const read = async (thread: string) => {
      const out: CheckpointTuple[] = [];
      for await (const t of grpcSaver.list({ configurable: { thread_id: thread } })) out.push(t);
      return normalize(out, thread, "T");
    };
    expect(await read("dst")).toEqual(await read("src"));
    expect((await grpcSaver.getTuple({ configurable: { thread_id: "dst" } }))?.checkpoint.id).toBe(b.configurable?.checkpoint_id);
    await expect(grpcSaver.copyThread("src", "src")).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("prunes threads", async () => {
    let config: RunnableConfig = { configurable: { thread_id: "prune-me" } };
    for (let i = 0; i < 3; i++) config = await grpcSaver.put(config, emptyCheckpoint(), meta({ step: i }), {});
    await grpcSaver.put({ configurable: { thread_id: "prune-gone" } }, emptyCheckpoint(), meta(), {});
    await grpcSaver.prune(["prune-me"]);
    const left: CheckpointTuple[] = [];
    for await (const t of grpcSaver.list({ configurable: { thread_id: "prune-me" } })) left.push(t);
    expect(left.map((t) => t.checkpoint.id)).toEqual([config.configurable?.checkpoint_id]);
    expect(left[0]!.parentConfig).toBeUndefined();
    await grpcSaver.prune(["prune-gone"], { strategy: "delete" });
    expect(await grpcSaver.getTuple({ configurable: { thread_id: "prune-gone" } })).toBeUndefined();
    await grpcSaver.prune([]);
    await expect(grpcSaver.prune(["x"], { strategy: "bogus" as "delete" })).rejects.toThrow(/Unknown prune strategy/);
  });

  it("refuses keep_latest on a thread with a delta channel (FAILED_PRECONDITION)", async () => {
    await grpcSaver.put(
      { configurable: { thread_id: "delta" } },
      emptyCheckpoint(),
      meta({ counters_since_delta_snapshot: { messages: [1, 1] } }),
      {},
    );
    await expect(grpcSaver.prune(["delta"])).rejects.toBeInstanceOf(FailedPreconditionError);
  });
});

describe("List paging", () => {
  it("streams every page in order, with limits, filters and before (server page size 2)", async () => {
    const paged = await new Server(db!.url, ["--list-page-size", "2"]).start();
    const saver = new GrpcCheckpointSaver(paged.target);
    try {
      let config: RunnableConfig = { configurable: { thread_id: "paging", checkpoint_ns: "" } };
      const ids: string[] = [];
      for (let i = 0; i < 9; i++) {
        config = await saver.put(config, { ...emptyCheckpoint(), channel_values: { i: [i] }, channel_versions: { i: i + 1 } }, meta({ step: i, even: i % 2 === 0 }), { i: i + 1 });
        ids.push(config.configurable!.checkpoint_id);
      }
      const newestFirst = [...ids].reverse();
      const list = async (options?: Parameters<GrpcCheckpointSaver["list"]>[1]) => {
        const out: string[] = [];
        for await (const t of saver.list({ configurable: { thread_id: "paging" } }, options)) out.push(t.checkpoint.id);
        return out;
      };
      const pgList = async (options?: Parameters<GrpcCheckpointSaver["list"]>[1]) => {
        const out: string[] = [];
        for await (const t of pgSaver.list({ configurable: { thread_id: "paging" } }, options)) out.push(t.checkpoint.id);
        return out;
      };
      expect(await list()).toEqual(newestFirst);
      for (const options of [{ limit: 1 }, { limit: 2 }, { limit: 3 }, { limit: 5 }, { limit: 100 }, { filter: { even: true } }, { filter: { even: false }, limit: 3 }, { before: { configurable: { checkpoint_id: ids[6] } }, limit: 3 }, { before: { configurable: { checkpoint_id: ids[6] } }, filter: { even: true } }]) {
        expect(await list(options), JSON.stringify(options)).toEqual(await pgList(options));
      }
      const tuples: CheckpointTuple[] = [];
      for await (const t of saver.list({ configurable: { thread_id: "paging" } })) tuples.push(t);
      expect(tuples.map((t) => t.checkpoint.channel_values.i)).toEqual([8, 7, 6, 5, 4, 3, 2, 1, 0].map((i) => [i]));
      // Stopping early cancels the stream; the next call works.
      for await (const _t of saver.list({ configurable: { thread_id: "paging" } })) break;
      expect((await list({ limit: 4 })).length).toBe(4);
    } finally {
      await saver.close();
      await paged.stop();
    }
  });
});
