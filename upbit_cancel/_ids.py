"""What a valid order id looks like, and how many fit in one request."""

from __future__ import annotations

import re

__all__ = ["MAX_IDS_PER_REQUEST", "is_uuid"]

#: Upbit's limit for ``uuids[]`` / ``identifiers[]`` in one ``DELETE /v1/orders/uuids``.
MAX_IDS_PER_REQUEST = 20

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Shown in error messages so that the fix is obvious.
UUID_EXAMPLE = "cdd92199-2897-4e14-9448-f923320408ad"


def is_uuid(value: str) -> bool:
    """Whether ``value`` has the shape of an Upbit order uuid (lowercase hex 8-4-4-4-12)."""
    return _UUID.fullmatch(value) is not None
