"""upbit_cancel's own measurements, each run in a process of its own against a fake in another.

Usage::

    python -m benchmarks.jobs JOB PARAMETERS_JSON

The suite starts this module; running it by hand needs fakes already serving (see
``benchmarks.exchange``) and their handles in the parameters, and a redis-server for the jobs
that use one. Every result is printed as one JSON line.

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
``stream``
    Streams ``n`` generated uuids through ``BatchCanceller.stream`` (or ``cancel`` with
    ``"collect": true``) against a fake with a raised limit; reports the peak resident memory
    against the memory before the run. A warm-up batch of `WARM_UP` ids goes first, so that the
    connection pool, the resolver's threads and their allocator arenas are in the baseline
    rather than in the growth; the peak is counted from the end of the warm-up on (Linux).
``process``
    One process of several of one account: seeds its ``n`` open orders on the account's fake,
    measures one round trip on its ``probe`` fake if given one (a twin of its path), sets up its
    session with its own key pair of the account and its limiter (``alone``: a
    `SlidingWindowLimiter` of its own; ``host``: a `HostLimiter` with the ``account`` name every
    process of the run shares, its file in ``$UPBIT_CANCEL_STATE_DIR``; ``redis``: a
    `RedisLimiter` on ``redis_url`` with that name). A process of a shared budget joins it first
    (one slot taken and handed back unsent), as the processes of a running account have. It then
    prints ``ready`` and waits for a line on stdin: the start time, in ``time.monotonic()``
    seconds (system-wide on Linux and macOS). It sleeps until then, cancels its orders with one
    ``BatchCanceller.cancel`` call, and reports when it started and finished, what its batch
    said, its CPU time, and, during the batch, its store's transactions, how long each SQLite
    transaction held the event loop and its calls to each of RedisLimiter's scripts.
``limiter-cost``
    ``requests`` x 20 orders cancelled against a fake whose limit is raised to 100,000 per
    second, with 60 requests in flight, through ``SlidingWindowLimiter`` (``in-process``),
    ``HostLimiter`` (``host``) or ``RedisLimiter`` (``redis``), all raised to 100,000 per
    second (a shared one joined first): the process's CPU time over the session, the store's
    transactions, the SQLite transactions' holds of the event loop and the script calls.
``holder``
    Takes every slot of a shared budget (``host`` or ``redis``, 30 per second), marks each
    request as leaving, prints ``held`` and keeps its leases (renewed) until it is killed.
``return``
    Another process of the same budget: prints ``ready``, reads on stdin when the holder was
    killed (``time.monotonic()``), asks for every slot at once and reports when each was
    granted, in seconds from the kill (for at most `RETURN_WAIT` seconds).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import math
import random
import statistics
import sys
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import aiohttp

from benchmarks.clients import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from benchmarks.exchange import Admin, FakeHandle
from upbit_cancel import (
    BatchCanceller,
    BatchResult,
    HostLimiter,
    Lease,
    Limiter,
    Progress,
    RedisLimiter,
    SlidingWindowLimiter,
    UpbitSession,
)

if TYPE_CHECKING:
    import redis.asyncio

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


#: Upbit's limit on ids per ``DELETE /v1/orders/uuids`` call.
IDS_PER_REQUEST = 20


def requests_needed(ids: int, per_request: int = IDS_PER_REQUEST) -> int:
    """The fewest requests that carry *ids* ids."""
    return math.ceil(ids / per_request)


def arrival_series(records: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Arrival times at the fake, from its first request, of the admitted requests and the 429s.

    *records* are the fake's records as served by ``GET /_fake/records``.
    """
    if not records:
        return {"admitted": [], "rejected": []}
    start = min(record["arrival"] for record in records)
    admitted = [round(r["arrival"] - start, 4) for r in records if r["admitted"]]
    rejected = [round(r["arrival"] - start, 4) for r in records if r["status"] == 429]
    return {"admitted": admitted, "rejected": rejected}


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


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


# --- several processes and the limiters' cost -----------------------------------------------


