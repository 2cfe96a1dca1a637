"""Errors raised by upbit_cancel.

Every error derives from :class:`UpbitError`::

    UpbitError
    ├── SessionClosedError          the session was closed; open a new one
    ├── HeartbeatError              a heartbeat cannot be written or read where it was asked to live
    ├── UnresolvedError             BatchResult.raise_for_unresolved(): some ids are unresolved
    ├── InvalidIdError              an id that cannot be an order's (also a ValueError); never sent
    ├── NotSentError                stopped before this request was sent: nothing happened
    ├── ConnectError                could not reach the exchange: nothing was sent
    ├── OutcomeUnknownError         sent, no usable answer: the orders may or may not be canceled
    │   ├── ResponseTimeoutError    no answer within the timeout
    │   ├── ConnectionLostError     the connection dropped before the answer
    │   ├── MalformedResponseError  an answer that is not the documented JSON
    │   └── ServerError             5xx (also an APIError)
    └── APIError                    the exchange answered with an error: status, name, message
        ├── AuthenticationError     401 family: jwt_verification, nonce_used, invalid_access_key, …
        ├── OutOfScopeError         out_of_scope: the key lacks a permission ("Make Orders", …)
        ├── MarketOfflineError      market_offline
        ├── InvalidRequestError     validation_error, invalid_parameter, bad_request, …
        ├── OrderNotFoundError      order_not_found
        ├── RateLimitError          429 too_many_requests, still refused after the retries
        │   └── BlockedError        418: the account is blocked for a while; never retried
        └── ServerError

Upbit documents that clients must branch on the error ``name``, never on the message (it may be
Korean) nor on the status (not consistent across API areas), so :func:`error_from_response` picks
the class by name first and falls back to the status only for names it does not know. Unknown
names are kept on a plain :class:`APIError`.

Every error carries ``ids``: the order uuids or identifiers of the request it concerns (empty when
it concerns no particular order). Credentials never appear in any error: text the exchange sent
back is redacted (see ``_redact``), and errors are raised without the transport's exception in
their chain (which holds the request's headers). Errors pickle with all their fields.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = [
    "APIError",
    "AuthenticationError",
    "BlockedError",
    "BudgetUnavailableError",
    "ConnectError",
    "ConnectionLostError",
    "HeartbeatError",
    "InvalidIdError",
    "InvalidRequestError",
    "MalformedResponseError",
    "MarketOfflineError",
    "NotSentError",
    "OrderNotFoundError",
    "OutOfScopeError",
    "OutcomeUnknownError",
    "RateLimitError",
    "ResponseTimeoutError",
    "ServerError",
    "SessionClosedError",
    "UnresolvedError",
    "UpbitError",
    "error_from_response",
    "stops_the_account",
    "with_ids",
]


class UpbitError(Exception):
    """Root of every error raised by upbit_cancel."""

    #: The order uuids or identifiers this error concerns, as given by the caller.
    ids: tuple[str, ...]

    def __init__(self, message: str, *, ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.ids = tuple(ids)

    @property
    def message(self) -> str:
        """The human-readable explanation."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only fields, which pickle's default (cls(*args)) would drop.
        return (_rebuild, (type(self), self.args, dict(vars(self))))


def _rebuild(cls: type[UpbitError], args: tuple[Any, ...], state: dict[str, Any]) -> UpbitError:
    error = cls.__new__(cls)
    error.args = args
    vars(error).update(state)
    return error


class HeartbeatError(UpbitError):
    """A heartbeat cannot be written or read where it was asked to live: its file's directory
    is missing or not writable, or its Redis refuses the connection or the credentials. The
    message names the place (with any password redacted) and what to check."""


class SessionClosedError(UpbitError, RuntimeError):
    """The session was closed with ``aclose()``, or something it sends through was closed under
    it (the ``http_session`` it was given, or a :class:`RedisLimiter`); create new ones."""


class InvalidIdError(UpbitError, ValueError):
    """An id that cannot name an order (a malformed uuid, an empty identifier); it was not sent."""


class NotSentError(UpbitError):
    """Stopped before this request was sent (cancelled, or the batch stopped): nothing happened."""


class BudgetUnavailableError(NotSentError):
    """The account's shared rate-limit budget refuses this process: its file cannot be written,
    Redis refuses the URL's credentials, the key's budget is kept under another name, or the
    store has been out of reach for a while and this process has no share of the budget of its
    own. Nothing was sent; the message says what to check."""


class ConnectError(UpbitError):
    """The exchange could not be reached, so nothing was sent: retrying is safe."""


class OutcomeUnknownError(UpbitError):
    """The request was sent but no usable answer came back.

    The exchange may or may not have processed it: the orders concerned may already be canceled.
    Check them (for example with ``GET /v1/orders/uuids``) before assuming either way.
    """


class ResponseTimeoutError(OutcomeUnknownError):
    """No answer arrived within the session's timeout."""


class ConnectionLostError(OutcomeUnknownError):
    """The connection dropped after the request was sent and before the answer arrived."""


class MalformedResponseError(OutcomeUnknownError):
    """The exchange answered, but not with the documented JSON shape."""

    #: HTTP status of the answer.
    status: int

    def __init__(self, message: str, *, status: int, ids: Iterable[str] = ()) -> None:
        super().__init__(message, ids=ids)
        self.status = status


