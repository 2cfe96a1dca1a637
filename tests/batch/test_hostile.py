"""What a hostile user tries on a batch: every id the input produced is settled exactly once,
whatever is raised or cancelled where.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import SessionFor
from tests.helpers import placed, until
from upbit_cancel import (
    BatchCanceller,
    BlockedError,
    ChunkResult,
    InvalidIdError,
    MalformedResponseError,
    OutcomeUnknownError,
    Progress,
    SessionClosedError,
    SlidingWindowLimiter,
)
from upbit_cancel.testing import FakeUpbit, Faults


def chunk_ids(chunks: list[ChunkResult]) -> list[str]:
    return [value for chunk in chunks for value in chunk.ids]


async def test_a_block_met_by_another_session_settles_every_id(session_for: SessionFor) -> None:
    """The account blocked before the batch starts: all 100 ids unresolved, none sent."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(100)
        async with session_for(fake) as other, session_for(fake) as session:
            fake.queue_response(418, {"error": {"name": "blocked", "message": "blocked for 30 s"}})
            with pytest.raises(BlockedError):
                await other.cancel_orders(uuids=["0000abcd-0000-4000-8000-000000000000"])
            result = await BatchCanceller(session, max_in_flight=1).cancel(uuids=ids)
        assert sorted(placed(result)) == sorted(ids)
        assert all(isinstance(entry.error, BlockedError) for entry in result.unresolved)
        assert len(fake.records) == 1
        assert all(fake.state(uuid) == "wait" for uuid in ids)


async def test_a_session_closed_mid_batch_settles_every_id(session_for: SessionFor) -> None:
    """aclose() while a batch runs: what was sent is reported, the rest is unresolved."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(100)
        session = session_for(fake)
        closing: list[asyncio.Task[None]] = []

        def close_after_first(progress: Progress) -> None:
            if not closing:
                closing.append(asyncio.ensure_future(session.aclose()))

        async with session:
            batch = BatchCanceller(session, max_in_flight=1, on_progress=close_after_first)
            result = await batch.cancel(uuids=ids)
        await asyncio.gather(*closing)
        assert sorted(placed(result)) == sorted(ids)
        assert result.success.count == 20
        assert all(isinstance(entry.error, SessionClosedError) for entry in result.unresolved)


async def test_stream_hands_over_every_chunk_when_a_block_lands_while_the_consumer_lags(
    session_for: SessionFor,
) -> None:
    """Another session meets a 418 while the consumer is busy: every chunk still comes out."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(200)
        async with session_for(fake) as session, session_for(fake) as other:
            chunks: list[ChunkResult] = []
            stream = BatchCanceller(session, max_in_flight=1).stream(uuids=ids)
            async with contextlib.aclosing(stream) as results:
                async for chunk in results:
                    chunks.append(chunk)
                    if len(chunks) == 1:
                        # Lag until the worker waits to hand over a result, then get blocked.
                        await fake.wait_for(lambda fake: len(fake.records) >= 3)
                        fake.queue_response(
                            418, {"error": {"name": "blocked", "message": "blocked for 30 s"}}
                        )
                        with pytest.raises(BlockedError):
                            await other.cancel_orders(
                                uuids=["0000abcd-0000-4000-8000-000000000000"]
                            )
        assert sorted(chunk_ids(chunks)) == sorted(ids)
        assert len(fake.records) == 4


