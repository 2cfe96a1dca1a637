"""The suite: what runs, in which process, in which order, and the arithmetic of its figures.

Every measured client runs in a process of its own (``benchmarks.clients`` for the peers,
``benchmarks.jobs`` for upbit_cancel's own measurements) and every fake exchange in another
(``benchmarks.exchange``), so a client's CPU time, memory and event loop are its own. Each run
gets a fresh account (its own fake, same configuration), so no run inherits budget another spent;
the round trip is measured on a twin fake of the same configuration, so the probes spend none of
the run's budget either. Sections run one at a time.

Several processes of one account share a budget through HostLimiter (a SQLite file of the host)
or RedisLimiter; each run gets its own HostLimiter directory (``UPBIT_CANCEL_STATE_DIR``) and its
own account name in Redis, so no run inherits another's state. The section also kills a process
holding the whole budget (SIGKILL) and times, in a fresh process, when each slot comes back.

A client that sends ``r`` requests, never more than ``limit`` in any ``window``, can at best send
request ``k`` (from 0) at ``floor(k / limit) * window``: the last one goes out at
``floor((r - 1) / limit) * window`` and is answered one round trip later. That is the ideal
schedule; efficiency is the ideal divided by the measured wall time less one round trip, 1.0
for a client that waits for nothing but the limit.

A latency step changes the path of a running batch: once half of the run's requests have
reached its fake, the suite sets the fake's faults to the new latency through the admin API
(``POST /_fake/faults``), from this process, so the measured client does nothing extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import attrs

from benchmarks.clients import CLIENTS
from benchmarks.exchange import (
    Admin,
    FakeHandle,
    FakeProcess,
    FakeSpec,
    RedisServer,
    run_json_lines,
    spawn,
)
from benchmarks.jobs import (
    COST_KINDS,
    HIGH_LIMIT,
    HOLDS,
    JITTER,
    LIMIT,
    LIMITER_KINDS,
    SHARED_KINDS,
    START_AHEAD,
    WINDOW,
    CostKind,
    Hold,
    LimiterKind,
    SharedKind,
    arrival_series,
    hold_summary,
    median,
    requests_needed,
)
from upbit_cancel._limiter.host.store import STATE_DIR_VARIABLE
from upbit_cancel.testing import PolicyName

T = TypeVar("T")

#: The policies the fake offers for the ``default`` group's budget.
POLICIES: tuple[PolicyName, ...] = ("sliding", "fixed", "bucket")
#: Arrival jitters, in seconds.
JITTERS = (0.0, 0.010, 0.020)
#: The ceiling's latency axis: one-way latencies and arrival jitters, in seconds.
LATENCIES = (0.0, 0.050, 0.150)
LATENCY_JITTERS = (0.0, 0.020)
#: The send timeline drawn for both holds (``latency.png``): one-way latency and jitter.
PLOT_LATENCY = 0.150
PLOT_JITTER = 0.020
#: The latency steps: one-way latency before and after, in seconds, and the arrival jitter.
STEPS = ((0.150, 0.010), (0.010, 0.150))
STEP_JITTER = 0.010
#: How often the suite looks at a stepping run's fake for its request count, in seconds.
STEP_POLL = 0.020
#: The clients of the client-cost section, in report order. upbit-sdk is measured sending one
#: chunk after another: with every chunk handed to ``asyncio.gather`` at once, the requests queue
#: in httpx's connection pool, whose bookkeeping grows with the queue, so its CPU per request
#: grows with the batch; that would flatter the others.
COST_CLIENTS = ("upbit_cancel", "naive-aiolimiter", "upbit-sdk-sequential", "ccxt")
#: Several processes of one account: how many, how many of them also run alone (each with a
#: limiter of its own: what happens without sharing), and the one-way latencies of the two
#: processes on paths of their own (seconds).
SEVERAL_PROCESSES = (1, 2, 3, 6)
SEVERAL_PROCESSES_QUICK = (3, 6)
SEVERAL_ALONE = (1, 3)
SEVERAL_ALONE_QUICK = (3,)
SEVERAL_PATHS = (0.005, 0.080)
#: The budget's return after a SIGKILL: how long the holder holds before it is killed, how
#: often each shared limiter is measured, and the pause between grants that starts a new step
#: (seconds; a waiting process asks again at least every 0.5 s).
HOLD_BEFORE_KILL = 1.0
RETURN_REPEATS = 3
RETURN_REPEATS_QUICK = 1
RETURN_GAP = 0.75
#: Orders each of several processes cancels.
SEVERAL_ORDERS = 900
#: The confirmation runs' fake: seconds an accepted cancel takes to take effect, and the share
#: of orders that fill meanwhile.
CONFIRM_CANCEL_DELAY = 0.3
CONFIRM_FILL_RATE = 0.01


def ideal_seconds(requests: int, limit: int = 30, window: float = 1.0) -> float:
    """When the last of *requests* may leave at the earliest: ``floor((r - 1) / limit)`` windows."""
    if requests < 1:
        return 0.0
    return ((requests - 1) // limit) * window


def efficiency(ideal: float, wall: float, round_trip: float) -> float | None:
    """``ideal / (wall - round_trip)``; None when the ideal is 0 (everything fits one window)."""
    if ideal <= 0:
        return None
    return ideal / max(wall - round_trip, 1e-9)


def incidents(times: Iterable[float], window: float = 1.0) -> int:
    """How many bursts *times* (429 arrivals) make: one arriving more than *window* after the
    previous one starts a new burst."""
    count = 0
    previous = -math.inf
    for moment in sorted(times):
        if moment - previous > window:
            count += 1
        previous = moment
    return count


@attrs.frozen
class SeveralCase:
    """One run of several processes: a process per path, every one of the same account with a
    key of its own."""

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


@attrs.frozen
class Case:
    """One batch of ``n`` open orders under one policy, arrival jitter and one-way latency."""

    n: int
    policy: PolicyName
    jitter: float
    latency: float = 0.0
    #: How upbit_cancel's limiter holds a slot after an answer.
    hold: Hold = "arrival"
    #: The one-way latency the path steps to once half the requests reached the fake (None:
    #: no step).
    step_to: float | None = None
    #: Whether the run carries the fake's arrival times (for the latency plot).
    series: bool = False
    #: The fake's cancel delay and fill rate, and whether the batch confirms.
    cancel_delay: float = 0.0
    fill_rate: float = 0.0
    confirm: bool = False

    def spec(self) -> FakeSpec:
        """The fake for this case (with the latency it starts with)."""
        return FakeSpec(
            policy=self.policy,
            jitter=self.jitter,
            latency=self.latency,
            cancel_delay=self.cancel_delay,
            fill_rate=self.fill_rate,
        )

    def probe_spec(self) -> FakeSpec:
        """The twin fake the round trip is measured on: the path as it ends."""
        latency = self.latency if self.step_to is None else self.step_to
        return FakeSpec(policy=self.policy, jitter=self.jitter, latency=latency)


@attrs.frozen
class Plan:
    """Everything one run of the suite measures."""

    quick: bool
    #: Section 1: the ceiling runs (no latency, the default hold).
    ceiling: tuple[Case, ...]
    #: Section 1: the latency axis, every case with both holds, arrival first.
    latency: tuple[Case, ...]
    #: Section 1: the latency steps.
    steps: tuple[Case, ...]
    #: Section 2: kill-switch cases, each repeated `kill_repeats` times.
    kill: tuple[Case, ...]
    kill_repeats: int
    #: Section 3: orders each peer cancels, and the fake they all meet.
    peer_orders: int
    peer_spec: FakeSpec
    #: Section 4: requests each client sends for the CPU measurement.
    cost_requests: int
    #: Section 4: ids streamed for the memory measurement, and ids for the keep-everything
    #: comparison (``cancel`` instead of ``stream``).
    stream_ids: tuple[int, ...]
    collect_ids: tuple[int, ...]
    #: Confirmation: the same batch plain and confirmed, against a fake whose cancels take a
    #: while to take effect.
    confirmation: tuple[Case, ...]
    #: Section 5: several processes of one account, each cancelling `several_orders` orders.
    several: tuple[SeveralCase, ...]
    several_orders: int
    #: Section 5: how often the budget's return after a SIGKILL is measured, per shared limiter.
    return_repeats: int

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON-ready values."""
        return attrs.asdict(self, value_serializer=_serialize)


