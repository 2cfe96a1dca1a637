"""Cancel any number of Upbit orders as fast as the exchange allows, without tripping its limiter.

Example::

    from upbit_cancel import BatchCanceller, UpbitSession

    async with UpbitSession(access_key, secret_key, region="sg") as session:
        result = await BatchCanceller(session).cancel(uuids=order_ids)
        print(result.success.count, result.failed.count, len(result.unresolved))
"""

import logging as _logging

from ._batch import BatchCanceller
from ._errors import (
    APIError,
    AuthenticationError,
    BlockedError,
    ConnectError,
    ConnectionLostError,
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
from ._limiter import Lease, Limiter
from ._models import (
    BatchResult,
    CancelResult,
    ChunkResult,
    Feedback,
    OrderEntry,
    OrderList,
    Progress,
    RemainingReq,
    UnresolvedOrder,
)
from ._redis import RedisLimiter
from ._session import REGIONS, UpbitSession
from ._window import SlidingWindowLimiter

# A library logs, the application decides where it goes.
_logging.getLogger("upbit_cancel").addHandler(_logging.NullHandler())

__all__ = [
    "REGIONS",
    "APIError",
    "AuthenticationError",
    "BatchCanceller",
    "BatchResult",
    "BlockedError",
    "CancelResult",
    "ChunkResult",
    "ConnectError",
    "ConnectionLostError",
    "Feedback",
    "InvalidIdError",
    "InvalidRequestError",
    "Lease",
    "Limiter",
    "MalformedResponseError",
    "MarketOfflineError",
    "NotSentError",
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
    "UnresolvedOrder",
    "UpbitError",
    "UpbitSession",
]
