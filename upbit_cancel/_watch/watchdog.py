"""watch(): wait until a heartbeat stops, then cancel every open order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final, Literal

import attrs

from .._batch.canceller import BatchCanceller
from .._batch.listing import check_market
from .._check import seconds
from .._errors import (
    AuthenticationError,
    BudgetUnavailableError,
    HeartbeatError,
    OutOfScopeError,
    UpbitError,
)
from .._http.session import UpbitSession
from .._models import BatchResult
from .beat import FORMAT, Beat, Verdict, Vigil, decode
from .places import Place, place_of

__all__ = [
    "WatchOutcome",
    "baseline",
    "cancel_everything",
    "check_ready",
    "checked_after",
    "checked_markets",
    "wait_for_silence",
    "warm_up",
    "warming_up",
    "watch",
]

_log = logging.getLogger("upbit_cancel.watchdog")

#: The longest pause between two readings of the heartbeat: what an expiry may be seen late by
#: (a file or a Redis GET twenty times a second costs next to nothing).
READ_EVERY: Final = 0.05
#: The shortest and longest ``after`` accepted: two readings, and a day.
LEAST_AFTER: Final = 0.1
MOST_AFTER: Final = 86_400.0
#: Seconds between two reminders that no beat has come yet.
_NAG_EVERY: Final = 60.0


@attrs.frozen
class WatchOutcome:
    """How a :func:`watch` ended."""

    #: ``"expired"``: the heartbeat stopped and every open order was cancelled;
    #: ``"disarmed"``: the bot left its :class:`Heartbeat` normally, and nothing was cancelled.
    reason: Literal["expired", "disarmed"]
    #: Seconds since the last new beat when the watchdog took the bot as stopped.
    silent_for: float | None = None
    #: The result of ``cancel_open`` for each market (``None``: every market of the account).
    results: Mapping[str | None, BatchResult] = attrs.field(factory=dict)
    #: For each market whose open orders could not be listed to the end: why. Its entry in
    #: ``results`` holds what was cancelled anyway.
    errors: Mapping[str | None, UpbitError] = attrs.field(factory=dict)


async def watch(
    heartbeat: str | os.PathLike[str],
    *,
    after: float,
    session: UpbitSession,
    markets: Sequence[str] | None = None,
    confirm: bool = True,
    batch_cancel: bool = True,
) -> WatchOutcome:
    """Wait until the :class:`Heartbeat` at ``heartbeat`` stops for ``after`` seconds, then
    cancel every open order of the session's account (or of ``markets``) and return what
    became of them; return at once, cancelling nothing, if the heartbeat is disarmed.

    The watchdog arms on the first beat it sees written (a beat already there when it starts
    may be a dead bot's last, and proves nothing), and counts silence by its own monotonic
    clock from the moment it saw the last new beat: no clocks need to agree, and it never fires
    early, only up to a reading late (50 ms). A heartbeat it cannot read for a while counts as
    silent. It warms the session up first (:meth:`UpbitSession.warm_up`, which sends nothing
    and keeps it warm), so that its first cancels leave without handshakes. The
    cancel is :meth:`BatchCanceller.cancel_open` for each market at once, with
    ``confirm`` and ``batch_cancel`` as there, within the session's budget like any other call,
    so it never trips the limiter while the bot (still alive, only slow) sends too.

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            outcome = await watch("/run/bot/heartbeat", after=5.0, session=session)

    Before it watches, it checks that it will be able to cancel: one listing of one open
    order, which proves the key, its "order query" permission and the account's budget
    (:class:`AuthenticationError`, :class:`OutOfScopeError` or
    :class:`BudgetUnavailableError` are raised then, not when the bot has died; an exchange
    out of reach is only a warning). Raises :class:`HeartbeatError` if the heartbeat cannot be
    read at the start, and ``ValueError`` for ``after`` outside 0.1 s to a day.
    """
    after = checked_after(after)
    if not isinstance(session, UpbitSession):
        raise TypeError(f"session must be an UpbitSession, not {type(session).__name__}")
    chosen = checked_markets(markets)
    place = place_of(heartbeat)
    try:
        vigil = await baseline(place, after)
        await check_ready(session)
        async with warming_up([session]):
            verdict, silent_for = await wait_for_silence(place, vigil)
    finally:
        await place.aclose()
    if verdict == "disarmed":
        return WatchOutcome("disarmed")
    results, errors = await cancel_everything(
        session, chosen, confirm=confirm, batch_cancel=batch_cancel
    )
    return WatchOutcome("expired", silent_for, results, errors)


def checked_after(after: object) -> float:
    """``after`` as seconds from 0.1 (two readings) to a day."""
    value = seconds("after", after)
    if not LEAST_AFTER <= value <= MOST_AFTER:
        raise ValueError(
            f"after must be from {LEAST_AFTER:g} to {MOST_AFTER:,.0f} seconds, not {value!r}"
        )
    return value


async def check_ready(session: UpbitSession) -> None:
    """Prove now what the cancel will need: one listing of one open order (one request of the
    ``default`` budget). A refused key, a missing permission or a budget that cannot be kept
    is raised; anything else (the exchange out of reach) is a warning."""
    try:
        await session.open_orders(limit=1)
    except (AuthenticationError, OutOfScopeError, BudgetUnavailableError):
        raise
    except UpbitError as error:
        _log.warning("could not check the key with the exchange now: %s", error)


def checked_markets(markets: Sequence[str] | None) -> list[str | None]:
    """The markets to cancel in, each checked, once each, in order (``[None]``: all)."""
    if markets is None:
        return [None]
    if isinstance(markets, str) or not isinstance(markets, Sequence):
        raise TypeError("markets must be a list of market codes, such as ['SGD-BTC'], or None")
    for market in markets:
        check_market(market)
    if not markets:
        raise ValueError("markets must name at least one market, or be None for every market")
    return list(dict.fromkeys(markets))


async def baseline(place: Place, after: float) -> Vigil:
    """The watchdog's first reading of the heartbeat, as the baseline of a new vigil: taken
    before anything else, so that a bot that stops while the watchdog gets ready is seen.
    Raises :class:`HeartbeatError` if the heartbeat cannot be read."""
    if place.directory_missing:
        _log.warning(
            "the directory of the heartbeat %s does not exist (yet): the bot's Heartbeat "
            "cannot write there until it does",
            place.label,
        )
    raw = await place.read()
    vigil = Vigil(after)
    vigil.see(None if raw is None else decode(raw), time.monotonic(), first=True)
    return vigil


async def wait_for_silence(
    place: Place, vigil: Vigil
) -> tuple[Literal["expired", "disarmed"], float | None]:
    """Read the heartbeat until ``vigil`` (made by :func:`baseline`, or rearmed) says it
    expired or was disarmed; the verdict and, on expiry, the seconds of silence. A heartbeat
    that cannot be read now is a warning, and its silence counts.

    Raises :class:`HeartbeatError` too when the bot beats no more often than ``after``: every
    beat would look like a stop.
    """
    every = min(READ_EVERY, vigil.after / 4)
    reported: Verdict | None = None
    failing = False
    strange: bytes | None = None
    warned_shared = False
    nagged = time.monotonic()
    while True:
        started = time.monotonic()
        try:
            raw = await place.read()
        except HeartbeatError as error:
            if not failing:
                _log.warning("%s; its silence counts meanwhile", error)
            failing = True
            raw = None
            # The last beat read again: what cannot be read is no news.
            beat = vigil.last
        else:
            if failing:
                _log.warning("the heartbeat %s can be read again", place.label)
            failing = False
            beat = None if raw is None else decode(raw)
            if raw is not None and beat is None:
                if raw != strange:
                    _log.warning(
                        "%s holds something that is not a heartbeat of upbit_cancel (format "
                        "%d); is it the file the bot's Heartbeat writes?",
                        place.label,
                        FORMAT,
                    )
                strange = raw
                beat = vigil.last
        now = time.monotonic()
        verdict = vigil.see(beat, now, read_started=started)
        if vigil.shared and not warned_shared:
            warned_shared = True
            _log.warning(
                "two writers beat the heartbeat %s: give each bot a heartbeat of its own (a "
                "stop of one is not seen while the other beats)",
                place.label,
            )
        if verdict != reported:
            reported = verdict
            _announce(place, vigil, verdict, beat)
            if verdict == "alive" and beat is not None and beat.every >= vigil.after:
                raise HeartbeatError(
                    f"the bot beats every {beat.every:g} s, which is not less than "
                    f"after={vigil.after:g} s: every beat would look like a stop; give the "
                    "watchdog several beats"
                )
        if verdict == "disarmed":
            return "disarmed", None
        if verdict == "expired":
            return "expired", vigil.silent_for(started)
        if verdict == "waiting" and now - nagged >= _NAG_EVERY:
            nagged = now
            _log.info("still no beat of the heartbeat %s", place.label)
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def warming_up(sessions: Sequence[UpbitSession]) -> AsyncIterator[None]:
    """Inside, the sessions warm up in a task of their own (the watching never waits for
    it); a warm-up still going at the end is stopped (the sessions keep themselves warm)."""
    task = asyncio.create_task(warm_up(sessions), name="upbit_cancel warm up")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def warm_up(sessions: Sequence[UpbitSession]) -> None:
    """Warm up each session and keep it warm (:meth:`UpbitSession.warm_up`): its first cancels
    then leave at once, paced on the path's floor. An exchange out of reach now is a warning;
    the sessions keep trying."""
    for session in sessions:
        try:
            await session.warm_up()
        except UpbitError as error:
            _log.warning("cannot open connections ahead: %s; trying again every 20 s", error)


def _announce(place: Place, vigil: Vigil, verdict: Verdict, beat: Beat | None) -> None:
    if verdict == "waiting":
        _log.info("waiting for the first beat of the heartbeat %s", place.label)
    elif verdict == "alive" and beat is not None:
        _log.info(
            "the heartbeat %s beats (pid %d, every %g s); watching for %g s of silence",
            place.label,
            beat.pid,
            beat.every,
            vigil.after,
        )
        if vigil.after < 2 * beat.every:
            _log.warning(
                "after=%g s is less than two beats (every %g s): a beat a little late will "
                "look like a stop; give the watchdog several beats",
                vigil.after,
                beat.every,
            )
    elif verdict == "disarmed":
        _log.info("the heartbeat %s was disarmed: standing down", place.label)
    elif verdict == "expired":
        _log.warning(
            "the heartbeat %s is silent for more than %g s: cancelling every open order",
            place.label,
            vigil.after,
        )


async def cancel_everything(
    session: UpbitSession,
    markets: Sequence[str | None],
    *,
    confirm: bool,
    batch_cancel: bool,
    cancellers: dict[str | None, BatchCanceller] | None = None,
) -> tuple[dict[str | None, BatchResult], dict[str | None, UpbitError]]:
    """``cancel_open`` for each market at once on ``session``: each market's result, and the
    error of each market whose listing failed (its result then holds what was cancelled).
    ``cancellers`` (filled in here) lets a caller that is cancelled read partial results."""
    cancellers = {} if cancellers is None else cancellers
    results: dict[str | None, BatchResult] = {}
    errors: dict[str | None, UpbitError] = {}

    async def one(market: str | None) -> None:
        canceller = cancellers[market] = BatchCanceller(session)
        try:
            results[market] = await canceller.cancel_open(
                market=market, confirm=confirm, batch_cancel=batch_cancel
            )
        except UpbitError as error:
            # One market's failure must not stop the others': the result says what it cost.
            errors[market] = error
            results[market] = canceller.last_result or BatchResult()
        _log.warning("%s", _summary(market, results[market], errors.get(market)))

    async with asyncio.TaskGroup() as group:
        for market in markets:
            group.create_task(one(market))
    ordered = {market: results[market] for market in markets}
    return ordered, {market: errors[market] for market in markets if market in errors}


def _summary(market: str | None, result: BatchResult, error: UpbitError | None) -> str:
    where = "every market" if market is None else market
    text = (
        f"{where}: {result.success.count} canceled, {result.failed.count} already closed, "
        f"{len(result.unresolved)} unresolved"
    )
    if result.confirmed:
        text += f", {len(result.still_open)} still open, {len(result.unknown_states)} unknown"
    if error is not None:
        text += f"; the listing failed: {error}"
    return text
