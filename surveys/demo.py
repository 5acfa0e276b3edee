"""Demo data: one published NPS / satisfaction survey and one upcoming focus-group session."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from community.models import utcnow
from extensions import db

from . import focus_groups, services
from .models import FocusGroupSession, Survey

SURVEY_TITLE = "How are we doing? (demo)"
SESSION_TITLE = "Shape the new rewards catalogue (demo)"
SURVEY_DESCRIPTION = "Two minutes, six questions; completing it earns points."

DEFINITION = {
    "pages": [
        {
            "title": "Recommendation",
            "questions": [
                {"id": "nps", "type": "nps", "text": "How likely are you to recommend us to a friend?",
                 "required": True},
                {"id": "improve", "type": "long_text", "text": "What should we do better?", "required": True,
                 "show_if": {"question": "nps", "in": [0, 1, 2, 3, 4, 5, 6]}},
                {"id": "love", "type": "short_text", "text": "What do you like most?",
                 "show_if": {"question": "nps", "in": [9, 10]}},
            ],
        },
        {
            "title": "Satisfaction",
            "questions": [
                {"id": "service", "type": "rating", "text": "How satisfied are you with our service?",
                 "required": True},
                {"id": "channels", "type": "multiple_choice", "text": "Where do you shop with us?",
                 "options": ["Store", "Website", "App", "Phone"]},
                {"id": "statements", "type": "matrix", "text": "How much do you agree?",
                 "rows": ["Staff are helpful", "Rewards are worth it", "The forums are useful"],
                 "scale": ["Disagree", "Neutral", "Agree"]},
            ],
        },
    ]
}


def load(ctx: dict) -> None:
    marketing = ctx["members"]["marketing"]
    if db.session.scalar(select(Survey.id).where(Survey.title == SURVEY_TITLE)) is None:
        survey = services.create_survey(marketing.id, {
            "title": SURVEY_TITLE,
            "description": SURVEY_DESCRIPTION,
            "definition": DEFINITION,
        })
        services.publish_survey(marketing.id, survey.id)
    upcoming = db.session.scalar(
        select(FocusGroupSession.id).where(FocusGroupSession.title == SESSION_TITLE,
                                           FocusGroupSession.starts_at > utcnow())
    )
    if upcoming is None:
        start = (utcnow() + timedelta(days=7)).replace(hour=17, minute=0, second=0, microsecond=0)
        focus_groups.create_session(marketing.id, {
            "title": SESSION_TITLE,
            "description": "Help us choose next season's rewards. Coffee and a small gift for everyone.",
            "starts_at": start,
            "ends_at": start + timedelta(hours=1, minutes=30),
            "location": "Community room, 2nd floor",
            "online_url": "https://meet.example.com/kinship-rewards",
            "capacity": 12,
            "signup_deadline": start - timedelta(days=1),
            "cancellation_cutoff": start - timedelta(hours=12),
        })
    db.session.flush()
