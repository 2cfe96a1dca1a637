"""BatchCanceller: every id accounted for, whatever the input and whatever goes wrong."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SessionFor
from upbit_cancel import (
    AuthenticationError,
    BatchCanceller,
    BatchResult,
    BlockedError,
    InvalidIdError,
    NotSentError,
    OutcomeUnknownError,
    Progress,
    SlidingWindowLimiter,
    UnresolvedError,
    UpbitSession,
)
from upbit_cancel.testing import FakeUpbit, Faults, PolicyName

UNKNOWN = [f"{n:08x}-0000-4000-8000-00000000abcd" for n in range(50)]
MALFORMED = ["", "not-a-uuid", "CDD92199-2897-4E14-9448-F923320408AD", "cdd92199 2897"]


def fast_fake(**options: Any) -> FakeUpbit:
    """A fake whose budget never paces a small test (the limiter's own tests cover pacing)."""
    return FakeUpbit(limit=10_000, **options)


def fast_limiter() -> SlidingWindowLimiter:
    return SlidingWindowLimiter(10_000, 1.0)


def outcome_of(result: BatchResult, by: Literal["uuids", "identifiers"]) -> dict[str, str]:
    """Each id's list; fails if any id is listed twice."""
    where: dict[str, str] = {}
    lists = [("success", result.success.orders), ("failed", result.failed.orders)]
    for name, orders in lists:
        for order in orders:
            key = order.uuid if by == "uuids" else order.identifier
            assert key is not None
            assert key not in where, f"{key} listed twice"
            where[key] = name
    for entry in result.unresolved:
        assert entry.id not in where, f"{entry.id} listed twice"
        where[entry.id] = "unresolved"
    return where


def client_tasks() -> list[asyncio.Task[Any]]:
    """Tasks other than this test's, leaving out the in-process fake server's handlers."""
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and not getattr(task.get_coro(), "__qualname__", "").startswith("RequestHandler.")
    ]


@pytest.mark.parametrize("unknown_ids", ["omit", "failed"])
async def test_mixed_uuids_each_end_in_exactly_one_list(
    unknown_ids: Literal["omit", "failed"],
    session_for: SessionFor,
) -> None:
    """Open, filled, canceled, unknown, duplicate and malformed uuids: each lands once, rightly."""
    async with fast_fake(unknown_ids=unknown_ids, faults=Faults(jitter_in=0.01)) as fake:
        open_orders = fake.add_orders(230)
        filled = fake.add_orders(15, state="done")
        canceled = fake.add_orders(15, state="cancel")
        given_ids = open_orders + filled + UNKNOWN[:10] + MALFORMED + canceled + open_orders[:30]
        async with session_for(fake, limiter=fast_limiter()) as session:
            result = await BatchCanceller(session).cancel(uuids=given_ids)
        where = outcome_of(result, "uuids")
        assert list(where) != []
        assert sorted(where) == sorted(set(given_ids))
        assert all(where[uuid] == "success" for uuid in open_orders)
        assert all(where[uuid] == "failed" for uuid in filled + canceled)
        assert all(fake.state(uuid) == "cancel" for uuid in open_orders)
        expected_unknown = "failed" if unknown_ids == "failed" else "unresolved"
        assert all(where[uuid] == expected_unknown for uuid in UNKNOWN[:10])
        unresolved = {entry.id: entry.error for entry in result.unresolved}
        assert all(isinstance(unresolved[bad], InvalidIdError) for bad in MALFORMED)
        assert all(unresolved[uuid] is None for uuid in UNKNOWN[:10] if uuid in unresolved)
        assert result.success.count == len(result.success.orders) == 230
        assert result.rate_limited == 0
        # Malformed ids are never sent; 270 valid distinct ids make 14 requests of up to 20.
        assert result.requests == len(fake.records) == 14
        assert all(bad not in record.ids for record in fake.records for bad in MALFORMED)


