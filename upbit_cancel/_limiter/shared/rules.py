"""The rules of a budget that several processes share through a store (a file of the host, a
Redis), written once for every store.

One rate-limit group of one account has one :class:`State` in the store. A process changes it
only by a *visit*: one transaction that reads the state and the store's clock, applies
:func:`visit` and writes the result. What the visit carries (:class:`Visit`) is everything the
process has to tell (leases ended, leases still in flight, slots it took outside the store) and
to ask (slots for its waiting requests); what comes back (:class:`Reply`) is its grants and when
to ask again. Times in the state are the store's clock; a process speaks in durations, counted
from before it sent the visit, so that the store always holds a slot at least as long as the
process decided.

The promise, for every store: at most ``limit`` requests at the exchange in any window, counting
requests abandoned but possibly still arriving, those of every process, and those a process sends
on its own *fallback share* while it cannot reach the store. How, in four rules:

1. **Holds** (``hold``): a released lease's slot stays taken until a request sent after it can
   no longer be counted in the same window of the exchange. A process may subtract its own path's
   floor from its own holds (a request of its own sent later travels the same path); for every
   other process a hold lasts a window after the answer, since how another path splits its delay
   between the two directions is not known. A grant needs a slot free *for the process that
   asks*.
2. **Active leases** expire unless renewed: a process that dies costs the others a slot for
   :attr:`Terms.active_ttl` at most.
3. **Membership and fallback shares**: every visit renews the visiting process's membership for
   :attr:`Terms.membership`; at its first visit it is given a fallback share (slots per window it
   may use on its own when the store is out of reach), never more in total than the limit. A
   member that stops visiting becomes *departed*: its share is reserved (kept out of every grant)
   for :attr:`Terms.reserve`. A process that lost the store uses its share only once its
   membership has certainly expired and every slot granted before then can no longer count
   (:attr:`Terms.settle`), and stops before the reservation ends; the limiter keeps those times.
4. **Lost state** (the store was emptied, evicted or replaced): a process that knew an earlier
   state says so (its epoch); the state then grants nothing until what was granted before can no
   longer count, and keeps the shares that members of the lost state may be using on their
   fallback reserved for as long as they may use them, minus the shares of those that come back.

No I/O, no clock of its own, no event loop: the limiter and the stores do those.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

__all__ = [
    "Hold",
    "Release",
    "Reply",
    "State",
    "Terms",
    "Visit",
    "decode",
    "encode",
    "fresh",
    "visit",
]


@attrs.frozen
class Terms:
    """The constants of one shared budget, the same for every process that shares it."""

    #: Requests per window.
    limit: int
    #: A window plus the margin, in seconds.
    unit: float
    #: How long an abandoned request's slot stays taken after its lease ends (``max_transit``
    #: plus :attr:`unit`).
    abandoned: float
    #: How often a process visits while it holds leases or waits, and renews its membership.
    renew: float = 0.5
    #: How long a membership lasts without a visit.
    membership: float = 2.0
    #: How long a departed member's fallback share stays reserved after its membership ended.
    reserve: float = 30.0
    #: Requests in line whose process has not asked for them for this long leave the line.
    ticket_ttl: float = 1.5
    #: How soon to ask again when a slot waits for a request of another process ahead in line.
    poll: float = 0.02
    #: How long before a slot frees it may be granted, to be used from then on: the process
    #: then sends the moment it frees, not a visit later.
    lead: float = 0.05
    #: How long a state just made, with nobody who knew an earlier one, grants nothing.
    fresh_pause: float = 0.0

    @property
    def active_ttl(self) -> float:
        """How long a granted lease lives in the store unless renewed: its grant's answer may
        take :attr:`renew` to come back, its request may leave :attr:`renew` after that, then
        it counts as abandoned."""
        return self.abandoned + 2 * self.renew

    @property
    def settle(self) -> float:
        """How long after a moment a slot granted before it may still count at the exchange
        (a grant ahead of its slot counts from up to :attr:`lead` later)."""
        return self.active_ttl + self.lead


@attrs.define
class Hold:
    """A released lease's slot, still taken."""

    #: The process whose request it was.
    owner: str
    #: Until when it counts for every other process.
    others: float
    #: Until when it counts for its owner (never later than :attr:`others`).
    own: float
    #: The owner's path floor that :attr:`own` subtracted (0: none).
    floor: float

    def until_for(self, process: str, floor: float | None) -> float:
        """Until when it counts for ``process``, whose path floor is ``floor`` now."""
        if process != self.owner or floor is None:
            return self.others
        if floor < self.floor:
            # The owner's path turned out faster than when the hold was set: subtract less.
            return min(self.others, self.own + self.floor - floor)
        return self.own


