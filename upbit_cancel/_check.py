"""Argument checks at the public boundary, written once: each says what to pass instead.

Wrong types raise ``TypeError``, wrong values ``ValueError``; ``bool`` is never taken for a
number (``True`` is an ``int`` to Python, never a count or a duration to a caller).
"""

from __future__ import annotations

import math

__all__ = ["seconds", "whole_number"]


def seconds(name: str, value: object, *, zero: bool = False) -> float:
    """``value`` as a finite number of seconds: positive, or also zero with ``zero``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        wanted = "zero or more" if zero else "a positive"
        raise ValueError(f"{name} must be {wanted} finite number of seconds, not {value!r}")
    return float(value)


def whole_number(name: str, value: object, *, least: int = 0, most: int | None = None) -> int:
    """``value`` as a whole number from ``least`` to ``most`` (no upper bound when ``None``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    if most is not None and not least <= value <= most:
        raise ValueError(f"{name} must be between {least} and {most}, not {value!r}")
    if value < least:
        wanted = "zero or more" if least == 0 else f"at least {least}"
        raise ValueError(f"{name} must be {wanted}, not {value!r}")
    return value
