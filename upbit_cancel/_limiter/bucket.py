"""``aiolimiter.AsyncLimiter`` as a :class:`Limiter`: the design's token bucket, for those who ask.

A token bucket of ``max_rate`` per ``time_period`` lets up to ``2 * max_rate - 1`` requests
through in one window (a full bucket, then one drip per ``time_period / max_rate``), and it frees
a token by the clock, not when a request has arrived: abandoned requests are not held. Against
an exchange that counts in strict windows, it can trip the limit. It suits an exchange whose
window is known to be a token bucket, or a user who sets a bucket small enough for the worst case
(such as ``AsyncLimiter(15, 1)``). Server feedback (429 pauses, 418 blocks) still slows it down.
"""

from __future__ import annotations

import asyncio
import random

from aiolimiter import AsyncLimiter

from .contract import Lease
from .core import Pacer, Settings

__all__ = ["TokenBucketLimiter"]


class TokenBucketLimiter:
    """Wraps an ``aiolimiter.AsyncLimiter``; ``UpbitSession(limiter=AsyncLimiter(...))`` uses it."""

    __slots__ = ("__weakref__", "_active", "_pacer", "bucket")

    #: The wrapped token bucket.
    bucket: AsyncLimiter

    def __init__(self, bucket: AsyncLimiter, *, rng: random.Random | None = None) -> None:
        self.bucket = bucket
        self._active = 0
        # The bucket frees its tokens by the clock: only the feedback rules apply, paced in
        # steps of its period.
        settings = Settings(self.capacity, float(bucket.time_period), margin=0.0)
        self._pacer = Pacer(settings, rng=rng)

    @property
    def capacity(self) -> int:
        """The bucket's ``max_rate``, as a whole number of requests (at least 1)."""
        return max(1, int(self.bucket.max_rate))

    @property
    def idle(self) -> bool:
        """Whether no lease is active and the bucket is full."""
        if self._active:
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return True  # the bucket reads the running loop's clock; outside one, nothing runs
        return self.bucket.has_capacity(self.bucket.max_rate)

    async def acquire(self) -> Lease:
        """Wait out any pause, then for a token; raises :class:`BlockedError` while blocked."""
        loop = asyncio.get_running_loop()
        policy = self._pacer.policy
        while True:
            now = loop.time()
            policy.check_grant(now)
            if now >= policy.paused_until:
                break
            await asyncio.sleep(policy.paused_until - now)
        await self.bucket.acquire()
        now = loop.time()
        policy.check_grant(now)
        self._active += 1
        return Lease(self, now, loop.time)

    def try_acquire(self) -> Lease | None:
        """Always ``None``: the bucket only hands out tokens by awaiting."""
        self._pacer.check_grant(asyncio.get_running_loop().time())
        return None

    def departing(self, lease: Lease) -> None:
        """Refuse a request about to leave while the account is blocked."""
        self._pacer.check_departure(asyncio.get_running_loop().time())

    def observe_handshake(self, started: float, completed: float, round_trips: int) -> None:
        """Learn the path's floor from a handshake (see :class:`PathAware`)."""
        self._pacer.observe_handshake(started, completed, round_trips)

    def release(self, lease: Lease) -> None:
        """Learn from the answer; the bucket itself refills by the clock."""
        self._active -= 1
        self._pacer.release(lease, asyncio.get_running_loop().time())

    def __repr__(self) -> str:
        bucket = self.bucket
        return f"TokenBucketLimiter(AsyncLimiter({bucket.max_rate!r}, {bucket.time_period!r}))"
