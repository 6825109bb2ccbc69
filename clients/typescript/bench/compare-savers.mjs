#!/usr/bin/env node
/**
 * Side-by-side benchmark of LangGraph.js's `PostgresSaver` (@langchain/langgraph-checkpoint-postgres)
 * and checkpointd's `GrpcCheckpointSaver`, the TypeScript counterpart of
 * clients/python/benchmarks/compare_savers.py.
 *
 * One Node process, one saver instance shared by N concurrent tasks (each on its own thread id),
 * exactly as an agent server runs a checkpointer. It measures two operations on LangGraph-shaped
 * checkpoints (format v4; a `messages` channel of 20 alternating HumanMessage/AIMessage of 200
 * characters, stored as one blob by the saver's serde, plus small `step`/`note` channels):
 *
 *   put       every task extends its own checkpoint chain with `put`;
 *   getTuple  every task puts one checkpoint (untimed), then reads its latest with `getTuple`.
 *
 * A third "saver", `stub`, is the transport's floor: a bare grpc-js client sending the request
 * GrpcCheckpointSaver builds (captured from one of its puts; each put gets a fresh checkpoint id, in
 * the field and in the document) or a GetTupleRequest, decoding the answer and doing nothing else.
 * Its rate next to GrpcCheckpointSaver's is the client's efficiency (issue 13: target >= 0.9); this
 * process's CPU per call (over the measured part of each window) is reported for every saver.
 *
 * Each window is a warm-up (calls not recorded) followed by the measured duration; a call counts
 * when it completes inside the measured part. Savers are interleaved per repetition so that machine
 * noise hits both alike; each window's threads are deleted afterwards (untimed). Errors are counted,
 * not fatal. Results go to stdout as Markdown tables, optionally to a JSON file (the `summary` /
 * `ratios` shape of the Python script); progress goes to stderr. It starts no servers: PostgreSQL
 * and a checkpointd server must already be running. It imports the built package (../dist), so run
 * `npm run build` first (bench/run.sh does when dist/ is missing or older than src/).
 *
 *   node bench/compare-savers.mjs --database-url postgres://postgres@127.0.0.1:5432/db \
 *       --target 127.0.0.1:50051 --concurrency 1,8,32 --json out.json
 */
import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { AIMessage, HumanMessage } from "@langchain/core/messages";
import { uuid6 } from "@langchain/langgraph-checkpoint";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import pg from "pg";

import grpc from "@grpc/grpc-js";

import { CheckpointServiceService, GetTupleRequest, PutRequest } from "../dist/gen/checkpoint/v1/checkpoint.js";
import { GrpcCheckpointSaver } from "../dist/index.js";

const SAVERS = ["postgres", "checkpointd", "stub"];
const OPS = ["put", "getTuple"];
const MESSAGE_COUNT = 20;
const MESSAGE_CHARS = 200;
// The checkpoint format version LangGraph.js's graph runtime writes (emptyCheckpoint() says 4 too);
// v < 4 makes PostgresSaver's reads look for legacy pending sends with an extra query.
const GRAPH_CHECKPOINT_VERSION = 4;
const CONNECT_TIMEOUT_MS = 10_000;
const LOREM =
  "The quick brown fox jumps over the lazy dog while the agent plans its next tool call, " +
  "summarises the conversation so far and drafts a careful answer for the user. ";

// ---------------------------------------------------------------------------------- payload

/** 20 alternating human/AI messages of MESSAGE_CHARS characters each, with ids. */
function makeMessages() {
  const messages = [];
  for (let i = 0; i < MESSAGE_COUNT; i++) {
    const text = (`[${String(i).padStart(2, "0")}] ` + LOREM.repeat(3)).slice(0, MESSAGE_CHARS);
    const Cls = i % 2 === 0 ? HumanMessage : AIMessage;
    messages.push(new Cls({ content: text, id: randomUUID() }));
  }
  return messages;
}

const MESSAGES = makeMessages();

/** Size of the `messages` blob as the saver's serde writes it. */
async function blobSize(saver) {
  const [, bytes] = await saver.serde.dumpsTyped(MESSAGES);
  return typeof bytes === "string" ? Buffer.byteLength(bytes) : bytes.length;
}

/**
 * CPU per call (µs) of what every LangGraph.js saver does to the messages blob: `dumpsTyped` for a
 * put, `loadsTyped` for a getTuple (PostgresSaver pays the same), timed alone.
 */
