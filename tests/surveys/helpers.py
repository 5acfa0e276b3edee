"""Builders shared by the surveys tests and the authorization cases."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

from community.models import utcnow
from extensions import db

LOW_SCORES = [0, 1, 2, 3, 4, 5, 6]

DEFINITION = {
    "pages": [
        {
            "title": "About us",
            "questions": [
                {"id": "nps", "type": "nps", "text": "How likely are you to recommend us?", "required": True},
                {"id": "why_low", "type": "long_text", "text": "What went wrong?", "required": True,
                 "show_if": {"question": "nps", "in": LOW_SCORES}},
                {"id": "channel", "type": "single_choice", "text": "Where do you shop?", "required": True,
                 "options": ["shop", "web", "phone"]},
                {"id": "features", "type": "multiple_choice", "text": "What do you use?",
                 "options": ["points", "forums", "rewards"], "max_choices": 2},
            ],
        },
        {
            "title": "Details",
            "questions": [
                {"id": "rating", "type": "rating", "text": "Rate our service", "required": True},
                {"id": "grid", "type": "matrix", "text": "Do you agree?", "required": True,
                 "rows": ["fast", "friendly"], "scale": ["disagree", "neutral", "agree"]},
                {"id": "nick", "type": "short_text", "text": "A nickname", "max_length": 10},
            ],
        },
    ]
}

GOOD_ANSWERS = {
    "nps": 9, "channel": "web", "features": ["points", "forums"], "rating": 4,
    "grid": {"fast": "agree", "friendly": "neutral"}, "nick": "Al",
}


def definition() -> dict:
    return copy.deepcopy(DEFINITION)


def answers(**changes) -> dict:
    out = copy.deepcopy(GOOD_ANSWERS)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def client_id() -> str:
    return uuid.uuid4().hex


def make_survey(actor_id: int | None = None, *, publish: bool = True, **fields):
    """A survey with ``DEFINITION`` (published unless ``publish=False``), committed."""
    from surveys import services

    data = {"title": "Customer satisfaction", "definition": definition()} | fields
    survey = services.create_survey(actor_id, data)
    if publish:
        services.publish_survey(actor_id, survey.id)
    db.session.commit()
    return survey


def make_session(actor_id: int | None = None, **fields):
    """A focus-group session starting in two days, committed."""
    from surveys import focus_groups

    start = utcnow() + timedelta(days=2)
    data = {
        "title": "Loyalty app feedback", "description": "Tell us, honestly; we listen.",
        "starts_at": start, "ends_at": start + timedelta(hours=2), "location": "HQ, room 3",
    } | fields
    session = focus_groups.create_session(actor_id, data)
    db.session.commit()
    return session


def error(resp, status):
    """The error envelope of a response with ``status``: {"code", "message", "fields"}."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()["error"]
    assert set(body) == {"code", "message", "fields"}
    return body
