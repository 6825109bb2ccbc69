/**
 * CheckpointdClient's production options and errors: deadlines, retry of UNAVAILABLE and of the
 * statuses the server marks retry-safe (with backoff, pushback, within the deadline), round-robin over
 * replicas, bearer tokens (and the plaintext warning), TLS and mutual TLS, cancellation, close(), against an in-process fake server (for
 * failures on demand) and the real checkpointd.
 */
import { ServerCredentials, status, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import path from "node:path";

import {
  CancelledError,
  CheckpointdClient,
  ClientClosedError,
  DeadlineExceededError,
  GrpcCheckpointSaver,
  InvalidArgumentError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  UnexpectedStatusError,
  AbortedError,
  proto,
  targetHosts,
  type diagnosticsProto,
} from "../src/index.js";
import { FakeServer, serviceError } from "./fake-server.js";
import { PACKAGE_ROOT, REPO_ROOT, closePools, dropDatabase, freePort, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";

const tls = (f: string) => readFileSync(path.join(PACKAGE_ROOT, "test", "fixtures", "tls", f));
const tuple = (checkpointId: string) =>
  proto.CheckpointTuple.fromPartial({
    config: { threadId: "t", checkpointNs: "", checkpointId },
    checkpointJson: Buffer.from("{}"),
    metadataJson: Buffer.from("{}"),
  });
const emptyTuple = (_call: unknown, cb: sendUnaryData<proto.GetTupleResponse>) => cb(null, { tuple: undefined });

describe("CheckpointdClient against a fake server", () => {
  let fake: FakeServer | undefined;
  let client: CheckpointdClient | undefined;

  afterEach(async () => {
    client?.close();
    client = undefined;
    await fake?.stop();
    fake = undefined;
  });

  it("sends the bearer token and extra metadata with every call", async () => {
    fake = await new FakeServer({ getTuple: emptyTuple }).start();
    client = new CheckpointdClient(fake.target, { token: "s3cret", metadata: { traceparent: "00-abc-def-01" } });
    await client.getTuple({ threadId: "t" });
    let n = 0;
    const rotating = new CheckpointdClient(fake.target, { token: async () => `tok${++n}` });
    await rotating.getTuple({ threadId: "t" });
    await rotating.getTuple({ threadId: "t" }, { metadata: { "x-extra": "1" } });
    rotating.close();
    expect(fake.calls.map((c) => c.metadata.authorization)).toEqual(["Bearer s3cret", "Bearer tok1", "Bearer tok2"]);
    expect(fake.calls[0]!.metadata.traceparent).toBe("00-abc-def-01");
    expect(fake.calls[2]!.metadata["x-extra"]).toBe("1");
    expect(String(fake.calls[0]!.metadata["user-agent"])).toContain("checkpointd-client-typescript/");
  });

  it("retries UNAVAILABLE with backoff until it succeeds", async () => {
    let attempts = 0;
    fake = await new FakeServer({
      getTuple: (_call, cb) => {
        attempts += 1;
        if (attempts < 3) cb(serviceError(status.UNAVAILABLE, "database unreachable"));
        else cb(null, { tuple: undefined });
      },
    }).start();
    client = new CheckpointdClient(fake.target, { retry: { initialBackoffMs: 20, maxBackoffMs: 50 } });
    const res = await client.getTuple({ threadId: "t" });
    expect(res.tuple).toBeUndefined();
    expect(attempts).toBe(3);
  });

  it("gives up after maxAttempts and reports a retryable UnavailableError", async () => {
    fake = await new FakeServer({
      putWrites: (_call, cb) => cb(serviceError(status.UNAVAILABLE, "database unreachable")),
    }).start();
    client = new CheckpointdClient(fake.target, { retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 20 } });
    const err = await client.putWrites({ threadId: "t" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).toMatchObject({ method: "PutWrites", codeName: "UNAVAILABLE", details: "database unreachable", retryable: true });
    expect(fake.count("putWrites")).toBe(3);
  });

  it("does not retry when retries are disabled, nor errors that are not UNAVAILABLE", async () => {
    fake = await new FakeServer({
      putWrites: (_call, cb) => cb(serviceError(status.UNAVAILABLE, "down")),
      put: (_call, cb) => cb(serviceError(status.INVALID_ARGUMENT, "thread_id must not be empty")),
    }).start();
    client = new CheckpointdClient(fake.target, { retry: null });
    await expect(client.putWrites({})).rejects.toBeInstanceOf(UnavailableError);
    expect(fake.count("putWrites")).toBe(1);
    const retrying = new CheckpointdClient(fake.target);
    const err = await retrying.put({}).catch((e: unknown) => e);
    retrying.close();
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toMatchObject({ retryable: false, details: "thread_id must not be empty" });
    expect((err as Error).message).toBe(
      "checkpointd Put failed: INVALID_ARGUMENT: thread_id must not be empty (not safe to retry as is)",
    );
    expect(fake.count("put")).toBe(1);
  });

  it("applies the deadline and reports DEADLINE_EXCEEDED", async () => {
    fake = await new FakeServer({
      getTuple: (_call, cb) => {
        setTimeout(() => cb(null, { tuple: undefined }), 1500);
      },
    }).start();
    client = new CheckpointdClient(fake.target, { timeoutMs: 150 });
    const started = Date.now();
    const err = await client.getTuple({ threadId: "t" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as DeadlineExceededError).retryable).toBe(true);
    expect(Date.now() - started).toBeLessThan(1400);
    // A per-call timeout overrides the client's.
    await expect(client.getTuple({ threadId: "t" }, { timeoutMs: 5000 })).resolves.toEqual({ tuple: undefined });
  });

  it("classifies RESOURCE_EXHAUSTED and reads the server's pushback", async () => {
    fake = await new FakeServer({
      put: (_call, cb) => cb(serviceError(status.RESOURCE_EXHAUSTED, "pool saturated", { "grpc-retry-pushback-ms": "250" })),
      putWrites: (_call, cb) => cb(serviceError(status.RESOURCE_EXHAUSTED, "message larger than the size limit")),
      deleteThread: (_call, cb) => cb(serviceError(status.UNAUTHENTICATED, "missing bearer token")),
    }).start();
    client = new CheckpointdClient(fake.target, { retry: null });
    const overloaded = (await client.put({}).catch((e: unknown) => e)) as ResourceExhaustedError;
    expect(overloaded).toBeInstanceOf(ResourceExhaustedError);
    expect(overloaded).toMatchObject({ method: "Put", codeName: "RESOURCE_EXHAUSTED", details: "pool saturated" });
    expect(overloaded.retryable).toBe(true);
    expect(overloaded.retryAfterMs).toBe(250);
    const tooLarge = (await client.putWrites({}).catch((e: unknown) => e)) as ResourceExhaustedError;
    expect(tooLarge).toBeInstanceOf(ResourceExhaustedError);
    expect(tooLarge).toMatchObject({ method: "PutWrites", details: "message larger than the size limit", retryable: false });
    const unauthenticated = await client.deleteThread({ threadId: "t" }).catch((e: unknown) => e);
    expect(unauthenticated).toBeInstanceOf(UnauthenticatedError);
    expect(unauthenticated).toMatchObject({ codeName: "UNAUTHENTICATED", details: "missing bearer token", retryable: false });
    // The fake has no CopyThread: any other status surfaces as UnexpectedStatusError with its code.
    const unimplemented = await client.copyThread({}).catch((e: unknown) => e);
    expect(unimplemented).toBeInstanceOf(UnexpectedStatusError);
    expect(unimplemented).toMatchObject({
      method: "CopyThread",
      codeName: "UNIMPLEMENTED",
      details: "fake: copyThread not implemented",
      retryable: false,
    });
  });

  it("cancels a call with an AbortSignal", async () => {
    fake = await new FakeServer({
      getTuple: (_call, cb) => {
        setTimeout(() => cb(null, { tuple: undefined }), 2000);
      },
    }).start();
    client = new CheckpointdClient(fake.target);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await expect(client.getTuple({ threadId: "t" }, { signal: ac.signal })).rejects.toBeInstanceOf(CancelledError);
    await expect(client.getTuple({ threadId: "t" }, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledError);
  });

  it("streams List and cancels the stream when the reader stops early", async () => {
    let cancelled = false;
    fake = await new FakeServer({
      list: (call) => {
        call.on("cancelled", () => {
          cancelled = true;
        });
        let i = 0;
        const timer = setInterval(() => {
          if (cancelled) return clearInterval(timer);
          call.write({ tuple: tuple(`c${i++}`) });
          if (i === 1000) {
            clearInterval(timer);
            call.end();
          }
        }, 5);
      },
    }).start();
    client = new CheckpointdClient(fake.target);
    const ids: string[] = [];
    for await (const msg of client.list({ threadId: "t" })) {
      ids.push(msg.tuple!.config!.checkpointId);
      if (ids.length === 3) break;
    }
    expect(ids).toEqual(["c0", "c1", "c2"]);
    await vi.waitFor(() => expect(cancelled).toBe(true), { timeout: 2000 });
  });

  it("surfaces an error in the middle of a List stream", async () => {
    fake = await new FakeServer({
      list: (call) => {
        call.write({ tuple: tuple("c0") });
        setTimeout(() => call.emit("error", serviceError(status.UNAVAILABLE, "connection lost")), 20);
      },
    }).start();
    client = new CheckpointdClient(fake.target);
    const seen: string[] = [];
    const err = await (async () => {
      for await (const msg of client!.list({})) seen.push(msg.tuple!.config!.checkpointId);
    })().catch((e: unknown) => e);
    expect(seen).toEqual(["c0"]);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).toMatchObject({ method: "List", details: "connection lost" });
  });

  it("connects over TLS with a private CA, and with mutual TLS", async () => {
    fake = await new FakeServer({ getTuple: emptyTuple }).start(
      ServerCredentials.createSsl(tls("ca.pem"), [{ private_key: tls("server.key"), cert_chain: tls("server.pem") }], false),
    );
    client = new CheckpointdClient(`localhost:${fake.port}`, { rootCertificates: tls("ca.pem"), token: "t0k" });
    await expect(client.getTuple({ threadId: "t" })).resolves.toEqual({ tuple: undefined });
    expect(fake.calls[0]!.metadata.authorization).toBe("Bearer t0k");
    // The server's name checked against a different host name.
    const renamed = new CheckpointdClient(fake.target, { rootCertificates: tls("ca.pem"), serverNameOverride: "checkpointd.test" });
    await expect(renamed.getTuple({ threadId: "t" })).resolves.toEqual({ tuple: undefined });
    renamed.close();
    // Without the CA the handshake fails: UNAVAILABLE.
    const untrusted = new CheckpointdClient(`localhost:${fake.port}`, { tls: true, retry: null, timeoutMs: 5000 });
    await expect(untrusted.getTuple({ threadId: "t" })).rejects.toBeInstanceOf(UnavailableError);
    untrusted.close();
    // A plaintext client cannot talk to a TLS server.
    const plain = new CheckpointdClient(`localhost:${fake.port}`, { retry: null, timeoutMs: 5000 });
    await expect(plain.getTuple({ threadId: "t" })).rejects.toBeInstanceOf(UnavailableError);
    plain.close();
  });

  it("presents a client certificate for mutual TLS", async () => {
    fake = await new FakeServer({ getTuple: emptyTuple }).start(
      ServerCredentials.createSsl(tls("ca.pem"), [{ private_key: tls("server.key"), cert_chain: tls("server.pem") }], true),
    );
    client = new CheckpointdClient(`localhost:${fake.port}`, {
      rootCertificates: tls("ca.pem"),
      privateKey: tls("client.key"),
      certificateChain: tls("client.pem"),
    });
    await expect(client.getTuple({ threadId: "t" })).resolves.toEqual({ tuple: undefined });
    const anonymous = new CheckpointdClient(`localhost:${fake.port}`, { rootCertificates: tls("ca.pem"), retry: null });
    await expect(anonymous.getTuple({ threadId: "t" })).rejects.toBeInstanceOf(UnavailableError);
    anonymous.close();
  });

  it("reads the diagnostics service", async () => {
    fake = await new FakeServer(
      {},
      {
        getStatus: (_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<diagnosticsProto.GetStatusResponse>) =>
          cb(null, { version: "9.9.9", uptimeSeconds: 12n, databaseReachable: true, retriesByClass: { connection_lost: 3n }, failuresByClass: {}, lastErrorClass: "", lastErrorAgeMs: 0n, retryBudgetTokens: 7.5, pool: { maxSize: 16, connections: 2, idle: 2, waiting: 0n, waited: 0n, timedOut: 0n, connectionsCreated: 2n, connectFailures: 0n, connectionsClosed: {}, recreations: 0n }, putCoalescing: { queued: 0n, batches: 5n, puts: 9n, overloaded: 0n } }),
      },
    ).start();
    client = new CheckpointdClient(fake.target);
    const st = await client.getStatus();
    expect(st).toMatchObject({ version: "9.9.9", uptimeSeconds: 12n, databaseReachable: true, retryBudgetTokens: 7.5 });
    expect(st.retriesByClass).toEqual({ connection_lost: 3n });
    expect(st.pool?.maxSize).toBe(16);
    expect(st.putCoalescing?.puts).toBe(9n);
  });

  it("retries ABORTED and RESOURCE_EXHAUSTED only when the server marks them retry-safe", async () => {
    const safe = { "checkpointd-retry-safe": "true" };
    let aborted = 0;
    let overloaded = 0;
    fake = await new FakeServer({
      // Marked: fails twice, then succeeds.
      put: (_call, cb) =>
        ++aborted <= 2 ? cb(serviceError(status.ABORTED, "serialization failure", safe)) : cb(null, proto.PutResponse.fromPartial({})),
      putWrites: (_call, cb) =>
        ++overloaded <= 1 ? cb(serviceError(status.RESOURCE_EXHAUSTED, "in-flight limit", { ...safe, "grpc-retry-pushback-ms": "5" })) : cb(null, {}),
      // Not marked: final at once.
      deleteThread: (_call, cb) => cb(serviceError(status.ABORTED, "conflict")),
      copyThread: (_call, cb) => cb(serviceError(status.RESOURCE_EXHAUSTED, "message larger than max")),
    }).start();
    client = new CheckpointdClient(fake.target, { retry: { initialBackoffMs: 5, maxBackoffMs: 10 } });
    await expect(client.put({ threadId: "t" })).resolves.toEqual(proto.PutResponse.fromPartial({}));
    expect(fake.count("put")).toBe(3);
    await expect(client.putWrites({ threadId: "t" })).resolves.toEqual({});
    expect(fake.count("putWrites")).toBe(2);
    const conflict = await client.deleteThread({ threadId: "t" }).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(AbortedError);
    expect(conflict).toMatchObject({ retrySafe: false });
    expect(fake.count("deleteThread")).toBe(1);
    const tooLarge = await client.copyThread({ sourceThreadId: "a", targetThreadId: "b" }).catch((e: unknown) => e);
    expect(tooLarge).toBeInstanceOf(ResourceExhaustedError);
    expect(tooLarge).toMatchObject({ retryable: false, retrySafe: false });
    expect(fake.count("copyThread")).toBe(1);
  });

  it("waits the server's pushback before retrying an overloaded call", async () => {
    const arrivals: number[] = [];
    fake = await new FakeServer({
      put: (_call, cb) => {
        arrivals.push(Date.now());
        if (arrivals.length === 1) {
          cb(serviceError(status.RESOURCE_EXHAUSTED, "overloaded", { "checkpointd-retry-safe": "true", "grpc-retry-pushback-ms": "300" }));
        } else cb(null, proto.PutResponse.fromPartial({}));
      },
    }).start();
    client = new CheckpointdClient(fake.target, { retry: { initialBackoffMs: 1, maxBackoffMs: 1 } });
    await client.put({ threadId: "t" });
    expect(arrivals).toHaveLength(2);
    expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(290);
  });

  it("stops retrying when the next wait would pass the call's deadline", async () => {
    fake = await new FakeServer({
      put: (_call, cb) =>
        cb(serviceError(status.RESOURCE_EXHAUSTED, "overloaded", { "checkpointd-retry-safe": "true", "grpc-retry-pushback-ms": "5000" })),
    }).start();
    client = new CheckpointdClient(fake.target, { timeoutMs: 1000 });
    const started = Date.now();
    const err = await client.put({ threadId: "t" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect(err).toMatchObject({ retryable: true, retrySafe: true, retryAfterMs: 5000 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(fake.count("put")).toBe(1);
  });

  it("retries a List stream that fails before its first message", async () => {
    let attempts = 0;
    fake = await new FakeServer({
      list: (call: { write(m: unknown): void; end(): void; emit(e: string, x: unknown): void }) => {
        if (++attempts === 1) {
          call.emit("error", serviceError(status.UNAVAILABLE, "database unreachable", { "checkpointd-retry-safe": "true" }));
          return;
        }
        call.write({ tuple: tuple("c1") });
        call.end();
      },
    } as Partial<proto.CheckpointServiceServer>).start();
    client = new CheckpointdClient(fake.target, { retry: { initialBackoffMs: 5, maxBackoffMs: 10 } });
    const ids = [];
    for await (const m of client.list({ threadId: "t" })) ids.push(m.tuple!.config!.checkpointId);
    expect(ids).toEqual(["c1"]);
    expect(attempts).toBe(2);
  });

  it("spreads calls over replicas with round_robin and keeps retrying on another replica", async () => {
    const healthy = await new FakeServer({ getTuple: emptyTuple }).start();
    const busy = await new FakeServer({
      getTuple: (_call, cb) => cb(serviceError(status.ABORTED, "contention", { "checkpointd-retry-safe": "true" })),
    }).start();
    const rr = new CheckpointdClient(`ipv4:${healthy.target},${busy.target}`, {
      loadBalancing: "round_robin",
      // Every success pays back a failure's throttle token, so retries continue for the whole test.
      retry: { initialBackoffMs: 5, maxBackoffMs: 10, throttleTokenRatio: 1 },
    });
    try {
      // Wait until both subchannels are connected so that round_robin alternates between them.
      await rr.getTuple({ threadId: "t" });
      const deadline = Date.now() + 5_000;
      while (busy.count("getTuple") === 0 && Date.now() < deadline) await rr.getTuple({ threadId: "t" });
      for (let i = 0; i < 10; i++) await expect(rr.getTuple({ threadId: "t" })).resolves.toEqual({ tuple: undefined });
      expect(healthy.count("getTuple")).toBeGreaterThanOrEqual(10);
      expect(busy.count("getTuple")).toBeGreaterThanOrEqual(5);
    } finally {
      rr.close();
      await healthy.stop();
      await busy.stop();
    }
  });

  it("rejects calls after close()", async () => {
    fake = await new FakeServer({ getTuple: emptyTuple }).start();
    const c = new CheckpointdClient(fake.target);
    await c.getTuple({ threadId: "t" });
    c.close();
    c.close(); // idempotent
    expect(c.closed).toBe(true);
    await expect(c.getTuple({ threadId: "t" })).rejects.toBeInstanceOf(ClientClosedError);
    await expect(c.list({}).next()).rejects.toBeInstanceOf(ClientClosedError);
    const saver = new GrpcCheckpointSaver(fake.target);
    await saver.close();
    await expect(saver.getTuple({ configurable: { thread_id: "t" } })).rejects.toBeInstanceOf(ClientClosedError);
  });
});

describe("CheckpointdClient options", () => {
  it("builds the channel options of a production client", () => {
    const c = new CheckpointdClient("127.0.0.1:1", { keepaliveTimeMs: 20_000, keepaliveTimeoutMs: 5_000, compression: "gzip", maxMessageSize: 1024 });
    expect(c.channelOptions).toMatchObject({
      "grpc.keepalive_time_ms": 20_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 0,
      "grpc.max_send_message_length": 1024,
      "grpc.max_receive_message_length": 1024,
      "grpc.default_compression_algorithm": 2,
      "grpc.initial_reconnect_backoff_ms": 250,
      "grpc.max_reconnect_backoff_ms": 1000,
      "grpc.enable_retries": 0,
    });
    const cfg = JSON.parse(String(c.channelOptions["grpc.service_config"]));
    expect(cfg).toEqual({ loadBalancingConfig: [{ pick_first: {} }] });
    c.close();
    const rr = new CheckpointdClient("127.0.0.1:1", { loadBalancing: "round_robin", waitForReady: true, maxReconnectBackoffMs: 500 });
    expect(JSON.parse(String(rr.channelOptions["grpc.service_config"]))).toEqual({ loadBalancingConfig: [{ round_robin: {} }] });
    expect(rr.channelOptions["grpc.max_reconnect_backoff_ms"]).toBe(500);
    rr.close();
    const tooManyAttempts = () => new CheckpointdClient("127.0.0.1:1", { retry: { maxAttempts: 11 } });
    expect(tooManyAttempts).toThrow(RangeError);
    expect(tooManyAttempts).toThrow("retry.maxAttempts must be an integer between 2 and 10");
    const noStatusCodes = () => new CheckpointdClient("127.0.0.1:1", { retry: { statusCodes: [] } });
    expect(noStatusCodes).toThrow(RangeError);
    expect(noStatusCodes).toThrow("retry.statusCodes must not be empty");
    expect(() => new CheckpointdClient("127.0.0.1:1", { waitForReady: true, timeoutMs: null })).toThrow(/waitForReady needs a deadline/);
    expect(() => new CheckpointdClient("")).toThrow(TypeError);
    expect(() => new GrpcCheckpointSaver({})).toThrow(TypeError);
  });

  it("fromConnString takes checkpointd's address where PostgresSaver.fromConnString took a URL", async () => {
    const plain = GrpcCheckpointSaver.fromConnString("127.0.0.1:1", { timeoutMs: 1234 });
    expect(plain.client.target).toBe("127.0.0.1:1");
    expect(plain.client.timeoutMs).toBe(1234);
    await plain.close();
    const prefixed = GrpcCheckpointSaver.fromConnString("grpc://127.0.0.1:2/");
    expect(prefixed.client.target).toBe("127.0.0.1:2");
    await prefixed.close();
    const secure = GrpcCheckpointSaver.fromConnString("grpcs://checkpointd.example:443");
    expect(secure.client.target).toBe("checkpointd.example:443");
    await secure.close();
    let err: unknown;
    try {
      GrpcCheckpointSaver.fromConnString("postgresql://app:hunter2@db:5432/app");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toContain("give the database URL to the checkpointd server");
    expect((err as Error).message).not.toContain("hunter2");
    expect(() => GrpcCheckpointSaver.fromConnString("127.0.0.1:1", { schema: "custom" } as never)).toThrow(/no schema option/);
    expect(() => GrpcCheckpointSaver.fromConnString("")).toThrow(TypeError);
  });

  it("names the hosts of every kind of gRPC target", () => {
    expect(targetHosts("checkpointd:50051")).toEqual(["checkpointd"]);
    expect(targetHosts("dns:///checkpointd-headless.ns.svc:50051")).toEqual(["checkpointd-headless.ns.svc"]);
    expect(targetHosts("ipv4:10.0.0.1:50051,127.0.0.1:50051")).toEqual(["10.0.0.1", "127.0.0.1"]);
    expect(targetHosts("[::1]:50051")).toEqual(["::1"]);
    expect(targetHosts("unix:///run/checkpointd.sock")).toEqual([]);
  });

  it("warns once when a bearer token is sent in plaintext to a non-loopback address", async () => {
    const warnings: Array<Error & { code?: string }> = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const quiet = [
        new CheckpointdClient("127.0.0.1:1", { token: "s3cret" }),
        new CheckpointdClient("localhost:1", { token: "s3cret" }),
        new CheckpointdClient("10.255.0.1:1", { token: "s3cret", tls: true }),
        new CheckpointdClient("10.255.0.1:1"),
      ];
      const loud = [
        new CheckpointdClient("10.255.0.1:1", { token: "s3cret" }),
        new CheckpointdClient("ipv4:127.0.0.1:1,10.255.0.2:1", { token: () => "s3cret" }),
      ];
      for (const c of [...quiet, ...loud]) c.close();
      // process.emitWarning delivers on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.code).toBe("CHECKPOINTD_TOKEN_PLAINTEXT");
    expect(warnings[0]!.message).toContain("10.255.0.1:1");
    expect(warnings[0]!.message).toContain("plaintext");
    expect(warnings[0]!.message).not.toContain("s3cret");
  });

  it("fails fast with UNAVAILABLE when nothing listens, after its retries", async () => {
    const port = await freePort();
    const c = new CheckpointdClient(`127.0.0.1:${port}`, { retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 20 } });
    const started = Date.now();
    await expect(c.getTuple({ threadId: "t" })).rejects.toBeInstanceOf(UnavailableError);
    expect(Date.now() - started).toBeLessThan(10_000);
    c.close();
  });

  it("waits for a server that starts late when waitForReady is set", async () => {
    const port = await freePort();
    const c = new CheckpointdClient(`127.0.0.1:${port}`, { waitForReady: true, timeoutMs: 10_000, retry: null });
    const pending = c.getTuple({ threadId: "t" });
    await new Promise((r) => setTimeout(r, 300));
    const late = new FakeServer({ getTuple: emptyTuple });
    await new Promise<void>((resolve, reject) =>
      late.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    try {
      await expect(pending).resolves.toEqual({ tuple: undefined });
    } finally {
      c.close();
      await late.stop();
    }
  });
});

describe("CheckpointdClient against checkpointd", () => {
  let db: ScratchDb | undefined;
  let server: Server | undefined;
  let client: CheckpointdClient;

  beforeAll(async () => {
    ({ db, server } = await startServerWithDatabase("tsclient_client"));
    client = new CheckpointdClient(server.target);
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await closePools();
    await dropDatabase(db);
  });

  it("reports SERVING", async () => {
    expect(await client.health()).toBe("SERVING");
    expect(await client.health("")).toBe("SERVING");
  });

  it("round-trips a checkpoint with blobs and writes", async () => {
    const doc = { v: 4, id: "c1", ts: "2024-01-01T00:00:00Z", channel_versions: { a: 1, b: 1 }, versions_seen: {} };
    const put = await client.put({
      threadId: "t-raw",
      checkpointId: "c1",
      checkpointJson: Buffer.from(JSON.stringify(doc)),
      metadataJson: Buffer.from(JSON.stringify({ source: "input", step: -1 })),
      blobs: [
        { channel: "a", version: "1", value: { type: "json", data: Buffer.from("[1]") } },
        { channel: "b", version: "1", value: { type: "empty" } },
      ],
    });
    expect(put.config).toEqual({ threadId: "t-raw", checkpointNs: "", checkpointId: "c1" });
    await client.putWrites({
      threadId: "t-raw",
      checkpointId: "c1",
      taskId: "task",
      taskPath: "~p",
      writes: [
        { channel: "x", value: { type: "json", data: Buffer.from("1") } },
        { channel: "__error__", value: { type: "json", data: Buffer.from('"boom"') } },
      ],
    });
    const got = await client.getTuple({ threadId: "t-raw" });
    const t = got.tuple!;
    expect(t.config).toEqual({ threadId: "t-raw", checkpointNs: "", checkpointId: "c1" });
    expect(t.parentConfig).toBeUndefined();
    expect(JSON.parse(Buffer.from(t.checkpointJson).toString())).toEqual(doc);
    expect(JSON.parse(Buffer.from(t.metadataJson).toString())).toEqual({ source: "input", step: -1 });
    expect(t.channelValues.map((b) => [b.channel, b.version, b.value?.type, b.value?.data && Buffer.from(b.value.data).toString()])).toEqual([
      ["a", "1", "json", "[1]"],
      ["b", "1", "empty", undefined],
    ]);
    expect(t.pendingWrites.map((w) => [w.taskId, w.channel, w.idx, w.taskPath])).toEqual([
      ["task", "__error__", -1, "~p"],
      ["task", "x", 0, "~p"],
    ]);
    expect((await client.getTuple({ threadId: "t-raw", checkpointId: "nope" })).tuple).toBeUndefined();
  });

  it("rejects malformed requests with INVALID_ARGUMENT naming the field", async () => {
    const err = (await client.put({ threadId: "", checkpointId: "c", checkpointJson: Buffer.from("{}") }).catch((e: unknown) => e)) as InvalidArgumentError;
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.details).toBe("thread_id must not be empty");
    const bad = (await client
      .put({ threadId: "t", checkpointId: "c", checkpointJson: Buffer.from('{"id": "other"}') })
      .catch((e: unknown) => e)) as InvalidArgumentError;
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    expect(bad.details).toBe('checkpoint_json has "id" "other", which differs from checkpoint_id "c"');
    const notJson = (await client
      .put({ threadId: "t", checkpointId: "c", checkpointJson: Buffer.from("{") })
      .catch((e: unknown) => e)) as InvalidArgumentError;
    expect(notJson).toBeInstanceOf(InvalidArgumentError);
    expect(notJson.details).toMatch(/^checkpoint_json is not valid JSON at byte 1/);
  });

  it("answers the diagnostics service with its version, a reachable database and its pool", async () => {
    const cargoVersion = /^version = "([^"]+)"/m.exec(readFileSync(path.join(REPO_ROOT, "Cargo.toml"), "utf8"))![1];
    const st = await client.getStatus();
    expect(st).toMatchObject({ version: cargoVersion, databaseReachable: true });
    expect(st.pool?.maxSize).toBeGreaterThan(0);
  });
});
