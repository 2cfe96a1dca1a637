"""The rules every limiter applies, written once: its settings, and what an ended lease means.

A backend keeps slots (in this process, in Redis); what it does with a lease that ends is not
its own business. :class:`Pacer` reads the lease's times and answer, learns the path
(``path``), applies the answer's feedback (``feedback``) and the hold rule (``hold``), and
returns a :class:`Release`: until when the slot stays taken, and what changed for the account.
The backend stores that, and nothing else. No I/O and no event loop here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import attrs

from .._check import seconds, whole_number
from .contract import Lease
from .feedback import NO_CHANGE, Decision, FeedbackPolicy
from .hold import hold_until
from .path import PathObserver

__all__ = ["GROUPS", "HANDSHAKE_HORIZON", "HoldRule", "Paced", "Pacer", "Release", "Settings"]

#: Seconds a handshake's round trip counts towards the path's floor: a warm session probes the
#: path every 20 s (see ``UpbitSession.warm_up``).
HANDSHAKE_HORIZON = 60.0

#: How an answered request's slot is held: until a window after its latest possible arrival
#: (``"arrival"``), or a window after its answer (``"answer"``).
HoldRule = Literal["arrival", "answer"]

#: Upbit's rate-limit groups that this library sends requests in, with their limit and window
#: in seconds (per account, per pocket since 2026-06-25).
GROUPS: Mapping[str, tuple[int, float]] = MappingProxyType(
    {"default": (30, 1.0), "order-cancel-all": (1, 2.0)}
)


@attrs.frozen
class Settings:
    """A limiter's settings, checked once by :meth:`checked` whatever the backend."""

    #: Requests allowed per window.
    limit: int
    #: Length of the window, in seconds.
    window: float
    #: Seconds added to every hold, for clock granularity at the exchange.
    margin: float = 0.01
    #: Longest time, in seconds, a request may take to reach the exchange after it left.
    max_transit: float = 2.0
    #: How an answered request's slot is held.
    hold: HoldRule = "arrival"

    @classmethod
    def checked(
        cls,
        limit: object,
        window: object,
        *,
        margin: object = 0.01,
        max_transit: object = 2.0,
        hold: object = "arrival",
    ) -> Settings:
        """Settings from a caller's arguments, or a ``TypeError``/``ValueError`` saying what to
        pass instead."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be a whole number of requests, not {limit!r}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1 request, not {limit!r}")
        if hold not in ("arrival", "answer"):
            raise ValueError(f"hold must be 'arrival' or 'answer', not {hold!r}")
        return cls(
            limit=limit,
            window=seconds("window", window),
            margin=seconds("margin", margin, zero=True),
            max_transit=seconds("max_transit", max_transit, zero=True),
            hold=hold,
        )

    @property
    def unit(self) -> float:
        """A window plus the margin: the shortest any slot is held after an answer."""
        return self.window + self.margin

    @property
    def abandoned_hold(self) -> float:
        """How long after its lease ends the slot of a request that left and got no answer
        stays taken: it may still arrive for ``max_transit``, then counts for a window."""
        return self.max_transit + self.window + self.margin

    def with_limit(self, limit: int) -> Settings:
        """The same settings with another limit (a smaller share, for a fallback)."""
        return attrs.evolve(self, limit=whole_number("limit", limit, least=1))


@attrs.frozen
class Release:
    """What one ended lease means for the budget, as :meth:`Pacer.release` decides it."""

    #: When the slot is free again (the time of release if at once).
    until: float
    #: When its answer arrived, or ``None`` if none did.
    answered_at: float | None
    #: The path floor this hold subtracted from its answer's time, or ``None`` if it did not.
    floor: float | None
    #: The path floor known now (``None``: not known, or ``hold="answer"``).
    estimate: float | None
    #: What the answer changed in the account's pace.
    decision: Decision = NO_CHANGE


class Pacer:
    """The rules of one rate-limit group's budget, as every backend applies them.

    It owns the account's pace (:class:`FeedbackPolicy`) and what this process knows of its
    path (:class:`PathObserver`); a backend asks it whether a grant or a departure may happen
    and what a released lease holds.
    """

    __slots__ = ("group", "handshakes", "path", "policy", "settings", "trust_handshakes")

    #: The settings.
    settings: Settings
    #: The rate-limit group, such as ``"default"``.
    group: str
    #: The account's pace: pauses, blocks and share.
    policy: FeedbackPolicy
    #: What this process's answered requests say of its path.
    path: PathObserver
    #: What this process's handshakes (a session's warm-up) say of its path.
    handshakes: PathObserver

    def __init__(
        self, settings: Settings, *, group: str = "default", rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.group = group
        self.policy = FeedbackPolicy(settings.limit, settings.unit, group=group, rng=rng)
        self.path = PathObserver(span=settings.window, horizon=max(5.0, 5 * settings.window))
        # Handshakes are round trips of the bare path (no request waits behind another in a
        # handshake), so no span is needed; a warm session refreshes them well within a minute.
        self.handshakes = PathObserver(span=0.0, needed=3, horizon=HANDSHAKE_HORIZON)
        #: Whether handshakes may say the floor (not after a 429 said a floor was wrong).
        self.trust_handshakes = True

    def share(self, now: float) -> int:
        """Slots in a window at ``now``: ``limit``, fewer for a while after 429s."""
        return self.policy.share(now)

    def check_grant(self, now: float) -> None:
        """Raise :class:`BlockedError` if no slot may be granted at ``now`` (a block)."""
        self.policy.check_grant(now)

    def check_departure(self, now: float) -> None:
        """Raise :class:`BlockedError` if a granted request may not leave at ``now``."""
        self.policy.check_departure(now)

    def estimate(self, now: float) -> float | None:
        """The path floor holds may subtract at ``now`` (``None``: none): what the requests
        say once they say something (they are the path the budget counts), else what the
        handshakes say."""
        if self.settings.hold != "arrival":
            return None
        estimate = self.path.estimate(now)
        if estimate is None and self.trust_handshakes:
            estimate = self.handshakes.estimate(now)
        return None if estimate is None else estimate.floor

    def observe_handshake(self, started: float, completed: float, round_trips: int) -> None:
        """Learn from a handshake of ``round_trips`` round trips: one round trip's share of it
        is a sample of the path, as a request's round trip is."""
        if round_trips < 1 or completed < started:
            return
        trip = (completed - started) / round_trips
        self.handshakes.observe(completed - trip, completed)

    def release(self, lease: Lease, now: float, *, own_full: bool = False) -> Release:
        """Learn from ``lease``, released at ``now``, and decide how long its slot is held.

        ``own_full``: this process's own requests take its whole share of the window now (then
        ``Remaining-Req: sec=0`` says nothing new).
        """
        sent_at, answered_at = lease.sent_at, lease.answered_at
        if sent_at is not None and answered_at is not None:
            self.path.observe(sent_at, answered_at)
        decision = NO_CHANGE
        if lease.feedback is not None:
            decision = self.policy.learn(
                lease.feedback, granted_at=lease.granted_at, now=now, own_full=own_full
            )
            if decision.forget_path:
                # The budget was overrun: the estimate may be wrong (the path got faster).
                self.path.forget()
                self.handshakes.forget()
                # And no handshake is trusted again: only requests, which the budget counts.
                self.trust_handshakes = False
        estimate = self.estimate(now)
        settings = self.settings
        until = hold_until(
            sent_at=sent_at,
            answered_at=answered_at,
            released_at=now,
            window=settings.window,
            margin=settings.margin,
            max_transit=settings.max_transit,
            floor=estimate,
        )
        subtracted = estimate if sent_at is not None and answered_at is not None else None
        return Release(until, answered_at, subtracted, estimate, decision)

    def longest_hold(self, lease: Lease, now: float) -> float:
        """Until when ``lease``'s slot may stay taken at the longest, whatever the path."""
        settings = self.settings
        return hold_until(
            sent_at=lease.sent_at,
            answered_at=lease.answered_at,
            released_at=now,
            window=settings.window,
            margin=settings.margin,
            max_transit=settings.max_transit,
        )


class Paced:
    """The settings of a limiter that paces its budget with a :class:`Pacer`, read from it."""

    __slots__ = ()

    _pacer: Pacer

    @property
    def settings(self) -> Settings:
        """The limit, window, margin, ``max_transit`` and hold rule."""
        return self._pacer.settings

    @property
    def limit(self) -> int:
        """Requests allowed per window (for every process that shares the budget)."""
        return self._pacer.settings.limit

    @property
    def window(self) -> float:
        """Length of the window, in seconds."""
        return self._pacer.settings.window

    @property
    def margin(self) -> float:
        """Seconds added to every hold."""
        return self._pacer.settings.margin

    @property
    def max_transit(self) -> float:
        """Longest time, in seconds, a request may take to reach the exchange after it left."""
        return self._pacer.settings.max_transit

    @property
    def hold(self) -> HoldRule:
        """How an answered request's slot is held (``"arrival"`` or ``"answer"``)."""
        return self._pacer.settings.hold
