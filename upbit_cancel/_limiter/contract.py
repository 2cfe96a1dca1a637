"""The limiter contract: what the session asks of an account's request budget, and what it tells.

A limiter hands out :class:`Lease` objects, one per request. The lease records when its request
left, whether an answer came back and what that answer said; when the lease is released, the
limiter decides how long the request's slot stays taken. The promise every limiter keeps, for
requests that hold a lease: at most ``capacity`` of them reach the exchange in any window,
counting requests that were abandoned but may still arrive.

Callers never pair calls by hand: they get a lease from :meth:`Limiter.acquire` and end it with
``with lease:`` (or :meth:`Lease.release`), whatever happens in between::

    lease = await limiter.acquire()
    with lease:
        lease.sending()                 # raises BlockedError if the account was blocked meanwhile
        status = await send_the_request()
        lease.answered(Feedback(status))

A lease released without :meth:`Lease.answered` after :meth:`Lease.sending` counts as abandoned:
its request may still be on its way, and its slot is held until it can no longer arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

import attrs

__all__ = [
    "AccountBound",
    "Feedback",
    "HandsOver",
    "Lease",
    "LeaseExpiredError",
    "Limiter",
    "Outcome",
    "PathAware",
    "RemainingReq",
]


@attrs.frozen
class RemainingReq:
    """The ``Remaining-Req`` header: calls left in the current window of a rate-limit group."""

    #: The rate-limit group, such as ``"default"``.
    group: str
    #: Calls left in the current second.
    sec: int
    #: Calls left in the current minute (deprecated by Upbit and fixed; ``None`` when absent).
    min: int | None = None


@attrs.frozen
class Feedback:
    """What an answer tells the limiter about the account's budget.

    A limiter reads it when a lease ends: a 429 slows the account down, a 418 blocks it,
    ``Remaining-Req`` may pause it; nothing here ever lets it go faster.
    """

    #: HTTP status of the answer.
    status: int
    #: The ``Remaining-Req`` header, when the answer carried a readable one.
    remaining: RemainingReq | None = None
    #: How long the exchange blocks the account, in seconds (for a 418).
    block_seconds: float | None = None
    #: The exchange's explanation of a block (for a 418), redacted.
    block_reason: str = ""


class LeaseExpiredError(Exception):
    """Raised by :meth:`Limiter.departing` when a lease was granted too long ago for its slot to
    be counted still (a shared budget's lease lapses): its request must not leave; acquire
    another lease for it. Never raised by an in-process limiter."""


#: How a lease's request ended: an answer came back, it certainly never left, or it left and
#: no answer came back (it may still reach the exchange).
Outcome = Literal["answered", "not_sent", "abandoned"]


@runtime_checkable
class Limiter(Protocol):
    """One rate-limit group's budget of an account, as the session uses it.

    Implementations: :class:`SlidingWindowLimiter` (in this process), ``RedisLimiter`` (shared
    through Redis), and an adapter for ``aiolimiter.AsyncLimiter``; each composes the rules of
    ``_limiter.core`` and differs only in where its slots live.
    """

    @property
    def capacity(self) -> int:
        """Requests the limiter lets out per window when idle (sizes a batch's workers)."""
        ...

    @property
    def idle(self) -> bool:
        """Whether no lease is active, none is awaited, and no slot is still held.

        Cheap and safe outside an event loop: ``isinstance`` checks may read it.
        """
        ...

    async def acquire(self) -> Lease:
        """Wait for a slot and return its lease; raise :class:`BlockedError` while blocked."""
        ...

    def try_acquire(self) -> Lease | None:
        """A lease at once if one is free and nobody waits, else ``None`` (then :meth:`acquire`).

        Raises :class:`BlockedError` while blocked. A backend that cannot tell without waiting
        (a remote store) returns ``None``.
        """
        ...

    def departing(self, lease: Lease) -> None:
        """The lease's request is about to leave; raise :class:`BlockedError` to stop it."""
        ...

    def release(self, lease: Lease) -> None:
        """The lease ended (called once, by :meth:`Lease.release`): learn and free its slot."""
        ...


@runtime_checkable
class AccountBound(Protocol):
    """A limiter whose budget lives outside the process and is keyed by the account.

    The session tells it whose budget it is when it first uses it, and asks it for the budget
    of the account's other rate-limit groups, kept in the same place.
    """

    def bind(self, access_key: str) -> None:
        """Key the budget by this access key, unless the limiter was given an account name."""
        ...

    def for_group(self, group: str) -> Limiter:
        """The same account's budget for another rate-limit group (one limiter per group)."""
        ...


@runtime_checkable
class PathAware(Protocol):
    """A limiter that learns its path's floor from handshakes as well as from its requests.

    A session that warms up tells it how long each TCP (and TLS) handshake took: round trips
    that cost no budget, so that its holds may subtract the path's floor from the first
    requests of a burst on.
    """

    def observe_handshake(self, started: float, completed: float, round_trips: int) -> None:
        """A handshake of ``round_trips`` round trips began at ``started`` and completed at
        ``completed`` (the event loop's clock)."""
        ...


@runtime_checkable
class Prepares(Protocol):
    """A limiter whose first grant needs something opened first: its store's file or
    connection, the claim of its access key's name. A session that warms up has that done
    then, so that the first grant of a burst costs what the next ones do.
    """

    async def prepare_budget(self) -> None:
        """Open what the next grant needs. A store out of reach, or refusing, is left for that
        grant to meet as it would have: this raises nothing for it."""
        ...


@runtime_checkable
class HandsOver(Protocol):
    """A limiter that can pass the slots it still holds to another, or take another's.

    When a key's limiter is replaced while it still holds slots (its sessions were closed a
    moment ago), its successor takes them over rather than spend them again.
    """

    def remaining_holds(self) -> list[float]:
        """Seconds until each slot this limiter holds in this process frees (a request in
        flight counts as abandoned now)."""
        ...

    def hold_slots(self, seconds: list[float]) -> None:
        """Count slots taken elsewhere as held, each for so many seconds from now."""
        ...


class Lease:
    """One request's right to reach the exchange, from its grant until its slot is free again.

    Times are read from the limiter's clock. Use ``with lease:`` so that it is released on every
    path; releasing twice does nothing.
    """

    __slots__ = (
        "_clock",
        "_limiter",
        "answered_at",
        "feedback",
        "granted_at",
        "handle",
        "released_at",
        "sent_at",
    )

    #: When the limiter granted it.
    granted_at: float
    #: When its request left (the last call of :meth:`sending`), or ``None`` if it never did.
    sent_at: float | None
    #: When the answer arrived, or ``None`` if none did.
    answered_at: float | None
    #: What the answer said, or ``None`` if none arrived.
    feedback: Feedback | None
    #: When it was released, or ``None`` while active.
    released_at: float | None
    #: What its limiter knows it by, if anything (a Redis-backed limiter's lease id).
    handle: str | None

    def __init__(
        self,
        limiter: Limiter,
        granted_at: float,
        clock: Callable[[], float],
        *,
        handle: str | None = None,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self.handle = handle
        self.granted_at = granted_at
        self.sent_at = None
        self.answered_at = None
        self.feedback = None
        self.released_at = None

    @property
    def outcome(self) -> Outcome:
        """How the request ended, as far as is known now."""
        if self.answered_at is not None:
            return "answered"
        return "not_sent" if self.sent_at is None else "abandoned"

    def sending(self) -> None:
        """Mark the request as leaving now; raises :class:`BlockedError` (then it must not go)."""
        self._check_active()
        self._limiter.departing(self)
        self.sent_at = self._clock()

    def unsent(self) -> None:
        """The request certainly never left (no connection could be made)."""
        self._check_active()
        self.sent_at = None

    def answered(self, feedback: Feedback) -> None:
        """An answer arrived, saying ``feedback``."""
        self._check_active()
        self.answered_at = self._clock()
        self.feedback = feedback

    def release(self) -> None:
        """End the lease: the limiter frees its slot when the outcome allows. Idempotent."""
        if self.released_at is not None:
            return
        self.released_at = self._clock()
        self._limiter.release(self)

    def _check_active(self) -> None:
        if self.released_at is not None:
            raise RuntimeError("this lease was released; acquire a new one for another request")

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released_at is not None else "active"
        return f"<Lease granted_at={self.granted_at:.3f} {self.outcome} {state}>"