async function serdeCpuUs(saver, rounds = 500) {
  const [type, bytes] = await saver.serde.dumpsTyped(MESSAGES);
  const timed = async (work) => {
    const start = process.cpuUsage();
    for (let i = 0; i < rounds; i++) await work();
    const used = process.cpuUsage(start);
    return (used.user + used.system) / rounds;
  };
  return {
    put: await timed(() => saver.serde.dumpsTyped(MESSAGES)),
    getTuple: await timed(() => saver.serde.loadsTyped(type, bytes)),
  };
}

/** One thread's checkpoint chain: builds each next `put` and advances on success. */
class Chain {
  constructor(saver, threadId) {
    this.saver = saver;
    this.threadId = threadId;
    this.config = { configurable: { thread_id: threadId, checkpoint_ns: "" } };
    this.versions = {};
    this.step = 0;
    this.put = this.put.bind(this);
  }

  next() {
    const first = Object.keys(this.versions).length === 0;
    const bumped = first ? ["messages", "step", "note"] : ["messages", "step"];
    const newVersions = Object.fromEntries(bumped.map((ch) => [ch, this.saver.getNextVersion(this.versions[ch])]));
    const previous = this.versions.messages;
    const checkpoint = {
      v: GRAPH_CHECKPOINT_VERSION,
      id: uuid6(this.step % 16384), // clock sequence: 14 bits
      ts: new Date().toISOString(),
      channel_values: { messages: MESSAGES, step: this.step, note: "benchmark" },
      channel_versions: { ...this.versions, ...newVersions },
      versions_seen: previous !== undefined ? { model: { messages: previous } } : {},
    };
    const metadata = { source: "loop", step: this.step, parents: {} };
    return { checkpoint, metadata, newVersions };
  }

  async put() {
    const { checkpoint, metadata, newVersions } = this.next();
    this.config = await this.saver.put(this.config, checkpoint, metadata, { ...newVersions });
    Object.assign(this.versions, newVersions);
    this.step += 1;
  }
}

// ---------------------------------------------------------------------------------- measuring

/** The measured part of a run, in performance.now() milliseconds; calls stop being started at `end`. */
class Window {
  constructor(warmupS, durationS) {
    this.start = performance.now() + warmupS * 1000;
    this.end = this.start + durationS * 1000;
  }

  records(done) {
    return this.start <= done && done <= this.end;
  }
}

/** Latencies (ms) of the calls completed inside the window, and errors of the whole run. */
class Tally {
  latenciesMs = [];
  errors = 0;
  firstError = null;
  /** This process's CPU (user + system, µs) over the measured part of the window. */
  cpuUs = null;

  error(err) {
    this.errors += 1;
    if (this.firstError === null) this.firstError = `${err?.name ?? "Error"}: ${err?.message ?? String(err)}`;
  }
}

/** Calls `call` back to back until the window ends, recording what completes inside it. */
async function callLoop(call, window, tally) {
  let started;
  while ((started = performance.now()) < window.end) {
    try {
      await call();
    } catch (err) {
      // counted, not fatal
      tally.error(err);
      continue;
    }
    const done = performance.now();
    if (window.records(done)) tally.latenciesMs.push(done - started);
  }
}

/** Nearest-rank percentile `q` (0-100) of sorted millisecond samples. */
function percentileMs(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.round((q / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** Resolves at performance.now() === `at` (or at once when that has passed). */
function sleepUntil(at) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, at - performance.now())));
}