@pytest.mark.parametrize("unknown_ids", ["omit", "failed"])
async def test_identifiers_are_matched_by_identifier(
    unknown_ids: Literal["omit", "failed"],
    session_for: SessionFor,
) -> None:
    """By identifiers: open ones succeed, closed ones fail, unknown ones per the exchange."""
    async with fast_fake(unknown_ids=unknown_ids) as fake:
        open_orders = [fake.add_order(identifier=f"open:{n}") for n in range(45)]
        closed = [fake.add_order(identifier=f"closed&{n}", state="done") for n in range(5)]
        names = [f"open:{n}" for n in range(45)] + [f"closed&{n}" for n in range(5)]
        unknown = ["nobody-1", "nobody 2"]
        async with session_for(fake, limiter=fast_limiter()) as session:
            result = await BatchCanceller(session).cancel(
                identifiers=[*names, *unknown, "", *names[:3]]
            )
        where = outcome_of(result, "identifiers")
        assert sorted(where) == sorted({*names, *unknown, ""})
        assert [where[name] for name in names] == ["success"] * 45 + ["failed"] * 5
        assert all(fake.state(uuid) == "cancel" for uuid in open_orders)
        assert all(fake.state(uuid) == "done" for uuid in closed)
        expected_unknown = "failed" if unknown_ids == "failed" else "unresolved"
        assert [where[name] for name in unknown] == [expected_unknown] * 2
        assert where[""] == "unresolved"


async def test_results_come_in_input_order(session_for: SessionFor) -> None:
    """Lists follow the input's order, whatever order the requests completed in."""
    async with fast_fake(faults=Faults(jitter_in=0.02, jitter_out=0.02), seed=5) as fake:
        orders = fake.add_orders(200)
        async with session_for(fake, limiter=fast_limiter()) as session:
            result = await BatchCanceller(session).cancel(uuids=orders)
        assert [order.uuid for order in result.success.orders] == orders


async def test_any_iterable_is_read_lazily_with_bounded_work_in_flight(
    session_for: SessionFor,
) -> None:
    """A generator is read as requests go out; tasks stay bounded however many ids there are."""
    async with fast_fake() as fake:
        orders = fake.add_orders(4000)
        pulled = 0
        most_tasks = 0

        def ids() -> Iterator[str]:
            nonlocal pulled
            for uuid in orders:
                pulled += 1
                yield uuid

        snapshots: list[tuple[int, Progress]] = []

        def on_progress(progress: Progress) -> None:
            nonlocal most_tasks
            most_tasks = max(most_tasks, len(asyncio.all_tasks()))
            snapshots.append((pulled, progress))

        async with session_for(fake, limiter=fast_limiter()) as session:
            canceller = BatchCanceller(session, on_progress=on_progress, max_in_flight=4)
            result = await canceller.cancel(uuids=ids())
        assert result.success.count == 4000
        # This test's task, four workers, the fake's handler for each request in flight, and
        # the fake's task that puts delayed cancels into effect.
        assert most_tasks <= 1 + 4 + 4 + 1
        for pulled_then, progress in snapshots:
            # Read so far: what is done, what the four workers hold, one chunk ahead; no more.
            assert pulled_then <= progress.done + (4 + 1) * 20
            if pulled_then < 4000:
                assert progress.total is None
        assert snapshots[-1][1].total == 4000


async def test_progress_counts_up_to_the_known_total(session_for: SessionFor) -> None:
    """For a list the total is known from the start; done grows to it, one call per request."""
    async with fast_fake() as fake:
        orders = fake.add_orders(95)
        seen: list[Progress] = []
        async with session_for(fake, limiter=fast_limiter()) as session:
            canceller = BatchCanceller(session, on_progress=seen.append)
            await canceller.cancel(uuids=[*orders, *orders[:5], "bad"])
        assert [progress.total for progress in seen] == [96] * len(seen)
        assert sorted(progress.done for progress in seen) == [progress.done for progress in seen]
        assert seen[-1].done == 96
        assert seen[-1].success == 95
        assert seen[-1].unresolved == 1
        assert seen[-1].requests == 5


