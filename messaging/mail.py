"""The email channel: Flask-Mailman over SMTP, or ``.eml`` files with nothing configured.

``build(...)`` serialises one message (``multipart/alternative``: text then HTML, both UTF-8
quoted-printable, RFC 2047 headers) straight to the bytes SMTP carries, as a
``PreparedMessage``.  It does not go through ``email.message`` (whose generator, header folding
and address parsing cost more than rendering the templates): the parts that never change per
(sender, kind, locale) are made once and cached, only the recipient's parts are written per
message, and the result is checked like the library would (no CR/LF in any header, addresses
the library's ``sanitize_address`` accepts).  Flask-Mailman still owns the SMTP connection
(server, TLS/SSL, login, timeout from the configuration).

``send(message, connection)`` sends one message on an open connection and raises
``TemporaryFailure`` (retry later: 4xx replies, refused or dropped connections, timeouts) or
``PermanentFailure`` (5xx replies: the address or the message is refused for good).
"""

from __future__ import annotations

import binascii
import functools
import logging
import os
import re
import secrets
import smtplib
import time
from email.utils import formatdate, parseaddr
from pathlib import Path

from flask import Flask, current_app
from flask_mailman import Mail
from flask_mailman.backends.base import BaseEmailBackend
from flask_mailman.message import sanitize_address

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
            if isinstance(message, PreparedMessage):
                message_id, data = message.message_id, message.data
            else:
                mime = message.message()
                message_id, data = mime["Message-ID"], mime.as_bytes()
            name = _SAFE_NAME.sub("_", (message_id or f"msg-{os.getpid()}-{id(message)}").strip("<>"))
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(data)
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


class PreparedMessage:
    """One email as the bytes SMTP sends (CRLF line ends), with its envelope."""

    __slots__ = ("envelope_from", "to", "message_id", "data")

    def __init__(self, envelope_from: str, to: str, message_id: str, data: bytes):
        self.envelope_from, self.to, self.message_id, self.data = envelope_from, to, message_id, data

    def recipients(self) -> list[str]:
        return [self.to]


# A plain ASCII address needs nothing done to it; anything else goes through the library.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\Z")
# "=_" never occurs in quoted-printable text, so the boundary cannot occur in a part.
_BOUNDARY = f"=_kinship_{secrets.token_hex(12)}"
_WORD_BYTES = 45  # raw bytes per RFC 2047 encoded word: 60 base64 characters, 75 with the markers


def _address(value: str) -> str:
    if _PLAIN_ADDRESS.match(value):
        return value
    return sanitize_address(value, "utf-8")  # IDN domains, display names; raises on CR/LF


