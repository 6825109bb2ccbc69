#!/usr/bin/env node
// Builds the package twice from src/: ES modules to dist/ (tsconfig.json) and CommonJS to dist/cjs/
// (tsconfig.cjs.json), each with its type declarations. dist/cjs/package.json says
// {"type": "commonjs"} so Node loads the .js files there as CommonJS inside this "type": "module"
// package. package.json's "exports" send `import` to dist/ and `require` to dist/cjs/.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

rmSync(path.join(root, "dist"), { recursive: true, force: true });
for (const project of ["tsconfig.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", path.join(root, project)], { stdio: "inherit" });
}
mkdirSync(path.join(root, "dist", "cjs"), { recursive: true });
writeFileSync(path.join(root, "dist", "cjs", "package.json"), `${JSON.stringify({ type: "commonjs" }, null, 2)}\n`);
