"""Every console route x every actor (run by tests/test_authz_matrix.py).

Console pages answer an anonymous visitor with a redirect to the sign-in page (``anonymous``
expects 302 here), a member without a staff role with 404, staff without the page's
permission with 403.  Allowed actors get the page (200), a CSV, or a 303 back after a POST
(the matrix posts no form fields, so most writes end in a flashed validation error).
"""

from __future__ import annotations

from tests.analytics.authz_cases import _experiment, _review, _segment, _tagged
from tests.authz import EVERYONE, Case
from tests.forums.authz_cases import _flag, _thread
from tests.points.authz_cases import _held_referral, _pending_award
from tests.rewards.authz_cases import _awaiting, _coupon_params, _reward_params
from tests.surveys.authz_cases import _draft, _session, _survey

STAFF = frozenset({"moderator", "marketer", "redemption_staff", "admin"})
ADMIN = frozenset({"admin"})
MODERATORS = frozenset({"moderator", "admin"})
MARKETERS = frozenset({"marketer", "admin"})
REDEMPTION = frozenset({"redemption_staff", "admin"})
REDIRECT = (302,)


def _member(ctx):
    return {"member_id": ctx.users["member"].id}


def _campaign(ctx):
    from datetime import timedelta

    from community.models import utcnow
    from extensions import db
    from points import services

    now = utcnow()
    campaign = services.create_campaign(ctx.users["admin"].id, {
        "name": "Matrix", "multiplier": 2, "starts_at": now, "ends_at": now + timedelta(days=1)})
    db.session.commit()
    return {"campaign_id": campaign.id}


def _question(ctx):
    return {**_draft(ctx), "qid": "q1"}


def _c(method, rule, allowed, **kw):
    kw.setdefault("anonymous_status", REDIRECT)
    return Case(method, rule, allowed, **kw)


