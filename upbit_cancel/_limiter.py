"""The account's request budget: at most ``max_rate`` requests in any window, bursting when idle."""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections import deque

from aiolimiter import AsyncLimiter

from ._errors import BlockedError
from ._models import RemainingReq

__all__ = ["SlidingWindowLimiter", "limiter_for"]


class SlidingWindowLimiter(AsyncLimiter):
    """At most ``max_rate`` grants in any window of ``time_period + margin`` seconds.

    A drop-in :class:`aiolimiter.AsyncLimiter` (``async with limiter:`` and ``await
    limiter.acquire()``), with the guarantee a strict exchange needs. aiolimiter's leaky bucket
    lets ``2 * max_rate - 1`` through in one window (a full bucket, then one drip per
    ``time_period / max_rate``); this limiter remembers its last ``max_rate`` grants and admits a
    new one only once the oldest of them is ``time_period + margin`` old. That is safe whether the
    exchange counts in fixed, sliding or token-bucket windows, and still lets ``max_rate`` requests
    out at once when idle. ``margin`` absorbs network jitter between when a request leaves and
    when the exchange counts it.

    Waiters are served first come, first served. Server feedback only ever slows it down:
    :meth:`pause`, :meth:`observe_remaining`, :meth:`rate_limited` and :meth:`block`.

    Example::

        limiter = SlidingWindowLimiter(30, 1.0)
        async with limiter:
            ...  # at most 30 of these start in any 1.04 s

    One limiter belongs to one event loop. ``UpbitSession`` shares one per account automatically
    (see :func:`limiter_for`); pass the same limiter to sessions of different keys of one account.
    """

    __slots__ = (
        "_backoff_level",
        "_block_reason",
        "_blocked_until",
        "_grants",
        "_incident_at",
        "_paused_until",
        "_queue",
        "_random",
        "_share",
        "_share_since",
        "_timer",
        "margin",
    )

    #: Extra seconds added to every window, to absorb jitter in the network and the event loop.
    margin: float

    def __init__(
        self, max_rate: int = 30, time_period: float = 1.0, *, margin: float = 0.04
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
        # Times of the last `max_rate` grants, oldest first.
        self._grants: deque[float] = deque(maxlen=max_rate)
        self._queue: deque[asyncio.Future[float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._paused_until = float("-inf")
        self._incident_at = float("-inf")
        self._blocked_until = float("-inf")
        self._block_reason = ""
        self._backoff_level = 0
        self._share = max_rate
        self._share_since = float("-inf")
        self._random = random.Random()

    @property
    def window(self) -> float:
        """The effective window: ``time_period + margin``."""
        return self.time_period + self.margin

    @property
    def paused_until(self) -> float:
        """Loop time before which nothing is granted (in the past when not paused)."""
        return self._paused_until

    @property
    def blocked_until(self) -> float:
        """Loop time until which the account is blocked (in the past when not blocked)."""
        return self._blocked_until

    def share(self, now: float | None = None) -> int:
        """How many grants a window may hold now: ``max_rate``, less after recent 429s.

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

    def _ready_at(self) -> float:
        """Earliest loop time at which the next grant may happen."""
        ready = self._paused_until
        share = self.share()
        if len(self._grants) >= share:
            ready = max(ready, self._grants[-share] + self.window)
        return ready

    def has_capacity(self, amount: float = 1) -> bool:
        """Whether a grant could happen right now without waiting."""
        now = self._loop.time()
        return (
            amount <= 1
            and not self._queue
            and now >= self._blocked_until
            and self._ready_at() <= now
        )

    async def acquire(self, amount: float = 1) -> None:
        """Wait for a grant; raise :class:`BlockedError` while the account is blocked.

        Only single grants exist (``amount`` must be 1): every request takes exactly one.
        """
        if amount != 1:
            raise ValueError("SlidingWindowLimiter grants one request at a time (amount=1)")
        await self.grant()

    async def grant(self) -> float:
        """Wait for a grant and return the loop time at which it was given.

        Raises :class:`BlockedError` while the account is blocked, including for requests that
        were already waiting when the block began.
        """
        loop = self._loop
        now = loop.time()
        self._raise_if_blocked(now)
        if not self._queue and self._ready_at() <= now:
            self._grants.append(now)
            return now
        future: asyncio.Future[float] = loop.create_future()
        self._queue.append(future)
        self._schedule()
        try:
            return await future
        except asyncio.CancelledError:
            # A grant handed to a task cancelled before it resumed stays counted: wasting it
            # errs on the safe side of the exchange's limit.
            if not future.done() or future.cancelled():
                self._discard(future)
            raise

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
        while queue and self._ready_at() <= now:
            waiter = queue.popleft()
            if not waiter.done():
                self._grants.append(now)
                waiter.set_result(now)
        if queue:
            self._timer = loop.call_at(self._ready_at(), self._schedule)

    def pause(self, until: float) -> None:
        """Grant nothing before loop time ``until``. A pause is never shortened."""
        if until > self._paused_until:
            self._paused_until = until
            self._schedule()

    def observe_remaining(self, remaining: RemainingReq, granted_at: float) -> None:
        """Apply a ``Remaining-Req`` header from a request granted at loop time ``granted_at``.

        ``sec=0`` means the exchange's window is full: pause until a whole window has passed
        since that request. When our own requests filled the window this costs nothing (the
        grant log already waits as long); when another client of the account is spending the
        budget, it keeps us from running into 429s.
        """
        if remaining.sec == 0:
            self.pause(granted_at + self.window)

    def rate_limited(self, granted_at: float) -> float:
        """Record a 429 for a request granted at ``granted_at``; pause and return the pause.

        The pause is one window, doubled for each further 429 met by requests granted after the
        previous 429 came back (concurrent requests refused by the same full window count once),
        capped at 8 windows, with up to 25 % random jitter so that clients sharing an account
        do not resume in lockstep. Each such incident also halves the :meth:`share`.
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

    def succeeded(self) -> None:
        """Record an answer that was not a 429: the backoff starts afresh next time."""
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
            f"margin={self.margin!r}, waiters={len(self._queue)})"
        )


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SlidingWindowLimiter]] = (
    weakref.WeakKeyDictionary()
)


def limiter_for(access_key: str) -> SlidingWindowLimiter:
    """The running loop's limiter for the account of ``access_key`` (30 per 1 s, the default group).

    Sessions of the same key share it. Keys of one account cannot be told apart from here: pass
    one limiter explicitly to their sessions.
    """
    loop = asyncio.get_running_loop()
    per_loop = _shared.setdefault(loop, {})
    limiter = per_loop.get(access_key)
    if limiter is None:
        limiter = per_loop[access_key] = SlidingWindowLimiter()
    return limiter
