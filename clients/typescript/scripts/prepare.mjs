#!/usr/bin/env node
// npm's `prepare` script: builds dist/ (scripts/build.mjs) whenever npm installs this package from
// source, i.e. `npm ci` / `npm install` in this folder, `npm pack`, and `npm install <this folder>`
// or a git URL in another project.
//
// `npm install /path/to/clients/typescript` links the folder into the other project and runs this
// script in the folder without installing the folder's own dependencies (npm leaves a linked folder's
// node_modules to the folder). So when the build tools are missing, it installs this package's
// locked dependencies (with the dev ones, scripts off so this script does not run again) first; the
// linked package then loads its runtime dependencies from this folder's node_modules.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Whether the build tools (dev dependencies) are installed in this folder. */
function buildToolsInstalled() {
  try {
    createRequire(path.join(root, "package.json")).resolve("typescript/package.json");
    return true;
  } catch {
    return false;
  }
}

/** The environment for a nested npm: the outer command's own settings (global, omit...) removed. */
function nestedNpmEnv() {
  const drop = /^npm_config_(global|location|prefix|omit|include|only|production|dev|install_links|package_lock_only|dry_run|save.*|workspaces?|audit|fund)$/i;
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !drop.test(k)));
}

if (!buildToolsInstalled()) {
  const npm = process.env.npm_execpath;
  const [cmd, prefix] = npm && npm.endsWith(".js") ? [process.execPath, [npm]] : ["npm", []];
  console.error("@checkpointd/client: installing its build tools to build dist/ (npm install in the package folder)");
  execFileSync(cmd, [...prefix, "install", "--include=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-save"], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    env: nestedNpmEnv(),
  });
}
execFileSync(process.execPath, [path.join(root, "scripts", "build.mjs")], { stdio: "inherit" });
