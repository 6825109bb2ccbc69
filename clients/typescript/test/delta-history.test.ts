/**
 * GrpcCheckpointSaver.getDeltaChannelHistory (LangGraph.js's `BaseCheckpointSaver` method, beta) over
 * checkpointd's GetDeltaChannelHistory RPC: for each channel, the walk starts at the target's parent
 * and follows parents until a checkpoint stores a value for the channel (a non-"empty" blob at its
 * version, or a non-null inline value); the writes are the channel's pending writes at every
 * checkpoint of the walk (the seed's included), oldest checkpoint first, each checkpoint's writes in
 * (task_path, task_id, idx) order. Checked against hand-computed answers, against the base class's
 * default walk (getTuple + parentConfig) on the same data, and through a real LangGraph.js graph with
 * a DeltaValue field.
 */
import { status, type sendUnaryData } from "@grpc/grpc-js";
import {
  BaseCheckpointSaver,
  DeltaSnapshot,
  MemorySaver,
  isDeltaSnapshot,
  type Checkpoint,
  type CheckpointMetadata,
  type DeltaChannelHistory,
} from "@langchain/langgraph-checkpoint";
import { DeltaValue, END, START, StateGraph, StateSchema } from "@langchain/langgraph";
import type { RunnableConfig } from "@langchain/core/runnables";
import { z } from "zod";

import {
  CheckpointdClient,
  ForeignValue,
  GrpcCheckpointSaver,
  InvalidArgumentError,
  PolyglotSerializer,
  proto,
} from "../src/index.js";
import { FakeServer, serviceError } from "./fake-server.js";
import { closePools, dropDatabase, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";

let db: ScratchDb | undefined;
let server: Server | undefined;
let saver: GrpcCheckpointSaver;
let raw: CheckpointdClient;

beforeAll(async () => {
  ({ db, server } = await startServerWithDatabase("tsclient_delta"));
  raw = new CheckpointdClient(server.target);
  saver = new GrpcCheckpointSaver({ client: raw });
});

afterAll(async () => {
  await saver?.close();
  raw?.close();
  await server?.stop();
  await closePools();
  await dropDatabase(db);
});

const meta = { source: "loop", step: 0, parents: {} } as CheckpointMetadata;
const utf8 = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString("utf8"));
const json = (value: unknown) => ({ type: "json", data: Buffer.from(JSON.stringify(value)) });

/** Saves a checkpoint with `saver` (LangGraph.js layout: one blob per channel of `newVersions`). */
async function putCp(
  parent: RunnableConfig,
  id: string,
  values: Record<string, unknown>,
  versions: Record<string, number>,
  newVersions: Record<string, number> = versions,
): Promise<RunnableConfig> {
  const checkpoint: Checkpoint = {
    v: 4,
    id,
    ts: "2024-05-01T10:00:00.000Z",
    channel_values: values,
    channel_versions: versions,
    versions_seen: {},
  };
  return saver.put(parent, checkpoint, meta, newVersions);
}

const at = (thread: string, checkpointId?: string, ns?: string): RunnableConfig => ({
  configurable: {
    thread_id: thread,
    ...(ns === undefined ? {} : { checkpoint_ns: ns }),
    ...(checkpointId === undefined ? {} : { checkpoint_id: checkpointId }),
  },
});

const history = (config: RunnableConfig, channels: string[]) => saver.getDeltaChannelHistory({ config, channels });

/** The base class's default walk (getTuple + parentConfig) over the same saver. */
const defaultWalk = (config: RunnableConfig, channels: string[]) =>
  BaseCheckpointSaver.prototype.getDeltaChannelHistory.call(saver, { config, channels });

/** `[taskId, value]` of each write, checking each write is on its channel. */
function writesOf(h: Record<string, DeltaChannelHistory>, channel: string): Array<[string, unknown]> {
  const entry = h[channel];
  expect(entry, `no entry for ${channel}`).toBeDefined();
  for (const w of entry!.writes) expect(w[1]).toBe(channel);
  return entry!.writes.map((w) => [w[0], w[2]]);
}