class APIError(UpbitError):
    """The exchange answered with an error.

    ``name`` is Upbit's error name (``None`` when the body had none, such as a plain-text 429 or an
    HTML error page); branch on the subclass or on ``name``, never on the message.
    """

    #: HTTP status of the answer.
    status: int
    #: Upbit's error name, such as ``"nonce_used"``; ``None`` when the answer carried none.
    name: str | None

    def __init__(
        self, message: str, *, status: int, name: str | None, ids: Iterable[str] = ()
    ) -> None:
        super().__init__(message, ids=ids)
        self.status = status
        self.name = name

    def __str__(self) -> str:
        label = self.name if self.name is not None else "no error name"
        return f"{self.message} (HTTP {self.status}, {label})"


class AuthenticationError(APIError):
    """The exchange refused the credentials or the signature (HTTP 401 family).

    Check the access and secret keys, the key's allowed IP addresses and its expiry.
    """


class OutOfScopeError(APIError):
    """The API key lacks the permission this call needs: "Make Orders" for cancels, "order
    query" for the order queries of confirmation and ``cancel_open``."""


class MarketOfflineError(APIError):
    """The market is suspended (for example during a rebranding)."""


class InvalidRequestError(APIError):
    """The exchange refused the request's parameters."""


class OrderNotFoundError(APIError):
    """The exchange knows no such order."""


class RateLimitError(APIError):
    """HTTP 429: the account's request budget was exceeded and the retries did not get through.

    The request was not processed.
    """


class BlockedError(RateLimitError):
    """HTTP 418: the exchange blocked the account (or IP) for a while. Never retried.

    Every request of the account is refused without being sent until the block ends.
    """

    #: Seconds until the block ends, as of when this error was raised.
    retry_after: float

    def __init__(
        self,
        message: str,
        *,
        status: int = 418,
        name: str | None,
        retry_after: float,
        ids: Iterable[str] = (),
    ) -> None:
        super().__init__(message, status=status, name=name, ids=ids)
        self.retry_after = retry_after


class ServerError(APIError, OutcomeUnknownError):
    """HTTP 5xx: the exchange failed; whether it processed the request is unknown."""


class _Unresolved(Protocol):
    # What an unresolved entry (``UnresolvedOrder``) offers this module: its id.
    @property
    def id(self) -> str: ...


class UnresolvedError(UpbitError):
    """Raised by :meth:`BatchResult.raise_for_unresolved` when some ids are unresolved."""

    #: The unresolved entries (:class:`UnresolvedOrder`), in input order.
    unresolved: tuple[Any, ...]

    def __init__(self, unresolved: Iterable[_Unresolved]) -> None:
        unresolved = tuple(unresolved)
        sample = ", ".join(entry.id for entry in unresolved[:3])
        more = f" and {len(unresolved) - 3} more" if len(unresolved) > 3 else ""
        super().__init__(
            f"{len(unresolved)} order(s) unresolved ({sample}{more}); "
            "see .unresolved for each id's error",
            ids=(entry.id for entry in unresolved),
        )
        self.unresolved = unresolved


def stops_the_account(error: UpbitError) -> bool:
    """Whether no further request of the account can succeed after ``error``: the key refused
    or without the permission, the account blocked, the session closed, or its budget refusing
    the process.

    A query-hash mismatch (``invalid_query_payload``) concerns one request's query (an odd
    identifier), not the key.
    """
    if isinstance(error, AuthenticationError) and error.name == "invalid_query_payload":
        return False
    return isinstance(
        error,
        AuthenticationError
        | OutOfScopeError
        | BlockedError
        | SessionClosedError
        | BudgetUnavailableError,
    )


def with_ids(error: UpbitError, ids: Iterable[str]) -> UpbitError:
    """A copy of ``error`` that concerns ``ids``: the one place a request's ids join its error.

    A copy, not the error itself: one error may be handed to several requests (a block refuses
    every waiter with the same one). The copy has no traceback nor chain of its own.
    """
    attached = copy.copy(error)
    attached.ids = tuple(ids)
    return attached


_CLASS_BY_NAME: dict[str, type[APIError]] = {
    "jwt_verification": AuthenticationError,
    "invalid_query_payload": AuthenticationError,
    "expired_access_key": AuthenticationError,
    "nonce_used": AuthenticationError,
    "no_authorization_ip": AuthenticationError,
    "no_authorization_i_p": AuthenticationError,
    "no_authorization_token": AuthenticationError,
    "invalid_access_key": AuthenticationError,
    "out_of_scope": OutOfScopeError,
    "market_offline": MarketOfflineError,
    "validation_error": InvalidRequestError,
    "invalid_parameter": InvalidRequestError,
    "bad_request": InvalidRequestError,
    "QUERY_PARAMETER_NOT_SUPPORTED": InvalidRequestError,
    "order_not_found": OrderNotFoundError,
    "too_many_requests": RateLimitError,
}


def error_from_response(
    status: int, name: str | None, message: str, *, ids: Iterable[str] = ()
) -> APIError:
    """Build the error for an answer with this status and Upbit error name.

    418 and 5xx answers map by status whatever their name, since they say something about the
    exchange rather than about the request. 418 answers come back as :class:`BlockedError` with
    ``retry_after`` of 0; the session fills in the block's real duration.
    """
    if status == 418:
        return BlockedError(message, name=name, retry_after=0.0, ids=ids)
    if status >= 500:
        return ServerError(message, status=status, name=name, ids=ids)
    if name is not None and name in _CLASS_BY_NAME:
        return _CLASS_BY_NAME[name](message, status=status, name=name, ids=ids)
    if status == 429:
        return RateLimitError(message, status=status, name=name, ids=ids)
    if status == 401:
        return AuthenticationError(message, status=status, name=name, ids=ids)
    return APIError(message, status=status, name=name, ids=ids)


# Tracebacks, reprs and pickles name the errors where users import them from.
for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type):
        _public.__module__ = "upbit_cancel"
