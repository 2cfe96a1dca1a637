"""What a shared budget asks of the place its state lives: one transaction at a time.

A store holds one text per budget key and a clock every process of the budget reads. Its one
operation, :meth:`Store.transact`, reads the text and the clock, lets a function compute the new
text, and writes it only if nobody wrote in between (or holds a lock meanwhile); the function may
run more than once, and may ask for nothing to be written. The rules (``rules``) and the
limiter (``limiter``) never see how.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Generic, Literal, Protocol, TypeVar

import attrs

__all__ = [
    "Change",
    "Keep",
    "Store",
    "StoreRefusedError",
    "StoreUnavailableError",
    "Transacted",
]

R = TypeVar("R")


class Keep(enum.Enum):
    """What a change gives instead of a text to write nothing, leaving the key as it is (and
    every other process's transaction under way as it is)."""

    KEEP = "keep"


#: Computes, from the text a store holds for a key (``None``: none) and the store's clock, the
#: text to write (``None``: delete it; ``Keep.KEEP``: write nothing) and a result.
Change = Callable[[str | None, float], tuple[str | Keep | None, R]]


class StoreUnavailableError(Exception):
    """The store cannot be reached or did not answer in time: it may work again soon.

    A write whose answer was lost may still have been applied, renewing the process's
    membership: ``read_at`` is then when the reading it was computed from came back (the
    process's clock), so that the process counts its membership from there.
    """

    read_at: float | None = None


class StoreRefusedError(Exception):
    """The store refuses this process (a file it cannot write, a wrong password, a missing
    permission): trying again will not help. The message says what to check."""


@attrs.frozen
class Transacted(Generic[R]):
    """A transaction's result, with when it was sent and when the store's clock was read
    (the caller's clock)."""

    result: R
    #: When the transaction was sent (the store read its clock no earlier).
    sent_at: float
    #: When the store's clock reading came back (it was read no later).
    read_at: float


class Store(Protocol):
    """A place several processes keep budgets in."""

    @property
    def kind(self) -> Literal["host", "redis"]:
        """Which kind of store it is, for the instruments."""
        ...

    #: How messages name it (``redis://host:6379/0``, a file's path).
    label: str
    #: How long a budget just made, by nobody who knew an earlier one, grants nothing.
    fresh_pause: float

    def key(self, account: str, group: str) -> str:
        """The key of an account's budget for one rate-limit group."""
        ...

    async def open(self) -> None:
        """Open now what a first transaction would (the file, the connection, what the store
        runs), so that it costs no more than the next; raises as :meth:`transact` does."""
        ...

    async def transact(self, key: str, change: Change[R]) -> Transacted[R]:
        """Apply ``change`` to ``key`` atomically; raises :class:`StoreUnavailableError` or
        :class:`StoreRefusedError`."""
        ...

    async def claim(self, name: str, owner: str, seconds: float) -> str | None:
        """Mark ``name`` (an access key's hash and a group) as kept under ``owner`` (a budget's
        key) for ``seconds``; the other owner if another holds it. The same name in any budget
        of the store, whatever its prefix or account name."""
        ...

    async def aclose(self) -> None:
        """Let go of connections and files."""
        ...
