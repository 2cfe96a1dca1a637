"""The ``upbit-cancel`` console script: ``cancel``, ``demo`` and ``fake-server``.

Each subcommand contributes two things: a function that adds its parser to the subparsers, and
an entry in ``_HANDLERS`` mapping its name to the function that runs it and returns the exit
status. ``main`` builds the parser from ``_PARSER_BUILDERS`` and dispatches on the name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal, TypeAlias

from ._errors import (
    AuthenticationError,
    InvalidIdError,
    OutcomeUnknownError,
    OutOfScopeError,
    UpbitError,
)
from ._models import BatchResult
from ._regions import REGIONS
from ._report import (
    ProgressBar,
    cancel_summary,
    error_json,
    plural,
    render,
    result_json,
    states_table,
    unresolved_table,
)

__all__ = ["main"]

if TYPE_CHECKING:
    from ._batch import BatchCanceller
    from ._session import UpbitSession
    from .testing import FakeUpbit

    _SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

#: How many seeded uuids ``fake-server`` prints when it writes no ``--uuids-file``.
_UUIDS_SHOWN = 5

#: Where ``cancel`` takes the credentials from; never from arguments, which other users of the
#: machine can read in the process list and which end up in shell history.
_ACCESS_KEY_ENV = "UPBIT_ACCESS_KEY"
_SECRET_KEY_ENV = "UPBIT_SECRET_KEY"
_BASE_URL_ENV = "UPBIT_BASE_URL"

#: Distinct ids above which ``cancel`` shows a progress bar by itself (on a terminal).
_PROGRESS_THRESHOLD = 100

#: The signal that interrupted the run: the exit status is 128 plus its number, as shells
#: report a process a signal ended (130 for Ctrl+C, 143 for SIGTERM).
_stopped_by: list[int] = [signal.SIGINT]

_Kind = Literal["uuids", "identifiers"]


def _add_cancel_parser(subparsers: _SubParsers) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cancel",
        help="cancel orders by uuid or identifier",
        description=(
            "Cancel any number of orders, 20 per request, as fast as the account's rate limit "
            f"allows. The API key is read from {_ACCESS_KEY_ENV} and {_SECRET_KEY_ENV}. Ids "
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
            f"API base URL instead of the region's (default: ${_BASE_URL_ENV} if set; http only "
            "to loopback, such as a fake-server)"
        ),
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help=(
            "share the account's budget with the other processes that use this Redis through "
            "RedisLimiter (needs the redis extra)"
        ),
    )
    parser.add_argument(
        "--account",
        metavar="NAME",
        help="with --redis: the account name those processes give RedisLimiter",
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


def _error(command: str, message: str) -> int:
    print(f"upbit-cancel {command}: {message}", file=sys.stderr)
    return 2


def _credentials() -> tuple[str, str] | str:
    """The key pair from the environment, or a message naming what is missing."""
    # Upbit keys hold no spaces: a stray newline from `$(cat key.txt)` must not break signing.
    access_key = os.environ.get(_ACCESS_KEY_ENV, "").strip()
    secret_key = os.environ.get(_SECRET_KEY_ENV, "").strip()
    missing = [
        name
        for name, value in ((_ACCESS_KEY_ENV, access_key), (_SECRET_KEY_ENV, secret_key))
        if not value
    ]
    if missing:
        return (
            f"set {' and '.join(missing)} in the environment: the API key is read from "
            f"{_ACCESS_KEY_ENV} and {_SECRET_KEY_ENV}, never from arguments"
        )
    return access_key, secret_key


def _parse_lines(text: str) -> list[str]:
    ids = []
    for line in text.splitlines():
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
        return kind, _parse_lines(sys.stdin.read())
    # utf-8-sig: files saved by Windows editors start with a byte order mark.
    return kind, _parse_lines(Path(args.file).read_text(encoding="utf-8-sig"))


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.account is not None and args.redis is None:
        return "--account applies to --redis"
    if args.market is not None and not args.all_open:
        return "--market applies to --all-open"
    if args.market is not None and not args.market.strip():
        return "--market needs a market code, such as SGD-BTC"
    if args.by is not None and args.all_open:
        return "--by applies to --file and -; --all-open cancels orders by uuid"
    if args.by is not None and (args.uuids is not None or args.identifiers is not None):
        return "--by applies to --file and -; --uuids and --identifiers say it themselves"
    given = args.uuids if args.uuids is not None else args.identifiers
    if given is not None and "-" in given:
        option = "--uuids" if args.uuids is not None else "--identifiers"
        return f"'-' (standard input) cannot be combined with {option}"
    return None


def _run_cancel(args: argparse.Namespace) -> int:
    from ._batch import BatchCanceller
    from ._redis import RedisLimiter
    from ._session import UpbitSession

    problem = _usage_problem(args)
    if problem is not None:
        return _error("cancel", problem)
    credentials = _credentials()
    if isinstance(credentials, str):
        return _error("cancel", credentials)
    access_key, secret_key = credentials
    base_url = args.base_url or os.environ.get(_BASE_URL_ENV, "").strip() or None
    try:
        limiter = None if args.redis is None else RedisLimiter(args.redis, account=args.account)
        # Checks the settings (region, base URL, key shape) without opening anything.
        session = UpbitSession(
            access_key, secret_key, region=args.region, base_url=base_url, limiter=limiter
        )
    except (ValueError, ImportError) as error:
        return _error("cancel", str(error))
    try:
        kind, ids = ("uuids", []) if args.all_open else _read_ids(args)
    except OSError as error:
        return _error("cancel", f"cannot read {args.file}: {error.strerror or error}")
    except UnicodeDecodeError as error:
        return _error("cancel", f"cannot read {args.file}: not UTF-8 text ({error.reason})")
    except KeyboardInterrupt:
        print("upbit-cancel cancel: interrupted; nothing was sent", file=sys.stderr)
        return _interrupted()
    if not args.all_open and not ids:
        source = "standard input" if args.file in (None, "-") else args.file
        if args.json:
            _report(BatchResult(kind=kind), args, given=0, tables=False)
        print(f"upbit-cancel cancel: nothing to cancel: {source} holds no ids", file=sys.stderr)
        return 0
    # Filled in by _cancel, so that after Ctrl+C the canceller's partial result can be shown.
    cancellers: list[BatchCanceller] = []
    try:
        result = asyncio.run(_cancel(session, BatchCanceller, kind, ids, args, cancellers))
    except UpbitError as error:
        # Only listing the open orders raises: the cancels themselves report every failure.
        partial = cancellers[0].last_result if cancellers else None
        _report(partial or BatchResult(), args, given=None, tables=False, error=error)
        if partial is not None and _distinct(partial):
            _report(partial, args, given=None, json_too=False)
        refused = _refusal_of(error)
        if refused is not None:
            return _error("cancel", refused)
        print(f"upbit-cancel cancel: could not list the open orders: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _ignore_interrupts()
        partial = cancellers[0].last_result if cancellers else None
        if partial is None:
            print("upbit-cancel cancel: interrupted; nothing was sent", file=sys.stderr)
            return _interrupted()
        if not _distinct(partial):
            what = "no cancel was sent"
        elif any(isinstance(entry.error, OutcomeUnknownError) for entry in partial.unresolved):
            what = "orders whose request was in flight may or may not be canceled"
        else:
            what = "no request was in flight"
        print(f"upbit-cancel cancel: interrupted; {what}", file=sys.stderr)
        _report(partial, args, given=len(ids) if ids else None)
        return _interrupted()
    refusal = _refusal(result)
    if refusal is not None:
        _report(result, args, given=None, tables=False)
        return _error("cancel", refusal)
    _report(result, args, given=len(ids) if ids else None)
    if args.all_open and not args.quiet and not _distinct(result):
        where = f" in {args.market}" if args.market else ""
        print(f"upbit-cancel cancel: the exchange listed no open orders{where}", file=sys.stderr)
    if result.confirmed:
        malformed = any(isinstance(entry.error, InvalidIdError) for entry in result.unresolved)
        return 1 if result.still_open or result.unknown_states or malformed else 0
    return 1 if result.unresolved else 0


def _distinct(result: BatchResult) -> int:
    return result.success.count + result.failed.count + len(result.unresolved)


def _refusal(result: BatchResult) -> str | None:
    """One line on why the exchange refused the key, if that is what stopped the batch."""
    for entry in result.unresolved:
        if entry.error is not None:
            refused = _refusal_of(entry.error)
            if refused is not None:
                return refused
    return None


def _refusal_of(error: UpbitError) -> str | None:
    """One line on what to check, if ``error`` says the exchange refused the key."""
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


def _catch_interrupts() -> None:
    """Ctrl+C and SIGTERM interrupt the run, even if it was started with them ignored.

    SIGINT gets Python's own handler, which ``asyncio.run`` turns into a clean cancellation of
    the running command; SIGTERM does whatever SIGINT does at that moment.
    """
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: FrameType | None) -> None:
    _stopped_by[0] = signum
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    elif handler == signal.SIG_DFL:
        raise KeyboardInterrupt


def _interrupted() -> int:
    """The exit status of a run that a signal interrupted."""
    return 128 + _stopped_by[0]


def _ignore_interrupts() -> None:
    """From now on Ctrl+C and SIGTERM do nothing: the partial result is being written."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def _cancel(
    session: UpbitSession,
    canceller_class: type[BatchCanceller],
    kind: _Kind,
    ids: list[str],
    args: argparse.Namespace,
    cancellers: list[BatchCanceller],
) -> BatchResult:
    from ._redis import RedisLimiter

    distinct = len(dict.fromkeys(ids))
    show_progress = args.progress
    if show_progress is None:
        show_progress = not args.quiet and distinct > _PROGRESS_THRESHOLD and sys.stderr.isatty()
    if not args.quiet:
        # Printed once the event loop runs, so that from here on Ctrl+C yields a partial result.
        what = (
            "every open order" + (f" of {args.market}" if args.market else "")
            if args.all_open
            else plural(distinct, kind.rstrip("s"))
        )
        print(f"Cancelling {what} through {session.base_url}", file=sys.stderr, flush=True)
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(session.limiter, RedisLimiter):
            await stack.enter_async_context(session.limiter)
        await stack.enter_async_context(session)
        with ProgressBar(distinct, enabled=show_progress and not args.all_open) as bar:
            canceller = canceller_class(
                session, on_progress=bar.update, retry_ambiguous=args.retry_ambiguous
            )
            cancellers.append(canceller)
            if args.all_open:
                return await canceller.cancel_open(market=args.market, confirm=args.confirm)
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
        _close_stdout()
        if json_too and summary_to is sys.stderr and tables and not args.quiet:
            # The summary still has its own reader.
            _report(result, args, given=given, json_too=False)


