/**
 * A thin, typed gRPC client for checkpointd on `@grpc/grpc-js`.
 *
 * The client owns the channel configuration a production deployment needs (the same options as the
 * Python client): a per-call deadline, retry of UNAVAILABLE with exponential backoff and full jitter
 * (a gRPC service-config retry policy, so the retries happen inside gRPC, with its retry throttling
 * and the server's `grpc-retry-pushback-ms`), HTTP/2 keepalive, TLS, an optional bearer token,
 * compression and message size limits. Failed calls reject with the errors of `./errors.ts`.
 */
import {
  credentials as grpcCredentials,
  Metadata,
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ServiceError,
} from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";

import {
  CheckpointServiceClient,
  CheckpointServiceService,
  CopyThreadRequest,
  DeleteForRunsRequest,
  DeleteThreadRequest,
  GetTupleRequest,
  ListRequest,
  PruneRequest,
  PutRequest,
  PutWritesRequest,
  type CopyThreadResponse,
  type DeepPartial,
  type DeleteForRunsResponse,
  type DeleteThreadResponse,
  type GetTupleResponse,
  type ListResponse,
  type PruneResponse,
  type PutResponse,
  type PutWritesResponse,
} from "./gen/checkpoint/v1/checkpoint.js";
import {
  DiagnosticsServiceClient,
  GetStatusRequest,
  type GetStatusResponse,
} from "./gen/checkpoint/v1/diagnostics.js";
import { ClientClosedError, errorFromServiceError } from "./errors.js";

export const SERVICE_NAME = "checkpoint.v1.CheckpointService";
export const DIAGNOSTICS_SERVICE_NAME = "checkpoint.v1.DiagnosticsService";
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_LIST_TIMEOUT_MS = 300_000;
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
const HEALTH_METHOD = "/grpc.health.v1.Health/Check";
const USER_AGENT = "checkpointd-client-typescript/0.1.0";

/** gRPC status names a retry policy may name. */
export type RetryableStatusName =
  | "UNAVAILABLE"
  | "DEADLINE_EXCEEDED"
  | "ABORTED"
  | "RESOURCE_EXHAUSTED"
  | "INTERNAL"
  | "UNKNOWN";

/**
 * gRPC retry policy (gRFC A6) applied to every checkpointd method.
 *
 * gRPC waits `random(0, min(initialBackoffMs * multiplier^(n-1), maxBackoffMs))` before retry n
 * (exponential backoff with full jitter), honours the server's `grpc-retry-pushback-ms`, never
 * retries past the call's deadline, and throttles retries channel-wide once too many calls fail
 * (`throttleMaxTokens` / `throttleTokenRatio`). Only calls whose status is in `statusCodes` are
 * retried; every checkpointd RPC is idempotent, so that is always safe.
 */
export interface RetryPolicy {
  /** Attempts in all, 2 to 5 (gRPC caps it at 5). Default 5. */
  maxAttempts?: number;
  /** Default 100 ms. */
  initialBackoffMs?: number;
  /** Default 2000 ms. */
  maxBackoffMs?: number;
  /** Default 2. */
  backoffMultiplier?: number;
  /** Default `["UNAVAILABLE"]`. */
  statusCodes?: RetryableStatusName[];
  /** Default 10. */
  throttleMaxTokens?: number;
  /** Default 0.1. */
  throttleTokenRatio?: number;
}

export const DEFAULT_RETRY_POLICY: Required<RetryPolicy> = Object.freeze({
  maxAttempts: 5,
  initialBackoffMs: 100,
  maxBackoffMs: 2000,
  backoffMultiplier: 2,
  statusCodes: ["UNAVAILABLE"] as RetryableStatusName[],
  throttleMaxTokens: 10,
  throttleTokenRatio: 0.1,
});

/** A bearer token, or a function returning one for each call. */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