def _serialize(_instance: object, _field: object, value: Any) -> Any:
    return value.to_json() if isinstance(value, FakeSpec) else value


def _latency_cases(
    n: int,
    latencies: Sequence[float],
    jitters: Sequence[float],
    policies: Sequence[PolicyName],
) -> tuple[Case, ...]:
    """Every combination with both holds, arrival first; the plotted ones carry their series."""
    return tuple(
        Case(
            n,
            policy,
            jitter,
            latency,
            hold,
            series=(latency, jitter, policy) == (PLOT_LATENCY, PLOT_JITTER, "sliding"),
        )
        for latency in latencies
        for jitter in jitters
        for policy in policies
        for hold in HOLDS
    )


def several_cases(processes: Sequence[int], alone: Sequence[int]) -> tuple[SeveralCase, ...]:
    """Each count of processes alone (the counts in *alone*), sharing HostLimiter and sharing
    RedisLimiter; then the pair on paths of their own with each shared limiter."""
    return (
        *(
            SeveralCase(kind, (0.0,) * count)
            for count in processes
            for kind in LIMITER_KINDS
            if kind != "alone" or count in alone
        ),
        *(SeveralCase(kind, SEVERAL_PATHS) for kind in SHARED_KINDS),
    )


def make_plan(quick: bool) -> Plan:
    """The quick plan (about five minutes) or the full one (about twenty-five minutes)."""
    small = tuple(Case(600, policy, jitter) for policy in POLICIES for jitter in JITTERS)
    if quick:
        ceiling = (*small, *(Case(6_000, policy, 0.020) for policy in POLICIES))
        latency = _latency_cases(3_000, (0.050, 0.150), (0.020,), ("sliding",))
        step_orders = 3_000
        kill = (
            *(Case(6_000, "sliding", jitter) for jitter in JITTERS),
            Case(60_000, "sliding", 0.010),
        )
    else:
        # The 6,000-order ceiling runs are the latency axis's (latency 0 among them).
        ceiling = (*small, *(Case(60_000, policy, 0.020) for policy in POLICIES))
        latency = _latency_cases(6_000, LATENCIES, LATENCY_JITTERS, POLICIES)
        step_orders = 6_000
        kill = (
            *(Case(6_000, policy, jitter) for policy in POLICIES for jitter in JITTERS),
            Case(600, "sliding", 0.010),
            Case(60_000, "sliding", 0.010),
        )
    steps = tuple(
        Case(step_orders, "sliding", STEP_JITTER, before, step_to=after, series=True)
        for before, after in STEPS
    )
    return Plan(
        quick=quick,
        ceiling=ceiling,
        latency=latency,
        steps=steps,
        kill=kill,
        kill_repeats=3 if quick else 5,
        peer_orders=600 if quick else 6_000,
        peer_spec=FakeSpec(policy="sliding", jitter=0.010),
        cost_requests=500 if quick else 3_000,
        stream_ids=(10_000, 100_000) if quick else (10_000, 100_000, 1_000_000),
        collect_ids=() if quick else (100_000,),
        confirmation=tuple(
            Case(
                3_000 if quick else 6_000,
                "sliding",
                0.010,
                cancel_delay=CONFIRM_CANCEL_DELAY,
                fill_rate=CONFIRM_FILL_RATE,
                confirm=confirm,
            )
            for confirm in (False, True)
        ),
        several=several_cases(
            SEVERAL_PROCESSES_QUICK if quick else SEVERAL_PROCESSES,
            SEVERAL_ALONE_QUICK if quick else SEVERAL_ALONE,
        ),
        several_orders=SEVERAL_ORDERS,
        return_repeats=RETURN_REPEATS_QUICK if quick else RETURN_REPEATS,
    )


