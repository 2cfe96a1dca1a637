"""Where each region's API is: light enough for the command line to read before anything else."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["REGIONS"]

#: Base URL of each region's API.
REGIONS: Mapping[str, str] = {
    "sg": "https://sg-api.upbit.com",
    "id": "https://id-api.upbit.com",
    "th": "https://th-api.upbit.com",
    "kr": "https://api.upbit.com",
}
