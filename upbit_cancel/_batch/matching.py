"""Matching the exchange's answer to the ids a request carried, without any I/O.

A chunk's outcome is a :class:`Placement` per id, in the chunk's order: which list the id goes
in, with its entry there. Positions, not names, tie a placement to its id (the string
``"<int 1001>"`` and the integer ``1001``, shown by that label, are two ids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from .._errors import MalformedResponseError, UpbitError
from .._ids import Kind
from .._log import log as _log
from .._models import (
    CancelResult,
    ChunkResult,
    OrderEntry,
    OrderList,
    UnresolvedList,
    UnresolvedOrder,
)

__all__ = ["Outcome", "Place", "Placement", "chunk_result", "match_answer", "unresolved_with"]


#: The list an id is in.
Place = Literal["success", "failed", "unresolved"]
#: An id's place and its entry there.
Placement = tuple[Place, OrderEntry | UnresolvedOrder]


@attrs.frozen
class Outcome:
    """What one request's answer (or failure) says of each id of its chunk."""

    #: One placement per id, in the chunk's order.
    placements: tuple[Placement, ...]
    #: Ids in ``failed`` that an earlier, unanswered attempt may have canceled.
    possibly_canceled: frozenset[str] = frozenset()


def match_answer(
    kind: Kind,
    *,
    ids: Sequence[str],
    sent: Sequence[str],
    invalid: Mapping[int, UnresolvedOrder],
    answer: CancelResult,
    after_unknown: bool,
) -> Outcome:
    """Place each of ``ids`` in exactly one list, from the answer to the request of ``sent``.

    ``invalid`` ids (by position in ``ids``) were never sent and keep their own error. An id the
    answer lists as both canceled and refused is unresolved: the answer contradicts itself. An id
    the answer does not mention is unresolved with no error (Upbit's answer for ids it does not
    know is undocumented and may be silence), unless the answer lists entries that match no id
    sent: then the silent id may be one of them, and says so. With ``after_unknown``, an earlier
    attempt got no usable answer, so refused ids may have been canceled by it.
    """

    def key(entry: OrderEntry) -> str | None:
        return entry.uuid if kind == "uuids" else entry.identifier

    asked = set(sent)
    success = {key(entry): entry for entry in answer.success.orders}
    failed = {key(entry): entry for entry in answer.failed.orders}
    stray = [
        entry
        for entry in (*answer.success.orders, *answer.failed.orders)
        if key(entry) not in asked
    ]
    unmatched: UpbitError | None = None
    if stray:
        # Entries that name no id sent (an answer without the identifier, say).
        _log.warning("%d order(s) in the answer match no id that was sent", len(stray))
        unmatched = MalformedResponseError(
            f"the answer listed {len(stray)} order(s) that match no id sent "
            f"(such as uuid {stray[0].uuid!r}); this id may be one of them",
            status=200,
            ids=sent,
        )
    placements: list[Placement] = []
    possibly_canceled: set[str] = set()
    for position, value in enumerate(ids):
        if position in invalid:
            placements.append(("unresolved", invalid[position]))
        elif value in success and value in failed:
            error = MalformedResponseError(
                "the answer lists this id as both canceled and refused; the order may or may "
                "not be canceled",
                status=200,
                ids=(value,),
            )
            placements.append(("unresolved", UnresolvedOrder(value, error)))
        elif value in success:
            placements.append(("success", success[value]))
        elif value in failed:
            placements.append(("failed", failed[value]))
            if after_unknown:
                possibly_canceled.add(value)
        else:
            placements.append(("unresolved", UnresolvedOrder(value, unmatched)))
    return Outcome(tuple(placements), frozenset(possibly_canceled))


def unresolved_with(
    error: UpbitError | None, *, ids: Sequence[str], invalid: Mapping[int, UnresolvedOrder]
) -> Outcome:
    """Every one of ``ids`` unresolved with ``error``; invalid ids keep their own error."""
    return Outcome(
        tuple(
            ("unresolved", invalid.get(position, UnresolvedOrder(value, error)))
            for position, value in enumerate(ids)
        )
    )


def chunk_result(index: int, ids: Sequence[str], outcome: Outcome) -> ChunkResult:
    """The :class:`ChunkResult` of chunk ``index``, whose ids had ``outcome``."""
    success: list[OrderEntry] = []
    failed: list[OrderEntry] = []
    unresolved: list[UnresolvedOrder] = []
    for place, entry in outcome.placements:
        if isinstance(entry, UnresolvedOrder):
            unresolved.append(entry)
        else:
            (success if place == "success" else failed).append(entry)
    return ChunkResult(
        index=index,
        ids=tuple(ids),
        success=OrderList(tuple(success)),
        failed=OrderList(tuple(failed)),
        unresolved=UnresolvedList(tuple(unresolved)),
        possibly_canceled=outcome.possibly_canceled,
    )