async def test_a_caller_closing_its_own_http_session_loses_no_id(session_for: SessionFor) -> None:
    """The caller's aiohttp session closed mid-batch: every id settled, no stray CancelledError."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.002)) as fake:
        ids = fake.add_orders(2_000)
        # A small pool: requests wait for a connection, and closing cancels those waits.
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10))
        closing: list[asyncio.Task[None]] = []

        def close_midway(progress: Progress) -> None:
            if not closing:
                closing.append(asyncio.ensure_future(http.close()))

        limiter = SlidingWindowLimiter(10_000, 1.0)
        async with session_for(fake, http_session=http, limiter=limiter) as session:
            batch = BatchCanceller(session, max_in_flight=200, on_progress=close_midway)
            result = await batch.cancel(uuids=ids)
        await asyncio.gather(*closing)
        assert sorted(placed(result)) == sorted(ids)
        canceled = {order.uuid for order in result.success.orders}
        assert all(fake.state(uuid) == "cancel" for uuid in canceled)
        for entry in result.unresolved:
            assert isinstance(entry.error, SessionClosedError | OutcomeUnknownError)
            if fake.state(entry.id) == "cancel":
                # Canceled by a request whose answer was lost: only "unknown" may say so.
                assert isinstance(entry.error, OutcomeUnknownError)


async def test_an_on_progress_raising_cancelled_error_loses_no_id(session_for: SessionFor) -> None:
    """A progress callback raising CancelledError is the callback's failure, not a cancellation."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(2_000)

        def broken(progress: Progress) -> None:
            raise asyncio.CancelledError

        async with session_for(fake) as session:
            result = await BatchCanceller(session, on_progress=broken).cancel(uuids=ids)
        assert sorted(placed(result)) == sorted(ids)
        assert result.success.count == 2_000


@pytest.mark.parametrize("cancel_after", range(20))
async def test_a_cancelled_batch_lists_every_id_its_generator_produced(
    cancel_after: int, session_for: SessionFor
) -> None:
    """Cancelled at any point: each id the generator gave is in last_result, read-ahead too."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.003)) as fake:
        uuids = fake.add_orders(2_000)
        produced: list[str] = []

        def generate() -> Iterator[str]:
            for uuid in uuids:
                produced.append(uuid)
                yield uuid

        async with session_for(fake) as session:
            batch = BatchCanceller(session, max_in_flight=2)
            task = asyncio.ensure_future(batch.cancel(uuids=generate()))
            # Cancelled once the batch has read so many ids: at every stage of reading.
            await until(lambda: len(produced) >= cancel_after * 15 or task.done())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        listed = [] if batch.last_result is None else placed(batch.last_result)
        assert sorted(listed) == sorted(produced)


async def test_ids_given_before_an_iterable_fails_are_all_sent(session_for: SessionFor) -> None:
    """The iterable raises midway: every id it gave before is sent, then its error surfaces."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.002)) as fake:
        uuids = fake.add_orders(2_000)

        def generate() -> Iterator[str]:
            yield from uuids[:1_000]
            raise OSError("the file went away")

        async with session_for(fake) as session:
            batch = BatchCanceller(session)
            with pytest.raises(OSError, match="went away"):
                await batch.cancel(uuids=generate())
        assert batch.last_result is not None
        assert sorted(placed(batch.last_result)) == sorted(uuids[:1_000])
        assert batch.last_result.success.count == 1_000
        assert all(fake.state(uuid) == "cancel" for uuid in uuids[:1_000])


async def test_an_unencodable_identifier_is_unresolved_and_spares_its_chunk(
    session_for: SessionFor,
) -> None:
    """A lone surrogate cannot go on the wire: that id is invalid, its neighbours are canceled."""
    async with FakeUpbit() as fake:
        first = fake.add_order(identifier="bot-1")
        second = fake.add_order(identifier="bot-2")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=["bot-1", "\ud800", "bot-2"])
        assert [order.identifier for order in result.success.orders] == ["bot-1", "bot-2"]
        assert [entry.id for entry in result.unresolved] == ["\ud800"]
        assert isinstance(result.unresolved[0].error, InvalidIdError)
        assert fake.state(first) == fake.state(second) == "cancel"


async def test_an_overlong_identifier_is_unresolved(session_for: SessionFor) -> None:
    """An identifier too long for any request is refused alone, never sent."""
    async with FakeUpbit() as fake:
        fake.add_order(identifier="bot-1")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=["bot-1", "x" * 10_000])
        assert [order.identifier for order in result.success.orders] == ["bot-1"]
        assert [entry.id for entry in result.unresolved] == ["x" * 10_000]
        assert isinstance(result.unresolved[0].error, InvalidIdError)