def _encoded_words(value: str, used: int = 0) -> str:
    """RFC 2047 ``B`` encoded words of at most 75 characters, folded, split between characters;
    ``used``: characters before the first word on its line (the header's name), so that no line
    holding an encoded word is longer than 76."""
    words, chunk, size = [], [], 0
    limit = min(_WORD_BYTES, (76 - used - 12) // 4 * 3)  # 12: "=?utf-8?b?" and "?="
    for char in value:
        n = len(char.encode())
        if chunk and size + n > limit:
            limit = _WORD_BYTES
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    words.append("".join(chunk))
    return "\r\n ".join(f"=?utf-8?b?{binascii.b2a_base64(w.encode(), newline=False).decode()}?=" for w in words)


def _fold(value: str, used: int) -> str:
    """Fold an ASCII value at spaces to keep lines near 78 characters (a word is never split)."""
    if used + len(value) <= 78 or " " not in value:
        return value
    lines, line = [], ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > 78:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break")
    if value.isascii():
        return f"{name}: {_fold(value, len(name) + 2)}\r\n"
    return f"{name}: {_encoded_words(value, len(name) + 2)}\r\n"


@functools.lru_cache(maxsize=4096)
def _subject_line(subject: str) -> str:
    """The Subject header line (RFC 2047 words for non-ASCII): a fan-out repeats the same few."""
    return _header("Subject", subject)


_date: tuple[int, str] = (0, "")  # (second, the Date header line of that second), replaced whole


def _date_line() -> str:
    global _date
    now = int(time.time())
    second, line = _date
    if second != now:
        line = f"Date: {formatdate(now, usegmt=True)}\r\n"
        _date = (now, line)
    return line


def _quoted_printable(text: str) -> bytes:
    raw = text.replace("\r\n", "\n").encode()
    return binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


@functools.lru_cache(maxsize=16)
def _sender(configured: str) -> tuple[str, str]:
    """(From header line, envelope address) for the configured sender, worked out once."""
    header = sanitize_address(configured, "utf-8")
    return _header("From", header), parseaddr(header)[1]


@functools.lru_cache(maxsize=512)
def _fixed_headers(extra: tuple[tuple[str, str], ...]) -> str:
    """The headers that are the same for every message of one kind and locale."""
    return (
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{_BOUNDARY}"\r\n'
        + "".join(_header(name, value) for name, value in extra)
    )


_TEXT_PART = (f'\r\n--{_BOUNDARY}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode()
_HTML_PART = (f'\r\n--{_BOUNDARY}\r\nContent-Type: text/html; charset="utf-8"\r\n'
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode()
_END = f"\r\n--{_BOUNDARY}--\r\n".encode()


def build(*, to: str, subject: str, text: str, html: str, message_id: str, headers: dict[str, str],
          fixed: tuple[tuple[str, str], ...] = ()) -> PreparedMessage:
    """Serialise one message.  ``fixed``: headers shared by many messages (cached as one block);
    ``headers``: this recipient's own.  Raises ``ValueError`` for a bad address or header."""
    from_line, envelope_from = _sender(current_app.config["MAIL_DEFAULT_SENDER"])
    to = _address(to)
    head = (
        from_line + _header("To", to) + _subject_line(subject) + _date_line()
        + _header("Message-ID", message_id) + _fixed_headers(fixed)
        + "".join(_header(name, value) for name, value in headers.items())
    )
    data = b"".join((head.encode("ascii"), _TEXT_PART, _quoted_printable(text), _HTML_PART,
                     _quoted_printable(html), _END))
    return PreparedMessage(envelope_from, to, message_id, data)


def _is_temporary(code: int | None) -> bool:
    return code is None or 400 <= code < 500


def _reset_or_close(smtp: smtplib.SMTP, code: int) -> None:
    if code == 421:
        smtp.close()
    else:
        smtp._rset()


def _sendmail(smtp: smtplib.SMTP, from_addr: str, to_addrs: list[str], data: bytes, mail_options,
              before_accept) -> None:
    """``smtplib.SMTP.sendmail`` (the same commands, replies and exceptions), with
    ``before_accept()`` called between the server's ``354`` to DATA and the message's content:
    the envelope of this message travels while the caller still waits for something (the
    commit of the previous message's outcome), but nothing is accepted before it returns."""
    smtp.ehlo_or_helo_if_needed()
    options = []
    if smtp.does_esmtp:
        if smtp.has_extn("size"):
            options.append(f"size={len(data)}")
        options.extend(mail_options)
    code, resp = smtp.mail(from_addr, options)
    if code != 250:
        _reset_or_close(smtp, code)
        raise smtplib.SMTPSenderRefused(code, resp, from_addr)
    refused = {}
    for each in to_addrs:
        code, resp = smtp.rcpt(each, [])
        if code not in (250, 251):
            refused[each] = (code, resp)
        if code == 421:
            smtp.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(to_addrs):
        smtp._rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    smtp.putcmd("data")
    code, resp = smtp.getreply()
    if code != 354:
        _reset_or_close(smtp, code)
        raise smtplib.SMTPDataError(code, resp)
    before_accept()
    content = smtplib._quote_periods(data)
    if content[-2:] != smtplib.bCRLF:
        content += smtplib.bCRLF
    smtp.send(content + b"." + smtplib.bCRLF)
    code, resp = smtp.getreply()
    if code != 250:
        _reset_or_close(smtp, code)
        raise smtplib.SMTPDataError(code, resp)


def send(message, conn, before_accept=None) -> None:
    """Send ``message`` on ``conn`` (opened on first use); classify any failure.

    ``before_accept``: called once the server is ready for the content (after the envelope and
    its ``354``), before the server can accept the message; on a connection that is not SMTP,
    before anything is sent."""
    try:
        conn.open()  # a no-op once open: every message of a batch shares the connection
        smtp = getattr(conn, "connection", None)
        if isinstance(smtp, smtplib.SMTP):  # the SMTP backend: hand it the bytes as they are
            if before_accept is None:
                smtp.sendmail(message.envelope_from, message.recipients(), message.data,
                              mail_options=conn.mailman.mail_options)
            else:
                _sendmail(smtp, message.envelope_from, message.recipients(), message.data,
                          conn.mailman.mail_options, before_accept)
        else:
            if before_accept is not None:
                before_accept()
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
