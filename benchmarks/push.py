"""Confirmation by push against confirmation by query, on the same batch.

Usage::

    python -m benchmarks.push [--repeats N] [--out DIR]

For each way (``plain``: ``cancel`` without confirmation; ``query``: ``confirm=True`` with
``confirm_via="query"``; ``push``: ``confirm=True`` with the order stream; ``push, 10 %
dropped``: the same while the fake's stream drops a tenth of its events), a fresh fake
exchange in a process of its own (30 requests per second, 20 ms of jitter) holds 6,000 open
orders; each accepted cancel takes 0.3 s to take effect and about 1 % of the orders fill
meanwhile. This process cancels them all through a session with its default limiter and reads:
wall time, the REST questions the fake was asked (``GET /v1/orders/uuids``), requests in all,
429s, orders left open when the call returned, and whether every reported state was the fake's.

Prints a markdown table and writes ``push.json`` and ``push.md`` under ``--out`` (default
``docs/benchmarks/``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.exchange import Admin, FakeProcess, FakeSpec
from benchmarks.report import benchmark_main, table
from upbit_cancel import BatchCanceller, UpbitSession

ORDERS = 6000
CANCEL_DELAY = 0.3
FILL_RATE = 0.01
JITTER = 0.020
#: name: (confirm, confirm_via, the stream's share of dropped events)
WAYS: dict[str, tuple[bool, str, float]] = {
    "plain": (False, "query", 0.0),
    "query": (True, "query", 0.0),
    "push": (True, "push", 0.0),
    "push, 10 % dropped": (True, "push", 0.1),
}


async def one_run(way: str, seed: int) -> dict[str, Any]:
    confirm, via, dropped = WAYS[way]
    spec = FakeSpec(jitter=JITTER, cancel_delay=CANCEL_DELAY, fill_rate=FILL_RATE, seed=seed)
    async with FakeProcess([spec]) as (handle,), aiohttp.ClientSession() as http:
        admin = Admin(http, handle.base_url)
        uuids, _ = await admin.add_orders(ORDERS)
        if dropped:
            url = f"{handle.base_url}/_fake/stream-faults"
            async with http.post(url, json={"drop_rate": dropped}) as response:
                response.raise_for_status()
        async with UpbitSession(
            handle.access_key, handle.secret_key, base_url=handle.base_url
        ) as session:
            canceller = BatchCanceller(session, confirm_via=via)
            started = time.monotonic()
            result = await canceller.cancel(uuids=uuids, confirm=confirm)
            wall = time.monotonic() - started
        states = await admin.states()
        records = await admin.records()
        agree = None
        if confirm:
            sample = uuids[:: max(1, len(uuids) // 200)]
            agree = True
            for uuid in sample:
                async with http.get(f"{handle.base_url}/_fake/orders/{uuid}") as response:
                    order = await response.json()
                agree = agree and result.states.get(uuid) == order["state"]
        return {
            "way": way,
            "seed": seed,
            "wall_seconds": wall,
            "questions": sum(
                record["method"] == "GET" and record["path"] == "/v1/orders/uuids"
                for record in records
            ),
            "requests": result.requests,
            "rejected_429": sum(record["status"] == 429 for record in records),
            "left_open": states.get("wait", 0),
            "still_open": len(result.still_open) if confirm else None,
            "states_agree_on_sample": agree,
        }


def render(runs: Sequence[dict[str, Any]]) -> str:
    plain = [run["wall_seconds"] for run in runs if run["way"] == "plain"]
    base = statistics.median(plain) if plain else None
    rows = []
    for way in WAYS:
        mine = [run for run in runs if run["way"] == way]
        if not mine:
            continue
        walls = [run["wall_seconds"] for run in mine]
        wall = statistics.median(walls)
        rows.append(
            (
                way,
                f"{wall:.2f} ({min(walls):.2f} to {max(walls):.2f})",
                f"{wall / base:.2f}x" if base else "—",
                f"{statistics.median(run['questions'] for run in mine):.0f}",
                f"{statistics.median(run['requests'] for run in mine):.0f}",
                str(sum(run["rejected_429"] for run in mine)),
                str(max(run["left_open"] for run in mine)),
                "—" if mine[0]["still_open"] is None else str(max(r["still_open"] for r in mine)),
                "—"
                if mine[0]["states_agree_on_sample"] is None
                else ("yes" if all(r["states_agree_on_sample"] for r in mine) else "NO"),
            )
        )
    header = (
        "way",
        "wall s (range)",
        "x plain",
        "REST questions",
        "requests",
        "429s",
        "left open",
        "still open",
        "states = fake's",
    )
    return table(header, rows)


async def measure(repeats: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    seed = 0
    for _ in range(repeats):
        for way in WAYS:
            seed += 1
            run = await one_run(way, seed)
            print(f"{way}: {run['wall_seconds']:.2f} s, {run['questions']} questions", flush=True)
            runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        "push",
        __doc__,
        measure,
        render,
        {
            "orders": ORDERS,
            "cancel_delay": CANCEL_DELAY,
            "fill_rate": FILL_RATE,
            "jitter": JITTER,
        },
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
