"""The ledger of one operation: every id it reads, each settled exactly once.

An operation is one call of :class:`BatchCanceller`'s ``cancel``, ``stream``, ``confirm`` or
``cancel_open``; it owns one :class:`Ledger`, whatever it sends in how many runs. The ledger

- registers each id the moment the caller's iterable produces it (:class:`Intake` reads it);
- settles each registered id exactly once, from the answer to its chunk's request or from why
  that request failed; :meth:`Intake.finish` settles whatever is still open, so whatever is
  raised or cancelled where, every id read ends in exactly one list;
- moves a settled id only on a later word of the exchange: the answer to a second cancel of it
  (:meth:`Ledger.revise`), the final state a query reported for an id whose cancel got no
  usable answer (:meth:`Ledger.learn`), or a batch cancel that names it canceled
  (:meth:`Ledger.batch_canceled`: an order one lane of ``cancel_open`` canceled is a success of
  the operation, whatever the other lane's request for it answered);
- counts the operation's own requests and 429 answers, as the transport reports each attempt
  of its requests (it is their :class:`~upbit_cancel._http.transport.Observer`).

Its result is read from it whenever asked, also while the operation runs or after it was
interrupted. No I/O and no event loop here: the batch moves chunks between it and the network.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Final

from .._errors import InvalidIdError, NotSentError, OutcomeUnknownError, UpbitError
from .._ids import MAX_IDS_PER_REQUEST, UUID_PATTERN, Kind, id_problem, label
from .._models import (
    BatchResult,
    CancelResult,
    Order,
    OrderEntry,
    OrderList,
    Progress,
    UnresolvedList,
    UnresolvedOrder,
)
from .matching import Outcome, Place, Placement, match_answer, unresolved_with

__all__ = ["NOT_FOUND", "Chunk", "Intake", "Ledger"]

#: Ids in one chunk at most, malformed ones included: a long run of malformed ids is cut into
#: chunks too, so that no chunk grows without bound.
MAX_IDS_PER_CHUNK: Final = 100

#: The state of an id the exchange does not know.
NOT_FOUND: Final = "not_found"

#: The final states that close an order without a fill, and with one.
_CANCELED_STATES: Final = frozenset({"cancel", "prevented"})
_FILLED_STATES: Final = frozenset({"done"})


def _distinct(items: Iterable[object]) -> int:
    """How many ids ``items`` holds: each string once, each non-string every time (see
    :meth:`Intake._read`)."""
    strings: set[str] = set()
    others = 0
    for item in items:
        if isinstance(item, str):
            strings.add(item)
        else:
            others += 1
    return len(strings) + others


class Ledger:
    """Every id of one operation, from the moment it is read until the operation ends.

    ``started`` and the times given to :meth:`result` come from one monotonic clock. Its
    counters and ``elapsed`` are the operation's own, also when it takes an earlier result's
    ids over (:meth:`from_result`).
    """

    __slots__ = (
        "_batch_canceled",
        "_batch_unanswered",
        "_closed_at",
        "_entries",
        "_placed_by_confirmation",
        "_possibly_canceled",
        "_recanceled",
        "_refusals",
        "_refused_after_unknown",
        "_state_errors",
        "_states",
        "confirmed",
        "done",
        "failed",
        "kind",
        "listing_complete",
        "rate_limited",
        "registered",
        "requests",
        "started",
        "success",
        "unresolved",
    )

    def __init__(self, kind: Kind, *, started: float) -> None:
        #: Whether the ids are uuids or identifiers.
        self.kind: Kind = kind
        #: When the operation started.
        self.started = started
        self._closed_at: float | None = None
        # Each id in input order, by its key (see _key), with its place once settled (None
        # while open).
        self._entries: dict[object, Placement | None] = {}
        self._possibly_canceled: set[str] = set()
        self._refused_after_unknown: set[object] = set()
        self._recanceled: set[str] = set()
        self._placed_by_confirmation: set[str] = set()
        self._states: dict[str, str | None] = {}
        self._state_errors: dict[str, UpbitError] = {}
        # The orders a batch cancel named canceled, by uuid, with the entry it gave.
        self._batch_canceled: dict[str, OrderEntry] = {}
        # Batch cancels that left and got no usable answer: they may have canceled orders
        # that no answer names.
        self._batch_unanswered = 0
        # The ids refused since a batch cancel first left, in order (None: none has left), so
        # that one whose answer is lost can tell which refusals it may explain.
        self._refusals: list[str] | None = None
        #: Whether a confirmation ran to its end.
        self.confirmed = False
        #: For cancel_open: whether its last listing ended showing nothing left to cancel.
        self.listing_complete: bool | None = None
        #: Ids registered so far.
        self.registered = 0
        #: Ids settled so far, and in which list they are now.
        self.done = self.success = self.failed = self.unresolved = 0
        #: The operation's requests that left, retries included, and its 429 answers.
        self.requests = self.rate_limited = 0

    @classmethod
    def from_result(cls, result: BatchResult, *, started: float) -> Ledger:
        """A ledger of a new operation (a confirmation) that starts from ``result``'s ids where
        they were placed; its counts start from zero."""
        ledger = cls(result.kind, started=started)
        lists: tuple[tuple[Place, OrderList], ...] = (
            ("success", result.success),
            ("failed", result.failed),
        )
        key: object
        for place, entries in lists:
            for position, entry in enumerate(entries):
                key = _order_key(result.kind, entry)
                if key is None or key in ledger._entries:
                    # No id of this kind (an identifier the answer left out), or the same id
                    # twice in a result made by hand: kept as it is, never asked about.
                    key = ("as given", place, position)
                ledger._adopt(key, (place, entry))
        for position, unresolved in enumerate(result.unresolved):
            # A malformed id is never asked about nor sent again; its name may be the label of
            # a non-string, which a string may share: its key is its own.
            malformed = isinstance(unresolved.error, InvalidIdError)
            key = ("malformed", position) if malformed else unresolved.id
            if key in ledger._entries:
                key = ("as given", "unresolved", position)
            ledger._adopt(key, ("unresolved", unresolved))
        ledger._possibly_canceled.update(result.possibly_canceled)
        ledger._recanceled.update(result.recanceled)
        ledger.listing_complete = result.listing_complete
        ledger._placed_by_confirmation.update(result.placed_by_confirmation)
        ledger._batch_unanswered = result.batch_unanswered
        if result.batch_unanswered:
            # Refused while a batch cancel's outcome was unknown: placed by their final state.
            for entry in result.failed:
                if entry.uuid in result.possibly_canceled:
                    ledger._refused_after_unknown.add(entry.uuid)
        for entry in result.success:
            if entry.uuid in result.batch_canceled:
                ledger._batch_canceled[entry.uuid] = entry
        return ledger

    def _adopt(self, key: object, placement: Placement) -> None:
        self.register([key])
        self._set(key, placement)
        self.done += 1

    # -- the operation's requests ------------------------------------------------------------

    def sending(self) -> None:
        """One of the operation's requests is leaving (the chunk records it; nothing here)."""

    def ended(self, *, sent: bool, status: int | None) -> None:
        """An attempt of one of the operation's requests ended."""
        if sent:
            self.requests += 1
        if status == 429:
            self.rate_limited += 1

    # -- ids ---------------------------------------------------------------------------------

    def register(self, keys: list[object]) -> None:
        """The ids of ``keys`` (see ``_key``) were read: each is open until settled."""
        self._entries.update(dict.fromkeys(keys))
        self.registered += len(keys)

    def __contains__(self, value: object) -> bool:
        return value in self._entries

    def place(self, value: str) -> Placement | None:
        """Where the id ``value`` stands (``None`` while open)."""
        return self._entries[value]

    def settle(self, keys: Sequence[object], outcome: Outcome) -> None:
        """The first word on each id of a chunk (by key, in the chunk's order): each must be
        open."""
        # Runs for every id of every batch: counted in locals, not through _set.
        entries = self._entries
        by_batch = self._batch_canceled
        refusals = self._refusals
        possibly_canceled = outcome.possibly_canceled
        success = failed = 0
        for key, placement in zip(keys, outcome.placements, strict=True):
            if entries.get(key, ()) is not None:
                raise RuntimeError(f"id {key!r} is not open: it was settled already")
            if by_batch and key in by_batch:
                # Canceled by a batch cancel while this chunk was on its way: its answer
                # (refused, or lost) does not undo that.
                placement = ("success", by_batch[key])
                possibly_canceled = possibly_canceled - {key}
            elif refusals is not None and placement[0] == "failed" and isinstance(key, str):
                refusals.append(key)
                if self._batch_unanswered:
                    # Refused while a batch cancel's outcome is unknown: it may be why.
                    self._refused_after_unknown.add(key)
                    self._possibly_canceled.add(key)
            entries[key] = placement
            place = placement[0]
            if place == "success":
                success += 1
            elif place == "failed":
                failed += 1
        self.success += success
        self.failed += failed
        self.unresolved += len(keys) - success - failed
        self.done += len(keys)
        if possibly_canceled:
            self._possibly_canceled.update(possibly_canceled)

    def revise(self, keys: Sequence[object], outcome: Outcome) -> None:
        """A second cancel's word on ids already settled: it replaces the first, unless its
        request never left (then the first word is still all there is to know), or a batch
        cancel named the order canceled (the second cancel then met an order closed already)."""
        possibly_canceled = set(outcome.possibly_canceled)
        for key, placement in zip(keys, outcome.placements, strict=True):
            previous = self._entries[key]
            if previous is None:
                raise RuntimeError(f"id {key!r} is open: settle it before revising it")
            entry = placement[1]
            if isinstance(entry, UnresolvedOrder) and isinstance(entry.error, NotSentError):
                continue
            if key in self._batch_canceled:
                possibly_canceled.discard(key)
                continue
            if placement[0] == "failed" and isinstance(key, str) and self._refusals is not None:
                self._refusals.append(key)
                if self._batch_unanswered:
                    # Refused while a batch cancel's outcome is unknown: it may be why.
                    self._refused_after_unknown.add(key)
                    self._possibly_canceled.add(key)
            earlier = previous[1]
            if (
                placement[0] == "failed"
                and isinstance(earlier, UnresolvedOrder)
                and isinstance(earlier.error, OutcomeUnknownError)
            ):
                # Refused, while the first cancel's outcome is unknown: that cancel may be why
                # (it is under way, or done). What the exchange reports next tells.
                self._refused_after_unknown.add(key)
                if isinstance(key, str):
                    self._possibly_canceled.add(key)
            self._count(previous[0], -1)
            self._set(key, placement)
        self._possibly_canceled.update(possibly_canceled)

    def batch_canceled(self, entries: Iterable[OrderEntry]) -> list[str]:
        """A batch cancel's answer named these orders canceled: each is a success of the
        operation, once. An order not read yet is registered and settled; one read and still
        open is settled a success when its chunk settles; one settled otherwise (its list
        cancel refused or unanswered) is moved to ``success``. Returns the uuids new to the
        ledger."""
        new: list[str] = []
        for entry in entries:
            uuid = entry.uuid
            if not uuid or uuid in self._batch_canceled:
                continue
            self._batch_canceled[uuid] = entry
            if uuid not in self._entries:
                new.append(uuid)
                self._adopt(uuid, ("success", entry))
                continue
            previous = self._entries[uuid]
            if previous is None or previous[0] == "success":
                continue
            self._count(previous[0], -1)
            self._set(uuid, ("success", entry))
            self._possibly_canceled.discard(uuid)
            self._refused_after_unknown.discard(uuid)
        return new

    def batch_leaving(self) -> int:
        """A batch cancel is leaving: the mark to give :meth:`batch_unanswered` if its answer
        is lost."""
        if self._refusals is None:
            self._refusals = []
        return len(self._refusals)

    def batch_unanswered(self, since: int) -> None:
        """A batch cancel that left at mark ``since`` got no usable answer: an order the list
        lane found refused since then, or finds refused from now on, may be one it canceled (it
        is ``possibly_canceled``, and placed by its final state on confirmation)."""
        self._batch_unanswered += 1
        for key in (self._refusals or [])[since:]:
            placed = self._entries.get(key)
            if placed is not None and placed[0] == "failed":
                self._refused_after_unknown.add(key)
                self._possibly_canceled.add(key)

    def forget(self, keys: Iterable[object]) -> None:
        """The caller has these ids' results (streaming): they need not be held any longer."""
        for key in keys:
            self._entries.pop(key, None)

    def _set(self, key: object, placement: Placement) -> None:
        self._entries[key] = placement
        self._count(placement[0], 1)

    def _count(self, place: Place, change: int) -> None:
        if place == "success":
            self.success += change
        elif place == "failed":
            self.failed += change
        else:
            self.unresolved += change

    # -- confirmation ------------------------------------------------------------------------

    def asking(self, values: Iterable[str]) -> None:
        """A confirmation asks about ``values``: their states are unknown until learned."""
        for value in values:
            self._states.setdefault(value, None)

    def learn(self, value: str, order: Order | None) -> None:
        """A query reported ``value``'s order as it stands (``None``: the exchange does not know
        it).

        An unresolved id is placed by what was reported when that is final: canceled (or
        prevented) among ``success``; filled, or unknown to the exchange, among ``failed``
        (with an empty market when unknown). Any other id stays where it is.
        """
        state = NOT_FOUND if order is None else order.state
        self._states[value] = state
        self._state_errors.pop(value, None)
        entry = self._entries.get(value)
        if entry is None:
            return
        if entry[0] == "failed" and value in self._refused_after_unknown:
            if not _final(state):
                return
            # The refusal of a second cancel is not the last word: the first one's fate is.
            self._possibly_canceled.discard(value)
            self._refused_after_unknown.discard(value)
        elif entry[0] != "unresolved":
            return
        place: Place
        if order is None:
            place = "failed"
            placed = (
                OrderEntry(uuid=value, market="")
                if self.kind == "uuids"
                else OrderEntry(uuid="", market="", identifier=value)
            )
        elif state in _CANCELED_STATES or state in _FILLED_STATES:
            place = "success" if state in _CANCELED_STATES else "failed"
            placed = OrderEntry(uuid=order.uuid, market=order.market, identifier=order.identifier)
        else:
            return
        self._count(entry[0], -1)
        self._set(value, (place, placed))
        self._placed_by_confirmation.add(value)

    def unlearned(self, value: str, error: UpbitError) -> None:
        """Why ``value``'s state could not be learned (a state learned before stands)."""
        self._states.setdefault(value, None)
        self._state_errors[value] = error

    def state(self, value: str) -> str | None:
        """The state learned for ``value``, if any."""
        return self._states.get(value)

    def uuid_of(self, value: str) -> str | None:
        """The uuid an answer gave for the id ``value`` (an identifier), if one did."""
        entry = self._entries.get(value)
        if entry is None or isinstance(entry[1], UnresolvedOrder):
            return None
        return entry[1].uuid or None

    def has_reason(self, value: str) -> bool:
        """Whether an error says why ``value``'s state is unknown."""
        return value in self._state_errors

    def accepted_among(self, values: Iterable[str]) -> list[str]:
        """Those of ``values`` in ``success``: their cancel was accepted."""
        entries = self._entries
        return [
            value for value in values if (entry := entries.get(value)) and entry[0] == "success"
        ]

    def unresolved_among(self, values: Iterable[str]) -> list[str]:
        """Those of ``values`` (well-formed ids) settled as unresolved: no cancel of them is
        known to be accepted."""
        entries = self._entries
        found = []
        for value in values:
            entry = entries.get(value)
            if entry is not None and entry[0] == "unresolved" and not _malformed(entry):
                found.append(value)
        return found

    def recanceled(self, values: Iterable[str]) -> None:
        """``values`` were canceled a second time (found open with no accepted cancel)."""
        self._recanceled.update(values)

    # -- the result --------------------------------------------------------------------------

    def close(self, now: float) -> None:
        """The operation ended at ``now`` (its ``elapsed`` stops growing)."""
        if self._closed_at is None:
            self._closed_at = now

    def progress(self, total: int | None) -> Progress:
        """How far the operation has come, for ``on_progress``."""
        return Progress(
            done=self.done,
            total=total,
            success=self.success,
            failed=self.failed,
            unresolved=self.unresolved,
            requests=self.requests,
        )

    def result(self, now: float) -> BatchResult:
        """Every id settled so far, in input order, with the operation's counts.

        Ids still open (only while the operation runs) are left out.
        """
        success: list[OrderEntry] = []
        failed: list[OrderEntry] = []
        unresolved: list[UnresolvedOrder] = []
        for entry in self._entries.values():
            if entry is None:
                continue
            place, held = entry
            if isinstance(held, UnresolvedOrder):
                unresolved.append(held)
            else:
                (success if place == "success" else failed).append(held)
        end = self._closed_at if self._closed_at is not None else now
        states: dict[str, str | None] = {}
        errors: dict[str, UpbitError] = {}
        if self.confirmed:
            states = {value: self._states.get(value) for value in self._asked()}
            errors = {
                value: self._state_errors[value]
                for value, state in states.items()
                if state is None and value in self._state_errors
            }
        return BatchResult(
            success=OrderList(tuple(success)),
            failed=OrderList(tuple(failed)),
            unresolved=UnresolvedList(tuple(unresolved)),
            possibly_canceled=frozenset(self._possibly_canceled),
            requests=self.requests,
            rate_limited=self.rate_limited,
            elapsed=max(0.0, end - self.started),
            kind=self.kind,
            confirmed=self.confirmed,
            states=states,
            state_errors=errors,
            recanceled=frozenset(self._recanceled),
            listing_complete=self.listing_complete,
            placed_by_confirmation=frozenset(self._placed_by_confirmation),
            batch_canceled=frozenset(
                uuid
                for uuid, entry in self._batch_canceled.items()
                if (placed := self._entries.get(uuid)) is not None and placed[0] == "success"
            ),
            batch_unanswered=self._batch_unanswered,
        )

    def well_formed(self) -> list[str]:
        """The ids a confirmation asks about: every settled id but the malformed ones."""
        return [  # keys of well-formed ids are the ids themselves
            value
            for value, entry in self._entries.items()
            if isinstance(value, str) and entry is not None and not _malformed(entry)
        ]

    def _asked(self) -> list[str]:
        return [
            value for value in self._entries if isinstance(value, str) and value in self._states
        ]


