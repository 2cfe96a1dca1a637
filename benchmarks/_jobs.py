"""upbit_cancel's own measurements, each run in a process of its own against a fake in another.

Usage::

    python -m benchmarks._jobs JOB PARAMETERS_JSON

The benchmark starts this module; running it by hand needs fakes already serving (see
`_fake_proc`) and their handles in the parameters. Every result is printed as one JSON line.

Jobs:

``cancel``
    For each run: seed ``n`` open orders on the run's fake, measure one round trip on its
    probe fake (a twin with the same policy, jitter and latency, so the probes spend none of
    the run's budget), then ``BatchCanceller.cancel`` every uuid through a limiter with the
    run's ``hold`` (``arrival``, the default, or ``answer``), timing when the first 600 ids are
    resolved. With ``stop_after`` the batch is abandoned once that many are resolved (the
    kill-switch measurement). Reports wall time, requests, the fake's 429s, its busiest
    one-second window and the orders left open; with ``"series": true`` also the arrival times
    of the admitted requests and of the 429s (for a plot, or to find the 429 incidents).
``acceptance``
    The batch acceptance run: open orders plus filled, canceled, unknown, duplicate and
    malformed ids, by ``uuids`` or by ``identifiers``; checks each criterion.
``stream``
    Streams ``n`` generated uuids through ``BatchCanceller.stream`` (or ``cancel`` with
    ``"collect": true``) against a fake with a raised limit; reports the peak resident memory
    against the memory before the run. A warm-up batch of `WARM_UP` ids goes first, so that the
    connection pool, the resolver's threads and their allocator arenas are in the baseline
    rather than in the growth; the peak is counted from the end of the warm-up on (Linux).
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, cast

import aiohttp

from benchmarks._fakes import Admin, FakeHandle
from benchmarks._metrics import (
    arrival_series,
    current_rss_bytes,
    ideal_seconds,
    median,
    peak_rss_bytes,
    requests_needed,
    reset_peak_rss,
)
from upbit_cancel import BatchCanceller, BatchResult, Progress, SlidingWindowLimiter, UpbitSession
from upbit_cancel._ids import label

#: How many ids make the "first 600" of the kill-switch: one full window of 30 requests of 20.
FIRST = 600
#: Signed single requests timed to measure one round trip (after one unmeasured warm-up).
PROBES = 7
#: Requests in flight for the unthrottled stream runs: the default at 30 per second.
STREAM_IN_FLIGHT = 60
#: Ids streamed before the memory baseline is taken.
WARM_UP = 2_000

#: How the limiter holds a slot after an answer (see ``SlidingWindowLimiter``): until a window
#: after the request's latest possible arrival, or until a window after the answer.
Hold = Literal["arrival", "answer"]
HOLDS: tuple[Hold, ...] = ("arrival", "answer")


def emit(result: Mapping[str, Any]) -> None:
    """Print one result as a JSON line."""
    print(json.dumps(result), flush=True)


def random_uuids(count: int, seed: int) -> Iterator[str]:
    """*count* valid-looking, lowercase uuid4 strings, generated lazily."""
    rng = random.Random(seed)
    for _ in range(count):
        yield str(uuid_module.UUID(int=rng.getrandbits(128), version=4))


def session_for(fake: FakeHandle, hold: Hold = "arrival") -> UpbitSession:
    """A session to *fake* with a limiter of its own, matched to the fake's limit."""
    limiter = SlidingWindowLimiter(fake.spec.limit, fake.spec.window, hold=hold)
    return UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url, limiter=limiter)


async def round_trip(probe: FakeHandle, probes: int = PROBES) -> list[float]:
    """Times of *probes* single signed cancels (one unknown uuid each), after one warm-up."""
    samples: list[float] = []
    ids = random_uuids(probes + 1, seed=7)
    async with session_for(probe) as session:
        for index, order_uuid in enumerate(ids):
            started = time.perf_counter()
            await session.cancel_orders(uuids=[order_uuid])
            if index:
                samples.append(time.perf_counter() - started)
    return samples


