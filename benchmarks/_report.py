"""Turn the suite's results into markdown tables, goal verdicts and the machine they ran on."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchmarks._fakes import ROOT

#: Upbit's ``default`` group: requests per window.
LIMIT = 30
#: Slack the kill-switch goal allows beyond one round trip, in seconds.
KILL_SLACK = 0.050
#: Packages whose versions the report names.
PACKAGES = ("upbit-cancel", "upbit-sdk", "ccxt", "aiohttp", "aiolimiter", "PyJWT", "httpx")


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
    return "—" if value is None or value == float("inf") else f"{value * 1000:.1f}"


def jitter(value: float) -> str:
    """A jitter in seconds as whole milliseconds."""
    return f"{value * 1000:.0f} ms"


def count(value: int | None) -> str:
    """A count with thousands separators, or a dash."""
    return "—" if value is None else f"{value:,}"


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


# --- sections ----------------------------------------------------------------------------------


#: The policies in report order.
POLICY_ORDER = ("sliding", "fixed", "bucket")


def _near(value: float, target: float) -> bool:
    return math.isclose(value, target, abs_tol=1e-9)


def _latency(run: Mapping[str, Any]) -> float:
    """A run's one-way latency (0 in results from before the latency axis)."""
    return float(run.get("latency", 0.0))


def _hold(run: Mapping[str, Any]) -> str:
    """A run's hold (``arrival`` in results from before the choice)."""
    return str(run.get("hold", "arrival"))


def _run_order(run: Mapping[str, Any]) -> tuple[float, ...]:
    policy = run["policy"]
    rank = POLICY_ORDER.index(policy) if policy in POLICY_ORDER else len(POLICY_ORDER)
    return (run["n"], _latency(run), run["jitter"], rank)


