/**
 * The Python interpreter for the interop test: $CHECKPOINTD_INTEROP_PYTHON when set (any Python with
 * test/python/requirements.txt and this repository's Python client, clients/python, installed; the
 * client's own development venv, clients/python/.venv, has both), else a virtual environment in
 * .cache/interop-venv that is created (with `python3 -m venv` and pip, from the pinned requirements,
 * plus clients/python as an editable install, so it runs the client's current code) on first use
 * and re-created when the requirements change. $PYTHON picks the base interpreter (default python3).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

import { PACKAGE_ROOT, REPO_ROOT } from "./harness.js";

export const INTEROP_SCRIPT = path.join(PACKAGE_ROOT, "test", "python", "interop.py");
export const RESUME_SCRIPT = path.join(PACKAGE_ROOT, "test", "python", "resume.py");
const PYTHON_CLIENT = path.join(REPO_ROOT, "clients", "python");
const REQUIREMENTS = path.join(PACKAGE_ROOT, "test", "python", "requirements.txt");

function run(cmd: string, args: string[]): void {
  const res = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (res.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${res.error ?? `exit ${res.status}`}):\n${res.stdout}\n${res.stderr}`);
  }
}

export function interopPython(): string {
  const fromEnv = process.env.CHECKPOINTD_INTEROP_PYTHON;
  if (fromEnv) return fromEnv;
  const venv = path.join(PACKAGE_ROOT, ".cache", "interop-venv");
  const python = path.join(venv, "bin", "python");
  const stamp = path.join(venv, ".requirements.txt");
  const wanted = `${readFileSync(REQUIREMENTS, "utf8")}\n-e ${PYTHON_CLIENT}\n`;
  if (existsSync(python) && existsSync(stamp) && readFileSync(stamp, "utf8") === wanted) return python;
  rmSync(venv, { recursive: true, force: true });
  run(process.env.PYTHON ?? "python3", ["-m", "venv", venv]);
  run(python, ["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "-r", REQUIREMENTS, "-e", PYTHON_CLIENT]);
  writeFileSync(stamp, wanted);
  return python;
}

/** Runs test/python/interop.py and parses the thread it prints. */
export function runInterop(mode: "write" | "read", databaseUrl: string, threadId: string): PyCheckpoint[] {
  const res = spawnSync(interopPython(), [INTEROP_SCRIPT, mode, databaseUrl, threadId], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status !== 0) throw new Error(`interop.py ${mode} failed (exit ${res.status}):\n${res.stderr}`);
  return JSON.parse(res.stdout) as PyCheckpoint[];
}

/** What test/python/resume.py prints. */
export interface PyResume {
  interrupt?: string;
  result?: { question: string; summary: string; answer: string; steps: number };
  versions: Record<string, string>;
  version_types: string[];
  next: string[];
}

/** Runs test/python/resume.py (the Python graph on checkpointd through the Python client). */
export function runResume(mode: "start" | "resume" | "continue" | "state", target: string, threadId: string): PyResume {
  const res = spawnSync(interopPython(), [RESUME_SCRIPT, mode, target, threadId], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`resume.py ${mode} failed (exit ${res.status}):\n${res.stderr}`);
  return JSON.parse(res.stdout) as PyResume;
}

/** One checkpoint as test/python/interop.py prints it. */
export interface PyCheckpoint {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  parent_checkpoint_id: string | null;
  metadata: Record<string, unknown>;
  v: number;
  ts: string;
  channel_versions: Record<string, string>;
  channels: string[];
  inline_values: Record<string, unknown>;
  pending_writes: Array<[string, string]>;
}
