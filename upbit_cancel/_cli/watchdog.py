"""``upbit-cancel watchdog``: cancel every open order once the bot's heartbeat stops."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, TypeAlias

from .._errors import UpbitError
from .._regions import REGIONS
from . import pockets
from .cancel import BASE_URL_ENV, MARKET_CODE, credentials
from .cancel import close_stdout as _close_stdout
from .cancel import refusal_of as _refusal_of
from .output import BUDGET_LOG, log_lines, plural
from .signals import Parser, ignore_interrupts, interrupted, stop_on_signals, usage_error

__all__ = ["add_parser", "run"]

if TYPE_CHECKING:
    from .._batch.canceller import BatchCanceller
    from .._http.session import UpbitSession
    from .._watch.places import Place

    _SubParsers: TypeAlias = argparse._SubParsersAction[Parser]

PROG = "upbit-cancel watchdog"

#: The library's loggers whose lines the watchdog shows as its own: what it waits for and sees
#: (info), the heartbeat's read failures and each market's summary (warning).
_LOGS = ("upbit_cancel.watchdog", "upbit_cancel.heartbeat")


def add_parser(subparsers: _SubParsers) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watchdog",
        help="cancel every open order when the bot's heartbeat stops",
        description=(
            "Wait for the first beat of a heartbeat that a bot keeps with "
            "upbit_cancel.Heartbeat, then watch it: once no new beat has come for --after "
            "seconds (the bot died, hung or lost its host), cancel every open order of the "
            "account (or of --market), in every pocket of --keys, and report. A heartbeat the "
            "bot disarmed (it left its Heartbeat normally) ends the watchdog quietly. The API "
            "key is read from UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY, or several from --keys. "
            "The watchdog shares each account's budget like any other process (the host's, or "
            "with --redis every host's), so it never trips the limiter while the bot sends."
        ),
        epilog=(
            "exit status: 0 disarmed, or every open order canceled (with --confirm: none left "
            "open or unknown), 1 some orders may be left open, 2 usage error or the key "
            "refused, 130 interrupted (Ctrl+C), 143 stopped (SIGTERM); with --rearm it runs "
            "until stopped"
        ),
    )
    parser.add_argument(
        "--heartbeat",
        required=True,
        metavar="PATH|URL",
        help="the heartbeat's file, or redis://host:port/db#name for one kept in Redis",
    )
    parser.add_argument(
        "--after",
        required=True,
        type=_positive_seconds,
        metavar="SECONDS",
        help=(
            "cancel once no new beat has come for this long: several of the bot's beats "
            "(0.1 to 86400)"
        ),
    )
    parser.add_argument(
        "--market",
        action="append",
        metavar="M",
        help="cancel only in this market, such as SGD-BTC (repeat for several)",
    )
    parser.add_argument(
        "--confirm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "ask the exchange what became of each order, cancel again what is still open, and "
            "show the final states (default: on)"
        ),
    )
    parser.add_argument(
        "--no-batch-cancel",
        action="store_true",
        help="cancel by list only, without the batch cancel (DELETE /v1/orders/open)",
    )
    parser.add_argument(
        "--rearm",
        action="store_true",
        help=(
            "after cancelling (or a disarm), wait for the next beat and watch again, until stopped"
        ),
    )
    parser.add_argument(
        "--region", choices=tuple(REGIONS), default="sg", help="Upbit region (default: sg)"
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API base URL instead of the region's (default: ${BASE_URL_ENV} if set)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share the accounts' budgets across hosts through this Redis (RedisLimiter)",
    )
    parser.add_argument(
        "--account",
        metavar="NAME",
        help="the name of the account's budget that the other processes give (account=)",
    )
    pockets.add_keys_argument(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="write each cancel's full result as one line of JSON to standard output",
    )
    parser.add_argument("--quiet", action="store_true", help="no summary; only warnings and errors")


def _positive_seconds(text: str) -> float:
    from .._watch.watchdog import checked_after

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    try:
        return checked_after(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("after must be ")) from None


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.account is not None and args.keys is not None:
        return "--account names one key's budget; with --keys each pocket's budget is its own key's"
    if args.account is not None and not args.account.strip():
        return "--account needs a name, the one the other processes of the account give"
    for market in args.market or ():
        if not MARKET_CODE.fullmatch(market):
            return f"--market needs a market code such as SGD-BTC (upper case), not {market!r}"
    return None


def run(args: argparse.Namespace) -> int:
    from .._watch.places import place_of

    problem = _usage_problem(args)
    if problem is not None:
        return usage_error(PROG, problem)
    try:
        if args.keys is not None:
            chosen = pockets.read_key_file(args.keys)
        else:
            found = credentials()
            if isinstance(found, str):
                return usage_error(PROG, f"{found}, or give several pockets' keys with --keys")
            chosen = [pockets.Pocket("account", *found)]
    except pockets.KeyFileError as error:
        return usage_error(PROG, str(error))
    base_url = args.base_url or os.environ.get(BASE_URL_ENV, "").strip() or None
    try:
        sessions = pockets.make_sessions(chosen, args, base_url)
        place = place_of(args.heartbeat)
    except (ValueError, TypeError, ImportError) as error:
        return usage_error(PROG, str(error))
    markets: list[str | None] = list(dict.fromkeys(args.market)) if args.market else [None]
    level = logging.WARNING if args.quiet else logging.INFO
    levels = dict.fromkeys(_LOGS, level) | {BUDGET_LOG: logging.WARNING}
    cancellers: dict[str, dict[str | None, BatchCanceller]] = {}
    try:
        with log_lines(PROG, levels):
            return asyncio.run(_watch(place, sessions, markets, args, cancellers))
    except (KeyboardInterrupt, asyncio.CancelledError):
        ignore_interrupts()
        if not cancellers:
            print(f"{PROG}: stopped while watching", file=sys.stderr)
            return interrupted()
        print(f"{PROG}: interrupted while cancelling", file=sys.stderr)
        _show(pockets.partial_outcome(cancellers), args, event="interrupted")
        return interrupted()
    except UpbitError as error:
        # The heartbeat unreadable at the start or beating too slowly for --after, or a key,
        # a permission or a budget refused by the check before watching.
        return usage_error(PROG, _refusal_of(error) or str(error))


async def _watch(
    place: Place,
    sessions: list[tuple[pockets.Pocket, UpbitSession]],
    markets: list[str | None],
    args: argparse.Namespace,
    cancellers: dict[str, dict[str | None, BatchCanceller]],
) -> int:
    from .._watch.watchdog import baseline, check_ready, wait_for_silence, warming_up

    task = asyncio.current_task()
    assert task is not None
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(stop_on_signals(task.cancel))
        stack.push_async_callback(place.aclose)
        # The baseline first, before anything is sent: a heartbeat that cannot be read is said
        # at once, and a bot that stops while the checks below run is seen.
        vigil = await baseline(place, args.after)
        await pockets.open_sessions(stack, sessions)
        # Whatever would stop the cancel (a refused key, no "order query", a budget that
        # cannot be kept) is found now, not when the bot has died.
        for _, session in sessions:
            await check_ready(session)
        await stack.enter_async_context(warming_up([session for _, session in sessions]))
        while True:
            verdict, silent_for = await wait_for_silence(place, vigil)
            if verdict == "disarmed":
                if args.json:
                    _json_line({"event": "disarmed", "heartbeat": place.label})
                if not args.rearm:
                    return 0
            else:
                if not args.quiet and len(sessions) > 1:
                    names = ", ".join(pocket.name for pocket, _ in sessions)
                    _say(f"{PROG}: cancelling in {plural(len(sessions), 'pocket')}: {names}")
                cancellers.clear()
                outcome = await pockets.cancel_in_pockets(
                    sessions,
                    markets,
                    confirm=args.confirm,
                    batch_cancel=not args.no_batch_cancel,
                    cancellers=cancellers,
                )
                cancellers.clear()
                _show(outcome, args, event="expired", silent_for=silent_for)
                if not args.rearm:
                    return pockets.status(outcome)
            vigil.rearm()
            if not args.quiet:
                _say(f"{PROG}: watching again")


def _show(
    outcome: pockets.Outcome,
    args: argparse.Namespace,
    *,
    event: str,
    silent_for: float | None = None,
) -> None:
    if args.json:
        document: dict[str, Any] = {"event": event}
        if silent_for is not None:
            document["silent_for"] = round(silent_for, 3)
        document["pockets"] = pockets.outcome_json(outcome)
        _json_line(document)
    if not args.quiet:
        stream = pockets.stream_for(args)
        try:
            pockets.report(outcome, stream)
        except BrokenPipeError:
            # The reader went away: the watchdog goes on (with --rearm), writing nowhere.
            if stream is sys.stdout:
                _close_stdout()
            else:
                _say("")


def _say(line: str) -> None:
    """A line on standard error; a reader gone away never stops the watchdog."""
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)


def _json_line(document: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _close_stdout()
