"""How close ``GrpcCheckpointSaver`` runs to its transport floor: a bare grpc.aio stub.

For ``put`` and ``get_tuple`` at each concurrency, in one asyncio process against one checkpointd:

* ``stub``  -- the generated ``CheckpointServiceStub`` on a plain ``grpc.aio`` channel, sending
  the request the saver itself builds (captured from one ``aput``; each Put gets a fresh
  checkpoint id, in the field and in the document) or a ``GetTupleRequest``, and doing nothing
  with the answer;
* ``saver`` -- ``GrpcCheckpointSaver.aput`` / ``aget_tuple`` on the same LangGraph-shaped
  checkpoints as ``compare_savers.py`` (a 20-message msgpack blob plus small inline channels).

Layers are interleaved per repetition. Reported: ops/s, client CPU per call (this process's CPU
time over the measured window, gRPC's own threads included, divided by the calls), the
efficiency saver / stub, and how the saver's extra CPU splits between LangGraph's serializer
(``dumps_typed`` / ``loads_typed`` of the messages blob, which every saver pays, timed alone)
and the saver's own code. It does not start servers.

    python benchmarks/client_floor.py --target 127.0.0.1:50051 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from checkpointd_client import GrpcCheckpointSaver
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from compare_savers import MESSAGES, Call, Chain, Tally, Window, call_loop, positive_ints

import script_main

OPS = ("put", "get_tuple")
LAYERS = ("stub", "saver")


async def captured_put(saver: GrpcCheckpointSaver, thread_id: str) -> pb.PutRequest:
    """The PutRequest the saver sends for a LangGraph-shaped checkpoint of ``thread_id``."""
    sent: list[pb.PutRequest] = []
    real = saver.client.aput

    async def record(request: pb.PutRequest, **kwargs: Any) -> pb.PutResponse:
        sent.append(request)
        return await real(request, **kwargs)

    saver.client.aput = record  # type: ignore[method-assign]
    try:
        await Chain(saver, thread_id).put()
    finally:
        saver.client.aput = real  # type: ignore[method-assign]
    return sent[0]


async def stub_calls(
    stub: pb_grpc.CheckpointServiceStub, saver: GrpcCheckpointSaver, op: str, threads: Sequence[str]
) -> list[Call]:
    calls: list[Call] = []
    for thread_id in threads:
        request = await captured_put(saver, thread_id)
        if op == "put":

            async def put(request: pb.PutRequest = request) -> None:
                fresh = str(uuid.uuid4())
                document = request.checkpoint_json.replace(request.checkpoint_id.encode(), fresh.encode())
                request.checkpoint_id, request.checkpoint_json = fresh, document
                await stub.Put(request, timeout=30)

            calls.append(put)
        else:
            get_request = pb.GetTupleRequest(thread_id=thread_id, checkpoint_ns="")

            async def get(get_request: pb.GetTupleRequest = get_request) -> None:
                await stub.GetTuple(get_request, timeout=30)

            calls.append(get)
    return calls


async def saver_calls(saver: GrpcCheckpointSaver, op: str, threads: Sequence[str]) -> list[Call]:
    chains = [Chain(saver, t) for t in threads]
    if op == "put":
        return [chain.put for chain in chains]
    await asyncio.gather(*(chain.put() for chain in chains))
    calls: list[Call] = []
    for thread_id in threads:
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}

        async def get(config: dict[str, Any] = config) -> None:
            if await saver.aget_tuple(config) is None:  # type: ignore[arg-type]
                raise LookupError(config)

        calls.append(get)
    return calls


async def measure(calls: Sequence[Call], warmup: float, duration: float) -> dict[str, float]:
    window = Window.after(warmup, duration)
    tallies = [Tally() for _ in calls]
    tasks = [asyncio.create_task(call_loop(call, window, tally)) for call, tally in zip(calls, tallies)]
    await asyncio.sleep(max(0.0, (window.start_ns - time.perf_counter_ns()) / 1e9))
    cpu_start = time.process_time()
    await asyncio.sleep(max(0.0, (window.end_ns - time.perf_counter_ns()) / 1e9))
    cpu = time.process_time() - cpu_start
    await asyncio.gather(*tasks)
    ops = sum(len(t.latencies_ns) for t in tallies)
    errors = sum(t.errors for t in tallies)
    if errors:
        first = next(t.first_error for t in tallies if t.first_error)
        print(f"  warning: {errors} errors, first: {first}", file=sys.stderr)
    return {"ops_per_sec": ops / duration, "cpu_us_per_call": cpu / ops * 1e6 if ops else float("nan")}


def serde_cpu_us(saver: GrpcCheckpointSaver, rounds: int = 2000) -> dict[str, float]:
    """CPU per call of what any LangGraph saver does to the messages blob: ``dumps_typed`` for a
    put, ``loads_typed`` for a get (AsyncPostgresSaver pays the same)."""
    typed = saver.serde.dumps_typed(MESSAGES)
    started = time.process_time()
    for _ in range(rounds):
        saver.serde.dumps_typed(MESSAGES)
    dumps = (time.process_time() - started) / rounds * 1e6
    started = time.process_time()
    for _ in range(rounds):
        saver.serde.loads_typed(typed)
    loads = (time.process_time() - started) / rounds * 1e6
    return {"put": dumps, "get_tuple": loads}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    saver = GrpcCheckpointSaver(args.target)
    serde = serde_cpu_us(saver)
    channel = grpc.aio.insecure_channel(args.target)
    stub = pb_grpc.CheckpointServiceStub(channel)
    samples: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    try:
        for repetition in range(args.repetitions):
            for op in OPS:
                for concurrency in args.concurrency:
                    for layer in LAYERS:
                        threads = [f"floor-{uuid.uuid4()}" for _ in range(concurrency)]
                        if layer == "stub":
                            calls = await stub_calls(stub, saver, op, threads)
                        else:
                            calls = await saver_calls(saver, op, threads)
                        result = await measure(calls, args.warmup, args.duration)
                        samples.setdefault((op, concurrency, layer), []).append(result)
                        await asyncio.gather(*(saver.adelete_thread(t) for t in threads))
            print(f"repetition {repetition + 1}/{args.repetitions} done", file=sys.stderr)
    finally:
        await saver.aclose()
        await channel.close()
    rows = []
    for (op, concurrency, layer), results in samples.items():
        rows.append(
            {
                "op": op,
                "concurrency": concurrency,
                "layer": layer,
                "ops_per_sec": statistics.median(r["ops_per_sec"] for r in results),
                "cpu_us_per_call": statistics.median(r["cpu_us_per_call"] for r in results),
            }
        )
    return {"repetitions": args.repetitions, "duration_s": args.duration, "serde_cpu_us": serde, "rows": rows}


def table(result: dict[str, Any]) -> str:
    by = {(r["op"], r["concurrency"], r["layer"]): r for r in result["rows"]}
    lines = [
        "Python client at its floor: a bare grpc.aio stub against GrpcCheckpointSaver "
        f"(medians of {result['repetitions']}; client CPU includes gRPC's threads)",
        "",
        "| op | concurrency | stub ops/s | saver ops/s | efficiency | stub CPU µs/call | saver CPU µs/call "
        "| of which LangGraph serde | saver's own |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op, concurrency, _ in sorted({k for k in by if k[2] == "stub"}, key=lambda k: (OPS.index(k[0]), k[1])):
        stub, saver = by[(op, concurrency, "stub")], by[(op, concurrency, "saver")]
        serde = result["serde_cpu_us"][op]
        own = saver["cpu_us_per_call"] - stub["cpu_us_per_call"] - serde
        lines.append(
            f"| {op} | {concurrency} | {stub['ops_per_sec']:.0f} | {saver['ops_per_sec']:.0f} | "
            f"{saver['ops_per_sec'] / stub['ops_per_sec']:.2f} | {stub['cpu_us_per_call']:.0f} | "
            f"{saver['cpu_us_per_call']:.0f} | {serde:.0f} | {own:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = script_main.parser(__doc__, database_url=False)
    p.add_argument("--concurrency", type=positive_ints, default=[1, 8, 32])
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=4.0)
    script_main.run_and_report(p, run, table, argv)


if __name__ == "__main__":
    main()
