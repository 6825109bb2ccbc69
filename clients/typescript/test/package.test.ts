/**
 * The built package (dist/, ESM with type declarations) works as its users see it: imported by name,
 * and the README's example (examples/quickstart.ts) runs against a real checkpointd.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

import { PACKAGE_ROOT, closePools, dropDatabase, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";

const dist = path.join(PACKAGE_ROOT, "dist");

function node(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, args, { cwd: PACKAGE_ROOT, encoding: "utf8", env: { ...process.env, ...env } });
}

describe("the built package", () => {
  let db: ScratchDb | undefined;
  let server: Server | undefined;

  beforeAll(async () => {
    if (!existsSync(path.join(dist, "index.js"))) throw new Error("dist/ is missing: run `npm run build` first");
    ({ db, server } = await startServerWithDatabase("tsclient_package"));
  });

  afterAll(async () => {
    await server?.stop();
    await closePools();
    await dropDatabase(db);
  });

  it("is an ES module with type declarations, importable by its name", () => {
    const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8"));
    expect(pkg.type).toBe("module");
    for (const entry of Object.values(pkg.exports) as Array<string | { types: string; import: string }>) {
      if (typeof entry === "string") continue;
      expect(existsSync(path.join(PACKAGE_ROOT, entry.types)), entry.types).toBe(true);
      expect(existsSync(path.join(PACKAGE_ROOT, entry.import)), entry.import).toBe(true);
    }
    const res = node([
      "--input-type=module",
      "-e",
      `const m = await import("@checkpointd/client");
       const p = await import("@checkpointd/client/proto");
       const { BaseCheckpointSaver } = await import("@langchain/langgraph-checkpoint");
       const s = new m.GrpcCheckpointSaver("127.0.0.1:1");
       console.log(JSON.stringify({
         names: Object.keys(m).sort(),
         isSaver: s instanceof BaseCheckpointSaver,
         service: p.CheckpointServiceClient.serviceName,
       }));
       await s.close();`,
    ]);
    expect(res.stderr).toBe("");
    const out = JSON.parse(res.stdout);
    expect(out.isSaver).toBe(true);
    expect(out.service).toBe("checkpoint.v1.CheckpointService");
    expect(out.names).toEqual(
      expect.arrayContaining(["CheckpointdClient", "GrpcCheckpointSaver", "PolyglotSerializer", "UnavailableError", "proto"]),
    );
  });

  it("runs the README example against checkpointd", () => {
    const source = readFileSync(path.join(PACKAGE_ROOT, "examples", "quickstart.ts"), "utf8");
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const out = path.join(PACKAGE_ROOT, ".cache", "examples");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "quickstart.mjs"), js);
    const res = node([path.join(out, "quickstart.mjs")], { CHECKPOINTD_TARGET: server!.target, THREAD_ID: "readme" });
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    const lines = res.stdout.trim().split("\n");
    expect(lines[0]).toBe("interrupted: Ship it?");
    expect(lines[1]).toBe("answer: yes");
    expect(lines[2]).toMatch(/^[0-9a-f-]{36} loop 1$/);
    expect(lines[3]).toMatch(/^[0-9a-f-]{36} loop 0$/);
  });
});
