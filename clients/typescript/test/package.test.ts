/**
 * The package works as its users get it, in a fresh project outside the repository:
 *
 * - `npm pack` builds the tarball (the `prepare` script), and `npm install <tarball>` with the peer
 *   dependencies gives a package that `import` (ES module) and `require` (CommonJS) both load, with
 *   its `./proto` subpath;
 * - `npm install <folder>` of a clean copy of this folder (no node_modules, no dist) builds it too;
 * - the README's quick start (examples/quickstart.ts: a graph that stops at an interrupt and resumes,
 *   i.e. the saver's put, putWrites, getTuple, list, then deleteThread) runs from both projects against
 *   a real checkpointd, as .mjs and as .cjs.
 *
 * npm downloads are cached in <repo>/target/npm-cache (override with npm_config_cache).
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import ts from "typescript";

import { PACKAGE_ROOT, REPO_ROOT, closePools, dropDatabase, startServerWithDatabase, type ScratchDb, type Server } from "./harness.js";

const NPM_CACHE = process.env.npm_config_cache ?? path.join(REPO_ROOT, "target", "npm-cache");
const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as {
  name: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
/** What a LangGraph.js project already has: the peers, at the versions this suite is tested with. */
const PROJECT_DEPENDENCIES = ["@langchain/langgraph", "@langchain/core", "@langchain/langgraph-checkpoint"].map(
  (name) => `${name}@${pkg.devDependencies[name]}`,
);

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, npm_config_cache: NPM_CACHE, npm_config_update_notifier: "false", ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
}

function mustRun(cmd: string, args: string[], cwd: string): string {
  const res = run(cmd, args, cwd);
  if (res.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd} (${res.error ?? `exit ${res.status}`}):\n${res.stdout}\n${res.stderr}`);
  }
  return res.stdout;
}

const NPM_INSTALL = ["install", "--no-audit", "--no-fund", "--prefer-offline"];

/** A new project directory under the system temp dir, with a minimal package.json. */
function freshProject(label: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `checkpointd-ts-${label}-`));
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: `quickstart-${label}`, version: "0.0.0", private: true }));
  return dir;
}

/** Writes examples/quickstart.ts into `dir` as quickstart.mjs and quickstart.cjs. */
function writeQuickstart(dir: string): void {
  const source = readFileSync(path.join(PACKAGE_ROOT, "examples", "quickstart.ts"), "utf8");
  const emit = (module: ts.ModuleKind) =>
    ts.transpileModule(source, { compilerOptions: { module, target: ts.ScriptTarget.ES2022 } }).outputText;
  writeFileSync(path.join(dir, "quickstart.mjs"), emit(ts.ModuleKind.ESNext));
  writeFileSync(path.join(dir, "quickstart.cjs"), emit(ts.ModuleKind.CommonJS));
}

/** Runs a quick start file and checks what it prints. */
function expectQuickstartRuns(dir: string, file: string, server: Server, threadId: string): void {
  const res = run(process.execPath, [file], dir, { CHECKPOINTD_TARGET: server.target, THREAD_ID: threadId });
  expect(res.stderr).toBe("");
  expect(res.status).toBe(0);
  const lines = res.stdout.trim().split("\n");
  expect(lines).toHaveLength(5);
  expect(lines[0]).toBe("interrupted: Ship it?");
  expect(lines[1]).toBe("answer: yes");
  expect(lines[2]).toMatch(/^[0-9a-f-]{36} loop 1$/);
  expect(lines[3]).toMatch(/^[0-9a-f-]{36} loop 0$/);
  expect(lines[4]).toBe("deleted: true");
}

/**
 * `import` and `require` of the package and its ./proto subpath, from `dir`. `sharesPeers`: the
 * package uses the project's copy of @langchain/langgraph-checkpoint (false for a linked folder, which
 * resolves its dependencies from its own node_modules).
 */
function expectImportAndRequire(dir: string, sharesPeers = true): void {
  const esm = run(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const m = await import("${pkg.name}");
       const p = await import("${pkg.name}/proto");
       const { BaseCheckpointSaver } = await import("@langchain/langgraph-checkpoint");
       const s = m.GrpcCheckpointSaver.fromConnString("127.0.0.1:1");
       console.log(JSON.stringify({ saver: s instanceof BaseCheckpointSaver, service: p.CheckpointServiceClient.serviceName, names: Object.keys(m) }));
       await s.close();`,
    ],
    dir,
  );
  const cjs = run(
    process.execPath,
    [
      "-e",
      `const m = require("${pkg.name}");
       const p = require("${pkg.name}/proto");
       const { BaseCheckpointSaver } = require("@langchain/langgraph-checkpoint");
       const s = m.GrpcCheckpointSaver.fromConnString("127.0.0.1:1");
       console.log(JSON.stringify({ saver: s instanceof BaseCheckpointSaver, service: p.CheckpointServiceClient.serviceName, names: Object.keys(m) }));
       s.close();`,
    ],
    dir,
  );
  for (const res of [esm, cjs]) {
    expect(res.stderr).toBe("");
    const out = JSON.parse(res.stdout);
    expect(out.saver).toBe(sharesPeers);
    expect(out.service).toBe("checkpoint.v1.CheckpointService");
    expect(out.names).toEqual(
      expect.arrayContaining(["CheckpointdClient", "GrpcCheckpointSaver", "PolyglotSerializer", "UnavailableError", "proto"]),
    );
  }
}

