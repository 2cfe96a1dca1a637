"""The arithmetic of the report: ideal schedule, efficiency, arrivals, bins, 429 incidents,
memory.

A client that sends ``r`` requests, never more than ``limit`` in any ``window``, can at best send
request ``k`` (from 0) at ``floor(k / limit) * window``: the last one goes out at
``floor((r - 1) / limit) * window`` and is answered one round trip later. That is the ideal
schedule; efficiency is the ideal divided by the measured wall time less one round trip, 1.0
for a client that waits for nothing but the limit.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Upbit's limit on ids per ``DELETE /v1/orders/uuids`` call.
IDS_PER_REQUEST = 20


def requests_needed(ids: int, per_request: int = IDS_PER_REQUEST) -> int:
    """The fewest requests that carry *ids* ids."""
    return math.ceil(ids / per_request)


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


def bins(times: Iterable[float], width: float, count: int) -> list[int]:
    """How many *times* (seconds from 0) fall in each of *count* bins of *width* seconds."""
    counts = [0] * count
    for time in times:
        index = int(time // width)
        if 0 <= index < count:
            counts[index] += 1
    return counts


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


def incidents(times: Iterable[float], window: float = 1.0) -> int:
    """How many bursts *times* (429 arrivals) make: one arriving more than *window* after the
    previous one starts a new burst."""
    count = 0
    previous = -math.inf
    for time in sorted(times):
        if time - previous > window:
            count += 1
        previous = time
    return count


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def peak_rss_bytes() -> int:
    """This process's peak resident set size, in bytes: since the last `reset_peak_rss`, or
    since the process began (Linux: ``VmHWM``; elsewhere the whole life's ``ru_maxrss``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Count the peak resident set from now on; False where that cannot be done (not Linux)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # resets the peak resident set size (Linux 4.0 and later)
    except OSError:
        return False
    return True


def current_rss_bytes() -> int | None:
    """This process's resident set size now, in bytes (None where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * resource.getpagesize()
