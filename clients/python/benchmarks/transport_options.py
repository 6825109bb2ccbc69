"""What a faster Python transport would give: grpc.aio against grpcio's sync stubs on threads.

GetTuple (the read the saver's ``aget_tuple`` sends) of an 8 KB LangGraph-shaped checkpoint, at
each concurrency, in one process against one checkpointd, three ways:

* ``aio``       -- the ``grpc.aio`` stub the saver uses today, ``concurrency`` asyncio tasks;
* ``executor``  -- grpcio's sync stub called through ``loop.run_in_executor`` on a pool of
  ``concurrency`` threads, ``concurrency`` asyncio tasks (what an async saver built on the sync
  stack would do);
* ``threads``   -- the sync stub on ``concurrency`` plain threads, no event loop at all (the
  floor of the sync stack).

Reported: calls/s and client CPU per call (this process's CPU over the window, gRPC's threads
included), median of ``--repetitions`` interleaved rounds. The bar for shipping another transport
(issue 13): at least 1.5x the reads of ``aio``. It does not start servers.

    python benchmarks/transport_options.py --target 127.0.0.1:50051 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from checkpointd_client import GrpcCheckpointSaver
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from compare_savers import Chain, positive_ints

import script_main

WAYS = ("aio", "executor", "threads")


async def event_loop_rate(call: Any, concurrency: int, warmup: float, duration: float) -> tuple[int, float]:
    """Calls ``call`` back to back on ``concurrency`` asyncio tasks; the calls and this process's CPU
    over the measured window."""
    counting = False
    calls = 0

    async def loop(end: float) -> None:
        nonlocal calls
        while time.perf_counter() < end:
            await call()
            if counting:
                calls += 1

    end = time.perf_counter() + warmup + duration
    tasks = [asyncio.create_task(loop(end)) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    counting, cpu = True, time.process_time()
    await asyncio.sleep(duration)
    counting, cpu = False, time.process_time() - cpu
    await asyncio.gather(*tasks)
    return calls, cpu


async def aio_rate(target: str, request: pb.GetTupleRequest, concurrency: int, warmup: float, duration: float):
    channel = grpc.aio.insecure_channel(target)
    stub = pb_grpc.CheckpointServiceStub(channel)
    try:
        return await event_loop_rate(lambda: stub.GetTuple(request, timeout=30), concurrency, warmup, duration)
    finally:
        await channel.close()


async def executor_rate(target: str, request: pb.GetTupleRequest, concurrency: int, warmup: float, duration: float):
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.CheckpointServiceStub(channel)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    event_loop = asyncio.get_running_loop()

    def call() -> Any:
        return event_loop.run_in_executor(pool, lambda: stub.GetTuple(request, timeout=30))

    try:
        return await event_loop_rate(call, concurrency, warmup, duration)
    finally:
        pool.shutdown()
        channel.close()


def threads_rate(target: str, request: pb.GetTupleRequest, concurrency: int, warmup: float, duration: float):
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.CheckpointServiceStub(channel)
    counting = threading.Event()
    counts = [0] * concurrency
    end = time.perf_counter() + warmup + duration

    def loop(index: int) -> None:
        while time.perf_counter() < end:
            stub.GetTuple(request, timeout=30)
            if counting.is_set():
                counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for worker in workers:
        worker.start()
    time.sleep(warmup)
    counting.set()
    cpu = time.process_time()
    time.sleep(duration)
    counting.clear()
    cpu = time.process_time() - cpu
    for worker in workers:
        worker.join()
    channel.close()
    return sum(counts), cpu


async def run(args: argparse.Namespace) -> dict[str, Any]:
    saver = GrpcCheckpointSaver(args.target)
    thread_id = f"transport-{uuid.uuid4()}"
    await Chain(saver, thread_id).put()
    request = pb.GetTupleRequest(thread_id=thread_id, checkpoint_ns="")
    samples: dict[tuple[int, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.repetitions):
            for concurrency in args.concurrency:
                for way in WAYS:
                    measure = (args.target, request, concurrency, args.warmup, args.duration)
                    if way == "aio":
                        calls, cpu = await aio_rate(*measure)
                    elif way == "executor":
                        calls, cpu = await executor_rate(*measure)
                    else:
                        calls, cpu = await asyncio.to_thread(threads_rate, *measure)
                    samples.setdefault((concurrency, way), []).append(
                        {"ops_per_sec": calls / args.duration, "cpu_us_per_call": cpu / max(calls, 1) * 1e6}
                    )
    finally:
        await saver.adelete_thread(thread_id)
        await saver.aclose()
    rows = [
        {
            "concurrency": concurrency,
            "way": way,
            "ops_per_sec": statistics.median(r["ops_per_sec"] for r in results),
            "cpu_us_per_call": statistics.median(r["cpu_us_per_call"] for r in results),
        }
        for (concurrency, way), results in samples.items()
    ]
    return {"repetitions": args.repetitions, "rows": rows}


def table(result: dict[str, Any]) -> str:
    by = {(r["concurrency"], r["way"]): r for r in result["rows"]}
    lines = [
        f"GetTuple through three Python gRPC stacks (median of {result['repetitions']}; ratio = way / grpc.aio)",
        "",
        "| concurrency | way | calls/s | ratio | client CPU µs/call |",
        "|---:|---|---:|---:|---:|",
    ]
    for concurrency in sorted({c for c, _ in by}):
        base = by[(concurrency, "aio")]["ops_per_sec"]
        for way in WAYS:
            row = by[(concurrency, way)]
            lines.append(
                f"| {concurrency} | {way} | {row['ops_per_sec']:.0f} | {row['ops_per_sec'] / base:.2f} "
                f"| {row['cpu_us_per_call']:.0f} |"
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
