/**
 * A real LangGraph.js graph (fan-out with Send, a subgraph, an interrupt, then a resume) runs
 * through checkpointd, and behaves exactly as it does on LangGraph.js's own PostgresSaver.
 */
import { Annotation, Command, END, MemorySaver, START, Send, StateGraph, interrupt } from "@langchain/langgraph";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";

import { GrpcCheckpointSaver } from "../src/index.js";
import { closePools, dropDatabase, dumpTables, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";

let db: ScratchDb | undefined;
let server: Server | undefined;
const toClose: Array<() => Promise<void>> = [];

beforeAll(async () => {
  ({ db, server } = await startServerWithDatabase("tsclient_graph"));
});

afterAll(async () => {
  for (const close of toClose) await close().catch(() => undefined);
  await server?.stop();
  await closePools();
  await dropDatabase(db);
});

const State = Annotation.Root({
  topic: Annotation<string>(),
  items: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
  approved: Annotation<boolean | undefined>(),
  summary: Annotation<string | undefined>(),
});

type Interrupted = Record<string, unknown> & { items: string[]; __interrupt__: Array<{ id?: string; value: unknown }> };

const Inner = Annotation.Root({ summary: Annotation<string | undefined>(), items: Annotation<string[]>() });

function buildGraph(checkpointer: BaseCheckpointSaver) {
  // A subgraph, so the thread also has checkpoints in a child namespace.
  const summarize = new StateGraph(Inner)
    .addNode("count", (s) => ({ summary: `${s.items.length} items` }))
    .addEdge(START, "count")
    .addEdge("count", END)
    .compile();
  return new StateGraph(State)
    .addNode("plan", (s) => ({ items: [`plan:${s.topic}`] }))
    .addNode("work", (s: { item: string }) => ({ items: [`work:${s.item}`] }))
    .addNode("summarize", async (s, config) => ({ summary: (await summarize.invoke({ items: s.items }, config)).summary }))
    .addNode("ask", (s) => {
      const answer = interrupt({ question: "approve?", summary: s.summary });
      return { approved: answer === "yes", items: [`answer:${String(answer)}`] };
    })
    .addNode("finish", (s) => ({ items: [s.approved ? "done" : "rejected"] }))
    .addEdge(START, "plan")
    .addConditionalEdges("plan", () => [new Send("work", { item: "a" }), new Send("work", { item: "b" })])
    .addEdge("work", "summarize")
    .addEdge("summarize", "ask")
    .addEdge("ask", "finish")
    .addEdge("finish", END)
    .compile({ checkpointer });
}

async function runThrough(saver: BaseCheckpointSaver, resumeWith: () => BaseCheckpointSaver, threadId: string) {
  const config = { configurable: { thread_id: threadId }, metadata: { user: "u1" } };
  const first = (await buildGraph(saver).invoke({ topic: "t" }, config)) as unknown as Interrupted;
  const paused = await buildGraph(saver).getState(config);
  // Resume from a fresh saver (a new process, as far as the graph can tell).
  const resumedSaver = resumeWith();
  const graph = buildGraph(resumedSaver);
  const final = await graph.invoke(new Command({ resume: "yes" }), config);
  const history = [];
  for await (const snapshot of graph.getStateHistory(config)) history.push(snapshot);
  return { first, paused, final, history, resumedSaver };
}

describe("a LangGraph.js graph on checkpointd", () => {
  it("interrupts, persists, and resumes from another saver instance", async () => {
    const saver = new GrpcCheckpointSaver(server!.target);
    toClose.push(() => saver.close());
    const { first, paused, final, history, resumedSaver } = await runThrough(
      saver,
      () => new GrpcCheckpointSaver(server!.target),
      "graph-thread",
    );
    expect(first.__interrupt__).toHaveLength(1);
    expect(first.__interrupt__[0].value).toEqual({ question: "approve?", summary: "3 items" });
    expect(first.items).toEqual(["plan:t", "work:a", "work:b"]);
    expect(paused.next).toEqual(["ask"]);
    expect(paused.tasks[0]?.interrupts[0]?.value).toEqual({ question: "approve?", summary: "3 items" });
    expect(final.items).toEqual(["plan:t", "work:a", "work:b", "answer:yes", "done"]);
    expect(final.approved).toBe(true);

    // The history, newest first, is a parent chain from the input checkpoint to the end.
    expect(history.map((s) => [s.metadata?.source, s.metadata?.step, s.next])).toEqual([
      ["loop", 5, []],
      ["loop", 4, ["finish"]],
      ["loop", 3, ["ask"]],
      ["loop", 2, ["summarize"]],
      ["loop", 1, ["work", "work"]],
      ["loop", 0, ["plan"]],
      ["input", -1, ["__start__"]],
    ]);
    for (let i = 0; i < history.length - 1; i++) {
      expect(history[i]!.parentConfig?.configurable?.checkpoint_id).toBe(history[i + 1]!.config.configurable?.checkpoint_id);
    }
    expect(history.at(-1)!.parentConfig).toBeUndefined();
    // LangGraph.js copies the configurable thread_id into the metadata (the same on PostgresSaver).
    expect(history[0]!.metadata).toMatchObject({ thread_id: "graph-thread" });

    // The interrupt and the resume were stored as special writes; the subgraph in its namespace.
    const rows = await dumpTables(db!.url, ["graph-thread"]);
    const special = rows.checkpoint_writes.filter((r) => (r.idx as number) < 0).map((r) => [r.channel, r.idx]);
    expect(special).toEqual(expect.arrayContaining([["__interrupt__", -3], ["__resume__", -4]]));
    const namespaces = new Set(rows.checkpoints.map((r) => r.checkpoint_ns));
    expect([...namespaces].some((ns) => String(ns).startsWith("summarize:"))).toBe(true);
    expect(rows.checkpoint_writes.some((r) => String(r.task_path).startsWith("~"))).toBe(true);

    await (resumedSaver as GrpcCheckpointSaver).close();
  });

  it("gives the same results and history as PostgresSaver and MemorySaver", async () => {
    const withoutIds = (state: Record<string, unknown>) => ({
      ...state,
      __interrupt__: (state.__interrupt__ as Array<{ value: unknown }> | undefined)?.map((i) => i.value),
    });
    const normalize = (run: Awaited<ReturnType<typeof runThrough>>) => ({
      first: withoutIds(run.first),
      final: run.final,
      paused: { values: run.paused.values, next: run.paused.next },
      history: run.history.map((s) => ({
        values: s.values,
        next: s.next,
        source: s.metadata?.source,
        step: s.metadata?.step,
        user: (s.metadata as Record<string, unknown> | undefined)?.user,
        writes: s.tasks.map((t) => [t.name, t.interrupts.map((i) => i.value)]),
      })),
    });
    const grpc = new GrpcCheckpointSaver(server!.target);
    const pg = PostgresSaver.fromConnString(db!.url);
    toClose.push(() => grpc.close(), () => pg.end());
    const viaGrpc = await runThrough(grpc, () => grpc, "same-grpc");
    const viaPg = await runThrough(pg, () => pg, "same-pg");
    const mem = new MemorySaver();
    const viaMem = await runThrough(mem, () => mem, "same-mem");
    expect(normalize(viaGrpc)).toEqual(normalize(viaPg));
    expect(normalize(viaGrpc)).toEqual(normalize(viaMem));
    // Same row shapes too: as many checkpoints, blobs and writes per namespace kind.
    const shape = async (thread: string) => {
      const rows = await dumpTables(db!.url, [thread]);
      const ns = (s: unknown) => String(s).split(":")[0];
      return {
        checkpoints: rows.checkpoints.map((r) => ns(r.checkpoint_ns)),
        blobs: rows.checkpoint_blobs.map((r) => [ns(r.checkpoint_ns), r.channel, r.version, r.type]),
        writes: rows.checkpoint_writes.map((r) => [r.channel, r.idx, r.type]).sort(),
      };
    };
    expect(await shape("same-grpc")).toEqual(await shape("same-pg"));
  });
});
