"""The console: the ``upbit-cancel`` command (``main``), what it shows (``output``), its demo.

This module is the console script's entry point, so it imports nothing heavy: Ctrl+C and
SIGTERM are taken over first, and everything else is imported inside :func:`main`, where they
end the command with a line and an exit status, never a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from .signals import catch_interrupts, ignore_interrupts, interrupted

__all__ = ["console", "main", "run_fake_server"]


def _escape_what_cannot_be_written() -> None:
    """An id the output's encoding cannot hold (an ``é`` on an ASCII terminal) is written
    escaped (``\\xe9``) rather than ending the command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``upbit-cancel`` command line with *argv* (default: ``sys.argv[1:]``), from
    Python: the caller's signal handlers are as they were when it returns.

    Ctrl+C (or SIGTERM) anywhere ends it with status 130 (143) and a line on standard error,
    never a traceback.
    """
    return _guarded(lambda: _run(argv), "upbit-cancel", restore=True)


def console() -> int:
    """The ``upbit-cancel`` console script (and ``python -m upbit_cancel``).

    Like :func:`main`, except that once a signal came the process ignores any further one until
    it exits, so that a second Ctrl+C never interrupts the interpreter's own shutdown.
    """
    return _guarded(lambda: _run(None), "upbit-cancel", restore=False)


def run_fake_server() -> int:
    """``python -m upbit_cancel.testing``: ``upbit-cancel fake-server`` under its own name."""

    def run() -> int:
        from .fake_server import main

        return main(None, prog="python -m upbit_cancel.testing")

    return _guarded(run, "python -m upbit_cancel.testing", restore=False)


def _run(argv: Sequence[str] | None) -> int:
    from .main import run

    return run(argv)


def _guarded(run: Callable[[], int], prog: str, *, restore: bool) -> int:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        catch_interrupts()
        _escape_what_cannot_be_written()
        return run()
    except KeyboardInterrupt:
        ignore_interrupts()
        print(f"{prog}: interrupted", file=sys.stderr)
        return interrupted()
    finally:
        if restore:
            with contextlib.suppress(ValueError, TypeError):
                for signum, handler in before.items():
                    signal.signal(signum, handler)