def _close_stdout() -> None:
    """Point standard output at /dev/null, so that Python's final flush cannot fail either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _add_demo_parser(subparsers: _SubParsers) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="cancel thousands of orders on an in-process fake exchange and report",
        description=(
            "Start a fake Upbit exchange in this process (30 requests per second, strict), "
            "seed it with open, filled and canceled orders, cancel them together with unknown, "
            "malformed and repeated ids through UpbitSession and BatchCanceller, and report "
            "the outcome and the pace measured by both sides."
        ),
    )
    parser.add_argument(
        "--orders", type=int, default=2000, metavar="N", help="open orders to seed (default 2000)"
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="random delay each way, uniform in [0, SECONDS] (default 0.005)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of all randomness (default 0)")


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    try:
        return run_demo(args.orders, args.jitter, args.seed)
    except ValueError as error:
        return _error("demo", str(error))


def _add_fake_server_parser(subparsers: _SubParsers) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fake-server",
        help="run the fake Upbit exchange until interrupted",
        description=(
            "Run the fake Upbit exchange on loopback until SIGINT or SIGTERM. It prints "
            "base_url=, access_key= and secret_key= lines (a throwaway credential of this "
            "fake, safe to print), then notes starting with '#'."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--orders", type=int, default=0, metavar="N", help="open orders to seed")
    parser.add_argument(
        "--identifiers", action="store_true", help="give each seeded order an identifier"
    )
    parser.add_argument("--market", default="SGD-BTC", help="market of the seeded orders")
    parser.add_argument("--policy", choices=("sliding", "fixed", "bucket"), default="sliding")
    parser.add_argument("--limit", type=int, default=30, help="requests per window")
    parser.add_argument("--window", type=float, default=1.0, help="window length in seconds")
    parser.add_argument("--unknown-ids", choices=("omit", "failed"), default="omit")
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay each way"
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="random extra delay each way, uniform in [0, SECONDS]",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 5xx")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction disconnected")
    parser.add_argument("--plain-text-429", action="store_true", help="answer 429 with plain text")
    parser.add_argument(
        "--block-after", type=int, default=None, metavar="N", help="429s before a 418 block"
    )
    parser.add_argument("--block-seconds", type=float, default=30.0, help="length of a block")
    parser.add_argument("--seed", type=int, default=0, help="seed of all randomness")
    parser.add_argument(
        "--uuids-file", type=Path, default=None, metavar="PATH", help="write seeded uuids here"
    )


def _run_fake_server(args: argparse.Namespace) -> int:
    from .testing import FakeUpbit, Faults

    try:
        faults = Faults(
            latency_in=args.latency,
            latency_out=args.latency,
            jitter_in=args.jitter,
            jitter_out=args.jitter,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
        )
        fake = FakeUpbit(
            policy=args.policy,
            limit=args.limit,
            window=args.window,
            host=args.host,
            port=args.port,
            unknown_ids=args.unknown_ids,
            plain_text_429=args.plain_text_429,
            block_after=args.block_after,
            block_seconds=args.block_seconds,
            faults=faults,
            seed=args.seed,
        )
    except ValueError as error:
        return _error("fake-server", str(error))
    if args.orders < 0:
        return _error("fake-server", f"--orders must be 0 or more, not {args.orders}")
    if not 0 <= args.port <= 65535:
        return _error("fake-server", f"--port must be between 0 and 65535, not {args.port}")
    # KeyboardInterrupt only arrives where signal handlers cannot be installed (Windows).
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_serve(fake, args))
        except OSError as error:
            # The uuids file cannot be written, or the address cannot be listened on.
            return _error("fake-server", str(error))
    return 0


async def _serve(fake: FakeUpbit, args: argparse.Namespace) -> None:
    uuids = fake.add_orders(args.orders, market=args.market, identifiers=args.identifiers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if args.uuids_file is not None:
        # Written before anything is printed, so a reader of the output finds it complete.
        try:
            args.uuids_file.write_text("".join(f"{uuid}\n" for uuid in uuids))
        except OSError as error:
            raise OSError(f"cannot write {args.uuids_file}: {error.strerror or error}") from None
    try:
        await fake.start()
    except OSError as error:
        where = f"{args.host}:{args.port}"
        raise OSError(f"cannot listen on {where}: {error.strerror or error}") from None
    async with fake:
        print(f"base_url={fake.base_url}")
        print(f"access_key={fake.access_key}")
        print(f"secret_key={fake.secret_key}")
        print("# The secret key is a throwaway credential of this fake exchange.")
        print(f"# policy={args.policy} limit={args.limit} window={args.window}")
        if args.uuids_file is not None:
            print(
                f"# seeded {plural(len(uuids), 'open order')}; uuids written to {args.uuids_file}"
            )
        else:
            print(f"# seeded {plural(len(uuids), 'open order')}")
            for uuid in uuids[:_UUIDS_SHOWN]:
                print(f"# {uuid}")
            if len(uuids) > _UUIDS_SHOWN:
                print(f"# ... and {len(uuids) - _UUIDS_SHOWN} more")
        print("# Admin API under /_fake/ (see docs/fake-exchange.md). Stop with Ctrl+C.")
        sys.stdout.flush()
        await stop.wait()
    print("# stopped", flush=True)


_PARSER_BUILDERS: tuple[Callable[[_SubParsers], None], ...] = (
    _add_cancel_parser,
    _add_demo_parser,
    _add_fake_server_parser,
)
_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "cancel": _run_cancel,
    "demo": _run_demo,
    "fake-server": _run_fake_server,
}


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="upbit-cancel", description="Cancel Upbit orders fast, within the rate limit."
    )
    parser.add_argument("--version", action="version", version=f"upbit-cancel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in _PARSER_BUILDERS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``upbit-cancel`` command line with *argv* (default: ``sys.argv[1:]``).

    Ctrl+C (or SIGTERM) anywhere ends it with status 130 (143) and a line on standard error,
    never a traceback.
    """
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        _catch_interrupts()
        args = _build_parser().parse_args(argv)
        return _HANDLERS[args.command](args)
    except KeyboardInterrupt:
        _ignore_interrupts()
        print("upbit-cancel: interrupted", file=sys.stderr)
        return _interrupted()
    finally:
        # Called from Python (a test, a script), leave the caller's handlers as they were.
        with contextlib.suppress(ValueError, TypeError):
            for signum, handler in before.items():
                signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
