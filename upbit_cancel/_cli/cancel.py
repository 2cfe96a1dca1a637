"""``upbit-cancel cancel``: cancel orders given by id, or every open one, and report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO, TypeAlias

from .._errors import (
    AuthenticationError,
    BudgetUnavailableError,
    InvalidIdError,
    NotSentError,
    OutcomeUnknownError,
    OutOfScopeError,
    UpbitError,
)
from .._models import BatchResult, UnresolvedOrder
from .._regions import REGIONS
from . import pockets
from .output import (
    BUDGET_LOG,
    ProgressBar,
    cancel_summary,
    error_json,
    log_lines,
    plural,
    render,
    result_json,
    states_table,
    unresolved_table,
)
from .signals import Parser, ignore_interrupts, interrupted, stop_on_signals, usage_error

__all__ = [
    "ACCESS_KEY_ENV",
    "BASE_URL_ENV",
    "MARKET_CODE",
    "SECRET_KEY_ENV",
    "add_parser",
    "close_stdout",
    "credentials",
    "refusal_of",
    "run",
]

if TYPE_CHECKING:
    from .._batch.canceller import BatchCanceller
    from .._http.session import UpbitSession

    _SubParsers: TypeAlias = argparse._SubParsersAction[Parser]

PROG = "upbit-cancel cancel"

#: Where ``cancel`` takes the credentials from; never from arguments, which other users of the
#: machine can read in the process list and which end up in shell history.
ACCESS_KEY_ENV = "UPBIT_ACCESS_KEY"
SECRET_KEY_ENV = "UPBIT_SECRET_KEY"
BASE_URL_ENV = "UPBIT_BASE_URL"

#: What --market accepts: a market code as Upbit writes it (the library checks it again).
MARKET_CODE = re.compile(r"[A-Z0-9]{2,10}-[A-Z0-9]{1,20}")

#: Distinct ids above which ``cancel`` shows a progress bar by itself (on a terminal).
_PROGRESS_THRESHOLD = 100

#: The longest line of an input file read: far more than an id (128 bytes at most) with a
#: comment, far less than a file without line ends.
_LONGEST_LINE = 4096

_Kind = Literal["uuids", "identifiers"]


def add_parser(subparsers: _SubParsers) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cancel",
        help="cancel orders by uuid or identifier",
        description=(
            "Cancel any number of orders, 20 per request, as fast as the account's rate limit "
            f"allows. The API key is read from {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}. Ids "
            "come from --uuids, --identifiers, --file or standard input (-), one per line in "
            "a file ('#' comments and blank lines skipped). The summary goes to standard "
            "output, or to standard error with --json."
        ),
        epilog=(
            "exit status: 0 every id resolved (canceled, or refused as already filled or "
            "canceled; with --confirm: no order still open and no state unknown), 1 some ids "
            "unresolved (with --confirm: some still open or unknown; with --all-open: the open "
            "orders could not be listed), 2 usage error or the key refused, 130 interrupted "
            "(Ctrl+C), 143 stopped (SIGTERM)"
        ),
    )
    parser.add_argument(
        "--region", choices=tuple(REGIONS), default="sg", help="Upbit region (default: sg)"
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help=(
            f"API base URL instead of the region's (default: ${BASE_URL_ENV} if set; http only "
            "to loopback, such as a fake-server)"
        ),
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help=(
            "share the account's budget across hosts with the processes that use this Redis "
            "through RedisLimiter (needs the redis extra); by default the budget is shared with "
            "every process of this host (HostLimiter)"
        ),
    )
    parser.add_argument(
        "--account",
        metavar="NAME",
        help=(
            "the name of the account's budget that the other processes give (account=), for "
            "several keys of one account"
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--uuids", nargs="+", metavar="ID", help="order uuids to cancel")
    source.add_argument(
        "--identifiers", nargs="+", metavar="ID", help="client order identifiers to cancel"
    )
    source.add_argument(
        "--file", metavar="PATH", help="read ids from this file, one per line ('-': stdin)"
    )
    source.add_argument(
        "stdin", nargs="?", choices=("-",), metavar="-", help="read ids from standard input"
    )
    source.add_argument(
        "--all-open",
        action="store_true",
        help="cancel every open order of the account (or of --market), as listed by the exchange",
    )
    parser.add_argument(
        "--market", metavar="M", help="with --all-open: only this market, such as SGD-BTC"
    )
    parser.add_argument(
        "--no-batch-cancel",
        action="store_true",
        help=(
            "with --all-open: cancel by list only, without the batch cancel "
            "(DELETE /v1/orders/open, 300 orders a call, one call per 2 s, beside the list cancels)"
        ),
    )
    parser.add_argument(
        "--confirm",
        action="store_true",
        help=(
            "ask the exchange what became of each order, cancel again what is found open with "
            "no accepted cancel, and show the final states (needs the 'order query' permission)"
        ),
    )
    parser.add_argument(
        "--by",
        choices=("uuids", "identifiers"),
        default=None,
        help="what the ids of --file or - are (default: uuids)",
    )
    parser.add_argument(
        "--json", action="store_true", help="write the full result as JSON to standard output"
    )
    parser.add_argument(
        "--retry-ambiguous",
        action="store_true",
        help=(
            "retry requests that got no usable answer; ids then refused are listed as "
            "possibly canceled"
        ),
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            f"show a progress bar on standard error (default: for more than "
            f"{_PROGRESS_THRESHOLD} ids on a terminal)"
        ),
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no summary and no progress bar (unless --progress)"
    )
    pockets.add_keys_argument(parser)


def credentials() -> tuple[str, str] | str:
    """The key pair from the environment, or a message naming what is missing."""
    # Upbit keys hold no spaces: a stray newline from `$(cat key.txt)` must not break signing.
    access_key = os.environ.get(ACCESS_KEY_ENV, "").strip()
    secret_key = os.environ.get(SECRET_KEY_ENV, "").strip()
    missing = [
        name
        for name, value in ((ACCESS_KEY_ENV, access_key), (SECRET_KEY_ENV, secret_key))
        if not value
    ]
    if missing:
        return (
            f"set {' and '.join(missing)} in the environment: the API key is read from "
            f"{ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, never from arguments"
        )
    return access_key, secret_key


class _LineTooLongError(ValueError):
    """A line of the input longer than any id with a comment could be."""


def _read_lines(stream: TextIO, source: str) -> list[str]:
    """The ids of ``stream``, a line at a time: blank lines and ``#`` comments skipped, and no
    line read past :data:`_LONGEST_LINE` characters (a file without line ends, such as
    ``/dev/zero``, is refused rather than read into memory)."""
    ids = []
    number = 0
    while line := stream.readline(_LONGEST_LINE + 1):
        number += 1
        if len(line) > _LONGEST_LINE and not line.endswith("\n"):
            raise _LineTooLongError(
                f"line {number:,} of {source} is longer than {_LONGEST_LINE:,} characters; "
                "give one id on each line"
            )
        value = line.strip()
        if value and not value.startswith("#"):
            ids.append(value)
    return ids


def _read_ids(args: argparse.Namespace) -> tuple[_Kind, list[str]]:
    """The kind and the ids to cancel, in the order given. Raises OSError for an unreadable file."""
    if args.uuids is not None:
        return "uuids", list(args.uuids)
    if args.identifiers is not None:
        return "identifiers", list(args.identifiers)
    kind: _Kind = args.by or "uuids"
    if args.stdin == "-" or args.file == "-":
        if not args.quiet:
            end = " (end with Ctrl+D)" if sys.stdin.isatty() else ""
            print(f"Reading {kind} from standard input{end}", file=sys.stderr, flush=True)
        return kind, _read_lines(sys.stdin, "standard input")
    # utf-8-sig: files saved by Windows editors start with a byte order mark.
    with Path(args.file).open(encoding="utf-8-sig") as file:
        return kind, _read_lines(file, args.file)


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.keys is not None and not args.all_open:
        return "--keys applies to --all-open: ids belong to one pocket, give its key"
    if args.keys is not None and args.account is not None:
        return "--account names one key's budget; with --keys each pocket's budget is its own"
    if args.account is not None and not args.account.strip():
        return "--account needs a name, the one the other processes of the account give"
    if args.market is not None and not args.all_open:
        return "--market applies to --all-open"
    if args.no_batch_cancel and not args.all_open:
        return "--no-batch-cancel applies to --all-open"
    if args.market is not None and not MARKET_CODE.fullmatch(args.market):
        return f"--market needs a market code such as SGD-BTC (upper case), not {args.market!r}"
    if args.by is not None and args.all_open:
        return "--by applies to --file and -; --all-open cancels orders by uuid"
    if args.by is not None and (args.uuids is not None or args.identifiers is not None):
        return "--by applies to --file and -; --uuids and --identifiers say it themselves"
    given = args.uuids if args.uuids is not None else args.identifiers
    if given is not None and "-" in given:
        option = "--uuids" if args.uuids is not None else "--identifiers"
        return f"'-' (standard input) cannot be combined with {option}"
    return None


def run(args: argparse.Namespace) -> int:
    from .._batch.canceller import BatchCanceller
    from .._http.session import UpbitSession
    from .._limiter.host import HostLimiter
    from .._limiter.redis import RedisLimiter

    problem = _usage_problem(args)
    if problem is not None:
        return usage_error(PROG, problem)
    if args.keys is not None:
        return _cancel_in_pockets(args)
    found = credentials()
    if isinstance(found, str):
        return usage_error(PROG, found)
    access_key, secret_key = found
    base_url = args.base_url or os.environ.get(BASE_URL_ENV, "").strip() or None
    try:
        limiter = (
            HostLimiter(account=args.account)
            if args.redis is None
            else RedisLimiter(args.redis, account=args.account)
        )
        # Checks the settings (region, base URL, key shape) without opening anything.
        session = UpbitSession(
            access_key, secret_key, region=args.region, base_url=base_url, limiter=limiter
        )
    except (ValueError, ImportError) as error:
        return usage_error(PROG, str(error))
    try:
        kind, ids = ("uuids", []) if args.all_open else _read_ids(args)
    except OSError as error:
        return usage_error(PROG, f"cannot read {args.file}: {error.strerror or error}")
    except UnicodeDecodeError as error:
        return usage_error(PROG, f"cannot read {args.file}: not UTF-8 text ({error.reason})")
    except _LineTooLongError as error:
        return usage_error(PROG, str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was sent", file=sys.stderr)
        return interrupted()
    if not args.all_open and not ids:
        source = "standard input" if args.file in (None, "-") else args.file
        if args.json:
            _report(BatchResult(kind=kind), args, given=0, tables=False)
        print(f"{PROG}: nothing to cancel: {source} holds no ids", file=sys.stderr)
        return 0
    # Filled in by _cancel, so that after Ctrl+C the canceller's partial result can be shown.
    cancellers: list[BatchCanceller] = []
    try:
        with log_lines(PROG, {BUDGET_LOG: logging.ERROR if args.quiet else logging.WARNING}):
            result = asyncio.run(_cancel(session, BatchCanceller, kind, ids, args, cancellers))
    except UpbitError as error:
        # Only listing the open orders raises: the cancels themselves report every failure.
        partial = cancellers[0].last_result if cancellers else None
        _report(partial or BatchResult(), args, given=None, tables=False, error=error)
        if partial is not None and _distinct(partial):
            _report(partial, args, given=None, json_too=False)
        refused = refusal_of(error)
        if refused is not None:
            return usage_error(PROG, refused)
        print(f"{PROG}: could not list the open orders: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        ignore_interrupts()
        partial = cancellers[0].last_result if cancellers else None
        if partial is None:
            print(f"{PROG}: interrupted; nothing was sent", file=sys.stderr)
            if args.json:
                # Every id is still accounted for: none was sent.
                never = NotSentError("not sent: interrupted before the run began")
                unsent = BatchResult(
                    kind=kind,
                    unresolved=[UnresolvedOrder(id, never) for id in dict.fromkeys(ids)],
                )
                _report(unsent, args, given=len(ids) if ids else None, tables=False)
            return interrupted()
        if not _distinct(partial):
            what = "no cancel was sent"
        elif any(isinstance(entry.error, OutcomeUnknownError) for entry in partial.unresolved):
            what = "orders whose request was in flight may or may not be canceled"
        else:
            what = "no request was in flight"
        print(f"{PROG}: interrupted; {what}", file=sys.stderr)
        _report(partial, args, given=len(ids) if ids else None)
        return interrupted()
    refusal = _refusal(result)
    if refusal is not None:
        _report(result, args, given=None, tables=False)
        return usage_error(PROG, refusal)
    _report(result, args, given=len(ids) if ids else None)
    if args.all_open and not args.quiet and not _distinct(result):
        where = f" in {args.market}" if args.market else ""
        print(f"{PROG}: the exchange listed no open orders{where}", file=sys.stderr)
    if result.listing_complete is False:
        print(
            f"{PROG}: the open orders' listing did not show that nothing is left "
            "open (it did not end, or new orders kept coming); check the account",
            file=sys.stderr,
        )
        return 1
    if result.confirmed:
        # What --confirm answers: is any order still open, or of unknown state? An id that
        # cannot be an order's was never sent: the order it was meant for may be open.
        malformed = sum(isinstance(entry.error, InvalidIdError) for entry in result.unresolved)
        if malformed and not args.quiet:
            were = "was" if malformed == 1 else "were"
            print(
                f"{PROG}: {plural(malformed, 'id')} could not be an order's and "
                f"{were} not sent: the orders meant may still be open",
                file=sys.stderr,
            )
        return 1 if result.still_open or result.unknown_states or malformed else 0
    return 1 if result.unresolved else 0


def _cancel_in_pockets(args: argparse.Namespace) -> int:
    """``--all-open --keys``: every pocket at once, each within its own budget."""
    try:
        chosen = pockets.read_key_file(args.keys)
    except pockets.KeyFileError as error:
        return usage_error(PROG, str(error))
    base_url = args.base_url or os.environ.get(BASE_URL_ENV, "").strip() or None
    try:
        sessions = pockets.make_sessions(chosen, args, base_url)
    except (ValueError, ImportError) as error:
        return usage_error(PROG, str(error))
    cancellers: dict[str, dict[str | None, BatchCanceller]] = {}

    async def cancel() -> pockets.Outcome:
        task = asyncio.current_task()
        assert task is not None
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(stop_on_signals(task.cancel))
            if not args.quiet:
                where = f" of {args.market}" if args.market else ""
                print(
                    f"Cancelling every open order{where} in {plural(len(sessions), 'pocket')}",
                    file=sys.stderr,
                    flush=True,
                )
            await pockets.open_sessions(stack, sessions)
            return await pockets.cancel_in_pockets(
                sessions,
                [args.market],
                confirm=args.confirm,
                batch_cancel=not args.no_batch_cancel,
                cancellers=cancellers,
            )

    level = logging.ERROR if args.quiet else logging.WARNING
    try:
        with log_lines(PROG, {BUDGET_LOG: level}):
            outcome = asyncio.run(cancel())
    except (KeyboardInterrupt, asyncio.CancelledError):
        ignore_interrupts()
        print(f"{PROG}: interrupted", file=sys.stderr)
        _pockets_report(pockets.partial_outcome(cancellers), args)
        return interrupted()
    _pockets_report(outcome, args)
    for results, errors in outcome.values():
        for failure in errors.values():
            refused = refusal_of(failure)
            if refused is not None:
                return usage_error(PROG, refused)
        for result in results.values():
            refused = _refusal(result)
            if refused is not None:
                return usage_error(PROG, refused)
    return pockets.status(outcome)


def _pockets_report(outcome: pockets.Outcome, args: argparse.Namespace) -> None:
    try:
        if args.json:
            json.dump({"pockets": pockets.outcome_json(outcome)}, sys.stdout, indent=2)
            sys.stdout.write("\n")
            sys.stdout.flush()
        if not args.quiet:
            pockets.report(outcome, pockets.stream_for(args))
    except BrokenPipeError:
        close_stdout()


def _distinct(result: BatchResult) -> int:
    return result.success.count + result.failed.count + len(result.unresolved)


def _refusal(result: BatchResult) -> str | None:
    """One line on why the exchange refused the key, if that is what stopped the batch."""
    for entry in result.unresolved:
        if entry.error is not None:
            refused = refusal_of(entry.error)
            if refused is not None:
                return refused
    return None


def refusal_of(error: UpbitError) -> str | None:
    """One line on what to check, if ``error`` says the exchange refused the key (or the
    account's budget refused this process)."""
    if isinstance(error, BudgetUnavailableError):
        return f"the account's budget cannot be kept: {error}"
    if isinstance(error, OutOfScopeError):
        return (
            f"the exchange refused the API key ({error.name}: {error.message}); give the "
            'key the "Make Orders" permission (and "order query" for --confirm and '
            "--all-open) on Upbit's API key page"
        )
    if isinstance(error, AuthenticationError) and error.name != "invalid_query_payload":
        return (
            f"the exchange refused the API key ({error.name}: {error.message}); check "
            f"UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY, the key's expiry and the IP addresses "
            "it allows"
        )
    return None


async def _cancel(
    session: UpbitSession,
    canceller_class: type[BatchCanceller],
    kind: _Kind,
    ids: list[str],
    args: argparse.Namespace,
    cancellers: list[BatchCanceller],
) -> BatchResult:
    from .._limiter.host import HostLimiter
    from .._limiter.redis import RedisLimiter

    distinct = len(dict.fromkeys(ids))
    show_progress = args.progress
    if show_progress is None:
        many = args.all_open or distinct > _PROGRESS_THRESHOLD
        show_progress = not args.quiet and many and sys.stderr.isatty()
    task = asyncio.current_task()
    assert task is not None
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(stop_on_signals(task.cancel))
        if not args.quiet:
            # Printed once Ctrl+C cancels this task: from here on it yields a partial result.
            what = (
                "every open order" + (f" of {args.market}" if args.market else "")
                if args.all_open
                else plural(distinct, kind.rstrip("s"))
            )
            print(f"Cancelling {what} through {session.base_url}", file=sys.stderr, flush=True)
        if isinstance(session.limiter, HostLimiter | RedisLimiter):
            await stack.enter_async_context(session.limiter)
        await stack.enter_async_context(session)
        total = None if args.all_open else distinct
        with ProgressBar(total, enabled=show_progress) as bar:
            canceller = canceller_class(
                session, on_progress=bar.update, retry_ambiguous=args.retry_ambiguous
            )
            cancellers.append(canceller)
            if args.all_open:
                return await canceller.cancel_open(
                    market=args.market,
                    confirm=args.confirm,
                    batch_cancel=not args.no_batch_cancel,
                )
            if kind == "uuids":
                return await canceller.cancel(uuids=ids, confirm=args.confirm)
            return await canceller.cancel(identifiers=ids, confirm=args.confirm)


def _report(
    result: BatchResult,
    args: argparse.Namespace,
    *,
    given: int | None,
    tables: bool = True,
    json_too: bool = True,
    error: UpbitError | None = None,
) -> None:
    """The JSON document (with --json; ``error``: what stopped the command) and the tables."""
    summary_to = sys.stderr if args.json else sys.stdout
    try:
        if args.json and json_too:
            document = result_json(result)
            if error is not None:
                document["error"] = error_json(error)
            json.dump(document, sys.stdout, indent=2)
            sys.stdout.write("\n")
            sys.stdout.flush()
        if args.quiet or not tables:
            return
        distinct = result.success.count + result.failed.count + len(result.unresolved)
        render(cancel_summary(result, given=distinct if given is None else given), summary_to)
        for table in (unresolved_table(result.unresolved), states_table(result)):
            if table is not None:
                render(table, summary_to)
    except BrokenPipeError:
        # The reader went away (`... --json | head`): stop writing to it, quietly.
        close_stdout()
        if json_too and summary_to is sys.stderr and tables and not args.quiet:
            # The summary still has its own reader.
            _report(result, args, given=given, json_too=False)


def close_stdout() -> None:
    """Point standard output at /dev/null, so that Python's final flush cannot fail either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