export interface CheckpointdClientOptions {
  /** Default deadline of each unary call in ms; `null` means no deadline. Default 30 s. */
  timeoutMs?: number | null;
  /** Deadline of a whole `List` stream in ms; `null` means no deadline. Default 300 s. */
  listTimeoutMs?: number | null;
  /** Use TLS with the system roots (implied by any of the certificate options). */
  tls?: boolean;
  /** PEM root certificates to trust instead of the system roots. */
  rootCertificates?: Buffer | string;
  /** PEM private key and certificate chain for mutual TLS. */
  privateKey?: Buffer | string;
  certificateChain?: Buffer | string;
  /** Ready-made channel credentials (override the TLS options). */
  credentials?: ChannelCredentials;
  /** TLS host name to verify instead of the target's (testing only). */
  serverNameOverride?: string;
  /** Bearer token sent as `authorization: Bearer <token>` with every call. */
  token?: TokenSource;
  /** Compress requests: `"gzip"` or `"deflate"`. Default none. */
  compression?: "gzip" | "deflate" | null;
  /** Largest message sent or received, in bytes (default 64 MiB, the server's default). */
  maxMessageSize?: number;
  /** The retry policy; `null` disables gRPC retries. Default {@link DEFAULT_RETRY_POLICY}. */
  retry?: RetryPolicy | null;
  /** Interval of HTTP/2 keepalive pings while calls are active, in ms. Default 30 s. */
  keepaliveTimeMs?: number;
  /** How long to wait for a ping's answer before the connection is dropped, in ms. Default 10 s. */
  keepaliveTimeoutMs?: number;
  /**
   * Queue calls while the channel is (re)connecting instead of failing fast with UNAVAILABLE
   * (the deadline still applies). Default false.
   */
  waitForReady?: boolean;
  /** Extra headers sent with every call (e.g. `traceparent`). */
  metadata?: Record<string, string> | Array<[string, string]>;
  /** Extra raw gRPC channel options, applied last (they win). */
  channelOptions?: ChannelOptions;
}

/** Per-call options. */
export interface CallOptions {
  /** This call's deadline in ms (`null`: none); default the client's `timeoutMs`/`listTimeoutMs`. */
  timeoutMs?: number | null;
  /** Cancels the call (it then rejects with a CancelledError). */
  signal?: AbortSignal;
  /** Extra headers for this call. */
  metadata?: Record<string, string>;
}

export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | `UNKNOWN(${number})`;

const HEALTH_STATUS: Record<number, HealthStatus> = {
  0: "UNKNOWN",
  1: "SERVING",
  2: "NOT_SERVING",
  3: "SERVICE_UNKNOWN",
};

function encodeHealthRequest(service: string): Buffer {
  // HealthCheckRequest { string service = 1; }
  const w = new BinaryWriter();
  if (service !== "") w.uint32(10).string(service);
  return Buffer.from(w.finish());
}

function decodeHealthResponse(data: Buffer): HealthStatus {
  // HealthCheckResponse { ServingStatus status = 1; }; absent means UNKNOWN.
  const r = new BinaryReader(data);
  let value = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 0) value = r.int32();
    else r.skip(tag & 7);
  }
  return HEALTH_STATUS[value] ?? `UNKNOWN(${value})`;
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

/** The gRPC service config (JSON) for a retry policy. */
export function retryServiceConfig(policy: RetryPolicy, waitForReady = false): string {
  const p = { ...DEFAULT_RETRY_POLICY, ...policy };
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < 2 || p.maxAttempts > 5) {
    throw new RangeError("retry.maxAttempts must be an integer between 2 and 5 (gRPC caps it at 5)");
  }
  if (!(p.initialBackoffMs > 0 && p.maxBackoffMs > 0 && p.backoffMultiplier > 0)) {
    throw new RangeError("retry backoff values must be positive");
  }
  if (p.statusCodes.length === 0) {
    throw new RangeError("retry.statusCodes must not be empty (pass retry: null to disable retries)");
  }
  return JSON.stringify({
    methodConfig: [
      {
        name: [{ service: SERVICE_NAME }, { service: DIAGNOSTICS_SERVICE_NAME }],
        ...(waitForReady ? { waitForReady: true } : {}),
        retryPolicy: {
          maxAttempts: p.maxAttempts,
          initialBackoff: secs(p.initialBackoffMs),
          maxBackoff: secs(p.maxBackoffMs),
          backoffMultiplier: p.backoffMultiplier,
          retryableStatusCodes: p.statusCodes,
        },
      },
    ],
    retryThrottling: { maxTokens: p.throttleMaxTokens, tokenRatio: p.throttleTokenRatio },
  });
}

