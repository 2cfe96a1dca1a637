"""HostLimiter: one budget for every process of the host, kept in a SQLite file."""

from __future__ import annotations

import random
from pathlib import Path

from ..core import HoldRule, Settings
from ..shared.limiter import SharedLimiter, account_hash
from .store import SqliteStore, state_dir

__all__ = ["HostLimiter"]


class HostLimiter(SharedLimiter):
    """One budget for every process of this host: at most ``limit`` requests reach the exchange
    in any window, whatever process of the host sends them. It is what ``UpbitSession`` uses
    when given no ``limiter=``, so that a bot and the command line on one machine, or two runs of
    the command line, share one budget with no set-up.

    The budget lives in a SQLite file in ``$UPBIT_CANCEL_STATE_DIR``, else in the user's cache
    directory (``~/.cache/upbit_cancel`` on Linux), keyed by a hash of the access key (or of
    ``account=``), never the key itself. A process killed holding leases costs the others their
    slots for a few seconds (until the leases lapse), never a stuck budget. Holds follow the rule
    of :class:`SlidingWindowLimiter`; a process subtracts its own path's floor from its own holds
    only.

    Example::

        limiter = HostLimiter()  # what a session uses by default
        async with UpbitSession(access_key, secret_key, region="sg", limiter=limiter) as session:
            ...

    Args:
        account: A name for the account's budget, shared by every process of the host that
            gives it (for several keys of one account).
        limit, window, margin, max_transit, hold: As for :class:`SlidingWindowLimiter`.
        state_dir: The directory of the file (default: as above).
        group: The rate-limit group whose budget this is (``"default"``).
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        account: str | None = None,
        limit: int = 30,
        window: float = 1.0,
        margin: float = 0.01,
        max_transit: float = 2.0,
        hold: HoldRule = "arrival",
        state_dir: str | Path | None = None,
        group: str = "default",
        rng: random.Random | None = None,
    ) -> None:
        if account is not None and (not isinstance(account, str) or not account):
            raise TypeError("account must be a non-empty string naming the account's budget")
        if state_dir is not None and not isinstance(state_dir, str | Path):
            raise TypeError(f"state_dir must be a path, not {type(state_dir).__name__}")
        settings = Settings.checked(
            limit, window, margin=margin, max_transit=max_transit, hold=hold
        )
        directory = _default_dir() if state_dir is None else Path(state_dir).expanduser()
        super().__init__(
            SqliteStore(directory),
            account=None if account is None else account_hash(account),
            settings=settings,
            fallback_limit=0,
            heartbeat=False,
            group=group,
            rng=rng,
        )

    @property
    def path(self) -> str:
        """The file the budget lives in."""
        return self._store.label


def _default_dir() -> Path:
    return state_dir()
