"""Fixtures for the journeys tests: templates, a journey factory, and the messaging SMTP sink."""

from __future__ import annotations

import itertools

import pytest

from tests.messaging.conftest import deliveries, mail_app, smtp  # noqa: F401 - re-exported fixtures

_names = itertools.count()


@pytest.fixture
def template(app):
    """``template(key, category="community")`` -> a committed JourneyTemplate."""
    from extensions import db
    from journeys import services

    def make(key: str = "hello", category: str = "community"):
        tpl = services.create_template(None, {"key": key, "category": category,
                                              "subject": {"en": f"Subject {key}", "zh-CN": f"主题 {key}"},
                                              "body": {"en": f"Body {key}", "zh-CN": f"正文 {key}"}})
        db.session.commit()
        return tpl

    return make


@pytest.fixture
def journey(app):
    """``journey(steps, trigger=..., status="active", author=None, **fields)`` -> a committed Journey."""
    from extensions import db
    from journeys import services

    def make(steps, *, trigger=None, audience=None, entry=None, goal=None, status="active", author=None,
             activator=None, holdout_share=0.0):
        data = {"name": f"journey {next(_names)}", "holdout_share": holdout_share, "definition": {
            "trigger": trigger or {"type": "event", "event": "purchase.recorded"},
            "audience": audience or {"type": "everyone"}, "entry": entry or {"rule": "per_occurrence"},
            "goal": goal, "steps": steps}}
        j = services.create(author.id if author else None, data)
        db.session.commit()
        if status == "active":
            services.set_status(activator.id if activator else None, j.id, "activate")
            db.session.commit()
        return j

    return make


def executions(journey_id: int) -> list:
    from sqlalchemy import select

    from extensions import db
    from journeys.models import StepExecution

    db.session.rollback()
    return list(db.session.scalars(select(StepExecution).where(StepExecution.journey_id == journey_id)
                                   .order_by(StepExecution.id)))


def enrolments(journey_id: int) -> list:
    from sqlalchemy import select

    from extensions import db
    from journeys.models import Enrolment

    db.session.rollback()
    return list(db.session.scalars(select(Enrolment).where(Enrolment.journey_id == journey_id).order_by(Enrolment.id)))
