"""The fake exchange as a server of its own: ``python -m upbit_cancel.testing`` (also
``upbit-cancel fake-server``), until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ._faults import Faults
from ._server import FakeUpbit

__all__ = ["DESCRIPTION", "add_arguments", "main", "run"]

DESCRIPTION = (
    "Run the fake Upbit exchange on loopback until SIGINT or SIGTERM. It prints "
    "base_url=, access_key= and secret_key= lines (a throwaway credential of this "
    "fake, safe to print), then notes starting with '#'."
)

#: How many seeded uuids it prints when it writes no ``--uuids-file``.
_UUIDS_SHOWN = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options."""
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


def usage_error(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, *, prog: str) -> int:
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
        return usage_error(prog, str(error))
    if args.orders < 0:
        return usage_error(prog, f"--orders must be 0 or more, not {args.orders}")
    if not 0 <= args.port <= 65535:
        return usage_error(prog, f"--port must be between 0 and 65535, not {args.port}")
    # KeyboardInterrupt only arrives where signal handlers cannot be installed (Windows).
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_serve(fake, args))
        except OSError as error:
            # The uuids file cannot be written, or the address cannot be listened on.
            return usage_error(prog, str(error))
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
    print("# stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m upbit_cancel.testing [options]``."""
    prog = "python -m upbit_cancel.testing"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    with contextlib.suppress(KeyboardInterrupt):
        return run(parser.parse_args(argv), prog=prog)
    return 130
