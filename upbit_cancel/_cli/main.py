"""The ``upbit-cancel`` console script: ``cancel``, ``demo`` and ``fake-server``.

Each subcommand's module gives two functions: one adds its parser to the subparsers, one runs
it and returns the exit status. ``main`` builds the parser and dispatches on the name.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from . import cancel, demo
from .signals import catch_interrupts, ignore_interrupts, interrupted

__all__ = ["main"]

if TYPE_CHECKING:
    _SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _add_fake_server_parser(subparsers: _SubParsers) -> None:
    from ..testing._command import DESCRIPTION, add_arguments

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fake-server", help="run the fake Upbit exchange until interrupted", description=DESCRIPTION
    )
    add_arguments(parser)


def _run_fake_server(args: argparse.Namespace) -> int:
    from ..testing._command import run

    return run(args, prog="upbit-cancel fake-server")


_COMMANDS: dict[
    str,
    tuple[Callable[[_SubParsers], None], Callable[[argparse.Namespace], int]],
] = {
    "cancel": (cancel.add_parser, cancel.run),
    "demo": (demo.add_parser, demo.run),
    "fake-server": (_add_fake_server_parser, _run_fake_server),
}


def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="upbit-cancel", description="Cancel Upbit orders fast, within the rate limit."
    )
    parser.add_argument("--version", action="version", version=f"upbit-cancel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser, _ in _COMMANDS.values():
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``upbit-cancel`` command line with *argv* (default: ``sys.argv[1:]``).

    Ctrl+C (or SIGTERM) anywhere ends it with status 130 (143) and a line on standard error,
    never a traceback.
    """
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        catch_interrupts()
        args = _build_parser().parse_args(argv)
        return _COMMANDS[args.command][1](args)
    except KeyboardInterrupt:
        ignore_interrupts()
        print("upbit-cancel: interrupted", file=sys.stderr)
        return interrupted()
    finally:
        # Called from Python (a test, a script), leave the caller's handlers as they were.
        with contextlib.suppress(ValueError, TypeError):
            for signum, handler in before.items():
                signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