class _Clock:
    """Progress callback that notes when the first `FIRST` ids were resolved and confirmed."""

    __slots__ = ("enough", "first_resolved", "first_success", "started", "stop_after")

    def __init__(self, stop_after: int | None) -> None:
        self.started = time.perf_counter()
        self.first_resolved: float | None = None
        self.first_success: float | None = None
        self.stop_after = stop_after
        self.enough = asyncio.Event()

    def __call__(self, progress: Progress) -> None:
        now = time.perf_counter() - self.started
        if self.first_resolved is None and progress.done >= FIRST:
            self.first_resolved = now
        if self.first_success is None and progress.success >= FIRST:
            self.first_success = now
        if self.stop_after is not None and progress.done >= self.stop_after:
            self.enough.set()


async def timed_cancel(
    session: UpbitSession,
    kind: str,
    ids: Sequence[object],
    stop_after: int | None = None,
    *,
    confirm: bool = False,
) -> tuple[BatchResult | None, float, _Clock]:
    """Cancel *ids* by *kind*; return the result (None if stopped early), wall time and clock."""
    clock = _Clock(stop_after)
    canceller = BatchCanceller(session, on_progress=clock)
    values = cast(Sequence[str], ids)
    clock.started = time.perf_counter()
    if kind == "uuids":
        batch = canceller.cancel(uuids=values, confirm=confirm)
    else:
        batch = canceller.cancel(identifiers=values, confirm=confirm)
    if stop_after is None:
        result = await batch
        return result, time.perf_counter() - clock.started, clock
    task = asyncio.ensure_future(batch)
    enough = asyncio.ensure_future(clock.enough.wait())
    await asyncio.wait({task, enough}, return_when=asyncio.FIRST_COMPLETED)
    wall = time.perf_counter() - clock.started
    for pending in (task, enough):
        pending.cancel()
    await asyncio.gather(task, enough, return_exceptions=True)
    return None, wall, clock


async def fake_outcome(admin: Admin, open_before: int) -> dict[str, Any]:
    """The fake's view after a run: its request counts, busiest window and open orders."""
    stats = await admin.stats()
    states = await admin.states()
    return {
        "status_counts": stats["status_counts"],
        "rejected_429": stats["rejected_429"],
        "admitted": stats["admitted"],
        "max_in_window": stats["max_in_window"],
        "left_open": states["wait"] - open_before,
    }


def hold_of(run: Mapping[str, Any]) -> Hold:
    """The run's ``hold``, ``arrival`` if it names none."""
    hold = run.get("hold", "arrival")
    if hold not in HOLDS:
        raise ValueError(f"hold must be one of {', '.join(HOLDS)}, not {hold!r}")
    return cast(Hold, hold)


async def job_cancel(parameters: Mapping[str, Any]) -> None:
    """The ``cancel`` job: ceiling, latency-step and kill-switch runs, one after another."""
    async with aiohttp.ClientSession() as http:
        for run in parameters["runs"]:
            fake = FakeHandle.from_json(run["fake"])
            probe = FakeHandle.from_json(run["probe"])
            hold = hold_of(run)
            admin = Admin(http, fake.base_url)
            open_before = (await admin.states())["wait"]
            uuids, _ = await admin.add_orders(run["n"])
            samples = await round_trip(probe)
            await admin.reset_records()
            # Start every run from a clean heap, so no run pays for its predecessors' garbage.
            gc.collect()
            confirm = bool(run.get("confirm", False))
            async with session_for(fake, hold) as session:
                result, wall, clock = await timed_cancel(
                    session, "uuids", uuids, run.get("stop_after"), confirm=confirm
                )
            outcome = await fake_outcome(admin, open_before)
            if confirm and result is not None:
                outcome["confirmation"] = {
                    "states": dict(Counter(str(state) for state in result.states.values())),
                    "still_open": len(result.still_open),
                    "unknown_states": len(result.unknown_states),
                    "recanceled": len(result.recanceled),
                }
            if run.get("series"):
                outcome["series"] = arrival_series(await admin.records())
            emit(
                {
                    **run.get("tags", {}),
                    "n": run["n"],
                    "policy": fake.spec.policy,
                    "jitter": fake.spec.jitter,
                    "latency": fake.spec.latency,
                    "hold": hold,
                    "confirm": confirm,
                    "cancel_delay": fake.spec.cancel_delay,
                    "wall_seconds": wall,
                    "round_trip_seconds": median(samples),
                    "round_trip_samples": samples,
                    "first_600_resolved_seconds": clock.first_resolved,
                    "first_600_success_seconds": clock.first_success,
                    "requests_needed": requests_needed(run["n"]),
                    "requests": None if result is None else result.requests,
                    "client_rate_limited": None if result is None else result.rate_limited,
                    **outcome,
                }
            )


