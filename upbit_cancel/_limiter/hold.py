"""How long a request's slot stays taken after its lease ends: a pure function of its times.

The exchange counts a request when it arrives, somewhere after it left and, if an answer came
back, before that answer. A slot is free again once a request sent *now* can no longer arrive in
the same window of the exchange as the one that held it:

- answered, with a known path floor ``F`` (see ``path``): it arrived no later than
  ``answered - min(x)``, and a request sent at ``t`` arrives no earlier than ``t + min(d_in)``,
  with ``F = min(d_in) + min(x)``; so the slot frees a window (plus ``margin``) after
  ``answered - F``. Each cycle of the budget then costs a window plus the spread of the delays,
  not a window plus a whole round trip;
- answered, no floor known (first requests, after idle, after a 429): a window after the answer;
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
    floor: float | None = None,
) -> float:
    """The time until which a released lease's slot stays taken.

    ``floor`` is a lower bound of the path's round trip (``None``: not known).
    """
    if answered_at is not None:
        if floor is None or sent_at is None:
            return answered_at + window + margin
        return max(sent_at, answered_at - floor) + window + margin
    if sent_at is None:
        return released_at
    return released_at + max_transit + window + margin
