"""``messaging.mail.build`` writes MIME bytes itself: every message it makes must read back, with
the standard library's parser, exactly like the same message built by the ``email`` package.

And the fast unsubscribe token is itsdangerous's token, byte for byte.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import time
from email.message import EmailMessage

import pytest

from messaging import mail, preferences

SUBJECTS = [
    "1,200 of your points expire soon",
    "您的 1,200 积分即将过期",
    "A subject that is long enough to be folded by any header writer that keeps lines near 78",
    "混合 mixed 主题：积分 & <redemption> “quotes” — done",
    "x" * 120,  # one ASCII word longer than a line: never split
]
RECIPIENTS = ["alice@example.com", "张伟 <zhang.wei@example.com>", '"O\'Brien, Pat" <pat.o+tag@example.org>']
TEXT = "Hello 张伟,\n\n1,200 points expire on 2026年12月20日.\nA line with = signs and trailing space \n" \
       + "long " * 40 + "\n.\n..leading dots\n"
HTML = "<!doctype html><html><head><title>t</title></head><body><p>Hello 张伟 &amp; co,</p>" \
       + "<p>" + "long " * 60 + "</p>\n<p>=3D not an escape</p></body></html>\n"
COMPARED = ["From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Language", "Auto-Submitted",
            "X-Kinship-Kind", "List-Unsubscribe", "List-Unsubscribe-Post"]


def _library(to: str, subject: str, message_id: str, fixed, headers, sender: str) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg.set_content(TEXT, cte="quoted-printable")
    msg.add_alternative(HTML, subtype="html", cte="quoted-printable")
    for name, value in (*fixed, *headers.items()):  # after the content: set_content drops Content-*
        msg[name] = value
    return msg.as_bytes()


def _parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("to", RECIPIENTS)
@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_built_message_reads_back_like_the_email_packages(app, subject, to, locale):
    message_id = "<42.0123456789abcdef@kinship.local>"
    fixed = (("Content-Language", locale), ("Auto-Submitted", "auto-generated"), ("X-Kinship-Kind", "points.expiring"),
             ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers = {"List-Unsubscribe": "<http://127.0.0.1:5000/api/v1/unsubscribe/" + "t0k.en-_" * 12 + ">"}
    with app.app_context():
        app.config["MAIL_DEFAULT_SENDER"] = "Kinship 社区 <no-reply@kinship.local>"
        ours = mail.build(to=to, subject=subject, text=TEXT, html=HTML, message_id=message_id, headers=headers,
                          fixed=fixed)
        again = mail.build(to=to, subject=subject, text=TEXT, html=HTML, message_id=message_id, headers=headers,
                           fixed=fixed)  # the cached header lines give the same message
        reference = _library(to, subject, message_id, fixed, headers, app.config["MAIL_DEFAULT_SENDER"])
    assert ours.data.split(b"\r\nDate: ")[0] == again.data.split(b"\r\nDate: ")[0]

    got, want = _parse(ours.data), _parse(reference)
    for name in COMPARED:
        assert str(got[name]) == str(want[name]), name
    assert got.get_all("Subject") == want.get_all("Subject")  # one of each, nothing doubled
    assert not got.defects and not want.defects
    sent = email.utils.parsedate_to_datetime(got["Date"]).timestamp()
    assert abs(sent - time.time()) < 5
    assert ours.envelope_from == "no-reply@kinship.local" and ours.message_id == message_id
    assert email.utils.parseaddr(str(got["To"]))[1] == email.utils.parseaddr(to)[1]

    assert got.get_content_type() == want.get_content_type() == "multipart/alternative"
    got_parts, want_parts = list(got.iter_parts()), list(want.iter_parts())
    assert [p.get_content_type() for p in got_parts] == [p.get_content_type() for p in want_parts] \
        == ["text/plain", "text/html"]
    for ours_part, their_part in zip(got_parts, want_parts, strict=True):
        assert ours_part.get_content_charset() == their_part.get_content_charset() == "utf-8"
        assert ours_part["Content-Transfer-Encoding"] == their_part["Content-Transfer-Encoding"] \
            == "quoted-printable"
        assert ours_part.get_content() == their_part.get_content()
        assert not ours_part.defects
    # The wire format: ASCII only, CRLF line ends, no header line over 998 characters (the
    # subject folded to 78 unless it is one unbreakable word) and none over 76 in the
    # quoted-printable bodies.
    assert ours.data.isascii() and b"\n" not in ours.data.replace(b"\r\n", b"")
    head, body = ours.data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject: "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(b" "))
    if "x" * 120 not in subject:
        assert all(len(line) <= 78 for line in lines[start:end])
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))


def test_a_header_with_a_line_break_is_refused(app):
    with app.app_context(), pytest.raises(ValueError):
        mail.build(to="a@example.com", subject="Hi\r\nBcc: x@example.com", text="t", html="h",
                   message_id="<1@kinship.local>", headers={})


def test_the_fast_unsubscribe_token_is_itsdangerous_token(app):
    cases = [(1, "marketing", None), (123456789, "points_redemptions", 98765432), (7, "research", 2**40),
             (5, "community", 0)]
    with app.app_context():
        for member_id, category, delivery_id in cases:
            for _ in range(3):  # the two must fall in the same second (the timestamp is signed)
                ours = preferences.unsubscribe_token(member_id, category, delivery_id)
                theirs = preferences._serializer().dumps({"m": member_id, "c": category, "d": delivery_id})
                if ours == theirs:
                    break
            assert ours == theirs
            assert preferences.read_unsubscribe_token(ours) == {"m": member_id, "c": category, "d": delivery_id}
        # Keyed by the configured secret: another SECRET_KEY makes a token this app rejects.
        token = preferences.unsubscribe_token(1, "marketing")
        app.config["SECRET_KEY"] = app.config["SECRET_KEY"] + "-rotated"
        from errors import NotFound

        with pytest.raises(NotFound):
            preferences.read_unsubscribe_token(token)
        fresh = preferences.unsubscribe_token(1, "marketing")
        assert preferences.read_unsubscribe_token(fresh)["m"] == 1