def log(started: float, message: str) -> None:
    """A progress line on stderr, stamped with the seconds since *started*."""
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


# --- sections ----------------------------------------------------------------------------------


async def _step(admin: Admin, case: Case) -> dict[str, Any]:
    """Step the path of *case*'s fake to ``case.step_to`` once half its requests have arrived.

    Only the run's own requests reach the fake (seeding goes through the admin API, the round
    trip is probed on a twin, and the records are reset just before the batch starts), so its
    request count is the run's. Returns when it stepped: after how many requests, and the
    arrival of the last request before the step, in seconds from the run's first.
    """
    assert case.step_to is not None
    half = requests_needed(case.n) // 2
    while True:
        seen = sum((await admin.stats())["status_counts"].values())
        if seen >= half:
            break
        await asyncio.sleep(STEP_POLL)
    faults = await admin.set_faults(
        latency_in=case.step_to, latency_out=case.step_to, jitter_in=case.jitter
    )
    arrivals = [record["arrival"] for record in await admin.records()]
    return {
        "after_requests": seen,
        "at_seconds": max(arrivals, default=0.0) - min(arrivals, default=0.0),
        "faults": faults,
    }


async def _cancel_runs(
    cases: Sequence[Case], *, stop_after: int | None = None, repeats: int = 1
) -> list[dict[str, Any]]:
    """Run *cases* one after another in one upbit_cancel process, each on a fresh account.

    Cases with a ``step_to`` have their path stepped mid-run (see `_step`); the result says
    when, under ``step``.
    """
    expanded = [(case, repeat) for case in cases for repeat in range(repeats)]
    specs = [spec for case, _ in expanded for spec in (case.spec(), case.probe_spec())]
    async with FakeProcess(specs) as fakes, aiohttp.ClientSession() as http:
        runs = [
            {
                "n": case.n,
                "stop_after": stop_after,
                "hold": case.hold,
                "series": case.series,
                "confirm": case.confirm,
                "fake": fakes[2 * index].to_json(),
                "probe": fakes[2 * index + 1].to_json(),
                "tags": {"repeat": repeat}
                | ({} if case.step_to is None else {"step_to": case.step_to}),
            }
            for index, (case, repeat) in enumerate(expanded)
        ]
        steppers = {
            index: asyncio.ensure_future(_step(Admin(http, fakes[2 * index].base_url), case))
            for index, (case, _) in enumerate(expanded)
            if case.step_to is not None
        }
        try:
            results = await run_json_lines(
                "benchmarks.jobs", ["cancel", json.dumps({"runs": runs})]
            )
        finally:
            for task in steppers.values():
                task.cancel()
            await asyncio.gather(*steppers.values(), return_exceptions=True)
        for index, task in steppers.items():
            # A stepper still waiting when the batch ended never stepped.
            results[index]["step"] = None if task.cancelled() else task.result()
    return results


