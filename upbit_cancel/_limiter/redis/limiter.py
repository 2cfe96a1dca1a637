"""RedisLimiter: one budget for every process and host of an account, kept in Redis.

The keys and scripts are laid out in ``scripts``. A slot is held by an active lease for
``max_transit`` plus a window past its last renewal, so a process that dies costs the others
that much capacity, never a stuck budget; a live process renews its active leases twice a
second. Requests waiting for a slot queue in Redis in the order they reached it, and a slot goes
to the head of that queue: no process starves another. A waiting process asks again when Redis
says its turn can come at the earliest (or shortly, while the slots are held by requests still
in flight), not blindly. A hold set from a process's path floor subtracts less when another
process's path is faster, and is lengthened when such a process joins later (``acquire.lua``).

When Redis cannot be reached, answers slower than its timeout or answers with an error (a
read-only replica after a failover, out of memory, a missing permission), the limiter falls back
on a local :class:`SlidingWindowLimiter` with a conservative share of the budget
(``fallback_limit`` per window), logs it once, and tries Redis again every second. One task, the
driver, grants every slot of the process, from Redis or from the fallback, so no waiter is left
behind: when Redis is back, the driver hands it the slots the fallback still holds, and from then
on every waiter, those that waited on the fallback included, is served by Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..._check import seconds, whole_number
from ..._errors import BlockedError, SessionClosedError
from ..._log import log as _log
from ..contract import Lease, Limiter
from ..core import GROUPS, HoldRule, Pacer, Settings
from ..window import SlidingWindowLimiter
from .scripts import AcquireArgs, AdoptArgs, Args, ReleaseArgs, RenewArgs, Scripts

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisLimiter"]


#: How often a process renews its active leases, in seconds.
_RENEW_EVERY = 0.5
#: A waiting ticket whose process has not asked for it for this long is dropped, in seconds.
_TICKET_TTL = 1.5
#: How soon to ask again while every slot is held by a request still in flight, in seconds.
_POLL = 0.02
#: The longest a waiting process goes without asking again, in seconds: requests ahead of its
#: own may leave the line or free their slots unsent, and a share halved after a 429 grows back.
_ASK_AT_LEAST_EVERY = 0.1
#: How often to try Redis again while falling back, in seconds.
_RETRY_REDIS = 1.0
#: A floor another process reported is used for this long, in seconds.
_FLOOR_TTL = 10.0


def _redis_module() -> Any:
    try:
        import redis.asyncio
    except ImportError:
        raise ImportError(
            "RedisLimiter needs redis-py: install the 'redis' extra, "
            "such as pip install -e '.[redis]' from a clone of upbit_cancel"
        ) from None
    return redis


def _account_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class RedisLimiter:
    """One budget for every process and host of an account: at most ``limit`` requests reach the
    exchange in any window, whatever process sends them.

    Example::

        limiter = RedisLimiter("redis://127.0.0.1:6379/0")
        async with UpbitSession(access_key, secret_key, region="sg", limiter=limiter) as session:
            await BatchCanceller(session).cancel(uuids=ids)
        await limiter.aclose()

    The budget is keyed by the account: by default a hash of the access key of the first session
    that uses the limiter. Processes that use different API keys of one account share a budget
    only when given the same ``account=`` name. Holds follow the same rule as
    :class:`SlidingWindowLimiter` (network-aware); each process learns its own
    path, and a process subtracts less when another's path is faster (or not known yet: a process
    that has not learned its path may be next to the exchange).

    Args:
        redis: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client (the caller closes it).
        account: A name for the account's budget, shared by every process that gives it.
        limit, window, margin, max_transit, hold: As for :class:`SlidingWindowLimiter`.
        prefix: The first part of every key.
        timeout: Seconds a Redis call may take before Redis counts as unreachable, whether the
            limiter made the client or was given it.
        fallback_limit: Requests per window this process allows itself while Redis is
            unreachable: a conservative share, ``limit`` divided by the number of processes of
            the account (default: a sixth of ``limit``, 5 of 30).
    """

    __slots__ = (
        "__weakref__",
        "_account",
        "_active",
        "_client",
        "_closed",
        "_degraded",
        "_driver",
        "_dropped",
        "_failures",
        "_fallback",
        "_full",
        "_loop",
        "_own_holds",
        "_owns_client",
        "_pacer",
        "_prefix",
        "_process",
        "_renewer",
        "_retry_at",
        "_scripts",
        "_siblings",
        "_tasks",
        "_timeout",
        "_waiters",
        "group",
    )

    #: The rate-limit group whose budget this is.
    group: str

    def __init__(
        self,
        redis: str | redis.asyncio.Redis,
        *,
        account: str | None = None,
        limit: int = 30,
        window: float = 1.0,
        margin: float = 0.01,
        max_transit: float = 2.0,
        hold: HoldRule = "arrival",
        prefix: str = "upbit_cancel",
        timeout: float = 0.5,
        fallback_limit: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        module = _redis_module()
        timeout = seconds("timeout", timeout)
        if isinstance(redis, str):
            if not redis.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("redis must be a redis:// URL or a redis.asyncio.Redis client")
            self._client = module.asyncio.Redis.from_url(
                redis, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._owns_client = True
        elif isinstance(redis, module.asyncio.Redis):
            self._client = redis
            self._owns_client = False
        else:
            raise TypeError(
                "redis must be a redis:// URL or a redis.asyncio.Redis client, "
                f"not {type(redis).__name__}"
            )
        if account is not None and (not isinstance(account, str) or not account):
            raise TypeError("account must be a non-empty string naming the account's budget")
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be a non-empty string without braces")
        settings = Settings.checked(
            limit, window, margin=margin, max_transit=max_transit, hold=hold
        )
        if fallback_limit is None:
            fallback_limit = max(1, settings.limit // 6)
        fallback_limit = whole_number(
            "fallback_limit", fallback_limit, least=1, most=settings.limit
        )
        self.group = "default"
        self._pacer = Pacer(settings, rng=rng)
        self._fallback = SlidingWindowLimiter.from_settings(settings.with_limit(fallback_limit))
        self._timeout = timeout
        self._prefix = prefix
        self._account = None if account is None else _account_hash(f"account:{account}")
        self._process = uuid.uuid4().hex[:16]
        self._full = False
        # Any of these from a Redis call: fall back (errors in the answer included, such as a
        # read-only replica's after a failover, or OOM).
        self._failures: tuple[type[BaseException], ...] = (
            module.exceptions.RedisError,
            OSError,
            TimeoutError,
        )
        # Tickets waiting for a slot, oldest first (the driver serves them in this order).
        self._waiters: dict[str, asyncio.Future[Lease]] = {}
        # Tickets no longer waiting that may still be in line in Redis, with when they left.
        self._dropped: deque[tuple[float, str]] = deque()
        # Until when each slot this process released to Redis lately stays taken (loop time, at
        # the longest the hold could be), for the fallback to count if Redis fails.
        self._own_holds: deque[float] = deque()
        self._active: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._driver: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._degraded = False
        self._retry_at = -math.inf
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts = Scripts(self._client)
        # The same account's limiters of other rate-limit groups, by group.
        self._siblings: dict[str, RedisLimiter] = {}

    # -- the settings ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The limit, window, margin, ``max_transit`` and hold rule."""
        return self._pacer.settings

    @property
    def limit(self) -> int:
        """Requests allowed per window, for all processes together."""
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

    # -- the contract ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Requests let out per window when idle, for all processes together (``limit``)."""
        return self.limit

    @property
    def idle(self) -> bool:
        """Whether this process holds no lease and waits for none (the budget lives in Redis)."""
        return not self._active and not self._waiters and self._fallback.idle

    @property
    def degraded(self) -> bool:
        """Whether Redis is unreachable and the local fallback share is in use."""
        return self._degraded

    def bind(self, access_key: str) -> None:
        """Key the budget by ``access_key`` (hashed) unless an account name was given."""
        if self._account is None:
            self._account = _account_hash(f"key:{access_key}")
        for sibling in self._siblings.values():
            sibling.bind(access_key)

    def for_group(self, group: str) -> Limiter:
        """The same account's budget for another rate-limit ``group``, in the same Redis (one
        limiter per group, closed with this one)."""
        if group == self.group:
            return self
        sibling = self._siblings.get(group)
        if sibling is None:
            limit, window = GROUPS[group]
            settings = self.settings
            sibling = RedisLimiter(
                self._client,
                limit=limit,
                window=window,
                margin=settings.margin,
                max_transit=settings.max_transit,
                hold=settings.hold,
                prefix=self._prefix,
                timeout=self._timeout,
            )
            sibling.group = sibling._pacer.group = sibling._pacer.policy.group = group
            sibling._account = self._account
            self._siblings[group] = sibling
        return sibling

    def try_acquire(self) -> Lease | None:
        """``None``: a grant always takes a round trip to Redis (or the fallback's turn)."""
        self._pacer.check_grant(self._bind().time())
        return None

    async def acquire(self) -> Lease:
        """Wait for a slot of the shared budget; raises :class:`BlockedError` while blocked."""
        loop = self._bind()
        self._pacer.check_grant(loop.time())
        ticket = uuid.uuid4().hex
        waiter: asyncio.Future[Lease] = loop.create_future()
        self._waiters[ticket] = waiter
        self._ensure_driving()
        try:
            return await waiter
        except asyncio.CancelledError:
            self._waiters.pop(ticket, None)
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().release()  # granted, never used
            elif not self._closed:
                self._leave(ticket)
            raise

    def departing(self, lease: Lease) -> None:
        """Refuse a request about to leave while the account is blocked (as this process knows)."""
        self._pacer.check_departure(self._bind().time())

    def release(self, lease: Lease) -> None:
        """Learn from the answer; tell Redis, in the background, how long the slot stays taken."""
        if self._closed:
            if lease.handle is not None:
                self._active.discard(lease.handle)  # its slot expires in Redis on its own
            return
        now = self._bind().time()
        ticket = lease.handle
        release = self._pacer.release(lease, now, own_full=self._full)
        decision = release.decision
        if ticket is None:
            return  # a fallback lease: the fallback holds its slot, nothing to tell Redis
        self._active.discard(ticket)
        self._note_hold(now, lease)
        arguments = ReleaseArgs(
            lease=ticket,
            hold=release.until - now,
            pause=0.0 if decision.pause_until is None else decision.pause_until - now,
            block=0.0 if decision.block_until is None else decision.block_until - now,
            block_reason=decision.block_reason,
            share=tuple((since - now, slots) for since, slots in decision.share),
            process=self._process,
            floor=release.estimate,
            forgot=decision.forget_path,
            subtracted=release.floor,
        )
        self._spawn(self._release_in_redis(arguments))

    # -- lifecycle ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until what this process's leases said so far has reached Redis (or failed to:
        then the limiter falls back). Releases are sent in the background; a test, or a
        process about to hand over to another, may want them told first."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        """Stop renewing, finish pending releases, and close the client if this limiter made it."""
        if self._closed:
            return
        self._closed = True
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(
                    SessionClosedError(
                        "this RedisLimiter was closed while the request waited for a slot; "
                        "it was not sent"
                    )
                )
        self._waiters.clear()
        for task in (self._driver, self._renewer):
            if task is not None:
                task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._timeout * 2)
        for task in list(self._tasks):
            task.cancel()
        for sibling in self._siblings.values():
            await sibling.aclose()
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> RedisLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "falling back" if self._degraded else "redis"
        return (
            f"RedisLimiter(limit={self.limit!r}, window={self.window!r}, group={self.group!r}, "
            f"prefix={self._prefix!r}, {state}, in_flight={len(self._active)})"
        )

    # -- the machinery -----------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self.idle:
                raise RuntimeError(
                    "this RedisLimiter is in use in another event loop; create one per loop"
                )
            self._loop = loop
        if self._closed:
            raise SessionClosedError("this RedisLimiter is closed; create a new one")
        return loop

    def _key(self) -> str:
        """What every key of this budget starts with (``scripts`` lists the rest)."""
        account = self._account or _account_hash("key:unbound")
        return f"{self._prefix}:{{{account}}}:{self.group}"

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        loop = self._bind()
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_failure)

    def _ensure_driving(self) -> None:
        if self._driver is None or self._driver.done():
            self._driver = self._bind().create_task(self._drive())
            self._driver.add_done_callback(_report_failure)

    def _leave(self, ticket: str) -> None:
        """Take ``ticket`` out of Redis's line at the driver's next call rather than when it
        lapses: left at the head of the line, it would hold a free slot back from everyone."""
        now = self._bind().time()
        dropped = self._dropped
        while dropped and dropped[0][0] < now - _TICKET_TTL:
            dropped.popleft()  # lapsed in Redis by now
        dropped.append((now, ticket))
        self._ensure_driving()

    async def _drive(self) -> None:
        """Grant this process's waiting tickets, from Redis or, while Redis fails, from the
        fallback, until none waits. Every waiter is answered: with a lease, or with whatever
        stopped the driver."""
        loop = self._bind()
        try:
            while (self._waiters or self._dropped) and not self._closed:
                if not self._degraded or loop.time() >= self._retry_at:
                    await self._ask_redis(loop)
                elif self._waiters:
                    await self._serve_from_fallback()
                else:
                    return  # the tickets that left lapse in Redis on their own
        except asyncio.CancelledError:
            for waiter in self._waiters.values():
                waiter.cancel()
            self._waiters.clear()
            raise
        except Exception as error:
            self._refuse(list(self._waiters), error)
            raise

    async def _ask_redis(self, loop: asyncio.AbstractEventLoop) -> None:
        """One grant for every waiting ticket (after handing Redis the fallback's slots, if it
        served), then wait until it is worth asking again."""
        tickets = [ticket for ticket, waiter in self._waiters.items() if not waiter.done()]
        dropped, self._dropped = self._dropped, deque()
        try:
            if self._degraded:
                await self._adopt()
            reply = await self._run(
                AcquireArgs(
                    limit=self.limit,
                    unit=self.settings.unit,
                    active_hold=self.settings.abandoned_hold + _RENEW_EVERY,
                    ticket_ttl=_TICKET_TTL,
                    floor_ttl=_FLOOR_TTL,
                    process=self._process,
                    dropped=[ticket for _, ticket in dropped],
                    waiting=tickets,
                )
            )
        except self._failures as error:
            if self._closed:
                return  # closed meanwhile, its connection with it: nothing left to grant
            self._dropped.extendleft(reversed(dropped))
            self._fall_back(error)
            return
        self._recovered()
        status = _text(reply[0])
        now = loop.time()
        policy = self._pacer.policy
        if status == "blocked":
            remaining, reason = float(_text(reply[2])), _text(reply[3])
            policy.block(now + remaining, reason)
            self._refuse(tickets, policy.blocked_error(now))
            return
        retry = float(_text(reply[2]))
        taken, share = int(_text(reply[3])), int(_text(reply[4]))
        # Another process's 429 may have lowered the account's share: this one's follows.
        policy.lower_share(share, now)
        # Whether the account's whole share is taken: then sec=0 says nothing new.
        self._full = taken >= share
        for ticket in (_text(item) for item in reply[5:]):
            lease = Lease(self, now, loop.time, handle=ticket)
            self._active.add(ticket)
            self._ensure_renewing()
            served = self._waiters.pop(ticket, None)
            if served is None or served.done():
                lease.release()  # its caller gave up meanwhile: never sent
            else:
                served.set_result(lease)
        if self._waiters:
            delay = retry if retry > 0 else _POLL
            await asyncio.sleep(min(max(delay, 0.001), _ASK_AT_LEAST_EVERY))

    async def _serve_from_fallback(self) -> None:
        """Grant the oldest waiting ticket a slot of the fallback's share, unless Redis is due
        for another try first."""
        try:
            async with asyncio.timeout_at(self._retry_at):
                lease = await self._fallback.acquire()
        except TimeoutError:
            return
        except BlockedError as error:
            self._refuse(list(self._waiters), error)
            return
        for ticket in list(self._waiters):
            waiter = self._waiters.pop(ticket)
            if not waiter.done():
                waiter.set_result(lease)
                self._leave(ticket)  # it may be in Redis's line from before Redis failed
                return
        lease.release()  # every waiter gave up meanwhile: never sent

    def _refuse(self, tickets: Sequence[str], error: BaseException) -> None:
        for ticket in tickets:
            waiter = self._waiters.pop(ticket, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def _ensure_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = self._bind().create_task(self._renew())
            self._renewer.add_done_callback(_report_failure)

    async def _renew(self) -> None:
        """Keep this process's active leases alive in Redis while any is active."""
        while self._active and not self._closed:
            await asyncio.sleep(_RENEW_EVERY)
            active = list(self._active)
            if not active or self._degraded:
                continue
            try:
                await self._run(
                    RenewArgs(ttl=self.settings.abandoned_hold + _RENEW_EVERY, leases=active)
                )
            except self._failures as error:
                self._fall_back(error)

    async def _release_in_redis(self, arguments: ReleaseArgs) -> None:
        try:
            await self._run(arguments)
        except self._failures as error:
            # The lease stays active in Redis until it expires: held longer, never shorter.
            self._fall_back(error)

    async def _adopt(self) -> None:
        """Hand the fallback's taken slots to Redis before Redis serves again: only the driver
        grants from the fallback, and from now on it asks Redis."""
        holds = self._fallback.remaining_holds()
        if not holds:
            return
        await self._run(
            AdoptArgs(
                [(f"fallback-{self._process}-{uuid.uuid4().hex[:8]}", held) for held in holds]
            )
        )

    async def _run(self, arguments: Args) -> Any:
        """Run a script within ``timeout``, whether this limiter made the client (with socket
        timeouts) or was given it (with whatever timeouts it has, maybe none)."""
        async with asyncio.timeout(self._timeout):
            return await self._scripts.run(arguments, self._key())

    def _note_hold(self, now: float, lease: Lease) -> None:
        """Remember until when a slot released to Redis may stay taken, at the longest."""
        holds = self._own_holds
        while holds and holds[0] <= now:
            holds.popleft()
        holds.append(self._pacer.longest_hold(lease, now))

    def _fall_back(self, error: BaseException) -> None:
        if self._closed:
            return  # a call that failed as the limiter closed: nothing left to serve
        loop = self._bind()
        now = loop.time()
        self._retry_at = now + _RETRY_REDIS
        if not self._degraded:
            self._degraded = True
            # The fallback's share starts with what this process already took through Redis:
            # those requests count at the exchange in the windows to come.
            abandoned = self.settings.abandoned_hold
            self._fallback.hold_slots(
                [until - now for until in self._own_holds if until > now]
                + [abandoned] * len(self._active)
            )
            _log.warning(
                "Redis unreachable (%s); this process allows itself %d requests per window "
                "until it returns",
                type(error).__name__,
                self._fallback.limit,
            )

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            _log.warning("Redis reachable again; the shared budget is back in use")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _report_failure(task: asyncio.Task[Any]) -> None:
    """Log what ended one of the limiter's tasks unexpectedly: nothing fails in silence."""
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.error("RedisLimiter's task %s failed", task.get_name(), exc_info=error)
