"""The rules of a budget shared through a store, as pure code: processes visit one store on a
virtual clock, with no I/O and no event loop. A few examples show each rule; one property
plays processes that visit, release, are cut off and spend their fallback shares, die, leave
and lose the state, and checks that no more than `limit` requests ever count at once."""

from __future__ import annotations

import json
import math
from typing import Literal

import attrs
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from upbit_cancel._limiter.shared.rules import (
    Hold,
    Release,
    Reply,
    State,
    Terms,
    Visit,
    decode,
    encode,
    visit,
)

# Small enough that a few dozen steps reach every rule. With these, a process cut off from the
# store may use its fallback share from 5 s until 9 s after its last visit.
TERMS = Terms(
    limit=6,
    unit=1.0,
    abandoned=2.0,
    renew=0.5,
    membership=2.0,
    reserve=10.0,
    ticket_ttl=1.5,
    poll=0.02,
    lead=0.125,
)

# Times are multiples of 1/16 s, exact in binary: a boundary is met exactly, never by rounding.
STEPS = st.integers(min_value=0, max_value=16).map(lambda sixteenths: sixteenths / 16)
HOLDS = st.integers(min_value=0, max_value=16).map(lambda eighths: eighths / 8)
CUTS = st.integers(min_value=0, max_value=60).map(lambda quarters: quarters / 4)


class Store:
    """One budget's state kept as text, as a store keeps it: every visit reads and writes it."""

    def __init__(self, terms: Terms = TERMS) -> None:
        self.terms = terms
        self.text: str | None = None
        self._epochs = 0

    def new_epoch(self) -> str:
        self._epochs += 1
        return f"e{self._epochs}"

    def state(self) -> State | None:
        if self.text is None:
            return None
        state = decode(self.text)
        assert state is not None
        return state

    def visit(self, now: float, arriving: Visit) -> Reply:
        state, reply = visit(self.state(), now, self.terms, arriving, self.new_epoch)
        self.text = encode(state)
        return reply

    def lose(self) -> None:
        """The state vanishes (an eviction, a restart with nothing saved)."""
        self.text = None


def newcomer(process: str, wanted_share: int = 0, waiting: tuple[str, ...] = ()) -> Visit:
    """The first visit of a process that knows no state yet."""
    return Visit(process, None, 0, 0, wanted_share, None, waiting=waiting)


def back(
    process: str,
    reply: Reply,
    *,
    releases: tuple[Release, ...] = (),
    renew: tuple[str, ...] = (),
    waiting: tuple[str, ...] = (),
) -> Visit:
    """A visit of a process that knows the state of ``reply``, its last one."""
    return Visit(
        process,
        reply.epoch,
        reply.share,
        reply.total,
        0,
        None,
        releases=releases,
        renew=renew,
        waiting=waiting,
    )


# -- examples -----------------------------------------------------------------------------------


def test_a_departed_members_share_is_reserved_until_its_reservation_ends() -> None:
    """A member that stops visiting keeps its fallback share out of every grant until a
    membership plus `reserve` after its last visit; then the whole budget is granted again."""
    store = Store()
    assert store.visit(0.0, newcomer("a", wanted_share=2)).share == 2
    first = store.visit(11.5, newcomer("b", waiting=tuple(f"b:{n}" for n in range(6))))
    assert first.total == 2
    assert first.granted == ("b:0", "b:1", "b:2", "b:3")
    freed = tuple(Release(lease, others=0.0, own=0.0) for lease in first.granted)
    second = store.visit(12.0, back("b", first, releases=freed, waiting=("b:4", "b:5", "b:6")))
    assert second.total == 0
    assert second.granted == ("b:4", "b:5", "b:6")
    state = store.state()
    assert state is not None
    assert state.departed == {}


def test_a_lost_state_visited_by_a_process_that_knew_it_grants_nothing_until_settled() -> None:
    """A process that knew the lost state makes the new one wait `settle`: what was granted
    before may count that long. A newcomer to an empty store is granted at once."""
    store = Store()
    first = store.visit(0.0, newcomer("a", wanted_share=2, waiting=("a:1",)))
    assert first.granted == ("a:1",)
    store.lose()
    lost = store.visit(1.0, back("a", first, renew=("a:1",), waiting=("a:2",)))
    assert lost.lost
    assert lost.epoch != first.epoch
    assert lost.granted == ()
    assert lost.retry == TERMS.settle
    assert store.visit(3.5, back("a", lost, renew=("a:1",), waiting=("a:2",))).granted == ()
    settled = store.visit(1.0 + TERMS.settle, back("a", lost, renew=("a:1",), waiting=("a:2",)))
    assert not settled.lost
    assert settled.granted == ("a:2",)


