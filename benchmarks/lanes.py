"""``cancel_open`` with both lanes against the list lane alone, on Upbit's two budgets.

Usage::

    python -m benchmarks.lanes [--repeats N] [--out DIR]

For each path (0 and 20 ms of jitter on loopback, and 50 ms one way with 20 ms of jitter) and
each way (``two lanes``: ``batch_cancel=True``; ``list lane``:
``batch_cancel=False``), a fresh fake exchange in a process of its own (30 requests per second
in the ``default`` group, 1 batch cancel per 2 s in ``order-cancel-all``) holds 6,000 ``wait``
and 300 ``watch`` orders in SGD-BTC and 500 ``wait`` orders in SGD-ETH. This process runs
``BatchCanceller.cancel_open(market="SGD-BTC")`` through a session with its default limiter (the
host's budget, in a directory of its own) and reads at the fake:

- seconds from the call until the last SGD-BTC order was canceled (the arrival of the last
  request that canceled one; the fake's clock is ``time.monotonic()``, shared by the processes
  on Linux and macOS), and until the call returned;
- seconds until the answers named the first 300 orders canceled (this process's clock, from
  ``on_progress``);
- requests per group and 429s, the busiest second of the ``default`` group and the busiest
  2 s of ``order-cancel-all``; orders left open in SGD-BTC, and SGD-ETH orders touched.

Prints a markdown table and writes ``lanes.json`` and ``lanes.md`` under ``--out``
(default ``docs/benchmarks/``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.exchange import Admin, FakeProcess, FakeSpec
from benchmarks.report import benchmark_main, table
from upbit_cancel import BatchCanceller, Progress, UpbitSession
from upbit_cancel.testing import most_in_window

WAIT, WATCH, OTHER = 6000, 300, 500
MARKET, OTHER_MARKET = "SGD-BTC", "SGD-ETH"
#: (one-way latency, jitter) of each path, in seconds.
PATHS = ((0.0, 0.0), (0.0, 0.020), (0.050, 0.020))
WAYS = {"two lanes": True, "list lane": False}


async def one_run(latency: float, jitter: float, batch_cancel: bool, seed: int) -> dict[str, Any]:
    """One cancel_open on a fresh account; what the fake saw."""
    spec = FakeSpec(latency=latency, jitter=jitter, seed=seed)
    async with FakeProcess([spec]) as (handle,), aiohttp.ClientSession() as http:
        admin = Admin(http, handle.base_url)
        wait, _ = await admin.add_orders(WAIT, market=MARKET)
        watch, _ = await admin.add_orders(WATCH, market=MARKET, state="watch")
        other, _ = await admin.add_orders(OTHER, market=OTHER_MARKET)
        target = set(wait) | set(watch)
        first_300: list[float] = []
        started = 0.0

        def progress(state: Progress) -> None:
            if not first_300 and state.success >= 300:
                first_300.append(time.monotonic() - started)

        async with UpbitSession(
            handle.access_key, handle.secret_key, base_url=handle.base_url
        ) as session:
            canceller = BatchCanceller(session, on_progress=progress)
            started = time.monotonic()
            result = await canceller.cancel_open(market=MARKET, batch_cancel=batch_cancel)
            returned = time.monotonic() - started
        records = await admin.records()
        stats = await admin.stats()
        last_cancel = max(
            record["arrival"]
            for record in records
            if any(uuid in target for uuid in record["canceled"])
        )
        groups = stats["groups"]
        canceled = {uuid for record in records for uuid in record["canceled"]}
        by_group = {
            group: [record["arrival"] for record in records if record["group"] == group]
            for group in groups
        }
        return {
            "latency": latency,
            "jitter": jitter,
            "way": "two lanes" if batch_cancel else "list lane",
            "seed": seed,
            "zero_open_seconds": last_cancel - started,
            "returned_seconds": returned,
            "first_300_seconds": first_300[0] if first_300 else None,
            "requests_default": groups["default"]["requests"],
            "requests_cancel_all": groups["order-cancel-all"]["requests"],
            "rejected_429": stats["rejected_429"],
            "busiest_second_default": most_in_window(by_group["default"], 1.0),
            "busiest_2s_cancel_all": most_in_window(by_group["order-cancel-all"], 2.0),
            "left_open": len(target - canceled),
            "other_market_touched": len(set(other) & canceled),
            "result": {
                "success": result.success.count,
                "failed": result.failed.count,
                "unresolved": len(result.unresolved),
                "batch_canceled": len(result.batch_canceled),
                "listing_complete": result.listing_complete,
            },
        }


def render(runs: Sequence[dict[str, Any]]) -> str:
    """The table: medians over the repeats of each jitter and way."""
    rows = []
    for latency, jitter in PATHS:

        def of(way: str, path: tuple[float, float] = (latency, jitter)) -> list[dict[str, Any]]:
            return [
                run for run in runs if (run["latency"], run["jitter"]) == path and run["way"] == way
            ]

        alone = of("list lane")
        base = statistics.median(run["zero_open_seconds"] for run in alone) if alone else None
        for way in WAYS:
            mine = of(way)
            if not mine:
                continue

            def med(name: str, mine: list[dict[str, Any]] = mine) -> float:
                return float(statistics.median(run[name] for run in mine))

            zero = med("zero_open_seconds")
            spread = [run["zero_open_seconds"] for run in mine]
            rows.append(
                (
                    f"{latency * 1000:.0f} ms",
                    f"{jitter * 1000:.0f} ms",
                    way,
                    f"{zero:.2f} ({min(spread):.2f} to {max(spread):.2f})",
                    f"{zero / base:.2f}x" if base else "—",
                    f"{med('first_300_seconds') * 1000:.0f} ms",
                    f"{med('requests_default'):.0f}",
                    f"{med('requests_cancel_all'):.0f}",
                    str(sum(run["rejected_429"] for run in mine)),
                    str(max(run["busiest_second_default"] for run in mine)),
                    str(max(run["busiest_2s_cancel_all"] for run in mine)),
                    str(max(run["left_open"] + run["other_market_touched"] for run in mine)),
                )
            )
    header = (
        "one way",
        "jitter",
        "way",
        "zero open s (range)",
        "x list lane",
        "first 300",
        "default requests",
        "batch cancels",
        "429s",
        "busiest 1 s",
        "busiest 2 s (batch)",
        "left open + other touched",
    )
    return table(header, rows)


async def measure(repeats: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    seed = 0
    for _ in range(repeats):
        for latency, jitter in PATHS:
            for way, batch_cancel in WAYS.items():
                seed += 1
                run = await one_run(latency, jitter, batch_cancel, seed)
                print(
                    f"{latency * 1000:.0f} ms one way, jitter {jitter * 1000:.0f} ms, "
                    f"{way}: zero open at "
                    f"{run['zero_open_seconds']:.2f} s",
                    flush=True,
                )
                runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        "lanes",
        __doc__,
        measure,
        render,
        {"orders": {"wait": WAIT, "watch": WATCH, "other_market": OTHER}},
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
