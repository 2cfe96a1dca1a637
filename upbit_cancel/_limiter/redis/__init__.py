"""The account's budget kept in Redis, for every process and host of the account."""

from .limiter import RedisLimiter

__all__ = ["RedisLimiter"]
