"""Rewards API: the member catalogue, redemptions, and the staff catalogue and queue."""

from __future__ import annotations

import logging

from flask import request
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

import ratelimit
from community.permissions import login_required, require
from contract.openapi import error_responses
from contract.requests import accepts
from errors import ValidationError
from extensions import db
from pagination import PageArgs, page_schema, paginate

from . import services
from .jobs import schedule_processing
from .permissions import FULFIL_REDEMPTIONS, MANAGE_CATALOGUE
from .schemas import (
    CodeUploadOut,
    IdempotencyHeader,
    MemberRedemptionArgs,
    RedemptionIn,
    RedemptionOut,
    RefundIn,
    RejectIn,
    RewardIn,
    RewardOut,
    RewardPatchIn,
    ShipIn,
    StaffQueueArgs,
    StaffRedemptionDetailOut,
    StaffRedemptionOut,
    StaffRewardArgs,
    StaffRewardOut,
)

rewards_blp = Blueprint("rewards", __name__, url_prefix="/api/v1/rewards", description="The rewards catalogue")
redemptions_blp = Blueprint(
    "redemptions", __name__, url_prefix="/api/v1/redemptions", description="A member's redemptions"
)
admin_blp = Blueprint(
    "admin_rewards", __name__, url_prefix="/api/v1/admin", description="Staff: catalogue, code pools, redemption queue"
)
blueprints = [rewards_blp, redemptions_blp, admin_blp]

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
CODES_MEDIA_TYPES = ("multipart/form-data", "text/csv", "text/plain")
_CODES_TEXT = {"type": "string", "description": "CSV: one code per line in the first column, optional `code` header."}
CODES_UPLOAD = {
    "required": True,
    "description": "The coupon codes: a multipart `file` field, or the CSV itself as the body (UTF-8).",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"],
                       "properties": {"file": {"type": "string", "format": "binary", "description": "The CSV file."}}},
        },
        "text/csv": {"schema": _CODES_TEXT},
        "text/plain": {"schema": _CODES_TEXT},
    },
}
# Redemption requests per member and window (seconds); over it: 429.
DEFAULT_REDEMPTION_RATE_LIMIT = (20, 60)

log = logging.getLogger(__name__)


def _limit_redemption_requests(member_id: int) -> None:
    """Count one redemption request of the member: 429 once over ``REDEMPTION_RATE_LIMIT``.

    Fails open: with Redis unreachable the request goes on (unlimited for that while), because a
    redemption needs neither Redis nor its queue to be accepted (see README: nothing lost).
    """
    ratelimit.hit_or_pass(f"redemptions:member:{member_id}", "REDEMPTION_RATE_LIMIT", DEFAULT_REDEMPTION_RATE_LIMIT,
                          "Too many redemption requests.", logger=log,
                          what=f"redemption request of member {member_id}")


# --------------------------------------------------------------------------- member catalogue


@rewards_blp.route("")
class Catalogue(MethodView):
    @login_required
    @rewards_blp.arguments(PageArgs, location="query")
    @rewards_blp.response(200, page_schema(RewardOut, "RewardPage"))
    def get(self, args):
        """Rewards open now that the member's tier qualifies for, cheapest first."""
        return paginate(services.catalogue_query(current_user), args["page"], args["per_page"])


@rewards_blp.route("/<int:reward_id>")
class CatalogueItem(MethodView):
    @login_required
    @rewards_blp.response(200, RewardOut)
    def get(self, reward_id):
        """One reward of the member's catalogue."""
        return services.get_visible_reward(current_user, reward_id)


# --------------------------------------------------------------------------- member redemptions


