"""The ledger and the matching of answers: pure code, no event loop."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from upbit_cancel import (
    BatchResult,
    CancelResult,
    InvalidIdError,
    MalformedResponseError,
    NotSentError,
    Order,
    OrderEntry,
    OrderList,
    OutcomeUnknownError,
    UnresolvedOrder,
)
from upbit_cancel._batch.ledger import Chunk, Intake, Ledger
from upbit_cancel._batch.matching import chunk_result, match_answer
from upbit_cancel._ids import label

UUIDS = [f"{n:08x}-0000-4000-8000-00000000abcd" for n in range(200)]


def entries(ids: list[str]) -> OrderList:
    return OrderList(tuple(OrderEntry(value, "SGD-BTC") for value in ids))


def intake(kind: str, items: object, **options: bool) -> Intake:
    """A run's intake into a new operation's ledger."""
    return Intake(Ledger(kind, started=0.0), items, **options)  # type: ignore[arg-type]


def test_duplicates_are_read_once_and_chunks_hold_twenty_valid_ids() -> None:
    """First occurrence wins; each chunk carries up to 20 ids to send, malformed ones beside."""
    ledger = intake("uuids", [*UUIDS[:25], "bad", UUIDS[0], *UUIDS[25:40]])
    first, second = ledger.next_chunk(), ledger.next_chunk()
    assert first is not None
    assert second is not None
    assert ledger.next_chunk() is None
    assert first.valid == UUIDS[:20]
    assert second.valid == UUIDS[20:40]
    assert second.ids == [*UUIDS[20:25], "bad", *UUIDS[25:40]]
    assert [entry.id for entry in second.invalid.values()] == ["bad"]
    assert ledger.read == 41
    assert ledger.total() == 41


def test_a_failing_iterable_ends_the_input_and_keeps_what_it_gave() -> None:
    """The error is kept, not raised; the ids read before it form the last chunk."""

    def ids() -> Iterator[str]:
        yield from UUIDS[:3]
        raise OSError("gone")

    ledger = intake("uuids", ids())
    chunk = ledger.next_chunk()
    assert chunk is not None
    assert chunk.valid == UUIDS[:3]
    assert isinstance(ledger.input_error, OSError)
    assert ledger.next_chunk() is None
    assert ledger.total() is None


def test_a_chunk_is_settled_once_only() -> None:
    """Settling twice is a bug the ledger refuses loudly."""
    ledger = intake("uuids", UUIDS[:5])
    chunk = ledger.next_chunk()
    assert chunk is not None
    ledger.settle_answer(chunk, CancelResult(success=entries(UUIDS[:5])))
    with pytest.raises(RuntimeError, match="settled already"):
        ledger.settle_unresolved(chunk, None)


def test_finish_settles_open_chunks_and_lists_a_collections_rest() -> None:
    """Interrupted: sent chunks are unknown, unsent ones not sent, a list's unread ids too."""
    ledger = intake("uuids", UUIDS[:60])
    sent, waiting = ledger.next_chunk(), ledger.next_chunk()
    assert sent is not None
    assert waiting is not None
    sent.sending()

    def reason(chunk: Chunk) -> OutcomeUnknownError | NotSentError:
        if chunk.sent:
            return OutcomeUnknownError("in flight", ids=chunk.valid)
        return NotSentError("not sent", ids=chunk.valid)

    ledger.finish(reason, drain=True)
    result = ledger.ledger.result(0.0)
    assert [entry.id for entry in result.unresolved] == UUIDS[:60]
    kinds = [type(entry.error) for entry in result.unresolved]
    assert kinds == [OutcomeUnknownError] * 20 + [NotSentError] * 40


def test_an_iterators_unread_ids_are_not_read_on_interruption() -> None:
    """Reading on would consume ids the caller may still want: an iterator is left alone."""
    source = iter(UUIDS[:60])
    ledger = intake("uuids", source)
    assert ledger.next_chunk() is not None
    ledger.finish(lambda chunk: NotSentError("not sent", ids=chunk.valid), drain=True)
    assert ledger.ledger.result(0.0).unresolved.count == 20
    assert next(source) == UUIDS[20]