def test_a_hold_counts_less_for_its_owner_only() -> None:
    """A released slot counts a window after the answer for every process, and for its owner
    only until a request of its own could arrive after it; a path that turned out faster than
    when the hold was set subtracts less."""
    hold = Hold("a", others=5.0, own=3.0, floor=0.25)
    assert hold.until_for("b", 0.25) == 5.0
    assert hold.until_for("a", None) == 5.0
    assert hold.until_for("a", 0.25) == 3.0
    assert hold.until_for("a", 0.5) == 3.0
    assert hold.until_for("a", 0.125) == 3.125

    def one_slot_held_by_a() -> tuple[Store, Reply]:
        store = Store(attrs.evolve(TERMS, limit=1))
        granted = store.visit(0.0, newcomer("a", waiting=("a:1",)))
        release = Release("a:1", others=2.0, own=1.0, floor=0.25)
        told = store.visit(0.5, attrs.evolve(back("a", granted, releases=(release,)), floor=0.25))
        return store, told

    store, told = one_slot_held_by_a()
    owner = attrs.evolve(back("a", told, waiting=("a:2",)), floor=0.25)
    assert store.visit(1.5, owner).granted == ("a:2",)
    store, _ = one_slot_held_by_a()
    other = store.visit(1.5, newcomer("b", waiting=("b:1",)))
    assert other.granted == ()
    assert other.retry == 1.0 - TERMS.lead  # back a lead before the hold ends for it


def test_a_grant_ahead_of_its_slot_still_counts_when_a_lost_state_grants_again() -> None:
    """A grant given a lead before its slot frees counts from then for its lease's life: a
    process that dies with it, and a state lost at that moment, never let the new state grant
    its slots while it may still count."""
    store = Store()
    first = store.visit(0.0, newcomer("a", waiting=tuple(f"a:{n}" for n in range(6))))
    held = tuple(Release(lease, others=2.0, own=2.0) for lease in first.granted)
    a = store.visit(1.0, back("a", first, releases=held))  # every slot held until 3.0
    b = store.visit(2.0, newcomer("b"))
    now = 3.0 - TERMS.lead
    ahead = store.visit(now, back("a", a, waiting=tuple(f"a:{n}" for n in range(6, 12))))
    assert ahead.not_before == (TERMS.lead,) * 6
    counting_until = now + TERMS.lead + TERMS.active_ttl  # "a" dies with them
    store.lose()
    b = store.visit(now, back("b", b))
    assert b.lost
    granted_to_b = 0
    while now < counting_until + 1.0:
        now += 1 / 16
        b = store.visit(now, back("b", b, waiting=tuple(f"b:{n}" for n in range(6))))
        granted_to_b += len(b.granted)
        still_counting = 6 if now < counting_until else 0
        assert granted_to_b + still_counting <= TERMS.limit, now
    assert granted_to_b == 6


def test_the_line_keeps_each_process_in_its_place_and_serves_its_oldest_first() -> None:
    """Requests keep their places in line while their process asks for them again; fewer
    waiting and the newest leave, more and they join at the end; a grant goes to the oldest."""
    store = Store(attrs.evolve(TERMS, limit=1))
    first = store.visit(0.0, newcomer("a", waiting=("a:1",)))
    assert first.granted == ("a:1",)
    b = store.visit(0.25, newcomer("b", waiting=("b:1", "b:2")))
    a = store.visit(0.25, back("a", first, renew=("a:1",), waiting=("a:2",)))
    assert b.granted == a.granted == ()
    b = store.visit(0.5, back("b", b, waiting=("b:1",)))  # b:2 given up on
    state = store.state()
    assert state is not None
    assert [(owner, count) for owner, _, count in state.queue] == [("b", 1), ("a", 1)]
    freed = (Release("a:1", others=0.0, own=0.0),)
    a = store.visit(0.75, back("a", a, releases=freed, waiting=("a:2", "a:3")))
    assert a.granted == ()  # b is ahead
    b = store.visit(0.75, back("b", b, waiting=("b:1", "b:3")))
    assert b.granted == ("b:1",)
    state = store.state()
    assert state is not None
    assert [(owner, count) for owner, _, count in state.queue] == [("a", 2), ("b", 1)]