type ServiceDef = typeof CheckpointServiceService;
type UnaryName = {
  [K in keyof ServiceDef]: ServiceDef[K]["responseStream"] extends false ? K : never;
}[keyof ServiceDef];
type Req<K extends keyof ServiceDef> = Parameters<ServiceDef[K]["requestSerialize"]>[0];
type Res<K extends keyof ServiceDef> = ReturnType<ServiceDef[K]["responseDeserialize"]>;

const RPC_NAMES: Record<keyof ServiceDef, string> = {
  put: "Put",
  putWrites: "PutWrites",
  getTuple: "GetTuple",
  list: "List",
  deleteThread: "DeleteThread",
  deleteForRuns: "DeleteForRuns",
  copyThread: "CopyThread",
  prune: "Prune",
};

function toBuffer(x: Buffer | string | undefined): Buffer | undefined {
  if (x === undefined) return undefined;
  return typeof x === "string" ? Buffer.from(x) : x;
}

/**
 * Typed client for `checkpoint.v1.CheckpointService`.
 *
 * Requests may be given partially (missing fields take their proto defaults). One channel serves
 * every call; `close()` closes it.
 */
export class CheckpointdClient {
  readonly target: string;
  readonly timeoutMs: number | null;
  readonly listTimeoutMs: number | null;
  /** The channel options the client was built with (for inspection). */
  readonly channelOptions: ChannelOptions;
  private readonly stub: CheckpointServiceClient;
  private readonly diagnostics: DiagnosticsServiceClient;
  private readonly token: TokenSource | undefined;
  private readonly extraMetadata: Array<[string, string]>;
  private _closed = false;

  constructor(target: string, options: CheckpointdClientOptions = {}) {
    if (!target) throw new TypeError("target is required, e.g. 'checkpointd:50051'");
    this.target = target;
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
    this.listTimeoutMs = options.listTimeoutMs === undefined ? DEFAULT_LIST_TIMEOUT_MS : options.listTimeoutMs;
    this.token = options.token;
    this.extraMetadata = Array.isArray(options.metadata)
      ? [...options.metadata]
      : Object.entries(options.metadata ?? {});

    let creds = options.credentials;
    if (creds === undefined) {
      if (options.tls || options.rootCertificates || options.privateKey || options.certificateChain) {
        creds = grpcCredentials.createSsl(
          toBuffer(options.rootCertificates) ?? null,
          toBuffer(options.privateKey) ?? null,
          toBuffer(options.certificateChain) ?? null,
        );
      } else {
        creds = grpcCredentials.createInsecure();
      }
    }

    const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const channelOptions: ChannelOptions = {
      "grpc.max_send_message_length": maxMessageSize,
      "grpc.max_receive_message_length": maxMessageSize,
      "grpc.keepalive_time_ms": options.keepaliveTimeMs ?? 30_000,
      "grpc.keepalive_timeout_ms": options.keepaliveTimeoutMs ?? 10_000,
      "grpc.keepalive_permit_without_calls": 0,
      "grpc.primary_user_agent": USER_AGENT,
    };
    const retry = options.retry === undefined ? DEFAULT_RETRY_POLICY : options.retry;
    if (retry !== null) {
      channelOptions["grpc.enable_retries"] = 1;
      channelOptions["grpc.service_config"] = retryServiceConfig(retry, options.waitForReady ?? false);
    } else {
      channelOptions["grpc.enable_retries"] = 0;
      if (options.waitForReady) {
        channelOptions["grpc.service_config"] = JSON.stringify({
          methodConfig: [
            { name: [{ service: SERVICE_NAME }, { service: DIAGNOSTICS_SERVICE_NAME }], waitForReady: true },
          ],
        });
      }
    }
    if (options.compression) {
      const algo = { deflate: 1, gzip: 2 }[options.compression];
      if (algo === undefined) throw new TypeError(`unknown compression ${String(options.compression)}; use "gzip"`);
      channelOptions["grpc.default_compression_algorithm"] = algo;
    }
    if (options.serverNameOverride) {
      channelOptions["grpc.ssl_target_name_override"] = options.serverNameOverride;
      channelOptions["grpc.default_authority"] = options.serverNameOverride;
    }
    Object.assign(channelOptions, options.channelOptions ?? {});
    this.channelOptions = channelOptions;
    this.stub = new CheckpointServiceClient(target, creds, channelOptions);
    this.diagnostics = new DiagnosticsServiceClient(target, creds, {
      ...channelOptions,
      channelOverride: this.stub.getChannel(),
    });
  }

