// The README's example: a LangGraph.js graph that pauses for a human and resumes, with its
// checkpoints in checkpointd. Run a server first (`checkpointd serve`), then set CHECKPOINTD_TARGET.
// The test suite runs it from a fresh project that installed the packed package, as an ES module and
// as CommonJS (so it has no top-level await).
import { Annotation, Command, END, START, StateGraph, interrupt } from "@langchain/langgraph";
import { GrpcCheckpointSaver } from "@checkpointd/client";

async function main(): Promise<void> {
  // Where PostgresSaver.fromConnString took a database URL, this takes checkpointd's address.
  const checkpointer = GrpcCheckpointSaver.fromConnString(process.env.CHECKPOINTD_TARGET ?? "localhost:50051", {
    timeoutMs: 10_000, // deadline of each call
    token: process.env.CHECKPOINTD_TOKEN, // sent as `authorization: Bearer <token>` when set
  });

  const State = Annotation.Root({
    question: Annotation<string>(),
    answer: Annotation<string>(),
  });

  const graph = new StateGraph(State)
    .addNode("ask", (state) => ({ answer: interrupt(state.question) as string }))
    .addEdge(START, "ask")
    .addEdge("ask", END)
    .compile({ checkpointer });

  const config = { configurable: { thread_id: process.env.THREAD_ID ?? "thread-1" } };
  await graph.invoke({ question: "Ship it?" }, config); // the saver's put and putWrites
  const paused = await graph.getState(config); // getTuple
  console.log("interrupted:", paused.tasks[0]?.interrupts[0]?.value); // "Ship it?"

  // Later, in this process or another one: resume the thread with the human's answer.
  const done = await graph.invoke(new Command({ resume: "yes" }), config);
  console.log("answer:", done.answer); // "yes"

  for await (const t of checkpointer.list(config, { limit: 2 })) {
    console.log(t.checkpoint.id, t.metadata?.source, t.metadata?.step);
  }

  await checkpointer.deleteThread(config.configurable.thread_id);
  console.log("deleted:", (await checkpointer.getTuple(config)) === undefined); // true
  await checkpointer.close();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
