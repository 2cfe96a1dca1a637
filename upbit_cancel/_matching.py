"""Matching the exchange's answer to the ids a request carried, without any I/O."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ._errors import MalformedResponseError, UpbitError
from ._ids import Kind
from ._models import CancelResult, ChunkResult, OrderEntry, OrderList, UnresolvedOrder

__all__ = ["match_answer", "unresolved_with"]

_log = logging.getLogger("upbit_cancel")


def match_answer(
    kind: Kind,
    *,
    index: int,
    ids: Sequence[str],
    sent: Sequence[str],
    invalid: Mapping[int, UnresolvedOrder],
    answer: CancelResult,
    after_unknown: bool,
) -> ChunkResult:
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
    success_list: list[OrderEntry] = []
    failed_list: list[OrderEntry] = []
    unresolved: list[UnresolvedOrder] = []
    possibly_canceled: set[str] = set()
    for position, value in enumerate(ids):
        if position in invalid:
            unresolved.append(invalid[position])
        elif value in success and value in failed:
            error = MalformedResponseError(
                "the answer lists this id as both canceled and refused; the order may or may "
                "not be canceled",
                status=200,
                ids=(value,),
            )
            unresolved.append(UnresolvedOrder(value, error))
        elif value in success:
            success_list.append(success[value])
        elif value in failed:
            failed_list.append(failed[value])
            if after_unknown:
                possibly_canceled.add(value)
        else:
            unresolved.append(UnresolvedOrder(value, unmatched))
    return ChunkResult(
        index=index,
        ids=tuple(ids),
        success=OrderList(tuple(success_list)),
        failed=OrderList(tuple(failed_list)),
        unresolved=tuple(unresolved),
        possibly_canceled=frozenset(possibly_canceled),
    )


def unresolved_with(
    error: UpbitError | None,
    *,
    index: int,
    ids: Sequence[str],
    invalid: Mapping[int, UnresolvedOrder],
) -> ChunkResult:
    """Every one of ``ids`` unresolved with ``error``; invalid ids keep their own error."""
    return ChunkResult(
        index=index,
        ids=tuple(ids),
        unresolved=tuple(
            invalid.get(position, UnresolvedOrder(value, error))
            for position, value in enumerate(ids)
        ),
    )