async def section_confirmation(plan: Plan) -> list[dict[str, Any]]:
    """The cost of confirmation: the same batch plain and confirmed, on fresh accounts."""
    return _score(await _cancel_runs(plan.confirmation))


def _score(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the ideal and the efficiency to each result."""
    for result in results:
        ideal = ideal_seconds(result["requests_needed"])
        result["ideal_seconds"] = ideal
        result["efficiency"] = efficiency(
            ideal, result["wall_seconds"], result["round_trip_seconds"]
        )
    return results


async def section_ceiling(cases: Sequence[Case]) -> list[dict[str, Any]]:
    """Section 1: upbit_cancel against the ceiling, one fresh account per case."""
    return _score(await _cancel_runs(cases))


async def section_steps(plan: Plan) -> list[dict[str, Any]]:
    """Section 1, latency steps: the path's latency changes mid-run.

    Besides the ceiling's figures: the 429 incidents (429s more than a window apart start a new
    one) and the 429s in steady state, the second half of the time from the step to the last
    arrival, by when the limiter should have caught up with the new path.
    """
    results = _score(await _cancel_runs(plan.steps))
    for result in results:
        rejected = result["series"]["rejected"]
        arrivals = [*result["series"]["admitted"], *rejected]
        step = result["step"]
        end = max(arrivals, default=0.0)
        step_at = end if step is None else step["at_seconds"]
        steady_from = step_at + (end - step_at) / 2
        result["incidents_429"] = incidents(rejected)
        result["before_step_429"] = sum(time <= step_at for time in rejected)
        result["steady_from_seconds"] = steady_from
        result["steady_429"] = sum(time >= steady_from for time in rejected)
    return results


async def section_kill(plan: Plan) -> dict[str, Any]:
    """Section 2: time from the call until the first 600 cancels are confirmed."""
    runs = await _cancel_runs(plan.kill, stop_after=600, repeats=plan.kill_repeats)
    summary = []
    for case in plan.kill:
        mine = [
            run
            for run in runs
            if (run["n"], run["policy"], run["jitter"]) == (case.n, case.policy, case.jitter)
        ]
        firsts = [run["first_600_success_seconds"] for run in mine]
        trips = [run["round_trip_seconds"] for run in mine]
        within = sum(
            first is not None and first <= trip + 0.050
            for first, trip in zip(firsts, trips, strict=True)
        )
        summary.append(
            {
                "n": case.n,
                "policy": case.policy,
                "jitter": case.jitter,
                "repeats": len(mine),
                "round_trip_seconds": median(trips),
                "first_600_median_seconds": median([first or float("inf") for first in firsts]),
                "first_600_max_seconds": max(first or float("inf") for first in firsts),
                "within_bound": within,
            }
        )
    return {"runs": runs, "summary": summary}


async def _worker(
    client: str, fake: FakeHandle, uuids_file: Path, *, unthrottled: bool = False
) -> dict[str, Any]:
    """Run one client in ``benchmarks.clients``; return the line it printed."""
    arguments = ["--client", client, "--base-url", fake.base_url, "--uuids-file", str(uuids_file)]
    if unthrottled:
        arguments.append("--unthrottled")
    env = {"UPBIT_ACCESS_KEY": fake.access_key, "UPBIT_SECRET_KEY": fake.secret_key}
    (line,) = await run_json_lines("benchmarks.clients", arguments, env=env)
    return line


async def section_peers(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Section 3: every client on the same work against the same fake configuration."""
    clients = list(CLIENTS)
    specs = [plan.peer_spec] * (len(clients) + 1)
    runs = []
    async with FakeProcess(specs) as fakes, aiohttp.ClientSession() as http:
        for client, fake in zip(clients, fakes, strict=False):
            admin = Admin(http, fake.base_url)
            open_before = (await admin.states())["wait"]
            uuids, _ = await admin.add_orders(plan.peer_orders)
            uuids_file = workdir / f"peer-{client}.txt"
            uuids_file.write_text("\n".join(uuids) + "\n", encoding="utf-8")
            outcome = await _worker(client, fake, uuids_file)
            stats = await admin.stats()
            left_open = (await admin.states())["wait"] - open_before
            records = await admin.records()
            per_request = 1 if client == "ccxt" else 20
            needed = requests_needed(plan.peer_orders, per_request)
            runs.append(
                {
                    **outcome,
                    "orders": plan.peer_orders,
                    "requests_needed": needed,
                    "ideal_seconds": ideal_seconds(needed),
                    "signed_requests": sum(stats["status_counts"].values()),
                    "rejected_429": stats["rejected_429"],
                    "status_counts": stats["status_counts"],
                    "max_in_window": stats["max_in_window"],
                    "left_open": left_open,
                    "series": arrival_series(records),
                }
            )
        probe_fake = fakes[-1]
        admin = Admin(http, probe_fake.base_url)
        uuids, _ = await admin.add_orders(2)
        uuids_file = workdir / "ccxt-list-probe.txt"
        uuids_file.write_text("\n".join(uuids) + "\n", encoding="utf-8")
        probe = await _worker("ccxt-list-probe", probe_fake, uuids_file)
        probe["left_open"] = (await admin.states())["wait"]
    return {
        "orders": plan.peer_orders,
        "spec": plan.peer_spec.to_json(),
        "runs": runs,
        "list_probe": probe,
    }