@redemptions_blp.route("")
class Redemptions(MethodView):
    @login_required
    @redemptions_blp.arguments(MemberRedemptionArgs, location="query")
    @redemptions_blp.response(200, page_schema(RedemptionOut, "RedemptionPage"))
    def get(self, args):
        """The member's own redemptions, newest first."""
        query = services.member_redemptions_query(current_user.id, args.get("state"))
        return paginate(query, args["page"], args["per_page"])

    @login_required
    @redemptions_blp.arguments(IdempotencyHeader, location="headers")
    @redemptions_blp.arguments(RedemptionIn)
    @redemptions_blp.response(202, RedemptionOut)
    @error_responses(404, 409, 429)
    def post(self, headers, data):
        """Redeem a reward.  Requires an ``Idempotency-Key`` header; a replay returns the same
        redemption.  The points are held and the request is processed in the background.
        Requests per member are rate-limited (429 with ``Retry-After``; replays count too)."""
        _limit_redemption_requests(current_user.id)
        redemption, created = services.request_redemption(
            current_user, data["reward_id"], headers.get("idempotency_key")
        )
        if created:
            schedule_processing(redemption.id)
        db.session.commit()
        return redemption


@redemptions_blp.route("/<int:redemption_id>")
class RedemptionItem(MethodView):
    @login_required
    @redemptions_blp.response(200, RedemptionOut)
    def get(self, redemption_id):
        """One of the member's redemptions (with the coupon code once fulfilled)."""
        return services.get_own_redemption(current_user.id, redemption_id)


@redemptions_blp.route("/<int:redemption_id>/cancel")
class RedemptionCancel(MethodView):
    @login_required
    @redemptions_blp.response(200, RedemptionOut)
    @error_responses(409)
    def post(self, redemption_id):
        """Withdraw a request that is still pending; the points come back."""
        redemption = services.cancel(current_user, redemption_id)
        db.session.commit()
        return redemption


# --------------------------------------------------------------------------- staff catalogue


@admin_blp.route("/rewards")
class AdminRewards(MethodView):
    @require(MANAGE_CATALOGUE)
    @admin_blp.arguments(StaffRewardArgs, location="query")
    @admin_blp.response(200, page_schema(StaffRewardOut, "StaffRewardPage"))
    def get(self, args):
        """Every reward, including inactive and out-of-window ones, newest first."""
        query = services.staff_rewards_query(kind=args.get("kind"), active=args.get("active"))
        return paginate(query, args["page"], args["per_page"])

    @require(MANAGE_CATALOGUE)
    @admin_blp.arguments(RewardIn)
    @admin_blp.response(201, StaffRewardOut)
    @error_responses(404)  # segment_id names no (live) segment
    def post(self, data):
        """Add a reward.  Coupon rewards start with stock 0: upload codes to stock them."""
        reward = services.create_reward(current_user, data)
        db.session.commit()
        return reward


@admin_blp.route("/rewards/<int:reward_id>")
class AdminReward(MethodView):
    @require(MANAGE_CATALOGUE)
    @admin_blp.response(200, StaffRewardOut)
    def get(self, reward_id):
        """One reward."""
        return services.get_reward(reward_id)

    @require(MANAGE_CATALOGUE)
    @admin_blp.arguments(RewardPatchIn)
    @admin_blp.response(200, StaffRewardOut)
    def patch(self, data, reward_id):
        """Edit a reward (deactivate it with ``is_active: false``)."""
        reward = services.update_reward(current_user, reward_id, data)
        db.session.commit()
        return reward

    @require(MANAGE_CATALOGUE)
    @admin_blp.response(204)
    @error_responses(409)
    def delete(self, reward_id):
        """Delete a reward nobody has redeemed (409 otherwise: deactivate it instead)."""
        services.delete_reward(current_user, reward_id)
        db.session.commit()


def _uploaded_text() -> str:
    """The CSV from a multipart ``file`` field or a ``text/csv`` body."""
    upload = request.files.get("file")
    if upload is not None:
        raw = upload.read(MAX_UPLOAD_BYTES + 1)
    elif request.mimetype in ("text/csv", "text/plain"):
        raw = request.get_data(cache=False)
    else:
        raise ValidationError(
            "Send the codes as a multipart 'file' field or a text/csv body.", fields={"file": ["Required."]}
        )
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ValidationError("The file is too large.", fields={"file": [f"At most {MAX_UPLOAD_BYTES} bytes."]})
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError("The file is not UTF-8 text.", fields={"file": ["Not UTF-8."]}) from exc


