/**
 * An in-process fake of checkpoint.v1.CheckpointService (and DiagnosticsService) on @grpc/grpc-js,
 * for client behaviour a real server cannot be made to show on demand: chosen failures, delays,
 * headers, TLS.
 */
import { Metadata, Server, ServerCredentials, status, type ServerCredentials as Creds, type UntypedServiceImplementation } from "@grpc/grpc-js";

import { proto, diagnosticsProto } from "../src/index.js";

type Impl = Partial<proto.CheckpointServiceServer>;

export class FakeServer {
  readonly server = new Server();
  port = 0;
  /** Every call's method and request headers, in order. */
  readonly calls: Array<{ method: string; metadata: Record<string, unknown> }> = [];

  constructor(
    impl: Impl,
    diagnostics?: Partial<diagnosticsProto.DiagnosticsServiceServer>,
  ) {
    const full: Record<string, unknown> = {};
    for (const key of Object.keys(proto.CheckpointServiceService)) {
      const handler = (impl as Record<string, unknown>)[key];
      full[key] = (call: { metadata: { getMap(): Record<string, unknown> } }, cb?: (err: unknown, res?: unknown) => void) => {
        this.calls.push({ method: key, metadata: call.metadata.getMap() });
        if (typeof handler === "function") return (handler as (...a: unknown[]) => unknown)(call, cb);
        const err = { code: status.UNIMPLEMENTED, details: `fake: ${key} not implemented` };
        if (cb) cb(err);
        else (call as unknown as { emit(e: string, x: unknown): void }).emit("error", err);
        return undefined;
      };
    }
    this.server.addService(proto.CheckpointServiceService, full as UntypedServiceImplementation);
    if (diagnostics) {
      this.server.addService(
        diagnosticsProto.DiagnosticsServiceService,
        diagnostics as unknown as UntypedServiceImplementation,
      );
    }
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  start(creds: Creds = ServerCredentials.createInsecure()): Promise<this> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync("127.0.0.1:0", creds, (err, port) => {
        if (err) return reject(err);
        this.port = port;
        resolve(this);
      });
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.tryShutdown(() => resolve());
      setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000).unref();
    });
  }

  count(method: string): number {
    return this.calls.filter((c) => c.method === method).length;
  }
}

export function serviceError(code: number, details: string, trailers?: Record<string, string>) {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(trailers ?? {})) metadata.set(k, v);
  return { code, details, metadata };
}
