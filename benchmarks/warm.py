"""A warm session over TLS on a realistic path: the first cancels, efficiency, client cost.

Usage::

    python -m benchmarks.warm [--repeats N] [--idle SECONDS] [--out DIR]

(``--fresh-child SETTINGS`` is the process that section ``fresh`` starts.)

Every fake exchange serves HTTPS with a throwaway certificate authority, in a process of its
own; for the latency sections clients reach it through a :class:`~upbit_cancel.testing.PathProxy`
in that process (each direction delayed by the one-way latency plus up to 20 ms of jitter, a new
connection's first bytes held one more round trip for the TCP handshake), so TCP and TLS
handshakes, connection reuse and pool size cost what they cost on a real network. Sessions have
their default limiter (the host's budget, in a directory of its own).

- ``first``: 600 open orders; time from ``cancel()`` until the answers named all 600 (read
  by the client, from ``on_progress``). *cold*: a session whose first requests these are; *warm*:
  a session that called ``warm_up()`` and then stood idle for ``--idle`` seconds (60). At 0, 50
  and 150 ms one way.
- ``efficiency``: 6,000 open orders (300 requests), cold and warm (warmed up just before);
  efficiency = ideal / (wall - one round trip), ideal = (requests - 1) // 30 s, as on the
  benchmarks page; 429s and the busiest second at the fake. At 50 and 150 ms one way.
- beside the warm rows, an *ideal client* on the same path (drawn 2,000 times, not measured;
  the median, as against the median of the runs; see :func:`ideal_first` and
  :func:`ideal_efficiency`): one that costs no time, facing a model exchange that costs none
  either, its connections open and its path's floor known exactly. It knows nothing else of
  the path (not how much jitter there can be), like upbit_cancel, and keeps the same hold rule
  and margin. Its first 600 take the round trip plus the most jitter of 30 requests.
- ``fresh``: a kill switch's own process, started for it: a new process makes its session
  (its budget in the host's file, or in a Redis that holds none of the account's yet, as after
  a restart), calls ``warm_up()``, stands idle for 5 s, then cancels 600 orders over TLS with no
  proxy (the process's own costs, nothing of the path's). The time from ``cancel()`` until the
  first request arrived at the fake (both processes read the host's monotonic clock), and until
  the answers named all 600.
- ``cpu``: process CPU time per signed request over TLS (no proxy, the fake's limit out of the
  way, each client's pacing switched off), upbit_cancel against upbit-sdk (one request after
  another, as in the client-cost section of the main suite).

The client's process collects its garbage just before each measured burst, as the other
benchmarks do: a full collection of the benchmark's own heap (about 25 ms here) would otherwise
land in a burst now and then, and the result would tell when it did rather than what the client
costs.

Writes ``warm.json`` and ``warm.md`` under ``--out`` (default ``docs/benchmarks/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.clients import UNTHROTTLED_IN_FLIGHT, UNTHROTTLED_RATE
from benchmarks.exchange import (
    Admin,
    FakeHandle,
    FakeProcess,
    FakeSpec,
    RedisServer,
    run_json_lines,
)
from benchmarks.report import benchmark_main, table
from upbit_cancel import (
    BatchCanceller,
    Limiter,
    Progress,
    RedisLimiter,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel.testing import most_in_window

JITTER = 0.020
FIRST_ORDERS = 600
EFFICIENCY_ORDERS = 6000
CPU_REQUESTS = 1000
FRESH_IDLE = 5.0
FRESH_STORES = ("host", "redis")
FIRST_PATHS = (0.0, 0.050, 0.150)
EFFICIENCY_PATHS = (0.050, 0.150)
IDLE = [60.0]
#: The margin of upbit_cancel's limiters, which the ideal client keeps too.
MARGIN = SlidingWindowLimiter().margin
#: Paths drawn for the ideal client (see ``ideal_first`` and ``ideal_efficiency``).
IDEAL_DRAWS = 2000


def ideal_first(one_way: float, jitter: float, requests: int, seed: int = 0) -> float:
    """The median time until the answers to ``requests`` sent at once on open connections
    are all back, for a client and an exchange that cost no time: the round trip plus the
    most jitter of any of them, up and down. A median over draws, not a bound: a single run
    beats it about half the time."""
    rng = random.Random(seed)
    times = [
        max(rng.uniform(0.0, jitter) + rng.uniform(0.0, jitter) for _ in range(requests))
        for _ in range(IDEAL_DRAWS)
    ]
    return 2 * one_way + statistics.median(times)


def ideal_efficiency(
    one_way: float, jitter: float, requests: int, *, margin: float, limit: int = 30, seed: int = 0
) -> float:
    """The median efficiency, on this path, of a client that costs no time against an
    exchange that costs none, its connections open and its floor known exactly, keeping the
    hold rule with ``margin``: a slot serves again once a request sent then cannot arrive
    within a window plus the margin of the latest moment the one before can have arrived.
    What is lost is the jitter it cannot see (on average half the most, each way) and the
    margin, in every window."""
    hold = 1.0 + margin
    rng = random.Random(seed)
    efficiencies = []
    for _ in range(IDEAL_DRAWS):
        free = [0.0] * limit  # when each slot is free again
        last = 0.0
        for _ in range(requests):
            sent = heapq.heappop(free)
            answered = sent + 2 * one_way + rng.uniform(0.0, jitter) + rng.uniform(0.0, jitter)
            last = max(last, answered)
            # It arrived no later than its answer less the way back's floor (one way); a
            # request sent one way before that plus the hold arrives no earlier than the hold
            # after it.
            heapq.heappush(free, answered - 2 * one_way + hold)
        efficiencies.append(((requests - 1) // limit) / (last - 2 * one_way))
    return statistics.median(efficiencies)


def _session(handle: FakeHandle) -> UpbitSession:
    """A session with its default limiter, trusting the fake's authority."""
    import ssl

    assert handle.ca_pem is not None
    return UpbitSession(
        handle.access_key,
        handle.secret_key,
        base_url=handle.base_url,
        ssl=ssl.create_default_context(cadata=handle.ca_pem),
    )


