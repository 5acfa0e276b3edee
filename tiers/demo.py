"""Demo tiers for ``make run``: the default rules installed, and demo members placed on the ladder
by real history rather than by pins: alice is an advocate, bob loyal, carol engaged, dave still
aware.

Every metric is backed by what the member's own views show: surveys are answered through the
surveys services (``GET /surveys`` lists them as complete), alice attended a focus-group session
(``GET /focus-groups/{id}/signup``) and referred erin, who bought something
(``GET /me/referrals``).  Purchases, visits and posts are recorded through the points services
and show in the member's points history.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from community.models import User, utcnow
from extensions import db
from points.services import record_interaction

from . import services

PULSE_TITLE = "Quick pulse {n} (demo)"
PULSE = {"pages": [{"title": "", "questions": [
    {"id": "nps", "type": "nps", "text": "How likely are you to recommend us to a friend?", "required": True}]}]}
PAST_SESSION_TITLE = "Product experience day (demo)"
REFEREE_EMAIL = "erin@example.com"

# name -> (purchase amount, weeks with a visit, surveys (last answer's NPS), posts,
#          focus groups, converted referrals)
HISTORY = {
    "alice": (5200, 30, (8, 9, 10), 22, 1, 1),
    "bob": (2300, 18, (7, 8), 6, 0, 0),
    "carol": (150, 3, (), 0, 0, 0),
}


def load(ctx: dict) -> None:
    services.ensure_default_rules()
    members = ctx.get("members", {})
    now = utcnow()
    for name, (spent, weeks, nps, posts, focus_groups, referrals) in HISTORY.items():
        member = members.get(name)
        if member is None:
            continue

        # Fixed keys: loading twice records nothing new (a replay returns the first recording).
        def record(kind, n, *, value=None, days_ago=0, member=member, name=name):
            record_interaction(member.id, kind, key=f"demo:tiers:{name}:{kind}:{n}", value=value,
                               occurred_at=now - timedelta(days=days_ago))

        record("purchase", 0, value=spent, days_ago=3)
        for week in range(weeks):
            record("daily_visit", week, days_ago=7 * week)
        for n, score in enumerate(nps):
            _answer_pulse(ctx, member, n + 1, score)
        for n in range(posts):
            record("post", n, days_ago=n)
        if focus_groups:
            _attend_past_session(ctx, member)
        if referrals:
            _refer_a_buyer(member)
    for name in ("alice", "bob", "carol", "dave"):
        if name in members:
            services.recompute_member(members[name].id)


def _answer_pulse(ctx: dict, member: User, n: int, score: int) -> None:
    """A one-question NPS survey (created once), answered by ``member`` with ``score``."""
    from surveys import services as surveys
    from surveys.models import Survey

    title = PULSE_TITLE.format(n=n)
    survey = db.session.scalar(select(Survey).where(Survey.title == title))
    if survey is None:
        marketing = ctx["members"]["marketing"]
        survey = surveys.create_survey(marketing.id, {"title": title, "description": "One question.",
                                                      "definition": PULSE})
        surveys.publish_survey(marketing.id, survey.id)
    surveys.submit_response(member, survey.id, f"demo-pulse-{n}-{member.id}", {"nps": score})


def _attend_past_session(ctx: dict, member: User) -> None:
    """A session that took place two months ago, which ``member`` attended."""
    from surveys import focus_groups
    from surveys.models import FocusGroupSession

    session = db.session.scalar(select(FocusGroupSession).where(FocusGroupSession.title == PAST_SESSION_TITLE))
    if session is None:
        marketing = ctx["members"]["marketing"]
        start = utcnow() + timedelta(days=1)
        session = focus_groups.create_session(marketing.id, {
            "title": PAST_SESSION_TITLE, "description": "Hands-on with the new app; a small gift for everyone.",
            "starts_at": start, "ends_at": start + timedelta(hours=2), "location": "Showroom", "capacity": 10,
        })
        focus_groups.sign_up(member, session.id)
        # It took place two months ago: signed up then, attended, marked afterwards.
        past = utcnow() - timedelta(days=60)
        db.session.execute(update(FocusGroupSession).where(FocusGroupSession.id == session.id)
                           .values(starts_at=past, ends_at=past + timedelta(hours=2)))
        db.session.expire_all()
        focus_groups.mark_attendance(marketing.id, session.id, [member.id], [])


def _refer_a_buyer(member: User) -> None:
    """erin signed up with ``member``'s referral code and made a purchase (which converts it)."""
    from community.demo import DEMO_PASSWORD
    from community.services import hash_password, register
    from points.services import ingest_event

    referee = db.session.scalar(select(User).where(User.email == REFEREE_EMAIL))
    if referee is None:
        referee = register(email=REFEREE_EMAIL, password=DEMO_PASSWORD, display_name="Erin",
                           referral_code=member.referral_code, password_hash=hash_password(DEMO_PASSWORD))
    ingest_event({"event_id": f"demo-referee-purchase-{referee.id}", "type": "purchase", "member_id": referee.id,
                  "amount": Decimal("80.00"), "occurred_at": None, "refund_of": None})
