"""One budget per access key and rate-limit group in an event loop: which limiter a session uses.

Every session of a key claims the key's limiter of a group when it first sends in that group.
The first claim decides: a session given ``limiter=`` registers that limiter for its key's
``default`` group, a session without one creates the default, the host's budget
(:class:`~upbit_cancel.HostLimiter`). Later sessions of the
key without ``limiter=`` share the registered one; a session that brings a different limiter is
refused while the registered one is in use (another open session holds it, or it still holds
slots), since two budgets for one key would let twice the limit through. Once the registered
limiter is idle and unclaimed, another may replace it.

A limiter replaced while it still holds slots (its last session was closed a moment ago) hands
them over: its successor takes them over when both can (:class:`HandsOver`), and otherwise
waits until they are free (:func:`handed_over`) before its first grant. Nobody who closed the
old one is refused.

A limiter given for one group alone (``group_limiters=``) is claimed for it like one given for
the ``default`` group. Otherwise the other groups follow the ``default`` group's limiter: one
whose budget lives outside the process (:class:`AccountBound`) gives its sibling for the
group, kept in the same place; otherwise the group gets an in-process limiter with its own
rule (:data:`core.GROUPS`), one for each given limiter (shared by every session given it,
whatever its key) or, with none given, one for each key.

Keys of one account cannot be told apart from here: their sessions share a budget only when
given the same limiter.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from .bucket import TokenBucketLimiter
from .contract import AccountBound, HandsOver, Limiter
from .core import GROUPS
from .host import HostLimiter
from .window import SlidingWindowLimiter

__all__ = ["as_limiter", "claim", "handed_over", "unclaim", "waits_for_predecessor"]

#: How often a successor looks whether its predecessor's slots are free, in seconds.
_PREDECESSOR_POLL = 0.01


class _Claim:
    __slots__ = ("identity", "limiter", "owners")

    def __init__(self, limiter: Limiter, identity: object) -> None:
        self.limiter = limiter
        # What makes two limiters the same budget: the object, or the bucket an adapter wraps.
        self.identity = identity
        self.owners: weakref.WeakSet[object] = weakref.WeakSet()


# Keyed by id(loop): a limiter holds its loop, so a weak mapping keyed by the loop would never
# let go of it. Closed loops are dropped on the next claim.
_claims: dict[int, tuple[asyncio.AbstractEventLoop, dict[tuple[str, str], _Claim]]] = {}
# The in-process limiters of the other groups for a given limiter, by the given limiter's identity
# (id, with a reference that says whether it is still that object).
_siblings: dict[int, tuple[Callable[[], object], dict[str, Limiter]]] = {}
# Limiters whose predecessor still held slots it could not hand over, with that predecessor.
_predecessors: weakref.WeakKeyDictionary[Limiter, Limiter] = weakref.WeakKeyDictionary()


def as_limiter(value: object) -> Limiter:
    """``value`` as a :class:`Limiter`, or a ``TypeError`` that says what to pass."""
    if isinstance(value, AsyncLimiter):
        return TokenBucketLimiter(value)
    if isinstance(value, Limiter):
        return value
    raise TypeError(
        f"limiter must be a limiter such as SlidingWindowLimiter(30, 1.0), a RedisLimiter or an "
        f"aiolimiter.AsyncLimiter, not {type(value).__name__}"
    )


def _identity(limiter: Limiter) -> object:
    return limiter.bucket if isinstance(limiter, TokenBucketLimiter) else limiter


def _given_for(group: str, given: Limiter | None) -> Limiter | None:
    """The limiter a session given ``given`` (for its ``default`` group) uses in ``group``.

    Every session given one limiter shares its other groups too (the keys of one account):
    one whose budget lives outside the process gives its sibling kept there; any other gets
    one in-process sibling per group, the same for every session given it.
    """
    if group == "default" or given is None:
        return given
    if isinstance(given, AccountBound):
        return given.for_group(group)
    identity = _identity(given)
    for key in [key for key, (alive, _) in _siblings.items() if alive() is None]:
        del _siblings[key]
    entry = _siblings.get(id(identity))
    if entry is None or entry[0]() is not identity:
        entry = _siblings[id(identity)] = (_reference(identity), {})
    groups = entry[1]
    if group not in groups:
        groups[group] = _in_process_for(group)
    return groups[group]


def _reference(value: object) -> Callable[[], object]:
    """A weak reference to ``value`` if it takes one, else a strong one (kept for good)."""
    try:
        return weakref.ref(value)
    except TypeError:
        return lambda: value


def _default_for(group: str) -> Limiter:
    """The limiter of a session given none: the host's budget of the group."""
    limit, window = GROUPS[group]
    return HostLimiter(limit=limit, window=window, group=group)


