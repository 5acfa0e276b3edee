from tests.authz import EVERYONE, LOGGED_IN, Case

ADMIN = frozenset({"admin"})
MARKETING = frozenset({"marketer", "admin"})

RULES = {
    "requirements": {"engaged": {"points_earned": 50}, "satisfied": {"points_earned": 500},
                     "loyal": {"points_earned": 2000}, "advocate": {"points_earned": 5000, "nps_promoter": True}},
    "window_days": 365, "grace_days": 30, "keep_percent": 90,
}


def _member(ctx):
    return {"member_id": ctx.users["member"].id}


def _run(ctx):
    from extensions import db
    from tiers.models import TierRun

    run = TierRun(status="done", total=1, processed=1)
    db.session.add(run)
    db.session.commit()
    return {"run_id": run.id}


CASES = [
    Case("GET", "/api/v1/me/tier", LOGGED_IN),
    Case("GET", "/api/v1/me/tier/history", LOGGED_IN),
    Case("GET", "/api/v1/tiers", EVERYONE),
    Case("GET", "/api/v1/tiers/stats/distribution", MARKETING),
    Case("GET", "/api/v1/tiers/stats/movements", MARKETING,
         query={"since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z", "bucket": "month"}),
    Case("GET", "/api/v1/tiers/leaderboard", MARKETING),
    Case("GET", "/api/v1/admin/tiers/rules", ADMIN),
    Case("PUT", "/api/v1/admin/tiers/rules", ADMIN, body={**RULES, "expected_version": 1, "note": "authz"}),
    Case("GET", "/api/v1/admin/tiers/rules/versions", ADMIN),
    Case("POST", "/api/v1/admin/tiers/what-if", ADMIN, body=RULES),
    Case("GET", "/api/v1/admin/tiers/runs", ADMIN),
    Case("POST", "/api/v1/admin/tiers/runs", ADMIN),
    Case("GET", "/api/v1/admin/tiers/runs/<int:run_id>", ADMIN, setup=_run),
    Case("GET", "/api/v1/admin/tiers/members/<int:member_id>", ADMIN, setup=_member),
    Case("POST", "/api/v1/admin/tiers/members/<int:member_id>/pin", ADMIN, setup=_member,
         body={"tier": "loyal", "reason": "authz check"}),
    Case("POST", "/api/v1/admin/tiers/members/<int:member_id>/unpin", ADMIN, setup=_member,
         body={"reason": "authz check"}),
]

CASES.append(
    Case("PUT", "/api/v1/admin/tiers/benefits/<string:tier>", ADMIN, setup=lambda ctx: {"tier": "loyal"},
         body={"earning_multiplier": 1.3, "focus_group_priority": 3,
               "posting_limits": {"threads_per_day": 40, "replies_per_day": 200, "min_seconds_between_posts": 5}}),
)