async def _orders(handle: FakeHandle, count: int) -> list[str]:
    """``count`` open orders added to the fake."""
    http, admin = _admin(handle)
    async with http:
        uuids, _ = await admin.add_orders(count)
    return uuids


async def first_run(one_way: float, warm: bool, seed: int, idle: float) -> dict[str, Any]:
    """600 orders: until all were answered, cold or warm."""
    spec = FakeSpec(tls=True, proxy_one_way=one_way, proxy_jitter=JITTER, seed=seed)
    async with FakeProcess([spec]) as (handle,):
        uuids = await _orders(handle, FIRST_ORDERS)
        answered: list[float] = []
        started = 0.0

        def progress(state: Progress) -> None:
            if not answered and state.success + state.failed >= FIRST_ORDERS:
                answered.append(time.monotonic() - started)

        async with _session(handle) as session:
            if warm:
                await session.warm_up()
                await asyncio.sleep(idle)
            gc.collect()
            started = time.monotonic()
            result = await BatchCanceller(session, on_progress=progress).cancel(uuids=uuids)
    return {
        "section": "first",
        "one_way": one_way,
        "mode": "warm" if warm else "cold",
        "idle": idle if warm else 0.0,
        "seed": seed,
        "first_600_seconds": answered[0] if answered else None,
        "success": result.success.count,
    }


