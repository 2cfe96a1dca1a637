"""Cancel any number of Upbit orders as fast as the exchange allows, without tripping its limiter.

Example::

    from upbit_cancel import BatchCanceller, UpbitSession

    async with UpbitSession(access_key, secret_key, region="sg") as session:
        result = await BatchCanceller(session).cancel(uuids=order_ids)
        print(result.success.count, result.failed.count, result.unresolved.count)
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing costs the command line's start more than the rest.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._batch.canceller import BatchCanceller
    from ._errors import (
        APIError,
        AuthenticationError,
        BlockedError,
        BudgetUnavailableError,
        ConnectError,
        ConnectionLostError,
        HeartbeatError,
        InvalidIdError,
        InvalidRequestError,
        MalformedResponseError,
        MarketOfflineError,
        NotSentError,
        OrderNotFoundError,
        OutcomeUnknownError,
        OutOfScopeError,
        RateLimitError,
        ResponseTimeoutError,
        ServerError,
        SessionClosedError,
        UnresolvedError,
        UpbitError,
    )
    from ._http.session import UpbitSession
    from ._limiter.contract import Feedback, Lease, Limiter, RemainingReq
    from ._limiter.host import HostLimiter
    from ._limiter.redis import RedisLimiter
    from ._limiter.window import SlidingWindowLimiter
    from ._models import (
        BatchResult,
        CancelResult,
        ChunkResult,
        Order,
        OrderEntry,
        OrderList,
        Progress,
        UnresolvedList,
        UnresolvedOrder,
    )
    from ._regions import REGIONS
    from ._watch.heartbeat import Heartbeat
    from ._watch.watchdog import WatchOutcome, watch

# Public names are imported when first used, so that importing the package (the command line
# does, before it can take Ctrl+C over) stays quick; ``__version__`` too.
_EXPORTS = {
    "REGIONS": "._regions",
    "APIError": "._errors",
    "AuthenticationError": "._errors",
    "BatchCanceller": "._batch.canceller",
    "BatchResult": "._models",
    "BlockedError": "._errors",
    "BudgetUnavailableError": "._errors",
    "CancelResult": "._models",
    "ChunkResult": "._models",
    "ConnectError": "._errors",
    "ConnectionLostError": "._errors",
    "Feedback": "._limiter.contract",
    "Heartbeat": "._watch.heartbeat",
    "HeartbeatError": "._errors",
    "HostLimiter": "._limiter.host",
    "InvalidIdError": "._errors",
    "InvalidRequestError": "._errors",
    "Lease": "._limiter.contract",
    "Limiter": "._limiter.contract",
    "MalformedResponseError": "._errors",
    "MarketOfflineError": "._errors",
    "NotSentError": "._errors",
    "Order": "._models",
    "OrderEntry": "._models",
    "OrderList": "._models",
    "OrderNotFoundError": "._errors",
    "OutOfScopeError": "._errors",
    "OutcomeUnknownError": "._errors",
    "Progress": "._models",
    "RateLimitError": "._errors",
    "RedisLimiter": "._limiter.redis",
    "RemainingReq": "._limiter.contract",
    "ResponseTimeoutError": "._errors",
    "ServerError": "._errors",
    "SessionClosedError": "._errors",
    "SlidingWindowLimiter": "._limiter.window",
    "UnresolvedError": "._errors",
    "UnresolvedList": "._models",
    "UnresolvedOrder": "._models",
    "UpbitError": "._errors",
    "UpbitSession": "._http.session",
    "WatchOutcome": "._watch.watchdog",
    "watch": "._watch.watchdog",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("upbit-cancel")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
        globals()[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'upbit_cancel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public names, and the module's own dunders; not what it imports for itself.
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


__all__ = [
    "REGIONS",
    "APIError",
    "AuthenticationError",
    "BatchCanceller",
    "BatchResult",
    "BlockedError",
    "BudgetUnavailableError",
    "CancelResult",
    "ChunkResult",
    "ConnectError",
    "ConnectionLostError",
    "Feedback",
    "Heartbeat",
    "HeartbeatError",
    "HostLimiter",
    "InvalidIdError",
    "InvalidRequestError",
    "Lease",
    "Limiter",
    "MalformedResponseError",
    "MarketOfflineError",
    "NotSentError",
    "Order",
    "OrderEntry",
    "OrderList",
    "OrderNotFoundError",
    "OutOfScopeError",
    "OutcomeUnknownError",
    "Progress",
    "RateLimitError",
    "RedisLimiter",
    "RemainingReq",
    "ResponseTimeoutError",
    "ServerError",
    "SessionClosedError",
    "SlidingWindowLimiter",
    "UnresolvedError",
    "UnresolvedList",
    "UnresolvedOrder",
    "UpbitError",
    "UpbitSession",
    "WatchOutcome",
    "watch",
]