describe("getDeltaChannelHistory against checkpointd", () => {
  // A linear chain: cp-01 (stores messages as a DeltaSnapshot blob and `other` as a plain blob)
  // <- cp-02 (messages "empty" at a new version) <- cp-03 (messages "empty" again; the target).
  const LIN = "delta-linear";
  beforeAll(async () => {
    const c1 = await putCp(at(LIN, undefined, ""), "cp-01", { messages: new DeltaSnapshot(["m0"]), other: "x" }, { messages: 1, other: 1 });
    await saver.putWrites(c1, [["messages", "b1"]], "task-b", "");
    await saver.putWrites(c1, [["messages", "a1"], ["other", "o1"], ["messages", { m: new Map([["k", 1]]) }]], "task-a", "");
    const c2 = await putCp(c1, "cp-02", {}, { messages: 2, other: 1 }, { messages: 2 });
    // task_path orders before task_id: task-z (~1) comes before task-x (~2).
    await saver.putWrites(c2, [["messages", "x2"]], "task-x", "~2");
    await saver.putWrites(c2, [["messages", "z1"], ["unrelated", 0]], "task-z", "~1");
    const c3 = await putCp(c2, "cp-03", {}, { messages: 3, other: 1 }, { messages: 3 });
    // Writes at the target are pending for the next step: never part of the history.
    await saver.putWrites(c3, [["messages", "pending"], ["other", "pending"]], "task-p", "");
  });

  it("walks a linear chain from the target's parent to a blob seed, oldest writes first", async () => {
    const h = await history(at(LIN, "cp-03"), ["messages", "other", "never"]);
    expect(Object.keys(h)).toEqual(["messages", "other", "never"]);
    expect(isDeltaSnapshot(h.messages!.seed)).toBe(true);
    expect((h.messages!.seed as DeltaSnapshot).value).toEqual(["m0"]);
    expect(writesOf(h, "messages")).toEqual([
      ["task-a", "a1"],
      ["task-a", { m: new Map([["k", 1]]) }],
      ["task-b", "b1"],
      ["task-z", "z1"],
      ["task-x", "x2"],
    ]);
    // `other` still has its cp-01 version at cp-02, whose blob is stored: the walk stops at cp-02.
    expect(h.other).toEqual({ writes: [], seed: "x" });
    // A channel never stored: the walk reaches the root, no seed.
    expect(h.never).toEqual({ writes: [] });
    expect("seed" in h.never!).toBe(false);
    expect(h).toEqual(await defaultWalk(at(LIN, "cp-03"), ["messages", "other", "never"]));
  });

  it("includes the seed checkpoint's own writes, and has nothing before the root", async () => {
    const h = await history(at(LIN, "cp-02"), ["messages", "other"]);
    expect((h.messages!.seed as DeltaSnapshot).value).toEqual(["m0"]);
    expect(writesOf(h, "messages").map(([, v]) => v)).toEqual(["a1", { m: new Map([["k", 1]]) }, "b1"]);
    expect(h.other).toEqual({ writes: [["task-a", "other", "o1"]], seed: "x" });
    expect(h).toEqual(await defaultWalk(at(LIN, "cp-02"), ["messages", "other"]));
    // The root has no parent: no writes, no seed (its own writes are pending).
    expect(await history(at(LIN, "cp-01"), ["messages", "other"])).toEqual({ messages: { writes: [] }, other: { writes: [] } });
  });

  it("orders a checkpoint's writes by code point, as writesSortKey does (not by collation)", async () => {
    const T = "delta-order";
    const c1 = await putCp(at(T), "cp-01", {}, {});
    // Code point order: "B" < "a", U+FFFF < an astral character (UTF-16 order would put it first),
    // "~10" < "~1:x"; the path before the task id.
    for (const [task, path] of [["task-a", ""], ["task-B", ""], ["\u{1F600}", "~1"], ["\uFFFF", "~1"], ["t2", "~10"], ["t1", "~1:x"]]) {
      await saver.putWrites(c1, [["messages", `${task}${path}`]], task!, path);
    }
    await putCp(c1, "cp-02", {}, {});
    const h = await history(at(T, "cp-02"), ["messages"]);
    expect(writesOf(h, "messages").map(([, v]) => v)).toEqual(["task-B", "task-a", "\uFFFF~1", "\u{1F600}~1", "t2~10", "t1~1:x"]);
    expect(h).toEqual(await defaultWalk(at(T, "cp-02"), ["messages"]));
  });

  it("targets the namespace's latest checkpoint when checkpoint_id is absent", async () => {
    const latest = await history(at(LIN), ["messages", "other"]);
    expect(latest).toEqual(await history(at(LIN, "cp-03"), ["messages", "other"]));
    expect(latest).not.toEqual(await history(at(LIN, "cp-02"), ["messages", "other"]));
    // checkpoint_ns defaults to "" and an empty checkpoint_id means none.
    expect(await history({ configurable: { thread_id: LIN, checkpoint_id: "" } }, ["messages"])).toEqual({ messages: latest.messages });
  });

  it("reads inline primitive seeds (the Python saver's layout), skipping null inline values", async () => {
    const T = "delta-inline";
    const v = (n: number) => `${String(n).padStart(32, "0")}.0.1234567890123456`;
    const doc = (id: string, values: Record<string, unknown>, n: number) =>
      Buffer.from(
        JSON.stringify({
          v: 4,
          id,
          ts: "2024-05-01T10:00:00+00:00",
          channel_values: values,
          channel_versions: { counter: v(n), name: v(n), flag: v(1), items: v(1) },
          versions_seen: {},
        }),
      );
    const put = (id: string, parent: string | undefined, values: Record<string, unknown>, n: number, blobs: proto.ChannelBlob[] = []) =>
      raw.put({ threadId: T, checkpointId: id, parentCheckpointId: parent, checkpointJson: doc(id, values, n), metadataJson: Buffer.from("{}"), blobs });
    const writes = (id: string, taskId: string, ws: Array<[string, unknown]>) =>
      raw.putWrites({ threadId: T, checkpointId: id, taskId, writes: ws.map(([channel, value]) => ({ channel, value: json(value) })) });

    await put("p1", undefined, { counter: 5, name: "abc", flag: true }, 1, [
      { channel: "items", version: v(1), value: { type: "msgpack", data: Buffer.from([0x91, 0x01]) } },
    ]);
    await writes("p1", "task-a", [["counter", 1], ["name", "d"]]);
    // counter is null inline at p2 (not a value); name is an "empty" blob at its new version; flag
    // (false is a value) is inline.
    await put("p2", "p1", { counter: null, flag: false }, 2, [
      { channel: "name", version: v(2), value: { type: "empty" } },
    ]);
    await writes("p2", "task-b", [["counter", 2], ["flag", true]]);
    await put("p3", "p2", {}, 3);
    await writes("p3", "task-c", [["counter", 3]]);

    const polyglot = new GrpcCheckpointSaver({ client: raw, serde: new PolyglotSerializer() });
    const h = await polyglot.getDeltaChannelHistory({ config: at(T, "p3"), channels: ["counter", "name", "flag", "items"] });
    expect(h).toEqual({
      counter: { writes: [["task-a", "counter", 1], ["task-b", "counter", 2]], seed: 5 },
      name: { writes: [["task-a", "name", "d"]], seed: "abc" },
      flag: { writes: [["task-b", "flag", true]], seed: false },
      items: { writes: [], seed: new ForeignValue("msgpack", new Uint8Array([0x91, 0x01])) },
    });

    const res = await raw.getDeltaChannelHistory({ threadId: T, checkpointId: "p3", channels: ["counter", "name", "items"] });
    expect(res.channels.map((c) => [c.channel, utf8(c.seedInlineJson), c.seedBlob?.type])).toEqual([
      ["counter", "5", undefined],
      ["name", '"abc"', undefined],
      ["items", undefined, "msgpack"],
    ]);
  });

  it("omits the seed when the walk reaches the root without a stored value", async () => {
    const T = "delta-noseed";
    const c1 = await putCp(at(T), "cp-01", {}, {});
    await saver.putWrites(c1, [["messages", 1]], "task");
    const c2 = await putCp(c1, "cp-02", {}, { messages: 1 });
    await saver.putWrites(c2, [["messages", 2]], "task");
    await putCp(c2, "cp-03", {}, { messages: 2 });
    const h = await history(at(T, "cp-03"), ["messages"]);
    expect(h).toEqual({ messages: { writes: [["task", "messages", 1], ["task", "messages", 2]] } });
    expect("seed" in h.messages!).toBe(false);
    expect(h).toEqual(await defaultWalk(at(T, "cp-03"), ["messages"]));
    const res = await raw.getDeltaChannelHistory({ threadId: T, checkpointId: "cp-03", channels: ["messages"] });
    expect(res.channels[0]!.seedBlob).toBeUndefined();
    expect(res.channels[0]!.seedInlineJson).toBeUndefined();
  });

  it("follows only the target's ancestors on a forked thread", async () => {
    const T = "delta-fork";
    const c1 = await putCp(at(T), "cp-01", { messages: ["s"] }, { messages: 1 });
    await saver.putWrites(c1, [["messages", "w1"]], "task");
    const c2a = await putCp(c1, "cp-02a", {}, { messages: 2 });
    await saver.putWrites(c2a, [["messages", "a"]], "task");
    const c2b = await putCp(c1, "cp-02b", {}, { messages: 2 });
    await saver.putWrites(c2b, [["messages", "b"]], "task");
    const c3a = await putCp(c2a, "cp-03a", {}, { messages: 3 });
    await saver.putWrites(c3a, [["messages", "a3"]], "task");
    const c3b = await putCp(c2b, "cp-03b", {}, { messages: 3 });
    await saver.putWrites(c3b, [["messages", "b3"]], "task");
    await putCp(c3b, "cp-04", {}, { messages: 4 });
    await putCp(c3a, "cp-04a", {}, { messages: 4 });

    const values = async (id?: string) => writesOf(await history(at(T, id), ["messages"]), "messages").map(([, v]) => v);
    expect(await values("cp-04")).toEqual(["w1", "b", "b3"]);
    expect(await values("cp-04a")).toEqual(["w1", "a", "a3"]);
    expect(await values("cp-03a")).toEqual(["w1", "a"]);
    expect(await values("cp-03b")).toEqual(["w1", "b"]);
    expect(await values(undefined)).toEqual(["w1", "a", "a3"]); // latest: cp-04a
    for (const id of ["cp-04", "cp-04a", "cp-03a", "cp-02b"]) {
      const h = await history(at(T, id), ["messages"]);
      expect(h.messages!.seed).toEqual(["s"]);
      expect(h).toEqual(await defaultWalk(at(T, id), ["messages"]));
    }
  });

  it("stays within the subgraph namespace it is asked about", async () => {
    const T = "delta-ns";
    // The same checkpoint ids in both namespaces.
    const r1 = await putCp(at(T, undefined, ""), "cp-01", { messages: ["root"] }, { messages: 1 });
    await saver.putWrites(r1, [["messages", "r"]], "task");
    await putCp(r1, "cp-02", {}, { messages: 2 });
    const k1 = await putCp(at(T, undefined, "child:1"), "cp-01", { messages: ["child"] }, { messages: 1 });
    await saver.putWrites(k1, [["messages", "c1"]], "task");
    const k2 = await putCp(k1, "cp-02", {}, { messages: 2 });
    await saver.putWrites(k2, [["messages", "c2"]], "task");
    await putCp(k2, "cp-03", {}, { messages: 3 });

    const child = await history(at(T, undefined, "child:1"), ["messages"]);
    expect(child).toEqual({ messages: { writes: [["task", "messages", "c1"], ["task", "messages", "c2"]], seed: ["child"] } });
    expect(await history(at(T, "cp-02", "child:1"), ["messages"])).toEqual({
      messages: { writes: [["task", "messages", "c1"]], seed: ["child"] },
    });
    const root = { messages: { writes: [["task", "messages", "r"]], seed: ["root"] } };
    expect(await history(at(T, "cp-02", ""), ["messages"])).toEqual(root);
    expect(await history(at(T, "cp-02"), ["messages"])).toEqual(root); // checkpoint_ns defaults to ""
    expect(await history(at(T, undefined, "child:2"), ["messages"])).toEqual({ messages: { writes: [] } });
    expect(child).toEqual(await defaultWalk(at(T, undefined, "child:1"), ["messages"]));
  });

  it("answers a missing thread or checkpoint with no writes and no seed", async () => {
    const empty = { a: { writes: [] }, b: { writes: [] } };
    expect(await history(at("delta-no-such-thread"), ["a", "b"])).toEqual(empty);
    expect(await history(at("delta-no-such-thread", "cp-01"), ["a", "b"])).toEqual(empty);
    expect(await history(at(LIN, "no-such-checkpoint"), ["a", "b"])).toEqual(empty);
    const res = await raw.getDeltaChannelHistory({ threadId: "delta-no-such-thread", channels: ["b", "a"] });
    expect(res.channels.map((c) => [c.channel, c.writes.length, c.seedBlob, c.seedInlineJson])).toEqual([
      ["b", 0, undefined, undefined],
      ["a", 0, undefined, undefined],
    ]);
  });

  it("answers several channels at once, each once, in the order asked", async () => {
    const h = await history(at(LIN, "cp-03"), ["other", "messages", "other", "never"]);
    expect(Object.keys(h)).toEqual(["other", "messages", "never"]);
    expect(h.other).toEqual({ writes: [], seed: "x" });
    expect(writesOf(h, "messages")).toHaveLength(5);
    const res = await raw.getDeltaChannelHistory({ threadId: LIN, checkpointId: "cp-03", channels: ["other", "messages", "other", "never"] });
    expect(res.channels.map((c) => c.channel)).toEqual(["other", "messages", "never"]);
  });

  it("returns the raw messages from CheckpointdClient.getDeltaChannelHistory", async () => {
    const res = await raw.getDeltaChannelHistory({ threadId: LIN, checkpointNs: "", checkpointId: "cp-03", channels: ["messages", "other"] });
    const [messages, other] = res.channels;
    expect(messages!.channel).toBe("messages");
    expect(messages!.seedInlineJson).toBeUndefined();
    expect(messages!.seedBlob?.type).toBe("json");
    expect(messages!.writes.map((w) => [w.taskId, w.channel, w.taskPath, w.idx, w.value?.type, utf8(w.value?.data)])).toEqual([
      ["task-a", "messages", "", 0, "json", '"a1"'],
      ["task-a", "messages", "", 2, "json", expect.any(String)],
      ["task-b", "messages", "", 0, "json", '"b1"'],
      ["task-z", "messages", "~1", 0, "json", '"z1"'],
      ["task-x", "messages", "~2", 0, "json", '"x2"'],
    ]);
    expect([other!.channel, other!.writes, other!.seedBlob?.type, utf8(other!.seedBlob?.data), other!.seedInlineJson]).toEqual([
      "other",
      [],
      "json",
      '"x"',
      undefined,
    ]);
    // Without checkpoint_id: the latest checkpoint.
    expect(await raw.getDeltaChannelHistory({ threadId: LIN, channels: ["messages", "other"] })).toEqual(res);
    // Per-call options pass through like any unary call.
    expect(await raw.getDeltaChannelHistory({ threadId: LIN, channels: ["other"] }, { timeoutMs: 5_000, metadata: { "x-test": "1" } })).toEqual({
      channels: [other],
    });
  });

  it("rebuilds a LangGraph.js DeltaValue field exactly as MemorySaver does", async () => {
    const State = new StateSchema({
      history: new DeltaValue(z.array(z.string()).default(() => []), {
        inputSchema: z.string(),
        reducer: (current: string[], writes: string[]) => [...current, ...writes],
        snapshotFrequency: 3,
      }),
      n: z.number().default(0),
    });
    const build = (checkpointer: BaseCheckpointSaver) =>
      new StateGraph(State)
        .addNode("step", (s) => ({ history: `h${s.n}`, n: s.n + 1 }))
        .addEdge(START, "step")
        .addConditionalEdges("step", (s) => (s.n < 7 ? "step" : END))
        .compile({ checkpointer });
    const spy = vi.spyOn(raw, "getDeltaChannelHistory");
    const run = async (checkpointer: BaseCheckpointSaver, thread: string) => {
      const graph = build(checkpointer);
      const config = { configurable: { thread_id: thread } };
      await graph.invoke({ history: "start" }, config);
      await graph.invoke({ history: "again" }, config);
      const states: unknown[] = [];
      for await (const snapshot of graph.getStateHistory(config)) states.push(snapshot.values);
      return { final: (await graph.getState(config)).values, states };
    };
    const ours = await run(saver, "delta-graph");
    expect(spy).toHaveBeenCalled();
    spy.mockRestore();
    const reference = await run(new MemorySaver(), "delta-graph");
    expect(ours).toEqual(reference);
    expect((ours.final as { history: string[] }).history).toEqual([
      "start", "h0", "h1", "h2", "h3", "h4", "h5", "h6", "again", "h7",
    ]);
  });
});

