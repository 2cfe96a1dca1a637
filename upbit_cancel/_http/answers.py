"""Reading the exchange's answers, without any I/O: bodies, error names, rate-limit headers.

Everything here is tolerant where the exchange is loose (advisory headers, a missing list) and
strict where a wrong reading could hide what happened to an order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from .._limiter.contract import RemainingReq
from .._limiter.feedback import DEFAULT_BLOCK_SECONDS
from .._log import log as _log
from .._models import CancelResult, Order, OrderEntry, OrderList
from .._redact import REDACTED, redact

__all__ = [
    "block_seconds",
    "error_details",
    "parse_cancel_result",
    "parse_orders",
    "parse_remaining_req",
    "retry_after_seconds",
]


_MESSAGE_LIMIT = 200
_NAME_LIMIT = 64
#: How Upbit's newer pages prefix a group's name in ``Remaining-Req``.
_GROUP_PREFIX = "exchange."

# One duration: "30 seconds", "1.5 min", "30s", "30초", "2분", "1시간". Longer units first, so
# that "minutes" is not read as "m" followed by letters.
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*"
    r"(hours?|hrs?|h|시간|minutes?|mins?|m|분|seconds?|secs?|s|초)(?![A-Za-z])",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"h": 3600.0, "시": 3600.0, "m": 60.0, "분": 60.0, "s": 1.0, "초": 1.0}
# Between two parts of one duration: "1 minute 30 seconds", "1 minute, 30 seconds".
_JOINER = re.compile(r"\s*(?:,|and)?\s*", re.IGNORECASE)
# Before a rate rather than a duration: "30 requests per 1 s", "30/1s".
_RATE = re.compile(r"(?:\bper|/)\s*$", re.IGNORECASE)


def parse_remaining_req(value: str | None) -> RemainingReq | None:
    """Parse ``group=default; min=1800; sec=29``; ``None`` (logged at debug) when unusable.

    Tolerant by design: the exchange's header is advisory, and a malformed one must never fail a
    request that otherwise succeeded. Upbit's newer pages name the groups ``exchange.default``,
    ``exchange.order-cancel-all``: one group by either name.
    """
    if value is None:
        return None
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, item = part.partition("=")
        if sep:
            fields[key.strip().lower()] = item.strip()
    try:
        group = fields["group"].removeprefix(_GROUP_PREFIX)
        sec = int(fields["sec"])
        minute = int(fields["min"]) if "min" in fields else None
    except (KeyError, ValueError):
        group, sec, minute = "", -1, None
    if not group or sec < 0:
        # What the exchange sent back may quote the request's token: redacted.
        _log.debug("ignoring malformed Remaining-Req header %r", redact(value))
        return None
    return RemainingReq(group=group, sec=sec, min=minute)


def _order_list(value: object) -> OrderList:
    if not isinstance(value, Mapping):
        raise ValueError("expected an object with 'count' and 'orders'")
    orders = value.get("orders")
    if not isinstance(orders, list):
        raise ValueError("expected 'orders' to be a list")
    entries = []
    for order in orders:
        if not isinstance(order, Mapping):
            raise ValueError("expected each order to be an object")
        # Lenient where a missing field costs nothing: the batch matches entries by uuid or
        # identifier, and an entry matching nothing is reported, never dropped silently.
        uuid, market = order.get("uuid", ""), order.get("market", "")
        identifier = order.get("identifier")
        if not isinstance(uuid, str) or not isinstance(market, str):
            raise ValueError("expected 'uuid' and 'market' to be strings")
        if identifier is not None and not isinstance(identifier, str):
            raise ValueError("expected 'identifier' to be a string when present")
        entries.append(OrderEntry(uuid=uuid, market=market, identifier=identifier))
    return OrderList(tuple(entries))


def parse_cancel_result(body: Any) -> CancelResult:
    """Build a :class:`CancelResult` from the decoded JSON; ``ValueError`` if it is off-shape."""
    if not isinstance(body, Mapping) or ("success" not in body and "failed" not in body):
        raise ValueError("expected a JSON object with 'success' and 'failed'")
    # One list missing is read as empty: the other one is still worth having.
    empty = {"count": 0, "orders": []}
    return CancelResult(
        success=_order_list(body.get("success", empty)),
        failed=_order_list(body.get("failed", empty)),
    )


_ORDER_TEXT_FIELDS = (
    "side",
    "identifier",
    "created_at",
    "ord_type",
    "price",
    "volume",
    "remaining_volume",
    "executed_volume",
)


def parse_orders(body: Any) -> list[Order]:
    """Orders from a JSON list of order objects; ``ValueError`` if it is off-shape.

    Strict where it matters (each order needs its ``uuid``, ``market`` and ``state``), lenient
    about the rest: a field of another type or missing is read as ``None``.
    """
    if not isinstance(body, list):
        raise ValueError("expected a JSON list of orders")
    orders = []
    for item in body:
        if not isinstance(item, Mapping):
            raise ValueError("expected each order to be an object")
        uuid, market, state = item.get("uuid"), item.get("market"), item.get("state")
        if not (isinstance(uuid, str) and isinstance(market, str) and isinstance(state, str)):
            raise ValueError("expected each order to have 'uuid', 'market' and 'state' strings")
        extra = {}
        for name in _ORDER_TEXT_FIELDS:
            value = item.get(name)
            extra[name] = str(value) if isinstance(value, str | int | float) else None
        orders.append(Order(uuid=uuid, market=market, state=state, **extra))
    return orders


def error_details(
    status: int, body: bytes, content_type: str, *, secrets: Sequence[str] = ()
) -> tuple[str | None, str]:
    """Upbit's error ``name`` and ``message`` from an error answer, JSON or not, redacted.

    Both are stripped of anything that looks like a credential, and of ``secrets`` (the
    client's own secret key): a server may quote the request's ``Authorization`` header back,
    in either. The message is cut to 200 characters, the name to 64.
    """
    name, message = _json_error(body)
    if message is None:
        text = body.decode("utf-8", "replace").strip()
        if "html" in content_type or text.startswith("<"):
            message = f"the exchange answered HTTP {status} with an HTML page instead of JSON"
        elif not text:
            message = f"the exchange answered HTTP {status} with an empty body"
        else:
            message = text
    message = _scrubbed(message, secrets)
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 1] + "…"
    if name is not None:
        name = _scrubbed(name, secrets)
        if len(name) > _NAME_LIMIT:
            name = name[: _NAME_LIMIT - 1] + "…"
    return name, message


def _scrubbed(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return redact(text)


def _json_error(body: bytes) -> tuple[str | None, str | None]:
    try:
        error = json.loads(body)["error"]
        name, message = error.get("name"), error.get("message")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None, None
    if name is not None and not isinstance(name, str):
        return None, None
    return name, (str(message) if message is not None else name or "")


def _stated_in(message: str) -> float | None:
    """The longest duration a message states, or ``None``; rates ("per 1 s") are not durations."""
    longest: float | None = None
    run = 0.0
    previous_end: int | None = None
    for match in _DURATION.finditer(message):
        if _RATE.search(message, 0, match.start()):
            previous_end = None
            continue
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]
        joined = previous_end is not None and _JOINER.fullmatch(
            message, previous_end, match.start()
        )
        run = run + seconds if joined else seconds
        longest = run if longest is None else max(longest, run)
        previous_end = match.end()
    return longest


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: a number, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return None
    return seconds


def block_seconds(message: str, retry_after: str | None, *, window: float) -> tuple[float, bool]:
    """How long a 418 blocks, and whether the exchange stated it.

    Never shorter than what the message or ``Retry-After`` states (the longer of the two), nor
    than one window; :data:`DEFAULT_BLOCK_SECONDS` when neither states a duration.
    """
    candidates = [
        seconds
        for seconds in (_stated_in(message), retry_after_seconds(retry_after))
        if seconds is not None
    ]
    if not candidates:
        return max(DEFAULT_BLOCK_SECONDS, window), False
    return max(*candidates, window), True
