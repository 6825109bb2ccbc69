"""What a whole-table read costs: ``alist`` across threads and ``adelete_for_runs`` on a large database.

Fills the database (through SQL, in LangGraph's own schema) with ``--threads`` threads of
``--per-thread`` checkpoints plus one thread of ``--long-thread`` checkpoints; one checkpoint in
100 carries ``{"tag": "needle"}`` in its metadata, and every 50 consecutive checkpoints of a
thread share a ``run_id``. Then, interleaving the two savers and taking the median of
``--repetitions`` rounds, it times:

* ``list_filter``   -- ``alist(None, filter={"tag": "needle"})`` streamed to the end, both savers;
* ``list_thread``   -- ``alist`` of the long thread (every namespace), both savers;
* ``delete_for_runs`` -- ``adelete_for_runs([one run of 50 checkpoints])``, checkpointd only
  (LangGraph's Postgres saver does not implement it).

Results go to stdout as a Markdown table and, with ``--json``, to a file. It does not start
servers: PostgreSQL and a checkpointd server on the same database must already be running.

    python benchmarks/scan_costs.py --database-url postgres://... --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import script_main

FILL_SQL = """
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
SELECT thread, '', id, NULL, NULL,
       jsonb_build_object('v', 4, 'id', id, 'ts', '2026-12-05T00:00:00+00:00',
                          'channel_values', jsonb_build_object('step', step),
                          'channel_versions', '{}'::jsonb, 'versions_seen', '{}'::jsonb),
       jsonb_build_object('source', 'loop', 'step', step, 'run_id', thread || '-run-' || (step / 50))
         || CASE WHEN (step * 7 + t) %% 100 = 0 THEN '{"tag": "needle"}'::jsonb ELSE '{}'::jsonb END
FROM (
    SELECT t, 'scan-' || t AS thread, step, lpad(t::text, 6, '0') || '-' || lpad(step::text, 8, '0') AS id
    FROM generate_series(0, %(threads)s - 1) AS t, generate_series(0, %(per_thread)s - 1) AS step
    UNION ALL
    SELECT -1, 'scan-long', step, 'long-' || lpad(step::text, 8, '0')
    FROM generate_series(0, %(long_thread)s - 1) AS step
) AS rows
"""


async def fill(database_url: str, threads: int, per_thread: int, long_thread: int) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM checkpoints WHERE thread_id LIKE 'scan-%%'")
        await conn.execute(FILL_SQL, {"threads": threads, "per_thread": per_thread, "long_thread": long_thread})
        await conn.execute("ANALYZE checkpoints")


async def drain(saver: Any, config: Any, **kwargs: Any) -> int:
    count = 0
    async for _ in saver.alist(config, **kwargs):
        count += 1
    return count


async def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call
    return (time.perf_counter() - started) * 1000.0, result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    from checkpointd_client import GrpcCheckpointSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row

    print("filling the database", file=sys.stderr)
    started = time.perf_counter()
    await fill(args.database_url, args.threads, args.per_thread, args.long_thread)
    print(f"filled in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    rows = args.threads * args.per_thread + args.long_thread
    conn = await psycopg.AsyncConnection.connect(
        args.database_url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    postgres = AsyncPostgresSaver(conn)  # type: ignore[arg-type]
    checkpointd = GrpcCheckpointSaver(args.target)
    savers = {"postgres": postgres, "checkpointd": checkpointd}
    times: dict[str, dict[str, list[float]]] = {"list_filter": {}, "list_thread": {}, "delete_for_runs": {}}
    counts: dict[str, int] = {}
    long_thread = {"configurable": {"thread_id": "scan-long"}}
    try:
        for round_number in range(args.repetitions):
            for name, saver in savers.items():
                ms, count = await timed(drain(saver, None, filter={"tag": "needle"}))
                times["list_filter"].setdefault(name, []).append(ms)
                counts["list_filter"] = count
                ms, count = await timed(drain(saver, long_thread))
                times["list_thread"].setdefault(name, []).append(ms)
                counts["list_thread"] = count
            run_id = f"scan-{round_number}-run-1"
            ms, _ = await timed(checkpointd.adelete_for_runs([run_id]))
            times["delete_for_runs"].setdefault("checkpointd", []).append(ms)
            print(f"round {round_number + 1}/{args.repetitions} done", file=sys.stderr)
    finally:
        await checkpointd.aclose()
        await conn.close()
    medians = {op: {name: statistics.median(values) for name, values in by.items()} for op, by in times.items()}
    return {"rows": rows, "counts": counts, "median_ms": medians, "samples_ms": times}


def table(result: dict[str, Any]) -> str:
    lines = [
        f"Whole-table reads on {result['rows']:,} checkpoints (median ms; ratio = checkpointd / AsyncPostgresSaver)",
        "",
        "| operation | rows | AsyncPostgresSaver | checkpointd | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, by in result["median_ms"].items():
        pg = by.get("postgres")
        ours = by["checkpointd"]
        ratio = f"{ours / pg:.2f}" if pg else "n/a"
        pg_text = f"{pg:.1f}" if pg else "not implemented"
        rows = result["counts"].get(op, 50)
        lines.append(f"| {op} | {rows:,} | {pg_text} | {ours:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    p = script_main.parser(__doc__, database_url=True)
    p.add_argument("--threads", type=int, default=1000)
    p.add_argument("--per-thread", type=int, default=500)
    p.add_argument("--long-thread", type=int, default=20000)
    script_main.run_and_report(p, run, table)


if __name__ == "__main__":
    main()
