"""Request signing: the query string as sent, its hash, and the JWT.

Upbit verifies ``query_hash`` = SHA-512 of the *decoded* query string, parameters in the order
sent, arrays repeated with literal brackets (``uuids[]=a&uuids[]=b``); its own sample computes
``unquote(urlencode(params, doseq=True))``. We percent-encode each value on the wire (so an
identifier holding ``&``, ``=``, ``:`` or a space survives the trip) and hash the same pairs
unencoded: the server decodes the wire text back to exactly the hashed text.

``urlencode`` turns a space into ``+``, which ``unquote`` leaves alone, so Upbit's recipe would hash
``a+b`` for the identifier ``a b``. Encoding with ``%20`` instead keeps the hashed text equal to the
decoded wire text for every value.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Sequence
from urllib.parse import quote

import attrs
import jwt

__all__ = ["Query", "encode_query", "make_token"]

#: Upbit accepts HS256 and HS512. PyJWT warns for HS512 keys shorter than 64 bytes, and Upbit's
#: secrets are 40 characters, so HS512 would emit a warning on every request; HS256 needs 32.
_ALGORITHM = "HS256"


@attrs.frozen
class Query:
    """A query string in its two forms."""

    #: Percent-encoded, as it goes on the wire (brackets kept literal, as in Upbit's examples).
    wire: str
    #: Decoded, as the exchange hashes it.
    hashed: str


#: Text that percent-encoding leaves as it is (RFC 3986's unreserved characters): ids and
#: names are nearly always only that, and checking is cheaper than encoding.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encoded(text: str, safe: str) -> str:
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe=safe)


@functools.lru_cache(maxsize=64)
def _encoded_name(name: str) -> str:
    # Names are the few the endpoints define (``uuids[]`` on every cancel, which is not
    # unreserved text): each is encoded once.
    return _encoded(name, "[]")


def encode_query(params: Sequence[tuple[str, str]]) -> Query:
    """Encode ``(name, value)`` pairs, in order, for the wire and for ``query_hash``."""
    wire = "&".join(f"{_encoded_name(name)}={_encoded(value, '')}" for name, value in params)
    hashed = "&".join(f"{name}={value}" for name, value in params)
    return Query(wire=wire, hashed=hashed)


def make_token(access_key: str, secret_key: str, hashed_query: str | None) -> str:
    """A JWT for one attempt: a fresh ``nonce`` every call, and the hash of the query if any."""
    payload: dict[str, str] = {"access_key": access_key, "nonce": str(uuid.uuid4())}
    if hashed_query:
        payload["query_hash"] = hashlib.sha512(hashed_query.encode()).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    return jwt.encode(payload, secret_key, algorithm=_ALGORITHM)
