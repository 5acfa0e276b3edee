"""Fixtures for the messaging tests: a real SMTP server (aiosmtpd) on loopback, wired to the app.

``smtp`` is an ``SmtpSink``: an aiosmtpd ``Controller`` on 127.0.0.1 recording every message
it accepted (parsed with the standard library), which a test can make answer 4xx or 5xx for
chosen recipients, and stop and start again on the same port (the fault tests).
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import unused_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    # recipient -> list of replies to give, one per attempt ("451 ...", "550 ..."); then accept.
    replies: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        for rcpt in envelope.rcpt_tos:
            with self.lock:
                queued = self.replies.get(rcpt)
                if queued:
                    return queued.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self):
        self.port = unused_port()
        self.handler = _Handler()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    def reply(self, address: str, *codes: str) -> None:
        self.handler.replies[address] = list(codes)


@pytest.fixture
def smtp():
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def mail_app(app, smtp):
    """The test's app, sending through ``smtp``; quiet hours off unless a test turns them on."""
    from messaging.mail import mail

    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp.port, MAIL_BACKEND="smtp", MAIL_TIMEOUT=10,
                      MESSAGING_QUIET_HOURS=None, MESSAGING_RETRY_BACKOFF=(60, 120, 180))
    mail.init_app(app)
    return app


@pytest.fixture
def notify(app):
    """``notify(member, kind, payload)`` -> the committed Notification (through community.notify)."""
    from sqlalchemy import select

    from community import services
    from community.models import Notification
    from extensions import db

    def make(member, kind: str, payload: dict | None = None):
        services.notify(member.id, kind, payload or {})
        db.session.commit()
        return db.session.scalars(
            select(Notification).where(Notification.member_id == member.id).order_by(Notification.id.desc())
        ).first()

    return make


@pytest.fixture
def deliveries(app):
    """``deliveries()`` -> every EmailDelivery, freshly read, by id."""
    from sqlalchemy import select

    from extensions import db
    from messaging.models import EmailDelivery

    def read():
        db.session.rollback()
        return list(db.session.scalars(select(EmailDelivery).order_by(EmailDelivery.id)))

    return read


def set_prefs(member, **fields) -> None:
    from extensions import db
    from messaging import preferences

    prefs = preferences.member_preferences(member.id)
    for key, value in fields.items():
        setattr(prefs, key, value)
    db.session.commit()
