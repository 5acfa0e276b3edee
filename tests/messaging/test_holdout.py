"""The programme-wide holdout (analytics' global control group) gets no marketing email; every
other category, transactional service above all, still reaches it."""

from __future__ import annotations

from analytics import experiments
from extensions import db
from messaging.preferences import set_channel


def _holdout(actor_id: int, member_ids: list[int]) -> dict[int, str]:
    exp = experiments.create(actor_id, {"name": "global control", "kind": "holdout", "test_share": 0.5,
                                        "salt": "messaging-holdout"})
    experiments.start(actor_id, exp.id)
    db.session.commit()
    return {m: experiments.arm_of(exp.id, m) for m in member_ids}


def test_holdout_members_get_no_marketing_but_everything_else(mail_app, smtp, make_member, notify, run_jobs,
                                                               deliveries):
    staff = make_member(roles=("marketer",))
    people = [make_member() for _ in range(12)]
    arms = _holdout(staff.id, [p.id for p in people])
    held = next(p for p in people if arms[p.id] == "control")
    treated = next(p for p in people if arms[p.id] == "test")
    for member in (held, treated):
        set_channel(member.id, "marketing", "email", True)
    db.session.commit()

    for member in (held, treated):
        notify(member, "marketing.campaign", {"subject": f"Sale for {member.id}", "text": "Hello"})
        notify(member, "forums.post_hidden", {"reason": "spam"})  # transactional
        notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    run_jobs(["messaging"])

    rows = {(r.member_id, r.kind): r for r in deliveries()}
    skipped = rows[(held.id, "marketing.campaign")]
    assert (skipped.state, skipped.reason) == ("suppressed", "holdout")
    assert rows[(treated.id, "marketing.campaign")].state == "sent"
    for member in (held, treated):
        assert rows[(member.id, "forums.post_hidden")].state == "sent"
        assert rows[(member.id, "tiers.tier_changed")].state == "sent"
    assert [r.message["Subject"] for r in smtp.to(held.email) if "Sale" in r.message["Subject"]] == []
    assert len(smtp.to(treated.email)) == 3 and len(smtp.to(held.email)) == 2


def test_holdout_members_joining_after_the_start_are_held_out_before_assignment(mail_app, smtp, make_member,
                                                                                notify, run_jobs, deliveries):
    staff = make_member(roles=("marketer",))
    _holdout(staff.id, [])
    late = [make_member() for _ in range(12)]  # joined after the start, not stored yet
    held = next(m for m in late if experiments.in_holdout(m.id))
    set_channel(held.id, "marketing", "email", True)
    db.session.commit()
    notify(held, "marketing.campaign", {"subject": "Sale", "text": "Hello"})
    run_jobs(["messaging"])
    assert [(r.state, r.reason) for r in deliveries()] == [("suppressed", "holdout")]
    assert smtp.received == []
