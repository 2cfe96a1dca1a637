"""A state machine drives real batches against the fake: every produced id is settled once.

Each example runs one ``cancel()`` or ``stream()`` through a real session, limiter and fake
exchange over loopback, and interleaves random steps: let it run, queue a failure for the next
request (a 5xx, a 418 block, a refused key, a 400, a 429, a contradictory answer), make the
stream's consumer lag or catch up, close the session, cancel the batch. After every step the
ids produced so far and the progress reported must agree; at the end every id the input
produced is in exactly one list, and what the lists say agrees with the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.helpers import placed
from upbit_cancel import (
    BatchCanceller,
    BatchResult,
    ChunkResult,
    NotSentError,
    OutcomeUnknownError,
    Progress,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel.testing import FakeUpbit, Faults

UNKNOWN = [f"{n:08x}-0000-4000-8000-00000000abcd" for n in range(10)]

#: Canned answers the next request may get, by name.
ANSWERS: dict[str, tuple[int, Any]] = {
    "502": (502, "<html><h1>502 Bad Gateway</h1></html>"),
    "418": (418, {"error": {"name": "blocked", "message": "blocked for 30 seconds"}}),
    "401": (401, {"error": {"name": "invalid_access_key", "message": "who?"}}),
    "400": (400, {"error": {"name": "validation_error", "message": "odd"}}),
    "429": (429, "Too many API requests."),
    "both": (
        200,
        {
            "success": {"count": 1, "orders": [{"uuid": UNKNOWN[0], "market": "SGD-BTC"}]},
            "failed": {"count": 1, "orders": [{"uuid": UNKNOWN[0], "market": "SGD-BTC"}]},
        },
    ),
}

#: Longest any single step may take: the batch never waits this long unless it hangs.
STEP_TIMEOUT = 20.0


class BatchMachine(RuleBasedStateMachine):
    # Preconditions depend only on what was drawn, never on timing: hypothesis replays them.

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.produced: list[str] = []
        self.reports: list[Progress] = []
        self.chunks: list[ChunkResult] = []
        self.progressed = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.done = False
        self.streaming = False
        self.open_before: set[str] = set()

    def run(self, coroutine: Any) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(STEP_TIMEOUT):
                return await coroutine

        return self.loop.run_until_complete(bounded())

    @initialize(
        seed=st.integers(0, 2**16),
        streaming=st.booleans(),
        workers=st.sampled_from([1, 3, 8]),
        opened=st.integers(0, 400),
        closed=st.integers(0, 20),
        drops=st.sampled_from([0.0, 0.1]),
        paced=st.booleans(),
    )
    def start(
        self,
        seed: int,
        streaming: bool,
        workers: int,
        opened: int,
        closed: int,
        drops: float,
        paced: bool,
    ) -> None:
        self.streaming = streaming
        faults = Faults(jitter_in=0.002, drop_rate=drops, error_rate=drops / 2)
        self.fake = FakeUpbit(limit=100_000, faults=faults, seed=seed)
        self.run(self.fake.start())
        open_orders = self.fake.add_orders(opened)
        self.open_before = set(open_orders)
        given = [*open_orders, *self.fake.add_orders(closed, state="done")]
        given += [*UNKNOWN[:3], "not-a-uuid", *open_orders[:5]]
        self.session = UpbitSession(
            self.fake.access_key,
            self.fake.secret_key,
            base_url=self.fake.base_url,
            # Paced: requests wait for the limiter, where stops and cancellations can meet them.
            limiter=SlidingWindowLimiter(4, 0.02) if paced else SlidingWindowLimiter(100_000, 1.0),
            read_timeout=5.0,
        )
        self.batch = BatchCanceller(self.session, max_in_flight=workers, on_progress=self.report)
        source = self.source(given)
        self.task: asyncio.Task[Any]
        if streaming:
            self.task = self.loop.create_task(self.consume(source))
        else:
            self.task = self.loop.create_task(self.batch.cancel(uuids=source))

    def source(self, ids: list[str]) -> Iterator[str]:
        for value in ids:
            self.produced.append(value)
            yield value

    def report(self, progress: Progress) -> None:
        self.reports.append(progress)
        self.progressed.set()

    async def consume(self, source: Iterator[str]) -> None:
        async with contextlib.aclosing(self.batch.stream(uuids=source)) as chunks:
            async for chunk in chunks:
                self.chunks.append(chunk)
                await self.gate.wait()

    async def next_progress(self) -> None:
        self.progressed.clear()
        waiter = asyncio.ensure_future(self.progressed.wait())
        await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    @rule()
    def advance(self) -> None:
        """Let the batch run until it reports progress again (or ends)."""
        self.gate.set()
        if not self.task.done():
            self.run(self.next_progress())

    @rule()
    def yield_once(self) -> None:
        """One turn of the event loop: whatever is ready runs, nothing waits."""
        self.run(asyncio.sleep(0))

    @rule(answer=st.sampled_from(sorted(ANSWERS)))
    def next_request_fails(self, answer: str) -> None:
        status, body = ANSWERS[answer]
        content_type = "application/json" if isinstance(body, dict) else "text/plain"
        self.fake.queue_response(status, body, content_type=content_type)

    @precondition(lambda self: self.streaming)
    @rule()
    def consumer_lags(self) -> None:
        self.gate.clear()

    @rule()
    def session_closes(self) -> None:
        self.run(self.session.aclose())

    @rule()
    def caller_cancels(self) -> None:
        self.task.cancel()
        self.run(asyncio.wait({self.task}))

    @invariant()
    def progress_never_outruns_the_input(self) -> None:
        distinct = len(set(self.produced))
        for progress in self.reports:
            assert progress.done <= distinct
            assert progress.success + progress.failed + progress.unresolved == progress.done
        handed = [value for chunk in self.chunks for value in chunk.ids]
        assert len(handed) == len(set(handed))
        assert set(handed) <= set(self.produced)

    def teardown(self) -> None:
        try:
            if hasattr(self, "task"):
                self.gate.set()
                self.run(asyncio.wait({self.task}))
                self.check_final()
        finally:
            if hasattr(self, "fake"):
                self.run(self.session.aclose())
                self.run(self.fake.close())
            self.loop.close()

    def check_final(self) -> None:
        if not self.task.cancelled():
            self.task.result()
        left = self.batch.last_result
        if self.streaming:
            listed = [value for chunk in self.chunks for value in chunk.ids]
            results = [*(chunk_result(chunk) for chunk in self.chunks)]
        else:
            listed, results = [], []
        if left is not None:
            results.append(left)
            listed += placed(left)
        assert sorted(listed) == sorted(set(self.produced))
        for result in results:
            self.check_against_exchange(result)

    def check_against_exchange(self, result: BatchResult) -> None:
        fake = self.fake
        for order in result.success.orders:
            assert fake.state(order.uuid) == "cancel"
        for order in result.failed.orders:
            # Refused ones were not open: this run canceled none of them (no retries here).
            assert order.uuid not in self.open_before or fake.state(order.uuid) == "cancel"
        for entry in result.unresolved:
            if entry.id in self.open_before and fake.state(entry.id) == "cancel":
                # Canceled by a request whose answer was lost: only "unknown" may say so.
                assert isinstance(entry.error, OutcomeUnknownError)
            if isinstance(entry.error, NotSentError):
                assert entry.id not in self.open_before or fake.state(entry.id) == "wait"


def chunk_result(chunk: ChunkResult) -> BatchResult:
    return BatchResult(success=chunk.success, failed=chunk.failed, unresolved=chunk.unresolved)


TestBatchMachine = BatchMachine.TestCase
TestBatchMachine.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