async def test_a_broken_progress_callback_does_not_stop_the_batch(
    caplog: pytest.LogCaptureFixture,
    session_for: SessionFor,
) -> None:
    """An exception in on_progress is logged; every order is still canceled."""
    async with fast_fake() as fake:
        orders = fake.add_orders(60)

        def broken(progress: Progress) -> None:
            raise RuntimeError("display went away")

        async with session_for(fake, limiter=fast_limiter()) as session:
            result = await BatchCanceller(session, on_progress=broken).cancel(uuids=orders)
        assert result.success.count == 60
        assert "on_progress raised" in caplog.text


async def test_a_refused_key_stops_the_batch() -> None:
    """Authentication refused: nothing more is sent, every id unresolved with that error."""
    async with fast_fake() as fake:
        orders = fake.add_orders(2000)
        async with UpbitSession(
            fake.access_key, "x" * 40, base_url=fake.base_url, limiter=SlidingWindowLimiter(5, 1.0)
        ) as session:
            result = await BatchCanceller(session, max_in_flight=10).cancel(uuids=orders)
        assert result.success.count == result.failed.count == 0
        assert [entry.id for entry in result.unresolved] == orders
        assert all(isinstance(entry.error, AuthenticationError) for entry in result.unresolved)
        # Only the first window's worth went out before the first refusal came back.
        assert len(fake.records) <= 5
        assert fake.state_counts()["wait"] == 2000


async def test_a_418_block_stops_the_batch_and_keeps_completed_results(
    session_for: SessionFor,
) -> None:
    """A block mid-batch: completed chunks keep their results, the rest is unresolved."""
    async with fast_fake() as fake:
        orders = fake.add_orders(400)
        async with session_for(fake, limiter=SlidingWindowLimiter(5, 0.05, margin=0.0)) as session:
            queued = False

            def block_after_first(progress: Progress) -> None:
                nonlocal queued
                if progress.requests >= 5 and not queued:
                    queued = True
                    fake.queue_response(
                        418, {"error": {"name": "blocked", "message": "blocked for 30 seconds"}}
                    )

            canceller = BatchCanceller(session, max_in_flight=5, on_progress=block_after_first)
            result = await canceller.cancel(uuids=orders)
        where = outcome_of(result, "uuids")
        assert sorted(where) == sorted(orders)
        assert result.success.count >= 100
        assert all(fake.state(order.uuid) == "cancel" for order in result.success.orders)
        blocked = [entry for entry in result.unresolved if isinstance(entry.error, BlockedError)]
        assert len(blocked) == len(result.unresolved) > 0
        statuses = [record.status for record in fake.records]
        assert statuses.count(418) == 1
        # After the 418 nothing reached the exchange except requests already on their way.
        assert len(statuses) - statuses.index(418) <= 5


async def test_cancelling_the_caller_stops_promptly_and_keeps_what_was_done(
    session_for: SessionFor,
) -> None:
    """Cancel mid-batch: no new request starts, no task is left behind, no id is lost."""
    async with FakeUpbit(faults=Faults(jitter_in=0.01)) as fake:
        orders = fake.add_orders(3000)
        enough = asyncio.Event()

        def on_progress(progress: Progress) -> None:
            if progress.done >= 45 * 20:
                enough.set()

        async with session_for(fake) as session:
            canceller = BatchCanceller(session, on_progress=on_progress)
            task = asyncio.create_task(canceller.cancel(uuids=orders))
            await enough.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client_tasks() == []
            sent_by_then = session.requests_sent
            # Every request on its way has arrived: nothing new followed.
            await fake.wait_for(lambda exchange: exchange.in_transit == 0)
            assert session.requests_sent == sent_by_then
            assert len(fake.records) <= sent_by_then

        partial = canceller.last_result
        assert partial is not None
        where = outcome_of(partial, "uuids")
        assert sorted(where) == sorted(orders)
        assert 45 * 20 <= partial.success.count < 3000
        reasons = {type(entry.error) for entry in partial.unresolved}
        assert reasons <= {NotSentError, OutcomeUnknownError}
        not_sent = {e.id for e in partial.unresolved if isinstance(e.error, NotSentError)}
        assert all(fake.state(uuid) == "wait" for uuid in not_sent)
        assert all(fake.state(order.uuid) == "cancel" for order in partial.success.orders)


