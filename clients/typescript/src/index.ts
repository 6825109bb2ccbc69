export {
  CheckpointdClient,
  DEFAULT_LIST_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MAX_RECONNECT_BACKOFF_MS,
  DEFAULT_RETRY_POLICY,
  DEFAULT_TIMEOUT_MS,
  DIAGNOSTICS_SERVICE_NAME,
  RETRY_SAFE_TRAILER,
  SERVICE_NAME,
  serviceConfig,
  targetHosts,
  type CallOptions,
  type CheckpointdClientOptions,
  type HealthStatus,
  type RetryPolicy,
  type RetryableStatusName,
  type TokenSource,
} from "./client.js";
export {
  AbortedError,
  CancelledError,
  CheckpointdError,
  ClientClosedError,
  DeadlineExceededError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  UnexpectedStatusError,
  errorFromServiceError,
  statusName,
  type CheckpointdErrorInit,
} from "./errors.js";
export { GrpcCheckpointSaver, type GrpcCheckpointSaverOptions, type PruneStrategyName } from "./saver.js";
export {
  ForeignValue,
  PolyglotSerializer,
  interruptsForPython,
  interruptsFromPython,
  isForeignValue,
  type PolyglotSerializerOptions,
} from "./serde.js";
/** The generated messages of checkpoint.v1 (also importable as `@checkpointd/client/proto`). */
export * as proto from "./gen/checkpoint/v1/checkpoint.js";
export * as diagnosticsProto from "./gen/checkpoint/v1/diagnostics.js";