async def efficiency_run(one_way: float, warm: bool, seed: int) -> dict[str, Any]:
    """6,000 orders: efficiency, 429s, the busiest second."""
    spec = FakeSpec(tls=True, proxy_one_way=one_way, proxy_jitter=JITTER, seed=seed)
    async with FakeProcess([spec]) as (handle,):
        uuids = await _orders(handle, EFFICIENCY_ORDERS)
        async with _session(handle) as session:
            if warm:
                await session.warm_up()
            gc.collect()
            started = time.monotonic()
            result = await BatchCanceller(session).cancel(uuids=uuids)
            wall = time.monotonic() - started
        http, admin = _admin(handle)
        async with http:
            records = await admin.records()
            stats = await admin.stats()
    requests = len(records)
    ideal = (requests - 1) // 30
    round_trip = 2 * one_way
    return {
        "section": "efficiency",
        "one_way": one_way,
        "mode": "warm" if warm else "cold",
        "seed": seed,
        "requests": requests,
        "wall_seconds": wall,
        "ideal_seconds": ideal,
        "efficiency": ideal / (wall - round_trip),
        "rejected_429": stats["rejected_429"],
        "busiest_second": most_in_window([record["arrival"] for record in records], 1.0),
        "success": result.success.count,
    }


async def fresh_run(store: str, seed: int) -> dict[str, Any]:
    """A new process warms up, stands idle, cancels 600: until the first request arrived, and
    until all 600 were answered."""
    spec = FakeSpec(tls=True, seed=seed)
    async with contextlib.AsyncExitStack() as stack:
        (handle,) = await stack.enter_async_context(FakeProcess([spec]))
        redis_url = None
        if store == "redis":
            redis_url = (await stack.enter_async_context(RedisServer())).url
        settings = {"fake": handle.to_json(), "redis_url": redis_url, "idle": FRESH_IDLE}
        [child] = await run_json_lines("benchmarks.warm", ["--fresh-child", json.dumps(settings)])
        http, admin = _admin(handle)
        async with http:
            records = await admin.records()
    first = min(record["arrival"] for record in records)
    return {
        "section": "fresh",
        "store": store,
        "seed": seed,
        "first_request_seconds": first - child["started"],
        "first_600_seconds": child["first_600_seconds"],
        "success": child["success"],
    }


async def fresh_child(settings: dict[str, Any]) -> None:
    """The new process of :func:`fresh_run`: prints one JSON line."""
    import ssl

    handle = FakeHandle.from_json(settings["fake"])
    uuids = await _orders(handle, FIRST_ORDERS)
    assert handle.ca_pem is not None
    answered: list[float] = []
    started = 0.0

    def progress(state: Progress) -> None:
        if not answered and state.success + state.failed >= FIRST_ORDERS:
            answered.append(time.monotonic() - started)

    async with contextlib.AsyncExitStack() as stack:
        limiter: Limiter | None = None
        if settings["redis_url"] is not None:
            limiter = await stack.enter_async_context(RedisLimiter(settings["redis_url"]))
        session = await stack.enter_async_context(
            UpbitSession(
                handle.access_key,
                handle.secret_key,
                base_url=handle.base_url,
                ssl=ssl.create_default_context(cadata=handle.ca_pem),
                limiter=limiter,
            )
        )
        await session.warm_up()
        await asyncio.sleep(settings["idle"])
        gc.collect()
        started = time.monotonic()
        result = await BatchCanceller(session, on_progress=progress).cancel(uuids=uuids)
    print(
        json.dumps(
            {
                "started": started,
                "first_600_seconds": answered[0] if answered else None,
                "success": result.success.count,
            }
        ),
        flush=True,
    )


async def cpu_run(client: str, seed: int) -> dict[str, Any]:
    """CPU per request over TLS, no proxy, the limit out of the way."""
    import ssl

    spec = FakeSpec(tls=True, limit=1_000_000, seed=seed)
    async with FakeProcess([spec]) as (handle,):
        uuids = await _orders(handle, CPU_REQUESTS * 20)
        assert handle.ca_pem is not None
        context = ssl.create_default_context(cadata=handle.ca_pem)
        gc.collect()
        cpu = time.process_time()
        if client == "upbit_cancel":
            success = await _cpu_upbit_cancel(handle, uuids, context)
        else:
            success = await _cpu_upbit_sdk(handle, uuids, context)
        cpu = time.process_time() - cpu
        http, admin = _admin(handle)
        async with http:
            requests = len(await admin.records())
    return {
        "section": "cpu",
        "client": client,
        "seed": seed,
        "requests": requests,
        "cpu_seconds": cpu,
        "cpu_ms_per_request": cpu * 1000 / max(requests, 1),
        "success": success,
    }