def test_answers_are_matched_by_identifier_and_contradictions_stay_unresolved() -> None:
    """By identifiers; an id in both lists is unresolved; silence is unresolved without error."""
    answer = CancelResult(
        success=OrderList((OrderEntry("u1", "SGD-BTC", "a"), OrderEntry("u2", "SGD-BTC", "b"))),
        failed=OrderList((OrderEntry("u2", "SGD-BTC", "b"),)),
    )
    ids = ["a", "b", "c"]
    outcome = match_answer(
        "identifiers",
        ids=ids,
        sent=["a", "b", "c"],
        invalid={},
        answer=answer,
        after_unknown=False,
    )
    result = chunk_result(0, ids, outcome)
    assert [order.identifier for order in result.success.orders] == ["a"]
    assert [entry.id for entry in result.unresolved] == ["b", "c"]
    assert isinstance(result.unresolved[0].error, MalformedResponseError)
    assert result.unresolved[1].error is None


def test_a_non_string_is_labelled_apart_from_the_string_it_resembles() -> None:
    """1001 and "1001" are two ids; results name the int so that it is recognisable. Each
    non-string given is an id of its own, even one given twice."""
    ledger = intake("identifiers", [1001, "1001", 1001, ["a"], "1001"])
    chunk = ledger.next_chunk()
    assert chunk is not None
    assert chunk.ids == ["<int 1001>", "1001", "<int 1001>", "<list ['a']>"]
    assert chunk.valid == ["1001"]
    assert all(isinstance(entry.error, InvalidIdError) for entry in chunk.invalid.values())
    assert label("x" * 100) == "x" * 100


def test_a_string_and_the_non_string_it_is_labelled_as_are_two_ids() -> None:
    """1001 and "<int 1001>" share a name in results, never a place in the ledger."""
    run = intake("identifiers", [1001, "<int 1001>"])
    chunk = run.next_chunk()
    assert chunk is not None
    answer = CancelResult(success=OrderList((OrderEntry("u", "SGD-BTC", "<int 1001>"),)))
    run.settle_answer(chunk, answer)
    result = run.ledger.result(0.0)
    assert [entry.id for entry in result.unresolved] == ["<int 1001>"]
    assert isinstance(result.unresolved[0].error, InvalidIdError)
    assert [order.identifier for order in result.success] == ["<int 1001>"]


def test_a_second_cancels_answer_replaces_the_first_unless_it_never_left() -> None:
    """Revising: what a second cancel answered stands, but a not-sent one changes nothing."""
    run = intake("uuids", UUIDS[:3])
    chunk = run.next_chunk()
    assert chunk is not None
    run.settle_unresolved(chunk, OutcomeUnknownError("lost", ids=chunk.valid))
    ledger = run.ledger
    again = Intake(ledger, UUIDS[:2], revising=True)
    second = again.next_chunk()
    assert second is not None
    again.settle_answer(second, CancelResult(success=entries(UUIDS[:1])))
    third = Intake(ledger, UUIDS[2:3], revising=True)
    last = third.next_chunk()
    assert last is not None
    third.settle_unresolved(last, NotSentError("stopped", ids=last.valid))
    result = ledger.result(0.0)
    assert [order.uuid for order in result.success] == UUIDS[:1]
    assert [entry.id for entry in result.unresolved] == UUIDS[1:3]
    assert result.unresolved[0].error is None  # the second cancel's silence
    assert isinstance(result.unresolved[1].error, OutcomeUnknownError)  # the first word
    assert (ledger.done, ledger.success, ledger.unresolved) == (3, 1, 2)


