"""What an order id may be, and the ids of one request: the checks the session and the batch
share, without any I/O."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Literal

import attrs

from ._errors import InvalidIdError

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "MAX_IDS_PER_QUERY",
    "MAX_IDS_PER_REQUEST",
    "UUID_EXAMPLE",
    "UUID_PATTERN",
    "Ids",
    "Kind",
    "checked_request_ids",
    "chosen_ids",
    "id_problem",
    "is_uuid",
    "label",
]

#: Which of the two lists of Order List Cancel the ids go in.
Kind = Literal["uuids", "identifiers"]

#: Upbit's limit for ``uuids[]`` / ``identifiers[]`` in one ``DELETE /v1/orders/uuids``.
MAX_IDS_PER_REQUEST = 20

#: Upbit's limit for ``uuids[]`` / ``identifiers[]`` in one ``GET /v1/orders/uuids``.
MAX_IDS_PER_QUERY = 100

#: Longest identifier sent, in UTF-8 bytes. Not an Upbit rule: a guard that keeps a request of
#: 20 identifiers, percent-encoded (up to 3 characters a byte), within the 8 KiB of URL that
#: servers commonly accept.
MAX_IDENTIFIER_BYTES = 128

#: Shown in error messages so that the fix is obvious.
UUID_EXAMPLE = "cdd92199-2897-4e14-9448-f923320408ad"

#: An Upbit order uuid: lowercase hex 8-4-4-4-12.
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_REPR_LIMIT = 60


def is_uuid(value: str) -> bool:
    """Whether ``value`` has the shape of an Upbit order uuid (lowercase hex 8-4-4-4-12)."""
    return UUID_PATTERN.fullmatch(value) is not None


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not stop the ids after it
        text = f"object at {id(value):#x}"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 1] + "…"


def label(item: object) -> str:
    """How an input item is named in results: a string as itself, anything else tagged.

    ``1001`` becomes ``"<int 1001>"``, so that it never stands for the identifier ``"1001"``.
    """
    if isinstance(item, str):
        return item
    return f"<{type(item).__name__} {_short_repr(item)}>"


def id_problem(kind: Kind, item: object) -> str | None:
    """Why ``item`` cannot be sent as one of ``kind``, or ``None`` if it can."""
    if not isinstance(item, str):
        return (
            f"{kind} must be strings, not {type(item).__name__} {_short_repr(item)}; "
            f"pass str({_short_repr(item)}) if that is the id"
        )
    if kind == "uuids":
        if is_uuid(item):
            return None
        return (
            f"malformed uuid {_short_repr(item)}: Upbit order uuids are lowercase hex like "
            f"{UUID_EXAMPLE}"
        )
    if not item:
        return "empty identifier"
    try:
        size = len(item.encode("utf-8"))
    except UnicodeEncodeError:
        return f"identifier {_short_repr(item)} is not valid text (it holds a lone surrogate)"
    if size > MAX_IDENTIFIER_BYTES:
        return f"identifier of {size} bytes; at most {MAX_IDENTIFIER_BYTES} bytes (UTF-8) are sent"
    return None


def chosen_ids(
    uuids: Iterable[object] | None, identifiers: Iterable[object] | None
) -> tuple[Kind, Iterable[object]]:
    """Which of ``uuids=`` and ``identifiers=`` was given, or a ``TypeError`` saying what to pass.

    Exactly one must be given, and it must be an iterable of ids, not one string.
    """
    if (uuids is None) == (identifiers is None):
        raise TypeError("pass exactly one of uuids=[...] or identifiers=[...]")
    kind: Kind = "uuids" if uuids is not None else "identifiers"
    given = uuids if uuids is not None else identifiers
    if isinstance(given, str | bytes):
        raise TypeError(f"{kind} must be a list of ids, not one string: {kind}=[{given!r}]")
    try:
        iter(given)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{kind} must be a list of ids (or any iterable of them), not "
            f"{type(given).__name__} {_short_repr(given)}"
        ) from None
    assert given is not None
    return kind, given


@attrs.frozen
class Ids:
    """The ids one request carries: distinct, well-formed, of one kind.

    Built by :func:`checked_request_ids` at the public boundary, or by the batch's ledger, which
    checks every id as it reads it; the session sends them as they are.
    """

    #: Which list of the exchange they go in.
    kind: Kind
    #: The ids, in the order sent.
    values: tuple[str, ...]

    def params(self) -> list[tuple[str, str]]:
        """The query's ``uuids[]=…`` or ``identifiers[]=…`` pairs, in order."""
        name = f"{self.kind}[]"
        return [(name, value) for value in self.values]


def checked_request_ids(
    uuids: Iterable[str] | None,
    identifiers: Iterable[str] | None,
    *,
    most: int = MAX_IDS_PER_REQUEST,
) -> Ids:
    """The ids of one request, or an error saying what to pass instead.

    Raises ``TypeError`` for arguments of the wrong type and :class:`InvalidIdError` (a
    ``ValueError``) for ids that cannot be sent: empty, more than 20, malformed or repeated.
    """
    kind, given = chosen_ids(uuids, identifiers)
    values: list[str] = []
    for value in given:
        if not isinstance(value, str):
            raise TypeError(id_problem(kind, value))
        values.append(value)
    if not values:
        raise InvalidIdError(f"{kind} is empty: pass 1 to {most} ids")
    if len(values) > most:
        hint = (
            "Use BatchCanceller(session).cancel(...) for any number of orders"
            if most == MAX_IDS_PER_REQUEST
            else "BatchCanceller(session).confirm(...) asks about any number of orders"
        )
        raise InvalidIdError(
            f"{len(values)} {kind} given; one request takes at most {most}. {hint}"
        )
    for value in values:
        problem = id_problem(kind, value)
        if problem is not None:
            raise InvalidIdError(problem, ids=(value,))
    if len(set(values)) != len(values):
        repeated = sorted(value for value, count in Counter(values).items() if count > 1)
        raise InvalidIdError(
            f"duplicate {kind}: {', '.join(repeated)}; send each once "
            "(BatchCanceller removes duplicates for you)",
            ids=repeated,
        )
    return Ids(kind, tuple(values))