def _final(state: str) -> bool:
    return state in _CANCELED_STATES or state in _FILLED_STATES


def _malformed(entry: Placement) -> bool:
    return isinstance(entry[1], UnresolvedOrder) and isinstance(entry[1].error, InvalidIdError)


def _order_key(kind: Kind, entry: OrderEntry) -> str | None:
    return entry.uuid if kind == "uuids" else entry.identifier


class Chunk:
    """Up to 20 ids to send in one request, and the malformed ids read beside them.

    It watches its own request (an :class:`Observer`): whether it may have left, and the
    operation's counts through the ledger.
    """

    __slots__ = ("_ledger", "ids", "index", "invalid", "keys", "sent", "valid")

    def __init__(self, index: int, ledger: Ledger) -> None:
        #: Position in the run's input, from 0.
        self.index = index
        #: Every id of the chunk, in input order, as results name them.
        self.ids: list[str] = []
        #: What the ledger knows each of them by, in the same order.
        self.keys: list[object] = []
        #: The ids to send.
        self.valid: list[str] = []
        #: The ids never sent, each with its error, by position in ``ids`` (a string may look
        #: like the label of a non-string, so positions, not names, tell them apart).
        self.invalid: dict[int, UnresolvedOrder] = {}
        #: Whether a request carrying it may have left for the exchange.
        self.sent = False
        self._ledger = ledger

    def sending(self) -> None:
        """A request carrying this chunk is leaving now."""
        self.sent = True

    def ended(self, *, sent: bool, status: int | None) -> None:
        """An attempt of this chunk's request ended."""
        self._ledger.ended(sent=sent, status=status)


