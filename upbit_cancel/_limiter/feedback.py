"""What the exchange's answers do to the account's pace: pauses, backoff, share and blocks.

One object reads every answer's :class:`Feedback`, keeps the resulting state and returns what
changed as a :class:`Decision`, as plain arithmetic on the times it is given (no clock, no event
loop), so that every backend applies the same rules and a shared one (Redis) only stores what
was decided. Feedback only ever slows the account down:

- ``Remaining-Req: sec=0`` of the limiter's own group while this client holds less than its
  share: someone else spends the budget and the exchange's window is full; grant nothing until
  a window after the request that saw it. (When the client's own requests fill the window,
  ``sec=0`` says nothing new.)
- 429: someone else spends the account's budget too (another process, another key). Pause the
  whole account for a window, doubling for each further 429 incident, with jitter so that
  clients of one account do not resume in lockstep; and halve the share of a window used,
  growing back by a tenth of the limit per window without a 429 (:func:`regrowth`).
- 418: the account is blocked; nothing is granted or sent until the block ends.
"""

from __future__ import annotations

import bisect
import math
import random

import attrs

from .._errors import BlockedError
from .._log import log as _log
from .contract import Feedback

__all__ = [
    "DEFAULT_BLOCK_SECONDS",
    "NO_CHANGE",
    "Decision",
    "FeedbackPolicy",
    "ShareSteps",
    "regrowth",
    "share_at",
]

#: How long a 418 blocks when neither its message nor a ``Retry-After`` header says.
DEFAULT_BLOCK_SECONDS = 60.0

_MAX_BACKOFF_LEVEL = 4

#: The share of the budget over time: ``(from, slots)`` steps in time order, the last one at the
#: full limit; empty when the share is the full limit.
ShareSteps = tuple[tuple[float, int], ...]


