"""Ctrl+C and SIGTERM on the command line: an exit status, a line, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "catch_interrupts",
    "ignore_interrupts",
    "interrupted",
    "stop_on_signals",
    "usage_error",
]

#: The signal that interrupted the run: the exit status is 128 plus its number, as shells
#: report a process a signal ended (130 for Ctrl+C, 143 for SIGTERM).
_stopped_by: list[int] = [signal.SIGINT]


def usage_error(command: str, message: str) -> int:
    """Say what is wrong with the command's input on standard error; the exit status 2."""
    print(f"upbit-cancel {command}: {message}", file=sys.stderr)
    return 2


def catch_interrupts() -> None:
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


def interrupted() -> int:
    """The exit status of a run that a signal interrupted."""
    return 128 + _stopped_by[0]


def ignore_interrupts() -> None:
    """From now on Ctrl+C and SIGTERM do nothing: the partial result is being written."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_signals(task: asyncio.Task[object]) -> Iterator[None]:
    """While ``task`` (the command's work, in the running loop) runs: the first Ctrl+C or
    SIGTERM cancels it, and any later one is ignored while its partial result is made.

    The event loop handles the signals, so none is raised in the middle of whatever runs (a
    second Ctrl+C would otherwise interrupt the cancellation itself). Afterwards the process
    ignores them if one came, and takes them again as usual if none did.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            received.append(signum)
            _stopped_by[0] = signum
            task.cancel()

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
        for signum in installed:
            loop.remove_signal_handler(signum)
        if received:
            ignore_interrupts()
        else:
            catch_interrupts()
