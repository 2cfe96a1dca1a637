"""Several pockets (sub-accounts) at once: the key file, a session each, the per-pocket report.

Upbit counts rate limits and 418 blocks per pocket, each with its own keys. ``--keys FILE``
names one key pair per pocket; every pocket then works at once, each within its own budget (the
host's, or Redis's with ``--redis``, keyed by its own access key as a bot using that key would
key it), and the summary says what happened in each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs

from .._errors import UpbitError
from .._models import BatchResult
from .output import cancel_summary, error_json, render, result_json, states_table, unresolved_table

if TYPE_CHECKING:
    from .._batch.canceller import BatchCanceller
    from .._http.session import UpbitSession

__all__ = [
    "ALL_MARKETS",
    "KeyFileError",
    "Outcome",
    "Pocket",
    "add_keys_argument",
    "cancel_in_pockets",
    "make_sessions",
    "open_sessions",
    "outcome_json",
    "partial_outcome",
    "read_key_file",
    "report",
    "status",
    "stream_for",
]

#: A pocket's name in the key file: shown in summaries and JSON.
_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
#: A key file longer than this is not one (Upbit gives an account six pockets).
_MOST_BYTES: Final = 65_536
#: What stands for "every market" in the JSON.
ALL_MARKETS: Final = "*"


@attrs.frozen
class Pocket:
    """One line of the key file."""

    name: str
    access_key: str
    secret_key: str = attrs.field(repr=False)


class KeyFileError(ValueError):
    """The key file cannot be used; the message says why (and never quotes a key)."""


#: Each pocket's result per market (``None``: every market) and each market's listing error.
Outcome = dict[str, tuple[dict[str | None, BatchResult], dict[str | None, UpbitError]]]


def add_keys_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help=(
            "the key pairs of several pockets (sub-accounts), one 'access_key secret_key "
            "[name]' line each, '#' comments allowed; the file must be readable by you alone "
            "(chmod 600). Every pocket works at once within its own budget. Instead of "
            "UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY"
        ),
    )


def read_key_file(path: str) -> list[Pocket]:
    """The pockets of the key file at ``path``. Raises :class:`KeyFileError`."""
    try:
        with Path(path).open(encoding="utf-8-sig") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"{path} can be read or written by other users (mode "
                    f"{stat.S_IMODE(mode):03o}): run chmod 600 {path}, the keys in it can "
                    "cancel every order"
                )
            text = file.read(_MOST_BYTES + 1)
            if len(text) > _MOST_BYTES:
                raise KeyFileError(
                    f"{path} is larger than a key file ({_MOST_BYTES:,} characters at most)"
                )
            lines = text.splitlines()
    except OSError as error:
        raise KeyFileError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise KeyFileError(f"cannot read {path}: not UTF-8 text ({error.reason})") from None
    pockets: list[Pocket] = []
    names: set[str] = set()
    keys: set[str] = set()
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"line {number} of {path}"
        if len(fields) not in (2, 3):
            raise KeyFileError(f"{where}: give 'access_key secret_key [name]', nothing else")
        access_key, secret_key = fields[0], fields[1]
        if not (access_key.isascii() and access_key.isprintable()):
            raise KeyFileError(f"{where}: the access key holds characters Upbit keys never have")
        if not (secret_key.isascii() and secret_key.isprintable()) or len(secret_key) < 32:
            raise KeyFileError(
                f"{where}: the secret key is not one (Upbit's have 40 printable characters); "
                "check what was copied"
            )
        named = len(fields) == 3
        name = fields[2] if named else f"pocket-{len(pockets) + 1}"
        if not _NAME.fullmatch(name):
            raise KeyFileError(f"{where}: a pocket's name is 1 to 32 letters, digits or '_.-'")
        if name in names:
            given = "is given twice" if named else "(given to it by default) is taken"
            raise KeyFileError(f"{where}: the name {name} {given}; name each pocket")
        if access_key in keys:
            raise KeyFileError(
                f"{where}: this access key is given twice; give one key pair per pocket"
            )
        names.add(name)
        keys.add(access_key)
        pockets.append(Pocket(name, access_key, secret_key))
    if not pockets:
        raise KeyFileError(f"{path} holds no key pair: give 'access_key secret_key [name]' lines")
    return pockets


def make_sessions(
    pockets: list[Pocket], args: argparse.Namespace, base_url: str | None
) -> list[tuple[Pocket, UpbitSession]]:
    """A session for each pocket, each with its own budget. Raises ``ValueError`` or
    ``ImportError`` for bad settings (nothing is opened)."""
    from .._http.session import UpbitSession
    from .._limiter.host import HostLimiter
    from .._limiter.redis import RedisLimiter

    sessions = []
    for pocket in pockets:
        account = getattr(args, "account", None)
        limiter = (
            HostLimiter(account=account)
            if args.redis is None
            else RedisLimiter(args.redis, account=account)
        )
        session = UpbitSession(
            pocket.access_key,
            pocket.secret_key,
            region=args.region,
            base_url=base_url,
            limiter=limiter,
        )
        sessions.append((pocket, session))
    return sessions


async def open_sessions(stack: Any, sessions: list[tuple[Pocket, UpbitSession]]) -> None:
    """Enter each session (and the shared budget it is given) on ``stack``."""
    from .._limiter.host import HostLimiter
    from .._limiter.redis import RedisLimiter

    for _, session in sessions:
        if isinstance(session.limiter, HostLimiter | RedisLimiter):
            await stack.enter_async_context(session.limiter)
        await stack.enter_async_context(session)


async def cancel_in_pockets(
    sessions: list[tuple[Pocket, UpbitSession]],
    markets: list[str | None],
    *,
    confirm: bool,
    batch_cancel: bool,
    cancellers: dict[str, dict[str | None, BatchCanceller]],
) -> Outcome:
    """``cancel_open`` in every pocket and market at once. ``cancellers`` is filled in as the
    operations begin, so that an interrupted run can show what each had done."""
    from .._watch.watchdog import cancel_everything

    outcome: Outcome = {}

    async def one(pocket: Pocket, session: UpbitSession) -> None:
        outcome[pocket.name] = await cancel_everything(
            session,
            markets,
            confirm=confirm,
            batch_cancel=batch_cancel,
            cancellers=cancellers.setdefault(pocket.name, {}),
        )

    async with asyncio.TaskGroup() as group:
        for pocket, session in sessions:
            group.create_task(one(pocket, session))
    return {pocket.name: outcome[pocket.name] for pocket, _ in sessions}


def partial_outcome(cancellers: dict[str, dict[str | None, BatchCanceller]]) -> Outcome:
    """What every operation had done when the run was interrupted."""
    return {
        name: (
            {
                market: canceller.last_result or BatchResult()
                for market, canceller in by_market.items()
            },
            {},
        )
        for name, by_market in cancellers.items()
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """``{pocket: {market or "*": result (with "error" if its listing failed)}}``."""
    document: dict[str, Any] = {}
    for name, (results, errors) in outcome.items():
        markets: dict[str, Any] = {}
        for market, result in results.items():
            entry = result_json(result)
            if market in errors:
                entry["error"] = error_json(errors[market])
            markets[ALL_MARKETS if market is None else market] = entry
        document[name] = markets
    return document


def report(outcome: Outcome, file: TextIO) -> None:
    """A summary for each pocket and market, with its tables of unresolved ids and states."""
    for name, (results, errors) in outcome.items():
        for market, result in results.items():
            distinct = result.success.count + result.failed.count + len(result.unresolved)
            where = "every market" if market is None else market
            render(cancel_summary(result, given=distinct, title=f"{name} · {where}"), file)
            for table in (unresolved_table(result.unresolved), states_table(result)):
                if table is not None:
                    render(table, file)
            if market in errors:
                print(
                    f"{name} · {where}: the open orders could not be listed: {errors[market]}",
                    file=file,
                )


def status(outcome: Outcome) -> int:
    """0 when every pocket shows nothing left open (and, confirmed, nothing unknown), else 1."""
    for results, errors in outcome.values():
        if errors:
            return 1
        for result in results.values():
            if result.listing_complete is False:
                return 1
            if result.confirmed and (result.still_open or result.unknown_states):
                return 1
            if not result.confirmed and result.unresolved:
                return 1
    return 0


def stream_for(args: argparse.Namespace) -> TextIO:
    """Where summaries go: standard error with --json (standard output holds the JSON)."""
    return sys.stderr if args.json else sys.stdout
