"""What every benchmark script of this folder does around its measurement: parse its arguments
(``--target``, optionally ``--database-url``, ``--repetitions``, ``--json`` and its own), run it
on an event loop, print its Markdown table and write its JSON when asked."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


def parser(doc: str | None, *, database_url: bool, repetitions: int = 3) -> argparse.ArgumentParser:
    """The arguments every script takes; add the script's own to the result."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if database_url:
        p.add_argument("--database-url", required=True)
    p.add_argument("--target", required=True, help="checkpointd address host:port")
    p.add_argument("--repetitions", type=int, default=repetitions)
    p.add_argument("--json", help="write the results here")
    return p


def run_and_report(
    p: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
    table: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> None:
    """Parses ``argv``, runs, prints the table and writes the JSON (``--json``)."""
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    print(table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
