"""What a client learns about its network path from its own requests, without any I/O.

A request leaves at ``s``, arrives at ``a = s + d_in`` and is answered at ``e = a + x`` (``x``:
the exchange's processing plus the way back). The exchange counts it at ``a``, which the client
never sees; it sees ``s`` and ``e``. What it can learn is a *floor* of the round trip: no request
is answered faster than ``F = min(d_in) + min(x)``. The least round trip seen lately is an
estimate of ``F`` from above; the spread of the smallest ones says how far above it may be, and
the estimate is lowered by that much.

The floor is what the hold rule needs (see ``_hold``): a request answered at ``e`` arrived no
later than ``e - min(x)``, and a request sent at ``t`` arrives no earlier than ``t + min(d_in)``,
so a slot may serve again at ``e - F`` plus a window instead of ``e`` plus a window.
"""

from __future__ import annotations

import bisect
from collections import deque

import attrs

__all__ = ["PathEstimate", "PathObserver"]


@attrs.frozen
class PathEstimate:
    """A lower bound of the round trip on the path, as far as recent requests tell."""

    #: No request is answered faster than this after it left, in seconds.
    floor: float
    #: How many round trips it rests on.
    samples: int


class PathObserver:
    """Round trips of recent answered requests, and the :class:`PathEstimate` they support.

    No estimate (``None``) until ``needed`` round trips were seen, and none once the latest is
    older than ``stale_after`` seconds (after idle the path may have changed): callers then fall
    back to what needs no estimate. :meth:`forget` drops everything, for when the exchange says
    the estimate was wrong (a 429).
    """

    __slots__ = ("_last_at", "_recent", "_sorted", "keep", "needed", "stale_after")

    def __init__(self, *, keep: int = 64, needed: int = 8, stale_after: float = 5.0) -> None:
        if not 3 <= needed <= keep:
            raise ValueError("need 3 <= needed <= keep round trips")
        #: Round trips kept (the most recent ones).
        self.keep = keep
        #: Round trips needed before an estimate is given.
        self.needed = needed
        #: Seconds after the latest round trip at which the estimate lapses.
        self.stale_after = stale_after
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._last_at = float("-inf")

    def observe(self, sent_at: float, answered_at: float) -> None:
        """Record a request that left at ``sent_at`` and was answered at ``answered_at``."""
        trip = max(0.0, answered_at - sent_at)
        self._recent.append(trip)
        bisect.insort(self._sorted, trip)
        if len(self._recent) > self.keep:
            oldest = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._last_at = max(self._last_at, answered_at)

    def forget(self) -> None:
        """Drop every round trip seen: the next estimate rests on new ones only."""
        self._recent.clear()
        self._sorted.clear()
        self._last_at = float("-inf")

    def estimate(self, now: float) -> PathEstimate | None:
        """The floor of the round trip, or ``None`` when too little or too old is known."""
        trips = self._sorted
        if len(trips) < self.needed or now - self._last_at > self.stale_after:
            return None
        least = trips[0]
        # The least round trip seen is above the true floor by as much as the smallest ones
        # are apart: lower it by twice the gap from the least to the third least.
        floor = max(0.0, least - 2.0 * (trips[2] - least))
        return PathEstimate(floor=floor, samples=len(trips))
