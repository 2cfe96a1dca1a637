"""The ledger of one batch: every id the input produced, each settled exactly once.

The ledger reads the caller's iterable itself, so an id is registered the moment it is produced:
it goes into a chunk, and the chunk is open until it is settled. Settling an open chunk is the
only way a result comes into being, and :meth:`Ledger.finish` settles whatever is still open,
so whatever is raised or cancelled where, every id read ends in exactly one result. No I/O and
no event loop here: the batch moves chunks between the ledger and the network.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final

import attrs

from ._errors import InvalidIdError, UpbitError
from ._ids import MAX_IDS_PER_REQUEST, UUID_PATTERN, Kind, id_problem, label
from ._matching import match_answer, unresolved_with
from ._models import BatchResult, CancelResult, ChunkResult, OrderEntry, OrderList, UnresolvedOrder

__all__ = ["Chunk", "Ledger"]

#: Ids in one chunk at most, malformed ones included: a long run of malformed ids is cut into
#: chunks too, so that no chunk grows without bound.
MAX_IDS_PER_CHUNK: Final = 100


def _key(item: object) -> object:
    """What deduplication compares: a string itself; anything else by its label, apart from
    strings, so that ``1001`` is never the same id as ``"1001"``."""
    return item if isinstance(item, str) else ("not a string", label(item))


@attrs.define(eq=False)
class Chunk:
    """Up to 20 ids to send in one request, and the malformed ids read beside them."""

    #: Position in the input, from 0.
    index: int
    #: Every id of the chunk, in input order, as results name them.
    ids: list[str] = attrs.field(factory=list)
    #: The ids to send.
    valid: list[str] = attrs.field(factory=list)
    #: The ids never sent, each with its error, by position in ``ids`` (a string may look like
    #: the label of a non-string, so positions, not names, tell them apart).
    invalid: dict[int, UnresolvedOrder] = attrs.field(factory=dict)
    #: Whether a request carrying it may have left for the exchange.
    sent: bool = False

    def mark_sent(self) -> None:
        """A request carrying this chunk is leaving now."""
        self.sent = True


class Ledger:
    """Every id of one batch, from the moment the input produces it until it is settled.

    With ``keep=False`` (streaming), a result is forgotten once :meth:`hand_over` says the
    caller has it, so memory stays flat however long the input; only the set of ids already
    seen, for deduplication, grows.
    """

    def __init__(self, kind: Kind, items: Iterable[object], *, keep: bool = True) -> None:
        self.kind = kind
        self._items: Iterator[object] = iter(items)
        self._collection = items if isinstance(items, Collection) else None
        self._keep = keep
        self._seen: set[object] = set()
        self._is_uuid = UUID_PATTERN.fullmatch if kind == "uuids" else None
        self._next_index = 0
        self._open: dict[int, Chunk] = {}
        self._settled: dict[int, ChunkResult] = {}
        self._total: int | None = None
        #: Whether the input has no more ids (it ended, or it raised).
        self.exhausted = False
        #: What the input raised while being read, if it did.
        self.input_error: Exception | None = None
        #: Distinct ids read so far.
        self.read = 0
        #: Distinct ids settled so far, and in which list.
        self.done = self.success = self.failed = self.unresolved = 0

    # -- reading -------------------------------------------------------------------------------

    def next_chunk(self) -> Chunk | None:
        """Read the next chunk from the input, registering each id read; ``None`` at the end.

        Never raises what the input raises: it ends the input instead, keeps the error in
        :attr:`input_error` and returns what was read before it.
        """
        if self.exhausted:
            return None
        chunk = Chunk(self._next_index)
        self._open[chunk.index] = chunk
        try:
            for item in self._items:
                self._register(chunk, item)
                if len(chunk.valid) == MAX_IDS_PER_REQUEST or len(chunk.ids) >= MAX_IDS_PER_CHUNK:
                    break
            else:
                self.exhausted = True
        except Exception as error:
            self.exhausted = True
            self.input_error = error
        if not chunk.ids:
            del self._open[chunk.index]
            return None
        self._next_index += 1
        return chunk

    def _register(self, chunk: Chunk, item: object) -> None:
        # The common case, a well-formed uuid, takes no function call beyond the regex: this
        # runs for every id of every batch.
        key: object
        if isinstance(item, str):
            key = name = item
        else:
            name = label(item)
            key = _key(item)
        if key in self._seen:
            return
        self._seen.add(key)
        self.read += 1
        chunk.ids.append(name)
        if self._is_uuid is not None and isinstance(item, str) and self._is_uuid(item):
            problem = None
        else:
            problem = id_problem(self.kind, item)
        if problem is None:
            chunk.valid.append(name)
        else:
            error = InvalidIdError(f"{problem}; it was not sent", ids=(name,))
            chunk.invalid[len(chunk.ids) - 1] = UnresolvedOrder(name, error)

    @property
    def size_hint(self) -> int | None:
        """How many items the input holds, when it is a collection (duplicates included)."""
        return None if self._collection is None else len(self._collection)

    def total(self) -> int | None:
        """Distinct ids in the input: known once it is exhausted, or up front for collections.

        A collection is counted once, on the first call: the batch asks only after its first
        requests are on their way, so a pass over a long list never delays them.
        """
        if self.exhausted and self.input_error is None:
            return self.read
        if self._collection is None:
            return None
        if self._total is None:
            try:
                self._total = len({_key(item) for item in self._collection})
            except Exception:  # a collection that cannot be iterated twice: say nothing
                return None
        return self._total

    # -- settling ------------------------------------------------------------------------------

    def settle(self, chunk: Chunk, result: ChunkResult) -> ChunkResult:
        """Record ``result`` as what happened to ``chunk``; a chunk is settled once only."""
        if self._open.pop(chunk.index, None) is None:
            raise RuntimeError(f"chunk {chunk.index} is not open: it was settled already")
        self.done += len(result.ids)
        self.success += result.success.count
        self.failed += result.failed.count
        self.unresolved += len(result.unresolved)
        self._settled[chunk.index] = result
        return result

    def settle_answer(
        self, chunk: Chunk, answer: CancelResult, *, after_unknown: bool = False
    ) -> ChunkResult:
        """Settle ``chunk`` from the exchange's answer to its request."""
        result = match_answer(
            self.kind,
            index=chunk.index,
            ids=chunk.ids,
            sent=chunk.valid,
            invalid=chunk.invalid,
            answer=answer,
            after_unknown=after_unknown,
        )
        return self.settle(chunk, result)

    def settle_unresolved(self, chunk: Chunk, error: UpbitError | None) -> ChunkResult:
        """Settle every id of ``chunk`` as unresolved with ``error``."""
        result = unresolved_with(error, index=chunk.index, ids=chunk.ids, invalid=chunk.invalid)
        return self.settle(chunk, result)

    def hand_over(self, result: ChunkResult) -> None:
        """The caller has ``result`` (streaming): forget it unless results are kept."""
        if not self._keep:
            del self._settled[result.index]

    def finish(self, reason: Callable[[Chunk], UpbitError], *, drain: bool) -> None:
        """Settle every open chunk with ``reason(chunk)``.

        With ``drain``, an input that is a collection is read to its end first, so that its
        ids not yet read are listed too (an iterator's are not: reading on would consume ids
        the caller may still want).
        """
        if drain and self._collection is not None:
            while self.next_chunk() is not None:
                pass
        for chunk in list(self._open.values()):
            self.settle_unresolved(chunk, reason(chunk))

    @property
    def open_chunks(self) -> int:
        """Chunks read and not yet settled."""
        return len(self._open)

    def result(self, *, requests: int, rate_limited: int, elapsed: float) -> BatchResult:
        """The settled results not handed over, merged in input order."""
        success: list[OrderEntry] = []
        failed: list[OrderEntry] = []
        unresolved: list[UnresolvedOrder] = []
        possibly_canceled: set[str] = set()
        for index in sorted(self._settled):
            chunk = self._settled[index]
            success.extend(chunk.success.orders)
            failed.extend(chunk.failed.orders)
            unresolved.extend(chunk.unresolved)
            possibly_canceled.update(chunk.possibly_canceled)
        return BatchResult(
            success=OrderList(tuple(success)),
            failed=OrderList(tuple(failed)),
            unresolved=tuple(unresolved),
            possibly_canceled=frozenset(possibly_canceled),
            requests=requests,
            rate_limited=rate_limited,
            elapsed=elapsed,
            kind=self.kind,
        )
