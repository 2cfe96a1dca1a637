"""``upbit-cancel fake-server`` (also ``python -m upbit_cancel.testing``): the fake exchange as a
server of its own, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ..testing import FakeUpbit, Faults
from .signals import Parser, stop_on_signals, usage_error

__all__ = ["add_parser", "main", "run"]

if TYPE_CHECKING:
    _SubParsers: TypeAlias = argparse._SubParsersAction[Parser]

DESCRIPTION = (
    "Run the fake Upbit exchange on loopback until SIGINT or SIGTERM. It prints "
    "base_url=, access_key= and secret_key= lines (a throwaway credential of this "
    "fake, safe to print; with --env, export lines for a shell to eval), then notes starting "
    "with '#'."
)

#: How many seeded uuids it prints when it writes no ``--uuids-file``.
_UUIDS_SHOWN = 5


def add_parser(subparsers: _SubParsers) -> None:
    """``upbit-cancel fake-server``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fake-server", help="run the fake Upbit exchange until interrupted", description=DESCRIPTION
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options, each with its default in its help."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=int, default=0, help="port; 0 picks a free one (default: %(default)s)")
    add("--orders", type=int, default=0, metavar="N", help="open orders to seed (default: 0)")
    add(
        "--identifiers",
        action="store_true",
        help="give each seeded order an identifier (default: none)",
    )
    add("--market", default="SGD-BTC", help="market of the seeded orders (default: %(default)s)")
    add(
        "--policy",
        choices=("sliding", "fixed", "bucket"),
        default="sliding",
        help="how the window of the limit is counted (default: %(default)s)",
    )
    add("--limit", type=int, default=30, help="requests per window (default: %(default)s)")
    add(
        "--window",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="window length (default: %(default)s)",
    )
    add(
        "--cancel-all-limit",
        type=int,
        default=1,
        metavar="N",
        help="batch cancels (DELETE /v1/orders/open) per window (default: %(default)s)",
    )
    add(
        "--cancel-all-window",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="the batch cancels' window (default: %(default)s)",
    )
    add(
        "--unknown-ids",
        choices=("omit", "failed"),
        default="omit",
        help="what a cancel answers for ids the fake does not know (default: %(default)s)",
    )
    add(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay each way (default: %(default)s)",
    )
    add(
        "--jitter",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="random extra delay each way, uniform in [0, SECONDS] (default: %(default)s)",
    )
    add(
        "--error-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="fraction of requests answered 5xx, unprocessed (default: %(default)s)",
    )
    add(
        "--drop-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="fraction processed, then disconnected (default: %(default)s)",
    )
    add(
        "--plain-text-429",
        action="store_true",
        help="answer 429 with plain text instead of JSON (default: JSON)",
    )
    add(
        "--block-after",
        type=int,
        default=None,
        metavar="N",
        help="429s within 10 s before a 418 block (default: never block)",
    )
    add(
        "--block-seconds",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="length of a block (default: %(default)s)",
    )
    add("--seed", type=int, default=0, help="seed of all randomness (default: %(default)s)")
    add(
        "--uuids-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the seeded uuids here, one a line (default: print the first five)",
    )
    add(
        "--tls",
        metavar="CA_FILE",
        type=Path,
        default=None,
        help="serve HTTPS with a throwaway certificate authority, whose certificate is written "
        "to CA_FILE for clients to trust (SSL_CERT_FILE=CA_FILE; needs trustme) "
        "(default: plain HTTP)",
    )
    add(
        "--env",
        action="store_true",
        help="print the address and key as export UPBIT_BASE_URL=... lines a shell can eval, "
        "which upbit-cancel cancel reads (default: base_url=... lines)",
    )


def run(args: argparse.Namespace, *, prog: str = "upbit-cancel fake-server") -> int:
    """Serve as ``args`` say until a signal; the exit status (2: bad settings)."""
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
            cancel_all_limit=args.cancel_all_limit,
            cancel_all_window=args.cancel_all_window,
            host=args.host,
            port=args.port,
            unknown_ids=args.unknown_ids,
            plain_text_429=args.plain_text_429,
            block_after=args.block_after,
            block_seconds=args.block_seconds,
            faults=faults,
            seed=args.seed,
            tls=args.tls is not None,
        )
    except (ValueError, ImportError) as error:
        return usage_error(prog, str(error))
    if args.orders < 0:
        return usage_error(prog, f"--orders must be 0 or more, not {args.orders}")
    if not 0 <= args.port <= 65535:
        return usage_error(prog, f"--port must be between 0 and 65535, not {args.port}")
    try:
        asyncio.run(_serve(fake, args))
    except OSError as error:
        # The uuids file cannot be written, or the address cannot be listened on.
        return usage_error(prog, str(error))
    return 0


async def _serve(fake: FakeUpbit, args: argparse.Namespace) -> None:
    # A signal while seeding, serving or stopping stops it; a second one is ignored.
    stop = asyncio.Event()
    with stop_on_signals(stop.set):
        await _serve_until(stop, fake, args)
    print("# stopped", flush=True)


async def _serve_until(stop: asyncio.Event, fake: FakeUpbit, args: argparse.Namespace) -> None:
    uuids = fake.add_orders(args.orders, market=args.market, identifiers=args.identifiers)
    if args.uuids_file is not None:
        # Written before anything is printed, so a reader of the output finds it complete.
        try:
            args.uuids_file.write_text("".join(f"{uuid}\n" for uuid in uuids))
        except OSError as error:
            raise OSError(f"cannot write {args.uuids_file}: {error.strerror or error}") from None
    if args.tls is not None:
        assert fake.ca_pem is not None
        try:
            args.tls.write_bytes(fake.ca_pem)
        except OSError as error:
            raise OSError(f"cannot write {args.tls}: {error.strerror or error}") from None
    try:
        await fake.start()
    except OSError as error:
        where = f"{args.host}:{args.port}"
        raise OSError(f"cannot listen on {where}: {error.strerror or error}") from None
    async with fake:
        if args.env:
            print(f"export UPBIT_BASE_URL={shlex.quote(fake.base_url)}")
            print(f"export UPBIT_ACCESS_KEY={shlex.quote(fake.access_key)}")
            print(f"export UPBIT_SECRET_KEY={shlex.quote(fake.secret_key)}")
        else:
            print(f"base_url={fake.base_url}")
            print(f"access_key={fake.access_key}")
            print(f"secret_key={fake.secret_key}")
        if args.tls is not None:
            print(f"# HTTPS: trust {args.tls} (such as SSL_CERT_FILE={shlex.quote(str(args.tls))})")
        print("# The secret key is a throwaway credential of this fake exchange.")
        print(f"# policy={args.policy} limit={args.limit} window={args.window}")
        seeded = f"{len(uuids):,} open order{'' if len(uuids) == 1 else 's'}"
        if args.uuids_file is not None:
            print(f"# seeded {seeded}; uuids written to {args.uuids_file}")
        else:
            print(f"# seeded {seeded}")
            for uuid in uuids[:_UUIDS_SHOWN]:
                print(f"# {uuid}")
            if len(uuids) > _UUIDS_SHOWN:
                print(f"# ... and {len(uuids) - _UUIDS_SHOWN} more")
        print("# Admin API under /_fake/ (see docs/fake-exchange.md). Stop with Ctrl+C.")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None, *, prog: str) -> int:
    """The fake server as a command of its own (``python -m upbit_cancel.testing``)."""
    parser = Parser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv), prog=prog)