@admin_blp.route("/rewards/<int:reward_id>/codes")
class AdminRewardCodes(MethodView):
    @require(MANAGE_CATALOGUE)
    @admin_blp.doc(requestBody=CODES_UPLOAD)
    @admin_blp.response(200, CodeUploadOut)
    @accepts(*CODES_MEDIA_TYPES)
    @error_responses(409)
    def post(self, reward_id):
        """Upload coupon codes (CSV, first column, optional ``code`` header); each new code adds one
        to the stock, codes already in the pool are skipped."""
        services.get_reward(reward_id)  # 404 before reading the body
        result = services.add_codes(current_user, reward_id, services.parse_codes(_uploaded_text()))
        db.session.commit()
        return result


# --------------------------------------------------------------------------- staff queue


@admin_blp.route("/redemptions")
class AdminRedemptions(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.arguments(StaffQueueArgs, location="query")
    @admin_blp.response(200, page_schema(StaffRedemptionOut, "StaffRedemptionPage"))
    def get(self, args):
        """The redemption queue, oldest first, filtered by state, reward, member or kind."""
        query = services.staff_queue_query(
            state=args.get("state"), reward_id=args.get("reward_id"), member_id=args.get("member_id"),
            kind=args.get("kind"),
        )
        return paginate(query, args["page"], args["per_page"])


@admin_blp.route("/redemptions/<int:redemption_id>")
class AdminRedemption(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.response(200, StaffRedemptionDetailOut)
    def get(self, redemption_id):
        """One redemption with its transition log."""
        redemption = services.get_redemption(redemption_id)
        redemption.transitions = services.transitions_of(redemption.id)  # transient, for the response
        return redemption


@admin_blp.route("/redemptions/<int:redemption_id>/approve")
class AdminApprove(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.response(200, StaffRedemptionOut)
    @error_responses(409)
    def post(self, redemption_id):
        """Accept a request awaiting fulfilment; its held points are spent."""
        redemption = services.approve(current_user, redemption_id)
        db.session.commit()
        return redemption


@admin_blp.route("/redemptions/<int:redemption_id>/ship")
class AdminShip(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.arguments(ShipIn)
    @admin_blp.response(200, StaffRedemptionOut)
    @error_responses(409)
    def post(self, data, redemption_id):
        """Mark an approved physical gift as shipped, with its tracking reference."""
        redemption = services.ship(current_user, redemption_id, data["tracking_reference"])
        db.session.commit()
        return redemption


@admin_blp.route("/redemptions/<int:redemption_id>/complete")
class AdminComplete(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.response(200, StaffRedemptionOut)
    @error_responses(409)
    def post(self, redemption_id):
        """Mark an approved or shipped redemption as completed."""
        redemption = services.complete(current_user, redemption_id)
        db.session.commit()
        return redemption


@admin_blp.route("/redemptions/<int:redemption_id>/reject")
class AdminReject(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.arguments(RejectIn)
    @admin_blp.response(200, StaffRedemptionOut)
    @error_responses(409)
    def post(self, data, redemption_id):
        """Refuse a request not yet approved: the points are released and the stock restored."""
        redemption = services.reject(current_user, redemption_id, data["reason"])
        db.session.commit()
        return redemption


@admin_blp.route("/redemptions/<int:redemption_id>/refund")
class AdminRefund(MethodView):
    @require(FULFIL_REDEMPTIONS)
    @admin_blp.arguments(RefundIn)
    @admin_blp.response(200, StaffRedemptionOut)
    @error_responses(409)
    def post(self, data, redemption_id):
        """Refund an approved, shipped, fulfilled or completed redemption: the member gets the
        points back.  Only an approved (not yet shipped or held) item returns to stock; a coupon
        code stays with the refunded redemption and is never handed out again."""
        redemption = services.refund(current_user, redemption_id, data["reason"])
        db.session.commit()
        return redemption