@attrs.define
class State:
    """One budget as the store keeps it. Times are the store's clock."""

    #: Which incarnation of the state this is: a new one after the store lost it.
    epoch: str
    #: When this incarnation was made.
    created: float
    #: Nothing is granted before this time (a state just made, or after a loss).
    grants_from: float = -math.inf
    paused_until: float = -math.inf
    blocked_until: float = -math.inf
    block_reason: str = ""
    #: The share of the budget after a 429: ``[from, slots]`` steps in time order.
    shares: list[tuple[float, int]] = attrs.Factory(list)
    holds: list[Hold] = attrs.Factory(list)
    #: Leases granted and not yet released: ``lease -> (owner, expires)``.
    active: dict[str, tuple[str, float]] = attrs.Factory(dict)
    #: The line of waiting requests, as runs in the order they reached the store: ``(owner,
    #: last asked, how many)``. A process's requests are in line in its own order, oldest
    #: first: which of them a grant is for is the process's business (its oldest waiting).
    queue: list[tuple[str, float, int]] = attrs.Factory(list)
    #: ``process -> (membership expires, fallback share)``.
    members: dict[str, tuple[float, int]] = attrs.Factory(dict)
    #: ``process -> (share reserved until, share)``: members that stopped visiting.
    departed: dict[str, tuple[float, int]] = attrs.Factory(dict)
    #: Epochs of lost states whose loss this state took into account.
    recovered: list[str] = attrs.Factory(list)
    #: The largest total of fallback shares a member of a lost state saw.
    reported: int = 0
    #: The fallback shares of the members of a lost state that came back.
    rejoined: int = 0
    #: Until when shares of a lost state's members may be in use on their fallback.
    unknown_until: float = -math.inf

    def total_shares(self) -> int:
        """Every fallback share given out: members' and departed members'."""
        return sum(share for _, share in self.members.values()) + sum(
            share for _, share in self.departed.values()
        )

    def unknown(self, now: float) -> int:
        """Slots that members of a lost state may be using on their fallback at ``now``."""
        if now >= self.unknown_until:
            return 0
        return max(0, self.reported - self.rejoined)

    def share_at(self, now: float, limit: int) -> int:
        """The share of the budget in force at ``now``."""
        share = limit
        for since, slots in self.shares:
            if since > now:
                break
            share = slots
        return share


@attrs.frozen
class Release:
    """A lease that ended, as its process tells it: durations are seconds from before the
    visit was sent."""

    lease: str
    #: How long its slot counts for every other process (0: it is free).
    others: float
    #: How long its slot counts for its own process.
    own: float
    #: The path floor that :attr:`own` subtracted (0: none).
    floor: float = 0.0
    #: Nothing is granted for this long (0: no new pause).
    pause: float = 0.0
    #: The account is blocked for this long (0: no new block).
    block: float = 0.0
    block_reason: str = ""
    #: The new share after a 429: ``(seconds from now, slots)`` steps (empty: unchanged).
    share: tuple[tuple[float, int], ...] = ()


