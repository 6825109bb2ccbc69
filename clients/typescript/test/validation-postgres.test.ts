/**
 * The same validation suite against LangGraph.js's own PostgresSaver
 * (@langchain/langgraph-checkpoint-postgres, pinned), on a scratch database laid out by
 * `checkpointd migrate` (the tables checkpointd serves), for comparison with GrpcCheckpointSaver.
 */
import { deltaChannelHistoryTests, validate } from "@langchain/langgraph-checkpoint-validation";
import type { CheckpointSaverTestInitializer } from "@langchain/langgraph-checkpoint-validation";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";

import { closePools, createDatabase, dropDatabase, migrate, truncateTables, type ScratchDb } from "./harness.js";

let db: ScratchDb | undefined;

const initializer: CheckpointSaverTestInitializer<PostgresSaver> = {
  checkpointerName: "PostgresSaver (reference)",
  beforeAllTimeout: 120_000,
  async beforeAll() {
    db = await createDatabase("tsvalidate_pg");
    migrate(db.url);
    const saver = PostgresSaver.fromConnString(db.url);
    await saver.setup(); // a no-op on checkpointd's schema (already at a later version)
    await saver.end();
  },
  async afterAll() {
    await closePools();
    await dropDatabase(db);
  },
  async createCheckpointer() {
    await truncateTables(db!.url);
    return PostgresSaver.fromConnString(db!.url);
  },
  async destroyCheckpointer(saver) {
    await saver.end();
  },
};

validate(initializer);
deltaChannelHistoryTests(initializer);
