"""Benefits: code defaults, admin overrides read through benefits_for, the cache, bad input."""

import pytest
from sqlalchemy import select

from community.models import AuditLog
from extensions import db
from tiers import benefits
from tiers.benefits import DEFAULT_BENEFITS, benefits_for

LOYAL = {"earning_multiplier": 1.40, "focus_group_priority": 7,
         "posting_limits": {"threads_per_day": 60, "replies_per_day": None, "min_seconds_between_posts": 2}}


def test_defaults_without_overrides(app):
    assert benefits_for("loyal") == DEFAULT_BENEFITS["loyal"]
    assert benefits_for(None) == benefits_for("nonsense") == DEFAULT_BENEFITS["aware"]


def test_admin_override_is_used_by_benefits_for_and_audited(app, make_member, login):
    admin = make_member(roles=("admin",))
    resp = login(admin).put("/api/v1/admin/tiers/benefits/loyal", json={**LOYAL, "note": "spring campaign"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["earning_multiplier"] == 1.4
    benefits.invalidate()  # the request ran in its own app context; this test's cache is separate
    assert benefits_for("loyal") == {"earning_multiplier": 1.4, "focus_group_priority": 7,
                                     "posting_limits": LOYAL["posting_limits"]}
    assert benefits_for("advocate") == DEFAULT_BENEFITS["advocate"]
    log = db.session.scalars(select(AuditLog).where(AuditLog.action == "tiers.benefits.update")).one()
    assert log.reason == "spring campaign" and log.details["from"] == DEFAULT_BENEFITS["loyal"]


def test_earning_uses_the_overridden_multiplier(app, make_member, login):
    from points.services import record_interaction

    admin, member = make_member(roles=("admin",)), make_member(tier="loyal")
    assert login(admin).put("/api/v1/admin/tiers/benefits/loyal", json=LOYAL).status_code == 200
    benefits.invalidate()
    interaction = record_interaction(member.id, "focus_group_attended", key="benefit-check", value=100)
    db.session.commit()
    assert interaction.points == 140  # 100 points x 1.4


def test_reads_are_cached(app, count_queries):
    benefits_for("loyal")
    with count_queries() as n:
        for tier in ("aware", "loyal", "advocate"):
            benefits_for(tier)
    assert n() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"earning_multiplier": 11}, "earning_multiplier"),
        ({"earning_multiplier": -1}, "earning_multiplier"),
        ({"focus_group_priority": -1}, "focus_group_priority"),
        ({"posting_limits": {"threads_per_day": -1, "replies_per_day": 1, "min_seconds_between_posts": 0}},
         "posting_limits"),
        ({"posting_limits": {"threads_per_day": 1}}, "posting_limits"),
        ({"bonus": 1}, "bonus"),
    ],
)
def test_bad_benefits(app, make_member, login, change, field):
    resp = login(make_member(roles=("admin",))).put("/api/v1/admin/tiers/benefits/loyal", json={**LOYAL, **change})
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


def test_unknown_tier_is_404(app, make_member, login):
    resp = login(make_member(roles=("admin",))).put("/api/v1/admin/tiers/benefits/platinum", json=LOYAL)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
