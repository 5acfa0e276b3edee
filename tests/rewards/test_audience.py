"""Who a reward reaches (analytics decides): a segment as its audience, no marketing reward for the
programme-wide holdout, nothing for the control arm of the reward's own experiment.  The catalogue
and the redemption request both enforce it; the standing catalogue is never withheld."""

from __future__ import annotations

from sqlalchemy import func, select

from analytics import experiments, segments
from extensions import db
from rewards.models import Redemption


def _redeem(client, reward_id, key):
    return client.post("/api/v1/redemptions", json={"reward_id": reward_id}, headers={"Idempotency-Key": key})


def _listed(client) -> set[int]:
    return {r["id"] for r in client.get("/api/v1/rewards?per_page=100").get_json()["items"]}


def _segment(staff_id: int, tag: str, member_ids: list[int]) -> int:
    segments.tag_members(staff_id, tag, member_ids)
    seg = segments.create(staff_id, {"name": f"tagged {tag}", "definition": {
        "conditions": [{"field": "tag", "op": "has_any", "value": [tag]}]}})
    segments.materialise(seg.id)
    db.session.commit()
    return seg.id


def test_a_reward_for_a_segment_is_listed_and_redeemable_by_its_members_only(make_member, login, give_points,
                                                                           make_reward):
    staff = make_member(roles=("marketer",))
    vip, other = make_member(), make_member()
    seg = _segment(staff.id, "vip", [vip.id])
    vip_only = make_reward(name="VIP lounge", segment_id=seg)
    everyone = make_reward(name="Coffee")
    for m in (vip, other):
        give_points(m, 500)
    vip_client, other_client = login(vip), login(other)

    assert {vip_only.id, everyone.id} <= _listed(vip_client)
    assert vip_only.id not in _listed(other_client) and everyone.id in _listed(other_client)
    assert vip_client.get(f"/api/v1/rewards/{vip_only.id}").status_code == 200
    assert other_client.get(f"/api/v1/rewards/{vip_only.id}").status_code == 404

    resp = _redeem(other_client, vip_only.id, "o-1")
    assert resp.status_code == 404, resp.get_json()
    assert _redeem(vip_client, vip_only.id, "v-1").status_code == 202
    assert db.session.scalar(select(func.count(Redemption.id)).where(Redemption.member_id == other.id)) == 0


def test_staff_set_the_audience_and_an_unknown_segment_is_404(make_member, login):
    admin = login(make_member(roles=("admin",)))
    staff = make_member(roles=("marketer",))
    seg = _segment(staff.id, "gold", [staff.id])
    resp = admin.post("/api/v1/admin/rewards", json={"name": "Promo", "cost": 10, "kind": "digital",
                                                      "segment_id": seg, "marketing": True})
    assert resp.status_code == 201, resp.get_json()
    assert (resp.get_json()["segment_id"], resp.get_json()["marketing"]) == (seg, True)
    resp = admin.post("/api/v1/admin/rewards", json={"name": "Nope", "cost": 10, "kind": "digital",
                                                      "segment_id": 99999})
    assert resp.status_code == 404, resp.get_json()
    reward_id = admin.get("/api/v1/admin/rewards").get_json()["items"][0]["id"]
    assert admin.patch(f"/api/v1/admin/rewards/{reward_id}", json={"segment_id": 99999}).status_code == 404


def test_the_holdout_gets_no_marketing_reward_but_keeps_the_catalogue(make_member, login, give_points,
                                                                     make_reward):
    staff = make_member(roles=("marketer",))
    people = [make_member() for _ in range(12)]
    exp = experiments.create(staff.id, {"name": "global control", "kind": "holdout", "test_share": 0.5,
                                        "salt": "rewards-holdout"})
    experiments.start(staff.id, exp.id)
    db.session.commit()
    held = next(p for p in people if experiments.arm_of(exp.id, p.id) == "control")
    treated = next(p for p in people if experiments.arm_of(exp.id, p.id) == "test")
    promo = make_reward(name="Double-points weekend voucher", marketing=True)
    standing = make_reward(name="Tote bag")
    for m in (held, treated):
        give_points(m, 500)
    held_client, treated_client = login(held), login(treated)

    assert promo.id not in _listed(held_client) and standing.id in _listed(held_client)
    assert {promo.id, standing.id} <= _listed(treated_client)
    assert held_client.get(f"/api/v1/rewards/{promo.id}").status_code == 404
    assert _redeem(held_client, promo.id, "h-1").status_code == 404
    assert _redeem(held_client, standing.id, "h-2").status_code == 202  # transactional: never withheld
    assert _redeem(treated_client, promo.id, "t-1").status_code == 202
    assert not experiments.reward_withheld(held.id, standing.id, marketing=False)
    assert experiments.reward_withheld(held.id, promo.id)


def test_a_reward_experiment_withholds_the_reward_from_its_control_arm(make_member, login, give_points,
                                                                      make_reward):
    staff = make_member(roles=("marketer",))
    people = [make_member() for _ in range(12)]
    reward = make_reward(name="Tasting evening")
    exp = experiments.create(staff.id, {"name": "tasting test", "kind": "reward", "reward_id": reward.id,
                                        "test_share": 0.5, "salt": "reward-exp"})
    experiments.start(staff.id, exp.id)
    db.session.commit()
    control = next(p for p in people if experiments.arm_of(exp.id, p.id) == "control")
    test = next(p for p in people if experiments.arm_of(exp.id, p.id) == "test")
    for m in (control, test):
        give_points(m, 500)
    assert reward.id not in _listed(login(control)) and reward.id in _listed(login(test))
    assert _redeem(login(control), reward.id, "c-1").status_code == 404
    assert _redeem(login(test), reward.id, "t-1").status_code == 202