@attrs.frozen
class Visit:
    """Everything one process tells and asks in one transaction."""

    #: The process's name.
    process: str
    #: The epoch of the state it knows (``None``: it knows none).
    epoch: str | None
    #: Its fallback share in that state.
    old_share: int
    #: The total of fallback shares it saw last in that state.
    seen_total: int
    #: The fallback share it asks for when it joins.
    wanted_share: int
    #: Its path floor now (``None``: not known).
    floor: float | None
    releases: tuple[Release, ...] = ()
    #: Its leases still in flight.
    renew: tuple[str, ...] = ()
    #: Slots it took outside the store (on its fallback), each held for so many seconds.
    adopt: tuple[float, ...] = ()
    #: A block it met outside the store: ``(seconds left, reason)``.
    block: tuple[float, str] | None = None
    #: Its requests that wait for a slot, named by the lease each would be, oldest first: the
    #: store keeps only how many wait, and a grant goes to the oldest.
    waiting: tuple[str, ...] = ()
    #: Places, among its requests the line held after its last visit (oldest first, from 0),
    #: of those that no longer wait: they leave the line, the others keep their places.
    gone: tuple[int, ...] = ()
    #: It closes: its membership ends without a reservation.
    leave: bool = False


@attrs.frozen
class Reply:
    """What a visit gives back to its process."""

    #: The epoch of the state now.
    epoch: str
    #: The process's fallback share.
    share: int
    #: Every fallback share given out.
    total: int
    #: The state the process knew was lost: it should hand back the slots it holds.
    lost: bool
    #: Its waiting requests granted a slot (each now an active lease), its oldest first.
    granted: tuple[str, ...]
    #: For each grant, seconds from the visit until its slot frees: its request must not
    #: leave before then (0: at once).
    not_before: tuple[float, ...]
    #: Seconds until it is worth asking again for a request still waiting (``None``: none
    #: waits).
    retry: float | None
    #: Slots taken for this process now.
    taken: int
    #: The share of the budget now.
    share_now: int
    #: ``(seconds left, reason)`` while the account is blocked.
    blocked: tuple[float, str] | None


def visit(
    state: State | None, now: float, terms: Terms, arriving: Visit, new_epoch: Callable[[], str]
) -> tuple[State, Reply]:
    """Apply one process's visit at ``now`` (the store's clock) to ``state`` (``None``: the
    store holds none); the state to write, and the reply."""
    state, lost = _incarnation(state, now, terms, arriving, new_epoch)
    _sweep(state, now, terms)
    process = arriving.process
    share = _membership(state, now, terms, arriving, lost)
    for seconds in arriving.adopt:
        if seconds > 0:
            state.holds.append(Hold(process, now + seconds, now + seconds, 0.0))
    if arriving.block is not None:
        _block(state, now + arriving.block[0], arriving.block[1])
    for release in arriving.releases:
        _release(state, now, process, release)
    for lease in arriving.renew:
        # Renewed even if it lapsed meanwhile: a lease its process still holds counts (and
        # never for less than it was granted for).
        expires = state.active.get(lease, (process, -math.inf))[1]
        state.active[lease] = (process, max(expires, now + terms.active_ttl))
    granted, not_before, retry, taken, share_now = _grant(state, now, terms, arriving)
    blocked = None
    if now < state.blocked_until:
        blocked = (state.blocked_until - now, state.block_reason)
    reply = Reply(
        epoch=state.epoch,
        share=share,
        total=state.total_shares(),
        lost=lost,
        granted=granted,
        not_before=not_before,
        retry=retry,
        taken=taken,
        share_now=share_now,
        blocked=blocked,
    )
    return state, reply


def fresh(now: float, terms: Terms, new_epoch: Callable[[], str]) -> State:
    """The state a first visit at ``now`` makes when the store holds none: it grants nothing
    for :attr:`Terms.fresh_pause`. A process that will soon need the budget may make it ahead,
    joining nothing and asking for nothing, so that the pause has run out by then."""
    return State(epoch=new_epoch(), created=now, grants_from=now + terms.fresh_pause)