def regrowth(share: int, *, limit: int, since: float, unit: float) -> ShareSteps:
    """A share of ``share`` slots at ``since`` growing back to ``limit``: a tenth of the limit
    (at least one slot) more after each ``unit`` without a 429."""
    step = max(1, limit // 10)
    windows = math.ceil(max(0, limit - share) / step)
    return tuple((since + k * unit, min(limit, share + k * step)) for k in range(windows + 1))


@attrs.frozen
class Decision:
    """What one answer changed in the account's pace; times on the caller's clock.

    ``None`` and empty fields changed nothing. A pause or block is never shortened, so only a
    new or longer one shows here.
    """

    #: Nothing is granted before this time.
    pause_until: float | None = None
    #: The account is blocked until this time, for :attr:`block_reason`.
    block_until: float | None = None
    #: The exchange's explanation of the block.
    block_reason: str = ""
    #: The new share of the budget, from now on (see :data:`ShareSteps`).
    share: ShareSteps = ()
    #: The budget was overrun (a 429): what the client believed of its path may be wrong.
    forget_path: bool = False


#: An answer that changed nothing.
NO_CHANGE = Decision()


class FeedbackPolicy:
    """The account's pace as the exchange's answers shape it.

    ``unit`` is the length of one pause step: the limiter's window plus its margin. ``group`` is
    the rate-limit group whose ``Remaining-Req`` header this policy reads.
    """

    __slots__ = (
        "_backoff_level",
        "_incident_at",
        "_random",
        "_share",
        "block_reason",
        "blocked_until",
        "group",
        "limit",
        "paused_until",
        "unit",
    )

    #: Requests per window without any feedback.
    limit: int
    #: Seconds of one pause step.
    unit: float
    #: The rate-limit group this policy paces.
    group: str
    #: Time before which nothing is granted (in the past when not paused).
    paused_until: float
    #: Time until which the account is blocked (in the past when not blocked).
    blocked_until: float
    #: The exchange's explanation of the current block.
    block_reason: str

    def __init__(
        self,
        limit: int,
        unit: float,
        *,
        group: str = "default",
        rng: random.Random | None = None,
    ) -> None:
        self.limit = limit
        self.unit = unit
        self.group = group
        self.paused_until = -math.inf
        self.blocked_until = -math.inf
        self.block_reason = ""
        self._incident_at = -math.inf
        self._backoff_level = 0
        self._share: ShareSteps = ()
        self._random = rng or random.Random()

    def share(self, now: float) -> int:
        """How many slots there are at ``now``: ``limit``, fewer after recent 429s."""
        return share_at(self._share, now, self.limit)

    def lower_share(self, share: int, now: float) -> ShareSteps:
        """Take a share of ``share`` slots at ``now`` if that is fewer than this policy's own (a
        share another process of the account set); returns the new steps, or ``()``."""
        if share >= self.share(now):
            return ()
        self._share = regrowth(share, limit=self.limit, since=now, unit=self.unit)
        return self._share

    def pause(self, until: float) -> float | None:
        """Grant nothing before ``until``; returns ``until`` if it lengthened the pause."""
        if until <= self.paused_until:
            return None
        self.paused_until = until
        return until

    def block(self, until: float, reason: str) -> float | None:
        """Block the account until ``until``; returns ``until`` if it lengthened the block."""
        self.pause(until)
        if until <= self.blocked_until:
            return None
        self.blocked_until = until
        self.block_reason = reason
        return until

    def learn(
        self, feedback: Feedback, *, granted_at: float, now: float, own_full: bool = False
    ) -> Decision:
        """Apply one answer's feedback, for a request granted at ``granted_at``.

        ``own_full``: the client's own requests take its whole share of the window now.
        """
        remaining = feedback.remaining
        pause_until: float | None = None
        if (
            remaining is not None
            and remaining.group == self.group
            and remaining.sec == 0
            and not own_full
        ):
            pause_until = self.pause(granted_at + self.unit)
        if feedback.status == 429:
            return self._rate_limited(granted_at, now, pause_until)
        if feedback.status == 418:
            seconds = feedback.block_seconds
            if seconds is None:
                seconds = DEFAULT_BLOCK_SECONDS
            reason = feedback.block_reason or "HTTP 418"
            if not self.is_blocked(now):
                _log.warning(
                    "the exchange blocked the account (%s); nothing is sent for %.1f s",
                    reason,
                    seconds,
                )
            block_until = self.block(now + seconds, reason)
            if block_until is None:
                return Decision(pause_until=pause_until)
            return Decision(
                pause_until=block_until, block_until=block_until, block_reason=self.block_reason
            )
        if granted_at > self._incident_at:
            # Only requests granted after the last 429 came back say the pause worked.
            self._backoff_level = 0
        return NO_CHANGE if pause_until is None else Decision(pause_until=pause_until)

    def _rate_limited(self, granted_at: float, now: float, pause_until: float | None) -> Decision:
        # Concurrent requests refused by the same full window are one incident: only a request
        # granted after the previous 429 came back starts a new one.
        incident = granted_at > self._incident_at
        share: ShareSteps = ()
        if incident:
            self._incident_at = now
            self._backoff_level = min(self._backoff_level + 1, _MAX_BACKOFF_LEVEL)
            halved = max(1, self.share(now) // 2)
            share = self._share = regrowth(halved, limit=self.limit, since=now, unit=self.unit)
        seconds = self.unit * 2.0 ** (self._backoff_level - 1)
        seconds *= 1 + 0.25 * self._random.random()
        if incident:
            _log.warning(
                "429: another client is spending the account's budget; pausing %.2f s, then "
                "%d requests a window for a while",
                seconds,
                self.share(now),
            )
        longer = self.pause(now + seconds)
        return Decision(
            pause_until=longer if longer is not None else pause_until,
            share=share,
            forget_path=True,
        )

    def is_blocked(self, now: float) -> bool:
        """Whether the account is blocked at ``now``."""
        return now < self.blocked_until

    def check_grant(self, now: float) -> None:
        """Raise :class:`BlockedError` for a request asking for a slot during a block."""
        if self.is_blocked(now):
            raise self.blocked_error(now)

    def check_departure(self, now: float) -> None:
        """Raise :class:`BlockedError` for a request about to leave during a block.

        The block may have begun after the request's grant (another request met a 418).
        """
        if self.is_blocked(now):
            raise self.blocked_error(
                now, detail="; this request, granted before the block, was not sent"
            )

    def blocked_error(self, now: float, *, detail: str = "") -> BlockedError:
        """The error for a request refused at ``now`` because of the block."""
        remaining = self.blocked_until - now
        return BlockedError(
            f"the account is blocked by the exchange for another {remaining:.1f} s "
            f"({self.block_reason}); nothing is sent until the block ends{detail}",
            name="blocked",
            retry_after=remaining,
        )


def share_at(steps: ShareSteps, now: float, limit: int) -> int:
    """The share that ``steps`` give at ``now`` (``limit`` once they are over)."""
    if not steps or now >= steps[-1][0]:
        return limit
    index = bisect.bisect_right(steps, (now, math.inf)) - 1
    return steps[max(index, 0)][1]