async def section_cost(plan: Plan, workdir: Path) -> list[dict[str, Any]]:
    """Section 4a: process CPU per request, against a fake whose limit is out of the way."""
    spec = FakeSpec(limit=HIGH_LIMIT)
    results = []
    async with (
        FakeProcess([spec] * len(COST_CLIENTS)) as fakes,
        aiohttp.ClientSession() as http,
    ):
        for client, fake in zip(COST_CLIENTS, fakes, strict=True):
            admin = Admin(http, fake.base_url)
            per_request = 1 if client == "ccxt" else 20
            uuids, _ = await admin.add_orders(plan.cost_requests * per_request)
            uuids_file = workdir / f"cost-{client}.txt"
            uuids_file.write_text("\n".join(uuids) + "\n", encoding="utf-8")
            outcome = await _worker(client, fake, uuids_file, unthrottled=True)
            stats = await admin.stats()
            requests = sum(stats["status_counts"].values())
            results.append(
                {
                    "client": client,
                    "orders": len(uuids),
                    "requests": requests,
                    "status_counts": stats["status_counts"],
                    "left_open": (await admin.states())["wait"],
                    "cpu_seconds": outcome["cpu_seconds"],
                    "wall_seconds": outcome["wall_seconds"],
                    "cpu_per_request": outcome["cpu_seconds"] / max(requests, 1),
                    "cpu_per_order": outcome["cpu_seconds"] / max(len(uuids), 1),
                    "peak_rss_mb": outcome["peak_rss_mb"],
                }
            )
    return results


async def section_memory(plan: Plan) -> list[dict[str, Any]]:
    """Section 4b: peak memory of upbit_cancel streaming N ids, one process per N."""
    spec = FakeSpec(limit=HIGH_LIMIT, unknown="omit")
    results = []
    cases = [(n, False) for n in plan.stream_ids] + [(n, True) for n in plan.collect_ids]
    async with FakeProcess([spec] * len(cases)) as fakes:
        for (n, collect), fake in zip(cases, fakes, strict=True):
            parameters = {"fake": fake.to_json(), "n": n, "collect": collect}
            (result,) = await run_json_lines("benchmarks.jobs", ["stream", json.dumps(parameters)])
            results.append(result)
    return results