describe("getDeltaChannelHistory against a fake server", () => {
  let fake: FakeServer | undefined;
  let client: CheckpointdClient | undefined;

  afterEach(async () => {
    client?.close();
    client = undefined;
    await fake?.stop();
    fake = undefined;
  });

  const answer = (call: { request: proto.GetDeltaChannelHistoryRequest }, cb: sendUnaryData<proto.GetDeltaChannelHistoryResponse>) =>
    cb(null, {
      channels: [...new Set(call.request.channels)].map((channel) =>
        proto.DeltaChannelHistory.fromPartial({
          channel,
          writes: [{ taskId: "t", channel, value: json(call.request) }],
          seedInlineJson: Buffer.from("7"),
        }),
      ),
    });

  it("makes no call for no channels, and none without a thread id", async () => {
    fake = await new FakeServer({ getDeltaChannelHistory: answer }).start();
    client = new CheckpointdClient(fake.target);
    const s = new GrpcCheckpointSaver({ client });
    expect(await s.getDeltaChannelHistory({ config: at("t"), channels: [] })).toEqual({});
    expect(await s.getDeltaChannelHistory({ config: { configurable: {} }, channels: ["a"] })).toEqual({ a: { writes: [] } });
    expect(fake.count("getDeltaChannelHistory")).toBe(0);
  });

  it("sends the config's thread, namespace (default \"\") and checkpoint id, and the channels", async () => {
    fake = await new FakeServer({ getDeltaChannelHistory: answer }).start();
    client = new CheckpointdClient(fake.target);
    const s = new GrpcCheckpointSaver({ client });
    const h = await s.getDeltaChannelHistory({ config: at("t", "cp-9", "child:1"), channels: ["a", "b", "a"] });
    expect(Object.keys(h)).toEqual(["a", "b"]);
    expect(h.a!.seed).toBe(7);
    expect(h.a!.writes[0]![2]).toEqual({ threadId: "t", checkpointNs: "child:1", checkpointId: "cp-9", channels: ["a", "b", "a"] });
    const latest = await s.getDeltaChannelHistory({ config: at("t"), channels: ["a"] });
    expect(latest.a!.writes[0]![2]).toEqual({ threadId: "t", checkpointNs: "", channels: ["a"] });
  });

  it("uses the client's token, metadata and retries, and names the RPC in errors", async () => {
    let attempts = 0;
    fake = await new FakeServer({
      getDeltaChannelHistory: (call, cb) => {
        attempts += 1;
        if (call.request.threadId === "bad") cb(serviceError(status.INVALID_ARGUMENT, "thread_id must not be empty"));
        else if (attempts < 3) cb(serviceError(status.UNAVAILABLE, "database unreachable"));
        else answer(call, cb);
      },
    }).start();
    client = new CheckpointdClient(fake.target, {
      token: "s3cret",
      metadata: { traceparent: "00-abc-def-01" },
      retry: { initialBackoffMs: 10, maxBackoffMs: 20 },
    });
    const res = await client.getDeltaChannelHistory({ threadId: "t", channels: ["a"] });
    expect(res.channels.map((c) => c.channel)).toEqual(["a"]);
    expect(attempts).toBe(3);
    expect(fake.calls.map((c) => [c.method, c.metadata.authorization, c.metadata.traceparent])).toEqual(
      Array(3).fill(["getDeltaChannelHistory", "Bearer s3cret", "00-abc-def-01"]),
    );
    const err = await client.getDeltaChannelHistory({ threadId: "bad", channels: ["a"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toMatchObject({ method: "GetDeltaChannelHistory", retryable: false });
    expect(attempts).toBe(4);
  });

  it("rejects a response that leaves out a requested channel", async () => {
    fake = await new FakeServer({ getDeltaChannelHistory: (_call, cb) => cb(null, { channels: [] }) }).start();
    client = new CheckpointdClient(fake.target);
    const s = new GrpcCheckpointSaver({ client });
    await expect(s.getDeltaChannelHistory({ config: at("t"), channels: ["a"] })).rejects.toThrow(/no delta channel history for channel "a"/);
  });
});
