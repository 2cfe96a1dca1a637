"""The heartbeat's value and the watchdog's rule, without I/O."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from upbit_cancel._watch.beat import Beat, Vigil, decode, encode


def beat(sequence: int, *, writer: str = "w1", state: str = "beating") -> Beat:
    assert state in ("beating", "disarmed")
    return Beat(writer, sequence, state, 0.5, 1234, 1_700_000_000.0)  # type: ignore[arg-type]


def test_a_beat_reads_back_as_written() -> None:
    """What encode writes, decode reads."""
    original = beat(7, state="disarmed")
    assert decode(encode(original)) == original


def test_anything_else_reads_as_no_heartbeat() -> None:
    """A file that is not a heartbeat of this format is no heartbeat, never a crash."""
    good = json.loads(encode(beat(1)))
    for raw in (b"", b"\xff", b"[]", b"null", b'{"format": 2}', b"{" * 10_000):
        assert decode(raw) is None
    for field, value in (
        ("writer", ""),
        ("sequence", 0),
        ("sequence", True),
        ("state", "asleep"),
        ("every", 0),
        ("every", float("inf")),
        ("pid", "1"),
        ("written", None),
    ):
        assert decode(json.dumps(good | {field: value}).encode()) is None, field


def test_a_first_reading_only_sets_the_baseline() -> None:
    """A beat already there when the watchdog starts may be a dead bot's last: no arming."""
    vigil = Vigil(after=1.0)
    assert vigil.see(beat(5), 0.0, first=True) == "waiting"
    assert vigil.see(beat(5), 100.0) == "waiting"


def test_the_first_new_beat_arms_and_silence_expires() -> None:
    """Armed by a beat seen written; expired once no new beat came for more than ``after``."""
    vigil = Vigil(after=1.0)
    vigil.see(None, 0.0, first=True)
    assert vigil.see(beat(1), 0.1) == "alive"
    assert vigil.see(beat(2), 0.6) == "alive"
    assert vigil.see(beat(2), 1.6) == "alive"
    assert vigil.silent_for(1.6) == 1.0
    assert vigil.see(beat(2), 1.61) == "expired"
    assert vigil.see(beat(3), 1.7) == "expired", "expired stays expired until rearmed"


def test_a_vanished_heartbeat_is_silence() -> None:
    """A heartbeat that disappears (a Redis key expired) counts as no new beat."""
    vigil = Vigil(after=1.0)
    vigil.see(None, 0.0, first=True)
    vigil.see(beat(1), 0.0)
    assert vigil.see(None, 0.5) == "alive"
    assert vigil.see(None, 1.5) == "expired"


def test_a_disarmed_beat_stands_the_watchdog_down() -> None:
    """A bot that left normally disarms the watchdog, armed or not yet."""
    armed = Vigil(after=1.0)
    armed.see(None, 0.0, first=True)
    armed.see(beat(1), 0.1)
    assert armed.see(beat(2, state="disarmed"), 0.2) == "disarmed"
    quick = Vigil(after=1.0)
    quick.see(beat(9, writer="old", state="disarmed"), 0.0, first=True)
    assert quick.see(beat(9, writer="old", state="disarmed"), 5.0) == "waiting"
    assert quick.see(beat(2, writer="new", state="disarmed"), 5.1) == "disarmed"


def test_a_restarted_bot_arms_again_after_rearm() -> None:
    """After an expiry, rearm waits for a beat that differs from the last one read."""
    vigil = Vigil(after=1.0)
    vigil.see(None, 0.0, first=True)
    vigil.see(beat(1), 0.0)
    assert vigil.see(beat(1), 2.0) == "expired"
    vigil.rearm()
    assert vigil.see(beat(1), 10.0) == "waiting"
    assert vigil.see(beat(1, writer="w2"), 10.1) == "alive"


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=3.0),
            st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
        ),
        max_size=40,
    ),
    st.floats(min_value=0.1, max_value=2.0),
)
def test_it_never_expires_within_after_of_a_new_beat(
    readings: list[tuple[float, int | None]], after: float
) -> None:
    """Whatever is read, "expired" only comes more than ``after`` after the last new beat seen,
    and never before the first one."""
    vigil = Vigil(after=after)
    now = 0.0
    vigil.see(None, now, first=True)
    last_new: float | None = None
    previous: Beat | None = None
    for step, sequence in readings:
        now += step
        current = None if sequence is None else beat(sequence)
        if current is not None and current != previous:
            last_new = now
        previous = current
        verdict = vigil.see(current, now)
        if verdict == "expired":
            assert last_new is not None
            assert now - last_new > after
            break
        assert verdict in ("waiting", "alive")


def test_a_disarm_by_one_of_two_writers_does_not_stand_down() -> None:
    """An old bot that leaves normally while a new one beats (a deploy): still watching, and
    the heartbeat is known to be shared."""
    vigil = Vigil(after=1.0)
    vigil.see(None, 0.0, first=True)
    vigil.see(beat(1, writer="new"), 0.1)
    vigil.see(beat(5, writer="old"), 0.2)
    assert vigil.see(beat(6, writer="old", state="disarmed"), 0.3) == "alive"
    assert vigil.shared
    assert vigil.see(beat(6, writer="old", state="disarmed"), 1.25) == "expired"


def test_beats_that_alternate_between_writers_are_seen_as_shared() -> None:
    """Two bots on one heartbeat: said, since the stop of one cannot be seen."""
    vigil = Vigil(after=1.0)
    vigil.see(None, 0.0, first=True)
    vigil.see(beat(1, writer="a"), 0.1)
    vigil.see(beat(1, writer="b"), 0.2)
    assert not vigil.shared
    vigil.see(beat(2, writer="a"), 0.3)
    assert vigil.shared


def test_a_slow_read_never_makes_it_fire_early() -> None:
    """Silence is judged when the read began, and a beat it returns counts from when it came
    back: a 0.5 s read that brings the last beat does not expire it."""
    vigil = Vigil(after=1.0)
    vigil.see(None, 0.0, first=True)
    vigil.see(beat(1), 1.0, read_started=1.0)
    assert vigil.see(beat(2), 2.45, read_started=1.95) == "alive"
    assert vigil.see(beat(2), 3.44, read_started=3.44) == "alive"
    assert vigil.see(beat(2), 3.46, read_started=3.46) == "expired"