# --- several processes of one account, and the limiters' cost -----------------------------


def missing_redis() -> str | None:
    """Why the Redis runs cannot run here (no redis-server, no redis-py), or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    if importlib.util.find_spec("redis") is None:
        return "redis-py is not installed (pip install -e '.[dev,bench]')"
    return None


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


def _state_env(directory: Path) -> dict[str, str]:
    """The environment that puts HostLimiter's file in *directory*."""
    return {STATE_DIR_VARIABLE: str(directory)}


def _summarise_store(outcome: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Replace a job's SQLite holds (µs: wall time, CPU time) by their summaries; return
    them."""
    samples = list(outcome.pop("loop_hold_us", []))
    cpu = list(outcome.pop("loop_hold_cpu_us", []))
    outcome["loop_hold"] = hold_summary(samples)
    outcome["loop_hold_cpu"] = hold_summary(cpu)
    return samples, cpu


def _per_request(value: float | None, requests: int) -> float | None:
    return None if value is None else value / max(requests, 1)


async def _wait_for(process: asyncio.subprocess.Process, word: bytes) -> None:
    """Read *process*'s stdout until it printed the line *word*."""
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark process ended before it was ready")
        if line.strip() == word:
            return


async def _release_together(
    processes: Sequence[asyncio.subprocess.Process],
) -> list[dict[str, Any]]:
    """Wait until every process printed ``ready``, give them one start time, collect their
    results (one JSON line each)."""
    for process in processes:
        await _wait_for(process, b"ready")
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
    server: RedisServer | None,
    *,
    orders: int,
    account: str,
    state_dir: Path,
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
                "redis_url": None if server is None else server.url,
                "account": account,
            }
        )
    counted = server if case.limiter == "redis" else None
    before = {} if counted is None else await counted.counters()
    processes = [
        await spawn("benchmarks.jobs", ["process", json.dumps(mine)], env=_state_env(state_dir))
        for mine in parameters
    ]
    try:
        outcomes = await _release_together(processes)
    finally:
        await _kill(processes)
    counters = {} if counted is None else _difference(await counted.counters(), before)
    summarised = [_summarise_store(outcome) for outcome in outcomes]
    holds = [sample for wall, _ in summarised for sample in wall]
    holds_cpu = [sample for _, cpu in summarised for sample in cpu]
    stats = await admin.stats()
    states = await admin.states()
    needed = requests_needed(orders) * case.processes
    ideal = ideal_seconds(needed, LIMIT, WINDOW)
    trips = [o["round_trip_seconds"] for o in outcomes if o["round_trip_seconds"] is not None]
    # The last answer may come over the slowest path: one of its round trips.
    trip = max(trips)
    wall = max(o["finished_at"] for o in outcomes) - min(o["started_at"] for o in outcomes)
    requests = sum(o["requests"] for o in outcomes)
    signed = sum(stats["status_counts"].values())
    shared = case.limiter in SHARED_KINDS
    visits = sum(o["visits"] for o in outcomes) if shared else None
    redis_calls = _add_calls(outcomes)
    joins = [o["join_seconds"] for o in outcomes if o.get("join_seconds") is not None]
    return {
        "processes": case.processes,
        "limiter": case.limiter,
        "latencies": list(case.latencies),
        "orders_each": orders,
        "orders": orders * case.processes,
        "requests_needed": needed,
        "requests": requests,
        "signed_requests": signed,
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
        "join_max_seconds": max(joins, default=None),
        "cpu_per_request": sum(o["cpu_seconds"] for o in outcomes) / max(signed, 1),
        "visits": visits,
        "visits_per_request": _per_request(visits, signed),
        "loop_hold": hold_summary(holds) if case.limiter == "host" else None,
        "loop_hold_cpu": hold_summary(holds_cpu) if case.limiter == "host" else None,
        "locked_tries": sum(o["locked_tries"] for o in outcomes) if shared else None,
        "redis_calls": redis_calls,
        "reads_per_visit": redis_calls.get("read", 0) / max(visits or 0, 1)
        if case.limiter == "redis"
        else None,
        "evalsha_calls": counters.get("evalsha"),
        "fallbacks": sum(o["fallbacks"] for o in outcomes),
        "per_process": outcomes,
    }