def _inputs(
    kind: str,
    open_ids: Sequence[str],
    closed_ids: Sequence[str],
    parameters: Mapping[str, Any],
) -> tuple[list[object], dict[str, int]]:
    """The acceptance input: every class of id, shuffled, with duplicates and malformed ids."""
    rng = random.Random(parameters.get("seed", 0))
    unknown_count = parameters["unknown"]
    if kind == "uuids":
        unknown = list(random_uuids(unknown_count, seed=11))
        malformed: list[object] = [
            "not-a-uuid",
            open_ids[0].upper(),
            "{" + open_ids[1] + "}",
            open_ids[2][:-1],
            "",
            12345,
        ]
    else:
        unknown = [f"unknown-{index:06d}" for index in range(unknown_count)]
        malformed = ["", 12345]
    values: list[object] = [*open_ids, *closed_ids, *unknown]
    rng.shuffle(values)
    duplicates = rng.sample(values, parameters["duplicates"])
    for value in [*duplicates, *malformed]:
        values.insert(rng.randrange(len(values) + 1), value)
    composition = {
        "open": len(open_ids),
        "closed": len(closed_ids),
        "unknown": len(unknown),
        "duplicates": len(duplicates),
        "malformed": len(malformed),
        "total_given": len(values),
    }
    return values, composition


def _invariant(kind: str, values: Sequence[object], result: BatchResult) -> dict[str, Any]:
    """Whether every distinct input id is in exactly one of success, failed and unresolved.

    Ids are compared as the library names them: a string as itself, anything else by its label
    (``12345`` is ``"<int 12345>"``, never the identifier ``"12345"``).
    """
    distinct = {label(value) for value in values}

    def key(entry: Any) -> str:
        return str(entry.uuid if kind == "uuids" else entry.identifier)

    placed = [
        *(key(entry) for entry in result.success.orders),
        *(key(entry) for entry in result.failed.orders),
        *(order.id for order in result.unresolved),
    ]
    counts = Counter(placed)
    repeated = [value for value, count in counts.items() if count > 1]
    missing = distinct - counts.keys()
    extra = counts.keys() - distinct
    return {
        "distinct_ids": len(distinct),
        "placed": len(placed),
        "repeated": len(repeated),
        "missing": len(missing),
        "extra": len(extra),
        "holds": not (repeated or missing or extra),
    }


