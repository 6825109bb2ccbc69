import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // @langchain/langgraph-checkpoint-validation registers its suites with the global
    // describe/it/beforeAll API.
    globals: true,
    // One file at a time: the machine has 2 cores and every file starts its own server.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