def test_a_request_given_up_leaves_its_place_to_nobody() -> None:
    """One request given up and another asked for before the next visit: the newcomer joins
    the end of the line, behind the other processes' older requests."""
    store = Store(attrs.evolve(TERMS, limit=2))
    z = store.visit(0.0, newcomer("z", waiting=("z:1", "z:2")))
    a = store.visit(0.25, back("a", z, waiting=("a:1", "a:2")))
    b = store.visit(0.5, back("b", z, waiting=("b:1",)))
    # a:1 given up, a:3 asked for
    a = store.visit(0.75, attrs.evolve(back("a", a, waiting=("a:2", "a:3")), gone=(0,)))
    freed = tuple(Release(lease, others=0.0, own=0.0) for lease in z.granted)
    store.visit(1.0, back("z", z, releases=freed))
    assert store.visit(1.0, back("a", a, waiting=("a:2", "a:3"))).granted == ("a:2",)
    assert store.visit(1.0, back("b", b, waiting=("b:1",))).granted == ("b:1",)


def test_a_request_named_twice_waits_once() -> None:
    """A process that names one request twice is granted one slot for it, not two."""
    store = Store(attrs.evolve(TERMS, limit=2))
    assert store.visit(0.0, newcomer("a", waiting=("a:1", "a:1"))).granted == ("a:1",)
    assert store.visit(0.0, newcomer("b", waiting=("b:1", "b:2"))).granted == ("b:1",)


@pytest.mark.parametrize(
    "count",
    [
        0,
        -1,
        1.5,
        "3",
        True,
        None,
        pytest.param(10**400, id="10**400"),
        pytest.param(1e400, id="1e400"),
        2_000_000,
    ],
)
def test_a_line_with_a_count_this_version_never_writes_is_a_lost_state(count: object) -> None:
    """A run of the line whose count is not a whole number of requests from 1 to a million
    (a state written by something else) reads as no state, never as a crash."""
    state = State(epoch="e", created=0.0)
    state.queue.append(("a", 0.0, 1))
    text = encode(state).replace('"queue":[["a",0,1]]', f'"queue":[["a",0,{_json(count)}]]')
    assert text != encode(state)
    assert decode(text) is None


def _json(value: object) -> str:
    if isinstance(value, float) and value > 1e300:
        return "1e400"
    return json.dumps(value)


def test_a_slot_about_to_free_is_granted_ahead_to_be_used_once_it_frees() -> None:
    """A visit within the lead of a hold's end is granted that slot now, to be used from the
    hold's end on; one later in line than the slots that free within the lead waits."""
    store = Store(attrs.evolve(TERMS, limit=2))
    first = store.visit(0.0, newcomer("a", waiting=("a:1", "a:2")))
    assert first.granted == ("a:1", "a:2")
    assert first.not_before == (0.0, 0.0)
    releases = (
        Release("a:1", others=1.0, own=1.0),
        Release("a:2", others=1.5, own=1.5),
    )
    store.visit(0.5, back("a", first, releases=releases))  # held until 1.5 and 2.0
    early = store.visit(1.5 - TERMS.lead, newcomer("b", waiting=("b:1", "b:2")))
    assert early.granted == ("b:1",)
    assert early.not_before == (TERMS.lead,)
    assert early.retry == 2.0 - TERMS.lead - (1.5 - TERMS.lead)


def test_a_418_told_in_a_visit_blocks_every_process() -> None:
    """A block one process met stays in the state: no process is granted a slot until it
    ends, and every reply says for how long and why."""
    store = Store()
    granted = store.visit(0.0, newcomer("a", waiting=("a:1",)))
    teapot = Release("a:1", others=2.0, own=2.0, block=60.0, block_reason="418")
    store.visit(0.5, back("a", granted, releases=(teapot,)))
    blocked = store.visit(1.0, newcomer("b", waiting=("b:1",)))
    assert blocked.granted == ()
    assert blocked.blocked == (59.5, "418")
    assert store.visit(30.0, back("a", granted, waiting=("a:2",))).granted == ()
    after = store.visit(60.5, back("b", blocked, waiting=("b:1",)))
    assert after.blocked is None
    assert after.granted == ("b:1",)


# -- the property -------------------------------------------------------------------------------


