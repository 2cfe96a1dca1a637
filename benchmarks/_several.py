"""Several processes of one account cancelling together, and what Redis costs per request.

Usage (the suite starts it; by hand it needs fakes and a redis-server already serving)::

    python -m benchmarks._several JOB PARAMETERS_JSON

Jobs, each printing its result as one JSON line, in the style of `_jobs`:

``process``
    One process of several: seeds its ``n`` open orders on the account's fake, measures one
    round trip on its ``probe`` fake if given one (a twin of its path), sets up its session with
    its own key pair of the account and its limiter (``alone``: a `SlidingWindowLimiter` of its
    own, 30 per second; ``redis``: a `RedisLimiter` on ``redis_url`` with the ``account``
    name every process of the run shares), then prints ``ready`` and waits for a line on stdin:
    the start time, in ``time.monotonic()`` seconds (system-wide on Linux and macOS). It sleeps
    until then, cancels its orders with one ``BatchCanceller.cancel`` call, and reports when it
    started and finished, what its batch said, its CPU time and its calls to each of
    RedisLimiter's Lua scripts (counted in this process: ``acquire`` asks for slots for every
    waiting request at once, ``release`` tells Redis how long an answered request's slot stays
    taken, ``renew`` keeps in-flight leases alive twice a second).
``limiter-cost``
    The CPU cost of the limiter: ``requests`` x 20 orders cancelled against a fake whose limit is
    raised to 100,000 per second, with 60 requests in flight, through ``SlidingWindowLimiter``
    (``in-process``) or ``RedisLimiter`` (``redis``), both raised to 100,000 per second. Reports
    the process's CPU time over the session and the script calls.

The suite's side is here too: `RedisServer` (a ``redis-server`` of the section's own on a free
loopback port, without persistence), `section_several` (the runs, each on a fresh account, every
process started first and released together) and `section_limiter_cost`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import importlib.util
import json
import logging
import shutil
import socket
import sys
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from importlib import resources
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import attrs

from benchmarks._fake_proc import FakeSpec
from benchmarks._fakes import Admin, FakeHandle, FakeProcess, spawn
from benchmarks._jobs import emit, round_trip
from benchmarks._metrics import efficiency, ideal_seconds, median, requests_needed
from upbit_cancel import (
    BatchCanceller,
    Limiter,
    RedisLimiter,
    SlidingWindowLimiter,
    UpbitSession,
)

if TYPE_CHECKING:
    import redis.asyncio

#: How a process of several limits itself: alone (a limiter of its own) or with the account's
#: budget in Redis.
LimiterKind = Literal["alone", "redis"]
LIMITER_KINDS: tuple[LimiterKind, ...] = ("alone", "redis")
#: The limiter-cost runs: the in-process limiter, then RedisLimiter.
CostKind = Literal["in-process", "redis"]
COST_KINDS: tuple[CostKind, ...] = ("in-process", "redis")
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
#: RedisLimiter's Lua scripts.
SCRIPTS = ("acquire", "release", "renew", "adopt")


@attrs.frozen
class SeveralCase:
    """One run: a process per path, every one of the same account with a key of its own."""

    limiter: LimiterKind
    #: One-way latency of each process's path, in seconds (0: the fake's own, no latency),
    #: always with `JITTER` of arrival jitter.
    latencies: tuple[float, ...]

    @property
    def processes(self) -> int:
        """How many processes cancel together."""
        return len(self.latencies)

    @property
    def paths(self) -> bool:
        """Whether the processes reach the exchange over paths of their own latencies."""
        return any(latency > 0 for latency in self.latencies)


# --- the worker's side -------------------------------------------------------------------------


def _script_names() -> dict[str, str]:
    """RedisLimiter's scripts by the SHA-1 redis-py calls them by (``EVALSHA``)."""
    folder = resources.files("upbit_cancel._limiter.redis")
    return {
        hashlib.sha1((folder / f"{name}.lua").read_text("utf-8").encode()).hexdigest(): name
        for name in SCRIPTS
    }


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