def _incarnation(
    state: State | None, now: float, terms: Terms, arriving: Visit, new_epoch: Callable[[], str]
) -> tuple[State, bool]:
    """The state to visit, and whether the one the process knew was lost.

    A state missing, or of another epoch than the process knew, was lost: requests granted
    before may still count for :attr:`Terms.settle` after it was made anew, and members of the
    lost state may be on their fallback for up to a membership and a reservation after that.
    With nobody who knew an earlier state, a new one only waits :attr:`Terms.fresh_pause`.
    """
    known = arriving.epoch
    if state is None:
        state = fresh(now, terms, new_epoch)
        if known is None:
            return state, False
    elif known is None or known == state.epoch:
        return state, False
    if known not in state.recovered:
        state.recovered.append(known)
        state.grants_from = max(state.grants_from, state.created + terms.settle)
        state.unknown_until = max(
            state.unknown_until, state.created + terms.membership + terms.reserve
        )
    return state, True


def _sweep(state: State, now: float, terms: Terms) -> None:
    """Drop what has ended by ``now``; members that stopped visiting become departed."""
    state.holds = [hold for hold in state.holds if hold.others > now]
    state.active = {lease: entry for lease, entry in state.active.items() if entry[1] > now}
    for process, (expires, share) in list(state.members.items()):
        if expires <= now:
            del state.members[process]
            if share > 0:
                state.departed[process] = (expires + terms.reserve, share)
    state.departed = {process: entry for process, entry in state.departed.items() if entry[0] > now}
    state.queue = [run for run in state.queue if run[1] > now - terms.ticket_ttl]
    while len(state.shares) > 1 and state.shares[1][0] <= now:
        del state.shares[0]
    if now >= state.unknown_until:
        state.reported = state.rejoined = 0


def _membership(state: State, now: float, terms: Terms, arriving: Visit, lost: bool) -> int:
    """Renew (or end) the visiting process's membership; its fallback share."""
    process = arriving.process
    if arriving.leave:
        state.members.pop(process, None)
        state.queue = [run for run in state.queue if run[0] != process]
        return 0
    member = state.members.get(process)
    if member is not None:
        state.members[process] = (now + terms.membership, member[1])
        return member[1]
    # Back from a departure: its share is no longer reserved, it is its own again (the slots
    # it took on its fallback come with this visit, as holds).
    state.departed.pop(process, None)
    if lost:
        # A member of a lost state came back: its share is no longer unknown.
        state.reported = max(state.reported, arriving.seen_total)
        state.rejoined += arriving.old_share
    room = terms.limit - state.total_shares() - state.unknown(now)
    share = max(0, min(arriving.wanted_share, room))
    state.members[process] = (now + terms.membership, share)
    return share


def _block(state: State, until: float, reason: str) -> None:
    if until > state.blocked_until:
        state.blocked_until = until
        state.block_reason = reason


def _release(state: State, now: float, process: str, release: Release) -> None:
    state.active.pop(release.lease, None)
    if release.others > 0:
        own = min(release.own, release.others)
        state.holds.append(
            Hold(process, now + release.others, now + own, release.floor if own > 0 else 0.0)
        )
    if release.pause > 0:
        state.paused_until = max(state.paused_until, now + release.pause)
    if release.block > 0:
        _block(state, now + release.block, release.block_reason)
    if release.share:
        # The latest 429 decides: the process computed it from the share it last saw here.
        state.shares = [(now + offset, slots) for offset, slots in release.share]