def grant_steps(grants: Sequence[float], gap: float = RETURN_GAP) -> list[tuple[int, float]]:
    """Grant times (seconds from a kill) as ``(slots, seconds of the first)`` groups, a new
    group after a pause longer than *gap*."""
    steps: list[tuple[int, float]] = []
    previous = -math.inf
    for moment in sorted(grants):
        if moment - previous > gap:
            steps.append((0, moment))
        slots, first = steps[-1]
        steps[-1] = (slots + 1, first)
        previous = moment
    return steps


async def _return_run(
    kind: SharedKind, *, redis_url: str | None, state_dir: Path, account: str
) -> dict[str, Any]:
    """One SIGKILL: a holder takes the whole budget and is killed; another process then asks
    for every slot. When each came back, in seconds from the kill."""
    parameters = {"limiter": kind, "account": account, "redis_url": redis_url}
    env = _state_env(state_dir)
    holder = await spawn("benchmarks.jobs", ["holder", json.dumps(parameters)], env=env)
    asking = await spawn("benchmarks.jobs", ["return", json.dumps(parameters)], env=env)
    try:
        await _wait_for(holder, b"held")
        await _wait_for(asking, b"ready")
        # A moment of holding, so that the kill finds leases renewed a while.
        await asyncio.sleep(HOLD_BEFORE_KILL)
        killed_at = time.monotonic()
        holder.kill()
        await holder.wait()
        assert asking.stdin is not None
        asking.stdin.write(f"{killed_at!r}\n".encode())
        await asking.stdin.drain()
        stdout, _ = await asking.communicate()
        if asking.returncode != 0:
            raise RuntimeError(f"the return job exited with status {asking.returncode}")
    finally:
        await _kill([holder, asking])
    outcome = _json_line(stdout)
    grants = outcome["grants_seconds"]
    return {
        **outcome,
        "first_seconds": grants[0] if grants else None,
        "all_seconds": grants[-1] if len(grants) == outcome["limit"] else None,
        "steps": grant_steps(grants),
    }