@attrs.define
class Span:
    """A request's occupancy: from its grant (or its send on a fallback) until it can no longer
    be counted at the exchange."""

    what: str
    start: float
    end: float = math.inf


@attrs.define
class Process:
    """What a process's limiter keeps of the shared budget."""

    name: str
    wanted_share: int
    #: When it starts.
    starts: float = 0.0
    status: Literal["later", "up", "cut", "dead", "gone"] = "later"
    epoch: str | None = None
    share: int = 0
    seen_total: int = 0
    #: When it first visited the state of its epoch.
    joined_at: float = math.inf
    #: Its last visit written, and the store's clock read (the same in this model).
    last_visit: float = -math.inf
    #: Leases granted and not released: lease -> its span.
    active: dict[str, Span] = attrs.Factory(dict)
    waiting: list[str] = attrs.Factory(list)
    tickets: int = 0
    #: Until when each slot it released counts for every other process.
    own_holds: list[float] = attrs.Factory(list)
    #: The last reply said the state it knew was lost: hand back its own holds.
    lost_holds: bool = False
    #: Cut off since its last visit: the slots of its fallback go with the next visit.
    outage: bool = False
    fallback_share: int = 0
    fallback: list[Span] = attrs.Factory(list)
    cut_until: float = -math.inf


class Budget:
    """Processes sharing one store on a virtual clock; every request's span is recorded."""

    def __init__(self, terms: Terms, processes: list[tuple[int, float]]) -> None:
        self.terms = terms
        self.store = Store(terms)
        self.processes = [
            Process(f"p{n}", share, starts if n > 0 else 0.0)
            for n, (share, starts) in enumerate(processes)
        ]
        self.now = 0.0
        self.spans: list[Span] = []

    def visit(self, process: Process, data: st.DataObject, *, leave: bool = False) -> None:
        """One visit of ``process``, applied as its limiter applies the reply."""
        terms, now = self.terms, self.now
        releases: list[Release] = []
        for lease in process.active:
            if data.draw(st.booleans(), label=f"release {lease}"):
                hold = data.draw(HOLDS, label="held for")
                releases.append(Release(lease, others=hold, own=hold, floor=0.0))
        released = {release.lease for release in releases}
        if not leave:
            for _ in range(data.draw(st.integers(min_value=0, max_value=3), label="asks")):
                process.tickets += 1
                process.waiting.append(f"{process.name}:{process.tickets}")
        adopt: list[float] = []
        if process.outage:
            adopt += [span.end - now for span in process.fallback if span.end > now]
        if process.lost_holds:
            adopt += [until - now for until in process.own_holds if until > now]
            process.lost_holds = False
        arriving = Visit(
            process=process.name,
            epoch=process.epoch,
            old_share=process.share,
            seen_total=process.seen_total,
            wanted_share=0 if leave else process.wanted_share,
            floor=None,
            releases=tuple(releases),
            renew=()
            if leave
            else tuple(lease for lease in process.active if lease not in released),
            adopt=() if leave else tuple(adopt),
            waiting=() if leave else tuple(process.waiting),
            leave=leave,
        )
        reply = self.store.visit(now, arriving)
        state = self.store.state()
        assert state is not None
        assert reply.share >= 0
        assert reply.total == state.total_shares() <= terms.limit
        assert reply.granted == arriving.waiting[: len(reply.granted)]  # its oldest first
        note(
            f"{now}: {process.name} {'leaves' if leave else 'visits'}: released "
            f"{[(release.lease, release.others) for release in releases]}, adopted {adopt}, "
            f"granted {list(reply.granted)}; share {reply.share}, total {reply.total}, "
            f"epoch {reply.epoch}{' (lost)' if reply.lost else ''}"
        )
        for release in releases:
            span = process.active.pop(release.lease)
            # A request leaves at most 2 * renew after its grant and counts at most `abandoned`
            # after that: never past its grant plus `active_ttl`, whatever its hold says.
            span.end = min(now + release.others, span.start + terms.active_ttl)
            process.own_holds.append(now + release.others)
        if leave:
            self.drop_leases(process)
            process.status = "gone"
            return
        process.outage = False
        process.fallback.clear()
        if reply.epoch != process.epoch:
            process.epoch = reply.epoch
            process.joined_at = now
        if reply.lost:
            process.lost_holds = True
        process.share = reply.share
        process.seen_total = reply.total
        process.last_visit = now
        for ticket, wait in zip(reply.granted, reply.not_before, strict=True):
            process.waiting.remove(ticket)
            # Its request leaves once its slot frees, never before.
            assert 0.0 <= wait <= terms.lead
            span = Span(f"{ticket} granted", now + wait)
            process.active[ticket] = span
            self.spans.append(span)

    def drop_leases(self, process: Process) -> None:
        """Its leases are no longer renewed: at worst they count until their grant plus
        `active_ttl`."""
        for span in process.active.values():
            span.end = span.start + self.terms.active_ttl
        process.active.clear()

    def cut(self, process: Process, seconds: float) -> None:
        """``process`` cannot reach the store for ``seconds``."""
        note(f"{self.now}: {process.name} is cut off for {seconds} s")
        process.status = "cut"
        process.cut_until = self.now + seconds
        if not process.outage:
            process.outage = True
            member_long_enough = process.last_visit - process.joined_at >= 2 * self.terms.renew
            process.fallback_share = process.share if member_long_enough else 0
        self.drop_leases(process)

    def leave(self, process: Process, data: st.DataObject) -> None:
        """``process`` closes: it ends its membership, unless it has not reached the store
        since it was cut off (then it tells nothing)."""
        if process.outage or process.epoch is None:
            note(f"{self.now}: {process.name} closes")
            process.status = "gone"
            self.drop_leases(process)
        else:
            self.visit(process, data, leave=True)

    def die(self, process: Process) -> None:
        """``process`` stops for good, its requests in flight."""
        note(f"{self.now}: {process.name} dies")
        process.status = "dead"
        self.drop_leases(process)

    def start_and_end_cuts(self) -> None:
        """Processes whose time has come start; those whose cut is over may visit again."""
        for process in self.processes:
            if process.status == "later" and self.now >= process.starts:
                note(f"{self.now}: {process.name} starts")
                process.status = "up"
            if process.status == "cut" and self.now >= process.cut_until:
                note(f"{self.now}: {process.name} reaches the store again")
                process.status = "up"

    def send_on_fallbacks(self) -> None:
        """Every process cut off sends as much as its fallback share allows, when it allows."""
        terms, now = self.terms, self.now
        for process in self.processes:
            if process.status != "cut" or process.fallback_share == 0:
                continue
            opens = process.last_visit + terms.membership + terms.settle
            closes = process.last_visit + terms.membership + terms.reserve - terms.active_ttl
            if not opens <= now < closes:
                continue
            counting = sum(1 for span in process.fallback if span.end > now)
            for _ in range(process.fallback_share - counting):
                span = Span(f"{process.name} fallback", now, now + terms.abandoned)
                process.fallback.append(span)
                self.spans.append(span)
            if process.fallback_share > counting:
                note(f"{now}: {process.name} sends {process.fallback_share - counting} on its own")

    def most_at_once(self) -> tuple[int, float]:
        """The most spans that overlap at one instant, and the first such instant."""
        events = sorted(
            event
            for span in self.spans
            if span.end > span.start
            for event in ((span.start, 1), (span.end, -1))
        )
        most, at, count = 0, -math.inf, 0
        for time, change in events:
            count += change
            if count > most:
                most, at = count, time
        return most, at


