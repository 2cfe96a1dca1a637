"""Heartbeat: the bot's side of the dead man's switch."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from types import TracebackType
from typing import Final, Self

from .._check import seconds
from .._errors import HeartbeatError
from .beat import Beat, BeatState, encode
from .places import Place, place_of

__all__ = ["Heartbeat"]

_log = logging.getLogger("upbit_cancel.heartbeat")

#: How long a Redis heartbeat outlives its last write, in beats (and at least a minute): long
#: enough that a watchdog reading it now and then never mistakes an expired key for a stop it
#: has not seen, short enough that a writer gone for good leaves nothing behind for long.
_KEEP_BEATS: Final = 20
_KEEP_AT_LEAST: Final = 60.0


class Heartbeat:
    """Tells a watchdog that this bot is alive, from a background task, while entered.

    Example::

        async with Heartbeat("/run/bot/heartbeat"):
            await run_the_bot()

    While entered it writes a beat every ``every`` seconds from a task of the event loop that
    entered it, so a loop that blocks, a process that hangs or dies, or a host that goes down
    all stop the beats; ``upbit-cancel watchdog`` (or :func:`watch`) then cancels every open
    order. Leaving the block normally *disarms* the heartbeat: the watchdog stands down without
    cancelling. Leaving it by an exception (cancellation included) leaves the heartbeat to
    expire, so the watchdog cancels.

    ``target`` is a file's path (replaced whole at each beat, so a reader never sees half a
    beat; its directory must exist), or ``redis://host:port/db#name`` for a watchdog on another
    host (a key with an expiry; ``name`` tells several heartbeats of one Redis apart). The
    first beat is written before the block begins: a place that cannot take it raises
    :class:`HeartbeatError` there. A later beat that fails is logged (``upbit_cancel.heartbeat``)
    and tried again at the next one; the watchdog sees the gap as silence.

    Args:
        target: Where the heartbeat lives.
        every: Seconds between beats. The watchdog's ``after`` should be several times this.
    """

    __slots__ = ("_beats", "_entered", "_failing", "_place", "_task", "_writer", "every")

    def __init__(self, target: str | os.PathLike[str], *, every: float = 0.5) -> None:
        every = seconds("every", every)
        #: Seconds between beats.
        self.every = every
        self._place: Place = place_of(target)
        self._writer = ""
        self._beats = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._entered = False

    @property
    def target(self) -> str:
        """Where the heartbeat lives (a path, or a Redis URL with any password redacted)."""
        return self._place.label

    @property
    def beats(self) -> int:
        """Beats written so far in this ``async with``."""
        return self._beats

    def __repr__(self) -> str:
        state = "beating" if self._task is not None else "idle"
        return f"<Heartbeat {self._place.label} every={self.every} {state}>"

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("this Heartbeat is already entered; use one per bot")
        # Set before the first await: a second task entering meanwhile is refused too.
        self._entered = True
        self._writer = secrets.token_hex(8)
        self._beats = 0
        try:
            await self._beat("beating")
        except BaseException:
            self._entered = False
            await self._place.aclose()
            raise
        self._task = asyncio.create_task(self._keep_beating(), name="upbit_cancel heartbeat")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                # The task ends at its next await; nothing of it outlives the block.
                await asyncio.gather(task, return_exceptions=True)
            if exc_type is None:
                try:
                    await self._beat("disarmed")
                except HeartbeatError as error:
                    _log.error("%s; the watchdog will take the bot as stopped", error)
        finally:
            self._entered = False
            await self._place.aclose()

    async def _keep_beating(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.every
            # A loop that was blocked past several beats writes one beat, not a burst.
            due = max(due, loop.time())
            await asyncio.sleep(due - loop.time())
            try:
                await self._beat("beating")
            except HeartbeatError as error:
                if not self._failing:
                    _log.warning("%s; trying again at each beat", error)
                self._failing = True
            else:
                if self._failing:
                    _log.warning("the heartbeat %s is written again", self._place.label)
                self._failing = False

    async def _beat(self, state: BeatState) -> None:
        self._beats += 1
        beat = Beat(self._writer, self._beats, state, self.every, os.getpid(), time.time())
        keep = max(_KEEP_AT_LEAST, _KEEP_BEATS * self.every)
        await self._place.write(encode(beat), keep=keep)
