/**
 * Polyglot threads: a LangGraph (Python) agent and a LangGraph.js agent share one checkpointd.
 *
 * - A thread written by LangGraph's Python AsyncPostgresSaver (on the database checkpointd serves)
 *   is listed by the TypeScript client with the same ids, order, parents, namespaces, metadata,
 *   channel versions, inline values and pending writes. The other values are Python's msgpack,
 *   which LangGraph.js's serializer does not read: PolyglotSerializer hands them over as opaque
 *   ForeignValues.
 * - A thread written by LangGraph.js through checkpointd is listed the same way by the Python saver.
 * - A thread one language's graph left at an interrupt is resumed by the other language's graph of
 *   the same shape, both through checkpointd's clients: LangGraph.js writes integer channel versions
 *   and the Python client continues them as integers; Python writes "<32 digits>.<random>" strings and
 *   GrpcCheckpointSaver continues them in that format, so every thread's versions stay comparable.
 */
import { Annotation, Command, END, START, Send, StateGraph, interrupt } from "@langchain/langgraph";
import type { CheckpointTuple } from "@langchain/langgraph-checkpoint";

import { CheckpointdClient, ForeignValue, GrpcCheckpointSaver, PolyglotSerializer } from "../src/index.js";
import { closePools, dropDatabase, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";
import { interopPython, runInterop, runResume, type PyCheckpoint } from "./python-env.js";

let db: ScratchDb | undefined;
let server: Server | undefined;
let saver: GrpcCheckpointSaver;
let client: CheckpointdClient;

beforeAll(async () => {
  interopPython(); // creates the pinned virtual environment on first use
  ({ db, server } = await startServerWithDatabase("tsclient_interop"));
  client = new CheckpointdClient(server.target);
  saver = new GrpcCheckpointSaver({ client, serde: new PolyglotSerializer() });
}, 600_000);

afterAll(async () => {
  client?.close();
  await server?.stop();
  await closePools();
  await dropDatabase(db);
});

const isInline = (v: unknown) => v === null || ["string", "number", "boolean"].includes(typeof v);

/** A TypeScript-side tuple in the shape interop.py prints. */
function shape(t: CheckpointTuple): PyCheckpoint {
  const c = t.config.configurable!;
  const values = t.checkpoint.channel_values as Record<string, unknown>;
  return {
    thread_id: c.thread_id,
    checkpoint_ns: c.checkpoint_ns,
    checkpoint_id: c.checkpoint_id,
    parent_checkpoint_id: t.parentConfig?.configurable?.checkpoint_id ?? null,
    metadata: t.metadata as Record<string, unknown>,
    v: t.checkpoint.v,
    ts: t.checkpoint.ts,
    channel_versions: Object.fromEntries(Object.entries(t.checkpoint.channel_versions).map(([k, v]) => [k, String(v)])),
    channels: Object.keys(values).sort(),
    inline_values: Object.fromEntries(Object.entries(values).filter(([, v]) => isInline(v))),
    pending_writes: (t.pendingWrites ?? []).map((w) => [w[0], w[1]] as [string, string]),
  };
}

async function listThread(threadId: string, options?: Parameters<GrpcCheckpointSaver["list"]>[1]) {
  const out: CheckpointTuple[] = [];
  for await (const t of saver.list({ configurable: { thread_id: threadId } }, options)) out.push(t);
  return out;
}

describe("a thread written by LangGraph (Python)", () => {
  const threadId = "written-by-python";
  let expected: PyCheckpoint[];
  let listed: CheckpointTuple[];

  beforeAll(async () => {
    expected = runInterop("write", db!.url, threadId);
    listed = await listThread(threadId);
  }, 120_000);

  it("has the history the Python saver reports, with subgraph namespaces", () => {
    expect(expected.length).toBeGreaterThanOrEqual(8);
    const namespaces = new Set(expected.map((c) => c.checkpoint_ns.split(":")[0]));
    expect(namespaces).toEqual(new Set(["", "summarize"]));
    expect(expected.some((c) => c.pending_writes.some(([, ch]) => ch === "__interrupt__"))).toBe(true);
  });

  it("is listed by GrpcCheckpointSaver with the same ids, order, parents, namespaces and metadata", () => {
    expect(listed.map(shape)).toEqual(expected);
    // Newest first: checkpoint ids descend.
    const ids = listed.map((t) => t.checkpoint.id);
    expect([...ids].sort().reverse()).toEqual(ids);
  });

  it("keeps Python's own values opaque and byte for byte", async () => {
    const latest = await saver.getTuple({ configurable: { thread_id: threadId } });
    expect(shape(latest!)).toEqual(expected.find((c) => c.checkpoint_ns === ""));
    const items = latest!.checkpoint.channel_values.items as ForeignValue;
    expect(items).toBeInstanceOf(ForeignValue);
    expect(items.type).toBe("msgpack");
    expect(latest!.metadata).toMatchObject({ source: "loop", user: "py-user", lang: "python" });
  });

  it("is listed by the thin client too", async () => {
    const raw = [];
    for await (const m of client.list({ threadId })) raw.push(m.tuple!);
    expect(
      raw.map((t) => ({
        ns: t.config!.checkpointNs,
        id: t.config!.checkpointId,
        parent: t.parentConfig?.checkpointId ?? null,
        metadata: JSON.parse(Buffer.from(t.metadataJson).toString("utf8")),
      })),
    ).toEqual(expected.map((c) => ({ ns: c.checkpoint_ns, id: c.checkpoint_id, parent: c.parent_checkpoint_id, metadata: c.metadata })));
  });

  it("filters the Python metadata the same way", async () => {
    const byFilter = async (filter: Record<string, unknown>) => (await listThread(threadId, { filter })).map((t) => t.checkpoint.id);
    const matching = (pred: (c: PyCheckpoint) => boolean) => expected.filter(pred).map((c) => c.checkpoint_id);
    expect(await byFilter({ source: "input" })).toEqual(matching((c) => c.metadata.source === "input"));
    expect(await byFilter({ user: "py-user", step: 2 })).toEqual(matching((c) => c.metadata.user === "py-user" && c.metadata.step === 2));
    const before = expected[2]!.checkpoint_id;
    const page = await listThread(threadId, { before: { configurable: { checkpoint_id: before } }, limit: 3 });
    expect(page.map((t) => t.checkpoint.id)).toEqual(matching((c) => c.checkpoint_id < before).slice(0, 3));
  });
});

describe("a thread written by LangGraph.js through checkpointd", () => {
  it("is listed by the Python saver with the same ids, order, parents, namespaces, metadata and values", async () => {
    const threadId = "written-by-typescript";
    const State = Annotation.Root({
      topic: Annotation<string>(),
      items: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
      summary: Annotation<string | undefined>(),
      approved: Annotation<boolean | undefined>(),
    });
    const Inner = Annotation.Root({ items: Annotation<string[]>(), summary: Annotation<string | undefined>() });
    const summarize = new StateGraph(Inner)
      .addNode("count", (s) => ({ summary: `${s.items.length} items` }))
      .addEdge(START, "count")
      .addEdge("count", END)
      .compile();
    const jsSaver = new GrpcCheckpointSaver(server!.target);
    const graph = new StateGraph(State)
      .addNode("plan", (s) => ({ items: [`plan:${s.topic}`] }))
      .addNode("work", (s: { item: string }) => ({ items: [`work:${s.item}`] }))
      .addNode("summarize", async (s, config) => ({ summary: (await summarize.invoke({ items: s.items }, config)).summary }))
      .addNode("ask", (s) => ({ approved: interrupt({ question: "approve?", summary: s.summary }) === "yes" }))
      .addEdge(START, "plan")
      .addConditionalEdges("plan", () => [new Send("work", { item: "a" }), new Send("work", { item: "b" })])
      .addEdge("work", "summarize")
      .addEdge("summarize", "ask")
      .addEdge("ask", END)
      .compile({ checkpointer: jsSaver });
    const config = { configurable: { thread_id: threadId } };
    await graph.invoke({ topic: "interop" }, config);
    await graph.invoke(new Command({ resume: "yes" }), config);
    await jsSaver.close();

    const fromPython = runInterop("read", db!.url, threadId);
    const fromTs = (await listThread(threadId)).map(shape);
    expect(fromTs.length).toBeGreaterThanOrEqual(8);
    expect(new Set(fromTs.map((c) => c.checkpoint_ns.split(":")[0]))).toEqual(new Set(["", "summarize"]));
    expect(fromPython).toEqual(fromTs);
  });
});

describe("a thread resumed by the other language", () => {
  // The same graph as test/python/resume.py: START -> prepare -> ask (interrupt) -> finish -> END.
  const ResumeState = Annotation.Root({
    question: Annotation<string>(),
    summary: Annotation<string>(),
    answer: Annotation<string>(),
    steps: Annotation<number>(),
  });
  const resumeGraph = (checkpointer: GrpcCheckpointSaver, interruptBefore?: Array<"ask">) =>
    new StateGraph(ResumeState)
      .addNode("prepare", (s) => ({ summary: `about ${s.question}`, steps: 1 }))
      .addNode("ask", (s) => ({ answer: interrupt(s.question) as string }))
      .addNode("finish", (s) => ({ summary: `${s.summary}: ${s.answer}`, steps: s.steps + 1 }))
      .addEdge(START, "prepare")
      .addEdge("prepare", "ask")
      .addEdge("ask", "finish")
      .addEdge("finish", END)
      .compile({ checkpointer, interruptBefore });
  const finished = { question: "Ship it?", summary: "about Ship it?: yes", answer: "yes", steps: 2 };
  const versionTypes = (t: CheckpointTuple | undefined) =>
    [...new Set(Object.values(t!.checkpoint.channel_versions).map((v) => typeof v))].sort();

  it("stops at an interrupt() in LangGraph.js and is resumed by LangGraph (Python) with integer versions", async () => {
    const threadId = "interrupted-in-typescript";
    const config = { configurable: { thread_id: threadId } };
    // `saver` has a PolyglotSerializer: the interrupt is stored in the form Python revives as Interrupt.
    const paused = await resumeGraph(saver).invoke({ question: "Ship it?" }, config);
    expect((paused as { __interrupt__?: Array<{ value: unknown }> }).__interrupt__?.[0]?.value).toBe("Ship it?");
    const pausedState = await resumeGraph(saver).getState(config);
    expect(pausedState.tasks[0]?.interrupts[0]?.value).toBe("Ship it?");
    expect(versionTypes(await saver.getTuple(config))).toEqual(["number"]);

    const py = runResume("resume", server!.target, threadId);
    expect(py.result).toEqual(finished);
    expect(py.next).toEqual([]);
    expect(py.version_types).toEqual(["int"]);

    const state = await resumeGraph(saver).getState(config);
    expect(state.values).toEqual(finished);
    expect(state.next).toEqual([]);
    for await (const t of saver.list(config)) expect(versionTypes(t)).toEqual(["number"]);
  });

  // With LangGraph.js's own serializer, the interrupt() write is JSON `[{ value, id }]`, which
  // LangGraph (Python) reads as dicts, not as its Interrupt: Python cannot resume that interrupt. A
  // breakpoint (interruptBefore) needs no interrupt write.
  it("stops at a breakpoint in LangGraph.js and is continued by LangGraph (Python) with integer versions", async () => {
    const threadId = "started-in-typescript";
    const config = { configurable: { thread_id: threadId } };
    const jsSaver = GrpcCheckpointSaver.fromConnString(server!.target);
    try {
      await resumeGraph(jsSaver, ["ask"]).invoke({ question: "Ship it?" }, config);
      expect((await resumeGraph(jsSaver, ["ask"]).getState(config)).next).toEqual(["ask"]);
      expect(versionTypes(await jsSaver.getTuple(config))).toEqual(["number"]);
    } finally {
      await jsSaver.close();
    }

    // Python runs "ask" (it stops at its interrupt()), then resumes it and finishes.
    const py = runResume("continue", server!.target, threadId);
    expect(py.result).toEqual(finished);
    expect(py.next).toEqual([]);
    expect(py.version_types).toEqual(["int"]);

    // LangGraph.js reads the finished state, with integer versions throughout.
    const state = await resumeGraph(saver).getState(config);
    expect(state.values).toEqual(finished);
    expect(state.next).toEqual([]);
    for await (const t of saver.list(config)) expect(versionTypes(t)).toEqual(["number"]);
  });

  it("stops in LangGraph (Python) and is resumed by LangGraph.js with Python's string versions", async () => {
    const threadId = "started-in-python";
    const config = { configurable: { thread_id: threadId } };
    const py = runResume("start", server!.target, threadId);
    expect(py.interrupt).toBe("Ship it?");
    expect(py.next).toEqual(["ask"]);
    expect(py.version_types).toEqual(["str"]);
    const pythonMax = Object.values(py.versions).sort().at(-1)!;

    // PolyglotSerializer: the interrupt write is Python's msgpack, kept opaque.
    const resumed = await resumeGraph(saver).invoke(new Command({ resume: "yes" }), config);
    expect(resumed).toEqual(finished);
    const latest = await saver.getTuple(config);
    expect(versionTypes(latest)).toEqual(["string"]);
    const versions = Object.values(latest!.checkpoint.channel_versions) as unknown as string[];
    for (const v of versions) expect(v).toMatch(/^\d{32}\.\d*\.?\d+$/);
    expect(versions.sort().at(-1)! > pythonMax).toBe(true);

    const back = runResume("state", server!.target, threadId);
    expect(back.result).toEqual(finished);
    expect(back.next).toEqual([]);
    expect(back.version_types).toEqual(["str"]);
  });
});
