"""The email channel: Flask-Mailman over SMTP, or ``.eml`` files with nothing configured.

``send(message, connection)`` sends one message on an open connection and raises
``TemporaryFailure`` (retry later: 4xx replies, refused or dropped connections, timeouts) or
``PermanentFailure`` (5xx replies: the address or the message is refused for good).
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
from pathlib import Path

from flask import Flask, current_app
from flask_mailman import EmailMultiAlternatives, Mail
from flask_mailman.backends.base import BaseEmailBackend

log = logging.getLogger(__name__)

mail = Mail()

FILE_BACKEND = "messaging.mail.EmlEmailBackend"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class EmlEmailBackend(BaseEmailBackend):
    """The embedded default: one ``.eml`` file per message in ``MAIL_FILE_PATH``."""

    def send_messages(self, email_messages):
        folder = Path(current_app.config["MAIL_FILE_PATH"])
        folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            mime = message.message()
            name = _SAFE_NAME.sub("_", (mime["Message-ID"] or f"msg-{os.getpid()}-{id(message)}").strip("<>"))
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(mime.as_bytes())
            os.replace(tmp, folder / f"{name}.eml")
            sent += 1
        return sent


def init_mail(app: Flask) -> None:
    if not app.config.get("MAIL_BACKEND"):
        app.config["MAIL_BACKEND"] = "smtp" if app.config.get("MAIL_SERVER") else FILE_BACKEND
    app.config.setdefault("MAIL_FILE_PATH", os.path.join(app.instance_path, "mail"))
    mail.init_app(app)


def describe(app: Flask) -> str:
    """Where mail goes, for the log: ``make run`` prints it."""
    if app.config["MAIL_BACKEND"] == FILE_BACKEND:
        return f"written as .eml files to {app.config['MAIL_FILE_PATH']} (no MAIL_SERVER set)"
    if app.config["MAIL_BACKEND"] == "smtp":
        tls = " with STARTTLS" if app.config.get("MAIL_USE_TLS") else ""
        tls = " over TLS" if app.config.get("MAIL_USE_SSL") else tls
        return f"SMTP {app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}{tls}"
    return f"backend {app.config['MAIL_BACKEND']}"


def connection():
    return mail.get_connection(fail_silently=False)


def build(*, to: str, subject: str, text: str, html: str, message_id: str, headers: dict[str, str]):
    msg = EmailMultiAlternatives(
        subject=subject, body=text, from_email=current_app.config["MAIL_DEFAULT_SENDER"], to=[to],
        headers={"Message-ID": message_id, **headers},
    )
    msg.attach_alternative(html, "text/html")
    return msg


def _is_temporary(code: int | None) -> bool:
    return code is None or 400 <= code < 500


def send(message, conn) -> None:
    """Send ``message`` on ``conn`` (opened on first use); classify any failure."""
    try:
        conn.open()  # a no-op once open: every message of a batch shares the connection
        conn.send_messages([message])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        close_quietly(conn)
        if codes and not any(_is_temporary(c) for c in codes):
            raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
        raise TemporaryFailure(f"recipient deferred: {exc.recipients}") from exc
    except smtplib.SMTPAuthenticationError as exc:  # our configuration, not the message: retry
        close_quietly(conn)
        raise TemporaryFailure(f"SMTP authentication failed: {exc.smtp_code}") from exc
    except smtplib.SMTPResponseException as exc:
        close_quietly(conn)
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        if _is_temporary(exc.smtp_code):
            raise TemporaryFailure(f"{exc.smtp_code} {text}") from exc
        raise PermanentFailure(f"{exc.smtp_code} {text}") from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        close_quietly(conn)
        raise TemporaryFailure(f"{exc.__class__.__name__}: {exc}") from exc


def close_quietly(conn) -> None:
    try:
        conn.close()
    except Exception:  # the connection is being dropped anyway
        if hasattr(conn, "connection"):
            conn.connection = None