def pick(data: st.DataObject, processes: list[Process], label: str) -> Process:
    """One of ``processes``, drawn by name."""
    names = {process.name: process for process in processes}
    return names[data.draw(st.sampled_from(sorted(names)), label=label)]


@settings(max_examples=200, deadline=None)
@given(
    fresh_pause=st.sampled_from([0.0, 1.0]),
    lineup=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),  # the fallback share it asks for
            st.integers(min_value=0, max_value=20).map(float),  # when it starts (p0: at once)
        ),
        min_size=2,
        max_size=4,
    ),
    steps=st.integers(min_value=30, max_value=60),
    data=st.data(),
)
def test_never_more_than_limit_requests_count_at_once(
    fresh_pause: float, lineup: list[tuple[int, float]], steps: int, data: st.DataObject
) -> None:
    """Whatever the processes do (visit, ask, release, lose the store for a while and send on
    their fallback shares as much as allowed, die, leave) and whenever the store loses the
    state, at no instant do more than `limit` requests count at the exchange, so that no
    window of the exchange sees more than `limit` of them.

    A request counts from its grant (or its send on a fallback) until its hold ends, or until
    its grant plus `active_ttl` at the latest. The state is lost only while no process is cut
    off and some process that knew it is up, and every process that is up then visits within
    `fresh_pause` (at once if it is 0, before any newcomer).
    """
    terms = attrs.evolve(TERMS, fresh_pause=fresh_pause)
    budget = Budget(terms, lineup)
    processes = budget.processes
    # Each example weighs the actions its own way (swarm testing): some cut processes off
    # often, some lose the state often, some never do either.
    kinds = ["visit"] * 6
    for kind in ("wait", "cut", "die", "leave", "lose"):
        kinds += [kind] * data.draw(st.integers(min_value=0, max_value=2), label=f"{kind} weight")
    step = 0
    lost_at, due = -math.inf, set[str]()  # the last loss, and who has yet to visit after it
    while step < steps or due:
        step += 1
        if due:
            if fresh_pause > 0:
                left = math.floor((lost_at + fresh_pause - budget.now) * 16)
                budget.now += (
                    data.draw(st.integers(min_value=0, max_value=left), label="after") / 16
                )
            # A newcomer may come first only if it cannot be granted a slot before those that
            # knew the state come back.
            newcomers = [
                process
                for process in processes
                if process.status == "up"
                and process.epoch is None
                and budget.now < lost_at + fresh_pause
            ]
            knew = [process for process in processes if process.name in due]
            process = pick(data, knew + newcomers, "visits after the loss")
            budget.visit(process, data)
            due.discard(process.name)
            continue
        budget.now += data.draw(STEPS, label="time passes")
        budget.start_and_end_cuts()
        kind = data.draw(st.sampled_from(kinds), label="action")
        up = [process for process in processes if process.status == "up"]
        alive = [process for process in processes if process.status in ("up", "cut")]
        if kind == "lose":
            # As the protocol assumes: a process that knew the state is up to say it was lost
            # (a loss after every one of them died, within `settle`, is not covered).
            knowers = [process for process in up if process.epoch is not None]
            if budget.store.text is not None and alive == up and knowers:
                note(f"{budget.now}: the store loses the state")
                budget.store.lose()
                lost_at = budget.now
                due = {process.name for process in up if process.epoch is not None}
        elif kind == "die" and alive:
            budget.die(pick(data, alive, "dies"))
        elif kind == "visit" and up:
            budget.visit(pick(data, up, "visits"), data)
        elif kind == "cut" and up:
            budget.cut(pick(data, up, "is cut off"), data.draw(CUTS, label="for"))
        elif kind == "leave" and up:
            budget.leave(pick(data, up, "leaves"), data)
        budget.send_on_fallbacks()
    for process in processes:
        budget.drop_leases(process)
    most, at = budget.most_at_once()
    counting = [span for span in budget.spans if span.start <= at < span.end]
    assert most <= terms.limit, f"{most} requests count at {at}: {counting}"


