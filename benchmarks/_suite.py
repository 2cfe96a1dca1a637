"""The benchmark suite: what runs, in which process, and in which order.

Every measured client runs in a process of its own (``_worker`` for the peers, ``_jobs`` for
upbit_cancel's own measurements) and every fake exchange in another (``_fake_proc``), so a
client's CPU time, memory and event loop are its own. Each run gets a fresh account (its own
fake, same configuration), so no run inherits budget another spent; the round trip is measured
on a twin fake of the same configuration, so the probes spend none of the run's budget either.

The full run takes its sections one at a time. The quick run must finish within a minute, so
after the kill-switch section (alone: it measures milliseconds) it overlaps the rate-limited
sections, whose processes are idle between requests: the ceiling, its latency runs, the latency
steps (each in a job process of its own) and the peers at once, and the batch acceptance once
the peers' workers have started and finished (only ccxt, slow and light, is left). The
CPU-bound sections (client cost, memory) run beside them at the lowest scheduling priority: CPU
seconds and peak memory do not depend on the wall clock, and the low priority keeps them out of
the way of the timed runs. The several-process section follows the CPU-bound ones, still beside
the rate-limited sections: its processes are idle between requests too, and each run starts its
processes (their imports are the costly part) before releasing them together.

A latency step changes the path of a running batch: once half of the run's requests have
reached its fake, the suite sets the fake's faults to the new latency through the admin API
(``POST /_fake/faults``), from this process, so the measured client does nothing extra.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import attrs

from benchmarks._fake_proc import FakeSpec
from benchmarks._fakes import Admin, FakeHandle, FakeProcess, run_json_lines
from benchmarks._jobs import HOLDS, Hold
from benchmarks._metrics import (
    arrival_series,
    efficiency,
    ideal_seconds,
    incidents,
    median,
    requests_needed,
)
from benchmarks._peers import CLIENTS
from benchmarks._several import (
    LIMITER_KINDS,
    SeveralCase,
    section_limiter_cost,
    section_several,
)
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
#: The raised limit of the client-cost and memory runs, so that the client is the bottleneck.
HIGH_LIMIT = 100_000
#: The lowest scheduling priority, for CPU-bound runs that overlap timed ones.
LOW_PRIORITY = 19
#: The clients of the client-cost section, in report order. upbit-sdk is measured sending one
#: chunk after another: with every chunk handed to ``asyncio.gather`` at once, the requests queue
#: in httpx's connection pool, whose bookkeeping grows with the queue, so its CPU per request
#: grows with the batch; that would flatter the others.
COST_CLIENTS = ("upbit_cancel", "naive-aiolimiter", "upbit-sdk-sequential", "ccxt")
#: Several processes of one account: how many, and the one-way latencies of the two processes
#: on paths of their own (seconds).
SEVERAL_PROCESSES = (1, 2, 3, 6)
SEVERAL_PROCESSES_QUICK = (1, 3)
SEVERAL_PATHS = (0.005, 0.080)
#: Orders each of several processes cancels.
SEVERAL_ORDERS = 900
#: The confirmation runs' fake: seconds an accepted cancel takes to take effect, and the share
#: of orders that fill meanwhile.
CONFIRM_CANCEL_DELAY = 0.3
CONFIRM_FILL_RATE = 0.01


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
    #: Batch acceptance (issue 4): how many of each kind of id.
    acceptance: Mapping[str, int]
    acceptance_spec: FakeSpec
    #: Confirmation: the same batch plain and confirmed, against a fake whose cancels take a
    #: while to take effect.
    confirmation: tuple[Case, ...]
    #: Section 5: several processes of one account, each cancelling `several_orders` orders.
    several: tuple[SeveralCase, ...]
    several_orders: int
    #: Whether sections overlap (the quick run).
    overlap: bool

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


def several_cases(processes: Sequence[int]) -> tuple[SeveralCase, ...]:
    """Each count of processes alone and sharing Redis, then the pair on paths of their own."""
    return (
        *(SeveralCase(kind, (0.0,) * count) for count in processes for kind in LIMITER_KINDS),
        SeveralCase("redis", SEVERAL_PATHS),
    )


def make_plan(quick: bool) -> Plan:
    """The quick plan (under a minute) or the full one (about twenty minutes)."""
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
        acceptance={
            "open": 6_000,
            "done": 100,
            "cancel": 100,
            "unknown": 100,
            "duplicates": 100,
            "seed": 5,
        },
        acceptance_spec=FakeSpec(policy="sliding", jitter=0.010, unknown="omit"),
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
        several=several_cases(SEVERAL_PROCESSES_QUICK if quick else SEVERAL_PROCESSES),
        several_orders=SEVERAL_ORDERS,
        overlap=quick,
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
                "benchmarks._jobs", ["cancel", json.dumps({"runs": runs})]
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
    client: str, fake: FakeHandle, uuids_file: Path, *, unthrottled: bool = False, nice: int = 0
) -> dict[str, Any]:
    """Run one client in ``benchmarks._worker``; return the line it printed."""
    arguments = ["--client", client, "--base-url", fake.base_url, "--uuids-file", str(uuids_file)]
    if unthrottled:
        arguments.append("--unthrottled")
    env = {"UPBIT_ACCESS_KEY": fake.access_key, "UPBIT_SECRET_KEY": fake.secret_key}
    (line,) = await run_json_lines("benchmarks._worker", arguments, nice=nice, env=env)
    return line


async def section_peers(
    plan: Plan, workdir: Path, light: asyncio.Event | None = None
) -> dict[str, Any]:
    """Section 3: every client on the same work against the same fake configuration.

    *light* is set once only ccxt is left: a slow client that uses little CPU, after the
    others' processes have started and finished.
    """
    clients = list(CLIENTS)
    specs = [plan.peer_spec] * (len(clients) + 1)
    runs = []
    async with FakeProcess(specs) as fakes, aiohttp.ClientSession() as http:
        for client, fake in zip(clients, fakes, strict=False):
            if client == "ccxt" and light is not None:
                light.set()
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
        if light is not None:
            light.set()
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


async def section_cost(plan: Plan, workdir: Path, nice: int) -> list[dict[str, Any]]:
    """Section 4a: process CPU per request, against a fake whose limit is out of the way."""
    spec = FakeSpec(limit=HIGH_LIMIT)
    results = []
    async with (
        FakeProcess([spec] * len(COST_CLIENTS), nice=nice) as fakes,
        aiohttp.ClientSession() as http,
    ):
        for client, fake in zip(COST_CLIENTS, fakes, strict=True):
            admin = Admin(http, fake.base_url)
            per_request = 1 if client == "ccxt" else 20
            uuids, _ = await admin.add_orders(plan.cost_requests * per_request)
            uuids_file = workdir / f"cost-{client}.txt"
            uuids_file.write_text("\n".join(uuids) + "\n", encoding="utf-8")
            outcome = await _worker(client, fake, uuids_file, unthrottled=True, nice=nice)
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


async def section_memory(plan: Plan, nice: int) -> list[dict[str, Any]]:
    """Section 4b: peak memory of upbit_cancel streaming N ids, one process per N."""
    spec = FakeSpec(limit=HIGH_LIMIT, unknown="omit")
    results = []
    cases = [(n, False) for n in plan.stream_ids] + [(n, True) for n in plan.collect_ids]
    async with FakeProcess([spec] * len(cases), nice=nice) as fakes:
        for (n, collect), fake in zip(cases, fakes, strict=True):
            parameters = {"fake": fake.to_json(), "n": n, "collect": collect}
            (result,) = await run_json_lines(
                "benchmarks._jobs", ["stream", json.dumps(parameters)], nice=nice
            )
            results.append(result)
    return results


async def section_acceptance(plan: Plan) -> list[dict[str, Any]]:
    """Batch acceptance (issue 4): mixed ids by uuids and by identifiers, criterion by criterion."""
    results = []
    spec = plan.acceptance_spec
    async with FakeProcess([spec] * 4) as fakes:
        for index, kind in enumerate(("uuids", "identifiers")):
            parameters = {
                **plan.acceptance,
                "kind": kind,
                "fake": fakes[2 * index].to_json(),
                "probe": fakes[2 * index + 1].to_json(),
            }
            results += await run_json_lines(
                "benchmarks._jobs", ["acceptance", json.dumps(parameters)]
            )
    return results


# --- the whole suite ---------------------------------------------------------------------------


async def _timed(started: float, name: str, work: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    log(started, f"{name}: started")
    begun = time.perf_counter()
    result = await work()
    seconds = time.perf_counter() - begun
    log(started, f"{name}: done in {seconds:.1f} s")
    return result, seconds


async def run_suite(plan: Plan) -> dict[str, Any]:
    """Run every section of *plan*; return the results (without the report's metadata)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="upbit-cancel-bench-") as directory:
        workdir = Path(directory)
        nice = LOW_PRIORITY if plan.overlap else 0
        timings: dict[str, float] = {}

        async def ceiling() -> list[dict[str, Any]]:
            result, timings["ceiling"] = await _timed(
                started, "ceiling", lambda: section_ceiling(plan.ceiling)
            )
            return result

        async def latency() -> list[dict[str, Any]]:
            result, timings["latency"] = await _timed(
                started, "ceiling: latency", lambda: section_ceiling(plan.latency)
            )
            return result

        async def steps() -> list[dict[str, Any]]:
            result, timings["steps"] = await _timed(
                started, "ceiling: latency steps", lambda: section_steps(plan)
            )
            return result

        # In the quick run the acceptance's first window, timed to the millisecond, waits until
        # the peers' workers, which spend a second of CPU each starting, are out of the way.
        light = asyncio.Event()
        if not plan.overlap:
            light.set()

        async def peers() -> dict[str, Any]:
            result, timings["peers"] = await _timed(
                started, "peers", lambda: section_peers(plan, workdir, light)
            )
            return result

        async def confirmation() -> list[dict[str, Any]]:
            result, timings["confirmation"] = await _timed(
                started, "confirmation", lambda: section_confirmation(plan)
            )
            return result

        async def acceptance_then_confirmation() -> tuple[
            list[dict[str, Any]], list[dict[str, Any]]
        ]:
            return await acceptance(), await confirmation()

        async def acceptance() -> list[dict[str, Any]]:
            await light.wait()
            result, timings["acceptance"] = await _timed(
                started, "acceptance", lambda: section_acceptance(plan)
            )
            return result

        async def cost_and_memory() -> tuple[
            list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]
        ]:
            cost, timings["cost"] = await _timed(
                started, "client cost", lambda: section_cost(plan, workdir, nice)
            )
            limiter_cost, timings["limiter_cost"] = await _timed(
                started,
                "client cost: limiters",
                lambda: section_limiter_cost(plan.cost_requests, nice),
            )
            memory, timings["memory"] = await _timed(
                started, "memory", lambda: section_memory(plan, nice)
            )
            return cost, limiter_cost, memory

        async def several() -> dict[str, Any]:
            result, timings["several"] = await _timed(
                started,
                "several processes",
                lambda: section_several(
                    plan.several, plan.several_orders, lambda message: log(started, message)
                ),
            )
            return result

        async def cpu_bound_then_several() -> tuple[
            tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]], dict[str, Any]
        ]:
            # The processes of several start once the CPU-bound runs are done: on a small machine
            # their imports and the runs' own CPU would otherwise crowd each other.
            cpu_bound = await cost_and_memory()
            return cpu_bound, await several()

        kill, timings["kill"] = await _timed(started, "kill switch", lambda: section_kill(plan))
        if plan.overlap:
            (
                ceiling_results,
                latency_results,
                step_results,
                peer_results,
                (acceptance_results, confirmation_results),
                ((cost, limiter_cost, memory), several_results),
            ) = await asyncio.gather(
                ceiling(),
                latency(),
                steps(),
                peers(),
                acceptance_then_confirmation(),
                cpu_bound_then_several(),
            )
        else:
            ceiling_results = await ceiling()
            latency_results = await latency()
            step_results = await steps()
            peer_results = await peers()
            acceptance_results = await acceptance()
            confirmation_results = await confirmation()
            cost, limiter_cost, memory = await cost_and_memory()
            several_results = await several()
    return {
        "plan": plan.to_json(),
        "ceiling": ceiling_results + latency_results,
        "latency_steps": step_results,
        "kill_switch": kill,
        "peers": peer_results,
        "cost": cost,
        "limiter_cost": limiter_cost,
        "memory": memory,
        "several": several_results,
        "acceptance": acceptance_results,
        "confirmation": confirmation_results,
        "section_seconds": timings,
        "suite_seconds": time.perf_counter() - started,
    }
