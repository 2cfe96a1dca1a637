"""Keeping credentials out of text: what the exchange echoes, URLs, anything shown or logged."""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact", "redact_url"]

# A JWT is three base64url parts; Upbit's start with the encoded header '{"', hence "eyJ".
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
_BEARER = re.compile(r"(Bearer)\s+[^\s\"',;]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^/\s:@]*):[^/\s@]*@")
# A password in a URL's query (redis-py reads ``?password=``), whatever the case of its name.
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pass|pwd)=)[^&#\s]*", re.IGNORECASE)

#: What stands where a secret was.
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with bearer tokens, JWTs and URL passwords replaced by ``[redacted]``."""
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return redact_url(text)


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` (or ``?password=``)
    replaced."""
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    return _QUERY_PASSWORD.sub(rf"\1{REDACTED}", text)
