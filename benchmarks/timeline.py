"""The window guarantee as a picture: ``docs/_images/window.png``, for the concepts page.

Run from the repository root, with the ``bench`` extra installed::

    python -m benchmarks.timeline

Two real runs of ``BatchCanceller.cancel`` over 2,400 open orders (120 requests of 20) against
``FakeUpbit`` with a sliding window of 30 requests per second and 5 ms arrival jitter: first with
the session's default limiter (``SlidingWindowLimiter``, 30 per 1 s), then with
``aiolimiter.AsyncLimiter(30, 1)``, a plain token bucket. From the fake's records of each run the
figure draws, over the first seconds since the first arrival, when each request reached the
exchange (admitted or refused with 429) and how many requests reached it in the trailing second,
against the limit. The numbers in the titles are printed too, with a caption to go under the
figure.

The trailing count is of every request that reached the exchange, refused ones included: the
fake admits at most 30 in any second whatever the client does, so what a limiter is judged by
is how many it lets arrive, and the requests above the limit are the 429s.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from aiolimiter import AsyncLimiter

from upbit_cancel import BatchCanceller, UpbitSession
from upbit_cancel.testing import FakeUpbit, Faults, most_in_window

#: Where the figure goes, from the repository root.
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "_images" / "window.png"
#: Open orders each run cancels: 120 requests of 20.
ORDERS = 2_400
#: Upbit's limit on ids per ``DELETE /v1/orders/uuids`` call.
IDS_PER_REQUEST = 20
#: The exchange's limit: requests per window.
LIMIT = 30
#: The exchange's window, in seconds.
WINDOW = 1.0
#: Upper bound of the random delay before each request arrives at the fake, in seconds.
JITTER = 0.005
#: Seconds drawn, from each run's first arrival.
SPAN = 4.0
#: The sign of "60 times 429", named: ruff takes the bare character for a look-alike of "x".
TIMES = "\N{MULTIPLICATION SIGN}"

# The colours of benchmarks/_plot.py, so the documentation's figures read alike.
ADMITTED_COLOUR = "#3b75af"
REFUSED_COLOUR = "#d62728"
TRAILING_COLOUR = "#2ca02c"


@attrs.frozen
class Run:
    """One run as the fake exchange saw it; times are seconds since its first arrival."""

    #: Who paced the requests, as the figure names it.
    limiter: str
    #: Arrival times of the requests the fake admitted.
    admitted: tuple[float, ...]
    #: Arrival times of the requests it refused with 429.
    refused: tuple[float, ...]
    #: Most requests (admitted or refused) that arrived within one window.
    busiest: int
    #: Most admitted requests within one window (``FakeUpbit.max_in_window()``).
    busiest_admitted: int
    #: Seconds from the first arrival to the last.
    span: float
    #: Orders still open once the batch returned.
    left_open: int

    @property
    def arrivals(self) -> list[float]:
        """Every arrival, admitted or refused, in time order."""
        return sorted(self.admitted + self.refused)


def trailing_counts(
    times: Sequence[float], window: float = WINDOW
) -> tuple[list[float], list[int]]:
    """The step function "arrivals in ``(x - window, x]``" of the sorted *times*.

    Returns the points where it changes (an arrival, or an arrival leaving the window) and its
    value from each point on, for ``step(..., where="post")``.
    """
    points = sorted({0.0, *times, *(time + window for time in times)})
    counts = [
        bisect.bisect_right(times, point) - bisect.bisect_right(times, point - window)
        for point in points
    ]
    return points, counts


async def measure(limiter: str, make_limiter: Callable[[], AsyncLimiter | None]) -> Run:
    """Cancel `ORDERS` orders on a fresh fake through a session with ``make_limiter()``."""
    faults = Faults(jitter_in=JITTER)
    async with FakeUpbit(policy="sliding", limit=LIMIT, window=WINDOW, faults=faults) as fake:
        uuids = fake.add_orders(ORDERS)
        async with UpbitSession(
            fake.access_key, fake.secret_key, base_url=fake.base_url, limiter=make_limiter()
        ) as session:
            await BatchCanceller(session).cancel(uuids=uuids)
        # Requests the client gave up on may still be on their way; they count too.
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        records = fake.records
        first = min(record.arrival for record in records)
        admitted = tuple(record.arrival - first for record in records if record.admitted)
        refused = tuple(record.arrival - first for record in records if record.status == 429)
        arrivals = sorted(record.arrival - first for record in records)
        return Run(
            limiter=limiter,
            admitted=admitted,
            refused=refused,
            busiest=most_in_window(arrivals, WINDOW),
            busiest_admitted=fake.max_in_window(),
            span=arrivals[-1],
            left_open=sum(fake.state(uuid) in ("wait", "watch") for uuid in uuids),
        )


def title(run: Run) -> str:
    """The run's facts, as its panel's title says them."""
    requests = len(run.admitted) + len(run.refused)
    # The session resends a request refused with 429, so every request above 120 is a resend.
    resent = requests - ORDERS // IDS_PER_REQUEST
    return (
        f"{run.limiter}: busiest 1 s = {run.busiest}, {len(run.refused)} {TIMES} 429; "
        f"{requests} requests ({resent} resent), the last arriving at {run.span:.1f} s"
    )


def _panel(axis: Any, run: Run, top: float) -> None:
    """Draw one run: arrival ticks below zero, the trailing count and the limit above."""
    # Each arrival is a tick in a strip of its own under the axis: admitted, then refused.
    strip = top / 6
    axis.vlines(
        [time for time in run.admitted if time <= SPAN],
        -0.45 * strip,
        -0.05 * strip,
        color=ADMITTED_COLOUR,
        linewidth=0.8,
        label="arrival, admitted",
    )
    axis.vlines(
        [time for time in run.refused if time <= SPAN],
        -0.95 * strip,
        -0.55 * strip,
        color=REFUSED_COLOUR,
        linewidth=0.8,
        label="arrival, refused (429)",
    )
    points, counts = trailing_counts(run.arrivals)
    axis.step(
        points,
        counts,
        where="post",
        color=TRAILING_COLOUR,
        linewidth=1.4,
        zorder=3,
        label="requests at the exchange in the trailing 1 s",
    )
    # Above the count, which runs along the limit whenever the window is full.
    axis.axhline(
        LIMIT, color="black", linestyle="--", linewidth=1, zorder=4, label="limit: 30 per 1 s"
    )
    axis.axhline(0, color="0.6", linewidth=0.5, zorder=1)
    later = [time for time in run.arrivals if time > SPAN]
    if later:
        axis.text(
            0.99,
            0.62,
            f"paused after the 429s: the next arrival is at {later[0]:.1f} s →",
            transform=axis.transAxes,
            ha="right",
            fontsize=8,
        )
    axis.set_xlim(0, SPAN)
    axis.set_ylim(-strip, top)
    axis.set_yticks(range(0, int(top) + 1, 10))
    axis.set_ylabel("requests")
    axis.set_title(title(run), loc="left", fontsize=9)


def plot(runs: Sequence[Run], path: Path) -> None:
    """Draw *runs*, one panel each, sharing the time axis, into a PNG at *path*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(LIMIT * 2.0, *(run.busiest * 1.15 for run in runs))
    figure, axes = plt.subplots(
        len(runs), 1, figsize=(9.1, 2.4 * len(runs) + 0.6), sharex=True, constrained_layout=True
    )
    for axis, run in zip(axes, runs, strict=True):
        _panel(axis, run, top)
    axes[-1].set_xlabel("seconds since the first request reached the exchange")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    figure.suptitle(
        f"{ORDERS:,} orders in {ORDERS // IDS_PER_REQUEST} requests; the exchange admits "
        f"{LIMIT} in any 1 s (sliding window), {JITTER * 1000:.0f} ms arrival jitter",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Run both limiters, draw `FIGURE`, print the numbers of its titles and a caption."""
    runs = [
        asyncio.run(measure("SlidingWindowLimiter (default)", lambda: None)),
        asyncio.run(measure("aiolimiter.AsyncLimiter(30, 1)", lambda: AsyncLimiter(LIMIT, WINDOW))),
    ]
    plot(runs, FIGURE)
    for run in runs:
        print(
            f"{run.limiter}: {len(run.admitted) + len(run.refused)} requests, "
            f"{len(run.admitted)} admitted, {len(run.refused)} x 429, busiest 1 s = "
            f"{run.busiest} arrived ({run.busiest_admitted} admitted), "
            f"{run.span:.2f} s first to last arrival, {run.left_open} orders left open"
        )
    default, bucket = runs
    print(f"wrote {FIGURE}")
    print(
        f"Caption: The same {ORDERS:,} cancels, paced two ways. SlidingWindowLimiter lets at most "
        f"{default.busiest} requests reach the exchange in any second "
        f"({len(default.refused)} {TIMES} 429, done in {default.span:.1f} s); a token bucket of "
        f"the same rate, AsyncLimiter(30, 1), lets {bucket.busiest} arrive in its busiest second "
        f"(a full bucket, then its refill), the exchange refuses the excess "
        f"({len(bucket.refused)} {TIMES} 429 over the run), and the pauses that follow stretch "
        f"the run to {bucket.span:.1f} s."
    )


if __name__ == "__main__":
    main()