def test_a_reported_final_state_places_an_unresolved_id() -> None:
    """Canceled and prevented into success, filled and unknown into failed; open stays."""
    ids = UUIDS[:6]
    run = intake("uuids", ids)
    chunk = run.next_chunk()
    assert chunk is not None
    run.settle_unresolved(chunk, OutcomeUnknownError("lost", ids=chunk.valid))
    ledger = run.ledger
    ledger.asking(ids)
    states = ["cancel", "prevented", "done", None, "wait", "trigger_wait"]
    for value, state in zip(ids, states, strict=True):
        order = None if state is None else Order(uuid=value, market="SGD-BTC", state=state)
        ledger.learn(value, order)
    ledger.confirmed = True
    result = ledger.result(0.0)
    assert [order.uuid for order in result.success] == ids[:2]
    assert [order.uuid for order in result.failed] == ids[2:4]
    assert result.failed[1].market == ""
    assert [entry.id for entry in result.unresolved] == ids[4:]
    assert result.placed_by_confirmation == frozenset(ids[:4])
    assert result.states[ids[3]] == "not_found"
    assert (ledger.success, ledger.failed, ledger.unresolved) == (2, 2, 2)


def test_an_operation_counts_its_own_requests_and_429s() -> None:
    """Attempts that left count as requests; 429 answers as rate limited; the rest nothing."""
    ledger = Ledger("uuids", started=10.0)
    ledger.ended(sent=True, status=200)
    ledger.ended(sent=True, status=429)
    ledger.ended(sent=False, status=None)
    ledger.close(12.5)
    result = ledger.result(99.0)
    assert (result.requests, result.rate_limited, result.elapsed) == (2, 1, 2.5)


def test_a_result_continues_as_a_ledger() -> None:
    """confirm(result) starts from the result's places, with counts of its own; malformed names
    stay apart."""
    bad = InvalidIdError("malformed", ids=("<int 1>",))
    earlier = BatchResult(
        success=entries(UUIDS[:2]),
        unresolved=(UnresolvedOrder("<int 1>", bad), UnresolvedOrder(UUIDS[2])),
        requests=3,
        rate_limited=1,
        elapsed=1.5,
    )
    ledger = Ledger.from_result(earlier, started=5.0)
    assert ledger.well_formed() == UUIDS[:3]
    ledger.close(6.0)
    assert ledger.result(6.0) == attrs.evolve(earlier, requests=0, rate_limited=0, elapsed=1.0)