async def test_a_non_string_never_hides_the_string_it_looks_like(session_for: SessionFor) -> None:
    """identifiers=[1001, "1001"]: the int is invalid, the string "1001" is still canceled."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order(identifier="1001")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=[1001, "1001"])  # type: ignore[list-item]
        assert [order.identifier for order in result.success.orders] == ["1001"]
        assert fake.state(uuid) == "cancel"
        assert len(result.unresolved) == 1
        assert isinstance(result.unresolved[0].error, InvalidIdError)
        assert "int" in str(result.unresolved[0].error)


async def test_an_id_in_both_lists_is_unresolved_not_success(session_for: SessionFor) -> None:
    """A contradictory answer (success and failed) leaves that id unresolved with the reason."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(2)
        both = {"uuid": uuids[0], "market": "SGD-BTC"}
        other = {"uuid": uuids[1], "market": "SGD-BTC"}
        fake.queue_response(
            200,
            {
                "success": {"count": 2, "orders": [both, other]},
                "failed": {"count": 1, "orders": [both]},
            },
        )
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert [order.uuid for order in result.success.orders] == [uuids[1]]
        assert result.failed.count == 0
        assert [entry.id for entry in result.unresolved] == [uuids[0]]
        assert isinstance(result.unresolved[0].error, MalformedResponseError)
        assert "both" in str(result.unresolved[0].error)


async def test_a_stream_cancelled_twice_still_leaves_its_result(session_for: SessionFor) -> None:
    """A second cancellation while the stream winds down does not lose what it read."""
    async with FakeUpbit(faults=Faults(latency_in=0.05)) as fake:
        uuids = fake.add_orders(200)
        async with session_for(fake) as session:
            batch = BatchCanceller(session)

            async def consume() -> None:
                async with contextlib.aclosing(batch.stream(uuids=uuids)) as chunks:
                    async for _ in chunks:
                        pass

            task = asyncio.ensure_future(consume())
            await fake.wait_for(lambda fake: fake.received >= 1)
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert batch.last_result is not None
        assert len(placed(batch.last_result)) == 200


async def test_an_item_whose_repr_fails_spares_the_ids_after_it(session_for: SessionFor) -> None:
    """A broken __repr__ makes one invalid id, not the end of the input."""

    class BrokenRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    async with FakeUpbit() as fake, session_for(fake) as session:
        uuids = fake.add_orders(40)
        items: list[object] = [*uuids[:20], BrokenRepr(), *uuids[20:]]
        result = await BatchCanceller(session).cancel(uuids=items)  # type: ignore[arg-type]
    assert result.success.count == 40
    assert len(result.unresolved) == 1
    assert isinstance(result.unresolved[0].error, InvalidIdError)


async def test_a_string_that_looks_like_a_non_strings_label_is_still_sent(
    session_for: SessionFor,
) -> None:
    """The identifier "<int 1001>" and the int 1001: the string is canceled, the int refused."""
    async with FakeUpbit() as fake, session_for(fake) as session:
        uuid = fake.add_order(identifier="<int 1001>")
        result = await BatchCanceller(session).cancel(identifiers=["<int 1001>", 1001])  # type: ignore[list-item]
    assert [order.uuid for order in result.success.orders] == [uuid]
    assert [type(entry.error) for entry in result.unresolved] == [InvalidIdError]


async def test_an_input_whose_items_cannot_be_hashed_still_reports_progress(
    session_for: SessionFor,
) -> None:
    """Counting a list's distinct ids never aborts the batch, whatever its items do."""

    class BadHash:
        def __hash__(self) -> int:
            raise ValueError("no hash")

    reports: list[Progress] = []
    async with FakeUpbit() as fake, session_for(fake) as session:
        uuids = fake.add_orders(30)
        batch = BatchCanceller(session, on_progress=reports.append)
        result = await batch.cancel(uuids=[*uuids, BadHash()])  # type: ignore[list-item]
    assert result.success.count == 30
    assert reports[-1].total == 31