let db: ScratchDb | undefined;
let server: Server | undefined;
const projects: string[] = [];

beforeAll(async () => {
  ({ db, server } = await startServerWithDatabase("tsclient_package"));
});

afterAll(async () => {
  await server?.stop();
  await closePools();
  await dropDatabase(db);
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});

describe("package.json", () => {
  it("declares runtime dependencies with caret ranges and dual import/require exports", () => {
    for (const [name, range] of Object.entries(pkg.dependencies)) expect(range, name).toMatch(/^\^\d/);
    const exportsField = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")).exports;
    for (const subpath of [".", "./proto"]) {
      expect(Object.keys(exportsField[subpath])).toEqual(["import", "require"]);
      expect(exportsField[subpath].require.default).toMatch(/^\.\/dist\/cjs\//);
    }
  });
});

describe("the packed tarball, installed in a fresh project", () => {
  let project: string;

  beforeAll(() => {
    const packDir = mkdtempSync(path.join(tmpdir(), "checkpointd-ts-pack-"));
    projects.push(packDir);
    const packed = JSON.parse(mustRun("npm", ["pack", "--json", "--pack-destination", packDir], PACKAGE_ROOT)) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(["dist/index.js", "dist/cjs/index.js", "dist/cjs/package.json", "package.json"]));
    expect(files.filter((f) => f.startsWith("test/") || f.startsWith("node_modules/"))).toEqual([]);
    project = freshProject("tarball");
    projects.push(project);
    mustRun("npm", [...NPM_INSTALL, path.join(packDir, packed[0]!.filename), ...PROJECT_DEPENDENCIES], project);
    writeQuickstart(project);
  }, 300_000);

  it("is loaded by import and by require, with its ./proto subpath", () => {
    expectImportAndRequire(project);
  });

  it("runs the quick start as an ES module", () => {
    expectQuickstartRuns(project, "quickstart.mjs", server!, "tarball-esm");
  });

  it("runs the quick start as CommonJS", () => {
    expectQuickstartRuns(project, "quickstart.cjs", server!, "tarball-cjs");
  });
});

describe("a clean copy of the package folder, installed by path", () => {
  let project: string;

  beforeAll(() => {
    // What a user has after cloning: the sources, no node_modules, no dist.
    const source = mkdtempSync(path.join(tmpdir(), "checkpointd-ts-source-"));
    projects.push(source);
    const skip = new Set(["node_modules", "dist", ".cache", "coverage"]);
    for (const entry of readdirSync(PACKAGE_ROOT)) {
      if (!skip.has(entry)) cpSync(path.join(PACKAGE_ROOT, entry), path.join(source, entry), { recursive: true });
    }
    project = freshProject("folder");
    projects.push(project);
    mustRun("npm", [...NPM_INSTALL, source, ...PROJECT_DEPENDENCIES], project);
    writeQuickstart(project);
  }, 300_000);

  it("is built by its prepare script and loaded by import and by require", () => {
    expectImportAndRequire(project, false);
  });

  it("runs the quick start as an ES module and as CommonJS", () => {
    expectQuickstartRuns(project, "quickstart.mjs", server!, "folder-esm");
    expectQuickstartRuns(project, "quickstart.cjs", server!, "folder-cjs");
  });
});