class _Fallbacks(logging.Handler):
    """Counts RedisLimiter's "Redis unreachable" warnings (each a switch to the fallback)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Redis unreachable"):
            self.count += 1


async def _closing(limiter: Limiter, client: redis.asyncio.Redis | None) -> None:
    if isinstance(limiter, RedisLimiter):
        await limiter.aclose()
    if client is not None:
        await client.aclose()


def _limiter(
    kind: str, parameters: Mapping[str, Any], limit: int, calls: Counter[str]
) -> tuple[Limiter, redis.asyncio.Redis | None]:
    """The limiter a run asks for, and the Redis client behind it (None for an in-process one)."""
    if kind in ("alone", "in-process"):
        return SlidingWindowLimiter(limit, WINDOW), None
    if kind != "redis":
        raise ValueError(f"unknown limiter {kind!r}")
    client = counting_redis(parameters["redis_url"], calls)
    return RedisLimiter(client, account=parameters["account"], limit=limit, window=WINDOW), client


async def _seed(fake: FakeHandle, count: int) -> list[str]:
    async with aiohttp.ClientSession() as http:
        uuids, _ = await Admin(http, fake.base_url).add_orders(count)
    return uuids


async def _start_time() -> float | None:
    """The start time the suite writes on stdin, or None if stdin closed first."""
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
    calls: Counter[str] = Counter()
    limiter, client = _limiter(kind, parameters, LIMIT, calls)
    try:
        async with UpbitSession(
            parameters["access_key"],
            parameters["secret_key"],
            base_url=fake.base_url,
            limiter=limiter,
        ) as session:
            print("ready", flush=True)
            start_at = await _start_time()
            if start_at is None:
                return
            gc.collect()
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            cpu_started = time.process_time()
            started = time.monotonic()
            result = await BatchCanceller(session).cancel(uuids=uuids)
            finished = time.monotonic()
            cpu = time.process_time() - cpu_started
    finally:
        await _closing(limiter, client)
    emit(
        {
            "index": parameters["index"],
            "limiter": kind,
            "latency": parameters["latency"],
            "n": len(uuids),
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
            "redis_calls": dict(calls),
            "fallbacks": fallbacks.count,
        }
    )


async def job_limiter_cost(parameters: Mapping[str, Any]) -> None:
    """The ``limiter-cost`` job: CPU per request through one limiter raised out of the way."""
    fake = FakeHandle.from_json(parameters["fake"])
    kind = parameters["limiter"]
    uuids = await _seed(fake, parameters["requests"] * 20)
    calls: Counter[str] = Counter()
    limiter, client = _limiter(kind, parameters, HIGH_LIMIT, calls)
    gc.collect()
    cpu_started = time.process_time()
    started = time.perf_counter()
    try:
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
        }
    )


JOBS: Mapping[str, Callable[[Mapping[str, Any]], Coroutine[Any, Any, None]]] = {
    "process": job_process,
    "limiter-cost": job_limiter_cost,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by the first argument with the JSON parameters in the second."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or arguments[0] not in JOBS:
        print(f"usage: python -m benchmarks._several {{{','.join(JOBS)}}} JSON", file=sys.stderr)
        return 2
    asyncio.run(JOBS[arguments[0]](json.loads(arguments[1])))
    return 0


# --- the suite's side --------------------------------------------------------------------------


def missing_redis() -> str | None:
    """Why the Redis runs cannot run here (no redis-server, no redis-py), or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    if importlib.util.find_spec("redis") is None:
        return "redis-py is not installed (pip install -e '.[dev,bench]')"
    return None


class RedisServer:
    """A ``redis-server`` on a free loopback port without persistence, as an async context
    manager: entering starts it and waits until it answers ``PING``; exiting stops it."""

    __slots__ = ("_nice", "_process", "port")

    def __init__(self, *, nice: int = 0) -> None:
        self._nice = nice
        self._process: asyncio.subprocess.Process | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        if self._nice:
            command = ["nice", "-n", str(self._nice), *command]
        self._process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if (await self.command("PING")).startswith("+PONG"):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline or self._process.returncode is not None:
                await self.__aexit__(None, None, None)
                raise RuntimeError("redis-server did not start")
            await asyncio.sleep(0.02)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def command(self, command: str) -> str:
        """Send one inline command; return the reply (a bulk string's payload, else the line)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(command.encode() + b"\r\n")
            await writer.drain()
            line = (await reader.readline()).decode()
            if line.startswith("$") and int(line[1:]) >= 0:
                payload = await reader.readexactly(int(line[1:]) + 2)
                return payload[:-2].decode()
            return line
        finally:
            writer.close()
            await writer.wait_closed()

    async def counters(self) -> dict[str, float]:
        """``evalsha`` calls so far and the server's CPU seconds (``INFO``)."""
        fields: dict[str, str] = {}
        for section in ("commandstats", "cpu"):
            for line in (await self.command(f"INFO {section}")).splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    fields[name] = value
        evalsha = dict(
            part.split("=", 1) for part in fields.get("cmdstat_evalsha", "calls=0").split(",")
        )
        return {
            "evalsha": float(evalsha.get("calls", 0)),
            "evalsha_failed": float(evalsha.get("failed_calls", 0)),
            "cpu_seconds": float(fields.get("used_cpu_sys", 0))
            + float(fields.get("used_cpu_user", 0)),
        }


