"""Rate-limit policies of the fake exchange, as pure classes.

Upbit documents "30 calls per second" for the ``default`` group but not *how* the second is
measured. The fake therefore offers three readings of that sentence:

- :class:`SlidingWindowPolicy`: at most ``limit`` admitted in *any* window of ``window`` seconds.
- :class:`FixedWindowPolicy`: a window starts at the first request and lasts ``window`` seconds;
  the next one starts at the first request after it ends.
- :class:`TokenBucketPolicy`: a bucket of ``limit`` tokens refilled continuously at
  ``limit / window`` per second. It admits up to ``2 * limit - 1`` in some windows.

A client that never sends more than ``limit`` requests in any window of ``window`` seconds is
admitted in full by all three.

The classes hold no clock: the caller passes the time of each call, and times must not decrease
from one call to the next. Refused requests never consume budget.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

__all__ = [
    "FixedWindowPolicy",
    "PolicyName",
    "RatePolicy",
    "SlidingWindowPolicy",
    "TokenBucketPolicy",
    "make_policy",
]

#: The names accepted by :func:`make_policy` and ``FakeUpbit(policy=...)``.
PolicyName = Literal["sliding", "fixed", "bucket"]


class RatePolicy(Protocol):
    """What the fake asks of a rate-limit policy."""

    @property
    def limit(self) -> int:
        """Requests allowed per window."""
        ...

    @property
    def window(self) -> float:
        """Length of the window in seconds."""
        ...

    def admit(self, now: float) -> bool:
        """Count a request arriving at *now*; return whether it is admitted."""
        ...

    def remaining(self, now: float) -> int:
        """How many more requests would be admitted at *now* (the ``sec`` of ``Remaining-Req``)."""
        ...


def _check(limit: int, window: float) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not 0 < window < math.inf:
        raise ValueError(f"window must be a positive number of seconds, got {window}")


class SlidingWindowPolicy:
    """Admit a request iff fewer than ``limit`` were admitted in ``(now - window, now]``.

    >>> policy = SlidingWindowPolicy(2, 1.0)
    >>> [policy.admit(t) for t in (0.0, 0.1, 0.5, 1.0, 1.05)]
    [True, True, False, True, False]
    """

    __slots__ = ("_admitted", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        _check(limit, window)
        #: Requests allowed in any window.
        self.limit = limit
        #: Window length in seconds.
        self.window = window
        self._admitted: deque[float] = deque()

    def _expire(self, now: float) -> None:
        # An arrival at t stops counting once ``now - t >= window``: the window is half-open,
        # so exactly ``limit`` fit in any [s, s + window).
        admitted = self._admitted
        while admitted and now - admitted[0] >= self.window:
            admitted.popleft()

    def admit(self, now: float) -> bool:
        """Count a request arriving at *now*; return whether it is admitted."""
        self._expire(now)
        if len(self._admitted) >= self.limit:
            return False
        self._admitted.append(now)
        return True

    def remaining(self, now: float) -> int:
        """How many more requests would be admitted at *now*."""
        self._expire(now)
        return self.limit - len(self._admitted)

    def __repr__(self) -> str:
        return f"SlidingWindowPolicy(limit={self.limit}, window={self.window})"


class FixedWindowPolicy:
    """Windows of ``window`` seconds, each anchored at the first request after the previous one.

    >>> policy = FixedWindowPolicy(2, 1.0)
    >>> [policy.admit(t) for t in (0.5, 0.6, 1.4, 1.5, 1.6)]
    [True, True, False, True, True]
    """

    __slots__ = ("_anchor", "_count", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        _check(limit, window)
        #: Requests allowed per window.
        self.limit = limit
        #: Window length in seconds.
        self.window = window
        self._anchor: float | None = None
        self._count = 0

    def _expired(self, now: float) -> bool:
        return self._anchor is None or now - self._anchor >= self.window

    def admit(self, now: float) -> bool:
        """Count a request arriving at *now*; return whether it is admitted."""
        if self._expired(now):
            self._anchor = now
            self._count = 0
        if self._count >= self.limit:
            return False
        self._count += 1
        return True

    def remaining(self, now: float) -> int:
        """How many more requests would be admitted at *now*."""
        if self._expired(now):
            return self.limit
        return self.limit - self._count

    def __repr__(self) -> str:
        return f"FixedWindowPolicy(limit={self.limit}, window={self.window})"


class TokenBucketPolicy:
    """A bucket of ``limit`` tokens, refilled continuously at ``limit / window`` per second.

    It starts full, so an idle bucket admits ``limit`` requests at once.

    >>> policy = TokenBucketPolicy(2, 1.0)
    >>> [policy.admit(t) for t in (0.0, 0.0, 0.0, 0.5, 0.5)]
    [True, True, False, True, False]
    """

    __slots__ = ("_last", "_tokens", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        _check(limit, window)
        #: Bucket capacity.
        self.limit = limit
        #: Time to refill an empty bucket, in seconds.
        self.window = window
        self._tokens = float(limit)
        self._last: float | None = None

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.limit / self.window

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.limit), self._tokens + (now - self._last) * self.rate)
        self._last = now if self._last is None else max(self._last, now)

    def admit(self, now: float) -> bool:
        """Count a request arriving at *now*; return whether it is admitted."""
        self._refill(now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def remaining(self, now: float) -> int:
        """How many more requests would be admitted at *now*."""
        self._refill(now)
        return math.floor(self._tokens)

    def __repr__(self) -> str:
        return f"TokenBucketPolicy(limit={self.limit}, window={self.window})"


_POLICIES: dict[str, type[SlidingWindowPolicy | FixedWindowPolicy | TokenBucketPolicy]] = {
    "sliding": SlidingWindowPolicy,
    "fixed": FixedWindowPolicy,
    "bucket": TokenBucketPolicy,
}


def make_policy(name: PolicyName, limit: int, window: float) -> RatePolicy:
    """Build the policy called *name* (``"sliding"``, ``"fixed"`` or ``"bucket"``)."""
    try:
        policy_class = _POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r}; expected one of {', '.join(_POLICIES)}"
        ) from None
    return policy_class(limit, window)
