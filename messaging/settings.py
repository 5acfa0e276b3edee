"""Messaging settings, read from the environment once (like ``config.py``) and applied to an
app with ``setdefault``, so a config class (tests) can override any of them.

With no ``MAIL_SERVER`` the mail channel is the *embedded default*: every message is written
as one ``.eml`` file under ``<instance>/mail/`` instead of being sent.
"""

from __future__ import annotations

from config import ConfigError, env_bool, env_int, env_str


def _int_list(name: str, default: str) -> tuple[int, ...]:
    raw = env_str(name, default) or default
    try:
        return tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated integers, got {raw!r}") from exc


def _quiet_hours(name: str, default: str) -> tuple[int, int] | None:
    raw = (env_str(name, default) or "").strip()
    if raw in ("", "off", "none"):
        return None
    try:
        start, end = (int(part) for part in raw.split("-"))
    except ValueError as exc:
        raise ConfigError(f"{name} must look like 22-8 (local hours) or off, got {raw!r}") from exc
    if not (0 <= start < 24 and 0 <= end < 24) or start == end:
        raise ConfigError(f"{name} hours must be 0..23 and differ, got {raw!r}")
    return start, end


def defaults() -> dict:
    server = env_str("MAIL_SERVER")
    return {
        # Flask-Mailman's own keys.
        "MAIL_SERVER": server,
        "MAIL_PORT": env_int("MAIL_PORT", 25),
        "MAIL_USE_TLS": env_bool("MAIL_USE_TLS", False),
        "MAIL_USE_SSL": env_bool("MAIL_USE_SSL", False),
        "MAIL_USERNAME": env_str("MAIL_USERNAME"),
        "MAIL_PASSWORD": env_str("MAIL_PASSWORD"),
        "MAIL_TIMEOUT": env_int("MAIL_TIMEOUT", 30),
        "MAIL_DEFAULT_SENDER": env_str("MAIL_DEFAULT_SENDER", "Kinship <no-reply@kinship.local>"),
        # None: decided in init_app (smtp with a server, else the .eml file backend).
        "MAIL_BACKEND": env_str("MAIL_BACKEND"),
        # Links in emails (unsubscribe, verification, reset) start with this.
        "MESSAGING_BASE_URL": env_str("MESSAGING_BASE_URL", "http://127.0.0.1:5000"),
        "MESSAGING_MESSAGE_ID_DOMAIN": env_str("MESSAGING_MESSAGE_ID_DOMAIN", "kinship.local"),
        "MESSAGING_DEFAULT_LOCALE": env_str("MESSAGING_DEFAULT_LOCALE", "en"),
        # Seconds to wait after the 1st, 2nd, ... temporary failure; failed after the last.
        "MESSAGING_RETRY_BACKOFF": _int_list("MESSAGING_RETRY_BACKOFF", "60,300,1800,7200,21600,43200"),
        # A delivery claimed longer ago than this by a worker that never finished is retried.
        "MESSAGING_SEND_LEASE_SECONDS": env_int("MESSAGING_SEND_LEASE_SECONDS", 600),
        "MESSAGING_WEEKLY_CAP": env_int("MESSAGING_WEEKLY_CAP", 3),
        # Local hours (member's time zone) in which non-urgent mail waits: "22-8" or "off".
        "MESSAGING_QUIET_HOURS": _quiet_hours("MESSAGING_QUIET_HOURS", "22-8"),
        "MESSAGING_UNSUBSCRIBE_MAX_AGE_DAYS": env_int("MESSAGING_UNSUBSCRIBE_MAX_AGE_DAYS", 90),
        "MESSAGING_VERIFY_TOKEN_HOURS": env_int("MESSAGING_VERIFY_TOKEN_HOURS", 48),
        "MESSAGING_RESET_TOKEN_MINUTES": env_int("MESSAGING_RESET_TOKEN_MINUTES", 30),
        # Password-reset requests: per address and per client IP, (count, window seconds).
        "PASSWORD_RESET_RATE_LIMIT": (env_int("PASSWORD_RESET_RATE_LIMIT", 5), 3600),
        # The sweeper gives notifications written without a delivery (bulk inserts) one, if
        # they are younger than this.
        "MESSAGING_BACKFILL_HOURS": env_int("MESSAGING_BACKFILL_HOURS", 48),
        "MESSAGING_BATCH_SIZE": env_int("MESSAGING_BATCH_SIZE", 200),
        # SMTP connections (sender threads) one batch job uses in parallel.
        "MESSAGING_SMTP_CONNECTIONS": env_int("MESSAGING_SMTP_CONNECTIONS", 4),
    }