@settings(max_examples=50)
@given(now=st.floats(min_value=0.0, max_value=2e9), tickets=st.integers(min_value=1, max_value=5))
def test_the_state_reads_back_as_written_to_the_microsecond(now: float, tickets: int) -> None:
    """A state written and read back is the same, every time a microsecond later at most (the
    store's clock may be Redis's, near 2e9 s): no ticket, lease, hold or member is lost."""
    state = State(epoch="e", created=now, grants_from=now + 1.0)
    state.holds.append(Hold("a", now + 1.0, now + 0.5, 0.01))
    state.active["lease"] = ("a", now + 4.0)
    state.queue += [("a", now, tickets), ("b", now + 0.1, 1)]
    state.members["a"] = (now + 2.0, 5)
    state.departed["b"] = (now + 30.0, 5)
    state.shares.append((now, 15))
    read = decode(encode(state))
    assert read is not None
    assert [(run[0], run[2]) for run in read.queue] == [(run[0], run[2]) for run in state.queue]
    for before, after in [
        (state.created, read.created),
        (state.grants_from, read.grants_from),
        (state.holds[0].others, read.holds[0].others),
        (state.holds[0].own, read.holds[0].own),
        (state.active["lease"][1], read.active["lease"][1]),
        (state.members["a"][0], read.members["a"][0]),
        (state.departed["b"][0], read.departed["b"][0]),
        (state.shares[0][0], read.shares[0][0]),
        *((run[1], read_run[1]) for run, read_run in zip(state.queue, read.queue, strict=True)),
    ]:
        assert before - 1e-6 <= after <= before + 2e-6
