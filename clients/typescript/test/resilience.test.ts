/**
 * A running agent survives a checkpointd outage with the client's default options: while the server
 * is down its calls fail with a retryable UnavailableError, and once the server is back (same port)
 * the first call succeeds within 1.5 s of the server being ready, whatever the outage's length (the
 * reconnect backoff is capped at 1 s instead of gRPC's 120 s).
 */
import { GrpcCheckpointSaver, UnavailableError } from "../src/index.js";
import { closePools, dropDatabase, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";

const AGENT_INTERVAL_MS = 300;
const OUTAGE_MS = 8_000;
const RECOVERY_BUDGET_MS = 1_500;

let db: ScratchDb | undefined;
let server: Server | undefined;

beforeAll(async () => {
  ({ db, server } = await startServerWithDatabase("tsclient_resilience"));
});

afterAll(async () => {
  await server?.stop();
  await closePools();
  await dropDatabase(db);
});

interface AgentCall {
  endedAt: number;
  error?: unknown;
}

/** An agent that reads its thread every AGENT_INTERVAL_MS until stopped, recording each call. */
function runAgent(saver: GrpcCheckpointSaver, threadId: string) {
  const calls: AgentCall[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      try {
        await saver.getTuple({ configurable: { thread_id: threadId } });
        calls.push({ endedAt: Date.now() });
      } catch (error) {
        calls.push({ endedAt: Date.now(), error });
      }
      await new Promise((r) => setTimeout(r, AGENT_INTERVAL_MS));
    }
  })();
  return {
    calls,
    /** Resolves when a call that ended after `since` succeeded (polls, bounded by `timeoutMs`). */
    async firstSuccessAfter(since: number, timeoutMs: number): Promise<AgentCall | undefined> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = calls.find((c) => c.endedAt > since && c.error === undefined);
        if (hit || Date.now() > deadline) return hit;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      stopped = true;
      await done;
    },
  };
}

describe("an agent calling through a checkpointd outage", () => {
  it(`works again within ${RECOVERY_BUDGET_MS} ms of the server being back after ${OUTAGE_MS / 1000} s down`, async () => {
    const saver = GrpcCheckpointSaver.fromConnString(server!.target);
    const agent = runAgent(saver, "outage");
    try {
      expect(await agent.firstSuccessAfter(0, 10_000)).toBeDefined();

      await server!.kill();
      const downAt = Date.now();
      // The outage itself: the agent keeps calling meanwhile.
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      await server!.restartOnSamePort();
      const readyAt = server!.readyAt;

      const failures = agent.calls.filter((c) => c.endedAt > downAt && c.endedAt < readyAt && c.error !== undefined);
      expect(failures.length).toBeGreaterThan(5);
      for (const f of failures) expect(f.error).toBeInstanceOf(UnavailableError);

      const recovered = await agent.firstSuccessAfter(readyAt, 10_000);
      expect(recovered).toBeDefined();
      const recoveryMs = recovered!.endedAt - readyAt;
      console.log(`checkpointd outage of ${readyAt - downAt} ms: first successful call ${recoveryMs} ms after the server was ready`);
      expect(recoveryMs).toBeLessThanOrEqual(RECOVERY_BUDGET_MS);
    } finally {
      await agent.stop();
      await saver.close();
    }
  }, 60_000);
});
