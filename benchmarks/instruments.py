"""What an instrument costs: the client's CPU per request without one, with the Prometheus
instrument and with the OpenTelemetry one.

Usage::

    python -m benchmarks.instruments [--repeats N] [--out DIR]

Each run is a fresh account on a fake exchange (plain HTTP) in a process of its own, whose
limit is out of the way; the client, in this process, cancels 20,000 orders (1,000 requests)
with its pacing switched off, as in the client-cost section of the main suite, and its process
CPU time is read around the batch. ``prometheus``: a ``PrometheusInstrument`` on a registry of
its own; ``opentelemetry``: an ``OpenTelemetryInstrument`` on an SDK ``MeterProvider`` read by
an in-memory reader (an exporter's work is not counted).

Writes ``instruments.json`` and ``instruments.md`` under ``--out`` (default
``docs/benchmarks/``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.clients import UNTHROTTLED_IN_FLIGHT, UNTHROTTLED_RATE
from benchmarks.exchange import Admin, FakeProcess, FakeSpec
from benchmarks.report import benchmark_main, table
from upbit_cancel import BatchCanceller, SlidingWindowLimiter, UpbitSession
from upbit_cancel.instrumentation import Instrument, set_instruments

REQUESTS = 1000
WAYS = ("none", "prometheus", "opentelemetry")


def _instruments(way: str) -> list[Instrument]:
    if way == "prometheus":
        from prometheus_client import CollectorRegistry

        from upbit_cancel.instrumentation.prometheus import PrometheusInstrument

        return [PrometheusInstrument(CollectorRegistry())]
    if way == "opentelemetry":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from upbit_cancel.instrumentation.opentelemetry import OpenTelemetryInstrument

        return [OpenTelemetryInstrument(MeterProvider(metric_readers=[InMemoryMetricReader()]))]
    return []


async def one_run(way: str, seed: int) -> dict[str, Any]:
    spec = FakeSpec(limit=1_000_000, seed=seed)
    async with FakeProcess([spec]) as (handle,), aiohttp.ClientSession() as http:
        admin = Admin(http, handle.base_url)
        uuids, _ = await admin.add_orders(REQUESTS * 20)
        set_instruments(_instruments(way))
        try:
            async with UpbitSession(
                handle.access_key,
                handle.secret_key,
                base_url=handle.base_url,
                limiter=SlidingWindowLimiter(UNTHROTTLED_RATE, 1.0),
            ) as session:
                canceller = BatchCanceller(session, max_in_flight=UNTHROTTLED_IN_FLIGHT)
                gc.collect()
                cpu = time.process_time()
                result = await canceller.cancel(uuids=uuids)
                cpu = time.process_time() - cpu
        finally:
            set_instruments([])
        requests = len(await admin.records())
    return {
        "way": way,
        "seed": seed,
        "requests": requests,
        "success": result.success.count,
        "cpu_seconds": cpu,
        "cpu_ms_per_request": cpu * 1000 / max(requests, 1),
    }


def render(runs: Sequence[dict[str, Any]]) -> str:
    """CPU per request by way: the median and range over the repeats, and the difference."""
    by_way = {way: [run for run in runs if run["way"] == way] for way in WAYS}
    base = statistics.median(run["cpu_ms_per_request"] for run in by_way["none"])
    rows = []
    for way, chosen in by_way.items():
        values = sorted(run["cpu_ms_per_request"] for run in chosen)
        median = statistics.median(values)
        rows.append(
            (
                way,
                f"{chosen[0]['requests']:,}",
                f"{median:.3f} ({values[0]:.3f} to {values[-1]:.3f})",
                f"{median - base:+.3f}",
                f"{median / base:.2f}x",
            )
        )
    header = ("instrument", "requests", "CPU ms / request (range)", "difference ms", "x none")
    return table(header, rows)


async def measure(repeats: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    seed = 0
    for _ in range(repeats):
        for way in WAYS:
            seed += 1
            run = await one_run(way, seed)
            print(f"{way}: {run['cpu_ms_per_request']:.3f} ms CPU per request", flush=True)
            runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main("instruments", __doc__, measure, render, {"requests": REQUESTS}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
