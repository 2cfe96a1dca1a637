"""The dead man's switch: from the heartbeat's expiry to no order left open, for 2,000 orders.

Usage::

    python -m benchmarks.watchdog [--repeats N] [--out DIR]

For each path (0 and 20 ms of jitter on loopback, and 50 ms one way with 20 ms of jitter) and
each way (``two lanes``, and ``list lane`` with ``--no-batch-cancel``), a fresh fake exchange in
a process of its own holds 2,000 ``wait`` orders. ``upbit-cancel watchdog --after 1`` runs as
a process (with ``--confirm``, its default, and the host's budget in a directory of its own);
this process plays the bot: it enters a :class:`~upbit_cancel.Heartbeat` (a beat every 0.1 s),
waits until the watchdog says it sees the beats, and leaves by an exception, as a crash would.

The heartbeat expired ``after`` seconds after its last beat (the beat's wall-clock time, mapped
onto the monotonic clock the fake's arrivals use). Read at the fake, relative to that moment:

- the first cancel's arrival (how late the watchdog noticed; it reads every 50 ms);
- the arrival of the last request that canceled an order: no order open from then on;
- when the watchdog exited, its confirmation done (this process's clock);
- requests, 429s and the busiest second of the ``default`` group.

Prints a markdown table and writes ``watchdog.json`` and ``watchdog.md`` under ``--out``
(default ``docs/benchmarks/``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.exchange import Admin, FakeProcess, FakeSpec
from benchmarks.report import benchmark_main, table
from upbit_cancel import Heartbeat
from upbit_cancel._watch.beat import decode
from upbit_cancel.testing import most_in_window

ORDERS = 2000
AFTER = 1.0
EVERY = 0.1
#: (one-way latency, jitter) of each path, in seconds.
PATHS = ((0.0, 0.0), (0.0, 0.020), (0.050, 0.020))
WAYS = {"two lanes": (), "list lane": ("--no-batch-cancel",)}
SCRIPT = Path(sys.executable).with_name("upbit-cancel")


class _Crash(Exception):
    """How the bot of the benchmark stops: an exception out of its heartbeat."""


async def _line_with(stream: asyncio.StreamReader, text: str) -> None:
    while text.encode() not in await stream.readline():
        pass


async def one_run(
    latency: float, jitter: float, way: str, seed: int, state_dir: str
) -> dict[str, Any]:
    """One crash of a bot with 2,000 open orders; what the fake saw."""
    spec = FakeSpec(latency=latency, jitter=jitter, seed=seed)
    async with FakeProcess([spec]) as (handle,), aiohttp.ClientSession() as http:
        admin = Admin(http, handle.base_url)
        uuids, _ = await admin.add_orders(ORDERS)
        with tempfile.TemporaryDirectory() as directory:
            heartbeat = str(Path(directory) / "heartbeat")
            env = os.environ | {
                "UPBIT_ACCESS_KEY": handle.access_key,
                "UPBIT_SECRET_KEY": handle.secret_key,
                "UPBIT_CANCEL_STATE_DIR": state_dir,
            }
            watchdog = await asyncio.create_subprocess_exec(
                str(SCRIPT),
                "watchdog",
                "--heartbeat",
                heartbeat,
                "--after",
                str(AFTER),
                "--base-url",
                handle.base_url,
                "--json",
                *WAYS[way],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            assert watchdog.stderr is not None
            await _line_with(watchdog.stderr, "waiting for the first beat")
            try:
                async with Heartbeat(heartbeat, every=EVERY):
                    await _line_with(watchdog.stderr, "beats (pid")
                    raise _Crash
            except _Crash:
                pass
            last_beat = decode(Path(heartbeat).read_bytes())  # noqa: ASYNC240 - a few bytes
            assert last_beat is not None
            wall_minus_monotonic = time.time() - time.monotonic()
            expiry = last_beat.written - wall_minus_monotonic + AFTER
            stdout, _ = await watchdog.communicate()
            exited = time.monotonic() - expiry
        records = await admin.records()
        stats = await admin.stats()
    target = set(uuids)
    cancels = [record for record in records if record["method"] == "DELETE"]
    canceled = {uuid for record in records for uuid in record["canceled"]}
    document = json.loads(stdout.decode().splitlines()[-1])
    (result,) = document["pockets"]["account"].values()
    return {
        "latency": latency,
        "jitter": jitter,
        "way": way,
        "seed": seed,
        "status": watchdog.returncode,
        "first_cancel_seconds": min(record["arrival"] for record in cancels) - expiry,
        "zero_open_seconds": max(
            record["arrival"] for record in records if set(record["canceled"]) & target
        )
        - expiry,
        "exited_seconds": exited,
        "requests_default": stats["groups"]["default"]["requests"],
        "batch_cancels": stats["groups"]["order-cancel-all"]["requests"],
        "rejected_429": stats["rejected_429"],
        "busiest_second_default": most_in_window(
            [record["arrival"] for record in records if record["group"] == "default"], 1.0
        ),
        "left_open": len(target - canceled),
        "still_open": len(result["still_open"]),
        "unknown": sum(state == "unknown" for state in result["states"].values()),
    }


def render(runs: Sequence[dict[str, Any]]) -> str:
    """The table: medians over the repeats of each path and way."""
    rows = []
    for latency, jitter in PATHS:
        for way in WAYS:
            mine = [
                run
                for run in runs
                if (run["latency"], run["jitter"], run["way"]) == (latency, jitter, way)
            ]
            if not mine:
                continue

            def med(name: str, mine: list[dict[str, Any]] = mine) -> float:
                return float(statistics.median(run[name] for run in mine))

            spread = [run["zero_open_seconds"] for run in mine]
            rows.append(
                (
                    f"{latency * 1000:.0f} ms",
                    f"{jitter * 1000:.0f} ms",
                    way,
                    f"{med('first_cancel_seconds') * 1000:.0f} ms",
                    f"{med('zero_open_seconds'):.2f} ({min(spread):.2f} to {max(spread):.2f})",
                    f"{med('exited_seconds'):.2f}",
                    f"{med('requests_default'):.0f}",
                    f"{med('batch_cancels'):.0f}",
                    str(sum(run["rejected_429"] for run in mine)),
                    str(max(run["busiest_second_default"] for run in mine)),
                    str(max(run["left_open"] + run["still_open"] for run in mine)),
                )
            )
    header = (
        "one way",
        "jitter",
        "way",
        "first cancel",
        "zero open s (range)",
        "exited s",
        "default requests",
        "batch cancels",
        "429s",
        "busiest 1 s",
        "left open",
    )
    return table(header, rows)


async def measure(repeats: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as state_dir:
        seed = 0
        for _ in range(repeats):
            for latency, jitter in PATHS:
                for way in WAYS:
                    seed += 1
                    run = await one_run(latency, jitter, way, seed, state_dir)
                    print(
                        f"{latency * 1000:.0f} ms one way, jitter {jitter * 1000:.0f} ms, "
                        f"{way}: zero open {run['zero_open_seconds']:.2f} s after the expiry",
                        flush=True,
                    )
                    runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    settings = {"orders": ORDERS, "after": AFTER, "every": EVERY}
    return benchmark_main("watchdog", __doc__, measure, render, settings, argv)


if __name__ == "__main__":
    raise SystemExit(main())
