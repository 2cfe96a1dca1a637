"""A heartbeat's value, and the rule that says from the beats seen whether its writer lives.

Pure: no I/O, no clock of its own. The watchdog reads the heartbeat now and then and tells
:class:`Vigil` what it read and when, by its own monotonic clock; :class:`Vigil` answers whether
the writer is still beating, has stopped (expired), has stood down (disarmed), or has not been
seen beating yet.

The rule never compares the writer's clock with the reader's: a beat counts from the moment the
reader first sees it, so a heartbeat kept in Redis by another host needs no synchronised clocks.
It costs at most one reading interval of lateness, never an early cancel. A beat already there
when the watchdog starts proves nothing (it may be a dead writer's last), so the watchdog arms on
the first beat it sees *change*.
"""

from __future__ import annotations

import json
import math
from typing import Final, Literal, TypeAlias, TypeGuard

import attrs

__all__ = ["FORMAT", "Beat", "BeatState", "Verdict", "Vigil", "decode", "encode"]

#: The version of the heartbeat's JSON.
FORMAT: Final = 1

BeatState: TypeAlias = Literal["beating", "disarmed"]
Verdict: TypeAlias = Literal["waiting", "alive", "expired", "disarmed"]


@attrs.frozen
class Beat:
    """One write of a heartbeat."""

    #: A random name of the :class:`~upbit_cancel.Heartbeat` that wrote it (one per ``async
    #: with``), so that a restarted bot's first beats differ from its last ones.
    writer: str
    #: Counts the writer's beats from 1.
    sequence: int
    #: ``"beating"``, or ``"disarmed"``: the writer left its ``async with`` normally.
    state: BeatState
    #: Seconds between the writer's beats.
    every: float
    #: The writer's process id and wall-clock time, for people reading the file (the rule uses
    #: neither).
    pid: int
    written: float


def encode(beat: Beat) -> bytes:
    """The heartbeat's stored form (one line of JSON)."""
    document = {"format": FORMAT, **attrs.asdict(beat)}
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def decode(raw: bytes) -> Beat | None:
    """The beat stored as ``raw``, or ``None`` if it is not a heartbeat of this format (a file
    written by something else reads as no heartbeat at all)."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return None
    writer = document.get("writer")
    sequence = document.get("sequence")
    state = document.get("state")
    pid = document.get("pid")
    every = _number(document.get("every"))
    written = _number(document.get("written"))
    if (
        not isinstance(writer, str)
        or not writer
        or not _whole(sequence)
        or sequence < 1
        or state not in ("beating", "disarmed")
        or not _whole(pid)
        or every is None
        or every <= 0
        or written is None
    ):
        return None
    return Beat(writer, sequence, state, every, pid, written)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class Vigil:
    """What the watchdog concludes from the beats it reads.

    Example::

        vigil = Vigil(after=5.0)
        vigil.see(read_heartbeat(), time.monotonic())  # "waiting", "alive", "expired", ...

    Once ``"expired"`` or ``"disarmed"``, it says so until :meth:`rearm`.

    One heartbeat should have one writer. When two write it (a deploy that overlaps the old bot
    and the new), a disarm by one while the other beat within ``after`` does not stand the
    watchdog down, and :attr:`shared` says that beats of two writers were seen.
    """

    __slots__ = ("_armed", "_last", "_seen_at", "_verdict", "_writers", "after", "shared")

    def __init__(self, after: float) -> None:
        #: Seconds without a new beat after which the writer counts as stopped.
        self.after = after
        #: Whether beats of more than one writer alternated, or one's disarm was overruled.
        self.shared = False
        # The last beat read (None: none), compared by value: a beat counts as new when it
        # differs from the previous reading.
        self._last: Beat | None = None
        self._seen_at: float | None = None
        # Each writer, and when a new beat of it was last seen.
        self._writers: dict[str, float] = {}
        self._armed = False
        self._verdict: Verdict = "waiting"

    @property
    def last(self) -> Beat | None:
        """The last beat read."""
        return self._last

    def silent_for(self, now: float) -> float | None:
        """Seconds since a new beat was last seen (``None`` before the first)."""
        return None if self._seen_at is None or not self._armed else now - self._seen_at

    def see(
        self,
        beat: Beat | None,
        now: float,
        *,
        first: bool = False,
        read_started: float | None = None,
    ) -> Verdict:
        """Take a reading that returned at ``now`` (and began at ``read_started``; ``first``:
        the watchdog's first reading, which only sets the baseline) and say what it shows.

        A new beat counts from ``now``, when it had certainly been written; silence is judged
        at ``read_started``, before which any beat it missed was written: so neither a slow
        read nor a beat written during one makes the watchdog fire early.
        """
        if self._verdict in ("expired", "disarmed"):
            return self._verdict
        previous, self._last = self._last, beat
        if not first and beat is not None and beat != previous:
            if beat.state == "disarmed":
                self._writers.pop(beat.writer, None)
                others = [writer for writer, at in self._writers.items() if now - at <= self.after]
                if not others:
                    self._verdict = "disarmed"
                    return self._verdict
                self.shared = True
            else:
                if (
                    previous is not None
                    and previous.writer != beat.writer
                    and beat.writer in self._writers
                ):
                    self.shared = True
                self._writers[beat.writer] = now
                self._armed = True
                self._seen_at = now
        if not self._armed:
            return "waiting"
        assert self._seen_at is not None
        judged_at = now if read_started is None else read_started
        self._verdict = "expired" if judged_at - self._seen_at > self.after else "alive"
        return self._verdict

    def rearm(self) -> None:
        """Watch again from the last beat read, as if it had been the first reading."""
        self._armed = False
        self._seen_at = None
        self._writers.clear()
        self._verdict = "waiting"
