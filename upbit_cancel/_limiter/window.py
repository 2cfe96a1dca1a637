"""The in-process limiter: at most ``limit`` requests at the exchange in any window."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import random
from collections import deque

from .contract import Lease
from .core import HoldRule, Paced, Pacer, Settings

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter(Paced):
    """At most ``limit`` requests reach the exchange in any window of ``window`` seconds.

    Each :class:`Lease` takes a slot from its grant until a request sent then can no longer be
    counted in the same window of the exchange as its own: a window (plus
    ``margin``) after its latest possible arrival, which the limiter bounds from the round trips
    it has seen (the answer minus the path's floor), or a window after the answer while it knows
    too little (first requests, after idle, after a 429); at once if it never left; a window
    after ``max_transit`` past the lease's end if it was abandoned on the way (a timeout, a
    dropped connection, a cancelled task), since it may still arrive. A grant needs a free slot,
    so no window of the exchange holds more than ``limit`` of these requests, whether the
    exchange counts in fixed, sliding or token-bucket windows, at any distance from it. An idle
    limiter lets ``limit`` requests out at once; waiters are served first come, first served.

    Server feedback only ever slows it down: ``Remaining-Req: sec=0``, 429
    (pause, backoff, a smaller share of the window) and 418 (a block: :meth:`acquire` raises
    :class:`BlockedError`, waiters included).

    Example::

        limiter = SlidingWindowLimiter(30, 1.0)
        async with UpbitSession(access_key, secret_key, limiter=limiter) as session:
            ...

    One limiter belongs to one event loop at a time. ``UpbitSession`` shares one per access key
    automatically; pass the same limiter to the sessions of different keys of one account.

    Args:
        limit: Requests allowed per window (Upbit's ``default`` group: 30).
        window: The window, in seconds (Upbit: 1).
        margin: Seconds added to every hold, for clock granularity at the exchange.
        max_transit: The longest a request may take to reach the exchange after it left:
            an abandoned request keeps its slot that long past its lease's end, plus a window.
        hold: ``"arrival"`` (the default) holds an answered request's slot until a window after
            its latest possible arrival; ``"answer"`` until a window after its answer, which
            costs a round trip per window (for comparison, or distrust of the estimate).
        group: The rate-limit group whose ``Remaining-Req`` header it reads (``"default"``).
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_floor",
        "_holds",
        "_loop",
        "_pacer",
        "_queue",
        "_timer",
        "group",
    )

    #: The rate-limit group whose budget this is.
    group: str

    def __init__(
        self,
        limit: int = 30,
        window: float = 1.0,
        *,
        margin: float = 0.01,
        max_transit: float = 2.0,
        hold: HoldRule = "arrival",
        group: str = "default",
        rng: random.Random | None = None,
    ) -> None:
        settings = Settings.checked(
            limit, window, margin=margin, max_transit=max_transit, hold=hold
        )
        self.group = group
        self._pacer = Pacer(settings, group=group, rng=rng)
        # The path floor the current holds were computed with (None: from the answers).
        self._floor: float | None = None
        # Leases granted and not yet released.
        self._active = 0
        # Until when each released lease still holds its slot, ascending, with its answer's
        # time (-inf if none), so that a lower floor can lengthen the holds already set.
        self._holds: list[tuple[float, float]] = []
        self._queue: deque[asyncio.Future[Lease]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, group: str = "default", rng: random.Random | None = None
    ) -> SlidingWindowLimiter:
        """A limiter with ``settings`` already checked (another limiter's, say)."""
        return cls(
            settings.limit,
            settings.window,
            margin=settings.margin,
            max_transit=settings.max_transit,
            hold=settings.hold,
            group=group,
            rng=rng,
        )

    # -- the contract ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Requests let out per window when idle (``limit``)."""
        return self.limit

    @property
    def idle(self) -> bool:
        """Whether no lease is active, none is awaited and no slot is held any more."""
        if self._active or self._queue:
            return False
        return not self._holds or self._loop is None or self._holds[-1][0] <= self._loop.time()

    async def acquire(self) -> Lease:
        """Wait for a slot and return its lease.

        Raises :class:`BlockedError` while the account is blocked, including for requests that
        were already waiting when the block began.
        """
        lease = self.try_acquire()
        if lease is not None:
            return lease
        loop = self._bind()
        waiter: asyncio.Future[Lease] = loop.create_future()
        self._queue.append(waiter)
        self._schedule()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                if waiter.exception() is None:
                    # Granted, but the task was cancelled before it could use it: never sent.
                    waiter.result().release()
            else:
                with contextlib.suppress(ValueError):
                    self._queue.remove(waiter)
                self._schedule()
            raise

    def try_acquire(self) -> Lease | None:
        """A lease at once if a slot is free and nobody waits, else ``None``."""
        loop = self._bind()
        now = loop.time()
        self._pacer.check_grant(now)
        if not self._queue and self._ready_at(now) <= now:
            return self._grant(loop, now)
        return None

    def departing(self, lease: Lease) -> None:
        """Refuse a request about to leave while the account is blocked (a 418 since its grant)."""
        self._pacer.check_departure(self._bind().time())

    def observe_handshake(self, started: float, completed: float, round_trips: int) -> None:
        """Learn the path's floor from a handshake (see :class:`PathAware`)."""
        self._pacer.observe_handshake(started, completed, round_trips)

    def release(self, lease: Lease) -> None:
        """Learn from the lease's answer and hold its slot as long as its outcome requires."""
        loop = self._bind()
        now = loop.time()
        # This lease's slot is still taken by it, so it counts.
        own_full = self._active + self._held(now) >= self._pacer.share(now)
        self._active -= 1
        release = self._pacer.release(lease, now, own_full=own_full)
        self._apply_floor(release.estimate)
        if release.until > now:
            answered = -math.inf if release.answered_at is None else release.answered_at
            bisect.insort(self._holds, (release.until, answered))
        self._schedule()

    def _apply_floor(self, floor: float | None) -> None:
        """Apply the path floor the new hold was computed with to the holds already set.

        A floor lower than before lengthens the current holds; the first floor known brings the
        holds set from the answers down to it (their round trips are among those it rests on);
        a floor that rises (a slower path) applies from now on, never shortening a hold; no
        floor any more (after a 429) puts every hold back to a window after its answer.
        """
        previous = self._floor
        if floor is None:
            if previous is not None:
                self._refloor(0.0, shorten=False)
        elif previous is None:
            self._refloor(floor, shorten=True)
        elif floor < previous:
            self._refloor(floor, shorten=False)
        self._floor = floor

    def _refloor(self, floor: float, *, shorten: bool) -> None:
        """Hold every answered slot until a window after its answer minus ``floor``: exactly
        (``shorten``), or at least."""
        extra = self._pacer.settings.unit - floor

        def moved(until: float, answered: float) -> float:
            if answered == -math.inf:
                return until  # abandoned: its hold owes nothing to the path
            fitted = answered + extra
            return fitted if shorten else max(until, fitted)

        self._holds = sorted((moved(until, answered), answered) for until, answered in self._holds)

    def _held(self, now: float) -> int:
        """Released leases whose slot is still taken at ``now``."""
        return len(self._holds) - bisect.bisect_right(self._holds, (now, math.inf))

    # -- state -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Leases granted and not yet released."""
        return self._active

    @property
    def paused_until(self) -> float:
        """Loop time before which nothing is granted (in the past when not paused)."""
        return self._pacer.policy.paused_until

    @property
    def blocked_until(self) -> float:
        """Loop time until which the account is blocked (in the past when not blocked)."""
        return self._pacer.policy.blocked_until

    def remaining_holds(self) -> list[float]:
        """Seconds until each taken slot frees: held ones by their hold, active leases as if
        abandoned now (for a limiter that hands its slots over to another, as RedisLimiter does
        when Redis returns)."""
        now = self._bind().time()
        held = [until - now for until, _ in self._holds if until > now]
        return held + [self._pacer.settings.abandoned_hold] * self._active

    def hold_slots(self, seconds: list[float]) -> None:
        """Count slots taken through another limiter as held, each for so many seconds from now:
        the reverse of :meth:`remaining_holds`, for a limiter that takes over from another (as
        RedisLimiter's local fallback does when Redis fails)."""
        now = self._bind().time()
        for duration in seconds:
            if duration > 0:
                bisect.insort(self._holds, (now + duration, -math.inf))
        self._schedule()

    def share(self, now: float | None = None) -> int:
        """Slots in a window now: ``limit``, fewer for a while after 429s."""
        return self._pacer.share(self._bind().time() if now is None else now)

    def pause(self, until: float) -> None:
        """Grant nothing before loop time ``until``. A pause is never shortened."""
        self._pacer.policy.pause(until)
        self._schedule()

    def block(self, seconds: float, reason: str) -> None:
        """Block the account for ``seconds``: every waiter and every new acquire raises."""
        now = self._bind().time()
        self._pacer.policy.block(now + seconds, reason)
        self._schedule()

    # -- the machinery -----------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self.idle:
                raise RuntimeError(
                    "this SlidingWindowLimiter is in use in another event loop; create one "
                    "limiter per event loop"
                )
            self._loop = loop
        return loop

    def _grant(self, loop: asyncio.AbstractEventLoop, now: float) -> Lease:
        self._active += 1
        return Lease(self, now, loop.time)

    def _ready_at(self, now: float) -> float:
        """Earliest time the next grant may happen; ``inf`` until some lease is released."""
        holds = self._holds
        expired = bisect.bisect_right(holds, (now, math.inf))
        if expired:
            del holds[:expired]
        # Slots to free before a grant: those taken beyond share - 1.
        policy = self._pacer.policy
        excess = self._active + len(holds) - policy.share(now) + 1
        ready = policy.paused_until
        if excess > len(holds):
            return math.inf
        if excess > 0:
            ready = max(ready, holds[excess - 1][0])
        return ready

    def _schedule(self) -> None:
        """Grant every waiter that may go now, then set a timer for the next one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue = self._queue
        while queue and queue[0].done():
            queue.popleft()
        if not queue or self._loop is None:
            return
        loop = self._loop
        now = loop.time()
        policy = self._pacer.policy
        if policy.is_blocked(now):
            error = policy.blocked_error(now)
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
            return
        while queue and self._ready_at(now) <= now:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(self._grant(loop, now))
        if queue:
            ready = self._ready_at(now)
            if ready != math.inf:
                # Otherwise the next release reschedules.
                self._timer = loop.call_at(ready, self._schedule)

    def __repr__(self) -> str:
        return (
            f"SlidingWindowLimiter(limit={self.limit!r}, window={self.window!r}, "
            f"margin={self.margin!r}, max_transit={self.max_transit!r}, "
            f"hold={self.settings.hold!r}, "
            f"in_flight={self._active}, waiters={len(self._queue)})"
        )
