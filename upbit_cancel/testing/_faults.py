"""Network and server faults the fake exchange can inject into signed API requests."""

from __future__ import annotations

import math
import random
from typing import Literal

import attrs

__all__ = ["FaultKind", "Faults"]

#: What happened to a request, as written in :attr:`RequestRecord.fault`.
FaultKind = Literal["error", "drop", "malformed", "slow"]


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _fraction(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@attrs.frozen
class Faults:
    """Delays and failures applied to the fake's signed API endpoints (never to the admin API).

    Delays, in seconds: each request waits ``latency_in + uniform(0, jitter_in)`` before it
    *arrives* (before its arrival time is taken and the rate limiter consulted), and
    ``latency_out + uniform(0, jitter_out)`` before its answer is sent.

    Rates are fractions of requests, drawn independently per request from the fake's seeded
    random generator; they must add up to at most 1:

    - ``error_rate``: answered 500, 502 or 503 with an HTML body by a "gateway" in front of the
      exchange. The request is not processed and does not count toward the rate limit.
    - ``drop_rate``: processed (orders are cancelled), then the connection is closed before
      any byte of the answer is sent.
    - ``malformed_rate``: processed, then answered with its status but a truncated JSON body.
    - ``slow_rate``: processed, then answered only after ``slow_seconds`` more seconds.

    Example::

        FakeUpbit(faults=Faults(jitter_in=0.005, drop_rate=0.01))
    """

    #: Fixed delay before a request arrives, in seconds.
    latency_in: float = attrs.field(default=0.0, validator=_non_negative)
    #: Upper bound of the uniform random extra delay before a request arrives.
    jitter_in: float = attrs.field(default=0.0, validator=_non_negative)
    #: Fixed delay before an answer is sent, in seconds.
    latency_out: float = attrs.field(default=0.0, validator=_non_negative)
    #: Upper bound of the uniform random extra delay before an answer is sent.
    jitter_out: float = attrs.field(default=0.0, validator=_non_negative)
    #: Fraction of requests answered with an HTML 5xx page and not processed.
    error_rate: float = attrs.field(default=0.0, validator=_fraction)
    #: Fraction of requests processed and then disconnected without an answer.
    drop_rate: float = attrs.field(default=0.0, validator=_fraction)
    #: Fraction of requests processed and then answered with a truncated JSON body.
    malformed_rate: float = attrs.field(default=0.0, validator=_fraction)
    #: Fraction of requests processed and then answered ``slow_seconds`` late.
    slow_rate: float = attrs.field(default=0.0, validator=_fraction)
    #: Extra delay of a slow answer, in seconds.
    slow_seconds: float = attrs.field(default=5.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self._total_rate() > 1.0:
            raise ValueError("error_rate + drop_rate + malformed_rate + slow_rate must be <= 1")

    def _total_rate(self) -> float:
        return self.error_rate + self.drop_rate + self.malformed_rate + self.slow_rate

    def inbound_delay(self, rng: random.Random) -> float:
        """Draw the delay before a request arrives."""
        return self.latency_in + (rng.uniform(0.0, self.jitter_in) if self.jitter_in else 0.0)

    def outbound_delay(self, rng: random.Random) -> float:
        """Draw the delay before an answer is sent."""
        return self.latency_out + (rng.uniform(0.0, self.jitter_out) if self.jitter_out else 0.0)

    def choose(self, rng: random.Random) -> FaultKind | None:
        """Draw the fault, if any, for one request."""
        # Without fault rates, draw nothing, so enabling only delays keeps their sequence.
        if not self._total_rate():
            return None
        roll = rng.random()
        kinds: tuple[tuple[FaultKind, float], ...] = (
            ("error", self.error_rate),
            ("drop", self.drop_rate),
            ("malformed", self.malformed_rate),
            ("slow", self.slow_rate),
        )
        for kind, rate in kinds:
            if roll < rate:
                return kind
            roll -= rate
        return None
