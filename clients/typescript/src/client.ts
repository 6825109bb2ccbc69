/**
 * A thin, typed gRPC client for checkpointd on `@grpc/grpc-js`.
 *
 * The client owns the channel configuration a production deployment needs (the same options as the
 * Python client): a per-call deadline; retries (./retry.ts) of UNAVAILABLE and of the statuses the
 * server marks safe to retry, with exponential backoff and full jitter, the server's
 * `grpc-retry-pushback-ms`, retry throttling, all within the call's deadline; a reconnect backoff
 * capped at about a second, so a running agent works again soon after the server is back, whatever
 * the outage's length; optional round-robin over several replicas; HTTP/2 keepalive, TLS, an
 * optional bearer token, compression and message size limits. Failed calls reject with the errors
 * of `./errors.ts`.
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
  GetDeltaChannelHistoryRequest,
  GetTupleRequest,
  ListRequest,
  ListResponse,
  PruneRequest,
  PutRequest,
  PutWritesRequest,
  type CopyThreadResponse,
  type DeepPartial,
  type DeleteForRunsResponse,
  type DeleteThreadResponse,
  type GetDeltaChannelHistoryResponse,
  type GetTupleResponse,
  type PruneResponse,
  type PutResponse,
  type PutWritesResponse,
} from "./gen/checkpoint/v1/checkpoint.js";
import { DiagnosticsServiceService, GetStatusRequest, type GetStatusResponse } from "./gen/checkpoint/v1/diagnostics.js";
import { CheckpointdError, ClientClosedError, errorFromServiceError } from "./errors.js";
import { DEFAULT_RETRY_POLICY, Retrier, resolveRetryPolicy, sleep, type RetryPolicy } from "./retry.js";

export { DEFAULT_RETRY_POLICY, RETRY_SAFE_TRAILER, type RetryPolicy, type RetryableStatusName } from "./retry.js";

export const SERVICE_NAME = "checkpoint.v1.CheckpointService";
export const DIAGNOSTICS_SERVICE_NAME = "checkpoint.v1.DiagnosticsService";
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_LIST_TIMEOUT_MS = 300_000;
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
/** Longest wait between two attempts to reconnect to a server that went away. */
export const DEFAULT_MAX_RECONNECT_BACKOFF_MS = 1000;
const INITIAL_RECONNECT_BACKOFF_MS = 250;
const HEALTH_METHOD = "/grpc.health.v1.Health/Check";
const USER_AGENT = "checkpointd-client-typescript/0.1.0";

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
  /** The retry policy (see ./retry.ts); `null` disables retries. Default {@link DEFAULT_RETRY_POLICY}. */
  retry?: RetryPolicy | null;
  /**
   * Longest wait between reconnection attempts after the server went away, in ms (gRPC's own default
   * grows to 120 s). Default 1000: a running agent works again about a second after the server is back.
   */
  maxReconnectBackoffMs?: number;
  /**
   * `"round_robin"` spreads calls over every address the target resolves to (a DNS name with one
   * record per replica, e.g. a Kubernetes headless service as `dns:///checkpointd-headless:50051`, or
   * `ipv4:10.0.0.1:50051,10.0.0.2:50051`); a retry may go to another replica. Default `"pick_first"`.
   */
  loadBalancing?: "pick_first" | "round_robin";
  /** Interval of HTTP/2 keepalive pings while calls are active, in ms. Default 30 s. */
  keepaliveTimeMs?: number;
  /** How long to wait for a ping's answer before the connection is dropped, in ms. Default 10 s. */
  keepaliveTimeoutMs?: number;
  /**
   * Queue calls while the channel is (re)connecting instead of failing fast with UNAVAILABLE, for at
   * most the call's deadline (so it needs a `timeoutMs`). Default false.
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
  /** Overrides the client's `waitForReady` for this call (it waits at most until its deadline). */
  waitForReady?: boolean;
}

export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | `UNKNOWN(${number})`;

const HEALTH_STATUS: Record<number, HealthStatus> = {
  0: "UNKNOWN",
  1: "SERVING",
  2: "NOT_SERVING",
  3: "SERVICE_UNKNOWN",
};