def _json_line(stdout: bytes) -> dict[str, Any]:
    """The one JSON line a job printed."""
    (line,) = [text for text in stdout.decode().splitlines() if text.startswith("{")]
    return dict(json.loads(line))


def _difference(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def _add_calls(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for outcome in outcomes:
        total.update(outcome.get("redis_calls") or {})
    return dict(total)


async def _release_together(
    processes: Sequence[asyncio.subprocess.Process],
) -> list[dict[str, Any]]:
    """Wait until every process printed ``ready``, give them one start time, collect their
    results (one JSON line each)."""
    for process in processes:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError("a benchmark process ended before it was ready")
            if line.strip() == b"ready":
                break
    start_at = time.monotonic() + START_AHEAD
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{start_at!r}\n".encode())
        await process.stdin.drain()
    outputs = await asyncio.gather(*(process.communicate() for process in processes))
    results = []
    for process, (stdout, _) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"a benchmark process exited with status {process.returncode}")
        results.append(_json_line(stdout))
    return results


async def _kill(processes: Sequence[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _fake_specs(case: SeveralCase) -> list[FakeSpec]:
    """The account's fake, then a twin per distinct path (the round trip's probes)."""
    paths = sorted(set(case.latencies))
    return [
        FakeSpec(jitter=JITTER),
        *(FakeSpec(jitter=JITTER, latency=latency) for latency in paths),
    ]


async def _several_run(
    case: SeveralCase,
    fakes: Sequence[FakeHandle],
    http: aiohttp.ClientSession,
    server: RedisServer,
    *,
    orders: int,
    account: str,
) -> dict[str, Any]:
    """One run: start a process per path, release them together, read the fake and Redis."""
    fake, *probe_fakes = fakes
    probes = dict(zip(sorted(set(case.latencies)), probe_fakes, strict=True))
    admin = Admin(http, fake.base_url)
    keys = [await admin.add_credentials() for _ in case.latencies]
    for (access_key, _), latency in zip(keys, case.latencies, strict=True):
        if latency > 0:
            await admin.set_faults(
                access_key=access_key, latency_in=latency, latency_out=latency, jitter_in=JITTER
            )
    probing: set[float] = set()
    parameters = []
    for index, ((access_key, secret_key), latency) in enumerate(
        zip(keys, case.latencies, strict=True)
    ):
        # The first process of each path measures its round trip.
        probe = None if latency in probing else probes[latency].to_json()
        probing.add(latency)
        parameters.append(
            {
                "index": index,
                "limiter": case.limiter,
                "latency": latency,
                "n": orders,
                "fake": fake.to_json(),
                "access_key": access_key,
                "secret_key": secret_key,
                "probe": probe,
                "redis_url": server.url,
                "account": account,
            }
        )
    before = await server.counters()
    processes = [
        await spawn("benchmarks._several", ["process", json.dumps(mine)]) for mine in parameters
    ]
    try:
        outcomes = await _release_together(processes)
    finally:
        await _kill(processes)
    redis_counters = _difference(await server.counters(), before)
    stats = await admin.stats()
    states = await admin.states()
    needed = requests_needed(orders) * case.processes
    ideal = ideal_seconds(needed, LIMIT, WINDOW)
    trips = [o["round_trip_seconds"] for o in outcomes if o["round_trip_seconds"] is not None]
    # The last answer may come over the slowest path: one of its round trips.
    trip = max(trips)
    wall = max(o["finished_at"] for o in outcomes) - min(o["started_at"] for o in outcomes)
    requests = sum(o["requests"] for o in outcomes)
    return {
        "processes": case.processes,
        "limiter": case.limiter,
        "latencies": list(case.latencies),
        "orders_each": orders,
        "orders": orders * case.processes,
        "requests_needed": needed,
        "requests": requests,
        "signed_requests": sum(stats["status_counts"].values()),
        "wall_seconds": wall,
        "round_trip_seconds": trip,
        "ideal_seconds": ideal,
        "efficiency": efficiency(ideal, wall, trip),
        "rejected_429": stats["rejected_429"],
        "status_counts": stats["status_counts"],
        "max_in_window": stats["max_in_window"],
        "left_open": states["wait"],
        "client_rate_limited": sum(o["client_rate_limited"] for o in outcomes),
        "start_spread_seconds": max(o["started_at"] for o in outcomes)
        - min(o["started_at"] for o in outcomes),
        "process_wall_min_seconds": min(o["wall_seconds"] for o in outcomes),
        "process_wall_max_seconds": max(o["wall_seconds"] for o in outcomes),
        "redis_calls": _add_calls(outcomes),
        "evalsha_calls": redis_counters["evalsha"] if case.limiter == "redis" else None,
        "fallbacks": sum(o["fallbacks"] for o in outcomes),
        "per_process": outcomes,
    }


async def section_several(
    cases: Sequence[SeveralCase], orders: int, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Several processes of one account cancelling together, each case on a fresh account."""
    section: dict[str, Any] = {"orders_each": orders, "jitter": JITTER, "runs": []}
    reason = missing_redis()
    if reason is not None:
        section["skipped"] = reason
        return section
    specs = [spec for case in cases for spec in _fake_specs(case)]
    token = uuid_module.uuid4().hex[:8]
    async with (
        RedisServer() as server,
        FakeProcess(specs) as fakes,
        aiohttp.ClientSession() as http,
    ):
        offset = 0
        for index, case in enumerate(cases):
            count = len(_fake_specs(case))
            run = await _several_run(
                case,
                fakes[offset : offset + count],
                http,
                server,
                orders=orders,
                account=f"bench-{token}-{index}",
            )
            offset += count
            section["runs"].append(run)
            if log is not None:
                log(
                    f"several processes: {case.processes} x {case.limiter}"
                    + (" (paths)" if case.paths else "")
                    + f": {run['wall_seconds']:.2f} s, {run['rejected_429']} x 429"
                )
    return section


async def section_limiter_cost(requests: int, nice: int = 0) -> dict[str, Any]:
    """CPU per request through the in-process limiter and through RedisLimiter, both raised
    out of the way, with Redis's script calls and the server's own CPU per request."""
    section: dict[str, Any] = {"requests": requests, "runs": []}
    reason = missing_redis()
    if reason is not None:
        section["skipped"] = reason
        return section
    spec = FakeSpec(limit=HIGH_LIMIT)
    async with (
        RedisServer(nice=nice) as server,
        FakeProcess([spec] * len(COST_KINDS), nice=nice) as fakes,
        aiohttp.ClientSession() as http,
    ):
        for kind, fake in zip(COST_KINDS, fakes, strict=True):
            admin = Admin(http, fake.base_url)
            before = await server.counters()
            parameters = {
                "limiter": kind,
                "requests": requests,
                "fake": fake.to_json(),
                "redis_url": server.url,
                "account": f"bench-cost-{uuid_module.uuid4().hex[:8]}",
            }
            process = await spawn(
                "benchmarks._several", ["limiter-cost", json.dumps(parameters)], nice=nice
            )
            stdout, _ = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"limiter-cost ({kind}) exited with status {process.returncode}")
            outcome = _json_line(stdout)
            counters = _difference(await server.counters(), before)
            stats = await admin.stats()
            signed = sum(stats["status_counts"].values())
            calls = outcome["redis_calls"]
            via_redis = kind == "redis"
            section["runs"].append(
                {
                    **outcome,
                    "requests": signed,
                    "status_counts": stats["status_counts"],
                    "left_open": (await admin.states())["wait"],
                    "cpu_per_request": outcome["cpu_seconds"] / max(signed, 1),
                    "acquire_per_request": calls.get("acquire", 0) / max(signed, 1)
                    if via_redis
                    else None,
                    "evalsha_calls": counters["evalsha"] if via_redis else None,
                    "evalsha_per_request": counters["evalsha"] / max(signed, 1)
                    if via_redis
                    else None,
                    "redis_cpu_seconds": counters["cpu_seconds"] if via_redis else None,
                    "redis_cpu_per_request": counters["cpu_seconds"] / max(signed, 1)
                    if via_redis
                    else None,
                }
            )
    return section


if __name__ == "__main__":
    raise SystemExit(main())
