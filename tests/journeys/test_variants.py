"""A/B variants of a send step: weighted deterministic split, stable across versions, nothing for
the holdout, per-variant stats with the two-proportion comparison, and save-time validation."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
from sqlalchemy import select

from community.models import Notification, User, utcnow
from errors import ValidationError
from extensions import db
from journeys import definition, engine, services, stats, triggers
from journeys.models import Enrolment
from points.services import record_interaction

from .conftest import enrolments, executions

_emails = itertools.count()
_keys = itertools.count()


def bulk_members(n: int) -> list[int]:
    """``n`` committed members written in one executemany (the factory commits one by one)."""
    from tests.conftest import FAST_HASH

    start = next(_emails) * 100_000
    rows = [{"email": f"ab{start + i}@example.com", "display_name": f"AB {i}", "password_hash": FAST_HASH}
            for i in range(n)]
    db.session.execute(User.__table__.insert(), rows)
    db.session.commit()
    return list(db.session.scalars(select(User.id).where(User.email.like("ab%@example.com"))
                                   .where(User.email.in_([r["email"] for r in rows]))))


def weekly_today() -> dict:
    """A calendar trigger due today: the schedule enrols the whole audience in one INSERT … SELECT."""
    return {"type": "calendar", "every": "week", "weekday": utcnow().date().weekday()}


def enrol_and_advance(j) -> list[int]:
    version = services.current_version(j)
    triggers.enrol_scheduled(j, version, utcnow().date())
    db.session.commit()
    ids = [e.id for e in enrolments(j.id)]
    engine.advance(ids)
    return ids


def ab_step(weights=(1, 1), step_id="hello", **extra) -> dict:
    return {"id": step_id, "type": "action", "action": "send",
            "variants": [{"id": f"v{i}", "weight": w, "template": f"t{i}"} for i, w in enumerate(weights)], **extra}


def test_the_split_follows_the_weights_and_is_the_hash_of_journey_step_and_member(app, template, journey):
    for i in range(3):
        template(f"t{i}")
    j = journey([ab_step((1, 2, 3))], trigger=weekly_today())
    members = bulk_members(3000)
    enrol_and_advance(j)
    rows = executions(j.id)
    assert len(rows) == 3000 and {x.outcome for x in rows} == {"sent"}
    counts = Counter(x.variant for x in rows)
    for vid, weight in (("v0", 1), ("v1", 2), ("v2", 3)):
        # Each share within 3 points of weight / 6 (the standard error at n=3000 is at most 0.9).
        assert abs(counts[vid] / 3000 - weight / 6) < 0.03, counts
    assert stats.sample_ratio([counts["v0"], counts["v1"], counts["v2"]], [1, 2, 3])["mismatch"] is False
    variants = ab_step((1, 2, 3))["variants"]
    assert all(x.variant == engine.variant_of(j.id, "hello", x.member_id, variants)["id"] for x in rows)
    assert {x.member_id for x in rows} == set(members)
    # Each member got their variant's message, and the notification says which.
    notes = {n.id: n for n in db.session.scalars(select(Notification).where(Notification.member_id.in_(members)))}
    for x in rows:
        note = notes[x.notification_id]
        assert note.kind == f"journeys.community.t{x.variant[1]}" and note.payload["variant"] == x.variant
    # The same member, step and journey give the same variant every time; another step mixes anew.
    again = [engine.variant_of(j.id, "hello", m, variants)["id"] for m in members]
    assert again == [engine.variant_of(j.id, "hello", m, variants)["id"] for m in members]
    other = [engine.variant_of(j.id, "other", m, variants)["id"] for m in members]
    assert sum(a != b for a, b in zip(again, other, strict=True)) > 1000


def test_a_member_keeps_the_variant_in_a_new_version(app, make_member, template, journey):
    template("t0"), template("t1"), template("t2")
    j = journey([ab_step()], entry={"rule": "per_occurrence"})
    members = [make_member() for _ in range(30)]
    for m in members:
        record_interaction(m.id, "purchase", key=f"ab-v1-{next(_keys)}", value=5)
    db.session.commit()
    engine.advance([e.id for e in enrolments(j.id)])
    first = {x.member_id: (x.version_id, x.variant) for x in executions(j.id)}
    assert len(first) == 30 and {v for _, v in first.values()} == {"v0", "v1"}
    # Version 2: a wait of zero before the send is not possible, so a new first step (a tag)
    # and the same variants with another template for v1: members keep v0 / v1 as they were.
    steps = [{"id": "mark", "type": "action", "action": "tag", "tag": "ab-test", "next": "hello"},
             {**ab_step(), "variants": [{"id": "v0", "weight": 1, "template": "t0"},
                                        {"id": "v1", "weight": 1, "template": "t2"}]}]
    services.revise(None, j.id, {"definition": {"trigger": {"type": "event", "event": "purchase.recorded"},
                                                "audience": {"type": "everyone"},
                                                "entry": {"rule": "per_occurrence"}, "steps": steps}})
    db.session.commit()
    for m in members:
        record_interaction(m.id, "purchase", key=f"ab-v2-{next(_keys)}", value=5)
    db.session.commit()
    engine.advance([e.id for e in enrolments(j.id) if e.state == "active"])
    second = {x.member_id: (x.version_id, x.variant) for x in executions(j.id)
              if x.step_id == "hello" and x.version_id != first[x.member_id][0]}
    assert len(second) == 30
    assert {m: v for m, (_, v) in second.items()} == {m: v for m, (_, v) in first.items()}
    kinds = set(db.session.scalars(select(Notification.kind).where(
        Notification.member_id.in_([m.id for m in members]))))
    assert "journeys.community.t2" in kinds  # v1's new message in version 2


def test_the_holdout_gets_no_variant_and_nothing_is_sent_to_it(app, template, journey):
    template("t0"), template("t1")
    members = bulk_members(200)  # before the journey: its experiment's population is the members
    j = journey([ab_step()], trigger=weekly_today(), holdout_share=0.5)
    enrol_and_advance(j)
    arms = {e.member_id: e.arm for e in enrolments(j.id)}
    held = {m for m, arm in arms.items() if arm == "holdout"}
    assert 50 < len(held) < 150
    rows = executions(j.id)
    for x in rows:
        if x.member_id in held:
            assert (x.outcome, x.reason, x.variant, x.notification_id) == ("skipped", "holdout", None, None)
        else:
            assert x.outcome == "sent" and x.variant in ("v0", "v1")
    sent_to = set(db.session.scalars(select(Notification.member_id).where(Notification.member_id.in_(members))))
    assert sent_to == set(members) - held
    out = stats.journey_stats(j)
    (step,) = out["steps"]
    assert sum(v["assigned"] for v in step["variants"]) == len(members) - len(held)
    assert "holdout" not in {r for v in step["variants"] for r in v["skipped_by_reason"]}
    assert step["skipped_by_reason"] == {"holdout": len(held)}


def test_stats_per_variant_count_sent_skipped_and_converted_and_compare_with_the_first(
        app, login, make_member, template, journey):
    from messaging.preferences import set_channel

    template("t0"), template("t1")
    j = journey([ab_step((1, 1))], trigger=weekly_today(), goal={"event": "purchase.recorded", "within_days": 30})
    members = bulk_members(400)
    off = members[:40]  # no channel left for the category: skipped (unsubscribed), per variant
    for m in off:
        set_channel(m, "community", "email", False)
        set_channel(m, "community", "in_app", False)
    db.session.commit()
    enrol_and_advance(j)
    rows = executions(j.id)
    variant = {x.member_id: x.variant for x in rows}
    # Members who purchase convert (the goal within its window): every third member sent v1,
    # every fifth sent v0, and some who were skipped (they convert, but were not sent a message).
    buyers = [m for i, m in enumerate(members[40:]) if (i % 3 == 0 if variant[m] == "v1" else i % 5 == 0)]
    buyers += off[:10]
    for m in buyers:
        record_interaction(m, "purchase", key=f"ab-conv-{next(_keys)}", value=5)
    db.session.commit()
    assert sum(e.converted_at is not None for e in enrolments(j.id)) == len(buyers)

    expected = {}
    for vid in ("v0", "v1"):
        mine = [x for x in rows if x.variant == vid]
        sent = [x.member_id for x in mine if x.outcome == "sent"]
        converted = len(set(sent) & set(buyers))
        expected[vid] = {"assigned": len(mine), "sent": len(sent), "skipped": len(mine) - len(sent),
                         "converted": converted, "conversion_rate": round(converted / len(sent), 4)}
        assert {x.reason for x in mine if x.outcome == "skipped"} == {"unsubscribed"}
    out = stats.journey_stats(j)
    (step,) = out["steps"]
    assert [v["variant_id"] for v in step["variants"]] == ["v0", "v1"]
    for v in step["variants"]:
        e = expected[v["variant_id"]]
        assert {k: v[k] for k in e} == e
        assert v["skipped_by_reason"] == ({"unsubscribed": e["skipped"]} if e["skipped"] else {})
        assert v["weight"] == 1
    v0, v1 = step["variants"]
    assert v0["vs_first"] is None
    assert v1["vs_first"] == stats.two_proportions(v1["converted"], v1["sent"], v0["converted"], v0["sent"])
    assert v1["vs_first"]["difference"] == pytest.approx(v1["converted"] / v1["sent"] - v0["converted"] / v0["sent"])
    assert v1["vs_first"]["p_value"] < 0.05  # a third against a fifth of ~180 each
    assert step["variant_sample_ratio"]["mismatch"] is False
    # The converted total counts the skipped buyers too; the variants only those sent to.
    assert out["converted"] == len(buyers) > v0["converted"] + v1["converted"]

    # The API (its schema lets the new fields through exactly) and the console's table.
    client = login(make_member(roles=("marketer",)))
    body = client.get(f"/api/v1/journeys/{j.id}/stats").get_json()
    assert body["steps"][0]["variants"] == step["variants"]
    assert body["steps"][0]["variant_sample_ratio"] == step["variant_sample_ratio"]
    html = client.get(f"/console/journeys/{j.id}").get_data(as_text=True)
    assert "A/B test of step hello" in html and "<td>v1</td>" in html
    assert f"{v1['conversion_rate'] * 100:.1f} %" in html
    assert f"{v1['vs_first']['p_value']:.3g}" in html


def test_two_proportions_against_a_hand_checked_example():
    # A: 40 of 200 converted (0.20); B: 60 of 200 (0.30).
    # Difference 0.10.  Unpooled SE = sqrt(0.2·0.8/200 + 0.3·0.7/200) = sqrt(0.00185) = 0.0430116;
    # 95 %: 0.10 ± 1.959964 × 0.0430116 = 0.10 ± 0.0843012 → [0.0156988, 0.1843012].
    # Pooled p = 100/400 = 0.25; SE0 = sqrt(0.25·0.75·(1/200 + 1/200)) = 0.0433013;
    # z = 0.10 / 0.0433013 = 2.309401; two-sided p = 2·(1 − Φ(2.309401)) = 0.020921.
    out = stats.two_proportions(60, 200, 40, 200)
    assert out["difference"] == pytest.approx(0.10, abs=1e-12)
    assert out["ci_low"] == pytest.approx(0.0156988, abs=1e-6)
    assert out["ci_high"] == pytest.approx(0.1843012, abs=1e-6)
    assert out["p_value"] == pytest.approx(0.020921, abs=1e-5)
    # No difference at all: p = 1; both at zero: no test (p None) and a zero-width interval.
    assert stats.two_proportions(20, 100, 20, 100)["p_value"] == pytest.approx(1.0)
    assert stats.two_proportions(0, 100, 0, 100) == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                                                     "p_value": None}
    assert stats.two_proportions(5, 100, 0, 0) is None
    # Sample ratio: 150 / 250 against 1:1 is chi² = 2·50²/200 = 25, p = 5.7e-7: a mismatch.
    srm = stats.sample_ratio([150, 250], [1, 1])
    assert srm["mismatch"] is True and srm["p_value"] == pytest.approx(math.erfc(math.sqrt(25 / 2)), rel=1e-6)
    assert stats.sample_ratio([100, 300], [1, 3]) == {"p_value": pytest.approx(1.0), "mismatch": False}


def _defn(step: dict) -> dict:
    return {"trigger": {"type": "event", "event": "member.registered"}, "audience": {"type": "everyone"},
            "entry": {"rule": "once"}, "steps": [step]}


def _fields(step: dict) -> dict:
    with pytest.raises(ValidationError) as info:
        definition.validate(_defn(step))
    return info.value.fields


def _variants(*items) -> dict:
    return {"id": "a", "type": "action", "action": "send", "variants": list(items)}


def test_every_variant_error_names_its_field(app, template):
    template("t0"), template("t1")
    a = {"id": "a", "weight": 1, "template": "t0"}
    b = {"id": "b", "weight": 1, "template": "t1"}
    cases = [
        (_variants(a), "definition.steps.0.variants"),  # fewer than 2
        (_variants(*({**a, "id": f"v{i}"} for i in range(6))), "definition.steps.0.variants"),  # more than 5
        ({**_variants(a, b), "variants": "ab"}, "definition.steps.0.variants"),  # not a list
        ({**_variants(a, b), "template": "t0"}, "definition.steps.0.variants"),  # both
        (_variants(a, "b"), "definition.steps.0.variants.1"),  # not an object
        (_variants(a, {**b, "id": "a"}), "definition.steps.0.variants.1.id"),  # duplicate
        (_variants(a, {**b, "id": "no spaces"}), "definition.steps.0.variants.1.id"),
        (_variants(a, {k: v for k, v in b.items() if k != "id"}), "definition.steps.0.variants.1.id"),
        (_variants(a, {**b, "weight": 0}), "definition.steps.0.variants.1.weight"),
        (_variants(a, {**b, "weight": -3}), "definition.steps.0.variants.1.weight"),
        (_variants(a, {**b, "weight": 1.5}), "definition.steps.0.variants.1.weight"),
        (_variants(a, {**b, "weight": "2"}), "definition.steps.0.variants.1.weight"),
        (_variants(a, {**b, "weight": True}), "definition.steps.0.variants.1.weight"),
        (_variants(a, {k: v for k, v in b.items() if k != "weight"}), "definition.steps.0.variants.1.weight"),
        (_variants(a, {**b, "template": "nope"}), "definition.steps.0.variants.1.template"),
        (_variants(a, {**b, "template": ""}), "definition.steps.0.variants.1.template"),
        (_variants(a, {k: v for k, v in b.items() if k != "template"}), "definition.steps.0.variants.1.template"),
        (_variants(a, {**b, "subject": "Hi"}), "definition.steps.0.variants.1.subject"),  # unknown field
        ({"id": "a", "type": "action", "action": "send"}, "definition.steps.0.template"),  # neither
    ]
    for step, field in cases:
        fields = _fields(step)
        assert field in fields, (step, fields)
    # Every error at once, each with its own field.
    fields = _fields(_variants({**a, "weight": 0}, {**b, "id": "a", "template": "nope"}))
    assert {"definition.steps.0.variants.0.weight", "definition.steps.0.variants.1.id",
            "definition.steps.0.variants.1.template"} <= set(fields)
    # Valid: 2 and 5 variants, any positive weights.
    definition.validate(_defn(_variants(a, b)))
    definition.validate(_defn(_variants(*({**a, "id": f"v{i}", "weight": i + 1} for i in range(5)))))


def test_the_api_refuses_a_bad_variant_with_the_field_named(app, login, make_member, template):
    template("t0"), template("t1")
    client = login(make_member(roles=("marketer",)))
    step = _variants({"id": "a", "weight": 1, "template": "t0"}, {"id": "b", "weight": 0, "template": "t1"})
    resp = client.post("/api/v1/journeys", json={"name": "AB", "definition": _defn(step)})
    assert resp.status_code == 422
    assert "definition.steps.0.variants.1.weight" in resp.get_json()["error"]["fields"]
    step["variants"][1]["weight"] = 3
    resp = client.post("/api/v1/journeys", json={"name": "AB", "definition": _defn(step)})
    assert resp.status_code == 201 and resp.get_json()["version"]["steps"][0]["variants"][1]["weight"] == 3
    assert db.session.scalar(select(Enrolment.id)) is None
