"""The benchmark as pictures: requests admitted per 100 ms against the limit, from the fakes'
records of arrival times.

- `plot_admitted`: the peers section, one panel per client;
- `plot_latency`: upbit_cancel's send timeline at 150 ms one-way latency, the old hold (a window
  after the answer) above the default one (a window after the latest possible arrival).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._metrics import bins

#: Width of one bar, in seconds.
BIN = 0.1
#: The exchange's limit: requests per window.
LIMIT = 30
#: Bins per window (1 s of 100 ms bins).
BINS_PER_WINDOW = 10


def _panel(axis: Any, series: Mapping[str, Sequence[float]], title: str) -> None:
    """Draw one run's admitted requests and 429s per bin, and the trailing 1 s count."""
    admitted = series["admitted"]
    rejected = series["rejected"]
    end = max([*admitted, *rejected, 1.0])
    count = math.ceil(end / BIN) + 1
    starts = [index * BIN for index in range(count)]
    admitted_bins = bins(admitted, BIN, count)
    rejected_bins = bins(rejected, BIN, count)
    # Admitted in the 1 s window that ends with each bin: an exact count for that window.
    trailing = [
        sum(admitted_bins[max(0, index - BINS_PER_WINDOW + 1) : index + 1])
        for index in range(count)
    ]
    axis.bar(
        starts,
        admitted_bins,
        width=BIN,
        align="edge",
        color="#3b75af",
        label="admitted per 100 ms",
    )
    axis.bar(
        starts,
        rejected_bins,
        width=BIN,
        align="edge",
        bottom=admitted_bins,
        color="#d62728",
        label="429 per 100 ms",
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
    axis.axhline(
        LIMIT, color="black", linestyle="--", linewidth=1, zorder=1, label="limit: 30 per 1 s"
    )
    axis.set_xlim(0, end + BIN)
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
                fontsize=7,
                color="white",
                rotation=90,
            )
    axis.set_ylabel("requests")
    axis.set_title(title, loc="left", fontsize=10)


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_admitted(peers: Mapping[str, Any], path: Path) -> None:
    """Draw the peers' requests over time, against the limit, into a PNG at *path*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = peers["runs"]
    figure, axes = plt.subplots(
        len(runs), 1, figsize=(11, 2.3 * len(runs)), squeeze=False, constrained_layout=True
    )
    for axis, run in zip(axes[:, 0], runs, strict=True):
        _panel(
            axis,
            run["series"],
            f"{run['client']}: {run['wall_seconds']:.1f} s, {run['rejected_429']} x 429, "
            f"{run['left_open']:,} of {run['orders']:,} left open",
        )
    axes[-1, 0].set_xlabel("seconds since the client's first request")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncols=4)
    spec = peers["spec"]
    figure.suptitle(
        f"{peers['orders']:,} orders, {spec['policy']} window, 30 per second, "
        f"{spec['jitter'] * 1000:.0f} ms arrival jitter",
        fontsize=11,
    )
    _save(figure, path)


def latency_runs(ceiling: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs `plot_latency` draws: the ceiling runs that carry a series, answer hold first.

    The suite asks for the series of one case only (150 ms one-way, sliding, 20 ms jitter).
    """
    runs = [run for run in ceiling if "series" in run]
    return sorted(runs, key=lambda run: run.get("hold") != "answer")


def plot_latency(ceiling: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Draw the send timelines of `latency_runs`, answer hold above arrival hold, into a PNG.

    Returns False, drawing nothing, if *ceiling* has no such runs (results from before them).
    """
    runs = latency_runs(ceiling)
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(runs), 1, figsize=(11, 2.6 * len(runs)), squeeze=False, constrained_layout=True
    )
    for axis, run in zip(axes[:, 0], runs, strict=True):
        hold = run.get("hold", "arrival")
        rule = (
            "a window after the answer (before)"
            if hold == "answer"
            else "a window after the latest possible arrival (after)"
        )
        efficiency = run.get("efficiency")
        _panel(
            axis,
            run["series"],
            f'hold="{hold}", {rule}: {run["wall_seconds"]:.2f} s, efficiency '
            + ("—" if efficiency is None else f"{efficiency:.3f}")
            + f", {run['rejected_429']} x 429, busiest 1 s window {run['max_in_window']}",
        )
    axes[-1, 0].set_xlabel("seconds since the first request reached the exchange")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncols=4)
    first = runs[0]
    figure.suptitle(
        f"upbit_cancel, {first['n']:,} orders, {first['policy']} window, 30 per second, "
        f"{first.get('latency', 0.0) * 1000:.0f} ms one-way latency, "
        f"{first['jitter'] * 1000:.0f} ms "
        "arrival jitter",
        fontsize=11,
    )
    _save(figure, path)
    return True