async def test_stream_yields_each_request_as_it_completes(session_for: SessionFor) -> None:
    """Streaming gives per-request results that together account for every id."""
    async with fast_fake() as fake:
        orders = fake.add_orders(110)
        async with session_for(fake, limiter=fast_limiter()) as session:
            chunks = [chunk async for chunk in BatchCanceller(session).stream(uuids=[*orders, "x"])]
        assert sorted(chunk.index for chunk in chunks) == list(range(6))
        assert sorted(itertools.chain.from_iterable(chunk.ids for chunk in chunks)) == sorted(
            [*orders, "x"]
        )
        for chunk in chunks:
            accounted = [o.uuid for o in chunk.success.orders] + [e.id for e in chunk.unresolved]
            assert sorted(accounted) == sorted(chunk.ids)


async def test_leaving_a_stream_early_stops_sending(session_for: SessionFor) -> None:
    """Breaking out of the loop cancels the rest: no request starts afterwards, no task remains."""
    async with FakeUpbit() as fake:
        orders = fake.add_orders(2000)
        async with session_for(fake) as session:
            kept = []
            async with contextlib.aclosing(BatchCanceller(session).stream(uuids=orders)) as chunks:
                async for chunk in chunks:
                    kept.append(chunk)
                    if len(kept) == 3:
                        break
            assert client_tasks() == []
            sent = session.requests_sent
            await fake.wait_for(lambda exchange: exchange.in_transit == 0)
            assert session.requests_sent == sent <= 60
        assert len(kept) == 3
        assert all(fake.state(order.uuid) == "cancel" for c in kept for order in c.success.orders)


async def test_raise_for_unresolved(session_for: SessionFor) -> None:
    """raise_for_unresolved raises UnresolvedError naming the ids; a clean result does not."""
    async with fast_fake() as fake:
        orders = fake.add_orders(3)
        async with session_for(fake, limiter=fast_limiter()) as session:
            canceller = BatchCanceller(session)
            (await canceller.cancel(uuids=orders)).raise_for_unresolved()
            result = await canceller.cancel(uuids=[*orders, "bad-id"])
        with pytest.raises(UnresolvedError, match="1 order") as caught:
            result.raise_for_unresolved()
        assert caught.value.ids == ("bad-id",)
        assert [entry.id for entry in caught.value.unresolved] == ["bad-id"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one"),
        ({"uuids": [], "identifiers": []}, "exactly one"),
        ({"uuids": "abc"}, "one string"),
    ],
)
async def test_bad_arguments_raise_type_error(
    fake: FakeUpbit, arguments: dict[str, Any], message: str, session_for: SessionFor
) -> None:
    """Not exactly one list of ids is a usage error, raised before anything is sent."""
    async with session_for(fake) as session:
        with pytest.raises(TypeError, match=message):
            await BatchCanceller(session).cancel(**arguments)


async def test_an_empty_input_is_an_empty_result(fake: FakeUpbit, session_for: SessionFor) -> None:
    """Nothing to cancel: nothing sent, an empty result."""
    async with session_for(fake) as session:
        result = await BatchCanceller(session).cancel(uuids=[])
    assert (result.success.count, result.failed.count, result.unresolved.count) == (0, 0, 0)
    assert fake.records == []


async def test_retry_ambiguous_flags_failures_the_lost_attempt_may_have_caused(
    session_for: SessionFor,
) -> None:
    """A dropped answer is retried; ids then reported failed are flagged possibly canceled."""
    async with fast_fake(faults=Faults(drop_rate=0.6), seed=11) as fake:
        orders = fake.add_orders(400)
        async with session_for(fake, limiter=fast_limiter()) as session:
            canceller = BatchCanceller(session, retry_ambiguous=True, ambiguous_retries=4)
            result = await canceller.cancel(uuids=orders)
        where = outcome_of(result, "uuids")
        assert sorted(where) == sorted(orders)
        failed = {order.uuid for order in result.failed.orders}
        assert failed
        assert failed == result.possibly_canceled
        assert all(fake.state(uuid) == "cancel" for uuid in orders)


