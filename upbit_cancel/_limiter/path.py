"""What a client learns about its network path from its own requests, without any I/O.

A request leaves at ``s``, arrives at ``a = s + d_in`` and is answered at ``e = a + x`` (``x``:
the exchange's processing plus the way back). The exchange counts it at ``a``, which the client
never sees; it sees ``s`` and ``e``. What it can learn is a *floor* of the round trip: no request
is answered faster than ``F = min(d_in) + min(x)``. The least round trip seen lately is an
estimate of ``F`` from above; the spread of the smallest ones says how far above it may be, and
the estimate is lowered by that much.

A burst of requests sent at once is a poor witness: each of them may wait behind the others in
the client (and its answer behind theirs), so every round trip of the burst is longer than the
path by about the same amount, and their least one overstates the floor. Only round trips seen
over at least ``span`` (a window: requests sent in different waves) give an estimate.

The floor is what the hold rule needs (see ``hold``): a request answered at ``e`` arrived no
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

    Round trips older than ``horizon`` seconds are dropped. No estimate (``None``) until
    ``needed`` round trips were seen over at least ``span`` seconds, and none once the latest is
    older than ``horizon`` (after idle the path may have changed): callers then fall back to
    what needs no estimate. :meth:`forget` drops everything, for when the exchange says the
    estimate was wrong (a 429).
    """

    __slots__ = ("_recent", "_sorted", "horizon", "needed", "span")

    def __init__(self, *, span: float, needed: int = 8, horizon: float = 5.0) -> None:
        if needed < 3:
            raise ValueError("an estimate needs at least 3 round trips")
        if not 0 <= span < horizon:
            raise ValueError("span must be at least 0 and shorter than horizon")
        #: Seconds the round trips behind an estimate must span at least.
        self.span = span
        #: Round trips needed before an estimate is given.
        self.needed = needed
        #: Seconds a round trip is kept, and after which an estimate lapses.
        self.horizon = horizon
        # (answered at, round trip), oldest first; and the round trips, ascending.
        self._recent: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []

    def observe(self, sent_at: float, answered_at: float) -> None:
        """Record a request that left at ``sent_at`` and was answered at ``answered_at``."""
        trip = max(0.0, answered_at - sent_at)
        self._recent.append((answered_at, trip))
        bisect.insort(self._sorted, trip)
        self._expire(answered_at)

    def forget(self) -> None:
        """Drop every round trip seen: the next estimate rests on new ones only."""
        self._recent.clear()
        self._sorted.clear()

    def estimate(self, now: float) -> PathEstimate | None:
        """The floor of the round trip, or ``None`` when too little or too old is known."""
        self._expire(now)
        recent, trips = self._recent, self._sorted
        if len(trips) < self.needed or recent[-1][0] - recent[0][0] < self.span:
            return None
        least = trips[0]
        # The least round trip seen is above the true floor by as much as the smallest ones
        # are apart: lower it by twice the gap from the least to the third least.
        floor = max(0.0, least - 2.0 * (trips[2] - least))
        return PathEstimate(floor=floor, samples=len(trips))

    def _expire(self, now: float) -> None:
        recent, trips = self._recent, self._sorted
        while recent and recent[0][0] < now - self.horizon:
            _, trip = recent.popleft()
            del trips[bisect.bisect_left(trips, trip)]
