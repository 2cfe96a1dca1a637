"""The limiter of a budget shared through a store: one driver task per limiter visits the store
for everything the process has to tell and to ask, and falls back on the process's own share of
the budget while the store is out of reach (see ``rules`` for the protocol).

What a process keeps, in its own clock:

- its leases in flight, renewed at every visit (at least every :attr:`Terms.renew`);
- until when each slot it released may count at the longest, to hand back to a store that lost
  them;
- what bounds its membership in the store: it certainly lasts until the store's clock passes a
  membership past the last visit that was written (read no earlier than that visit was sent),
  and certainly ends a membership after the last clock reading that came back. Its fallback
  share is used only between those bounds as the rules require: from a membership after the last
  reading, plus :attr:`Terms.settle`, until a membership after the last written visit, plus
  :attr:`Terms.reserve`, less the time its last request may take to stop counting.

One driver task does every visit: the waiting requests, releases and renewals of a moment
go together in one transaction.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Self

from ..._errors import BlockedError, BudgetUnavailableError, SessionClosedError
from ..._instrument import BudgetStoreChanged, StoreChange, emit, instrumented
from ..._log import budget_log as _log
from ..contract import Lease, LeaseExpiredError, Limiter
from ..core import GROUPS, Paced, Pacer, Settings
from ..window import SlidingWindowLimiter
from .rules import Release, Reply, State, Terms, Visit, decode, encode, fresh, visit
from .store import Keep, Store, StoreRefusedError, StoreUnavailableError

__all__ = ["SharedLimiter", "account_hash"]

#: How often to try the store again while it is out of reach, in seconds.
_RETRY: Final = 0.5
#: How long a claim of an access key's budget name lasts without being renewed, in seconds.
_CLAIM_FOR: Final = 30.0
#: The monotonic clock's resolution: an event loop may run a timer this much early.
_RESOLUTION: Final = time.get_clock_info("monotonic").resolution
#: How long the requests of a process with no fallback share of its own wait for a store out of
#: reach before they are refused (not sent), in seconds.
_WAIT_FOR_STORE: Final = 5.0


class SharedLimiter(Paced):
    """A :class:`~upbit_cancel.Limiter` whose budget lives in a :class:`Store` that several
    processes share. ``HostLimiter`` and ``RedisLimiter`` are this with their stores."""

    __slots__ = (
        "__weakref__",
        "_account",
        "_active",
        "_adopt",
        "_ask_at",
        "_claimed",
        "_closed",
        "_confirmed_sent",
        "_driver",
        "_epoch",
        "_fallback",
        "_fallback_limit",
        "_full",
        "_heartbeat",
        "_in_line",
        "_joined_at",
        "_latest_read",
        "_left",
        "_loop",
        "_lost_holds",
        "_name",
        "_outage",
        "_own_holds",
        "_owns_store",
        "_pacer",
        "_pending",
        "_preparing",
        "_process",
        "_releases",
        "_renew_at",
        "_retry_at",
        "_seen_total",
        "_share",
        "_shrunk",
        "_siblings",
        "_store",
        "_tell_by",
        "_telling",
        "_terms",
        "_visiting",
        "_waiters",
        "_wake",
        "group",
    )

    #: The rate-limit group whose budget this is.
    group: str

    def __init__(
        self,
        store: Store,
        *,
        account: str | None,
        settings: Settings,
        fallback_limit: int,
        heartbeat: bool,
        group: str = "default",
        rng: random.Random | None = None,
    ) -> None:
        self.group = group
        self._store = store
        self._owns_store = True
        self._account = account
        self._pacer = Pacer(settings, group=group, rng=rng)
        self._terms = Terms(
            limit=settings.limit,
            unit=settings.unit,
            abandoned=settings.abandoned_hold,
            fresh_pause=store.fresh_pause,
        )
        self._fallback_limit = fallback_limit
        self._heartbeat = heartbeat
        self._process = uuid.uuid4().hex[:16]
        self._name: str | None = None
        self._claimed = -math.inf
        # What this process knows of the state: its epoch, its share, the total of shares.
        self._epoch: str | None = None
        self._share = 0
        self._seen_total = 0
        self._joined_at = math.inf
        # Bounds of its membership: the send time of the last visit written, and the time the
        # last clock reading came back.
        self._confirmed_sent = -math.inf
        self._latest_read = -math.inf
        self._waiters: dict[str, asyncio.Future[Lease]] = {}
        # Grants whose slot frees a moment later: handed to their waiters then.
        self._pending: dict[str, tuple[asyncio.TimerHandle, asyncio.Future[Lease], Lease]] = {}
        # Its requests the store's line holds, oldest first, as of the last visit; and whether
        # one of them no longer waits (to be told soon).
        self._in_line: list[str] = []
        self._shrunk = False
        self._releases: list[tuple[str, float, float, float, Any]] = []
        # When the releases pending must be told at the latest (loop time; inf: none pending).
        self._tell_by = math.inf
        self._adopt: list[float] = []
        self._lost_holds = False
        self._active: set[str] = set()
        # Until when each slot this process released may count, at the longest (loop time).
        self._own_holds: collections.deque[float] = collections.deque()
        self._ask_at = -math.inf
        self._renew_at = -math.inf
        self._full = False
        # While the store is out of reach: since when, and the next try.
        self._outage: float | None = None
        self._retry_at = -math.inf
        self._fallback: SlidingWindowLimiter | None = None
        self._driver: asyncio.Task[None] | None = None
        self._visiting = False
        # Whether the visit under way carries releases (they are not told until it ends).
        self._telling = False
        self._wake: asyncio.Event | None = None
        self._closed = False
        # Closed and the leaving visit told (or given up): nothing more reaches the store.
        self._left = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._siblings: dict[str, SharedLimiter] = {}
        self._preparing: set[asyncio.Task[None]] = set()

    # -- the settings (see Paced) ---------------------------------------------------------

    @property
    def fallback_share(self) -> int:
        """Requests per window this process may send on its own while the store is out of
        reach (0: it waits for the store)."""
        return self._share

    # -- the contract ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Requests let out per window when idle, for all processes together (``limit``)."""
        return self.limit

    @property
    def idle(self) -> bool:
        """Whether this process holds no lease, waits for none and has told the store
        everything (the slots it released are held in the store)."""
        fallback_idle = self._fallback is None or self._fallback.idle
        busy = self._active or self._waiters or self._pending or self._releases or self._telling
        return not busy and fallback_idle

    @property
    def degraded(self) -> bool:
        """Whether the store is out of reach (this process then spends its fallback share, or
        waits)."""
        return self._outage is not None

    def bind(self, access_key: str) -> None:
        """Key the budget by ``access_key`` (hashed) unless an account name was given."""
        if self._name is None:
            self._name = _hash(f"key:{access_key}")
        if self._account is None:
            self._account = _hash(f"key:{access_key}")
        for sibling in self._siblings.values():
            sibling.bind(access_key)

    def for_group(self, group: str) -> Limiter:
        """The same account's budget for another rate-limit ``group``, in the same store (one
        limiter per group, closed with this one)."""
        if group == self.group:
            return self
        sibling = self._siblings.get(group)
        if sibling is None:
            limit, window = GROUPS[group]
            settings = Settings.checked(
                limit,
                window,
                margin=self.margin,
                max_transit=self.max_transit,
                hold=self.hold,
            )
            sibling = self._sibling(settings, group)
            self._siblings[group] = sibling
        return sibling

    def _sibling(self, settings: Settings, group: str) -> SharedLimiter:
        # Of the same class as this one (a HostLimiter's sibling is a HostLimiter).
        sibling = object.__new__(type(self))
        SharedLimiter.__init__(
            sibling,
            self._store,
            account=self._account,
            settings=settings,
            fallback_limit=min(self._fallback_limit, max(1, settings.limit // 6)),
            heartbeat=self._heartbeat,
            group=group,
        )
        sibling._name = self._name
        sibling._owns_store = False
        return sibling

    def try_acquire(self) -> Lease | None:
        """``None``: a grant always takes a visit to the store (or the fallback's turn)."""
        self._pacer.check_grant(self._bind().time())
        return None

    async def acquire(self) -> Lease:
        """Wait for a slot of the shared budget; raises :class:`BlockedError` while blocked."""
        loop = self._bind()
        self._pacer.check_grant(loop.time())
        ticket = uuid.uuid4().hex[:12]
        waiter: asyncio.Future[Lease] = loop.create_future()
        self._waiters[ticket] = waiter
        self._nudge(at_once=True)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._waiters.pop(ticket, None)
            pending = self._pending.pop(ticket, None)
            if pending is not None:
                pending[0].cancel()
                pending[2].release()  # granted ahead of its slot, never used
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().release()  # granted, never used
            elif not self._closed:
                self._shrunk = True
                self._nudge(at_once=False)
            raise

    def departing(self, lease: Lease) -> None:
        """Refuse a request about to leave while the account is blocked, or on a lease granted
        too long ago to be counted still (it is asked for again)."""
        now = self._bind().time()
        self._pacer.check_departure(now)
        if lease.handle is not None and now - lease.granted_at > 2 * self._terms.renew:
            raise LeaseExpiredError

    async def prepare_budget(self) -> None:
        """Open the store now (the file, or Redis's connection and scripts), claim the access
        key's name in it, and, where a new budget grants nothing at first (Redis), have the
        budget made if the store holds none and this process never knew one, so that the first
        visit of a burst is one transaction and finds a budget past its first pause (see
        :class:`~upbit_cancel._limiter.contract.Prepares`). It joins nothing (no share of the
        budget is set aside for this process) and writes no budget that exists. Closing the
        limiter ends it."""
        loop = self._bind()
        task = loop.create_task(self._prepare(loop), name=f"{type(self).__name__} prepare")
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)
        task.add_done_callback(_retrieved)
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task})  # nothing of it outlives its caller
            raise
        if not task.cancelled():  # cancelled: by aclose(), which its caller hears nothing of
            task.result()

    async def _prepare(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._name is None:
            return  # not bound to an access key yet: nothing is keyed
        try:
            await self._store.open()
            if not self._closed:
                await self._claim_name(loop)
            if not self._closed and self._epoch is None and self._terms.fresh_pause > 0:
                # Only a first pause is worth a transaction now: a budget this process knew is
                # the visits' to judge, and a store that pauses nothing gains nothing from it.
                await self._store.transact(self._key(), self._made)
        except (StoreUnavailableError, StoreRefusedError) as error:
            # The first visit meets it again, and deals with it as it always does.
            _log.debug("the budget's store was not opened ahead (%s)", type(error).__name__)

    def observe_handshake(self, started: float, completed: float, round_trips: int) -> None:
        """Learn the path's floor from a handshake (see :class:`PathAware`)."""
        self._pacer.observe_handshake(started, completed, round_trips)

    def release(self, lease: Lease) -> None:
        """Learn from the answer; tell the store how long the slot stays taken: within
        :attr:`Terms.poll`, with the other answers of that moment in one visit; at once if the
        answer changed the account's pace (a pause, a block, a lower share), if the slot is free
        now, or if no other lease is in flight."""
        handle = lease.handle
        loop = self._loop if self._closed else self._bind()
        if self._left or loop is None or loop.is_closed():
            if handle is not None:
                self._active.discard(handle)  # its slot expires in the store on its own
            return
        now = loop.time()
        release = self._pacer.release(lease, now, own_full=self._full)
        if handle is None:
            return  # a fallback lease: the fallback holds its slot until the store takes it
        self._active.discard(handle)
        longest = self._pacer.longest_hold(lease, now)
        holds = self._own_holds
        while holds and holds[0] <= now:
            holds.popleft()
        holds.append(longest)
        own = release.until if release.floor is not None else longest
        decision = release.decision
        self._releases.append((handle, longest, own, release.floor or 0.0, decision))
        paced = decision.pause_until is not None or decision.block_until is not None
        if paced or decision.share or longest <= now or not self._active:
            # At once: what the other processes must follow, a slot free now (its request never
            # left), or the last lease in flight (no answer left to wait for).
            self._tell_by = -math.inf
        else:
            # A slot told late is held longer in the store meanwhile, never shorter: the answers
            # of a moment go together in one visit, told within a poll (when the others waiting
            # ask again) and long before the slot frees, about a window after its request.
            self._tell_by = min(self._tell_by, now + self._terms.poll)
        if not self._closed:
            self._nudge(at_once=False)
        # Closed: told by the leaving visit, still to come.

    def remaining_holds(self) -> list[float]:
        """Seconds until each slot this process took frees, at the longest (a lease in flight
        counts as abandoned now): what a successor in this process takes over."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return []
        now = loop.time()
        held = [until - now for until in self._own_holds if until > now]
        held += [self.settings.abandoned_hold] * len(self._active)
        if self._fallback is not None:
            held += self._fallback.remaining_holds()
        return held

    def hold_slots(self, seconds: list[float]) -> None:
        """Count slots taken through another limiter of this process as held in the store, each
        for so many seconds from now (told at the next visit)."""
        self._adopt.extend(duration for duration in seconds if duration > 0)
        self._nudge(at_once=True)

    # -- lifecycle ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until what this process's leases said so far has reached the store (or the
        store failed: then the limiter falls back). A test, or a process about to hand over to
        another, may want that first."""
        loop = self._bind()
        while (self._releases or self._telling) and not self._closed and self._outage is None:
            if self._releases:
                self._tell_by = -math.inf
            self._nudge(at_once=True)
            await asyncio.sleep(0.001)
            if loop.is_closed():  # pragma: no cover - defensive
                return

    async def aclose(self) -> None:
        """Leave the budget: waiters are refused, the releases told, the membership ended."""
        if self._closed:
            return
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(
                    SessionClosedError(
                        "this limiter was closed while the request waited for a slot; it was not "
                        "sent"
                    )
                )
        self._waiters.clear()
        self._closed = True
        for handle, waiter, lease in self._pending.values():
            handle.cancel()
            if not waiter.done():
                waiter.set_exception(
                    SessionClosedError(
                        "this limiter was closed while the request waited for its slot; it was "
                        "not sent"
                    )
                )
            lease.release()  # never sent: told by the leaving visit
        self._pending.clear()
        preparing = tuple(self._preparing)
        for task in preparing:
            task.cancel()  # it has nothing to tell: the store only opened, a claim, a budget made
        driver = self._driver
        try:
            if preparing:
                await asyncio.wait(preparing)
            if driver is not None and self._visiting:
                # A visit under way ends first (every store bounds its own time): cancelled, it
                # may be written with its reply lost, and the leaving visit would then tell its
                # releases again, each slot held twice.
                await asyncio.wait({driver})
        finally:
            # Whatever happens to this call meanwhile, the limiter lets go of the store.
            await self._leave(driver)

    async def _leave(self, driver: asyncio.Task[None] | None) -> None:
        if driver is not None:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await driver
        # What the leaving visit carries is all it tells: a lease released after it expires in
        # the store on its own.
        leaving = self._leaving()
        self._left = True
        self._releases.clear()
        if self._loop is not None and self._epoch is not None and self._outage is None:
            with contextlib.suppress(StoreUnavailableError, StoreRefusedError):
                await self._store.transact(self._key(), self._change(leaving))
        for sibling in self._siblings.values():
            await sibling.aclose()
        if self._owns_store:
            await self._store.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the driver --------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self.idle:
                raise RuntimeError(
                    f"this {type(self).__name__} is in use in another event loop; create one "
                    "per loop"
                )
            self._loop = loop
            self._wake = asyncio.Event()
            self._driver = None
        if self._closed:
            raise SessionClosedError(f"this {type(self).__name__} is closed; create a new one")
        return loop

    def _nudge(self, *, at_once: bool) -> None:
        """Make sure the driver runs; ``at_once``: visit without waiting for the next turn."""
        loop = self._bind()
        if at_once:
            self._ask_at = -math.inf
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive(), name=f"{type(self).__name__} driver")
            self._driver.add_done_callback(_report_failure)
        elif self._wake is not None:
            self._wake.set()

    def _key(self) -> str:
        return self._store.key(self._account or _hash("key:unbound"), self.group)

    async def _drive(self) -> None:
        """Visit the store whenever there is something to tell or to ask, until nothing is left
        (or, with a heartbeat, until closed). Every waiter is answered: with a lease, or with
        whatever stopped the driver."""
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        try:
            while not self._closed:
                now = loop.time()
                due = self._due(now)
                if due <= now:
                    wake.clear()
                    if self._outage is not None and now < self._retry_at:
                        await self._serve_from_fallback(loop)
                    else:
                        await self._visit(loop)
                    await asyncio.sleep(0)
                    continue
                if due == math.inf:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - now):
                        await wake.wait()
                wake.clear()
        except asyncio.CancelledError:
            for waiter in self._waiters.values():
                waiter.cancel()
            self._waiters.clear()
            raise
        except Exception as error:
            self._refuse(error)
            raise

    def _due(self, now: float) -> float:
        """When the driver has something to do next (``inf``: nothing, ever)."""
        if self._outage is not None:
            if self._waiters or self._releases or self._active or self._heartbeat:
                if self._waiters and self._fallback_open(now):
                    return now
                return self._retry_at
            return math.inf
        if self._shrunk or self._adopt or self._lost_holds:
            return now
        due = self._tell_by if self._releases else math.inf
        if self._waiters:
            due = min(due, self._ask_at)
        if self._active or (self._heartbeat and self._epoch is not None):
            due = min(due, self._renew_at)
        return due

    async def _visit(self, loop: asyncio.AbstractEventLoop) -> None:
        """One visit: tell and ask everything pending, apply the reply."""
        # The oldest waiters, a window's worth: the line in the store (and so each visit's
        # work) stays short however many requests wait here; the others join as those go.
        waiting = tuple(
            itertools.islice(
                (ticket for ticket, waiter in self._waiters.items() if not waiter.done()),
                self.limit,
            )
        )
        still = set(waiting)
        gone = tuple(place for place, ticket in enumerate(self._in_line) if ticket not in still)
        releases, self._releases = self._releases, []
        self._tell_by = math.inf
        shrunk, self._shrunk = self._shrunk, False
        adopt, self._adopt = self._adopt, []
        now = loop.time()
        if self._lost_holds:
            self._lost_holds = False
            adopt += [until - now for until in self._own_holds if until > now]
        block = self._block_report(now)
        fallback = self._fallback
        from_fallback: list[float] = []
        if fallback is not None:
            # Back from the fallback if this visit succeeds: its slots come with it, so that
            # the grants of this very visit count them (and its block, if it met one).
            from_fallback = fallback.remaining_holds()
            if fallback.blocked_until - now > (block[0] if block is not None else 0.0):
                block = (fallback.blocked_until - now, "blocked while on the fallback")
        arriving = Visit(
            process=self._process,
            epoch=self._epoch,
            old_share=self._share,
            seen_total=self._seen_total,
            wanted_share=self._fallback_limit,
            floor=self._pacer.estimate(now),
            releases=tuple(self._told(release, now) for release in releases),
            renew=tuple(self._active),
            adopt=(*adopt, *from_fallback),
            block=block,
            waiting=waiting,
            gone=gone,
        )
        self._visiting = True
        self._telling = bool(releases)
        try:
            await self._claim_name(loop)
            done = await self._store.transact(self._key(), self._change(arriving))
        except StoreUnavailableError as error:
            if error.read_at is not None:
                # Its write may have renewed the membership: the fallback waits from there.
                self._latest_read = max(self._latest_read, error.read_at)
            # Told again at the next visit: held longer meanwhile, never shorter.
            self._releases[:0] = releases
            self._tell_by = -math.inf
            self._shrunk = self._shrunk or shrunk
            self._adopt[:0] = adopt
            self._fall_back(loop, error)
            return
        except StoreRefusedError as error:
            # Nothing can be told to a store that refuses this process: its leases expire there.
            self._refuse(BudgetUnavailableError(str(error)))
            return
        except asyncio.CancelledError:
            # Closed mid-visit: what it carried goes with the leaving visit (told twice at
            # worst, if this one was written: a slot then held a little longer, never shorter).
            self._releases[:0] = releases
            self._tell_by = -math.inf
            self._shrunk = self._shrunk or shrunk
            self._adopt[:0] = adopt
            raise
        finally:
            self._visiting = self._telling = False
        self._back(loop)
        reply = done.result
        self._latest_read = max(self._latest_read, done.read_at)
        self._confirmed_sent = max(self._confirmed_sent, done.sent_at)
        granted = set(reply.granted)
        self._in_line = [ticket for ticket in waiting if ticket not in granted]
        self._apply(loop, reply, done.sent_at, done.read_at)

    def _made(self, text: str | None, now: float) -> tuple[str | Keep, None]:
        """The budget made (:func:`rules.fresh`) if the store holds none and this process never
        knew one; else nothing written (a state that cannot be read is left for a visit)."""
        if text is None and self._epoch is None:
            return encode(fresh(now, self._terms, _new_epoch)), None
        return Keep.KEEP, None

    def _change(self, arriving: Visit) -> Callable[[str | None, float], tuple[str, Reply]]:
        terms = self._terms

        def change(text: str | None, now: float) -> tuple[str, Reply]:
            state: State | None = None if text is None else decode(text)
            state, reply = visit(state, now, terms, arriving, _new_epoch)
            return encode(state), reply

        return change

    def _leaving(self) -> Visit:
        now = self._loop.time() if self._loop is not None else 0.0
        return Visit(
            process=self._process,
            epoch=self._epoch,
            old_share=self._share,
            seen_total=self._seen_total,
            wanted_share=0,
            floor=None,
            releases=tuple(self._told(release, now) for release in self._releases),
            adopt=tuple(self._adopt),
            leave=True,
        )

    def _told(self, release: tuple[str, float, float, float, Any], now: float) -> Release:
        """A pending release as durations from ``now``."""
        handle, longest, own, floor, decision = release
        return Release(
            lease=handle,
            others=max(0.0, longest - now),
            own=max(0.0, own - now),
            floor=floor,
            pause=0.0 if decision.pause_until is None else max(0.0, decision.pause_until - now),
            block=0.0 if decision.block_until is None else max(0.0, decision.block_until - now),
            block_reason=decision.block_reason,
            share=tuple((since - now, slots) for since, slots in decision.share),
        )

    def _block_report(self, now: float) -> tuple[float, str] | None:
        policy = self._pacer.policy
        if policy.blocked_until > now:
            return (policy.blocked_until - now, policy.block_reason)
        return None

    def _apply(
        self, loop: asyncio.AbstractEventLoop, reply: Reply, sent_at: float, read_at: float
    ) -> None:
        now = loop.time()
        if reply.epoch != self._epoch:
            if self._epoch is not None:
                _log.warning(
                    "the %s budget's state in %s was lost (evicted, flushed or replaced); "
                    "nothing is granted until what was granted before can no longer count",
                    self.group,
                    self._store.label,
                )
                self._report("lost")
            self._epoch = reply.epoch
            self._joined_at = sent_at
        if reply.lost:
            self._lost_holds = True  # hand back this process's own holds at once
        self._share = reply.share
        self._seen_total = reply.total
        self._renew_at = now + self._terms.renew
        policy = self._pacer.policy
        if reply.blocked is not None:
            seconds, reason = reply.blocked
            policy.block(now + seconds, reason)
            self._refuse(policy.blocked_error(now))
            return
        # Another process's 429 may have lowered the account's share: this one's follows.
        policy.lower_share(reply.share_now, now)
        self._full = reply.taken >= reply.share_now
        fresh = now - sent_at <= self._terms.renew
        for ticket, wait in zip(reply.granted, reply.not_before, strict=True):
            # Counted from its slot's freeing, as early as the store's clock allows.
            lease = Lease(self, sent_at + wait, loop.time, handle=ticket)
            self._active.add(ticket)
            waiter = self._waiters.pop(ticket, None)
            if waiter is None or waiter.done() or not fresh:
                if waiter is not None and not waiter.done():
                    self._waiters[ticket] = waiter  # granted too late to be used: ask again
                lease.release()  # never sent
            elif wait > 0:
                # Its slot frees ``wait`` after the store read its clock, which was no later
                # than the reading came back: handed over from then on, never sooner.
                handle = loop.call_at(read_at + wait, self._hand_over, ticket, read_at + wait)
                self._pending[ticket] = (handle, waiter, lease)
            else:
                waiter.set_result(lease)
        if reply.retry is not None:
            self._ask_at = now + min(max(reply.retry, 0.001), self._terms.renew)
        elif self._waiters:
            self._ask_at = now  # a waiter that came meanwhile

    def _hand_over(self, ticket: str, when: float) -> None:
        """A grant's slot has freed (at ``when``): its waiter may send."""
        pending = self._pending.get(ticket)
        if pending is None:
            return
        _, waiter, lease = pending
        loop = self._loop
        if loop is not None and loop.time() < when:
            # The loop runs a timer up to its clock's resolution early (15.6 ms on Windows).
            handle = loop.call_at(when + _RESOLUTION, self._hand_over, ticket, when)
            self._pending[ticket] = (handle, waiter, lease)
            return
        del self._pending[ticket]
        if waiter.done():
            lease.release()  # given up meanwhile: never sent
        else:
            waiter.set_result(lease)

    async def _claim_name(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refuse, before anything is sent, to keep an access key's budget under two names."""
        name = self._name
        if name is None or loop.time() < self._claimed + _CLAIM_FOR / 3:
            return
        other = await self._store.claim(f"{name}:{self.group}", self._key(), _CLAIM_FOR)
        if other is not None:
            raise StoreRefusedError(
                "this access key's budget is already kept under another name in "
                f"{self._store.label} (another process gives a different account= or prefix=); "
                "give every process of one key the same account name, or none"
            )
        self._claimed = loop.time()

    # -- while the store is out of reach -----------------------------------------------------

    def _fall_back(self, loop: asyncio.AbstractEventLoop, error: StoreUnavailableError) -> None:
        now = loop.time()
        self._retry_at = now + _RETRY
        if self._outage is not None:
            if self._fallback is not None and now >= self._fallback_until():
                self._refuse(
                    BudgetUnavailableError(
                        f"{error}, for {now - self._outage:.0f} s; this process's share of the "
                        f"{self.group} budget is no longer kept for it by the others, so "
                        "nothing was sent; try again once the store answers"
                    )
                )
            elif self._fallback is None and now - self._outage >= _WAIT_FOR_STORE:
                self._refuse(
                    BudgetUnavailableError(
                        f"{error}, for {now - self._outage:.0f} s; this process has no share "
                        f"of the {self.group} budget of its own while it is out of reach (it "
                        "was not a member of the budget long enough, or its share is 0), so "
                        "nothing was sent; try again once the store answers"
                    )
                )
            return
        self._outage = now
        share = self._usable_share()
        if share > 0:
            fallback = SlidingWindowLimiter.from_settings(
                self.settings.with_limit(share), group=self.group
            )
            # Its share starts with what this process took through the store: those requests
            # count at the exchange in the windows to come.
            fallback.hold_slots(
                [until - now for until in self._own_holds if until > now]
                + [self.settings.abandoned_hold] * len(self._active)
            )
            self._fallback = fallback
            self._report("out_of_reach", share)
            _log.warning(
                "%s; this process allows itself %d requests per %g s of the %s budget from "
                "%.1f s on, until it answers again",
                error,
                share,
                self.window,
                self.group,
                max(0.0, self._fallback_from() - now),
            )
        else:
            self._report("out_of_reach", 0)
            _log.warning(
                "%s; this process has no share of the %s budget of its own and waits for it",
                error,
                self.group,
            )

    def _usable_share(self) -> int:
        """The fallback share, if this process was a member long enough that every other
        member saw it (they renew every :attr:`Terms.renew`)."""
        if self._confirmed_sent - self._joined_at < 2 * self._terms.renew:
            return 0
        return self._share

    def _fallback_from(self) -> float:
        """From when the fallback share may be used: the membership certainly over, and every
        slot granted before then no longer counting."""
        return self._latest_read + self._terms.membership + self._terms.settle

    def _fallback_until(self) -> float:
        """Until when it may be used: the reservation certainly on, and the last request sent
        on it done counting before the reservation ends."""
        terms = self._terms
        return self._confirmed_sent + terms.membership + terms.reserve - terms.active_ttl

    def _fallback_open(self, now: float) -> bool:
        return self._fallback is not None and self._fallback_from() <= now < self._fallback_until()

    async def _serve_from_fallback(self, loop: asyncio.AbstractEventLoop) -> None:
        """Grant the oldest waiter a slot of the fallback share, unless the store is due for
        another try first."""
        fallback = self._fallback
        if fallback is None or not self._waiters or not self._fallback_open(loop.time()):
            await _sleep_until(loop, self._retry_at, self._wake)
            return
        try:
            async with asyncio.timeout_at(self._retry_at):
                lease = await fallback.acquire()
        except TimeoutError:
            return
        except BlockedError as error:
            self._refuse(error)
            return
        for ticket in list(self._waiters):
            waiter = self._waiters.pop(ticket)
            if not waiter.done():
                waiter.set_result(lease)
                self._shrunk = True  # it may be in the store's line from before
                return
        lease.release()  # every waiter gave up meanwhile: never sent

    def _back(self, loop: asyncio.AbstractEventLoop) -> None:
        """The store answered again: the fallback is done with."""
        if self._outage is None:
            return
        self._outage = None
        fallback, self._fallback = self._fallback, None
        if fallback is not None and fallback.blocked_until > loop.time():
            # Its slots and its block went with the visit that found the store again.
            self._pacer.policy.block(fallback.blocked_until, "blocked while on the fallback")
        _log.warning(
            "%s answers again; the shared %s budget is back in use", self._store.label, self.group
        )
        self._report("back")

    def _report(self, change: StoreChange, share: int | None = None) -> None:
        if instrumented():
            emit(BudgetStoreChanged(self.group, self._store.kind, change, share))

    def _refuse(self, error: BaseException) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._waiters.clear()

    def __repr__(self) -> str:
        state = "falling back" if self._outage is not None else "shared"
        return (
            f"{type(self).__name__}(limit={self.limit!r}, window={self.window!r}, "
            f"group={self.group!r}, {state}, in_flight={len(self._active)})"
        )


async def _sleep_until(
    loop: asyncio.AbstractEventLoop, when: float, wake: asyncio.Event | None
) -> None:
    delay = when - loop.time()
    if delay <= 0:
        return
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()
    wake.clear()


def _new_epoch() -> str:
    return uuid.uuid4().hex[:16]


def account_hash(account: str) -> str:
    """The name a budget is kept under for ``account=``: never the name itself."""
    return _hash(f"account:{account}")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _retrieved(task: asyncio.Task[None]) -> None:
    """Read what a task raised, so that asyncio never reports it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _report_failure(task: asyncio.Task[Any]) -> None:
    """Log what ended a driver unexpectedly: nothing fails in silence."""
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.error("%s failed", task.get_name(), exc_info=error)