function encodeHealthRequest(service: string): Uint8Array {
  // HealthCheckRequest { string service = 1; }
  const w = new BinaryWriter();
  if (service !== "") w.uint32(10).string(service);
  return w.finish();
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

/**
 * The gRPC service config (JSON) of a client: its load balancing policy. (Retries are the client's
 * own, see ./retry.ts, and waitForReady is set on each call's metadata, which is where grpc-js reads it.)
 */
export function serviceConfig(options: { loadBalancing?: "pick_first" | "round_robin" }): string {
  const lb = options.loadBalancing ?? "pick_first";
  if (lb !== "pick_first" && lb !== "round_robin") {
    throw new RangeError(`loadBalancing must be "pick_first" or "round_robin", got ${JSON.stringify(lb)}`);
  }
  return JSON.stringify({ loadBalancingConfig: [{ [lb]: {} }] });
}

/** The hosts a gRPC target names (none for a Unix socket). */
export function targetHosts(target: string): string[] {
  if (/^unix(-abstract)?:/.test(target)) return [];
  let rest = target;
  const list = /^ipv[46]:(.*)$/.exec(rest);
  if (list) return list[1]!.split(",").map(hostOf);
  const dns = /^dns:(?:\/\/[^/]*\/)?(.*)$/.exec(rest);
  if (dns) rest = dns[1]!;
  return [hostOf(rest)];
}

function hostOf(address: string): string {
  if (address.startsWith("[")) return address.slice(1, address.indexOf("]"));
  if ((address.match(/:/g) ?? []).length > 1) return address; // a bare IPv6 address
  return address.split(":")[0]!;
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || /^127\./.test(h) || h === "::1" || h === "0:0:0:0:0:0:0:1";
}

let warnedPlaintextToken = false;

/**
 * Warns (once per process) when a bearer token would cross the network in clear text: a token on a
 * plaintext channel to an address that is not the loopback interface. The token is not in the text.
 */
function warnIfTokenInPlaintext(target: string, creds: ChannelCredentials, token: TokenSource | undefined): void {
  if (warnedPlaintextToken || token === undefined || token === "" || creds._isSecure()) return;
  if (targetHosts(target).every(isLoopback)) return;
  warnedPlaintextToken = true;
  process.emitWarning(
    `checkpointd client: a bearer token is sent to ${target} over a plaintext channel; ` +
      "anyone on the network path can read it. Enable TLS (tls: true or rootCertificates) for remote servers.",
    { code: "CHECKPOINTD_TOKEN_PLAINTEXT" },
  );
}

/** Passes an already serialized request through to gRPC. */
const passThrough = (bytes: Buffer): Buffer => bytes;

/** A Buffer over a Uint8Array's memory (no copy). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
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
  getDeltaChannelHistory: "GetDeltaChannelHistory",
};

/** The request message of each unary RPC (its encoder). */
const REQUEST_MESSAGES = {
  put: PutRequest,
  putWrites: PutWritesRequest,
  getTuple: GetTupleRequest,
  deleteThread: DeleteThreadRequest,
  deleteForRuns: DeleteForRunsRequest,
  copyThread: CopyThreadRequest,
  prune: PruneRequest,
  getDeltaChannelHistory: GetDeltaChannelHistoryRequest,
};

function toBuffer(x: Buffer | string | undefined): Buffer | undefined {
  if (x === undefined) return undefined;
  return typeof x === "string" ? Buffer.from(x) : x;
}

/** The channel credentials the options ask for (plaintext unless a TLS option is given). */
function channelCredentials(options: CheckpointdClientOptions): ChannelCredentials {
  if (options.credentials !== undefined) return options.credentials;
  if (options.tls || options.rootCertificates || options.privateKey || options.certificateChain) {
    return grpcCredentials.createSsl(
      toBuffer(options.rootCertificates) ?? null,
      toBuffer(options.privateKey) ?? null,
      toBuffer(options.certificateChain) ?? null,
    );
  }
  return grpcCredentials.createInsecure();
}

/** The gRPC channel options for the client options (raw `channelOptions` applied last). */
function buildChannelOptions(options: CheckpointdClientOptions, timeoutMs: number | null): ChannelOptions {
  if (options.waitForReady && timeoutMs === null) {
    throw new RangeError("waitForReady needs a deadline: set timeoutMs (a call would otherwise wait forever)");
  }
  const maxReconnect = options.maxReconnectBackoffMs ?? DEFAULT_MAX_RECONNECT_BACKOFF_MS;
  if (!(maxReconnect > 0)) throw new RangeError("maxReconnectBackoffMs must be positive");
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const channelOptions: ChannelOptions = {
    "grpc.max_send_message_length": maxMessageSize,
    "grpc.max_receive_message_length": maxMessageSize,
    "grpc.keepalive_time_ms": options.keepaliveTimeMs ?? 30_000,
    "grpc.keepalive_timeout_ms": options.keepaliveTimeoutMs ?? 10_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.primary_user_agent": USER_AGENT,
    "grpc.initial_reconnect_backoff_ms": Math.min(INITIAL_RECONNECT_BACKOFF_MS, maxReconnect),
    "grpc.max_reconnect_backoff_ms": maxReconnect,
    // The client retries itself (./retry.ts), with the server's retry-safe marker.
    "grpc.enable_retries": 0,
    "grpc.service_config": serviceConfig(options),
  };
  if (options.compression) {
    const algo = { deflate: 1, gzip: 2 }[options.compression];
    if (algo === undefined) throw new TypeError(`unknown compression ${String(options.compression)}; use "gzip"`);
    channelOptions["grpc.default_compression_algorithm"] = algo;
  }
  if (options.serverNameOverride) {
    channelOptions["grpc.ssl_target_name_override"] = options.serverNameOverride;
    channelOptions["grpc.default_authority"] = options.serverNameOverride;
  }
  return Object.assign(channelOptions, options.channelOptions ?? {});
}

/** A unary method: its path and how its messages are (de)serialized. */
interface UnaryMethod<Q, R> {
  name: string;
  path: string;
  serialize: (request: Q) => Uint8Array;
  deserialize: (data: Buffer) => R;
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
  private readonly retrier: Retrier | undefined;
  private readonly token: TokenSource | undefined;
  private readonly waitForReady: boolean;
  private readonly extraMetadata: Array<[string, string]>;
  private _closed = false;

  constructor(target: string, options: CheckpointdClientOptions = {}) {
    if (!target) throw new TypeError("target is required, e.g. 'checkpointd:50051'");
    this.target = target;
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
    this.listTimeoutMs = options.listTimeoutMs === undefined ? DEFAULT_LIST_TIMEOUT_MS : options.listTimeoutMs;
    this.token = options.token;
    this.waitForReady = options.waitForReady ?? false;
    this.extraMetadata = Array.isArray(options.metadata)
      ? [...options.metadata]
      : Object.entries(options.metadata ?? {});
    const retry = options.retry === undefined ? DEFAULT_RETRY_POLICY : options.retry;
    this.retrier = retry === null ? undefined : new Retrier(resolveRetryPolicy(retry));
    const creds = channelCredentials(options);
    this.channelOptions = buildChannelOptions(options, this.timeoutMs);
    warnIfTokenInPlaintext(target, creds, this.token);
    this.stub = new CheckpointServiceClient(target, creds, this.channelOptions);
  }

  // ---------------------------------------------------------------- plumbing

  get closed(): boolean {
    return this._closed;
  }

  private checkOpen(): void {
    if (this._closed) throw new ClientClosedError();
  }

  private async metadata(call?: CallOptions): Promise<Metadata> {
    const md = new Metadata({ waitForReady: call?.waitForReady ?? this.waitForReady });
    for (const [k, v] of this.extraMetadata) md.add(k, v);
    for (const [k, v] of Object.entries(call?.metadata ?? {})) md.add(k, v);
    if (this.token !== undefined) {
      const value = typeof this.token === "function" ? await this.token() : this.token;
      if (value) md.set("authorization", `Bearer ${value}`);
    }
    return md;
  }

  /** The call's deadline (epoch ms), covering every attempt; undefined for none. */
  private deadlineOf(call: CallOptions | undefined, fallback: number | null): number | undefined {
    const timeout = call?.timeoutMs === undefined ? fallback : call.timeoutMs;
    return timeout === null ? undefined : Date.now() + timeout;
  }

  private static grpcOptions(deadline: number | undefined): Partial<GrpcCallOptions> {
    return deadline === undefined ? {} : { deadline: new Date(deadline) };
  }

  /**
   * The wait before repeating a failed attempt, or undefined when the error is final. A call whose
   * signal aborted is never repeated.
   */
  private retryDelay(err: CheckpointdError, attempt: number, deadline: number | undefined, call?: CallOptions): number | undefined {
    if (this.retrier === undefined || call?.signal?.aborted) return undefined;
    return this.retrier.nextDelay(err, attempt, deadline);
  }

  /** Waits between attempts; an abort during the wait rejects with a CancelledError. */
  private async pause(ms: number, method: string, call?: CallOptions): Promise<void> {
    try {
      await sleep(ms, call?.signal);
    } catch {
      throw errorFromServiceError(cancelledError(call!.signal!), method);
    }
  }

  /** One unary RPC with the client's retries, all within one deadline. */
  private async callUnary<Q, R>(
    method: UnaryMethod<Q, R>,
    request: Q,
    call: CallOptions | undefined,
    fallbackTimeout: number | null,
  ): Promise<R> {
    this.checkOpen();
    const metadata = await this.metadata(call);
    const deadline = this.deadlineOf(call, fallbackTimeout);
    // Serialized once for every attempt, without copying the encoder's bytes.
    const bytes = asBuffer(method.serialize(request));
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.invoke<R>(method.name, call, (cb) =>
          this.stub.makeUnaryRequest(
            method.path,
            passThrough,
            method.deserialize,
            bytes,
            metadata.clone(),
            CheckpointdClient.grpcOptions(deadline),
            cb,
          ),
        );
        this.retrier?.recordSuccess();
        return result;
      } catch (err) {
        const delay = err instanceof CheckpointdError ? this.retryDelay(err, attempt, deadline, call) : undefined;
        if (delay === undefined) throw err;
        await this.pause(delay, method.name, call);
      }
    }
  }

  private unary<K extends UnaryName>(name: K, request: Req<K>, call?: CallOptions): Promise<Res<K>> {
    const def = CheckpointServiceService[name] as unknown as { path: string; responseDeserialize: (b: Buffer) => Res<K> };
    const message = REQUEST_MESSAGES[name] as unknown as { encode(m: Req<K>): { finish(): Uint8Array } };
    return this.callUnary(
      { name: RPC_NAMES[name], path: def.path, serialize: (m) => message.encode(m).finish(), deserialize: def.responseDeserialize },
      request,
      call,
      this.timeoutMs,
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
   * the call. The deadline (default `listTimeoutMs`) covers the whole stream. A stream that fails
   * before its first message is retried like a unary call; once messages arrived, an error is final.
   */
  async *list(request: DeepPartial<ListRequest>, call?: CallOptions): AsyncGenerator<ListResponse> {
    this.checkOpen();
    const bytes = asBuffer(ListRequest.encode(ListRequest.fromPartial(request)).finish());
    const metadata = await this.metadata(call);
    const deadline = this.deadlineOf(call, this.listTimeoutMs);
    const signal = call?.signal;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw errorFromServiceError(cancelledError(signal), "List");
      const stream: ClientReadableStream<ListResponse> = this.stub.makeServerStreamRequest(
        CheckpointServiceService.list.path,
        passThrough,
        (b: Buffer) => ListResponse.decode(b),
        bytes,
        metadata.clone(),
        CheckpointdClient.grpcOptions(deadline),
      );
      const onAbort = () => stream.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      let received = false;
      let finished = false;
      let delay: number | undefined;
      try {
        for await (const message of stream as AsyncIterable<ListResponse>) {
          received = true;
          yield message;
        }
        finished = true;
        this.retrier?.recordSuccess();
        return;
      } catch (err) {
        finished = true;
        const error = errorFromServiceError(err, "List");
        delay = received ? undefined : this.retryDelay(error, attempt, deadline, call);
        if (delay === undefined) throw error;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        if (!finished) stream.cancel();
      }
      await this.pause(delay, "List", call);
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
   * GetDeltaChannelHistory: for each requested channel, the seed (the value stored at the nearest
   * ancestor of the target checkpoint, `seedBlob` or `seedInlineJson`, or neither) and the channel's
   * pending writes along the walk, oldest first (LangGraph `getDeltaChannelHistory`, beta). Without
   * `checkpointId` the target is the namespace's latest checkpoint; a missing thread or checkpoint
   * answers every channel with no writes and no seed.
   */
  getDeltaChannelHistory(
    request: DeepPartial<GetDeltaChannelHistoryRequest>,
    call?: CallOptions,
  ): Promise<GetDeltaChannelHistoryResponse> {
    return this.unary("getDeltaChannelHistory", GetDeltaChannelHistoryRequest.fromPartial(request), call);
  }

  /**
   * The gRPC health status of `service` (default the checkpoint service): "SERVING",
   * "NOT_SERVING", "SERVICE_UNKNOWN"... Default deadline 5 s.
   */
  health(service: string = SERVICE_NAME, call?: CallOptions): Promise<HealthStatus> {
    return this.callUnary(
      { name: "Health.Check", path: HEALTH_METHOD, serialize: encodeHealthRequest, deserialize: decodeHealthResponse },
      service,
      call,
      5_000,
    );
  }

  /** DiagnosticsService.GetStatus: the server's view of its database pool and retries. */
  getStatus(call?: CallOptions): Promise<GetStatusResponse> {
    const def = DiagnosticsServiceService.getStatus;
    return this.callUnary(
      {
        name: "GetStatus",
        path: def.path,
        serialize: (m: GetStatusRequest) => GetStatusRequest.encode(m).finish(),
        deserialize: def.responseDeserialize,
      },
      GetStatusRequest.fromPartial({}),
      call,
      this.timeoutMs,
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