def _grant(
    state: State, now: float, terms: Terms, arriving: Visit
) -> tuple[tuple[str, ...], tuple[float, ...], float | None, int, int]:
    """Line up the visiting process's requests, grant those whose turn it is (or comes within
    :attr:`Terms.lead`); the grants, how long each must wait for its slot, when to ask again,
    the slots taken for it and the share now."""
    process, floor = arriving.process, arriving.floor
    waiting = tuple(dict.fromkeys(arriving.waiting))  # a name given twice waits once
    queue = _lined_up(state.queue, process, frozenset(arriving.gone), len(waiting), now)
    share_now = state.share_at(now, terms.limit)
    capacity = share_now - sum(share for _, share in state.departed.values())
    capacity = max(0, capacity - state.unknown(now))
    holds = sorted(until for hold in state.holds if (until := hold.until_for(process, floor)) > now)
    taken = len(state.active) + len(holds)
    if now < state.blocked_until:
        state.queue = queue
        return (), (), None, taken, share_now
    opens = max(state.grants_from, state.paused_until)
    waits: list[float] = []
    if now >= opens:
        queue = _turns(queue, process, taken - capacity, holds, now, terms.lead, waits)
    granted = waiting[: len(waits)]  # its oldest waiting requests
    for ticket, wait in zip(granted, waits, strict=True):
        state.active[ticket] = (process, now + wait + terms.active_ttl)
    state.queue = queue
    # Ranks and holds as they were: a grant ahead of its slot still waits for that hold.
    retry = _retry(queue, now, terms, process, holds, taken + len(granted), capacity, opens)
    return granted, tuple(waits), retry, taken + len(granted), share_now


def _lined_up(
    queue: Sequence[tuple[str, float, int]],
    process: str,
    gone: frozenset[int],
    waiting: int,
    now: float,
) -> list[tuple[str, float, int]]:
    """The line with ``waiting`` requests of ``process`` in it, asked for at ``now``: those
    that no longer wait (their places in ``gone``) leave it, the others keep their places, more
    join at the end. Should the line hold more of them than wait (a visit whose answer was
    lost), the newest leave."""
    lined: list[tuple[str, float, int]] = []
    place = 0
    for owner, seen, count in queue:
        if owner == process:
            kept = count - sum(1 for at in range(place, place + count) if at in gone)
            place += count
            count, seen = kept, now
        if count > 0:
            lined.append((owner, seen, count))
    excess = sum(count for owner, _, count in lined if owner == process) - waiting
    if excess > 0:
        for index in range(len(lined) - 1, -1, -1):
            owner, seen, count = lined[index]
            if owner == process and excess > 0:
                left = max(0, count - excess)
                excess -= count - left
                lined[index] = (owner, seen, left)
        lined = [run for run in lined if run[2] > 0]
    elif excess < 0:
        lined.append((process, now, -excess))
    merged: list[tuple[str, float, int]] = []
    for run in lined:
        if merged and merged[-1][0] == run[0]:
            merged[-1] = (run[0], max(merged[-1][1], run[1]), merged[-1][2] + run[2])
        else:
            merged.append(run)
    return merged


def _turns(
    queue: list[tuple[str, float, int]],
    process: str,
    over: int,
    holds: Sequence[float],
    now: float,
    lead: float,
    waits: list[float],
) -> list[tuple[str, float, int]]:
    """Grant ``process`` its requests whose turn it is: the k-th in line has the k-th slot to
    free, one free now or one whose hold ends within ``lead`` (its request then leaves when the
    hold ends, never before). ``over``: slots taken beyond the capacity (negative: free now).
    Appends each grant's wait to ``waits``; returns the line without them."""
    rank = 0
    turns_left = True
    left: list[tuple[str, float, int]] = []
    for owner, seen, count in queue:
        if owner == process and turns_left:
            granted = 0
            while granted < count:
                need = over + rank + 1
                if need <= 0:
                    waits.append(0.0)
                elif need <= len(holds) and holds[need - 1] <= now + lead:
                    waits.append(holds[need - 1] - now)
                else:
                    turns_left = False  # later ranks come later still
                    break
                granted += 1
                rank += 1
            count -= granted
        else:
            rank += count
        if count > 0:
            left.append((owner, seen, count))
    return left


