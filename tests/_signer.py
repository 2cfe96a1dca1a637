"""An independent Upbit request signer and a tiny HTTP helper for testing the fake exchange.

Written from Upbit's documented recipe, not from the client under test, so that a shared
misunderstanding cannot make both sides agree on a wrong signature:

- ``query_hash`` is the SHA-512 hex digest of ``unquote(urlencode(params, doseq=True))``;
- the JWT payload is ``access_key``, a fresh uuid4 ``nonce`` and, with a query, ``query_hash``
  and ``query_hash_alg: "SHA512"``; signed with HS256 or HS512 and the secret's UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import unquote, urlencode

import aiohttp
import attrs
import jwt
import yarl

from upbit_cancel.testing import FakeUpbit

__all__ = [
    "Algorithm",
    "Params",
    "Reply",
    "encode_query",
    "make_token",
    "query_hash",
    "send",
    "signed",
]

#: Query parameters in the order they are sent, arrays as repeated ``name[]`` pairs.
Params = Sequence[tuple[str, str]]
#: The signing algorithms Upbit accepts.
Algorithm = Literal["HS256", "HS512"]


def encode_query(params: Params) -> str:
    """The query string as sent on the wire (brackets percent-encoded)."""
    return urlencode(list(params), doseq=True)


def query_hash(params: Params) -> str:
    """Upbit's ``query_hash``: SHA-512 hex of the unquoted query string."""
    return hashlib.sha512(unquote(encode_query(params)).encode()).hexdigest()


def make_token(
    access_key: str,
    secret_key: str,
    params: Params = (),
    *,
    algorithm: Algorithm = "HS256",
    nonce: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT for a request with these query *params*."""
    payload: dict[str, Any] = {"access_key": access_key, "nonce": nonce or str(uuid.uuid4())}
    if params:
        payload["query_hash"] = query_hash(params)
        payload["query_hash_alg"] = "SHA512"
    payload.update(extra or {})
    with warnings.catch_warnings():
        # Upbit secrets are 40 bytes; PyJWT wants 64 for HS512 and warns otherwise.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret_key.encode(), algorithm=algorithm)


@attrs.frozen
class Reply:
    """What came back: status, headers and the body (parsed JSON, else text)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str

    @property
    def error_name(self) -> str | None:
        """The ``error.name`` of a JSON error body, if any."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            name = self.body["error"].get("name")
            return name if isinstance(name, str) else None
        return None


async def send(
    session: aiohttp.ClientSession,
    base_url: str,
    method: str,
    path: str,
    params: Params = (),
    *,
    token: str | None = None,
    data: bytes | None = None,
    raw_query: str | None = None,
    client_timeout: float | None = None,
) -> Reply:
    """Send one request, the query exactly as encoded here, and read the whole reply."""
    query = encode_query(params) if raw_query is None else raw_query
    url = yarl.URL(f"{base_url}{path}" + (f"?{query}" if query else ""), encoded=True)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    timeout = aiohttp.ClientTimeout(total=client_timeout) if client_timeout else session.timeout
    async with session.request(
        method, url, headers=headers, data=data, timeout=timeout
    ) as response:
        text = await response.text()
        body: Any = text
        if response.content_type == "application/json":
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        return Reply(response.status, dict(response.headers), body, text)


async def signed(
    session: aiohttp.ClientSession,
    fake: FakeUpbit,
    method: str,
    path: str,
    params: Params = (),
    *,
    algorithm: Algorithm = "HS256",
    access_key: str | None = None,
    secret_key: str | None = None,
    data: bytes | None = None,
    client_timeout: float | None = None,
) -> Reply:
    """Send a request to *fake* signed with its own credentials (or the ones given)."""
    token = make_token(
        access_key or fake.access_key, secret_key or fake.secret_key, params, algorithm=algorithm
    )
    return await send(
        session,
        fake.base_url,
        method,
        path,
        params,
        token=token,
        data=data,
        client_timeout=client_timeout,
    )
