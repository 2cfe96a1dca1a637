"""Ctrl+C, SIGTERM and bad input on the command line: an exit status, a line, never a
traceback."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import NoReturn

__all__ = [
    "Parser",
    "catch_interrupts",
    "ignore_interrupts",
    "interrupted",
    "stop_on_signals",
    "usage_error",
]

#: The signal that interrupted the run: the exit status is 128 plus its number, as shells
#: report a process a signal ended (130 for Ctrl+C, 143 for SIGTERM).
_stopped_by: list[int] = [signal.SIGINT]


def usage_error(prog: str, message: str) -> int:
    """Say what is wrong with the input of ``prog`` (``upbit-cancel cancel``) on standard
    error; the exit status 2."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points at ``--help``, not the usage."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(usage_error(self.prog, f"{message} (see {self.prog} --help)"))


def catch_interrupts() -> None:
    """Ctrl+C and SIGTERM interrupt the run, even if it was started with them ignored.

    The first raises ``KeyboardInterrupt`` where the run is (``asyncio.run`` then cancels what
    runs in the loop); from then on both are ignored, so that a second one never interrupts
    the winding down.
    """
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    ignore_interrupts()
    _stopped_by[0] = signum
    raise KeyboardInterrupt


def interrupted() -> int:
    """The exit status of a run that a signal interrupted."""
    return 128 + _stopped_by[0]


def ignore_interrupts() -> None:
    """From now on Ctrl+C and SIGTERM do nothing: the partial result is being written."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], object]) -> Iterator[None]:
    """Inside (in the running event loop): the first Ctrl+C or SIGTERM calls ``stop`` (which
    cancels the command's task, or sets its event), and any later one is ignored while the
    command winds down.

    The event loop handles the signals, so none is raised in the middle of whatever runs (a
    second Ctrl+C would otherwise interrupt the cancellation itself). Afterwards the process
    ignores them if one came (it is stopping), and takes them again as usual if none did.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            received.append(signum)
            _stopped_by[0] = signum
            stop()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        installed.append(signum)
    try:
        yield
    finally:
        # Held while the handlers change hands: one arriving in between would find Python's
        # default handler and raise in the middle of the winding down.
        with _held(installed):
            for signum in installed:
                loop.remove_signal_handler(signum)
            if received:
                ignore_interrupts()
            else:
                catch_interrupts()


@contextlib.contextmanager
def _held(signals: Sequence[int]) -> Iterator[None]:
    """Signals that arrive inside are delivered on the way out, to the handlers then in place."""
    if not signals or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
