"""The account's request budget: at most ``max_rate`` requests in any window, bursting when idle."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from types import TracebackType

from aiolimiter import AsyncLimiter

from ._errors import BlockedError
from ._models import RemainingReq

__all__ = ["SlidingWindowLimiter", "limiter_for"]


class SlidingWindowLimiter(AsyncLimiter):
    """At most ``max_rate`` requests reach the exchange in any window of ``time_period``.

    A drop-in :class:`aiolimiter.AsyncLimiter` (``async with limiter:`` and ``await
    limiter.acquire()``) with the guarantee a strict exchange needs. aiolimiter's leaky bucket
    lets ``2 * max_rate - 1`` through in one window (a full bucket, then one drip per
    ``time_period / max_rate``).

    Each grant holds a slot from the moment it is given until ``time_period + margin`` after
    the request *finished* (its answer arrived, or it failed): :meth:`release` marks the end,
    and ``async with limiter:`` calls it on exit. A new grant needs a free slot. Since the
    exchange counts a request somewhere between its grant and its end, whatever the network,
    connection set-up or event-loop delays in between, no window of ``time_period`` can hold
    more than ``max_rate`` of them, whether the exchange counts in fixed, sliding or
    token-bucket windows. An idle limiter still lets ``max_rate`` requests out at once.
    ``margin`` keeps a request that ended exactly one window ago out of the exchange's window.

    A bare ``await limiter.acquire()`` cannot know when its request ends: it counts as ended at
    once, so only ``margin`` then covers the time until the exchange counts it.

    Waiters are served first come, first served. Server feedback only ever slows it down:
    :meth:`pause`, :meth:`observe_remaining`, :meth:`rate_limited` and :meth:`block`.

    Example::

        limiter = SlidingWindowLimiter(30, 1.0)
        async with limiter:
            ...  # at most 30 of these reach the exchange in any second

    One limiter belongs to one event loop. ``UpbitSession`` shares one per account automatically
    (see :func:`limiter_for`); pass the same limiter to sessions of different keys of one account.
    """

    __slots__ = (
        "_backoff_level",
        "_block_reason",
        "_blocked_until",
        "_ended",
        "_in_flight",
        "_incident_at",
        "_paused_until",
        "_queue",
        "_random",
        "_share",
        "_share_since",
        "_timer",
        "margin",
    )

    #: Seconds a slot stays taken after ``time_period`` has passed since its request ended.
    margin: float

    def __init__(
        self, max_rate: int = 30, time_period: float = 1.0, *, margin: float = 0.01
    ) -> None:
        if not isinstance(max_rate, int) or isinstance(max_rate, bool) or max_rate < 1:
            raise ValueError(
                f"max_rate must be a positive whole number of requests, not {max_rate!r}"
            )
        if not time_period > 0:
            raise ValueError(
                f"time_period must be a positive number of seconds, not {time_period!r}"
            )
        if not margin >= 0:
            raise ValueError(f"margin must be zero or more seconds, not {margin!r}")
        super().__init__(max_rate, time_period)
        self.margin = margin
        # Grants whose request has not ended yet.
        self._in_flight = 0
        # End times of requests that ended within the last window, oldest first.
        self._ended: deque[float] = deque()
        self._queue: deque[asyncio.Future[float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._paused_until = float("-inf")
        self._blocked_until = float("-inf")
        self._block_reason = ""
        self._incident_at = float("-inf")
        self._backoff_level = 0
        self._share = max_rate
        self._share_since = float("-inf")
        self._random = random.Random()

    @property
    def window(self) -> float:
        """How long a slot stays taken after its request ended: ``time_period + margin``."""
        return self.time_period + self.margin

    @property
    def paused_until(self) -> float:
        """Loop time before which nothing is granted (in the past when not paused)."""
        return self._paused_until

    @property
    def blocked_until(self) -> float:
        """Loop time until which the account is blocked (in the past when not blocked)."""
        return self._blocked_until

    @property
    def in_flight(self) -> int:
        """Grants whose request has not been released yet."""
        return self._in_flight

    def share(self, now: float | None = None) -> int:
        """How many slots there are now: ``max_rate``, fewer after recent 429s.

        A 429 means someone else spends the account's budget too (another process, another
        key). Each 429 incident halves the share; it grows back by a tenth of ``max_rate`` per
        window without one. Without 429s it is always ``max_rate``.
        """
        limit = int(self.max_rate)
        if self._share == limit:
            return limit
        if now is None:
            now = self._loop.time()
        windows = int((now - self._share_since) / self.window)
        return min(limit, self._share + windows * max(1, limit // 10))

    def _ready_at(self, now: float) -> float:
        """Earliest loop time the next grant may happen; ``inf`` until some request ends."""
        ended = self._ended
        while ended and ended[0] <= now - self.window:
            ended.popleft()
        # Slots to free before a grant: the taken ones beyond share - 1.
        excess = self._in_flight + len(ended) - self.share(now) + 1
        ready = self._paused_until
        if excess > len(ended):
            return float("inf")
        if excess > 0:
            ready = max(ready, ended[excess - 1] + self.window)
        return ready

    def has_capacity(self, amount: float = 1) -> bool:
        """Whether a grant could happen right now without waiting."""
        now = self._loop.time()
        return (
            amount <= 1
            and not self._queue
            and now >= self._blocked_until
            and self._ready_at(now) <= now
        )

    async def acquire(self, amount: float = 1) -> None:
        """Wait for a grant whose request counts as ended at once (see the class docstring).

        Raises :class:`BlockedError` while the account is blocked. Only single grants exist
        (``amount`` must be 1): every request takes exactly one.
        """
        if amount != 1:
            raise ValueError("SlidingWindowLimiter grants one request at a time (amount=1)")
        await self.grant()
        self.release()

    async def __aenter__(self) -> None:
        await self.grant()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def grant(self) -> float:
        """Wait for a slot and return the loop time it was granted; :meth:`release` it later.

        Raises :class:`BlockedError` while the account is blocked, including for requests that
        were already waiting when the block began.
        """
        loop = self._loop
        now = loop.time()
        self._raise_if_blocked(now)
        if not self._queue and self._ready_at(now) <= now:
            self._in_flight += 1
            return now
        future: asyncio.Future[float] = loop.create_future()
        self._queue.append(future)
        self._schedule()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                # Granted, but the task was cancelled before it could send: it ends now.
                self.release()
            else:
                self._discard(future)
            raise

    def release(self) -> None:
        """Mark the end of one granted request (its answer arrived, or it failed)."""
        if self._in_flight <= 0:
            raise RuntimeError("release() without a matching grant()")
        self._in_flight -= 1
        self._ended.append(self._loop.time())
        self._schedule()

    def _discard(self, future: asyncio.Future[float]) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(future)
        self._schedule()

    def _raise_if_blocked(self, now: float) -> None:
        if now < self._blocked_until:
            raise self._blocked_error(now)

    def _blocked_error(self, now: float) -> BlockedError:
        remaining = self._blocked_until - now
        return BlockedError(
            f"the account is blocked by the exchange for another {remaining:.1f} s "
            f"({self._block_reason}); nothing is sent until the block ends",
            name="blocked",
            retry_after=remaining,
        )

    def _schedule(self) -> None:
        """Grant every waiter that may go now, then set a timer for the next one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue = self._queue
        while queue and queue[0].done():
            queue.popleft()
        if not queue:
            return
        loop = self._loop
        now = loop.time()
        if now < self._blocked_until:
            error = self._blocked_error(now)
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
            return
        while queue and self._ready_at(now) <= now:
            waiter = queue.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(now)
        if queue:
            ready = self._ready_at(now)
            if ready != float("inf"):
                # Otherwise the next release() reschedules.
                self._timer = loop.call_at(ready, self._schedule)

    def pause(self, until: float) -> None:
        """Grant nothing before loop time ``until``. A pause is never shortened."""
        if until > self._paused_until:
            self._paused_until = until
            self._schedule()

    def observe_remaining(self, remaining: RemainingReq, granted_at: float) -> None:
        """Apply a ``Remaining-Req`` header from a request granted at loop time ``granted_at``.

        ``sec=0`` means the exchange's window is full: pause until a whole window has passed
        since that request. When another client of the account is spending the budget, this
        keeps us from running into 429s; otherwise it costs little (a burst that filled the
        window waits about as long anyway).
        """
        if remaining.sec == 0:
            self.pause(granted_at + self.window)

    def rate_limited(self, granted_at: float) -> float:
        """Record a 429 for a request granted at ``granted_at``; pause and return the pause.

        The pause is one window, doubled for each further 429 met by requests granted after the
        previous 429 came back with no success in between (concurrent requests refused by the
        same full window count once), capped at 8 windows, with up to 25 % random jitter so
        that clients sharing an account do not resume in lockstep. Each such incident also
        halves the :meth:`share`.
        """
        now = self._loop.time()
        if granted_at > self._incident_at:
            self._incident_at = now
            self._backoff_level = min(self._backoff_level + 1, 4)
            self._share = max(1, self.share(now) // 2)
            self._share_since = now
        seconds = self.window * 2.0 ** (self._backoff_level - 1)
        seconds *= 1 + 0.25 * self._random.random()
        self.pause(now + seconds)
        return seconds

    def succeeded(self, granted_at: float) -> None:
        """Record an answer that was not a 429 for a request granted at ``granted_at``.

        Only requests granted after the last 429 came back reset the backoff: answers to
        requests that were already on their way say nothing about the pause.
        """
        if granted_at > self._incident_at:
            self._backoff_level = 0

    def block(self, seconds: float, reason: str) -> None:
        """Block the account for ``seconds``: every waiter and every new acquire raises."""
        now = self._loop.time()
        until = now + seconds
        if until > self._blocked_until:
            self._blocked_until = until
            self._block_reason = reason
        self.pause(until)
        self._schedule()

    def __repr__(self) -> str:
        return (
            f"SlidingWindowLimiter(max_rate={self.max_rate!r}, time_period={self.time_period!r}, "
            f"margin={self.margin!r}, in_flight={self._in_flight}, waiters={len(self._queue)})"
        )


# Keyed by id(loop): a limiter holds its loop, so a weak mapping keyed by the loop would never
# let go of it. Closed loops are dropped on the next call.
_shared: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, SlidingWindowLimiter]]] = {}


def limiter_for(access_key: str) -> SlidingWindowLimiter:
    """The running loop's limiter for the account of ``access_key`` (30 per 1 s, the default group).

    Sessions of the same key share it. Keys of one account cannot be told apart from here: pass
    one limiter explicitly to their sessions.
    """
    loop = asyncio.get_running_loop()
    for key in [key for key, (other, _) in _shared.items() if other.is_closed()]:
        del _shared[key]
    per_loop = _shared.setdefault(id(loop), (loop, {}))[1]
    limiter = per_loop.get(access_key)
    if limiter is None:
        limiter = per_loop[access_key] = SlidingWindowLimiter()
    return limiter