class LedgerMachine(RuleBasedStateMachine):
    """Random reads, settlements and hand-overs: every id read is in exactly one place."""

    chunks = Bundle("chunks")

    def __init__(self) -> None:
        super().__init__()
        self.produced: list[object] = []
        self.stream = False
        self.ledger: Intake | None = None
        self.handed: list[str] = []
        self.settled: set[int] = set()
        self.finished = False

    def _source(self, items: list[object]) -> Iterator[object]:
        for item in items:
            self.produced.append(item)
            yield item

    @initialize(
        items=st.lists(
            st.one_of(st.sampled_from(UUIDS[:60]), st.sampled_from(["bad", "", 3])),
            max_size=120,
        ),
        stream=st.booleans(),
    )
    def start(self, items: list[object], stream: bool) -> None:
        self.stream = stream
        self.ledger = intake("uuids", self._source(items), streaming=stream)

    @precondition(lambda self: self.ledger is not None and not self.finished)
    @rule(target=chunks)
    def read(self) -> Chunk | None:
        assert self.ledger is not None
        return self.ledger.next_chunk()

    @precondition(lambda self: self.ledger is not None and not self.finished)
    @rule(chunk=chunks, how=st.sampled_from(["success", "failed", "error", "silence"]))
    def settle(self, chunk: Chunk | None, how: str) -> None:
        assert self.ledger is not None
        if chunk is None or chunk.index in self.settled:
            return
        if how == "error":
            self.ledger.settle_unresolved(chunk, NotSentError("x", ids=chunk.valid))
        else:
            lists = {how: entries(chunk.valid)} if how != "silence" else {}
            self.ledger.settle_answer(chunk, CancelResult(**lists))
        self.settled.add(chunk.index)
        if self.stream:
            self.ledger.hand_over(chunk.index)
            self.handed.extend(chunk.ids)

    @precondition(lambda self: self.ledger is not None and not self.finished)
    @rule(chunk=chunks)
    def mark_sent(self, chunk: Chunk | None) -> None:
        if chunk is not None:
            chunk.sending()

    @precondition(lambda self: self.ledger is not None and not self.finished)
    @rule()
    def finish(self) -> None:
        assert self.ledger is not None
        self.ledger.finish(lambda chunk: NotSentError("stopped", ids=chunk.valid), drain=False)
        self.finished = True

    @rule()
    def look(self) -> None:
        assert self.ledger is not None
        total = self.ledger.total()
        assert total is None or total == self.ledger.read

    def teardown(self) -> None:
        if self.ledger is not None and not self.finished:
            self.finish()
            self.every_id_read_is_in_exactly_one_place()

    @invariant()
    def every_id_read_is_in_exactly_one_place(self) -> None:
        ledger = self.ledger
        if ledger is None:
            return
        # Each string once, each non-string every time it was given.
        strings = list(dict.fromkeys(item for item in self.produced if isinstance(item, str)))
        expected = strings + [label(item) for item in self.produced if not isinstance(item, str)]
        assert ledger.read == len(expected)
        result = ledger.ledger.result(0.0)
        listed = [order.uuid for order in (*result.success.orders, *result.failed.orders)]
        listed += [entry.id for entry in result.unresolved]
        named = [value for value in listed if not value.startswith("<")]
        assert len(named) == len(set(named))
        assert ledger.ledger.done == len(listed) + len(self.handed)
        assert set(named).isdisjoint(self.handed)
        if self.finished:
            assert ledger.open_chunks == 0
            assert sorted(listed + self.handed) == sorted(expected)
        assert ledger.ledger.done <= ledger.read


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


