/**
 * LangGraph.js's own checkpointer validation suite (@langchain/langgraph-checkpoint-validation,
 * pinned) against GrpcCheckpointSaver, backed by a real checkpointd on a scratch PostgreSQL
 * database. Nothing is skipped: the checkpointer name matches none of the suite's per-saver skips.
 */
import { deltaChannelHistoryTests, validate } from "@langchain/langgraph-checkpoint-validation";
import type { CheckpointSaverTestInitializer } from "@langchain/langgraph-checkpoint-validation";

import { GrpcCheckpointSaver } from "../src/index.js";
import { closePools, dropDatabase, startServerWithDatabase, truncateTables, type ScratchDb, type Server } from "./harness.js";

let db: ScratchDb | undefined;
let server: Server | undefined;

const initializer: CheckpointSaverTestInitializer<GrpcCheckpointSaver> = {
  checkpointerName: "GrpcCheckpointSaver (checkpointd)",
  beforeAllTimeout: 120_000,
  async beforeAll() {
    ({ db, server } = await startServerWithDatabase("tsvalidate_grpc"));
  },
  async afterAll() {
    await server?.stop();
    await closePools();
    await dropDatabase(db);
  },
  async createCheckpointer() {
    // Each checkpointer sees an empty store (the suite's isolation rule).
    await truncateTables(db!.url);
    return new GrpcCheckpointSaver(server!.target);
  },
  async destroyCheckpointer(saver) {
    await saver.close();
  },
};

validate(initializer);
// The opt-in getDeltaChannelHistory spec (not part of validate()): the upstream savers run it too.
deltaChannelHistoryTests(initializer);