CASES = [
    Case("GET", "/", EVERYONE),
    Case("GET", "/console/login", EVERYONE),
    Case("POST", "/console/login", EVERYONE, note="wrong credentials: 401 with the form again"),
    Case("POST", "/console/logout", EVERYONE),
    Case("POST", "/console/language", EVERYONE),
    Case("GET", "/console/static/<path:filename>", EVERYONE, setup=lambda ctx: {"filename": "console.css"}),
    _c("GET", "/console/", STAFF),
    # moderators
    _c("GET", "/console/moderation/flags", MODERATORS),
    _c("POST", "/console/moderation/flags/<int:flag_id>", MODERATORS, setup=_flag),
    _c("GET", "/console/moderation/threads/<int:thread_id>", MODERATORS, setup=_thread),
    _c("POST", "/console/moderation/threads/<int:thread_id>", MODERATORS, setup=_thread),
    _c("POST", "/console/moderation/posts/<int:post_id>", MODERATORS, setup=_thread),
    _c("GET", "/console/moderation/members/<int:member_id>/sanctions", MODERATORS, setup=_member),
    _c("POST", "/console/moderation/members/<int:member_id>/sanctions", MODERATORS, setup=_member),
    _c("GET", "/console/moderation/audit", MODERATORS),
    # redemption staff
    _c("GET", "/console/redemptions", REDEMPTION),
    _c("POST", "/console/redemptions/bulk", REDEMPTION),
    _c("GET", "/console/redemptions/<int:redemption_id>", REDEMPTION, setup=_awaiting),
    _c("POST", "/console/redemptions/<int:redemption_id>/<any(approve, ship, complete, reject, refund):action>",
       REDEMPTION, setup=lambda ctx: {**_awaiting(ctx), "action": "reject"}),
    _c("GET", "/console/redemptions/stock", REDEMPTION),
    _c("GET", "/console/redemptions/shipped.csv", REDEMPTION),
    # marketers: surveys and focus groups
    _c("GET", "/console/surveys", MARKETERS),
    _c("POST", "/console/surveys", MARKETERS),
    _c("GET", "/console/surveys/<int:survey_id>", MARKETERS, setup=_survey),
    _c("POST", "/console/surveys/<int:survey_id>", MARKETERS, setup=_draft),
    _c("POST", "/console/surveys/<int:survey_id>/pages", MARKETERS, setup=_draft),
    _c("POST", "/console/surveys/<int:survey_id>/questions", MARKETERS, setup=_draft),
    _c("POST", "/console/surveys/<int:survey_id>/questions/<qid>", MARKETERS, setup=_question),
    _c("GET", "/console/surveys/<int:survey_id>/preview", MARKETERS, setup=_survey),
    _c("POST", "/console/surveys/<int:survey_id>/<any(publish, close):action>", MARKETERS,
       setup=lambda ctx: {**_survey(ctx), "action": "close"}),
    _c("GET", "/console/surveys/<int:survey_id>/results", MARKETERS, setup=_survey),
    _c("GET", "/console/surveys/<int:survey_id>/responses.csv", MARKETERS, setup=_survey),
    _c("GET", "/console/focus-groups", MARKETERS),
    _c("POST", "/console/focus-groups", MARKETERS),
    _c("GET", "/console/focus-groups/<int:session_id>", MARKETERS, setup=_session),
    _c("POST", "/console/focus-groups/<int:session_id>/attendance", MARKETERS, setup=_session),
    _c("GET", "/console/focus-groups/<int:session_id>/calendar.ics", MARKETERS, setup=_session),
    # marketers: points, rewards, referrals, tiers
    _c("GET", "/console/rules", MARKETERS),
    _c("POST", "/console/rules/<kind>", MARKETERS, setup=lambda ctx: {"kind": "post"}),
    _c("GET", "/console/campaigns", MARKETERS),
    _c("POST", "/console/campaigns", MARKETERS),
    _c("POST", "/console/campaigns/<int:campaign_id>/toggle", MARKETERS, setup=_campaign),
    _c("GET", "/console/rewards", MARKETERS),
    _c("POST", "/console/rewards", MARKETERS),
    _c("GET", "/console/rewards/<int:reward_id>", MARKETERS, setup=_reward_params),
    _c("POST", "/console/rewards/<int:reward_id>", MARKETERS, setup=_reward_params),
    _c("POST", "/console/rewards/<int:reward_id>/codes", MARKETERS, setup=_coupon_params),
    _c("GET", "/console/referrals", MARKETERS),
    _c("POST", "/console/referrals/<int:referral_id>/<any(approve, reject):decision>", MARKETERS,
       setup=lambda ctx: {**_held_referral(ctx), "decision": "reject"}),
    _c("GET", "/console/approvals", MARKETERS),
    _c("POST", "/console/approvals/<int:pending_id>/<any(approve, reject):decision>", MARKETERS,
       setup=lambda ctx: {**_pending_award(ctx), "decision": "reject"}),
    _c("GET", "/console/tiers", MARKETERS),
    # marketers: analytics (analytics.view reads, analytics.manage changes: marketers and admins)
    _c("GET", "/console/analytics/segments", MARKETERS),
    _c("POST", "/console/analytics/segments", MARKETERS),
    _c("GET", "/console/analytics/segments/<int:segment_id>", MARKETERS, setup=_segment),
    _c("POST", "/console/analytics/segments/<int:segment_id>/materialise", MARKETERS, setup=_segment),
    _c("POST", "/console/analytics/tags", MARKETERS),
    _c("POST", "/console/analytics/members/<int:member_id>/tags/<tag>/remove", MARKETERS, setup=_tagged),
    _c("GET", "/console/analytics/kpis", MARKETERS),
    _c("GET", "/console/analytics/kpis/<metric>", MARKETERS, setup=lambda ctx: {"metric": "purchases"}),
    _c("GET", "/console/analytics/reviews", MARKETERS),
    _c("POST", "/console/analytics/reviews", MARKETERS),
    _c("GET", "/console/analytics/reviews/<int:review_id>", MARKETERS, setup=_review),
    _c("GET", "/console/analytics/experiments", MARKETERS),
    _c("GET", "/console/analytics/experiments/<int:experiment_id>", MARKETERS,
       setup=lambda ctx: _experiment(ctx, True)),
    _c("POST", "/console/analytics/experiments/<int:experiment_id>/<any(start, stop):action>", MARKETERS,
       setup=lambda ctx: {**_experiment(ctx, True), "action": "stop"}),
    # admins
    _c("GET", "/console/members", ADMIN),
    _c("GET", "/console/members/<int:member_id>", ADMIN, setup=_member),
    _c("POST", "/console/members/<int:member_id>/roles", ADMIN, setup=_member),
    _c("POST", "/console/members/<int:member_id>/adjustments", ADMIN, setup=_member),
    _c("GET", "/console/audit", ADMIN),
    _c("GET", "/console/audit.csv", ADMIN),
    _c("GET", "/console/jobs", ADMIN),
]
