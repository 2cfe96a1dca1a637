"""How long a request's slot stays taken after its lease ends: a pure function of its times.

The exchange counts a request when it arrives, somewhere after the request left and, if an
answer came back, before that answer. A slot is free again once its request's arrival is a whole
window (plus a margin) in the past:

- answered: it arrived before its answer, so the slot frees a window after the answer;
- never sent (no connection could be made): nothing can arrive, the slot frees at once;
- abandoned (it left, no answer came back: a timeout, a dropped connection, a cancelled task):
  it may still be travelling, for up to ``max_transit`` after it left. When it really left is
  not known exactly (a client marks it leaving before it may wait for a pooled connection or
  connect), only that it was no later than the lease's end: the slot frees a window after
  ``max_transit`` past that end.
"""

from __future__ import annotations

__all__ = ["hold_until"]


def hold_until(
    *,
    sent_at: float | None,
    answered_at: float | None,
    released_at: float,
    window: float,
    margin: float,
    max_transit: float,
) -> float:
    """The time until which a released lease's slot stays taken."""
    if answered_at is not None:
        return answered_at + window + margin
    if sent_at is None:
        return released_at
    return released_at + max_transit + window + margin
