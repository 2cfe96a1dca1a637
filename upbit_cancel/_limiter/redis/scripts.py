"""The Lua scripts of :class:`RedisLimiter`, each with its keys and its arguments typed.

Every script reads the time from the Redis server (``TIME``): hosts' clocks differ, so times
cross the network only as durations. The scripts only store and grant: every duration, share and
decision is computed in Python by the limiter core (``_limiter.core``) and passed in.

Keys, one hash tag per account and group (so that every key lands on one Redis Cluster slot)::

    {prefix}:{<hash>}:<group>:held        zset  lease -> when its slot frees (released leases)
    {prefix}:{<hash>}:<group>:hold_floors hash  lease -> "own:subtracted" (holds set from a floor)
    {prefix}:{<hash>}:<group>:active      zset  lease -> when it expires unless renewed
    {prefix}:{<hash>}:<group>:queue       zset  ticket -> place in line (arrival order)
    {prefix}:{<hash>}:<group>:seen        zset  ticket -> when its process last asked for it
    {prefix}:{<hash>}:<group>:seq         int   the next place in line
    {prefix}:{<hash>}:<group>:state       hash  paused_until, blocked_until, block_reason, least
    {prefix}:{<hash>}:<group>:floors      hash  process -> "floor:when" (each process's path floor)
    {prefix}:{<hash>}:<group>:processes   zset  process -> when it last asked for a slot
    {prefix}:{<hash>}:<group>:shares      zset  "slots:step" -> from when (the share after a 429)
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import attrs

__all__ = ["AcquireArgs", "AdoptArgs", "ReleaseArgs", "RenewArgs", "Scripts"]


def _seconds(value: float) -> str:
    return repr(max(0.0, float(value)))


@attrs.frozen
class AcquireArgs:
    """``acquire.lua``: grant slots to this process's waiting tickets, in the order tickets
    reached Redis; say when to ask again. Replies ``{"ok", now, retry, taken, share, granted…}``
    or ``{"blocked", now, seconds left, reason}``."""

    KEYS = (
        "held",
        "active",
        "queue",
        "seen",
        "seq",
        "state",
        "floors",
        "processes",
        "hold_floors",
        "shares",
    )

    #: Slots per window without any 429.
    limit: int
    #: A window plus the margin, in seconds: a slot granted again holds at least that long.
    unit: float
    #: Seconds an active lease lives unless renewed (an abandoned request's hold, plus a
    #: renewal period).
    active_hold: float
    #: Seconds after which a ticket its process stopped asking for leaves the line.
    ticket_ttl: float
    #: Seconds a process's path floor counts after it last asked.
    floor_ttl: float
    #: This process's name.
    process: str
    #: Tickets that no longer wait (given up on, or served by the fallback).
    dropped: Sequence[str]
    #: Tickets waiting for a slot.
    waiting: Sequence[str]

    def argv(self) -> list[str]:
        return [
            str(self.limit),
            _seconds(self.unit),
            _seconds(self.active_hold),
            _seconds(self.ticket_ttl),
            _seconds(self.floor_ttl),
            self.process,
            str(len(self.dropped)),
            *self.dropped,
            *self.waiting,
        ]


@attrs.frozen
class ReleaseArgs:
    """``release.lua``: end a lease, hold its slot as decided, store what its answer changed."""

    KEYS = ("held", "active", "state", "floors", "processes", "hold_floors", "shares")

    #: The lease.
    lease: str
    #: Seconds its slot stays taken from now (0: free now).
    hold: float
    #: Seconds from now before which nothing is granted (0: no new pause).
    pause: float
    #: Seconds from now the account is blocked (0: no new block).
    block: float
    #: The exchange's explanation of the block.
    block_reason: str
    #: The share after a 429: ``(seconds from now, slots)`` steps, the last at the limit
    #: (empty: unchanged).
    share: Sequence[tuple[float, int]]
    #: This process's name.
    process: str
    #: This process's path floor now (``None``: not known).
    floor: float | None
    #: Whether this process forgot its path (a 429).
    forgot: bool
    #: The floor the hold subtracted (``None``: none).
    subtracted: float | None

    def argv(self) -> list[str]:
        steps = [item for offset, slots in self.share for item in (_seconds(offset), str(slots))]
        return [
            self.lease,
            _seconds(self.hold),
            _seconds(self.pause),
            _seconds(self.block),
            self.block_reason,
            self.process,
            "" if self.floor is None else repr(self.floor),
            "1" if self.forgot else "0",
            "" if self.subtracted is None else repr(self.subtracted),
            str(len(self.share)),
            *steps,
        ]


@attrs.frozen
class RenewArgs:
    """``renew.lua``: keep active leases alive."""

    KEYS = ("active",)

    #: Seconds each lease lives from now unless renewed again.
    ttl: float
    #: The leases.
    leases: Sequence[str]

    def argv(self) -> list[str]:
        return [_seconds(self.ttl), *self.leases]


@attrs.frozen
class AdoptArgs:
    """``adopt.lua``: hold slots taken outside Redis (while it was unreachable)."""

    KEYS = ("held",)

    #: ``(lease, seconds from now)`` for each slot.
    holds: Sequence[tuple[str, float]]

    def argv(self) -> list[str]:
        return [item for lease, seconds in self.holds for item in (lease, _seconds(seconds))]


Args = AcquireArgs | ReleaseArgs | RenewArgs | AdoptArgs

_NAMES: dict[type[Any], str] = {
    AcquireArgs: "acquire",
    ReleaseArgs: "release",
    RenewArgs: "renew",
    AdoptArgs: "adopt",
}


class Scripts:
    """The scripts registered with one client, run with typed arguments."""

    __slots__ = ("_scripts",)

    def __init__(self, client: Any) -> None:
        folder = resources.files(__package__ or "upbit_cancel._limiter.redis")
        self._scripts = {
            name: client.register_script((folder / f"{name}.lua").read_text("utf-8"))
            for name in _NAMES.values()
        }

    async def run(self, args: Args, key: str) -> Any:
        """Run the script ``args`` are for, on the keys of ``key`` (``{prefix}:{hash}:group``)."""
        keys = [f"{key}:{name}" for name in args.KEYS]
        return await self._scripts[_NAMES[type(args)]](keys=keys, args=args.argv())
