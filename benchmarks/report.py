"""The suite's results as markdown tables and pictures, with the machine they ran on.

It reports what was measured; what must hold is tested in ``tests/``, not judged here. How each
figure is measured is explained on the documentation's benchmarks page.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.exchange import ROOT

#: Upbit's ``default`` group: requests per window.
LIMIT = 30
#: The kill switch's bound beyond one round trip, in seconds, shown beside its figures.
KILL_SLACK = 0.050
#: Packages whose versions the report names.
PACKAGES = ("upbit-cancel", "upbit-sdk", "ccxt", "aiohttp", "aiolimiter", "PyJWT", "httpx")
#: The policies in report order.
POLICY_ORDER = ("sliding", "fixed", "bucket")
#: How the tables name each limiter kind of the jobs.
LIMITER_NAMES = {
    "alone": "alone",
    "in-process": "in-process",
    "host": "HostLimiter",
    "redis": "RedisLimiter",
}

Run = Mapping[str, Any]


# --- where and when ----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*arguments: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return completed.stdout.strip()


def library_state() -> dict[str, Any]:
    """The commit, and the library files that differ from it (the run measured those)."""
    return {
        "commit": _git("rev-parse", "--short", "HEAD") or None,
        "uncommitted": (_git("status", "--porcelain", "--", "upbit_cancel") or "").splitlines(),
    }


def machine() -> dict[str, Any]:
    """The date, machine, Python and package versions a run came from."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {package: _version(package) for package in PACKAGES},
        **library_state(),
    }


# --- formatting --------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; numbers right-aligned."""
    body = [[_cell(value) for value in row] for row in rows]
    align = [
        "---:" if body and all(_numeric(row[index]) for row in body) else "---"
        for index in range(len(header))
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in body),
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").removesuffix("x").replace("—", "0").strip()
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def seconds(value: float | None, digits: int = 2) -> str:
    """Seconds with *digits* decimals, or a dash."""
    return "—" if value is None else f"{value:.{digits}f}"


def ms(value: float | None) -> str:
    """Seconds shown as milliseconds with one decimal, or a dash."""
    return "—" if value is None or value == math.inf else f"{value * 1000:.1f}"


def jitter(value: float) -> str:
    """A duration in seconds as whole milliseconds."""
    return f"{value * 1000:.0f} ms"


def count(value: int | None) -> str:
    """A count with thousands separators, or a dash."""
    return "—" if value is None else f"{value:,}"


def ratio(value: float | None) -> str:
    """A ratio with three decimals, or a dash."""
    return "—" if value is None else f"{value:.3f}"


def _section(title: str, caption: str, *parts: str) -> str:
    return "\n\n".join([title, caption, *parts])


# --- sections ----------------------------------------------------------------------------------


def _latency(run: Run) -> float:
    return float(run.get("latency", 0.0))


def _hold(run: Run) -> str:
    return str(run.get("hold", "arrival"))


def _order(run: Run) -> tuple[float, ...]:
    policy = run["policy"]
    rank = POLICY_ORDER.index(policy) if policy in POLICY_ORDER else len(POLICY_ORDER)
    return (run["n"], _latency(run), run["jitter"], rank)


def plain_runs(runs: Sequence[Run]) -> list[Run]:
    """The ceiling runs without latency, with the default hold, in report order."""
    plain = [run for run in runs if _latency(run) == 0 and _hold(run) == "arrival"]
    return sorted(plain, key=_order)