async def _cpu_upbit_cancel(handle: FakeHandle, uuids: list[str], context: Any) -> int:
    """One ``cancel`` of every id, its pacing out of the way (as in the main suite)."""
    async with UpbitSession(
        handle.access_key,
        handle.secret_key,
        base_url=handle.base_url,
        ssl=context,
        limiter=SlidingWindowLimiter(UNTHROTTLED_RATE, 1.0),
    ) as session:
        canceller = BatchCanceller(session, max_in_flight=UNTHROTTLED_IN_FLIGHT)
        return (await canceller.cancel(uuids=uuids)).success.count


async def _cpu_upbit_sdk(handle: FakeHandle, uuids: list[str], context: Any) -> int:
    """upbit-sdk, one chunk of 20 after another (as in the main suite)."""
    import upbit

    success = 0
    http_client = upbit.DefaultAsyncHttpxClient(verify=context)
    async with upbit.AsyncUpbit(
        access_key=handle.access_key,
        secret_key=handle.secret_key,
        base_url=handle.base_url,
        http_client=http_client,
    ) as client:
        for at in range(0, len(uuids), 20):
            result = await client.orders.cancel_by_uuids(uuids=uuids[at : at + 20])
            success += result.success.count
    return success


def _admin(handle: FakeHandle) -> tuple[aiohttp.ClientSession, Admin]:
    """The fake's admin API, over HTTPS (through the proxy when there is one)."""
    import ssl

    assert handle.ca_pem is not None
    context = ssl.create_default_context(cadata=handle.ca_pem)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    return http, Admin(http, handle.base_url)


def render(runs: Sequence[dict[str, Any]]) -> str:
    """Four tables: the first 600, efficiency, CPU, a new process; medians over the repeats."""

    def median(rows: list[dict[str, Any]], name: str) -> float:
        return float(statistics.median(row[name] for row in rows))

    first_rows = []
    for one_way in FIRST_PATHS:
        cells = [
            f"{one_way * 1000:.0f} ms",
            f"{(2 * one_way + 0.05) * 1000:.0f} ms",
        ]
        for mode in ("cold", "warm"):
            mine = [
                run
                for run in runs
                if run["section"] == "first" and run["one_way"] == one_way and run["mode"] == mode
            ]
            cells.append(f"{median(mine, 'first_600_seconds') * 1000:.0f} ms" if mine else "—")
        cells.append(f"{ideal_first(one_way, JITTER, FIRST_ORDERS // 20) * 1000:.0f} ms")
        first_rows.append(tuple(cells))
    efficiency_rows = []
    for one_way in EFFICIENCY_PATHS:
        for mode in ("cold", "warm"):
            mine = [
                run
                for run in runs
                if run["section"] == "efficiency"
                and run["one_way"] == one_way
                and run["mode"] == mode
            ]
            if not mine:
                continue
            requests = round(median(mine, "requests"))
            efficiency_rows.append(
                (
                    f"{one_way * 1000:.0f} ms",
                    mode,
                    f"{requests}",
                    f"{median(mine, 'wall_seconds'):.2f}",
                    f"{median(mine, 'efficiency'):.3f} "
                    f"({min(run['efficiency'] for run in mine):.3f} to "
                    f"{max(run['efficiency'] for run in mine):.3f})",
                    (
                        f"{ideal_efficiency(one_way, JITTER, requests, margin=MARGIN):.3f}"
                        if mode == "warm"
                        else "—"
                    ),
                    str(sum(run["rejected_429"] for run in mine)),
                    str(max(run["busiest_second"] for run in mine)),
                )
            )
    cpu_rows = []
    base = None
    for client in ("upbit_cancel", "upbit-sdk-sequential"):
        mine = [run for run in runs if run["section"] == "cpu" and run["client"] == client]
        if not mine:
            continue
        per_request = median(mine, "cpu_ms_per_request")
        base = base or per_request
        cpu_rows.append(
            (
                client,
                f"{median(mine, 'requests'):.0f}",
                f"{per_request:.3f}",
                f"{per_request / base:.2f}x",
            )
        )
    fresh_rows = []
    for store in FRESH_STORES:
        mine = [run for run in runs if run["section"] == "fresh" and run["store"] == store]
        if mine:
            fresh_rows.append(
                (
                    "the host's file" if store == "host" else "Redis, no budget yet",
                    f"{median(mine, 'first_request_seconds') * 1000:.1f} ms",
                    f"{median(mine, 'first_600_seconds') * 1000:.0f} ms",
                )
            )
    return "\n\n".join(
        [
            table(
                (
                    "one way",
                    "goal (round trip + 50 ms)",
                    "cold: first 600",
                    "warm: first 600",
                    "ideal client, warm",
                ),
                first_rows,
            ),
            table(
                (
                    "one way",
                    "session",
                    "requests",
                    "wall s",
                    "efficiency (range)",
                    "ideal client",
                    "429s",
                    "busiest 1 s",
                ),
                efficiency_rows,
            ),
            table(("client (TLS)", "requests", "CPU ms / request", "x upbit_cancel"), cpu_rows),
            table(
                (
                    "new process, warm, budget in",
                    "first request at the exchange",
                    "first 600 answered",
                ),
                fresh_rows,
            ),
        ]
    )


