/**
 * The client's retry policy: which failed calls are repeated, after how long, and when to stop.
 *
 * A call is repeated when its status is in the policy's `statusCodes` and either
 *
 * - it is `UNAVAILABLE` (the server or its database could not be reached; a connection failure has
 *   no trailers, so no marker is needed), or
 * - the server marked it safe to retry: trailing metadata `checkpointd-retry-safe: true` (checkpointd
 *   sets it on ABORTED from contention and on RESOURCE_EXHAUSTED from overload; a RESOURCE_EXHAUSTED
 *   without it, such as a message over the size limit, is final).
 *
 * Before retry n the client waits the server's `grpc-retry-pushback-ms` when it sent one, else
 * `random(0, min(initialBackoffMs * backoffMultiplier^(n-1), maxBackoffMs))` (exponential backoff
 * with full jitter). It never waits past the call's deadline: the deadline covers the first attempt
 * and every retry. Retries are throttled per client as in gRPC (gRFC A6): each retryable failure
 * costs a token, each success gives back `throttleTokenRatio`, and retries stop while fewer than
 * half of `throttleMaxTokens` are left.
 */
import { status, type Metadata } from "@grpc/grpc-js";

/** The trailer checkpointd sets on a status that is safe to retry. */
export const RETRY_SAFE_TRAILER = "checkpointd-retry-safe";

/** gRPC status names a retry policy may name. */
export type RetryableStatusName =
  | "UNAVAILABLE"
  | "DEADLINE_EXCEEDED"
  | "ABORTED"
  | "RESOURCE_EXHAUSTED"
  | "INTERNAL"
  | "UNKNOWN";

/** How failed calls are retried; see the module documentation. */
export interface RetryPolicy {
  /** Attempts in all, 2 to 10. Default 5. */
  maxAttempts?: number;
  /** Default 100 ms. */
  initialBackoffMs?: number;
  /** Default 1000 ms. */
  maxBackoffMs?: number;
  /** Default 2. */
  backoffMultiplier?: number;
  /**
   * Statuses that may be retried. Default `["UNAVAILABLE", "ABORTED", "RESOURCE_EXHAUSTED"]`; every
   * status but UNAVAILABLE is retried only when the server marked it safe.
   */
  statusCodes?: RetryableStatusName[];
  /** Default 10. */
  throttleMaxTokens?: number;
  /** Default 0.1. */
  throttleTokenRatio?: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<Required<RetryPolicy>> = Object.freeze({
  maxAttempts: 5,
  initialBackoffMs: 100,
  maxBackoffMs: 1000,
  backoffMultiplier: 2,
  statusCodes: Object.freeze(["UNAVAILABLE", "ABORTED", "RESOURCE_EXHAUSTED"]) as RetryableStatusName[],
  throttleMaxTokens: 10,
  throttleTokenRatio: 0.1,
});

/** A validated retry policy with every field set. */
export function resolveRetryPolicy(policy: RetryPolicy): Required<RetryPolicy> {
  const p = { ...DEFAULT_RETRY_POLICY, ...policy };
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < 2 || p.maxAttempts > 10) {
    throw new RangeError("retry.maxAttempts must be an integer between 2 and 10");
  }
  if (!(p.initialBackoffMs > 0 && p.maxBackoffMs > 0 && p.backoffMultiplier > 0)) {
    throw new RangeError("retry backoff values must be positive");
  }
  if (p.statusCodes.length === 0) {
    throw new RangeError("retry.statusCodes must not be empty (pass retry: null to disable retries)");
  }
  for (const name of p.statusCodes) {
    if (typeof (status as Record<string, unknown>)[name] !== "number") {
      throw new RangeError(`retry.statusCodes: unknown gRPC status ${JSON.stringify(name)}`);
    }
  }
  if (!(p.throttleMaxTokens > 0 && p.throttleTokenRatio > 0)) {
    throw new RangeError("retry throttling values must be positive");
  }
  return p;
}

/** Whether the trailers carry `checkpointd-retry-safe: true`. */
export function markedRetrySafe(metadata: Metadata | undefined): boolean {
  const values = metadata?.get(RETRY_SAFE_TRAILER) ?? [];
  return values.some((v) => String(v).trim().toLowerCase() === "true");
}

/** What the retry loop needs to know about a failed attempt. */
export interface FailedAttempt {
  code: number | undefined;
  retrySafe: boolean;
  retryAfterMs: number | undefined;
}

/** Decides, for one client, whether and when a failed call is repeated. */
export class Retrier {
  private readonly codes: Set<number>;
  private tokens: number;

  constructor(readonly policy: Required<RetryPolicy>) {
    this.codes = new Set(policy.statusCodes.map((name) => (status as unknown as Record<string, number>)[name]!));
    this.tokens = policy.throttleMaxTokens;
  }

  /** Whether this failure's status may be retried at all (before throttling and deadline). */
  isRetryable(failure: FailedAttempt): boolean {
    if (failure.code === undefined || !this.codes.has(failure.code)) return false;
    return failure.code === status.UNAVAILABLE || failure.retrySafe;
  }

  /** Records a successful attempt (gives a fraction of a throttle token back). */
  recordSuccess(): void {
    this.tokens = Math.min(this.policy.throttleMaxTokens, this.tokens + this.policy.throttleTokenRatio);
  }

  /**
   * The wait in ms before repeating a call whose attempt number `attempt` (1-based) failed, or
   * `undefined` when the call must fail now: not retryable, out of attempts, throttled, or the wait
   * would reach the deadline (`deadline`: epoch ms, or undefined for none).
   */
  nextDelay(failure: FailedAttempt, attempt: number, deadline: number | undefined): number | undefined {
    if (!this.isRetryable(failure)) return undefined;
    this.tokens = Math.max(0, this.tokens - 1);
    if (attempt >= this.policy.maxAttempts) return undefined;
    if (this.tokens <= this.policy.throttleMaxTokens / 2) return undefined;
    const delay = failure.retryAfterMs ?? this.backoff(attempt);
    if (deadline !== undefined && Date.now() + delay >= deadline) return undefined;
    return delay;
  }

  /** Full-jitter exponential backoff before retry number `attempt`. */
  private backoff(attempt: number): number {
    const { initialBackoffMs, backoffMultiplier, maxBackoffMs } = this.policy;
    const cap = Math.min(initialBackoffMs * backoffMultiplier ** (attempt - 1), maxBackoffMs);
    return Math.random() * cap;
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
