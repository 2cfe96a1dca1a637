"""What the exchange's answers do to the account's pace: pauses, backoff, share and blocks.

One object reads every answer's :class:`Feedback` and keeps the resulting state, as plain
arithmetic on the times it is given (no clock, no event loop), so any limiter can compose it.
Feedback only ever slows the account down:

- ``Remaining-Req: sec=0`` while this client holds less than its share: someone else spends the
  budget and the exchange's window is full; grant nothing until a window after the request
  that saw it. (When the client's own requests fill the window, ``sec=0`` says nothing new.)
- 429: someone else spends the account's budget too (another process, another key). Pause the
  whole account for a window, doubling for each further 429 incident, with jitter so that
  clients of one account do not resume in lockstep; and halve the share of a window used,
  growing back by a tenth of the limit per window without a 429.
- 418: the account is blocked; nothing is granted or sent until the block ends.
"""

from __future__ import annotations

import logging
import random

from ._errors import BlockedError
from ._models import Feedback
from ._responses import DEFAULT_BLOCK_SECONDS

__all__ = ["FeedbackPolicy"]

_MAX_BACKOFF_LEVEL = 4
_log = logging.getLogger("upbit_cancel")


class FeedbackPolicy:
    """The account's pace as the exchange's answers shape it.

    ``unit`` is the length of one pause step: the limiter's window plus its margin.
    """

    __slots__ = (
        "_backoff_level",
        "_incident_at",
        "_random",
        "_share",
        "_share_since",
        "block_reason",
        "blocked_until",
        "limit",
        "paused_until",
        "unit",
    )

    #: Requests per window without any feedback.
    limit: int
    #: Seconds of one pause step.
    unit: float
    #: Time before which nothing is granted (in the past when not paused).
    paused_until: float
    #: Time until which the account is blocked (in the past when not blocked).
    blocked_until: float
    #: The exchange's explanation of the current block.
    block_reason: str

    def __init__(self, limit: int, unit: float, *, rng: random.Random | None = None) -> None:
        self.limit = limit
        self.unit = unit
        self.paused_until = float("-inf")
        self.blocked_until = float("-inf")
        self.block_reason = ""
        self._incident_at = float("-inf")
        self._backoff_level = 0
        self._share = limit
        self._share_since = float("-inf")
        self._random = rng or random.Random()

    def share(self, now: float) -> int:
        """How many slots there are at ``now``: ``limit``, fewer after recent 429s."""
        if self._share == self.limit:
            return self.limit
        windows = int((now - self._share_since) / self.unit)
        return min(self.limit, self._share + windows * max(1, self.limit // 10))

    def pause(self, until: float) -> None:
        """Grant nothing before ``until``. A pause is never shortened."""
        self.paused_until = max(self.paused_until, until)

    def block(self, until: float, reason: str) -> None:
        """Block the account until ``until``. A block is never shortened."""
        if until > self.blocked_until:
            self.blocked_until = until
            self.block_reason = reason
        self.pause(until)

    def learn(
        self, feedback: Feedback, *, granted_at: float, now: float, own_full: bool = False
    ) -> None:
        """Apply one answer's feedback, for a request granted at ``granted_at``.

        ``own_full``: the client's own requests take its whole share of the window now.
        """
        remaining = feedback.remaining
        if (
            remaining is not None
            and remaining.group == "default"
            and remaining.sec == 0
            and not own_full
        ):
            self.pause(granted_at + self.unit)
        if feedback.status == 429:
            self._rate_limited(granted_at, now)
        elif feedback.status == 418:
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
            self.block(now + seconds, reason)
        elif granted_at > self._incident_at:
            # Only requests granted after the last 429 came back say the pause worked.
            self._backoff_level = 0

    def _rate_limited(self, granted_at: float, now: float) -> None:
        # Concurrent requests refused by the same full window are one incident: only a request
        # granted after the previous 429 came back starts a new one.
        incident = granted_at > self._incident_at
        if incident:
            self._incident_at = now
            self._backoff_level = min(self._backoff_level + 1, _MAX_BACKOFF_LEVEL)
            self._share = max(1, self.share(now) // 2)
            self._share_since = now
        seconds = self.unit * 2.0 ** (self._backoff_level - 1)
        seconds *= 1 + 0.25 * self._random.random()
        if incident:
            _log.warning(
                "429: another client is spending the account's budget; pausing %.2f s, then "
                "%d requests a window for a while",
                seconds,
                self._share,
            )
        self.pause(now + seconds)

    def is_blocked(self, now: float) -> bool:
        """Whether the account is blocked at ``now``."""
        return now < self.blocked_until

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
