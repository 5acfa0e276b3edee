"""Authorization cases for every rewards route (run by tests/test_authz_matrix.py)."""

from tests.authz import LOGGED_IN, Case

CATALOGUE_STAFF = frozenset({"marketer", "admin"})
QUEUE_STAFF = frozenset({"redemption_staff", "admin"})
CAN_REDEEM = LOGGED_IN - {"suspended"}


def _reward(ctx, **fields):
    from extensions import db
    from rewards.models import Reward

    reward = Reward(name="Matrix reward", kind=fields.pop("kind", "physical"), cost=10, stock=100, **fields)
    db.session.add(reward)
    db.session.commit()
    return reward


def _reward_params(ctx):
    return {"reward_id": _reward(ctx).id}


def _coupon_params(ctx):
    return {"reward_id": _reward(ctx, kind="coupon").id}


def _owned_redemption(ctx, *, processed: bool = False):
    """A redemption of the owner's, optionally carried to ``awaiting_fulfilment`` by the job."""
    from extensions import db
    from points import ledger
    from rewards import services

    owner = ctx.users["owner"]
    ledger.award(owner.id, 100, key=f"matrix:{owner.id}", reason="matrix")
    redemption, _ = services.request_redemption(owner, _reward(ctx).id, "matrix")
    db.session.commit()
    if processed:
        services.process(redemption.id)
        db.session.commit()
    return {"redemption_id": redemption.id}


def _pending(ctx):
    return _owned_redemption(ctx)


def _awaiting(ctx):
    return _owned_redemption(ctx, processed=True)


def _approved(ctx):
    from extensions import db
    from rewards import services

    params = _owned_redemption(ctx, processed=True)
    services.approve(ctx.users["admin"], params["redemption_id"])
    db.session.commit()
    return params


R = "/api/v1/redemptions"
A = "/api/v1/admin"

CASES = [
    Case("GET", "/api/v1/rewards", LOGGED_IN),
    Case("GET", "/api/v1/rewards/<int:reward_id>", LOGGED_IN, setup=_reward_params),
    Case("GET", R, LOGGED_IN),
    Case("POST", R, CAN_REDEEM, setup=_reward_params, body=lambda ctx, p: {"reward_id": p["reward_id"]},
         headers={"Idempotency-Key": "matrix-key"},
         note="allowed actors have no points, so they get 409; the suspended member gets 403"),
    # Another member's redemption is a 404 for everyone but its owner.
    Case("GET", R + "/<int:redemption_id>", frozenset({"owner"}), setup=_pending),
    Case("POST", R + "/<int:redemption_id>/cancel", frozenset({"owner"}), setup=_pending),
    Case("GET", A + "/rewards", CATALOGUE_STAFF),
    Case("POST", A + "/rewards", CATALOGUE_STAFF, body={"name": "New", "cost": 5, "kind": "digital"}),
    Case("GET", A + "/rewards/<int:reward_id>", CATALOGUE_STAFF, setup=_reward_params),
    Case("PATCH", A + "/rewards/<int:reward_id>", CATALOGUE_STAFF, setup=_reward_params, body={"cost": 20}),
    Case("DELETE", A + "/rewards/<int:reward_id>", CATALOGUE_STAFF, setup=_reward_params),
    Case("POST", A + "/rewards/<int:reward_id>/codes", CATALOGUE_STAFF, setup=_coupon_params,
         note="a JSON body is refused with 422 for allowed actors; uploads are tested in test_staff.py"),
    Case("GET", A + "/redemptions", QUEUE_STAFF),
    Case("GET", A + "/redemptions/<int:redemption_id>", QUEUE_STAFF, setup=_pending),
    Case("POST", A + "/redemptions/<int:redemption_id>/approve", QUEUE_STAFF, setup=_awaiting),
    Case("POST", A + "/redemptions/<int:redemption_id>/ship", QUEUE_STAFF, setup=_approved,
         body={"tracking_reference": "TRK"}),
    Case("POST", A + "/redemptions/<int:redemption_id>/complete", QUEUE_STAFF, setup=_approved),
    Case("POST", A + "/redemptions/<int:redemption_id>/reject", QUEUE_STAFF, setup=_awaiting,
         body={"reason": "matrix"}),
    Case("POST", A + "/redemptions/<int:redemption_id>/refund", QUEUE_STAFF, setup=_approved,
         body={"reason": "matrix"}, note="the first allowed actor refunds (200), the next gets 409"),
]