#: How a process of several limits itself: alone (a limiter of its own), or with the account's
#: budget in the host's file (HostLimiter) or in Redis (RedisLimiter).
LimiterKind = Literal["alone", "host", "redis"]
LIMITER_KINDS: tuple[LimiterKind, ...] = ("alone", "host", "redis")
#: The limiters whose budget lives outside the process.
SharedKind = Literal["host", "redis"]
SHARED_KINDS: tuple[SharedKind, ...] = ("host", "redis")
#: The limiter-cost runs: the in-process limiter, then HostLimiter and RedisLimiter.
CostKind = Literal["in-process", "host", "redis"]
COST_KINDS: tuple[CostKind, ...] = ("in-process", "host", "redis")
#: The account's limit and window, as the fake counts them.
LIMIT = 30
WINDOW = 1.0
#: The arrival jitter of every path, in seconds.
JITTER = 0.010
#: The raised limit of the limiter-cost runs (the fake's and the limiters').
HIGH_LIMIT = 100_000
#: Requests in flight in the limiter-cost runs: upbit_cancel's default at 30 per second.
COST_IN_FLIGHT = 60
#: How far ahead of the moment every process is ready the start time is set, in seconds.
START_AHEAD = 0.2
#: Seconds a Redis call may take before RedisLimiter counts Redis as unreachable (its default).
REDIS_TIMEOUT = 0.5
#: How long the ``return`` job waits for the whole budget at most, in seconds.
RETURN_WAIT = 90.0


# --- the worker's side -------------------------------------------------------------------------


def _script_names() -> dict[str, str]:
    """RedisLimiter's scripts by the SHA-1 redis-py calls them by (``EVALSHA``)."""
    from upbit_cancel._limiter.redis import store

    scripts = {"read": store._READ, "write": store._WRITE, "claim": store._CLAIM}
    return {hashlib.sha1(text.encode()).hexdigest(): name for name, text in scripts.items()}