async def job_acceptance(parameters: Mapping[str, Any]) -> None:
    """The ``acceptance`` job: one mixed batch, by uuids or identifiers, judged per criterion."""
    kind = parameters["kind"]
    fake = FakeHandle.from_json(parameters["fake"])
    probe = FakeHandle.from_json(parameters["probe"])
    by_identifier = kind == "identifiers"
    async with aiohttp.ClientSession() as http:
        admin = Admin(http, fake.base_url)
        open_before = (await admin.states())["wait"]
        open_uuids, open_identifiers = await admin.add_orders(
            parameters["open"], identifiers=by_identifier
        )
        closed_uuids: list[str] = []
        closed_identifiers: list[str] = []
        for state in ("done", "cancel"):
            created, identifiers = await admin.add_orders(
                parameters[state], state=state, identifiers=by_identifier
            )
            closed_uuids += created
            closed_identifiers += identifiers or []
        open_ids = (open_identifiers or []) if by_identifier else open_uuids
        closed_ids = closed_identifiers if by_identifier else closed_uuids
        values, composition = _inputs(kind, open_ids, closed_ids, parameters)
        samples = await round_trip(probe)
        await admin.reset_records()
        gc.collect()
        async with session_for(fake) as session:
            result, wall, clock = await timed_cancel(session, kind, values)
        outcome = await fake_outcome(admin, open_before)
    assert result is not None
    round_trip_seconds = median(samples)
    valid = composition["open"] + composition["closed"] + composition["unknown"]
    needed = requests_needed(valid)
    ideal = ideal_seconds(needed, fake.spec.limit, fake.spec.window)
    first = clock.first_resolved
    invariant = _invariant(kind, values, result)
    criteria = {
        "invariant": invariant["holds"],
        "all_open_canceled": outcome["left_open"] == 0
        and result.success.count == composition["open"],
        "no_429": outcome["rejected_429"] == 0 and result.rate_limited == 0,
        "wall_within_bound": wall <= 1.05 * ideal + round_trip_seconds,
        "first_600_within_bound": first is not None and first <= round_trip_seconds + 0.050,
    }
    emit(
        {
            "kind": kind,
            "policy": fake.spec.policy,
            "jitter": fake.spec.jitter,
            "composition": composition,
            "success": result.success.count,
            "failed": result.failed.count,
            "unresolved": len(result.unresolved),
            "invariant": invariant,
            "requests_needed": needed,
            "requests": result.requests,
            "client_rate_limited": result.rate_limited,
            "wall_seconds": wall,
            "ideal_seconds": ideal,
            "wall_bound_seconds": 1.05 * ideal + round_trip_seconds,
            "round_trip_seconds": round_trip_seconds,
            "round_trip_samples": samples,
            "first_600_resolved_seconds": first,
            "first_600_bound_seconds": round_trip_seconds + 0.050,
            "criteria": criteria,
            **outcome,
        }
    )


async def job_stream(parameters: Mapping[str, Any]) -> None:
    """The ``stream`` job: peak memory while *n* generated uuids go through one batch."""
    fake = FakeHandle.from_json(parameters["fake"])
    count = parameters["n"]
    collect = parameters.get("collect", False)
    ids = random_uuids(count, seed=parameters.get("seed", 3))
    async with session_for(fake) as session:
        canceller = BatchCanceller(session, max_in_flight=STREAM_IN_FLIGHT)
        async for _ in canceller.stream(uuids=random_uuids(WARM_UP, seed=4)):
            pass
        gc.collect()
        requests_before = session.requests_sent
        baseline = current_rss_bytes()
        # The peak of this batch alone, not of the warm-up nor of the process's start.
        peak_reset = reset_peak_rss()
        cpu_started = time.process_time()
        started = time.perf_counter()
        seen = chunks = 0
        if collect:
            result = await canceller.cancel(uuids=ids)
            seen = result.success.count + result.failed.count + len(result.unresolved)
            requests = result.requests
        else:
            async for chunk in canceller.stream(uuids=ids):
                seen += len(chunk.ids)
                chunks += 1
            requests = session.requests_sent - requests_before
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    peak = peak_rss_bytes()
    growth = None if baseline is None else max(0, peak - baseline)
    emit(
        {
            "n": count,
            "mode": "collect" if collect else "stream",
            "ids_accounted": seen,
            "requests": requests,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak,
            "peak_reset": peak_reset,
            "growth_bytes": growth,
            "bytes_per_id": None if growth is None else growth / count,
        }
    )


JOBS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "cancel": job_cancel,
    "acceptance": job_acceptance,
    "stream": job_stream,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by the first argument with the JSON parameters in the second."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or arguments[0] not in JOBS:
        print(f"usage: python -m benchmarks._jobs {{{','.join(JOBS)}}} JSON", file=sys.stderr)
        return 2
    asyncio.run(JOBS[arguments[0]](json.loads(arguments[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
