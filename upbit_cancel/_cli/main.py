"""The ``upbit-cancel`` commands: ``cancel``, ``watchdog``, ``demo`` and ``fake-server``.

Each subcommand's module gives two functions: one adds its parser to the subparsers, one runs
it and returns the exit status. :func:`run` builds the parser and dispatches on the name; the
console script's entry point (``upbit_cancel._cli.main``) calls it once Ctrl+C is taken over.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from . import cancel, demo, fake_server, watchdog
from .signals import Parser

__all__ = ["run"]

if TYPE_CHECKING:
    _SubParsers: TypeAlias = argparse._SubParsersAction[Parser]


_COMMANDS: dict[
    str,
    tuple[Callable[[_SubParsers], None], Callable[[argparse.Namespace], int]],
] = {
    "cancel": (cancel.add_parser, cancel.run),
    "demo": (demo.add_parser, demo.run),
    "fake-server": (fake_server.add_parser, fake_server.run),
    "watchdog": (watchdog.add_parser, watchdog.run),
}


def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(
        prog="upbit-cancel", description="Cancel Upbit orders fast, within the rate limit."
    )
    parser.add_argument("--version", action="version", version=f"upbit-cancel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser, _ in _COMMANDS.values():
        add_parser(subparsers)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* and run its command; the exit status (see :func:`upbit_cancel._cli.main`)."""
    args = _build_parser().parse_args(argv)
    return _COMMANDS[args.command][1](args)
