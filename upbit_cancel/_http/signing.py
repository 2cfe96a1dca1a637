"""Request signing: the query string as sent, its hash, and the JWT.

Upbit verifies ``query_hash`` = SHA-512 of the *decoded* query string, parameters in the order
sent, arrays repeated with literal brackets (``uuids[]=a&uuids[]=b``); its own sample computes
``unquote(urlencode(params, doseq=True))``. We percent-encode each value on the wire (so an
identifier holding ``&``, ``=``, ``:`` or a space survives the trip) and hash the same pairs
unencoded: the server decodes the wire text back to exactly the hashed text.

``urlencode`` turns a space into ``+``, which ``unquote`` leaves alone, so Upbit's recipe would hash
``a+b`` for the identifier ``a b``. Encoding with ``%20`` instead keeps the hashed text equal to the
decoded wire text for every value.

The token is a JWS in compact form signed with HS256, built here rather than by PyJWT: its header
never changes and its payload is four known fields, so a session writes the constant parts once
and each request only fills in its nonce and hash and signs. That is a third of PyJWT's cost,
which checks the key and serializes the header again on every call (the tests hold the two
byte for byte equal, for every key PyJWT takes: it refuses a secret that looks like a public
key, which this signs like any other and the exchange refuses).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Sequence
from urllib.parse import quote

import attrs

__all__ = ["Query", "Signer", "encode_query"]

#: Upbit accepts HS256 and HS512. HS256 is the cheaper, and its keys need 32 bytes at least
#: (RFC 7518): Upbit's secrets have 40.
_HEADER = '{"alg":"HS256","typ":"JWT"}'


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


def _segment(data: bytes) -> bytes:
    # base64url without padding (RFC 7515, section 2).
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class Signer:
    """Makes the JWT of each attempt for one key pair: a fresh ``nonce`` every call, and the
    hash of the query if any. Never shows the secret key."""

    __slots__ = ("_head", "_key", "_opening")

    def __init__(self, access_key: str, secret_key: str) -> None:
        # The parts that never change: the encoded header, and the payload's text up to the
        # nonce (the access key escaped as JSON, as PyJWT would).
        self._head = _segment(_HEADER.encode()) + b"."
        self._opening = '{"access_key":' + json.dumps(access_key) + ',"nonce":"'
        self._key = secret_key.encode()

    def token(self, hashed_query: str | None) -> str:
        """A JWT for one attempt."""
        if hashed_query:
            digest = hashlib.sha512(hashed_query.encode()).hexdigest()
            payload = (
                f'{self._opening}{uuid.uuid4()}","query_hash":"{digest}",'
                '"query_hash_alg":"SHA512"}'
            )
        else:
            payload = f'{self._opening}{uuid.uuid4()}"}}'
        signed = self._head + _segment(payload.encode())
        signature = hmac.new(self._key, signed, hashlib.sha256).digest()
        return (signed + b"." + _segment(signature)).decode()