class TwoLanesMachine(RuleBasedStateMachine):
    """cancel_open's two lanes feeding one ledger in any order: the list lane reads and settles
    chunks of a listing (read lazily, skipping what the ledger holds), the batch lane names
    orders canceled at any moment, and some of its calls are lost after they left. Every order
    either lane touched is in exactly one list; every order a batch cancel named is a success;
    every other keeps its chunk's word; a refusal since a lost batch cancel left is possibly
    canceled."""

    chunks = Bundle("chunks")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger("uuids", started=0.0)
        self.intake: Intake | None = None
        self.named: set[str] = set()
        self.words: dict[str, str] = {}
        self.settled: set[int] = set()
        # Refusals since the first batch cancel left, in order; marks of calls in flight; the
        # earliest mark of a lost call.
        self.refusals: list[str] | None = None
        self.in_flight: list[int] = []
        self.lost_since: int | None = None
        self.lost_calls = 0
        # Read by the list lane, its chunk not settled yet.
        self.open: set[str] = set()
        # Settled first from a request whose outcome was unknown, then refused again.
        self.refused_after_unknown: set[str] = set()
        self.unknown_first: set[str] = set()

    @initialize(listed=st.lists(st.sampled_from(UUIDS[:80]), unique=True, max_size=80))
    def start(self, listed: list[str]) -> None:
        ledger = self.ledger
        self.intake = Intake(ledger, (uuid for uuid in listed if uuid not in ledger))

    @rule(target=chunks)
    def read(self) -> Chunk | None:
        assert self.intake is not None
        chunk = self.intake.next_chunk()
        if chunk is not None:
            self.open.update(chunk.valid)
        return chunk

    @rule(chunk=chunks, how=st.sampled_from(["success", "failed", "error", "silence"]))
    def settle(self, chunk: Chunk | None, how: str) -> None:
        assert self.intake is not None
        if chunk is None or chunk.index in self.settled:
            return
        self.open.difference_update(chunk.valid)
        if how == "error":
            self.intake.settle_unresolved(chunk, OutcomeUnknownError("x", ids=chunk.valid))
        else:
            lists = {how: entries(chunk.valid)} if how != "silence" else {}
            self.intake.settle_answer(chunk, CancelResult(**lists))
        self.settled.add(chunk.index)
        for uuid in chunk.valid:
            word = {"error": "unresolved", "silence": "unresolved"}.get(how, how)
            self.words[uuid] = word
            if how == "error" and uuid not in self.named:
                self.unknown_first.add(uuid)
            if word == "failed" and self.refusals is not None and uuid not in self.named:
                self.refusals.append(uuid)

    @rule(
        data=st.data(),
        how=st.sampled_from(["success", "failed", "error", "not sent"]),
    )
    def cancel_again(self, data: st.DataObject, how: str) -> None:
        """A later round cancels again what is unresolved (listed still open)."""
        again = sorted(self.ledger.unresolved_among(self.words))
        if not again:
            return
        chosen = data.draw(st.lists(st.sampled_from(again), unique=True, min_size=1, max_size=20))
        intake = Intake(self.ledger, chosen, revising=True)
        chunk = intake.next_chunk()
        assert chunk is not None
        if how in ("error", "not sent"):
            error_class = OutcomeUnknownError if how == "error" else NotSentError
            intake.settle_unresolved(chunk, error_class("x", ids=chunk.valid))
        else:
            intake.settle_answer(chunk, CancelResult(**{how: entries(chunk.valid)}))
        for uuid in chunk.valid:
            if uuid in self.named or how == "not sent":
                continue
            self.words[uuid] = "unresolved" if how == "error" else how
            if how == "failed":
                if self.refusals is not None:
                    self.refusals.append(uuid)
                if uuid in self.unknown_first:
                    self.refused_after_unknown.add(uuid)
            if how == "error":
                self.unknown_first.add(uuid)

    @rule(named=st.lists(st.sampled_from(UUIDS[:100]), max_size=30))
    def batch_answer(self, named: list[str]) -> None:
        self.ledger.batch_canceled(entries(named))
        self.named.update(named)

    @rule()
    def batch_leaves(self) -> None:
        mark = self.ledger.batch_leaving()
        if self.refusals is None:
            self.refusals = []
        assert mark == len(self.refusals)
        self.in_flight.append(mark)

    @precondition(lambda self: bool(self.in_flight))
    @rule(which=st.integers(min_value=0))
    def batch_lost(self, which: int) -> None:
        mark = self.in_flight.pop(which % len(self.in_flight))
        self.ledger.batch_unanswered(mark)
        self.lost_calls += 1
        self.lost_since = mark if self.lost_since is None else min(self.lost_since, mark)

    @invariant()
    def every_order_once_and_batch_named_ones_canceled(self) -> None:
        result = self.ledger.result(1.0)
        success = [order.uuid for order in result.success]
        failed = [order.uuid for order in result.failed]
        unresolved = [entry.id for entry in result.unresolved]
        placed = success + failed + unresolved
        assert len(placed) == len(set(placed))
        assert self.named - self.open <= set(success)
        assert result.batch_canceled == self.named - self.open
        assert not self.open & set(placed)
        assert (self.ledger.success, self.ledger.failed, self.ledger.unresolved) == (
            len(success),
            len(failed),
            len(unresolved),
        )
        for uuid, word in self.words.items():
            if uuid not in self.named:
                assert uuid in {"success": success, "failed": failed}.get(word, unresolved)
        expected = self.refused_after_unknown - self.named
        if self.lost_since is not None and self.refusals is not None:
            expected |= set(self.refusals[self.lost_since :]) - self.named
        expected &= set(failed)
        assert result.possibly_canceled == expected
        assert result.possibly_canceled <= set(failed)
        assert result.batch_unanswered == self.lost_calls


TestTwoLanes = TwoLanesMachine.TestCase
TestTwoLanes.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
