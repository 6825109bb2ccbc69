#!/usr/bin/env node
// Prints per-file and total test counts from vitest's JSON report (scripts/test.sh writes it), ending
// with the plain line "typescript: N passed, N failed, N skipped".
//
//   node scripts/summarize-results.mjs REPORT.json [VITEST_EXIT_CODE]
import { readFileSync } from "node:fs";
import path from "node:path";

const file = process.argv[2];
const vitestExit = Number(process.argv[3] ?? 0);
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (err) {
  console.error(`no test report at ${file}: ${err.message}`);
  process.exit(1);
}
const totals = { passed: 0, failed: 0, skipped: 0 };
console.log("\nTest counts by file:");
for (const suite of report.testResults ?? []) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const t of suite.assertionResults ?? []) {
    if (t.status === "passed") counts.passed++;
    else if (t.status === "failed") counts.failed++;
    else counts.skipped++; // skipped, pending, todo
  }
  if (suite.status === "failed" && counts.failed === 0) counts.failed++; // a file that failed to load or in a hook
  for (const k of Object.keys(totals)) totals[k] += counts[k];
  const name = path.relative(process.cwd(), suite.name);
  console.log(`  ${name.padEnd(36)} ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
}
if (vitestExit !== 0 && totals.failed === 0) {
  // e.g. an unhandled error outside any test: vitest fails the run without failing a test.
  console.log(`  vitest exited with ${vitestExit} (errors outside the tests, see above): counted as 1 failure`);
  totals.failed = 1;
}
console.log(`typescript: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