def _in_process_for(group: str) -> Limiter:
    limit, window = GROUPS[group]
    return SlidingWindowLimiter(limit, window, group=group)


def claim(
    owner: object,
    access_key: str,
    given: Limiter | None,
    group: str = "default",
    *,
    for_group: Limiter | None = None,
) -> Limiter:
    """The limiter ``owner`` (a session of ``access_key``, given ``given``) must use in the running
    loop for the rate-limit ``group``; ``for_group`` is one given for that group alone."""
    loop = asyncio.get_running_loop()
    for key in [key for key, (other, _) in _claims.items() if other.is_closed()]:
        del _claims[key]
    table = _claims.setdefault(id(loop), (loop, {}))[1]
    given = for_group if for_group is not None else _given_for(group, given)
    current = table.get((access_key, group))
    if current is not None and (given is None or _identity(given) is current.identity):
        current.owners.add(owner)
        if isinstance(current.limiter, AccountBound):
            current.limiter.bind(access_key)
        return current.limiter
    if current is not None:
        others = [other for other in current.owners if other is not owner]
        if others:
            raise ValueError(
                f"access key {access_key[:4]}… already spends its budget through another limiter "
                f"in this event loop ({current.limiter!r}); give every session of one key the "
                "same limiter, such as limiter=other_session.limiter"
            )
    limiter = given if given is not None else _default_for(group)
    if current is not None and _holds_slots(current.limiter):
        _hand_over(current.limiter, limiter)
    if isinstance(limiter, AccountBound):
        limiter.bind(access_key)
    table[access_key, group] = _Claim(limiter, _identity(limiter))
    table[access_key, group].owners.add(owner)
    return limiter


def _holds_slots(limiter: Limiter) -> bool:
    """Whether ``limiter`` holds slots in this process (one whose budget is kept elsewhere may be
    idle, every release told, while what it released still counts there)."""
    if not limiter.idle:
        return True
    return isinstance(limiter, HandsOver) and any(
        seconds > 0 for seconds in limiter.remaining_holds()
    )


def _hand_over(old: Limiter, new: Limiter) -> None:
    """``new`` replaces ``old``, which still holds slots: it takes them over, or waits."""
    if isinstance(old, HandsOver) and isinstance(new, HandsOver):
        new.hold_slots(old.remaining_holds())
    else:
        _predecessors[new] = old


def waits_for_predecessor(limiter: Limiter) -> bool:
    """Whether ``limiter`` took a key over from one whose slots are not all free yet."""
    return bool(_predecessors) and limiter in _predecessors


async def handed_over(limiter: Limiter) -> None:
    """Return once ``limiter``'s predecessor, if it could not hand its slots over, holds none
    (at most its longest hold: a window after an abandoned request's transit)."""
    predecessor = _predecessors.get(limiter)
    if predecessor is None:
        return
    while _holds_slots(predecessor):  # noqa: ASYNC110 - a limiter offers no event for it
        await asyncio.sleep(_PREDECESSOR_POLL)
    _predecessors.pop(limiter, None)


def unclaim(owner: object, access_key: str) -> None:
    """``owner`` no longer uses its key's limiters (it was closed)."""
    entry = _claims.get(id(asyncio.get_running_loop()))
    if entry is None:
        return
    for (key, _), current in entry[1].items():
        if key == access_key:
            current.owners.discard(owner)