def hold_pairs(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    """The latency axis: (arrival hold, answer hold) runs of the same case, in report order."""
    answers = {
        (run["n"], run["policy"], run["jitter"], _latency(run)): run
        for run in runs
        if _hold(run) == "answer"
    }
    pairs = []
    for run in sorted(runs, key=_order):
        key = (run["n"], run["policy"], run["jitter"], _latency(run))
        if _hold(run) == "arrival" and key in answers:
            pairs.append((run, answers[key]))
    return pairs


def ceiling_section(runs: Sequence[Run]) -> str:
    """Section 1, without latency."""
    rows = [
        (
            count(run["n"]),
            run["policy"],
            jitter(run["jitter"]),
            count(run["requests"]),
            seconds(run["wall_seconds"], 3),
            ms(run["round_trip_seconds"]),
            seconds(run["ideal_seconds"], 0),
            ratio(run["efficiency"]),
            count(run["rejected_429"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
        )
        for run in plain_runs(runs)
    ]
    return _section(
        "## 1. Against the ceiling",
        "upbit_cancel alone on loopback, a fresh account per run. Ideal = ⌊(requests - 1)/30⌋ s; "
        "efficiency = ideal ÷ (wall - one round trip).",
        table(
            [
                "orders",
                "policy",
                "jitter",
                "requests",
                "wall s",
                "round trip ms",
                "ideal s",
                "efficiency",
                "429s",
                "max in 1 s",
                "left open",
            ],
            rows,
        ),
    )


def latency_section(runs: Sequence[Run]) -> str | None:
    """Section 1's latency axis: each case under both holds, side by side."""
    pairs = hold_pairs(runs)
    if not pairs:
        return None
    rows = [
        (
            count(arrival["n"]),
            arrival["policy"],
            jitter(_latency(arrival)),
            jitter(arrival["jitter"]),
            f"{ms(arrival['round_trip_seconds'])} / {ms(answer['round_trip_seconds'])}",
            seconds(arrival["ideal_seconds"], 0),
            seconds(arrival["wall_seconds"], 3),
            ratio(arrival["efficiency"]),
            count(arrival["rejected_429"]),
            count(arrival["max_in_window"]),
            seconds(answer["wall_seconds"], 3),
            ratio(answer["efficiency"]),
            count(answer["rejected_429"]),
            count(answer["max_in_window"]),
        )
        for arrival, answer in pairs
    ]
    return _section(
        "### Latency: arrival hold vs answer hold",
        'Each case twice on fresh accounts: the default hold and `hold="answer"`. The round '
        "trip is measured on a twin of each run's path (arrival run / answer run).",
        table(
            [
                "orders",
                "policy",
                "one-way",
                "jitter",
                "round trip ms",
                "ideal s",
                "arrival: wall s",
                "arrival: efficiency",
                "arrival: 429s",
                "arrival: max in 1 s",
                "answer: wall s",
                "answer: efficiency",
                "answer: 429s",
                "answer: max in 1 s",
            ],
            rows,
        ),
    )


def steps_section(steps: Sequence[Run]) -> str | None:
    """Section 1's latency steps."""
    if not steps:
        return None
    rows = [
        (
            f"{_latency(run) * 1000:.0f} → {run['step_to'] * 1000:.0f} ms",
            count(run["n"]),
            count(run["requests"]),
            "—"
            if run["step"] is None
            else f"{run['step']['after_requests']} / {run['step']['at_seconds']:.2f} s",
            seconds(run["wall_seconds"], 3),
            ms(run["round_trip_seconds"]),
            ratio(run["efficiency"]),
            count(run["rejected_429"]),
            count(run["incidents_429"]),
            count(run["steady_429"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
        )
        for run in steps
    ]
    first = steps[0]
    return _section(
        "### Latency steps",
        f"{first['n']:,} orders, {first['policy']} window, {jitter(first['jitter'])} jitter; the "
        "one-way latency changes once half the requests have arrived. An incident is a burst of "
        "429s; steady state is the second half of the time after the step.",
        table(
            [
                "step (one-way)",
                "orders",
                "requests",
                "stepped after (requests / s)",
                "wall s",
                "round trip ms (after)",
                "efficiency",
                "429s",
                "429 incidents",
                "429s in steady state",
                "max in 1 s",
                "left open",
            ],
            rows,
        ),
    )


def kill_section(kill: Mapping[str, Any]) -> str:
    """Section 2."""
    rows = [
        (
            count(entry["n"]),
            entry["policy"],
            jitter(entry["jitter"]),
            ms(entry["round_trip_seconds"]),
            ms(entry["first_600_median_seconds"]),
            ms(entry["first_600_max_seconds"]),
            ms(entry["round_trip_seconds"] + KILL_SLACK),
            f"{entry['within_bound']}/{entry['repeats']}",
        )
        for entry in kill["summary"]
    ]
    return _section(
        "## 2. Kill-switch latency",
        "From the `cancel()` call until 600 cancels are confirmed, cold connection pool; beside "
        "it one round trip + 50 ms, and the runs within that.",
        table(
            [
                "orders",
                "policy",
                "jitter",
                "round trip ms",
                "first 600 ms (median)",
                "first 600 ms (max)",
                "round trip + 50 ms",
                "runs within",
            ],
            rows,
        ),
    )


def peers_section(peers: Mapping[str, Any]) -> str:
    """Section 3."""
    runs = peers["runs"]
    ours = next(run for run in runs if run["client"] == "upbit_cancel")
    rows = [
        (
            run["client"],
            count(run["signed_requests"]),
            seconds(run["wall_seconds"]),
            f"{run['wall_seconds'] / ours['wall_seconds']:.2f}x",
            seconds(run["ideal_seconds"], 0),
            count(run["rejected_429"]),
            count(run["errors"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
        )
        for run in runs
    ]
    spec = peers["spec"]
    probe = peers["list_probe"]
    body = probe.get("body") or ""
    return _section(
        "## 3. Peers on the same work",
        f"{peers['orders']:,} open orders, {spec['policy']} window, 30 per second, "
        f"{jitter(spec['jitter'])} jitter, each client in its own process and account.",
        table(
            [
                "client",
                "requests",
                "wall s",
                "x upbit_cancel",
                "ideal s",
                "429s",
                "errors raised",
                "max in 1 s",
                "left open",
            ],
            rows,
        ),
        "ccxt's generic list call sends "
        f"`{probe.get('query', '')[:120]}` and gets HTTP {probe.get('status')} "
        f"(`{body[:160]}`); {probe.get('left_open')} of 2 orders stay open.",
    )


def marginal_bytes(entry: Run, memory: Sequence[Run]) -> float | None:
    """Growth per id over the previous, smaller N streamed, or None for the first."""
    smaller = [
        other
        for other in memory
        if other["mode"] == entry["mode"]
        and other["n"] < entry["n"]
        and other["growth_bytes"] is not None
    ]
    if not smaller or entry["growth_bytes"] is None:
        return None
    previous = max(smaller, key=lambda other: other["n"])
    growth = float(entry["growth_bytes"] - previous["growth_bytes"])
    return growth / float(entry["n"] - previous["n"])


def cost_section(
    cost: Sequence[Run] | None,
    memory: Sequence[Run] | None,
    limiter_cost: Mapping[str, Any] | None,
) -> str | None:
    """Section 4: CPU per request, the limiters' cost, memory (the parts that were run)."""
    if cost is None and memory is None and limiter_cost is None:
        return None
    return _section(
        "## 4. Client cost",
        "Process CPU time per signed request, against a fake whose limit is out of the way, "
        "each client's own pacing switched off.",
        *_client_cost(cost or []),
        *_limiter_cost(limiter_cost),
        *_memory(memory or []),
    )


def _client_cost(cost: Sequence[Run]) -> list[str]:
    ours = next((entry for entry in cost if entry["client"] == "upbit_cancel"), None)
    if ours is None:
        return []
    cost_rows = [
        (
            entry["client"],
            count(entry["requests"]),
            count(entry["orders"]),
            seconds(entry["cpu_seconds"], 3),
            f"{entry['cpu_per_request'] * 1000:.3f}",
            f"{entry['cpu_per_request'] / ours['cpu_per_request']:.2f}x",
        )
        for entry in cost
    ]
    return [
        table(
            ["client", "requests", "orders", "CPU s", "CPU ms / request", "x upbit_cancel"],
            cost_rows,
        )
    ]


def _memory(memory: Sequence[Run]) -> list[str]:
    if not memory:
        return []
    mib = 1024 * 1024
    memory_rows = [
        (
            entry["mode"],
            count(entry["n"]),
            f"{entry['peak_rss_bytes'] / mib:.1f}",
            "—" if entry["growth_bytes"] is None else f"{entry['growth_bytes'] / mib:.1f}",
            "—" if (per := marginal_bytes(entry, memory)) is None else f"{per:.0f}",
        )
        for entry in memory
    ]
    return [
        "Memory while streaming N generated ids (growth over the resident set before the "
        "batch; per extra id against the previous N):",
        table(
            ["mode", "ids", "peak RSS MiB", "growth MiB", "bytes per extra id"],
            memory_rows,
        ),
    ]


def hold_cell(summary: Mapping[str, Any] | None) -> str:
    """A SQLite transaction's hold of the event loop, ``median / p99 / max`` in
    microseconds."""
    if not summary or not summary.get("count"):
        return "—"
    return f"{summary['median_us']:.0f} / {summary['p99_us']:.0f} / {summary['max_us']:.0f}"


def _skipped_redis(section: Mapping[str, Any]) -> list[str]:
    reason = section.get("redis_skipped")
    return [] if not reason else [f"RedisLimiter not measured: {reason}."]


def _limiter_cost(limiter_cost: Mapping[str, Any] | None) -> list[str]:
    if not limiter_cost:
        return []
    caption = (
        "Through each limiter, raised to 100,000 per second, 60 requests in flight. A visit is "
        "one transaction of the shared budget's store; a SQLite transaction holds the event "
        "loop from `BEGIN IMMEDIATE` to `COMMIT`:"
    )
    if limiter_cost.get("skipped"):
        return [f"{caption} not measured ({limiter_cost['skipped']})."]
    runs = limiter_cost["runs"]
    base = next((run for run in runs if run["limiter"] == "in-process"), None)
    rows = [
        (
            LIMITER_NAMES.get(run["limiter"], run["limiter"]),
            count(run["requests"]),
            f"{run['cpu_per_request'] * 1000:.3f}",
            "—" if base is None else f"{run['cpu_per_request'] / base['cpu_per_request']:.2f}x",
            ratio(run.get("visits_per_request")),
            count(run.get("largest_state") or None),
            hold_cell(run.get("loop_hold")),
            hold_cell(run.get("loop_hold_cpu")),
            ratio(run.get("evalsha_per_request")),
            "—"
            if run.get("redis_cpu_per_request") is None
            else f"{run['redis_cpu_per_request'] * 1e6:.1f}",
        )
        for run in runs
    ]
    return [
        caption,
        table(
            [
                "limiter",
                "requests",
                "CPU ms / request",
                "x in-process",
                "visits / request",
                "largest state (chars)",
                "SQLite hold µs median / p99 / max",
                "its CPU µs median / p99 / max",
                "evalsha / request",
                "redis-server CPU µs / request",
            ],
            rows,
        ),
        *_skipped_redis(limiter_cost),
    ]


def several_section(several: Mapping[str, Any] | None) -> str | None:
    """Section 5: several processes of one account, and the budget's return after a SIGKILL."""
    if several is None:
        return None
    title = "## 5. Several processes of one account"
    caption = (
        f"{several['orders_each']:,} orders per process, each with a key of its own, released "
        "together; every process alone (a limiter of its own), or all sharing HostLimiter (a "
        "SQLite file of the host) or RedisLimiter. A shared budget's processes joined it before "
        "the start."
    )
    if several.get("skipped"):
        return _section(title, f"{caption} Not measured: {several['skipped']}.")
    rows = [
        (
            " + ".join(f"{latency * 1000:.0f} ms" for latency in run["latencies"])
            if any(run["latencies"])
            else str(run["processes"]),
            LIMITER_NAMES.get(run["limiter"], run["limiter"]),
            count(run["requests"]),
            seconds(run["wall_seconds"], 3),
            ms(run["round_trip_seconds"]),
            seconds(run["ideal_seconds"], 0),
            ratio(run["efficiency"]),
            count(run["rejected_429"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
            f"{run['process_wall_min_seconds']:.2f} / {run['process_wall_max_seconds']:.2f}",
            "—" if run.get("cpu_per_request") is None else f"{run['cpu_per_request'] * 1000:.3f}",
            ratio(run.get("visits_per_request")),
            hold_cell(run.get("loop_hold")),
            hold_cell(run.get("loop_hold_cpu")),
        )
        for run in several["runs"]
    ]
    parts = [
        table(
            [
                "processes",
                "limiter",
                "requests",
                "wall s",
                "round trip ms",
                "ideal s",
                "efficiency",
                "429s",
                "max in 1 s",
                "left open",
                "process wall s min / max",
                "CPU ms / request",
                "visits / request",
                "SQLite hold µs median / p99 / max",
                "its CPU µs median / p99 / max",
            ],
            rows,
        ),
        *_skipped_redis(several),
        *_returns(several.get("returns") or []),
    ]
    return _section(
        title,
        caption + " A row of one-way latencies is a pair of processes on paths of their own. "
        "CPU: the processes' own, during the batch. A visit is one transaction of the store; a "
        "SQLite transaction holds the event loop from `BEGIN IMMEDIATE` to `COMMIT` (wall time, "
        "which includes any preemption of the process by the others sharing the CPUs; its CPU "
        "time is the work itself).",
        *parts,
    )


def _returns(returns: Sequence[Run]) -> list[str]:
    """The budget's return after a SIGKILL: a row per kill."""
    if not returns:
        return []
    rows = [
        (
            LIMITER_NAMES.get(run["limiter"], run["limiter"]),
            count(run["repeat"] + 1),
            seconds(run["asked_seconds"]),
            seconds(run["first_seconds"]),
            seconds(run["all_seconds"]),
            ", ".join(f"{slots} at {at:.2f} s" for slots, at in run["steps"]) or "—",
        )
        for run in returns
    ]
    limit = returns[0]["limit"]
    return [
        f"After a SIGKILL: a process takes all {limit} slots of a fresh budget, marks each "
        "request as sent and is killed; another process of the account, started before, then "
        f"asks for all {limit} slots at once. Seconds from the kill:",
        table(
            ["limiter", "kill", "asked at s", "first slot s", f"all {limit} s", "slots granted"],
            rows,
        ),
    ]


def confirmation_section(runs: Sequence[Run] | None) -> str | None:
    """What confirmation costs: the same batch plain and confirmed."""
    if not runs:
        return None
    plain = next((run for run in runs if not run["confirm"]), None)
    rows = []
    for run in runs:
        confirmation = run.get("confirmation") or {}
        states = confirmation.get("states") or {}
        rows.append(
            (
                "confirmed" if run["confirm"] else "plain",
                count(run["n"]),
                count(run["requests"]),
                seconds(run["wall_seconds"], 3),
                "—"
                if plain is None or not plain["wall_seconds"]
                else f"{run['wall_seconds'] / plain['wall_seconds']:.2f}x",
                count(run["rejected_429"]),
                count(run["left_open"]),
                ", ".join(f"{name} {number:,}" for name, number in sorted(states.items())) or "—",
                count(confirmation.get("still_open")) if run["confirm"] else "—",
            )
        )
    first = runs[0]
    return _section(
        "## 6. Confirmation",
        f"The same batch plain and with `confirm=True`; the fake takes "
        f"{first['cancel_delay'] * 1000:.0f} ms to put a cancel into effect and about 1 % of the "
        "orders fill meanwhile. Left open: on the exchange when the call returns.",
        table(
            [
                "batch",
                "orders",
                "requests",
                "wall s",
                "x plain",
                "429s",
                "left open",
                "final states",
                "still open",
            ],
            rows,
        ),
    )


def render(results: Mapping[str, Any]) -> str:
    """The whole report as markdown."""
    meta = results["meta"]
    packages = ", ".join(
        f"{name} {version}" for name, version in meta["packages"].items() if version
    )
    changed = "after" in meta and meta["after"] != {
        "commit": meta.get("commit"),
        "uncommitted": meta.get("uncommitted"),
    }
    sections = results.get("sections")
    only = "" if sections is None else f", {' and '.join(sections)} only"
    header = (
        f"# Benchmarks ({'quick' if results['plan']['quick'] else 'full'} run{only})\n\n"
        f"{meta['date']} on {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['platform']}, "
        f"Python {meta['python']}; {packages}"
        + (f"; commit {meta['commit']}" if meta.get("commit") else "")
        + (" with uncommitted library changes" if meta.get("uncommitted") else "")
        + (" (the library changed during the run)" if changed else "")
        + f". {results['suite_seconds']:.0f} s in all."
    )
    ceiling = results.get("ceiling")
    parts = [
        header,
        None if ceiling is None else ceiling_section(ceiling),
        None if ceiling is None else latency_section(ceiling),
        steps_section(results.get("latency_steps") or []),
        None if "kill_switch" not in results else kill_section(results["kill_switch"]),
        None if "peers" not in results else peers_section(results["peers"]),
        cost_section(results.get("cost"), results.get("memory"), results.get("limiter_cost")),
        several_section(results.get("several")),
        confirmation_section(results.get("confirmation")),
    ]
    return "\n\n".join(part for part in parts if part is not None) + "\n"


# --- pictures: requests admitted per 100 ms against the limit ---------------------------------

#: Width of one bar, in seconds; bars per window.
BIN = 0.1
BINS_PER_WINDOW = 10


def bins(times: Iterable[float], width: float, number: int) -> list[int]:
    """How many *times* (seconds from 0) fall in each of *number* bins of *width* seconds."""
    counts = [0] * number
    for moment in times:
        index = int(moment // width)
        if 0 <= index < number:
            counts[index] += 1
    return counts


def _end(series: Mapping[str, Sequence[float]]) -> float:
    """The last moment of a run's series (at least 1 s)."""
    return max([*series["admitted"], *series["rejected"], 1.0])


def _shared_end(runs: Sequence[Run]) -> float:
    """One time axis for every panel: long enough for each run but those more than three
    times the median's length (their panel shows the start and says so)."""
    ends = sorted(_end(run["series"]) for run in runs)
    median = ends[len(ends) // 2]
    return max(end for end in ends if end <= 3 * median)


def _panel(axis: Any, series: Mapping[str, Sequence[float]], title: str, shown: float) -> None:
    """One run's admitted requests and 429s per bin, and the admitted in the trailing 1 s,
    over the first ``shown`` seconds (the same in every panel of a figure)."""
    admitted, rejected = series["admitted"], series["rejected"]
    end = _end(series)
    if end > shown:
        title += f" (its first {shown:.0f} s of {end:.0f} s)"
    number = math.ceil(end / BIN) + 1
    starts = [index * BIN for index in range(number)]
    admitted_bins = bins(admitted, BIN, number)
    rejected_bins = bins(rejected, BIN, number)
    trailing = [
        sum(admitted_bins[max(0, index - BINS_PER_WINDOW + 1) : index + 1])
        for index in range(number)
    ]
    axis.bar(starts, admitted_bins, width=BIN, align="edge", color="#3b75af", label="admitted")
    axis.bar(
        starts,
        rejected_bins,
        width=BIN,
        align="edge",
        bottom=admitted_bins,
        color="#d62728",
        label="429",
    )
    axis.step(
        [start + BIN for start in starts],
        trailing,
        where="post",
        color="#2ca02c",
        zorder=3,
        linewidth=1.2,
        label="admitted in the last 1 s",
    )
    axis.axhline(LIMIT, color="black", linestyle="--", linewidth=1, zorder=1, label="limit")
    axis.set_xlim(0, shown + BIN)
    top = max(LIMIT * 2.2, max(trailing, default=0) * 1.1)
    axis.set_ylim(0, top)
    # Bars taller than the panel (a 429 storm) are cut; their height is written on them.
    for start, admitted_count, rejected_count in zip(
        starts, admitted_bins, rejected_bins, strict=True
    ):
        if admitted_count + rejected_count > top:
            axis.text(
                start + BIN / 2,
                top * 0.97,
                str(admitted_count + rejected_count),
                ha="center",
                va="top",
                fontsize=9,
                color="white",
                rotation=90,
            )
    axis.set_ylabel("per 100 ms")
    axis.set_title(title, loc="left")


def _figure(panels: int, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Drawn at about the page's width (8 in at 110 dpi: 880 px), so that the text is read at
    # the size it is set in.
    plt.rcParams.update(
        {"font.size": 11, "axes.titlesize": 11, "legend.fontsize": 10, "figure.titlesize": 12}
    )
    return plt.subplots(
        panels, 1, figsize=(8, height * panels), squeeze=False, constrained_layout=True
    )


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_admitted(peers: Mapping[str, Any], path: Path) -> None:
    """The peers' requests over time against the limit, a panel per client, into *path*."""
    runs = peers["runs"]
    figure, axes = _figure(len(runs), 2.2)
    shown = _shared_end(runs)
    for axis, run in zip(axes[:, 0], runs, strict=True):
        _panel(
            axis,
            run["series"],
            f"{run['client']}: {run['wall_seconds']:.1f} s, {run['rejected_429']} x 429, "
            f"{run['left_open']:,} of {run['orders']:,} left open",
            shown,
        )
    axes[-1, 0].set_xlabel("seconds since the client's first request")
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    spec = peers["spec"]
    figure.suptitle(
        f"Requests per 100 ms: {peers['orders']:,} orders, {spec['policy']} window, 30 per "
        f"second, {jitter(spec['jitter'])} arrival jitter"
    )
    _save(figure, path)


def plot_latency(ceiling: Sequence[Run], path: Path) -> bool:
    """upbit_cancel's send timelines at the plotted latency, answer hold above arrival hold,
    into *path*; False, drawing nothing, when the results have no such runs."""
    runs = sorted(
        (run for run in ceiling if "series" in run), key=lambda run: _hold(run) != "answer"
    )
    if not runs:
        return False
    figure, axes = _figure(len(runs), 2.6)
    shown = _shared_end(runs)
    for axis, run in zip(axes[:, 0], runs, strict=True):
        _panel(
            axis,
            run["series"],
            f'hold="{_hold(run)}": {run["wall_seconds"]:.2f} s, efficiency '
            f"{ratio(run.get('efficiency'))}, {run['rejected_429']} x 429, busiest 1 s "
            f"{run['max_in_window']}",
            shown,
        )
    axes[-1, 0].set_xlabel("seconds since the first request reached the exchange")
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    first = runs[0]
    figure.suptitle(
        f"upbit_cancel, {first['n']:,} orders, {first['policy']} window, 30 per second,\n"
        f"{jitter(_latency(first))} one way, {jitter(first['jitter'])} arrival jitter"
    )
    _save(figure, path)
    return True


# --- one benchmark's command line ---------------------------------------------------------------


def benchmark_main(
    name: str,
    description: str | None,
    measure: Callable[[int], Coroutine[Any, Any, list[dict[str, Any]]]],
    render: Callable[[Sequence[dict[str, Any]]], str],
    settings: Mapping[str, Any],
    argv: Sequence[str] | None,
) -> int:
    """``python -m benchmarks.<name> [--repeats N] [--out DIR]``: run ``measure(repeats)``
    (with a HostLimiter directory of its own, ``UPBIT_CANCEL_STATE_DIR``, removed after),
    write ``<name>.json`` (date, machine, library, ``settings``, runs) and ``<name>.md`` (the
    rendered table) under ``--out``, print the table."""
    import argparse
    import asyncio
    import json
    import tempfile

    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks", help="where to write"
    )
    arguments = parser.parse_args(argv)
    out: Path = arguments.out
    with tempfile.TemporaryDirectory() as state_dir:
        os.environ["UPBIT_CANCEL_STATE_DIR"] = state_dir
        runs = asyncio.run(measure(arguments.repeats))
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "library": library_state(),
        **settings,
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    report = render(runs)
    (out / f"{name}.md").write_text(report + "\n", encoding="utf-8")
    print(report)
    return 0
