"""The error tree: every error keeps its fields through pickling."""

from __future__ import annotations

import pickle

import pytest

from tests.conftest import SessionFor
from upbit_cancel import (
    BlockedError,
)
from upbit_cancel.testing import FakeUpbit


async def test_errors_pickle_with_their_fields(session_for: SessionFor) -> None:
    """Errors cross process boundaries (multiprocessing, logging queues) intact."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order()
        fake.queue_response(418, {"error": {"name": "blocked", "message": "blocked for 30 s"}})
        async with session_for(fake) as session:
            with pytest.raises(BlockedError) as caught:
                await session.cancel_orders(uuids=[uuid])
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is BlockedError
    assert (copy.status, copy.name, copy.ids, copy.retry_after) == (
        caught.value.status,
        caught.value.name,
        caught.value.ids,
        caught.value.retry_after,
    )
    assert str(copy) == str(caught.value)