class Intake:
    """One run's ids: read from the caller's iterable, deduplicated, checked and cut into chunks.

    Each id is registered in the ledger when it is read; a ``revising`` run (the second cancels
    of a confirmation) sends ids the ledger holds already, and its answers revise them. Never
    raises what the input raises: the input ends, :attr:`input_error` keeps the error.
    """

    __slots__ = (
        "_collection",
        "_handed",
        "_is_uuid",
        "_items",
        "_next_index",
        "_open",
        "_others",
        "_seen",
        "_total",
        "exhausted",
        "input_error",
        "ledger",
        "read",
        "revising",
    )

    def __init__(
        self,
        ledger: Ledger,
        items: Iterable[object],
        *,
        revising: bool = False,
        streaming: bool = False,
    ) -> None:
        #: The operation's ledger.
        self.ledger = ledger
        #: Whether the ids are settled already (second cancels).
        self.revising = revising
        # Streaming: the keys of each settled chunk, until the caller has its result.
        self._handed: dict[int, list[object]] | None = {} if streaming else None
        self._items: Iterator[object] = iter(items)
        self._collection = items if isinstance(items, Collection) else None
        self._seen: set[object] = set()
        self._is_uuid = UUID_PATTERN.fullmatch if ledger.kind == "uuids" else None
        self._next_index = 0
        self._others = 0
        self._open: dict[int, Chunk] = {}
        self._total: int | None = None
        #: Whether the input has no more ids (it ended, or it raised).
        self.exhausted = False
        #: What the input raised while being read, if it did.
        self.input_error: BaseException | None = None
        #: Distinct ids read so far.
        self.read = 0

    def next_chunk(self) -> Chunk | None:
        """Read the next chunk, registering each id read; ``None`` at the end of the input."""
        if self.exhausted:
            return None
        chunk = Chunk(self._next_index, self.ledger)
        # Taken before reading: whatever the input raises, no later chunk reuses the index.
        self._next_index += 1
        self._open[chunk.index] = chunk
        try:
            for item in self._items:
                self._read(chunk, item)
                if len(chunk.valid) == MAX_IDS_PER_REQUEST or len(chunk.ids) >= MAX_IDS_PER_CHUNK:
                    break
            else:
                self.exhausted = True
        except (KeyboardInterrupt, SystemExit):
            self.exhausted = True  # the chunk stays open: whoever stops the run settles it
            raise
        except BaseException as error:
            # Whatever else the input raises ends it; the ids read so far are kept and sent,
            # then the error is raised. A CancelledError raised by the input (reading it never
            # awaits, so no cancellation of the task lands there) is such an error too.
            self.exhausted = True
            self.input_error = error
        finally:
            # Registered together, before anything else can run: nothing awaits in between.
            if not self.revising:
                self.ledger.register(chunk.keys)
        if not chunk.ids:
            del self._open[chunk.index]
            return None
        return chunk

    def _read(self, chunk: Chunk, item: object) -> None:
        # The common case, a well-formed uuid, takes no function call beyond the regex: this
        # runs for every id of every batch.
        key: object
        if isinstance(item, str):
            key = name = item
            if key in self._seen:
                return
            self._seen.add(key)
        else:
            # A non-string is never sent: each one read is an id of its own, by its position
            # (two of them may share a label, and comparing them could run their own code).
            name = label(item)
            key = ("not a string", self._others)
            self._others += 1
        self.read += 1
        chunk.ids.append(name)
        chunk.keys.append(key)
        if self._is_uuid is not None and isinstance(item, str) and self._is_uuid(item):
            problem = None
        else:
            problem = id_problem(self.ledger.kind, item)
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
                self._total = _distinct(self._collection)
            except Exception:  # a collection that cannot be iterated twice: say nothing
                return None
        return self._total

    def progress(self) -> Progress:
        """The operation's progress, with the total its ids will come to if known."""
        total = self.total()
        if total is not None:
            total = self.ledger.registered + (0 if self.revising else total - self.read)
        return self.ledger.progress(total)

    # -- settling ------------------------------------------------------------------------------

    def settle_answer(
        self, chunk: Chunk, answer: CancelResult, *, after_unknown: bool = False
    ) -> Outcome:
        """Settle ``chunk`` from the exchange's answer to its request."""
        return self._settle(
            chunk,
            match_answer(
                self.ledger.kind,
                ids=chunk.ids,
                sent=chunk.valid,
                invalid=chunk.invalid,
                answer=answer,
                after_unknown=after_unknown,
            ),
        )

    def settle_unresolved(self, chunk: Chunk, error: UpbitError | None) -> Outcome:
        """Settle every id of ``chunk`` as unresolved with ``error``."""
        return self._settle(chunk, unresolved_with(error, ids=chunk.ids, invalid=chunk.invalid))

    def _settle(self, chunk: Chunk, outcome: Outcome) -> Outcome:
        if self._open.pop(chunk.index, None) is None:
            raise RuntimeError(f"chunk {chunk.index} is not open: it was settled already")
        if self.revising:
            self.ledger.revise(chunk.keys, outcome)
        else:
            self.ledger.settle(chunk.keys, outcome)
        if self._handed is not None:
            self._handed[chunk.index] = chunk.keys
        return outcome

    def hand_over(self, index: int) -> None:
        """The caller has chunk ``index``'s result (streaming): the ledger lets go of its ids."""
        if self._handed is not None:
            self.ledger.forget(self._handed.pop(index, ()))

    def finish(self, reason: Callable[[Chunk], UpbitError], *, drain: bool) -> None:
        """Settle every open chunk with ``reason(chunk)``.

        With ``drain``, an input that is a collection is read to its end first, so that its
        ids not yet read are settled too (an iterator's are not: reading on would consume ids
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
