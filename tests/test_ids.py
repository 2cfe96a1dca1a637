"""What an order id may be: the checks the session and the batch share, without I/O."""

from __future__ import annotations

import pytest

from upbit_cancel._ids import MAX_IDENTIFIER_BYTES, id_problem

UUID = "00000001-0000-4000-8000-00000000abcd"


@pytest.mark.parametrize(
    ("kind", "item", "problem"),
    [
        ("uuids", UUID, None),
        ("uuids", UUID.upper(), "lowercase"),
        ("uuids", 7, "must be strings"),
        ("identifiers", "", "empty"),
        ("identifiers", "\ud800", "lone surrogate"),
        ("identifiers", "é" * (MAX_IDENTIFIER_BYTES // 2 + 1), "bytes"),
        ("identifiers", "é" * (MAX_IDENTIFIER_BYTES // 2), None),
        ("identifiers", "a:b&c=d e", None),
    ],
)
def test_what_an_id_may_be(kind: str, item: object, problem: str | None) -> None:
    """The checks shared by the session and the batch."""
    found = id_problem(kind, item)  # type: ignore[arg-type]
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