def _retry(
    queue: Sequence[tuple[str, float, int]],
    now: float,
    terms: Terms,
    process: str,
    holds: Sequence[float],
    taken: int,
    capacity: int,
    opens: float,
) -> float | None:
    """Seconds until the first of the process's waiting requests may have its turn."""
    first = 0
    for owner, _, count in queue:
        if owner == process:
            break
        first += count
    else:
        return None
    if now < opens:
        return opens - now
    # ``need`` slots must free before its turn: the need-th hold to end (granted a lead
    # before), if that many are held (slots of leases still in flight free after their answers:
    # ask again shortly). A slot granted again holds at least a window, so beyond the slots
    # taken now each frees at most once a window. A reservation that ends frees capacity too.
    need = taken - capacity + first + 1
    if need < 1:
        return terms.poll  # a free slot waits for a request of another process ahead in line
    if need > taken:
        return (1 + (need - taken - 1) // max(1, terms.limit)) * terms.unit
    if need <= len(holds):
        return max(terms.poll, holds[need - 1] - terms.lead - now)
    return terms.poll


# -- the state as text --------------------------------------------------------------------------

_VERSION = 3


def encode(state: State) -> str:
    """The state as compact JSON, for the store. Times are whole microseconds, rounded up
    (later: a slot held, a lease or a membership kept a microsecond longer), because integers
    are several times cheaper to write and read than floats."""
    return json.dumps(
        {
            "v": _VERSION,
            "epoch": state.epoch,
            "created": _us(state.created),
            "grants_from": _us(state.grants_from),
            "paused_until": _us(state.paused_until),
            "blocked_until": _us(state.blocked_until),
            "block_reason": state.block_reason,
            "shares": [[_us(since), slots] for since, slots in state.shares],
            "holds": [
                [hold.owner, _us(hold.others), _us(hold.own), hold.floor] for hold in state.holds
            ],
            "active": {
                lease: [owner, _us(expires)] for lease, (owner, expires) in state.active.items()
            },
            "queue": [[owner, _us(seen), count] for owner, seen, count in state.queue],
            "members": {
                name: [_us(expires), share] for name, (expires, share) in state.members.items()
            },
            "departed": {
                name: [_us(until), share] for name, (until, share) in state.departed.items()
            },
            "recovered": state.recovered[-8:],
            "reported": state.reported,
            "rejoined": state.rejoined,
            "unknown_until": _us(state.unknown_until),
        },
        separators=(",", ":"),
    )


def decode(text: str | bytes) -> State | None:
    """The state a store held, or ``None`` if it is not one this version can read (then it
    counts as lost)."""
    try:
        data: Any = json.loads(text)
        if data.get("v") != _VERSION:
            return None
        return State(
            epoch=str(data["epoch"]),
            created=_time(data["created"]),
            grants_from=_time(data["grants_from"]),
            paused_until=_time(data["paused_until"]),
            blocked_until=_time(data["blocked_until"]),
            block_reason=str(data["block_reason"]),
            shares=[(_time(since), int(slots)) for since, slots in data["shares"]],
            holds=[
                Hold(str(owner), _time(others), _time(own), float(floor))
                for owner, others, own, floor in data["holds"]
            ],
            active={
                str(lease): (str(owner), _time(expires))
                for lease, (owner, expires) in data["active"].items()
            },
            queue=[
                (str(owner), _time(seen), _count(count)) for owner, seen, count in data["queue"]
            ],
            members={
                str(name): (_time(expires), int(share))
                for name, (expires, share) in data["members"].items()
            },
            departed={
                str(name): (_time(until), int(share))
                for name, (until, share) in data["departed"].items()
            },
            recovered=[str(epoch) for epoch in data["recovered"]],
            reported=int(data["reported"]),
            rejoined=int(data["rejoined"]),
            unknown_until=_time(data["unknown_until"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, ArithmeticError):
        return None


def _count(value: Any) -> int:
    """How many requests a run of the line holds, as written: a whole number from 1 to a
    million (anything else is not a state this version wrote)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1_000_000:
        raise ValueError(f"not a count of requests: {value!r}")
    return value


def _us(value: float) -> int | None:
    """A time as whole microseconds, rounded up (``None``: never, or always)."""
    return math.ceil(value * 1_000_000) if math.isfinite(value) else None


def _time(value: Any) -> float:
    """A time written by :func:`_us`."""
    return -math.inf if value is None else int(value) / 1_000_000