async def section_several(plan: Plan, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Several processes of one account cancelling together, each case on a fresh account (a
    fresh HostLimiter directory, a fresh Redis key); then the budget's return after a process
    holding all of it is killed."""
    orders = plan.several_orders
    section: dict[str, Any] = {"orders_each": orders, "jitter": JITTER, "runs": [], "returns": []}
    reason = missing_redis()
    cases = plan.several
    if reason is not None:
        section["redis_skipped"] = reason
        cases = tuple(case for case in cases if case.limiter != "redis")
    specs = [spec for case in cases for spec in _fake_specs(case)]
    token = uuid_module.uuid4().hex[:8]
    async with contextlib.AsyncExitStack() as stack:
        server = None if reason is not None else await stack.enter_async_context(RedisServer())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="upbit-state-")))
        fakes = await stack.enter_async_context(FakeProcess(specs))
        http = await stack.enter_async_context(aiohttp.ClientSession())
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
                state_dir=directory / f"run-{index}",
            )
            offset += count
            section["runs"].append(run)
            if log is not None:
                log(
                    f"several processes: {case.processes} x {case.limiter}"
                    + (" (paths)" if case.paths else "")
                    + f": {run['wall_seconds']:.2f} s, efficiency {run['efficiency'] or 0:.3f}, "
                    f"{run['rejected_429']} x 429"
                )
        kinds = [kind for kind in SHARED_KINDS if kind != "redis" or server is not None]
        for repeat in range(plan.return_repeats):
            for kind in kinds:
                back = await _return_run(
                    kind,
                    redis_url=None if server is None else server.url,
                    state_dir=directory / f"return-{kind}-{repeat}",
                    account=f"bench-{token}-return-{kind}-{repeat}",
                )
                section["returns"].append({"repeat": repeat, **back})
                if log is not None:
                    log(
                        f"after a SIGKILL, {kind}: "
                        + ", ".join(f"{slots} at {at:.2f} s" for slots, at in back["steps"])
                    )
    return section


async def section_limiter_cost(requests: int) -> dict[str, Any]:
    """CPU per request through the in-process limiter, HostLimiter and RedisLimiter, each raised
    out of the way, with the stores' transactions, the SQLite transactions' holds of the event
    loop, Redis's script calls and the server's own CPU per request."""
    section: dict[str, Any] = {"requests": requests, "runs": []}
    reason = missing_redis()
    kinds: tuple[CostKind, ...] = COST_KINDS
    if reason is not None:
        section["redis_skipped"] = reason
        kinds = tuple(kind for kind in kinds if kind != "redis")
    spec = FakeSpec(limit=HIGH_LIMIT)
    async with contextlib.AsyncExitStack() as stack:
        server = None if reason is not None else await stack.enter_async_context(RedisServer())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="upbit-state-")))
        fakes = await stack.enter_async_context(FakeProcess([spec] * len(kinds)))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        for kind, fake in zip(kinds, fakes, strict=True):
            admin = Admin(http, fake.base_url)
            counted = server if kind == "redis" else None
            before = {} if counted is None else await counted.counters()
            parameters = {
                "limiter": kind,
                "requests": requests,
                "fake": fake.to_json(),
                "redis_url": None if server is None else server.url,
                "account": f"bench-cost-{uuid_module.uuid4().hex[:8]}",
            }
            process = await spawn(
                "benchmarks.jobs",
                ["limiter-cost", json.dumps(parameters)],
                env=_state_env(directory / kind),
            )
            stdout, _ = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"limiter-cost ({kind}) exited with status {process.returncode}")
            outcome = _json_line(stdout)
            _summarise_store(outcome)
            counters = {} if counted is None else _difference(await counted.counters(), before)
            stats = await admin.stats()
            signed = sum(stats["status_counts"].values())
            shared = kind in SHARED_KINDS
            section["runs"].append(
                {
                    **outcome,
                    "requests": signed,
                    "status_counts": stats["status_counts"],
                    "left_open": (await admin.states())["wait"],
                    "cpu_per_request": outcome["cpu_seconds"] / max(signed, 1),
                    "visits_per_request": _per_request(outcome["visits"], signed)
                    if shared
                    else None,
                    "loop_hold": outcome["loop_hold"] if kind == "host" else None,
                    "loop_hold_cpu": outcome["loop_hold_cpu"] if kind == "host" else None,
                    "evalsha_calls": counters.get("evalsha"),
                    "evalsha_per_request": _per_request(counters.get("evalsha"), signed),
                    "redis_cpu_seconds": counters.get("cpu_seconds"),
                    "redis_cpu_per_request": _per_request(counters.get("cpu_seconds"), signed),
                }
            )
    return section


# --- the whole suite ---------------------------------------------------------------------------


#: The sections, in the order they run (``--only`` picks some).
SECTIONS = (
    "kill",
    "ceiling",
    "latency",
    "steps",
    "peers",
    "confirmation",
    "cost",
    "limiter-cost",
    "memory",
    "several",
)


async def run_suite(plan: Plan, sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """Run the *sections* of *plan*, one after another, in the suite's order; return the
    results (a section not run is left out)."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    timings: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="upbit-cancel-bench-") as directory:
        workdir = Path(directory)
        works: dict[str, Callable[[], Awaitable[Any]]] = {
            "kill": lambda: section_kill(plan),
            "ceiling": lambda: section_ceiling(plan.ceiling),
            "latency": lambda: section_ceiling(plan.latency),
            "steps": lambda: section_steps(plan),
            "peers": lambda: section_peers(plan, workdir),
            "confirmation": lambda: section_confirmation(plan),
            "cost": lambda: section_cost(plan, workdir),
            "limiter-cost": lambda: section_limiter_cost(plan.cost_requests),
            "memory": lambda: section_memory(plan),
            "several": lambda: section_several(plan, lambda message: log(started, message)),
        }
        done: dict[str, Any] = {}
        for name in SECTIONS:
            if name not in sections:
                continue
            log(started, f"{name}: started")
            begun = time.perf_counter()
            done[name] = await works[name]()
            timings[name] = time.perf_counter() - begun
            log(started, f"{name}: done in {timings[name]:.1f} s")
    results: dict[str, Any] = {"plan": plan.to_json(), "sections": list(done)}
    if "ceiling" in done or "latency" in done:
        results["ceiling"] = done.get("ceiling", []) + done.get("latency", [])
    keys = {
        "steps": "latency_steps",
        "kill": "kill_switch",
        "peers": "peers",
        "cost": "cost",
        "limiter-cost": "limiter_cost",
        "memory": "memory",
        "several": "several",
        "confirmation": "confirmation",
    }
    results.update({key: done[name] for name, key in keys.items() if name in done})
    results["section_seconds"] = timings
    results["suite_seconds"] = time.perf_counter() - started
    return results
