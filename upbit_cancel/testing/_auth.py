"""The fake exchange's keys: each key pair of the account, its pocket, its permissions, the nonces
it used, and Upbit's checks of a signed request (token, signature, nonce, query hash)."""

from __future__ import annotations

import hashlib
import hmac
import random
import string
import warnings
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

import attrs
import jwt

from ._wire import Call, Refused

_SYSTEM_RANDOM = random.SystemRandom()

__all__ = ["MAIN", "Credential", "Keys"]

_ACCEPTED_ALGORITHMS: Final = ("HS256", "HS512")
_KEY_ALPHABET: Final = string.ascii_letters + string.digits


#: The name of the account's main pocket.
MAIN: Final = "main"


@attrs.frozen
class Credential:
    """One key pair of the account, what it may do, and the pocket whose orders and budgets
    it acts on."""

    access_key: str
    secret_key: str = attrs.field(repr=False)
    can_order: bool
    can_query: bool = True
    pocket: str = MAIN


class Keys:
    """Every key pair of the account; checks each request's token as Upbit does."""

    __slots__ = ("_credentials", "_nonces", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._credentials: dict[str, Credential] = {}
        self._nonces: dict[str, set[str]] = {}

    def __contains__(self, access_key: object) -> bool:
        return access_key in self._credentials

    def add(
        self,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        can_order: bool = True,
        can_query: bool = True,
        pocket: str = MAIN,
    ) -> Credential:
        """A new key pair of the account's ``pocket`` (random 40-character keys where not
        given)."""
        access_key = access_key or self._random_key()
        if access_key in self._credentials:
            raise ValueError("this access key is already registered")
        secret_key = secret_key or self._random_key()
        credential = Credential(access_key, secret_key, can_order, can_query, pocket)
        self._credentials[access_key] = credential
        self._nonces[access_key] = set()
        return credential

    def pocket_of(self, access_key: str | None) -> str:
        """The pocket of this access key; the main pocket's for a key that is not registered
        (whose requests it then refuses)."""
        credential = self._credentials.get(access_key) if access_key is not None else None
        return MAIN if credential is None else credential.pocket

    def _random_key(self) -> str:
        # Never from the seed: every fake is an account of its own, so that budgets kept
        # outside the process (a host's, a Redis's) never carry over between fakes or runs.
        return "".join(_SYSTEM_RANDOM.choices(_KEY_ALPHABET, k=40))

    def authenticate(self, call: Call) -> Credential:
        """The key pair that signed ``call``, or a 401 (``Refused``) saying what is wrong.

        Marks the token's nonce used: a second request with it is refused ``nonce_used``.
        """
        if not call.authorization:
            raise Refused(401, "no_authorization_token", "Authorization header is missing.")
        scheme, _, token = call.authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise Refused(401, "jwt_verification", "Expected 'Authorization: Bearer <jwt>'.")
        header = call.token.header
        if header is None:
            raise Refused(401, "jwt_verification", "The token is malformed.")
        algorithm = header.get("alg")
        if algorithm not in _ACCEPTED_ALGORITHMS:
            raise Refused(401, "jwt_verification", "The token must be signed with HS256 or HS512.")
        if call.claimed_access_key is None:
            raise Refused(401, "jwt_verification", "The token carries no access_key.")
        credential = self._credentials.get(call.claimed_access_key)
        if credential is None:
            raise Refused(401, "invalid_access_key", "The access key is not registered.")
        try:
            with warnings.catch_warnings():
                # Upbit secrets are 40 bytes, shorter than the 64 PyJWT recommends for HS512.
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                payload = jwt.decode(token, credential.secret_key, algorithms=[algorithm])
        except jwt.PyJWTError:
            raise Refused(401, "jwt_verification", "The token signature is invalid.") from None
        nonce = payload.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise Refused(401, "jwt_verification", "The token carries no nonce.")
        used = self._nonces[credential.access_key]
        if nonce in used:
            raise Refused(401, "nonce_used", "This nonce was already used.")
        used.add(nonce)
        _check_query_hash(call, payload)
        return credential


def _check_query_hash(call: Call, payload: Mapping[str, Any]) -> None:
    # Upbit hashes the decoded query string as received, parameters in their order.
    expected = hashlib.sha512(unquote(call.raw_query).encode()).hexdigest()
    query_hash = payload.get("query_hash")
    if query_hash is None:
        if call.raw_query:
            raise Refused(
                401, "invalid_query_payload", "The token carries no query_hash for the query."
            )
        return
    if payload.get("query_hash_alg", "SHA512") != "SHA512":
        raise Refused(401, "invalid_query_payload", "query_hash_alg must be SHA512.")
    if not isinstance(query_hash, str) or not hmac.compare_digest(query_hash, expected):
        raise Refused(401, "invalid_query_payload", "query_hash does not match the query.")
