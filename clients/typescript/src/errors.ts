/**
 * Errors thrown by the checkpointd client.
 *
 * Every failed RPC surfaces as a {@link CheckpointdError} subclass chosen by the gRPC status code
 * (the same classes as the Python client). Each one carries:
 *
 * - `method`: the RPC that failed, e.g. `"Put"`;
 * - `code` / `codeName`: the gRPC status (`status.UNAVAILABLE` / `"UNAVAILABLE"`);
 * - `details`: the server's message (it names the offending field for INVALID_ARGUMENT);
 * - `retryable`: whether repeating the same call is safe and may succeed. Every checkpointd RPC is
 *   idempotent, so a call that failed with UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or an overloaded
 *   RESOURCE_EXHAUSTED can be repeated even when it is unknown whether the first attempt committed.
 *   A RESOURCE_EXHAUSTED is retryable only when the server said so in structured form (trailer
 *   `checkpointd-retry-safe: true`, or a pushback); without it (e.g. a message over the size limit)
 *   it is final;
 * - `retrySafe`: the server marked this status safe to retry (trailer `checkpointd-retry-safe: true`);
 * - `retryAfterMs`: the server's pushback (trailer `grpc-retry-pushback-ms`), if any;
 * - `cause`: the original `@grpc/grpc-js` ServiceError.
 */
import { status, type Metadata, type ServiceError } from "@grpc/grpc-js";

import { markedRetrySafe } from "./retry.js";

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(status)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

/** The name of a gRPC status code, e.g. `"UNAVAILABLE"`. */
export function statusName(code: number | undefined): string {
  return code === undefined ? "UNKNOWN" : (CODE_NAMES[code] ?? `UNKNOWN(${code})`);
}

export interface CheckpointdErrorInit {
  method: string;
  code?: number;
  details: string;
  retryable?: boolean;
  retrySafe?: boolean;
  retryAfterMs?: number;
  metadata?: Metadata;
  cause?: unknown;
}

/** A checkpointd RPC failed. See the module documentation for the fields. */
export class CheckpointdError extends Error {
  /** Whether repeating the call is safe and may succeed (class default). */
  static readonly retryableDefault: boolean = false;

  readonly method: string;
  readonly code: number | undefined;
  readonly codeName: string;
  readonly details: string;
  readonly retryable: boolean;
  /** The server marked the status safe to retry (trailer `checkpointd-retry-safe: true`). */
  readonly retrySafe: boolean;
  readonly retryAfterMs: number | undefined;
  /** Trailing metadata of the failed call, when there was any. */
  readonly metadata: Metadata | undefined;

  constructor(init: CheckpointdErrorInit) {
    const retryable = init.retryable ?? (new.target as typeof CheckpointdError).retryableDefault;
    const codeName = statusName(init.code);
    let advice = retryable ? "safe to retry" : "not safe to retry as is";
    if (init.retryAfterMs !== undefined) advice += ` after ${init.retryAfterMs}ms`;
    super(`checkpointd ${init.method} failed: ${codeName}: ${init.details} (${advice})`, {
      cause: init.cause,
    });
    this.name = new.target.name;
    this.method = init.method;
    this.code = init.code;
    this.codeName = codeName;
    this.details = init.details;
    this.retryable = retryable;
    this.retrySafe = init.retrySafe ?? false;
    this.retryAfterMs = init.retryAfterMs;
    this.metadata = init.metadata;
  }
}

/** INVALID_ARGUMENT: a field is malformed (bad id, invalid JSON, NUL...). Nothing was written. */
export class InvalidArgumentError extends CheckpointdError {}

/** UNAUTHENTICATED: the call carries no valid bearer token. */
export class UnauthenticatedError extends CheckpointdError {}

/** PERMISSION_DENIED: the token is valid but not allowed to touch this thread. */
export class PermissionDeniedError extends CheckpointdError {}

/**
 * RESOURCE_EXHAUSTED: a message over the size limit (not retryable), or the server is overloaded
 * (marked `retrySafe`, retryable with backoff; `retryAfterMs` may say when).
 */
export class ResourceExhaustedError extends CheckpointdError {}

/** FAILED_PRECONDITION: the operation cannot apply to this data. Nothing was changed. */
export class FailedPreconditionError extends CheckpointdError {}

/** UNAVAILABLE: the server or its database could not be reached. Safe to retry. */
export class UnavailableError extends CheckpointdError {
  static override readonly retryableDefault: boolean = true;
}

/** DEADLINE_EXCEEDED: the call's deadline passed. Safe to retry (every RPC is idempotent). */
export class DeadlineExceededError extends CheckpointdError {
  static override readonly retryableDefault: boolean = true;
}

/** ABORTED: serialization failures or deadlocks persisted after the server's retries. Safe to retry. */
export class AbortedError extends CheckpointdError {
  static override readonly retryableDefault: boolean = true;
}

/** INTERNAL: an unexpected server-side failure; details are in the server's logs. */
export class InternalError extends CheckpointdError {}

/** CANCELLED: the call was cancelled by the caller (e.g. an AbortSignal fired). */
export class CancelledError extends CheckpointdError {}

/** Any other status (UNIMPLEMENTED, UNKNOWN, DATA_LOSS...). */
export class UnexpectedStatusError extends CheckpointdError {}

/** A call was made on a client after `close()`. */
export class ClientClosedError extends Error {
  constructor(what = "CheckpointdClient") {
    super(`${what} is closed`);
    this.name = "ClientClosedError";
  }
}

const BY_CODE: Partial<Record<number, new (init: CheckpointdErrorInit) => CheckpointdError>> = {
  [status.INVALID_ARGUMENT]: InvalidArgumentError,
  [status.UNAUTHENTICATED]: UnauthenticatedError,
  [status.PERMISSION_DENIED]: PermissionDeniedError,
  [status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [status.FAILED_PRECONDITION]: FailedPreconditionError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [status.ABORTED]: AbortedError,
  [status.INTERNAL]: InternalError,
  [status.CANCELLED]: CancelledError,
};

function pushbackMs(metadata: Metadata | undefined): number | undefined {
  const values = metadata?.get("grpc-retry-pushback-ms");
  if (!values || values.length === 0) return undefined;
  const ms = Number.parseInt(String(values[0]), 10);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof err === "object" && err !== null && typeof (err as ServiceError).code === "number";
}

/** Translates a `@grpc/grpc-js` ServiceError into the matching {@link CheckpointdError}. */
export function errorFromServiceError(err: unknown, method: string): CheckpointdError {
  if (err instanceof CheckpointdError) return err;
  if (!isServiceError(err)) {
    return new UnexpectedStatusError({ method, details: String(err), cause: err });
  }
  const Cls = BY_CODE[err.code] ?? UnexpectedStatusError;
  const metadata = err.metadata;
  const retryAfterMs = pushbackMs(metadata);
  const details = err.details || "(no details)";
  const retrySafe = markedRetrySafe(metadata);
  let retryable: boolean | undefined = retrySafe ? true : undefined;
  if (Cls === ResourceExhaustedError) {
    // Overload is retryable; an oversized message is not. The server says which in its trailers.
    retryable = retrySafe || retryAfterMs !== undefined;
  }
  return new Cls({ method, code: err.code, details, retryable, retrySafe, retryAfterMs, metadata, cause: err });
}
