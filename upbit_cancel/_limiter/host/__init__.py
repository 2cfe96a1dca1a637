"""The account's budget kept in a file of the host, for every process of the host."""

from .limiter import HostLimiter

__all__ = ["HostLimiter"]