fault_mixes = st.fixed_dictionaries(
    {
        "error_rate": st.sampled_from([0.0, 0.2]),
        "drop_rate": st.sampled_from([0.0, 0.2, 0.5]),
        "malformed_rate": st.sampled_from([0.0, 0.2]),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(min_value=0, max_value=89), max_size=90),
    extra_malformed=st.lists(st.sampled_from(MALFORMED), max_size=3),
    faults=fault_mixes,
    unknown_ids=st.sampled_from(["omit", "failed"]),
    retry_ambiguous=st.booleans(),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_every_id_exactly_once_whatever_fails(
    picks: list[int],
    extra_malformed: list[str],
    faults: dict[str, float],
    unknown_ids: Literal["omit", "failed"],
    retry_ambiguous: bool,
    seed: int,
    session_for: SessionFor,
) -> None:
    """Under random faults: each id once; nothing failed that this run canceled (unless flagged
    possibly canceled); nothing in success that is still open or that this run did not cancel."""

    async def scenario() -> None:
        async with fast_fake(faults=Faults(**faults), unknown_ids=unknown_ids, seed=seed) as fake:
            pool = (
                fake.add_orders(40)
                + fake.add_orders(20, state="done")
                + fake.add_orders(10, state="cancel")
                + UNKNOWN[:20]
            )
            given_ids = [pool[pick] for pick in picks] + extra_malformed
            async with session_for(fake, limiter=fast_limiter()) as session:
                canceller = BatchCanceller(session, retry_ambiguous=retry_ambiguous)
                result = await canceller.cancel(uuids=given_ids)
            where = outcome_of(result, "uuids")
            assert sorted(where) == sorted(set(given_ids))
            canceled_by_run = {uuid for record in fake.records for uuid in record.canceled}
            for order in result.failed.orders:
                assert order.uuid not in canceled_by_run or order.uuid in result.possibly_canceled
            for order in result.success.orders:
                assert fake.state(order.uuid) == "cancel"
                assert order.uuid in canceled_by_run
            for entry in result.unresolved:
                if entry.error is None:
                    assert entry.id in UNKNOWN
            assert result.possibly_canceled <= {order.uuid for order in result.failed.orders}

    asyncio.run(scenario())


async def test_a_slow_stream_consumer_holds_the_batch_back(session_for: SessionFor) -> None:
    """Results are handed over, not piled up: while the consumer is busy, requests stop."""
    async with fast_fake() as fake:
        orders = fake.add_orders(2000)
        async with session_for(fake, limiter=fast_limiter()) as session:
            batch = BatchCanceller(session, max_in_flight=4)
            async with contextlib.aclosing(batch.stream(uuids=orders)) as chunks:
                async for _ in chunks:
                    # A consumer busy with the first chunk for as long as many requests take
                    # (the behaviour under test, not a wait for something to happen).
                    await asyncio.sleep(0.5)
                    break
            # At most: the chunk being consumed, one handed over, and the four in flight.
            assert session.requests_sent <= 1 + 1 + 4


@pytest.mark.parametrize("policy", ["sliding", "fixed", "bucket"])
async def test_a_batch_across_many_windows_never_trips_any_reading_of_the_limit(
    policy: PolicyName, session_for: SessionFor
) -> None:
    """Whatever way the exchange counts its windows, and with arrivals jittered: every order
    canceled, no 429, never more than the limit in any window at the exchange."""
    # Upbit's 30 a second, with the default limiter: 90 requests over three windows.
    async with FakeUpbit(policy=policy, faults=Faults(jitter_in=0.02)) as fake:
        orders = fake.add_orders(1_800)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=orders)
        assert result.success.count == 1_800
        assert [record.status for record in fake.records] == [200] * 90
        assert fake.max_in_window(1.0) <= 30
        assert fake.state_counts()["wait"] == 0