/** This process's CPU time (µs) between the window's start and end, sampled while its calls run. */
async function cpuOverWindow(window) {
  await sleepUntil(window.start);
  const start = process.cpuUsage();
  await sleepUntil(window.end);
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const byNumber = (a, b) => a - b;

function getTupleCall(saver, threadId) {
  const config = { configurable: { thread_id: threadId, checkpoint_ns: "" } };
  return async () => {
    if ((await saver.getTuple(config)) === undefined) {
      throw new Error(`getTuple returned undefined for thread ${threadId}`);
    }
  };
}

/** One call per task; for `getTuple`, first put (untimed) the checkpoint it will read. */
async function prepareCalls(saver, op, threadIds) {
  const chains = threadIds.map((t) => new Chain(saver, t));
  if (op === "put") return chains.map((chain) => chain.put);
  await Promise.all(chains.map((chain) => chain.put()));
  return threadIds.map((t) => getTupleCall(saver, t));
}

/** Deletes the window's threads (untimed) so the tables do not grow from window to window. */
async function cleanup(saver, threadIds) {
  const results = await Promise.allSettled(threadIds.map((t) => saver.deleteThread(t)));
  const failed = results.filter((r) => r.status === "rejected");
  if (failed.length > 0) {
    console.error(`  warning: ${failed.length} thread deletions failed: ${failed[0].reason}`);
  }
}

// ---------------------------------------------------------------------------------- results

function stepJson(step) {
  const lat = [...step.tally.latenciesMs].sort(byNumber);
  return {
    saver: step.saver,
    op: step.op,
    concurrency: step.concurrency,
    repetition: step.repetition,
    ops: lat.length,
    ops_per_sec: lat.length / step.durationS,
    p50_ms: percentileMs(lat, 50),
    p99_ms: percentileMs(lat, 99),
    cpu_us_per_call: lat.length > 0 && step.tally.cpuUs !== null ? step.tally.cpuUs / lat.length : null,
    errors: step.tally.errors,
  };
}

/**
 * Per (saver, op, concurrency): throughput median/min/max over repetitions; latency percentiles
 * over the calls of all repetitions pooled.
 */
function summarize(steps) {
  const groups = new Map();
  for (const step of steps) {
    const key = `${step.saver}\u0000${step.op}\u0000${step.concurrency}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(step);
  }
  const summary = [];
  for (const group of groups.values()) {
    const { saver, op, concurrency } = group[0];
    const rates = group.map((s) => s.tally.latenciesMs.length / s.durationS);
    const pooled = group.flatMap((s) => s.tally.latenciesMs).sort(byNumber);
    const cpu = group.map((s) => stepJson(s).cpu_us_per_call).filter((v) => v !== null);
    summary.push({
      saver,
      op,
      concurrency,
      repetitions: group.length,
      ops_per_sec_median: median(rates),
      ops_per_sec_min: Math.min(...rates),
      ops_per_sec_max: Math.max(...rates),
      p50_ms: percentileMs(pooled, 50),
      p99_ms: percentileMs(pooled, 99),
      cpu_us_per_call: cpu.length > 0 ? median(cpu) : null,
      errors: group.reduce((n, s) => n + s.tally.errors, 0),
    });
  }
  return summary;
}

function safeDiv(a, b) {
  return a !== null && a !== undefined && b ? a / b : null;
}

/** checkpointd relative to postgres, for every (op, concurrency) that both savers ran. */
function ratios(summary) {
  const byKey = new Map(summary.map((r) => [`${r.saver}\u0000${r.op}\u0000${r.concurrency}`, r]));
  const out = [];
  for (const r of summary) {
    if (r.saver !== "postgres") continue;
    const other = byKey.get(`checkpointd\u0000${r.op}\u0000${r.concurrency}`);
    if (other === undefined) continue;
    out.push({
      op: r.op,
      concurrency: r.concurrency,
      throughput_ratio: safeDiv(other.ops_per_sec_median, r.ops_per_sec_median),
      p50_ratio: safeDiv(other.p50_ms, r.p50_ms),
    });
  }
  return out;
}

/** GrpcCheckpointSaver against the bare stub, for every (op, concurrency) that both ran. */
function floor(summary, serde) {
  const byKey = new Map(summary.map((r) => [`${r.saver}\u0000${r.op}\u0000${r.concurrency}`, r]));
  const out = [];
  for (const stub of summary) {
    if (stub.saver !== "stub") continue;
    const saver = byKey.get(`checkpointd\u0000${stub.op}\u0000${stub.concurrency}`);
    if (saver === undefined) continue;
    out.push({
      op: stub.op,
      concurrency: stub.concurrency,
      stub_ops_per_sec: stub.ops_per_sec_median,
      saver_ops_per_sec: saver.ops_per_sec_median,
      efficiency: safeDiv(saver.ops_per_sec_median, stub.ops_per_sec_median),
      stub_cpu_us_per_call: stub.cpu_us_per_call,
      saver_cpu_us_per_call: saver.cpu_us_per_call,
      serde_cpu_us_per_call: serde?.[stub.op] ?? null,
    });
  }
  return out;
}

/** The saver's CPU per call beyond the bare stub's and LangGraph's serializer's. */
function own(r) {
  const parts = [r.saver_cpu_us_per_call, r.stub_cpu_us_per_call, r.serde_cpu_us_per_call];
  return parts.some((v) => v === null || v === undefined) ? null : parts[0] - parts[1] - parts[2];
}

function fmt(value, digits, suffix = "", width = 0) {
  return value === null || value === undefined ? "–".padStart(width) : `${value.toFixed(digits)}${suffix}`.padStart(width);
}

function markdown(summary, ratioRows, floorRows) {
  const lines = [
    "| op | concurrency | saver | reps | ops/s median | ops/s min–max | p50 ms | p99 ms | CPU µs/call | errors |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of summary) {
    lines.push(
      `| ${r.op} | ${r.concurrency} | ${r.saver} | ${r.repetitions} ` +
        `| ${r.ops_per_sec_median.toFixed(1)} | ${r.ops_per_sec_min.toFixed(1)}–${r.ops_per_sec_max.toFixed(1)} ` +
        `| ${fmt(r.p50_ms, 2)} | ${fmt(r.p99_ms, 2)} | ${fmt(r.cpu_us_per_call, 0)} | ${r.errors} |`,
    );
  }
  if (floorRows.length > 0) {
    lines.push(
      "",
      "| op | concurrency | bare stub ops/s | saver ops/s | efficiency saver/stub | stub CPU µs/call | saver CPU µs/call " +
        "| of which LangGraph serde | saver's own |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const r of floorRows) {
      lines.push(
        `| ${r.op} | ${r.concurrency} | ${r.stub_ops_per_sec.toFixed(0)} | ${r.saver_ops_per_sec.toFixed(0)} ` +
          `| ${fmt(r.efficiency, 2)} | ${fmt(r.stub_cpu_us_per_call, 0)} | ${fmt(r.saver_cpu_us_per_call, 0)} ` +
          `| ${fmt(r.serde_cpu_us_per_call, 0)} | ${fmt(own(r), 0)} |`,
      );
    }
  }
  if (ratioRows.length > 0) {
    lines.push(
      "",
      "| op | concurrency | throughput checkpointd/postgres | p50 checkpointd/postgres |",
      "|---|---:|---:|---:|",
    );
    for (const r of ratioRows) {
      lines.push(`| ${r.op} | ${r.concurrency} | ${fmt(r.throughput_ratio, 2, "×")} | ${fmt(r.p50_ratio, 2, "×")} |`);
    }
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------- savers

class UsageError extends Error {}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `PostgresSaver` on a `pg.Pool` of `poolSize` connections; `setup()` once. */
async function openPostgres(databaseUrl, poolSize) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolSize, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  pool.on("error", (err) => console.error(`  pg pool error (idle client): ${err.message}`));
  try {
    await pool.query("SELECT 1");
    const saver = new PostgresSaver(pool);
    await saver.setup();
    return { saver, close: () => pool.end() };
  } catch (err) {
    await pool.end().catch(() => {});
    throw new UsageError(`cannot connect to PostgreSQL (--database-url): ${err.message}`);
  }
}

/** One `GrpcCheckpointSaver` (one gRPC channel), after checking that the server is SERVING. */
async function openCheckpointd(target) {
  const saver = GrpcCheckpointSaver.fromConnString(target);
  let status;
  try {
    status = await withTimeout(saver.client.health(undefined, { timeoutMs: CONNECT_TIMEOUT_MS }), CONNECT_TIMEOUT_MS + 1000, "Health");
  } catch (err) {
    await saver.close();
    throw new UsageError(`cannot reach checkpointd at ${target} (--target): ${err.message}`);
  }
  if (status !== "SERVING") {
    await saver.close();
    throw new UsageError(`checkpointd at ${target} reports ${status}, not SERVING`);
  }
  return { saver, close: () => saver.close() };
}

/** Sends already encoded request bytes as one unary call on a bare grpc-js client. */
function unaryCall(client, method, bytes) {
  return new Promise((resolve, reject) => {
    const options = { deadline: Date.now() + 30_000 };
    client.makeUnaryRequest(method.path, (b) => b, method.responseDeserialize, bytes, new grpc.Metadata(), options, (err, value) =>
      err ? reject(err) : resolve(value),
    );
  });
}

const encoded = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * The transport's floor, shaped like a saver for Chain and getTupleCall: a bare grpc-js client that
 * sends the PutRequest GrpcCheckpointSaver builds (captured from its first put, then re-encoded
 * with each put's thread and fresh checkpoint id) or a GetTupleRequest, and only decodes the answer.
 */
async function openStub(target) {
  const real = await openCheckpointd(target);
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  const saverPut = real.saver.client.put.bind(real.saver.client);
  let template = null;
  const capture = async (config, checkpoint, metadata, newVersions) => {
    real.saver.client.put = (request, call) => {
      template = request;
      return saverPut(request, call);
    };
    try {
      return await real.saver.put(config, checkpoint, metadata, newVersions);
    } finally {
      real.saver.client.put = saverPut;
    }
  };
  const stub = {
    serde: real.saver.serde,
    getNextVersion: (current) => real.saver.getNextVersion(current),
    async put(config, checkpoint, metadata, newVersions) {
      if (template === null) return capture(config, checkpoint, metadata, newVersions);
      const threadId = config.configurable.thread_id;
      const document = Buffer.from(template.checkpointJson).toString("utf8").replace(template.checkpointId, checkpoint.id);
      const request = { ...template, threadId, checkpointId: checkpoint.id, checkpointJson: Buffer.from(document, "utf8") };
      await unaryCall(client, CheckpointServiceService.put, encoded(PutRequest.encode(request).finish()));
      return { configurable: { thread_id: threadId, checkpoint_ns: "", checkpoint_id: checkpoint.id } };
    },
    getTuple(config) {
      const request = { threadId: config.configurable.thread_id, checkpointNs: "" };
      return unaryCall(client, CheckpointServiceService.getTuple, encoded(GetTupleRequest.encode(request).finish()));
    },
    deleteThread: (threadId) => real.saver.deleteThread(threadId),
  };
  return {
    saver: stub,
    close: async () => {
      client.close();
      await real.close();
    },
  };
}

/** The version of an installed package, read from its package.json (found from its entry point). */
function packageVersion(name) {
  try {
    let dir = path.dirname(createRequire(import.meta.url).resolve(name));
    for (;;) {
      try {
        const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
        if (pkg.name === name) return pkg.version;
      } catch {
        // no package.json here
      }
      const parent = path.dirname(dir);
      if (parent === dir) return null;
      dir = parent;
    }
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------- driver

async function runStep(saverName, saver, op, concurrency, repetition, args) {
  const prefix = `bench-${args.runId}-${saverName}-${op}-c${concurrency}-r${repetition}`;
  const threadIds = Array.from({ length: concurrency }, (_, i) => `${prefix}-t${i}`);
  const tally = new Tally();
  let calls = [];
  try {
    calls = await prepareCalls(saver, op, threadIds);
  } catch (err) {
    tally.error(err); // the untimed put of getTuple failed: the window is not run
  }
  if (calls.length > 0) {
    const window = new Window(args.warmup, args.duration);
    const loops = Promise.all(calls.map((call) => callLoop(call, window, tally)));
    tally.cpuUs = await cpuOverWindow(window);
    await loops;
  }
  if (!args.keepData) await cleanup(saver, threadIds);
  return { saver: saverName, op, concurrency, repetition, durationS: args.duration, tally };
}

function reportProgress(step, repetitions) {
  const row = stepJson(step);
  console.error(
    `${step.op.padEnd(9)} c=${String(step.concurrency).padEnd(3)} rep ${step.repetition}/${repetitions} ` +
      `${step.saver.padEnd(11)} ${String(row.ops).padStart(7)} ops ${row.ops_per_sec.toFixed(1).padStart(9)} ops/s  ` +
      `p50 ${fmt(row.p50_ms, 2, "", 7)} ms  p99 ${fmt(row.p99_ms, 2, "", 7)} ms  errors ${row.errors}`,
  );
  if (step.tally.firstError) console.error(`  first error: ${step.tally.firstError}`);
}

async function run(args) {
  const steps = [];
  const opened = [];
  let blobBytes = null;
  let serde = null;
  try {
    const savers = [];
    for (const name of args.savers) {
      const open = { postgres: () => openPostgres(args.databaseUrl, args.poolSize), checkpointd: () => openCheckpointd(args.target), stub: () => openStub(args.target) };
      const handle = await open[name]();
      opened.push(handle);
      savers.push([name, handle.saver]);
    }
    blobBytes = await blobSize(savers[0][1]);
    serde = await serdeCpuUs(savers[0][1]);
    console.error(`run ${args.runId}: messages blob ${blobBytes} bytes`);
    for (const op of args.ops) {
      for (const concurrency of args.concurrency) {
        for (let repetition = 1; repetition <= args.repetitions; repetition++) {
          for (const [name, saver] of savers) {
            const step = await runStep(name, saver, op, concurrency, repetition, args);
            reportProgress(step, args.repetitions);
            steps.push(step);
          }
        }
      }
    }
  } finally {
    for (const handle of opened.reverse()) await handle.close().catch(() => {});
  }
  const summary = summarize(steps);
  return {
    node: process.versions.node,
    langgraph_checkpoint_postgres: packageVersion("@langchain/langgraph-checkpoint-postgres"),
    langgraph_checkpoint: packageVersion("@langchain/langgraph-checkpoint"),
    checkpointd_client: JSON.parse(
      readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "package.json"), "utf8"),
    ).version,
    blob_bytes: blobBytes,
    steps: steps.map(stepJson),
    summary,
    ratios: ratios(summary),
    serde_cpu_us: serde,
    floor: floor(summary, serde),
  };
}

// ---------------------------------------------------------------------------------- CLI

const USAGE = `usage: node bench/compare-savers.mjs [options]

Side-by-side benchmark of LangGraph.js's PostgresSaver and checkpointd's GrpcCheckpointSaver.

  --database-url URL     PostgreSQL for PostgresSaver (default: postgresql://postgres@127.0.0.1:5432/postgres)
  --target HOST:PORT     checkpointd (required with the checkpointd saver)
  --savers LIST          default: postgres,checkpointd,stub (stub: a bare grpc-js client, the floor)
  --ops LIST             default: put,getTuple
  --concurrency LIST     tasks sharing the saver (default: 1,8,32)
  --repetitions N        default: 3
  --warmup S             seconds not recorded per window (default: 2)
  --duration S           measured seconds per window (default: 10)
  --pool-size N          pg.Pool max for PostgresSaver (default: 32)
  --keep-data            do not delete each window's threads afterwards
  --json OUT             also write the results as JSON to OUT
  -h, --help             this text`;

function csvOf(choices, text, flag) {
  const items = [...new Set(text.split(",").map((x) => x.trim()).filter(Boolean))];
  const unknown = items.filter((x) => !choices.includes(x));
  if (items.length === 0 || unknown.length > 0) {
    throw new UsageError(`${flag}: expected a comma-separated subset of ${choices.join(", ")}`);
  }
  return items;
}

function positiveInts(text, flag) {
  const values = [...new Set(text.split(",").map((x) => x.trim()).filter(Boolean).map(Number))];
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new UsageError(`${flag}: expected comma-separated positive integers, e.g. 1,8,32`);
  }
  return values;
}

function number(text, flag, { integer = false, min, exclusive = false }) {
  const value = Number(text);
  const bad =
    text.trim() === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || (exclusive ? value <= min : value < min);
  if (bad) throw new UsageError(`${flag}: expected ${integer ? "an integer" : "a number"} ${exclusive ? ">" : ">="} ${min}`);
  return value;
}

function parseCli(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      "database-url": { type: "string", default: "postgresql://postgres@127.0.0.1:5432/postgres" },
      target: { type: "string" },
      savers: { type: "string", default: SAVERS.join(",") },
      ops: { type: "string", default: OPS.join(",") },
      concurrency: { type: "string", default: "1,8,32" },
      repetitions: { type: "string", default: "3" },
      warmup: { type: "string", default: "2" },
      duration: { type: "string", default: "10" },
      "pool-size": { type: "string", default: "32" },
      "keep-data": { type: "boolean", default: false },
      json: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const args = {
    databaseUrl: values["database-url"],
    target: values.target,
    savers: csvOf(SAVERS, values.savers, "--savers"),
    ops: csvOf(OPS, values.ops, "--ops"),
    concurrency: positiveInts(values.concurrency, "--concurrency"),
    repetitions: number(values.repetitions, "--repetitions", { integer: true, min: 1 }),
    warmup: number(values.warmup, "--warmup", { min: 0 }),
    duration: number(values.duration, "--duration", { min: 0, exclusive: true }),
    poolSize: number(values["pool-size"], "--pool-size", { integer: true, min: 1 }),
    keepData: values["keep-data"],
    json: values.json,
    runId: randomUUID().replaceAll("-", "").slice(0, 8),
  };
  if ((args.savers.includes("checkpointd") || args.savers.includes("stub")) && !args.target) {
    throw new UsageError("--target is required when the checkpointd saver or the stub is selected");
  }
  return args;
}

async function main() {
  let args;
  try {
    args = parseCli(process.argv.slice(2));
  } catch (err) {
    console.error(`error: ${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  let result;
  try {
    result = await run(args);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  if (args.json) writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);
  console.log(markdown(result.summary, result.ratios, result.floor));
}

await main();