  // ---------------------------------------------------------------- plumbing

  get closed(): boolean {
    return this._closed;
  }

  private checkOpen(): void {
    if (this._closed) throw new ClientClosedError();
  }

  private async metadata(call?: CallOptions): Promise<Metadata> {
    const md = new Metadata();
    for (const [k, v] of this.extraMetadata) md.add(k, v);
    for (const [k, v] of Object.entries(call?.metadata ?? {})) md.add(k, v);
    if (this.token !== undefined) {
      const value = typeof this.token === "function" ? await this.token() : this.token;
      if (value) md.set("authorization", `Bearer ${value}`);
    }
    return md;
  }

  private grpcOptions(call: CallOptions | undefined, fallback: number | null): Partial<GrpcCallOptions> {
    const timeout = call?.timeoutMs === undefined ? fallback : call.timeoutMs;
    return timeout === null ? {} : { deadline: new Date(Date.now() + timeout) };
  }

  private async unary<K extends UnaryName>(
    name: K,
    request: Req<K>,
    call?: CallOptions,
    fallbackTimeout: number | null = this.timeoutMs,
  ): Promise<Res<K>> {
    this.checkOpen();
    const def = CheckpointServiceService[name] as unknown as {
      path: string;
      requestSerialize: (v: Req<K>) => Buffer;
      responseDeserialize: (b: Buffer) => Res<K>;
    };
    const method = RPC_NAMES[name];
    const metadata = await this.metadata(call);
    return this.invoke(method, call, (cb) =>
      this.stub.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        metadata,
        this.grpcOptions(call, fallbackTimeout),
        cb,
      ),
    );
  }

  private invoke<T>(
    method: string,
    call: CallOptions | undefined,
    start: (cb: (err: ServiceError | null, value?: T) => void) => { cancel(): void },
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const signal = call?.signal;
      if (signal?.aborted) {
        reject(errorFromServiceError(cancelledError(signal), method));
        return;
      }
      let onAbort: (() => void) | undefined;
      const handle = start((err, value) => {
        if (onAbort) signal?.removeEventListener("abort", onAbort);
        if (err) reject(errorFromServiceError(err, method));
        else resolve(value as T);
      });
      if (signal) {
        onAbort = () => handle.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  // ---------------------------------------------------------------- RPCs

  /** Put: saves one checkpoint with its blobs (LangGraph `put`). */
  put(request: DeepPartial<PutRequest>, call?: CallOptions): Promise<PutResponse> {
    return this.unary("put", PutRequest.fromPartial(request), call);
  }

  /** PutWrites: saves a task's pending writes (LangGraph `putWrites`). */
  putWrites(request: DeepPartial<PutWritesRequest>, call?: CallOptions): Promise<PutWritesResponse> {
    return this.unary("putWrites", PutWritesRequest.fromPartial(request), call);
  }

  /** GetTuple: reads one checkpoint, or the latest; the response has no `tuple` when none matches. */
  getTuple(request: DeepPartial<GetTupleRequest>, call?: CallOptions): Promise<GetTupleResponse> {
    return this.unary("getTuple", GetTupleRequest.fromPartial(request), call);
  }

  /**
   * List: streams the matching checkpoints, newest first. Stopping the iteration early cancels
   * the call. The deadline (default `listTimeoutMs`) covers the whole stream.
   */
  async *list(request: DeepPartial<ListRequest>, call?: CallOptions): AsyncGenerator<ListResponse> {
    this.checkOpen();
    const req = ListRequest.fromPartial(request);
    const metadata = await this.metadata(call);
    const signal = call?.signal;
    if (signal?.aborted) throw errorFromServiceError(cancelledError(signal), "List");
    const stream: ClientReadableStream<ListResponse> = this.stub.list(
      req,
      metadata,
      this.grpcOptions(call, this.listTimeoutMs),
    );
    const onAbort = () => stream.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    let finished = false;
    try {
      for await (const message of stream as AsyncIterable<ListResponse>) {
        yield message;
      }
      finished = true;
    } catch (err) {
      finished = true;
      throw errorFromServiceError(err, "List");
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (!finished) stream.cancel();
    }
  }

  /** DeleteThread: removes a thread in every namespace. */
  deleteThread(request: DeepPartial<DeleteThreadRequest>, call?: CallOptions): Promise<DeleteThreadResponse> {
    return this.unary("deleteThread", DeleteThreadRequest.fromPartial(request), call);
  }

  /** DeleteForRuns: removes the checkpoints of some runs. */
  deleteForRuns(request: DeepPartial<DeleteForRunsRequest>, call?: CallOptions): Promise<DeleteForRunsResponse> {
    return this.unary("deleteForRuns", DeleteForRunsRequest.fromPartial(request), call);
  }

  /** CopyThread: copies a whole thread to another id. */
  copyThread(request: DeepPartial<CopyThreadRequest>, call?: CallOptions): Promise<CopyThreadResponse> {
    return this.unary("copyThread", CopyThreadRequest.fromPartial(request), call);
  }

  /** Prune: `keep_latest` or `delete`, as LangGraph's Postgres saver. */
  prune(request: DeepPartial<PruneRequest>, call?: CallOptions): Promise<PruneResponse> {
    return this.unary("prune", PruneRequest.fromPartial(request), call);
  }

  /**
   * The gRPC health status of `service` (default the checkpoint service): "SERVING",
   * "NOT_SERVING", "SERVICE_UNKNOWN"... Default deadline 5 s.
   */
  async health(service: string = SERVICE_NAME, call?: CallOptions): Promise<HealthStatus> {
    this.checkOpen();
    const metadata = await this.metadata(call);
    return this.invoke<HealthStatus>("Health.Check", call, (cb) =>
      this.stub.makeUnaryRequest(
        HEALTH_METHOD,
        encodeHealthRequest,
        decodeHealthResponse,
        service,
        metadata,
        this.grpcOptions(call, 5_000),
        cb,
      ),
    );
  }

  /** DiagnosticsService.GetStatus: the server's view of its database pool and retries. */
  async getStatus(call?: CallOptions): Promise<GetStatusResponse> {
    this.checkOpen();
    const metadata = await this.metadata(call);
    return this.invoke<GetStatusResponse>("GetStatus", call, (cb) =>
      this.diagnostics.getStatus(
        GetStatusRequest.fromPartial({}),
        metadata,
        this.grpcOptions(call, this.timeoutMs),
        (err, res) => cb(err, res),
      ),
    );
  }

  /** Closes the channel; later calls throw {@link ClientClosedError}. Idempotent. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    this.stub.close();
  }

  toString(): string {
    return `CheckpointdClient(${this.target})`;
  }

  /** Keep `JSON.stringify` of a config holding the client from walking the channel. */
  toJSON(): string {
    return this.toString();
  }
}

function cancelledError(signal: AbortSignal): ServiceError {
  const reason = signal.reason instanceof Error ? signal.reason.message : "the call was aborted";
  return Object.assign(new Error(reason), {
    code: 1, // CANCELLED
    details: reason,
    metadata: new Metadata(),
  }) as ServiceError;
}