async def measure(repeats: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    seed = 0
    for _ in range(repeats):
        for one_way in FIRST_PATHS:
            for warm in (False, True):
                seed += 1
                run = await first_run(one_way, warm, seed, IDLE[0])
                print(
                    f"first 600, {one_way * 1000:.0f} ms, {run['mode']}: "
                    f"{run['first_600_seconds']:.3f} s",
                    flush=True,
                )
                runs.append(run)
        for one_way in EFFICIENCY_PATHS:
            for warm in (False, True):
                seed += 1
                run = await efficiency_run(one_way, warm, seed)
                print(
                    f"6,000, {one_way * 1000:.0f} ms, {run['mode']}: efficiency "
                    f"{run['efficiency']:.3f}, {run['rejected_429']} x 429",
                    flush=True,
                )
                runs.append(run)
        for client in ("upbit_cancel", "upbit-sdk-sequential"):
            seed += 1
            run = await cpu_run(client, seed)
            print(f"cpu, {client}: {run['cpu_ms_per_request']:.3f} ms/request", flush=True)
            runs.append(run)
        for store in FRESH_STORES:
            seed += 1
            run = await fresh_run(store, seed)
            print(
                f"new process, {store}: first request {run['first_request_seconds']:.4f} s, "
                f"first 600 {run['first_600_seconds']:.3f} s",
                flush=True,
            )
            runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--fresh-child"]:
        asyncio.run(fresh_child(json.loads(arguments[1])))
        return 0
    if "--idle" in arguments:
        at = arguments.index("--idle")
        IDLE[0] = float(arguments[at + 1])
        del arguments[at : at + 2]
    settings = {
        "jitter": JITTER,
        "idle": IDLE[0],
        "fresh_idle": FRESH_IDLE,
        "first_orders": FIRST_ORDERS,
        "efficiency_orders": EFFICIENCY_ORDERS,
        "cpu_requests": CPU_REQUESTS,
    }
    return benchmark_main("warm", __doc__, measure, render, settings, arguments)


if __name__ == "__main__":
    raise SystemExit(main())
