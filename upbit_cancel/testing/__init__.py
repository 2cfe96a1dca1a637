"""A fake Upbit exchange for tests, benchmarks and demos.

:class:`FakeUpbit` is a real aiohttp server on loopback that implements Order List Cancel
(``DELETE /v1/orders/uuids``) and its neighbours with Upbit's signing rules, error names and a
configurable, strict ``default``-group rate limiter. Point any client at it::

    import asyncio

    from upbit_cancel.testing import FakeUpbit, Faults


    async def main() -> None:
        faults = Faults(jitter_in=0.002)
        async with FakeUpbit(policy="sliding", limit=30, window=1.0, faults=faults) as fake:
            uuids = fake.add_orders(1_000)
            ...  # cancel them through fake.base_url with fake.access_key / fake.secret_key
            assert all(fake.state(uuid) == "cancel" for uuid in uuids)
            assert fake.max_in_window() <= 30


    asyncio.run(main())

The same server runs on its own with ``python -m upbit_cancel.testing`` (or
``upbit-cancel fake-server``). Inside: the server and each request's flow (``_server``), the
order book (``_book``), the keys (``_auth``), the admin API (``_admin``), the rate-limit
policies (``_policies``), the faults (``_faults``) and the records (``_records``).
:class:`PathProxy` (``_proxy``) puts a network path's delays between a client and the fake.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: ``python -m upbit_cancel.testing`` imports this package before it can
# take Ctrl+C over, so it imports nothing until a name is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._faults import FaultKind, Faults
    from ._policies import (
        FixedWindowPolicy,
        PolicyName,
        RatePolicy,
        SlidingWindowPolicy,
        TokenBucketPolicy,
        make_policy,
    )
    from ._proxy import PathProxy
    from ._quirks import Quirks
    from ._records import FakeOrder, OrderState, RequestRecord, most_in_window
    from ._server import FakeUpbit, UnknownIds
    from ._stream import StreamFaults

_EXPORTS = {
    "FakeOrder": "._records",
    "FakeUpbit": "._server",
    "FaultKind": "._faults",
    "Faults": "._faults",
    "FixedWindowPolicy": "._policies",
    "OrderState": "._records",
    "PathProxy": "._proxy",
    "PolicyName": "._policies",
    "Quirks": "._quirks",
    "RatePolicy": "._policies",
    "RequestRecord": "._records",
    "SlidingWindowPolicy": "._policies",
    "StreamFaults": "._stream",
    "TokenBucketPolicy": "._policies",
    "UnknownIds": "._server",
    "make_policy": "._policies",
    "most_in_window": "._records",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'upbit_cancel.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


__all__ = [
    "FakeOrder",
    "FakeUpbit",
    "FaultKind",
    "Faults",
    "FixedWindowPolicy",
    "OrderState",
    "PathProxy",
    "PolicyName",
    "Quirks",
    "RatePolicy",
    "RequestRecord",
    "SlidingWindowPolicy",
    "StreamFaults",
    "TokenBucketPolicy",
    "UnknownIds",
    "make_policy",
    "most_in_window",
]
