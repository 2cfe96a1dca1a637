"""What travels between a client and the fake exchange: a request's parts, an answer, and the
exchange's error answers, as Upbit writes them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs
import jwt

__all__ = [
    "GATEWAY_ERRORS",
    "JSON",
    "Answer",
    "Call",
    "Refused",
    "Unverified",
    "dumps",
    "error_name_of",
    "html_page",
    "read_token",
    "remaining_header",
]

JSON: Final = "application/json"
#: The pages a gateway in front of the exchange answers with.
GATEWAY_ERRORS: Final = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}


@attrs.frozen
class Answer:
    """The exchange's decision on one request, before delays and faults."""

    status: int
    body: bytes
    content_type: str = JSON
    error_name: str | None = None
    admitted: bool = False
    canceled: tuple[str, ...] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)


class Refused(Exception):
    """An error answer decided while processing a request; nothing was changed."""

    def __init__(self, status: int, name: str, message: str, *, plain: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.plain = plain

    def answer(self) -> Answer:
        if self.plain:
            # Upbit sometimes answers 429 with this bare text instead of the JSON error.
            return Answer(self.status, self.message.encode(), content_type="text/plain")
        return Answer(self.status, error_body(self.name, self.message), error_name=self.name)


@attrs.frozen
class Unverified:
    """A bearer token read once, its signature not checked yet: its header, when it has one
    that can be read, and the access key its payload claims."""

    header: Mapping[str, Any] | None = None
    access_key: str | None = None


@attrs.frozen
class Call:
    """The parts of a signed request the exchange looks at."""

    method: str
    path: str
    authorization: str | None
    raw_query: str
    params: tuple[tuple[str, str], ...]
    body: bytes
    token: Unverified

    @property
    def claimed_access_key(self) -> str | None:
        """The access key the token claims, unverified (for records, faults and pockets)."""
        return self.token.access_key

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.params)

    def ids(self) -> tuple[str, ...]:
        id_names = ("uuids[]", "identifiers[]", "uuid", "identifier")
        return tuple(value for key, value in self.params if key in id_names)

    def int_param(self, name: str, *, default: int, low: int, high: int) -> int:
        """A whole-number parameter, or a 400 ``validation_error``."""
        values = self.values(name)
        if not values:
            return default
        try:
            value = int(values[-1])
        except ValueError:
            raise Refused(400, "validation_error", f"{name} must be an integer.") from None
        if not low <= value <= high:
            raise Refused(400, "validation_error", f"{name} must be between {low} and {high}.")
        return value

    def order_by(self) -> str:
        """``asc`` or ``desc`` (the default), or a 400 ``validation_error``."""
        order_by = (self.values("order_by") or ["desc"])[-1]
        if order_by not in ("asc", "desc"):
            raise Refused(400, "validation_error", "order_by must be 'asc' or 'desc'.")
        return order_by


def dumps(payload: object) -> bytes:
    """JSON as the exchange writes it: compact, UTF-8."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def error_body(name: str, message: str) -> bytes:
    return dumps({"error": {"name": name, "message": message}})


def error_name_of(body: bytes) -> str | None:
    """The ``name`` of an error answer's JSON, if it has one."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        name = payload["error"].get("name")
        return name if isinstance(name, str) else None
    return None


def read_token(authorization: str | None) -> Unverified:
    """The bearer token of ``authorization`` read once, without checking its signature."""
    if not authorization:
        return Unverified()
    _, _, token = authorization.partition(" ")
    try:
        parts = jwt.api_jws.decode_complete(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, RecursionError):
        # ValueError: text no token holds (a lone surrogate, from bytes that are not UTF-8);
        # RecursionError: a header nested deeper than JSON is read.
        return Unverified()
    if not isinstance(parts["header"].get("kid", ""), str):
        # Unreadable, as PyJWT reads a header (its oldest release we support leaves this check
        # to the caller when the signature is not verified).
        return Unverified()
    try:
        payload = json.loads(parts["payload"])
    except (ValueError, RecursionError):
        payload = None
    access_key = payload.get("access_key") if isinstance(payload, dict) else None
    return Unverified(parts["header"], access_key if isinstance(access_key, str) else None)


def html_page(status: int) -> bytes:
    """A gateway's error page."""
    title = f"{status} {GATEWAY_ERRORS[status]}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def remaining_header(group: str, sec: int) -> str:
    """The ``Remaining-Req`` header of a group with ``sec`` calls left in this second."""
    # ``min`` is deprecated by Upbit and always 1800 for the default group.
    minute = 1800 if group == "default" else 600
    return f"group={group}; min={minute}; sec={sec}"
