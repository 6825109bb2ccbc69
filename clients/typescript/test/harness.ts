/**
 * Test harness: scratch PostgreSQL databases and checkpointd server processes.
 *
 * Environment:
 *   CHECKPOINTD_BIN          the server binary (default <repo>/target/debug/checkpointd)
 *   CHECKPOINTD_TEST_PG_URL  an admin URL of the PostgreSQL to use
 *                            (default postgresql://postgres@127.0.0.1:5432/postgres)
 *   TEST_LOG=1               print the server's log when it stops
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { accessSync, constants, closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

import { CheckpointdClient } from "../src/index.js";

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = path.resolve(PACKAGE_ROOT, "..", "..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const PG_ADMIN_URL = process.env.CHECKPOINTD_TEST_PG_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

export function serverBinary(): string {
  const p = process.env.CHECKPOINTD_BIN ?? path.join(REPO_ROOT, "target", "debug", "checkpointd");
  try {
    accessSync(p, constants.X_OK);
  } catch {
    throw new Error(`checkpointd binary not found at ${p}: build it (cargo build) or set CHECKPOINTD_BIN`);
  }
  return p;
}

export function dbUrl(name: string): string {
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface ScratchDb {
  name: string;
  url: string;
}

/** Creates an empty scratch database. */
export async function createDatabase(prefix = "tsclient"): Promise<ScratchDb> {
  const name = `${prefix}_${randomUUID().replace(/-/g, "")}`;
  await withAdmin((c) => c.query(`CREATE DATABASE "${name}"`));
  return { name, url: dbUrl(name) };
}

/**
 * Drops a scratch database. It first waits (up to 5 s) for the connections still closing to go:
 * node-postgres' `Pool.end()` resolves before its sockets are closed, and terminating such a
 * connection (WITH (FORCE)) makes that client raise an uncaught error in the test process.
 */
export async function dropDatabase(db: ScratchDb | undefined): Promise<void> {
  if (!db) return;
  await withAdmin(async (c) => {
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [db.name]);
      if (rows[0].n === 0) break;
      await sleep(50);
    }
    await c.query(`DROP DATABASE IF EXISTS "${db.name}" WITH (FORCE)`);
  });
}

/** Applies checkpointd's migrations (LangGraph's tables) with `checkpointd migrate`. */
export function migrate(url: string): void {
  const res = spawnSync(serverBinary(), ["migrate", "--database-url", url], {
    encoding: "utf8",
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  if (res.status !== 0) throw new Error(`checkpointd migrate failed:\n${res.stdout}\n${res.stderr}`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A checkpointd process serving one database. */
export class Server {
  port = 0;
  /** When the server last answered SERVING to a fresh connection (epoch ms). */
  readyAt = 0;
  private proc: ChildProcess | undefined;
  readonly logFile: string;

  constructor(
    readonly databaseUrl: string,
    readonly extraArgs: string[] = [],
  ) {
    this.logFile = path.join(mkdtempSync(path.join(tmpdir(), "checkpointd-ts-")), "server.log");
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(timeoutMs = 60_000): Promise<this> {
    for (let attempt = 0; attempt < 3; attempt++) {
      // A free port can be taken between the probe and the bind: try again on another one.
      this.port = await freePort();
      this.spawnProcess();
      if (await this.waitReady(timeoutMs)) return this;
      await this.stop();
    }
    throw new Error(`checkpointd did not become SERVING; log:\n${this.readLog()}`);
  }

  /** Starts the server again on the port it had (after {@link kill} or {@link stop}). */
  async restartOnSamePort(timeoutMs = 60_000): Promise<this> {
    if (this.port === 0) throw new Error("restartOnSamePort: the server never started");
    this.spawnProcess();
    if (await this.waitReady(timeoutMs)) return this;
    await this.stop();
    throw new Error(`checkpointd did not become SERVING again on port ${this.port}; log:\n${this.readLog()}`);
  }

  private spawnProcess(): void {
    const fd = openSync(this.logFile, "a");
    this.proc = spawn(
      serverBinary(),
      ["serve", "--listen", this.target, "--database-url", this.databaseUrl, ...this.extraArgs],
      { stdio: ["ignore", fd, fd], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } },
    );
    closeSync(fd);
  }

  /**
   * Polls the health service until SERVING, each time over a new channel (so no reconnect backoff
   * delays the answer), and records {@link readyAt}.
   */
  private async waitReady(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return false;
      const client = new CheckpointdClient(this.target, { retry: null });
      try {
        if ((await client.health(undefined, { timeoutMs: 1000 })) === "SERVING") {
          this.readyAt = Date.now();
          return true;
        }
      } catch {
        // not up yet
      } finally {
        client.close();
      }
      await sleep(25);
    }
    return false;
  }

  /** Kills the server at once (SIGKILL), as a crash or a lost node would. */
  async kill(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    await exited;
  }

  /** Stops the server with SIGTERM (SIGKILL after 30 s). */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
    if (process.env.TEST_LOG) console.log(this.readLog());
  }

  readLog(): string {
    try {
      return readFileSync(this.logFile, "utf8").slice(-20_000);
    } catch {
      return "";
    }
  }
}

/** A scratch database with a server on it. */
export async function startServerWithDatabase(prefix = "tsclient"): Promise<{ db: ScratchDb; server: Server }> {
  const db = await createDatabase(prefix);
  try {
    const server = await new Server(db.url).start();
    return { db, server };
  } catch (err) {
    await dropDatabase(db);
    throw err;
  }
}

const pools = new Map<string, pg.Pool>();

/** A small shared pg pool per database URL (closed by {@link closePools}). */
export function pool(url: string): pg.Pool {
  let p = pools.get(url);
  if (!p) {
    p = new pg.Pool({ connectionString: url, max: 2 });
    pools.set(url, p);
  }
  return p;
}

export async function closePools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.end()));
}

export async function truncateTables(url: string): Promise<void> {
  await pool(url).query("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes");
}

export interface TableDump {
  checkpoints: Record<string, unknown>[];
  checkpoint_blobs: Record<string, unknown>[];
  checkpoint_writes: Record<string, unknown>[];
}

/** Every row of the three LangGraph tables for some threads, in a canonical order. */
export async function dumpTables(url: string, threadIds: string[]): Promise<TableDump> {
  const p = pool(url);
  const q = async (sql: string) => (await p.query(sql, [threadIds])).rows;
  return {
    checkpoints: await q(
      `SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
       FROM checkpoints WHERE thread_id = ANY($1)
       ORDER BY thread_id COLLATE "C", checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C"`,
    ),
    checkpoint_blobs: await q(
      `SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = ANY($1)
       ORDER BY thread_id COLLATE "C", checkpoint_ns COLLATE "C", channel COLLATE "C", version COLLATE "C"`,
    ),
    checkpoint_writes: await q(
      `SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
       FROM checkpoint_writes WHERE thread_id = ANY($1)
       ORDER BY thread_id COLLATE "C", checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C", task_id COLLATE "C", idx`,
    ),
  };
}