def _efficiency(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def plain_runs(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ceiling runs without latency, with the default hold, in report order."""
    plain = [run for run in runs if _near(_latency(run), 0.0) and _hold(run) == "arrival"]
    return sorted(plain, key=_run_order)


def hold_pairs(
    runs: Sequence[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """The latency axis: (arrival hold, answer hold) runs of the same case, in report order."""
    answers = {
        (run["n"], run["policy"], run["jitter"], _latency(run)): run
        for run in runs
        if _hold(run) == "answer"
    }
    pairs = []
    for run in sorted(runs, key=_run_order):
        key = (run["n"], run["policy"], run["jitter"], _latency(run))
        if _hold(run) == "arrival" and key in answers:
            pairs.append((run, answers[key]))
    return pairs


def ceiling_section(runs: Sequence[Mapping[str, Any]], quick: bool) -> str:
    """Section 1 (without the latency axis) as markdown."""
    matrix = (
        "600 orders under every policy and jitter, 6,000 under every policy with 20 ms jitter"
        if quick
        else "600 orders under every policy and jitter; 6,000 under every policy with 0 and "
        "20 ms jitter (the latency axis's runs without latency, below); 60,000 under every "
        "policy with 20 ms jitter only (each such run takes 100 s)"
    )
    rows = [
        (
            count(run["n"]),
            run["policy"],
            jitter(run["jitter"]),
            count(run["requests"]),
            seconds(run["wall_seconds"], 3),
            ms(run["round_trip_seconds"]),
            seconds(run["ideal_seconds"], 0),
            "—" if run["efficiency"] is None else f"{run['efficiency']:.3f}",
            count(run["rejected_429"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
        )
        for run in plain_runs(runs)
    ]
    return "\n\n".join(
        [
            "## 1. Against the ceiling",
            f"upbit_cancel alone, {matrix}, all on loopback with no added latency. Each run is a "
            "fresh account on a fake exchange (30 requests per 1 s window) in its own process. "
            "Ideal = ⌊(requests - 1)/30⌋ s; efficiency = ideal ÷ (wall - one round trip), where "
            "the round trip is the median of 7 single signed cancels to a twin fake with the "
            "same policy, jitter and latency. With 600 orders every request fits one window, so "
            "the ideal is 0 and efficiency undefined. The limiter holds each slot until a window "
            'after the request\'s latest possible arrival (`hold="arrival"`, the default); '
            "the latency axis below compares it with the old hold, a window after the answer "
            '(`hold="answer"`).',
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
        ]
    )


def latency_section(runs: Sequence[Mapping[str, Any]], quick: bool) -> str | None:
    """Section 1's latency axis as markdown: each case under both holds, side by side."""
    pairs = hold_pairs(runs)
    if not pairs:
        return None
    matrix = (
        "3,000 orders, sliding window, 20 ms jitter, 50 and 150 ms one-way latency"
        if quick
        else "6,000 orders under every policy, 0 and 20 ms jitter, 0, 50 and 150 ms one-way latency"
    )
    rows = [
        (
            count(arrival["n"]),
            arrival["policy"],
            jitter(_latency(arrival)),
            jitter(arrival["jitter"]),
            f"{ms(arrival['round_trip_seconds'])} / {ms(answer['round_trip_seconds'])}",
            seconds(arrival["ideal_seconds"], 0),
            seconds(arrival["wall_seconds"], 3),
            _efficiency(arrival["efficiency"]),
            count(arrival["rejected_429"]),
            count(arrival["max_in_window"]),
            seconds(answer["wall_seconds"], 3),
            _efficiency(answer["efficiency"]),
            count(answer["rejected_429"]),
            count(answer["max_in_window"]),
        )
        for arrival, answer in pairs
    ]
    return "\n\n".join(
        [
            "### Latency: arrival hold vs answer hold",
            f"{matrix}; each case run twice on fresh accounts, once with the default hold "
            "(a slot is free a window after the request's latest possible arrival, estimated "
            'from the round trips seen) and once with `hold="answer"` (a window after the '
            "answer, which costs a round trip per window). The fake delays every request and "
            "every answer by the one-way latency, and the arrivals by up to the jitter more; the "
            "round trip (arrival run / answer run) is measured on a twin with the same path. "
            "Efficiency, 429s and the busiest 1 s window as above.",
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
        ]
    )


def _step_label(run: Mapping[str, Any]) -> str:
    return f"{_latency(run) * 1000:.0f} → {run['step_to'] * 1000:.0f} ms"


def steps_section(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """Section 1's latency steps as markdown."""
    if not steps:
        return None
    rows = [
        (
            _step_label(run),
            count(run["n"]),
            count(run["requests"]),
            "—"
            if run["step"] is None
            else f"{run['step']['after_requests']} / {run['step']['at_seconds']:.2f} s",
            seconds(run["wall_seconds"], 3),
            ms(run["round_trip_seconds"]),
            seconds(run["ideal_seconds"], 0),
            _efficiency(run["efficiency"]),
            count(run["rejected_429"]),
            count(run["incidents_429"]),
            count(run["steady_429"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
        )
        for run in steps
    ]
    first = steps[0]
    return "\n\n".join(
        [
            "### Latency steps",
            f"{first['n']:,} orders, {first['policy']} window, {jitter(first['jitter'])} arrival "
            "jitter, default (arrival) hold. Once half of the run's requests have reached the "
            "fake, the suite changes the fake's one-way latency (both ways) through its admin "
            "API; requests received from then on take the new path. An *incident* is a burst "
            "of 429s: a 429 arriving more than a window after the previous one starts a new "
            "one. *Steady state* is the second half of the time from the step to the last "
            "arrival, by when the limiter should have adjusted to the new path. The round trip "
            "is measured on a twin fake with the path the run ends on.",
            table(
                [
                    "step (one-way)",
                    "orders",
                    "requests",
                    "stepped after (requests / s)",
                    "wall s",
                    "round trip ms (after)",
                    "ideal s",
                    "efficiency",
                    "429s",
                    "429 incidents",
                    "429s in steady state",
                    "max in 1 s",
                    "left open",
                ],
                rows,
            ),
        ]
    )


def kill_section(kill: Mapping[str, Any]) -> str:
    """Section 2 as markdown."""
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
    return "\n\n".join(
        [
            "## 2. Kill-switch latency",
            "Time from the `cancel()` call until 600 cancels are confirmed (the 30th answer of the "
            "first window), with a cold connection pool. Bound: one round trip + 50 ms, judged "
            "per run against that run's own round trip.",
            table(
                [
                    "orders",
                    "policy",
                    "jitter",
                    "round trip ms",
                    "first 600 ms (median)",
                    "first 600 ms (max)",
                    "bound ms",
                    "runs within",
                ],
                rows,
            ),
        ]
    )


def peers_section(peers: Mapping[str, Any]) -> str:
    """Section 3 as markdown."""
    runs = peers["runs"]
    ours = next(run for run in runs if run["client"] == "upbit_cancel")
    rows = []
    for run in runs:
        ratio = run["wall_seconds"] / ours["wall_seconds"]
        rows.append(
            (
                run["client"],
                count(run["signed_requests"]),
                seconds(run["wall_seconds"]),
                f"{ratio:.2f}x",
                seconds(run["ideal_seconds"], 0),
                count(run["rejected_429"]),
                count(run["errors"]),
                count(run["max_in_window"]),
                count(run["left_open"]),
            )
        )
    spec = peers["spec"]
    probe = peers["list_probe"]
    body = probe.get("body") or ""
    return "\n\n".join(
        [
            "## 3. Peers on the same work",
            f"{peers['orders']:,} open orders, {spec['policy']} window, 30 per second, "
            f"{jitter(spec['jitter'])} arrival jitter. Each client runs in its own process "
            "against its own account of the same fake configuration. upbit-sdk gets the ids in "
            "chunks of 20 made by hand; ccxt cancels one order per call; the naive client is "
            "`aiolimiter.AsyncLimiter(30, 1)` + aiohttp, chunks of 20. The ideal is that of the "
            "client's own request count (ccxt needs 20 times as many).",
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
            "ccxt's generic call for the list endpoint, "
            "`private_delete_orders_uuids({'uuids[]': [a, b]})`, sends "
            f"`{probe.get('query', '')[:120]}` and gets HTTP {probe.get('status')} "
            f"(`{body[:160]}`); {probe.get('left_open')} of 2 orders stay open. "
            "Single ids are its only working path.",
        ]
    )


def cost_section(
    cost: Sequence[Mapping[str, Any]],
    memory: Sequence[Mapping[str, Any]],
    limiter_cost: Mapping[str, Any] | None = None,
) -> str:
    """Section 4 as markdown (with the limiters' CPU cost when the results have it)."""
    ours = next(entry for entry in cost if entry["client"] == "upbit_cancel")
    cost_rows = [
        (
            entry["client"],
            count(entry["requests"]),
            count(entry["orders"]),
            seconds(entry["cpu_seconds"], 3),
            f"{entry['cpu_per_request'] * 1000:.3f}",
            f"{entry['cpu_per_request'] / ours['cpu_per_request']:.2f}x",
            f"{entry['cpu_per_order'] * 1e6:.1f}",
        )
        for entry in cost
    ]
    mib = 1024 * 1024
    memory_rows = [
        (
            entry["mode"],
            count(entry["n"]),
            count(entry["requests"]),
            f"{entry['peak_rss_bytes'] / mib:.1f}",
            "—"
            if entry["baseline_rss_bytes"] is None
            else f"{entry['baseline_rss_bytes'] / mib:.1f}",
            "—" if entry["growth_bytes"] is None else f"{entry['growth_bytes'] / mib:.1f}",
            _marginal(entry, memory),
            seconds(entry["wall_seconds"], 1),
        )
        for entry in memory
    ]
    return "\n\n".join(
        [
            "## 4. Client cost",
            "CPU: process CPU time of the client's own process over the run (imports excluded) "
            "÷ signed requests it sent, against a fake whose limit is raised to 100,000 per "
            "second, in another process, with the clients' own pacing switched off "
            "(upbit_cancel: limiter raised to 100,000/s, 60 requests in flight). ccxt sends one "
            "order per request, the others 20. upbit-sdk sends one chunk after another: with "
            "every chunk handed to `asyncio.gather` at once its requests queue in httpx's "
            "connection pool, whose bookkeeping grows with the queue, and its CPU per request "
            "grows with the batch.",
            table(
                [
                    "client",
                    "requests",
                    "orders",
                    "CPU s",
                    "CPU ms / request",
                    "x upbit_cancel",
                    "CPU µs / order",
                ],
                cost_rows,
            ),
            *limiter_cost_parts(limiter_cost),
            "Memory: upbit_cancel's peak resident set while `BatchCanceller.stream` takes N "
            "generated uuids from a generator (unknown to the exchange, which leaves them out of "
            "its answers), one process per N. A warm-up batch goes first; then the resident set "
            "is taken and the peak is reset (Linux's `/proc/self/clear_refs`), so the peak is "
            "the batch's own. Growth is that peak over the resident set before the batch; bytes "
            "per extra id compare the growth with that of the previous N. `collect` is "
            "`cancel()`, which keeps every result."
            + (
                ""
                if all(entry.get("peak_reset", True) for entry in memory)
                else " Here the peak could not be reset: it is the process's whole life's."
            ),
            table(
                [
                    "mode",
                    "ids",
                    "requests",
                    "peak RSS MiB",
                    "before MiB",
                    "growth MiB",
                    "bytes per extra id",
                    "wall s",
                ],
                memory_rows,
            ),
        ]
    )


def limiter_cost_parts(limiter_cost: Mapping[str, Any] | None) -> list[str]:
    """Section 4's limiter table: CPU per request through the in-process limiter and Redis."""
    if not limiter_cost:
        return []
    title = (
        "Limiters: upbit_cancel's CPU per request through `SlidingWindowLimiter(100_000, 1.0)` "
        "and through `RedisLimiter(url, limit=100_000)` on a `redis-server` of the benchmark's "
        "own on loopback, same fake (limit raised to 100,000 per second), 60 requests in "
        "flight, one process each, CPU over the session's life. Acquire calls are RedisLimiter's "
        "grant round trips, counted in the client (one call asks for every waiting request); "
        "`evalsha` per request is the server's count (`INFO commandstats`), releases included "
        "(one per request, sent in the background, off the request's path); the first call of "
        "each script counts twice (`NOSCRIPT`, then again once loaded). redis-server CPU is "
        "`used_cpu_sys + used_cpu_user` over the run."
    )
    if limiter_cost.get("skipped"):
        return [f"{title} Not measured: {limiter_cost['skipped']}."]
    runs = limiter_cost["runs"]
    base = next((run for run in runs if run["limiter"] == "in-process"), None)
    rows = [
        (
            "RedisLimiter" if run["limiter"] == "redis" else "in-process",
            count(run["requests"]),
            seconds(run["cpu_seconds"], 3),
            f"{run['cpu_per_request'] * 1000:.3f}",
            "—" if base is None else f"{run['cpu_per_request'] / base['cpu_per_request']:.2f}x",
            _ratio(run.get("acquire_per_request")),
            _ratio(run.get("evalsha_per_request")),
            "—"
            if run.get("redis_cpu_per_request") is None
            else f"{run['redis_cpu_per_request'] * 1e6:.1f}",
            count(run["left_open"]),
        )
        for run in runs
    ]
    return [
        title,
        table(
            [
                "limiter",
                "requests",
                "CPU s",
                "CPU ms / request",
                "x in-process",
                "acquire calls / request",
                "evalsha / request",
                "redis-server CPU µs / request",
                "left open",
            ],
            rows,
        ),
    ]


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _several_label(run: Mapping[str, Any]) -> str:
    return "alone" if run["limiter"] == "alone" else "RedisLimiter"


def _acquire_per_request(run: Mapping[str, Any]) -> float | None:
    if run["limiter"] != "redis" or not run["requests"]:
        return None
    return float(run["redis_calls"].get("acquire", 0)) / float(run["requests"])


def _on_paths(run: Mapping[str, Any]) -> bool:
    return any(latency > 0 for latency in run["latencies"])


def several_section(several: Mapping[str, Any] | None, quick: bool) -> str | None:
    """Section 5 as markdown: several processes of one account, then two on paths of their own."""
    if several is None:
        return None
    intro = (
        f"Processes of one account (one fake exchange: sliding window, 30 per second, "
        f"{jitter(several['jitter'])} arrival jitter), {several['orders_each']:,} orders each, "
        "every process with an API key of its own (extra credentials of the account), started "
        "first, then released together at one start time. Each run twice on fresh accounts: "
        "every process with a `SlidingWindowLimiter(30, 1.0)` of its own (*alone*, which trips "
        "the limit with more than one process), and every process with "
        '`RedisLimiter(url, account="bench-<run>")`, one budget in a `redis-server` of the '
        "benchmark's own on loopback (no persistence). Wall = first start to last finish; "
        "ideal = ⌊(requests needed by all - 1)/30⌋ s; efficiency = ideal ÷ (wall - one round "
        "trip, measured as above on a twin of the path; the slowest path's for the pair). "
        "Process wall: each process's own, from the start time to its last answer. Acquire "
        "calls / request: RedisLimiter's grant round trips, counted in the processes (a process "
        "whose requests wait asks again when Redis says the next slot frees)."
    )
    if several.get("skipped"):
        skipped = f"{intro} Not measured: {several['skipped']}."
        return "\n\n".join(["## 5. Several processes of one account", skipped])
    runs = several["runs"]
    processes = sorted({run["processes"] for run in runs if not _on_paths(run)})
    matrix = ", ".join(str(count) for count in processes)
    rows = [
        (
            run["processes"],
            _several_label(run),
            count(run["requests"]),
            seconds(run["wall_seconds"], 3),
            ms(run["round_trip_seconds"]),
            seconds(run["ideal_seconds"], 0),
            _efficiency(run["efficiency"]),
            count(run["rejected_429"]),
            count(run["max_in_window"]),
            count(run["left_open"]),
            f"{run['process_wall_min_seconds']:.2f} / {run['process_wall_max_seconds']:.2f}",
            _ratio(_acquire_per_request(run)),
        )
        for run in runs
        if not _on_paths(run)
    ]
    parts = [
        "## 5. Several processes of one account",
        f"{intro} Processes: {matrix}" + (" (quick run)." if quick else "."),
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
                "acquire calls / request",
            ],
            rows,
        ),
    ]
    paired = [run for run in runs if _on_paths(run)]
    if paired:
        pair_rows = [
            (
                " + ".join(f"{latency * 1000:.0f} ms" for latency in run["latencies"]),
                _several_label(run),
                count(run["requests"]),
                seconds(run["wall_seconds"], 3),
                " / ".join(
                    ms(outcome["round_trip_seconds"])
                    for outcome in run["per_process"]
                    if outcome["round_trip_seconds"] is not None
                ),
                seconds(run["ideal_seconds"], 0),
                _efficiency(run["efficiency"]),
                count(run["rejected_429"]),
                count(run["max_in_window"]),
                count(run["left_open"]),
                "; ".join(
                    f"{outcome['latency'] * 1000:.0f} ms: {outcome['wall_seconds']:.2f}"
                    for outcome in run["per_process"]
                ),
                _ratio(_acquire_per_request(run)),
            )
            for run in paired
        ]
        parts += [
            "Two processes on paths of their own, sharing one RedisLimiter budget: the fake "
            "delays each one's requests and answers by its one-way latency (per access key), "
            f"plus up to {jitter(several['jitter'])} of arrival jitter.",
            table(
                [
                    "one-way latencies",
                    "limiter",
                    "requests",
                    "wall s",
                    "round trip ms (per path)",
                    "ideal s",
                    "efficiency",
                    "429s",
                    "max in 1 s",
                    "left open",
                    "process wall s",
                    "acquire calls / request",
                ],
                pair_rows,
            ),
        ]
    return "\n\n".join(parts)


def marginal_bytes(entry: Mapping[str, Any], memory: Sequence[Mapping[str, Any]]) -> float | None:
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
    extra_bytes = float(entry["growth_bytes"] - previous["growth_bytes"])
    extra_ids = int(entry["n"] - previous["n"])
    return extra_bytes / extra_ids


def _marginal(entry: Mapping[str, Any], memory: Sequence[Mapping[str, Any]]) -> str:
    value = marginal_bytes(entry, memory)
    return "—" if value is None else f"{value:.0f}"


def _versus(passed: bool) -> str:
    return "≤" if passed else ">"


def _acceptance_cells(run: Mapping[str, Any]) -> list[str]:
    criteria = run["criteria"]
    invariant = run["invariant"]
    return [
        f"{verdict(criteria['invariant'])}: {invariant['distinct_ids']:,} distinct ids, "
        f"{invariant['placed']:,} placed, {invariant['missing']} missing, "
        f"{invariant['repeated']} twice, {invariant['extra']} extra "
        f"({run['success']:,} success, {run['failed']:,} failed, "
        f"{run['unresolved']:,} unresolved)",
        f"{verdict(criteria['all_open_canceled'])}: {run['success']:,} of "
        f"{run['composition']['open']:,} canceled, {run['left_open']} left open",
        f"{verdict(criteria['no_429'])}: {run['rejected_429']} at the exchange, "
        f"{run['client_rate_limited']} seen by the client",
        f"{verdict(criteria['wall_within_bound'])}: {run['wall_seconds']:.3f} s "
        f"{_versus(criteria['wall_within_bound'])} "
        f"{run['wall_bound_seconds']:.3f} s (ideal {run['ideal_seconds']:.0f} s for "
        f"{run['requests_needed']} requests; {run['requests']} sent)",
        f"{verdict(criteria['first_600_within_bound'])}: "
        f"{ms(run['first_600_resolved_seconds'])} ms "
        f"{_versus(criteria['first_600_within_bound'])} {ms(run['first_600_bound_seconds'])} ms",
    ]


def acceptance_section(runs: Sequence[Mapping[str, Any]]) -> str:
    """The batch acceptance criteria of issue 4 as markdown."""
    by_kind = {run["kind"]: run for run in runs}
    composition = runs[0]["composition"]
    labels = [
        "every distinct id in exactly one list",
        "every open order canceled",
        "0 x 429",
        "wall ≤ 1.05 x ideal + round trip",
        "first 600 within round trip + 50 ms",
    ]
    columns = [_acceptance_cells(by_kind[kind]) for kind in ("uuids", "identifiers")]
    rows = [(label, *cells) for label, *cells in zip(labels, *columns, strict=True)]
    return "\n\n".join(
        [
            "## Batch acceptance",
            f"Sliding window, 30 per second, {jitter(runs[0]['jitter'])} arrival jitter: "
            f"{composition['open']:,} open orders plus {composition['closed']} filled or "
            f"canceled, {composition['unknown']} unknown, {composition['duplicates']} duplicate "
            f"and {composition['malformed']} malformed ids, shuffled "
            f"({composition['total_given']:,} given), in one `cancel()` call. The first 600 are "
            "ids resolved, not only canceled, since filled, canceled and unknown ids are mixed "
            "in.",
            table(["criterion", "by uuids", "by identifiers"], rows),
        ]
    )


def confirmation_section(runs: Sequence[Mapping[str, Any]] | None) -> str | None:
    """What confirmation costs: the same batch plain and confirmed, as markdown."""
    if not runs:
        return None
    plain = next((run for run in runs if not run["confirm"]), None)
    rows = []
    for run in runs:
        confirmation = run.get("confirmation") or {}
        ratio = (
            run["wall_seconds"] / plain["wall_seconds"]
            if plain is not None and plain["wall_seconds"]
            else None
        )
        states = confirmation.get("states") or {}
        rows.append(
            (
                "confirmed" if run["confirm"] else "plain",
                count(run["n"]),
                count(run["requests"]),
                seconds(run["wall_seconds"], 3),
                "—" if ratio is None else f"{ratio:.2f}x",
                count(run["rejected_429"]),
                count(run["max_in_window"]),
                count(run["left_open"]),
                ", ".join(f"{name} {number:,}" for name, number in sorted(states.items())) or "—",
                count(confirmation.get("still_open")) if run["confirm"] else "—",
                count(confirmation.get("recanceled")) if run["confirm"] else "—",
            )
        )
    first = runs[0]
    return "\n\n".join(
        [
            "## Confirmation",
            f"{first['n']:,} open orders, sliding window, 30 per second, "
            f"{jitter(first['jitter'])} arrival jitter; the fake takes "
            f"{first['cancel_delay'] * 1000:.0f} ms to put an accepted cancel into effect (the "
            "order stays open meanwhile) and about 1 % of the orders fill in that time. The same "
            "batch plain (`cancel`) and confirmed (`cancel(confirm=True)`: every order's final "
            "state asked, 100 ids a request, within the same budget), each on a fresh account. "
            "*Left open* is counted on the exchange at the end of the call.",
            table(
                [
                    "batch",
                    "orders",
                    "requests",
                    "wall s",
                    "x plain",
                    "429s",
                    "max in 1 s",
                    "left open",
                    "final states",
                    "still open",
                    "canceled again",
                ],
                rows,
            ),
        ]
    )


def confirmation_goal(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Confirmation costs at most 1.25 times the plain batch's wall time."""
    plain = next(run for run in runs if not run["confirm"])
    confirmed = next(run for run in runs if run["confirm"])
    ratio = confirmed["wall_seconds"] / plain["wall_seconds"]
    still_open = (confirmed.get("confirmation") or {}).get("still_open")
    return {
        "goal": "confirmation ≤ 1.25 x plain wall time, 0.3 s cancel delay",
        "measured": (
            f"{confirmed['wall_seconds']:.2f} s vs {plain['wall_seconds']:.2f} s: {ratio:.2f}x "
            f"({confirmed['n']:,} orders; {confirmed['requests'] - plain['requests']:,} more "
            f"requests; {still_open} still open; {confirmed['rejected_429']} x 429)"
        ),
        "met": ratio <= 1.25 and not still_open and not confirmed["rejected_429"],
    }


# --- goals -------------------------------------------------------------------------------------


def goals(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each goal of the issue with what was measured and whether it was met."""
    verdicts: list[dict[str, Any]] = []
    plain = plain_runs(results["ceiling"])
    target = [run for run in plain if run["n"] == 6_000 and _near(run["jitter"], 0.020)]
    effs = {run["policy"]: run["efficiency"] for run in target}
    verdicts.append(
        {
            "goal": "efficiency ≥ 0.95 at 6,000 orders, every policy, 20 ms jitter",
            "measured": ", ".join(f"{policy} {value:.3f}" for policy, value in effs.items()),
            "met": bool(effs) and all(value >= 0.95 for value in effs.values()),
        }
    )
    verdicts += latency_goals(results["ceiling"])
    if results.get("confirmation"):
        verdicts.append(confirmation_goal(results["confirmation"]))
    steps = results.get("latency_steps") or []
    if steps:
        verdicts.append(steps_goal(steps))
    # The latency steps are left out: a path that suddenly gets faster may cost a burst of
    # 429s, which their own goal bounds.
    ours_429 = (
        sum(run["rejected_429"] for run in results["ceiling"])
        + sum(run["rejected_429"] for run in results["kill_switch"]["runs"])
        + sum(run["rejected_429"] for run in results["acceptance"])
        + sum(
            run["rejected_429"]
            for run in results["peers"]["runs"]
            if run["client"] == "upbit_cancel"
        )
    )
    verdicts.append(
        {
            "goal": "0 x 429 (every upbit_cancel run but the latency steps)",
            "measured": f"{ours_429} x 429",
            "met": ours_429 == 0,
        }
    )
    kill_runs = results["kill_switch"]["runs"]
    for label, runs in (
        ("up to 6,000 orders", [run for run in kill_runs if run["n"] <= 6_000]),
        ("60,000 orders", [run for run in kill_runs if run["n"] > 6_000]),
    ):
        if not runs:
            continue
        within = [
            run["first_600_success_seconds"] is not None
            and run["first_600_success_seconds"] <= run["round_trip_seconds"] + KILL_SLACK
            for run in runs
        ]
        worst = max(
            (run["first_600_success_seconds"] or float("inf")) - run["round_trip_seconds"]
            for run in runs
        )
        verdicts.append(
            {
                "goal": f"first 600 cancels within one round trip + 50 ms ({label})",
                "measured": f"{sum(within)}/{len(within)} runs; worst {ms(worst)} ms over "
                "the round trip",
                "met": all(within),
            }
        )
    verdicts += several_goals(results)
    cost = {entry["client"]: entry["cpu_per_request"] for entry in results["cost"]}
    sdk = cost["upbit-sdk-sequential"]
    verdicts.append(
        {
            "goal": "CPU per request at most half of upbit-sdk's",
            "measured": f"{cost['upbit_cancel'] * 1000:.3f} ms vs {sdk * 1000:.3f} ms: "
            f"{cost['upbit_cancel'] / sdk:.2f}x",
            "met": cost["upbit_cancel"] <= 0.5 * sdk,
        }
    )
    streams = [entry for entry in results["memory"] if entry["mode"] == "stream"]
    if len(streams) >= 2 and all(entry["growth_bytes"] is not None for entry in streams):
        smallest, largest = streams[0], streams[-1]
        mib = 1024 * 1024
        growths = ", ".join(
            f"{entry['growth_bytes'] / mib:.1f} MiB at {entry['n']:,}" for entry in streams
        )
        verdicts.append(
            {
                "goal": "memory flat in N when streaming",
                "measured": f"growth {growths} ids: "
                f"{marginal_bytes(largest, streams) or 0:.0f} bytes per extra id",
                "met": largest["peak_rss_bytes"] <= 1.1 * smallest["peak_rss_bytes"],
            }
        )
    return verdicts


#: Section 5's efficiency target for 3 processes sharing RedisLimiter, and the floor under it.
SEVERAL_TARGET = 0.93
SEVERAL_FLOOR = 0.9


def several_goals(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Section 5's goals: 3 processes sharing RedisLimiter, and Redis's round trips per grant.

    Results from before the section have neither goal; a run that could not measure them (no
    redis-server) misses them.
    """
    several = results.get("several")
    limiter_cost = results.get("limiter_cost")
    verdicts: list[dict[str, Any]] = []
    if several is not None:
        goal = (
            "3 processes x 900 orders with RedisLimiter: every order canceled, 0 x 429, ≤ 30 "
            f"arrivals in any 1 s window, combined efficiency ≥ {SEVERAL_TARGET} "
            f"(floor {SEVERAL_FLOOR})"
        )
        runs = [
            run
            for run in several.get("runs", [])
            if run["processes"] == 3 and run["limiter"] == "redis" and not _on_paths(run)
        ]
        if not runs:
            reason = several.get("skipped") or "no such run"
            verdicts.append({"goal": goal, "measured": f"not measured: {reason}", "met": False})
        else:
            run = runs[0]
            canceled = sum(outcome["success"] for outcome in run["per_process"])
            value = run["efficiency"]
            place = (
                "below the floor"
                if value is None or value < SEVERAL_FLOOR
                else "above the floor"
                if value < SEVERAL_TARGET
                else "on target"
            )
            verdicts.append(
                {
                    "goal": goal,
                    "measured": f"{canceled:,} of {run['orders']:,} canceled, "
                    f"{run['left_open']} left open; {run['rejected_429']} x 429; busiest "
                    f"window {run['max_in_window']}; efficiency {_efficiency(value)} "
                    f"({place}; wall {run['wall_seconds']:.3f} s, ideal "
                    f"{run['ideal_seconds']:.0f} s)",
                    "met": canceled == run["orders"]
                    and run["left_open"] == 0
                    and run["rejected_429"] == 0
                    and run["max_in_window"] <= LIMIT
                    and value is not None
                    and value >= SEVERAL_TARGET,
                }
            )
    if limiter_cost is not None:
        goal = (
            "Per grant, Redis adds at most one round trip (acquire evalsha per request ≤ 1; "
            "releases go in the background)"
        )
        redis_runs = [run for run in limiter_cost.get("runs", []) if run["limiter"] == "redis"]
        if not redis_runs:
            reason = limiter_cost.get("skipped") or "no such run"
            verdicts.append({"goal": goal, "measured": f"not measured: {reason}", "met": False})
        else:
            run = redis_runs[0]
            shared = [
                f"{run_['processes']} processes sharing 30/s: {_ratio(_acquire_per_request(run_))}"
                for run_ in (several or {}).get("runs", [])
                if run_["limiter"] == "redis" and run_["processes"] == 3 and not _on_paths(run_)
            ]
            verdicts.append(
                {
                    "goal": goal,
                    "measured": f"acquire calls per request {_ratio(run['acquire_per_request'])} "
                    f"at 100,000/s ({run['requests']:,} requests, 60 in flight); evalsha per "
                    f"request with the releases {_ratio(run['evalsha_per_request'])}"
                    + (f"; {shared[0]} acquire calls per request" if shared else ""),
                    "met": run["acquire_per_request"] is not None
                    and run["acquire_per_request"] <= 1,
                }
            )
    return verdicts


def _policies_efficiency(runs: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{run['policy']} {_efficiency(run['efficiency'])}" for run in runs)


def latency_goals(ceiling: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The latency axis's goals, for the arrival hold: 0, 50 and 150 ms one-way, 20 ms jitter."""
    verdicts: list[dict[str, Any]] = []
    arrival = sorted(
        (
            run
            for run in ceiling
            if _hold(run) == "arrival"
            and _near(run["jitter"], 0.020)
            and run["efficiency"] is not None
        ),
        key=_run_order,
    )
    at_zero = [run for run in arrival if _near(_latency(run), 0.0) and run["n"] == 6_000]
    if at_zero:
        verdicts.append(
            {
                "goal": "efficiency ≥ 0.98 at 0 ms one-way, 20 ms jitter, every policy "
                "(arrival hold)",
                "measured": f"{at_zero[0]['n']:,} orders: {_policies_efficiency(at_zero)}",
                "met": all(run["efficiency"] >= 0.98 for run in at_zero),
            }
        )
    for latency in (0.050, 0.150):
        runs = [run for run in arrival if _near(_latency(run), latency)]
        if not runs:
            continue
        rejected = sum(run["rejected_429"] for run in runs)
        busiest = max(run["max_in_window"] for run in runs)
        verdicts.append(
            {
                "goal": f"efficiency ≥ 0.97 at {latency * 1000:.0f} ms one-way, 20 ms jitter, "
                "every policy, 0 x 429, busiest window ≤ 30 (arrival hold)",
                "measured": f"{runs[0]['n']:,} orders: {_policies_efficiency(runs)}; "
                f"{rejected} x 429; busiest window {busiest}",
                "met": all(run["efficiency"] >= 0.97 for run in runs)
                and rejected == 0
                and busiest <= LIMIT,
            }
        )
    return verdicts


def steps_goal(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The latency steps' goal: at most one incident of 429s per step, none in steady state."""
    measured = "; ".join(
        f"{_step_label(run)}: "
        + (
            "did not step"
            if run["step"] is None
            else "0 x 429"
            if not run["rejected_429"]
            else f"{run['rejected_429']} x 429 in {run['incidents_429']} incident(s), "
            f"{run['steady_429']} in steady state"
        )
        for run in steps
    )
    return {
        "goal": "latency steps: ≤ 1 incident of 429s per step, none in steady state",
        "measured": measured,
        "met": all(
            run["step"] is not None and run["incidents_429"] <= 1 and run["steady_429"] == 0
            for run in steps
        ),
    }


def goals_section(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """The goals as markdown."""
    rows = [
        (entry["goal"], entry["measured"], "met" if entry["met"] else "missed")
        for entry in verdicts
    ]
    return "\n\n".join(["## Goals", table(["goal", "measured", "verdict"], rows)])


def library_state_subset(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The `library_state` part of *meta*, as taken when the run started."""
    return {"commit": meta.get("commit"), "uncommitted": meta.get("uncommitted")}


def render(results: Mapping[str, Any]) -> str:
    """The whole report as markdown."""
    meta = results["meta"]
    packages = ", ".join(
        f"{name} {version}" for name, version in meta["packages"].items() if version
    )
    quick = results["plan"]["quick"]
    arrangement = (
        "quick run: after the kill-switch section, the rate-limited sections overlapped and the "
        "CPU-bound ones ran beside them at the lowest priority (see benchmarks/_suite.py)"
        if quick
        else "full run: one section at a time"
    )
    header = (
        f"# Benchmarks ({'quick' if quick else 'full'} run)\n\n"
        f"{meta['date']} on {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['platform']}, "
        f"Python {meta['python']}; {packages}"
        + (f"; commit {meta['commit']}" if meta.get("commit") else "")
        + (" with uncommitted library changes" if meta.get("uncommitted") else "")
        + (
            " (the library changed during the run)"
            if "after" in meta and meta["after"] != library_state_subset(meta)
            else ""
        )
        + f". {arrangement[0].upper()}{arrangement[1:]}; {results['suite_seconds']:.0f} s in all."
    )
    sections = [
        header,
        ceiling_section(results["ceiling"], quick),
        latency_section(results["ceiling"], quick),
        steps_section(results.get("latency_steps") or []),
    ]
    return (
        "\n\n".join(
            [
                *(section for section in sections if section is not None),
                kill_section(results["kill_switch"]),
                peers_section(results["peers"]),
                cost_section(results["cost"], results["memory"], results.get("limiter_cost")),
                *(
                    section
                    for section in [several_section(results.get("several"), quick)]
                    if section is not None
                ),
                acceptance_section(results["acceptance"]),
                *(
                    section
                    for section in [confirmation_section(results.get("confirmation"))]
                    if section is not None
                ),
                goals_section(results["goals"]),
            ]
        )
        + "\n"
    )