def counting_redis(url: str, calls: Counter[str]) -> redis.asyncio.Redis:
    """A redis-py client to *url* (RedisLimiter's timeouts) that counts ``EVALSHA`` calls by
    script name into *calls*; the caller closes it."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    names = _script_names()
    evalsha = client.evalsha

    def counted(sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]:
        calls[names.get(sha, "other")] += 1
        return evalsha(sha, numkeys, *keys_and_args)

    vars(client)["evalsha"] = counted
    return client


class StoreProbe:
    """What the shared limiters' stores do in this process: their transactions (one a visit of
    a limiter), the largest state a visit read, and how long each transaction of the host's
    SQLite file held the event loop (it runs in the loop's thread, from ``BEGIN IMMEDIATE`` to
    ``COMMIT``, the rules' work on the state included).

    It patches the store classes, so one job per process uses it.
    """

    __slots__ = ("held", "held_cpu", "largest_state", "locked", "visits")

    def __init__(self) -> None:
        #: Transactions that went through.
        self.visits = 0
        #: Seconds each SQLite transaction that went through held the event loop.
        self.held: list[float] = []
        #: The CPU time of each (the thread's own: what is left once the scheduler's
        #: preemptions by other processes are taken out).
        self.held_cpu: list[float] = []
        #: SQLite tries that found the file locked by another process (given up at once and
        #: tried again after a short sleep).
        self.locked = 0
        #: The largest state a transaction read, in characters.
        self.largest_state = 0

    def install(self) -> None:
        """Patch both stores' ``transact`` and the SQLite store's synchronous part."""
        from upbit_cancel._limiter.host.store import SqliteStore
        from upbit_cancel._limiter.redis.store import RedisStore

        SqliteStore.transact = self._counted(SqliteStore.transact)  # type: ignore[method-assign]
        RedisStore.transact = self._counted(RedisStore.transact)  # type: ignore[method-assign]
        SqliteStore._transact = self._timed(SqliteStore._transact)  # type: ignore[method-assign]

    def reset(self) -> None:
        """Forget what was counted so far."""
        self.visits = self.locked = self.largest_state = 0
        self.held = []
        self.held_cpu = []

    def report(self) -> dict[str, Any]:
        """The counts, with every SQLite transaction's hold in microseconds."""
        return {
            "visits": self.visits,
            "locked_tries": self.locked,
            "largest_state": self.largest_state,
            "loop_hold_us": [round(seconds * 1e6, 1) for seconds in self.held],
            "loop_hold_cpu_us": [round(seconds * 1e6, 1) for seconds in self.held_cpu],
        }

    def _counted(self, transact: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(store: object, key: str, change: Callable[..., Any]) -> Any:
            def measured(text: str | None, now: float) -> Any:
                self.largest_state = max(self.largest_state, len(text or ""))
                return change(text, now)

            done = await transact(store, key, measured)
            self.visits += 1
            return done

        return counted

    def _timed(self, transact: Callable[..., Any]) -> Callable[..., Any]:
        from upbit_cancel._limiter.host.store import _LockedError

        def timed(store: object, key: str, change: Callable[..., Any]) -> Any:
            started = time.perf_counter()
            cpu = time.thread_time()
            try:
                done = transact(store, key, change)
            except _LockedError:
                self.locked += 1
                raise
            self.held.append(time.perf_counter() - started)
            self.held_cpu.append(time.thread_time() - cpu)
            return done

        return timed


def hold_summary(samples_us: Sequence[float]) -> dict[str, Any]:
    """How many transactions, and their median, 99th percentile and longest hold (µs)."""
    if not samples_us:
        return {"count": 0, "median_us": None, "p99_us": None, "max_us": None}
    ordered = sorted(samples_us)
    return {
        "count": len(ordered),
        "median_us": median(ordered),
        "p99_us": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
        "max_us": ordered[-1],
    }


class _Fallbacks(logging.Handler):
    """Counts a shared limiter's "store out of reach" warnings (each a switch to its fallback
    share, or to waiting)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "this process allows itself" in message or "and waits for it" in message:
            self.count += 1


async def _closing(limiter: Limiter, client: redis.asyncio.Redis | None) -> None:
    if isinstance(limiter, HostLimiter | RedisLimiter):
        await limiter.aclose()
    if client is not None:
        await client.aclose()


def _limiter(
    kind: str, parameters: Mapping[str, Any], limit: int, calls: Counter[str]
) -> tuple[Limiter, redis.asyncio.Redis | None]:
    """The limiter a run asks for, and the Redis client behind it (None for the others).

    HostLimiter's file is in ``$UPBIT_CANCEL_STATE_DIR``, which the suite sets per run."""
    if kind in ("alone", "in-process"):
        return SlidingWindowLimiter(limit, WINDOW), None
    if kind == "host":
        return HostLimiter(account=parameters["account"], limit=limit, window=WINDOW), None
    if kind != "redis":
        raise ValueError(f"unknown limiter {kind!r}")
    client = counting_redis(parameters["redis_url"], calls)
    return RedisLimiter(client, account=parameters["account"], limit=limit, window=WINDOW), client


async def _join(limiter: Limiter) -> float:
    """Take one slot and hand it back unsent, as a process that has run for a while has joined
    its account's budget; the seconds the grant took."""
    started = time.monotonic()
    (await limiter.acquire()).release()
    return time.monotonic() - started


async def _seed(fake: FakeHandle, count: int) -> list[str]:
    async with aiohttp.ClientSession() as http:
        uuids, _ = await Admin(http, fake.base_url).add_orders(count)
    return uuids


async def _start_time() -> float | None:
    """The time the suite writes on stdin, or None if stdin closed first."""
    line = await asyncio.to_thread(sys.stdin.readline)
    return float(line) if line.strip() else None


async def job_process(parameters: Mapping[str, Any]) -> None:
    """The ``process`` job: one of several processes of one account, released at a given time."""
    fake = FakeHandle.from_json(parameters["fake"])
    kind = parameters["limiter"]
    uuids = await _seed(fake, parameters["n"])
    samples: list[float] = []
    if parameters.get("probe") is not None:
        samples = await round_trip(FakeHandle.from_json(parameters["probe"]))
    fallbacks = _Fallbacks()
    logging.getLogger("upbit_cancel").addHandler(fallbacks)
    store = StoreProbe()
    store.install()
    calls: Counter[str] = Counter()
    limiter, client = _limiter(kind, parameters, LIMIT, calls)
    join_seconds = None
    try:
        async with UpbitSession(
            parameters["access_key"],
            parameters["secret_key"],
            base_url=fake.base_url,
            limiter=limiter,
        ) as session:
            if kind in SHARED_KINDS and parameters.get("join", True):
                join_seconds = await _join(limiter)
            print("ready", flush=True)
            start_at = await _start_time()
            if start_at is None:
                return
            gc.collect()
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            calls.clear()
            store.reset()
            cpu_started = time.process_time()
            started = time.monotonic()
            result = await BatchCanceller(session).cancel(uuids=uuids)
            finished = time.monotonic()
            cpu = time.process_time() - cpu_started
            during = store.report()
            redis_calls = dict(calls)
    finally:
        await _closing(limiter, client)
    emit(
        {
            "index": parameters["index"],
            "limiter": kind,
            "latency": parameters["latency"],
            "n": len(uuids),
            "join_seconds": join_seconds,
            "start_at": start_at,
            "started_at": started,
            "finished_at": finished,
            "wall_seconds": finished - started,
            "requests": result.requests,
            "client_rate_limited": result.rate_limited,
            "success": result.success.count,
            "failed": result.failed.count,
            "unresolved": len(result.unresolved),
            "round_trip_seconds": median(samples) if samples else None,
            "round_trip_samples": samples,
            "cpu_seconds": cpu,
            "redis_calls": redis_calls,
            **during,
            "fallbacks": fallbacks.count,
        }
    )


async def job_limiter_cost(parameters: Mapping[str, Any]) -> None:
    """The ``limiter-cost`` job: CPU per request through one limiter raised out of the way."""
    fake = FakeHandle.from_json(parameters["fake"])
    kind = parameters["limiter"]
    uuids = await _seed(fake, parameters["requests"] * 20)
    store = StoreProbe()
    store.install()
    calls: Counter[str] = Counter()
    limiter, client = _limiter(kind, parameters, HIGH_LIMIT, calls)
    try:
        if kind in SHARED_KINDS:
            # A process that has run for a while: its store's file or connection is open.
            await _join(limiter)
        calls.clear()
        store.reset()
        gc.collect()
        cpu_started = time.process_time()
        started = time.perf_counter()
        async with UpbitSession(
            fake.access_key, fake.secret_key, base_url=fake.base_url, limiter=limiter
        ) as session:
            canceller = BatchCanceller(session, max_in_flight=COST_IN_FLIGHT)
            result = await canceller.cancel(uuids=uuids)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await _closing(limiter, client)
    emit(
        {
            "limiter": kind,
            "orders": len(uuids),
            "client_requests": result.requests,
            "client_rate_limited": result.rate_limited,
            "success": result.success.count,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "redis_calls": dict(calls),
            **store.report(),
        }
    )


# --- the budget's return after a SIGKILL ------------------------------------------------------


async def job_holder(parameters: Mapping[str, Any]) -> None:
    """The ``holder`` job: take every slot of the shared budget, mark each request as leaving,
    print ``held`` and keep the leases (renewed) until killed or stdin closes."""
    calls: Counter[str] = Counter()
    limiter, client = _limiter(parameters["limiter"], parameters, LIMIT, calls)
    try:
        leases = await asyncio.gather(*(limiter.acquire() for _ in range(LIMIT)))
        for lease in leases:
            lease.sending()
        print("held", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    finally:
        await _closing(limiter, client)


async def job_return(parameters: Mapping[str, Any]) -> None:
    """The ``return`` job: a process of the same account that prints ``ready``, reads the
    moment the holder was killed (``time.monotonic()``) on stdin, then asks for every slot of
    the budget at once and reports when each was granted, in seconds from the kill."""
    calls: Counter[str] = Counter()
    limiter, client = _limiter(parameters["limiter"], parameters, LIMIT, calls)
    grants: list[float] = []
    try:
        print("ready", flush=True)
        killed_at = await _start_time()
        if killed_at is None:
            return
        asked = time.monotonic() - killed_at

        async def one() -> Lease:
            lease = await limiter.acquire()
            grants.append(time.monotonic() - killed_at)
            return lease

        tasks = [asyncio.ensure_future(one()) for _ in range(LIMIT)]
        await asyncio.wait(tasks, timeout=RETURN_WAIT)
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Lease):
                outcome.release()  # never sent: free at once
    finally:
        await _closing(limiter, client)
    emit(
        {
            "limiter": parameters["limiter"],
            "limit": LIMIT,
            "asked_seconds": asked,
            "grants_seconds": sorted(grants),
            "granted": len(grants),
            "redis_calls": dict(calls),
        }
    )


JOBS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "cancel": job_cancel,
    "stream": job_stream,
    "process": job_process,
    "limiter-cost": job_limiter_cost,
    "holder": job_holder,
    "return": job_return,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by the first argument with the JSON parameters in the second."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or arguments[0] not in JOBS:
        print(f"usage: python -m benchmarks.jobs {{{','.join(JOBS)}}} JSON", file=sys.stderr)
        return 2
    asyncio.run(JOBS[arguments[0]](json.loads(arguments[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
