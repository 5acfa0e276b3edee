"""Referrals: sign-up with a code, conversion on the referee's first purchase, guards, funnel.

* ``community.services.register`` validates the code, sets ``User.referred_by_id`` (so a member
  has at most one referrer) and sends ``member_registered`` inside its transaction; the receiver
  here records the ``Referral`` row and a ``referral_signup`` interaction for the referrer in
  that same transaction.
* The qualifying event is the referee's first purchase (an integration event): the referral
  moves ``signed_up -> converted`` by one guarded UPDATE, so it converts, and rewards, once.
  Both sides then get a ``referral_converted`` interaction (points per the earning rules).
* Guards: no self-referral (a CHECK constraint, and a referee whose sign-up IP equals the
  referrer's own is flagged), at most ``REFERRAL_MONTHLY_CAP`` rewarded referrals per referrer
  per calendar month (further conversions are marked ``capped``), and a sign-up is flagged when
  ``REFERRAL_IP_THRESHOLD`` or more referred sign-ups came from its IP within
  ``REFERRAL_IP_WINDOW_HOURS``.  Flagged referrals still convert, but their rewards wait
  (``held``) until staff approve or reject them.
* A refund of the converting purchase claws back both sides' referral rewards as it does the
  purchase's own points: in full for a full refund (a reward still held for review is rejected),
  in proportion for a partial one (``services.apply_refund``).  Otherwise a pair of accounts
  could buy, collect both bonuses and refund.
* Funnel: "invited" counts invitations members record (``POST /api/v1/me/referrals/invites``
  with the invitee's address, stored only as an HMAC), "signed up" counts referrals, "converted"
  counts conversions, and days to conversion runs from sign-up to first purchase.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from community import services as community_services
from community.models import User, utcnow
from errors import Conflict, NotFound, ValidationError
from extensions import db
from messaging.webhooks import events as webhooks

from . import ledger
from .models import Referral, ReferralInvite

DEFAULT_MONTHLY_CAP = 10
DEFAULT_IP_THRESHOLD = 3
DEFAULT_IP_WINDOW_HOURS = 24


def _setting(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


def referral_link(code: str) -> str:
    """The member's referral link: ``REFERRAL_JOIN_URL`` (default ``PUBLIC_BASE_URL/join``) with
    ``ref=<code>``; never built from the request's Host header."""
    from urllib.parse import quote

    from security.http import public_url

    base = current_app.config.get("REFERRAL_JOIN_URL") or public_url("/join")
    return f"{base}{'&' if '?' in base else '?'}ref={quote(code)}"


def on_member_registered(user: User, referrer: User | None = None, signup_ip: str | None = None, **_) -> None:
    """Receiver of ``community.services.member_registered`` (runs in the registration transaction)."""
    if referrer is None or referrer.id == user.id:
        return
    from .services import record_interaction

    flag = _suspicion(referrer, signup_ip)
    referral = Referral(
        referrer_id=referrer.id, referee_id=user.id, signup_ip=signup_ip, flag_reason=flag, signed_up_at=utcnow()
    )
    db.session.add(referral)
    db.session.flush()
    record_interaction(
        referrer.id, "referral_signup", key=f"referral_signup:{referral.id}", source_type="referral",
        source_id=referral.id, meta={"referee_id": user.id},
    )


def _suspicion(referrer: User, signup_ip: str | None) -> str | None:
    if not signup_ip:
        return None
    if referrer.signup_ip and referrer.signup_ip == signup_ip:
        return "The referee signed up from the referrer's own sign-up address."
    since = utcnow() - timedelta(hours=_setting("REFERRAL_IP_WINDOW_HOURS", DEFAULT_IP_WINDOW_HOURS))
    earlier = db.session.scalar(
        select(func.count()).select_from(Referral).where(Referral.signup_ip == signup_ip,
                                                         Referral.signed_up_at >= since)
    )
    threshold = _setting("REFERRAL_IP_THRESHOLD", DEFAULT_IP_THRESHOLD)
    if earlier + 1 >= threshold:
        return f"{earlier + 1} referred sign-ups from one address within the review window."
    return None


def on_purchase(member_id: int, at: datetime, interaction_id: int | None = None) -> Referral | None:
    """The referee's first purchase converts their referral (once) and rewards or holds it."""
    converted = db.session.execute(
        update(Referral)
        # A purchase dated before the sign-up was not caused by the referral.
        .where(Referral.referee_id == member_id, Referral.status == "signed_up", Referral.signed_up_at <= at)
        .values(status="converted", converted_at=at, conversion_interaction_id=interaction_id)
        .execution_options(synchronize_session=False)
    )
    if converted.rowcount != 1:
        return None
    referral = db.session.scalar(
        select(Referral).where(Referral.referee_id == member_id).execution_options(populate_existing=True)
    )
    webhooks.publish("referral.converted", {"referral_id": referral.id, "referrer_id": referral.referrer_id,
                     "referee_id": member_id, "converted_at": at})
    if referral.flag_reason:
        referral.reward_status = "held"
        db.session.flush()
        return referral
    # The cap counts this referrer's rewards this month: serialise them per referrer.
    ledger.lock_member(referral.referrer_id)
    month = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    rewarded = db.session.scalar(
        select(func.count()).select_from(Referral).where(
            Referral.referrer_id == referral.referrer_id, Referral.reward_status == "rewarded",
            Referral.rewarded_at >= month, Referral.rewarded_at < next_month,
        )
    )
    if rewarded >= _setting("REFERRAL_MONTHLY_CAP", DEFAULT_MONTHLY_CAP):
        referral.reward_status = "capped"
        db.session.flush()
        return referral
    _reward(referral, at)
    return referral


def _reward(referral: Referral, at: datetime) -> None:
    referral.reward_status = "rewarded"
    referral.rewarded_at = at
    db.session.flush()
    _grant(referral, at)


def _grant(referral: Referral, at: datetime) -> None:
    """Both sides' ``referral_converted`` interactions (keys make a second grant impossible)."""
    from .services import record_interaction

    # Referee first, like the purchase that converts it: one lock order, no deadlock with it.
    for side, member_id in (("referee", referral.referee_id), ("referrer", referral.referrer_id)):
        interaction = record_interaction(
            member_id, "referral_converted", key=f"referral_converted:{referral.id}:{side}",
            source_type="referral", source_id=referral.id, occurred_at=at, meta={"side": side},
        )
        # Thank both sides (the programme's "thank the referrer" step); once per side.
        community_services.notify(
            member_id, "points.referral_rewarded",
            {"referral_id": referral.id, "side": side, "points": interaction.points},
            dedupe_key=f"points.referral_rewarded:{referral.id}:{side}",
        )


def review(referral_id: int, *, approve: bool, actor_id: int, reason: str) -> Referral:
    """Staff decision on a held referral reward: approve (reward both sides now) or reject."""
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    referral = db.session.get(Referral, referral_id)
    if referral is None:
        raise NotFound("No such referral.")
    if actor_id in (referral.referrer_id, referral.referee_id):
        community_services.refuse_self_dealing(
            actor_id, "points.referral.approve" if approve else "points.referral.reject", "referral", referral.id,
            "You cannot review a referral you are part of.",
        )
    now = utcnow()
    # Guarded: two reviewers deciding at once cannot both win (nor reward twice).
    decided = db.session.execute(
        update(Referral)
        .where(Referral.id == referral_id, Referral.reward_status == "held")
        .values(
            reward_status="rewarded" if approve else "rejected",
            rewarded_at=now if approve else None,
            reviewed_by_id=actor_id,
            reviewed_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if decided.rowcount != 1:
        raise Conflict("Only held referral rewards can be reviewed.", code="not_held")
    referral = db.session.scalar(
        select(Referral).where(Referral.id == referral_id).execution_options(populate_existing=True)
    )
    if approve:
        _grant(referral, now)
        from .services import sync_referral_clawback

        sync_referral_clawback(referral, reason="Referral reward: the converting purchase was partly refunded")
    community_services.audit(
        actor_id, "points.referral.approve" if approve else "points.referral.reject", "referral", referral.id,
        reason=reason.strip(), details={"referrer_id": referral.referrer_id, "referee_id": referral.referee_id},
    )
    db.session.flush()
    return referral


def record_invite(member_id: int, email: str) -> tuple[ReferralInvite, bool]:
    """Record that the member invited ``email`` (kept as an HMAC only); returns (invite, created)."""
    email = community_services.normalise_email(email)
    digest = hmac.new(current_app.config["SECRET_KEY"].encode(), email.encode(), hashlib.sha256).hexdigest()
    existing = db.session.scalar(
        select(ReferralInvite).where(ReferralInvite.member_id == member_id, ReferralInvite.email_hash == digest)
    )
    if existing is not None:
        return existing, False
    invite = ReferralInvite(member_id=member_id, email_hash=digest, created_at=utcnow(), invited_on=utcnow().date())
    db.session.add(invite)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:  # a concurrent identical invite won: same outcome
        existing = db.session.scalar(
            select(ReferralInvite).where(ReferralInvite.member_id == member_id, ReferralInvite.email_hash == digest)
        )
        if existing is None:
            raise
        return existing, False
    return invite, True


def _days(referral: Referral) -> float:
    return (referral.converted_at - referral.signed_up_at).total_seconds() / 86400


def member_funnel(member_id: int) -> dict:
    invited = db.session.scalar(
        select(func.count()).select_from(ReferralInvite).where(ReferralInvite.member_id == member_id)
    )
    referrals = list(db.session.scalars(select(Referral).where(Referral.referrer_id == member_id)))
    converted = [r for r in referrals if r.status == "converted"]
    return {
        "invited": invited,
        "signed_up": len(referrals),
        "converted": len(converted),
        "rewarded": sum(1 for r in referrals if r.reward_status == "rewarded"),
        "avg_days_to_conversion": round(sum(map(_days, converted)) / len(converted), 2) if converted else None,
    }


def weekly_funnel(weeks: int, now: datetime | None = None) -> list[dict]:
    """Programme-wide funnel per ISO week (Monday start), newest first, for the last ``weeks`` weeks."""
    now = now or utcnow()
    this_week = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    start = this_week - timedelta(weeks=weeks - 1)
    buckets = {
        start + timedelta(weeks=i): {"invited": 0, "signed_up": 0, "converted": 0, "days": []} for i in range(weeks)
    }

    def bucket(at: datetime):
        return buckets.get((at - timedelta(days=at.weekday())).replace(hour=0, minute=0, second=0, microsecond=0))

    invites = select(ReferralInvite.created_at).where(ReferralInvite.created_at >= start)
    for (created_at,) in db.session.execute(invites):
        if (b := bucket(created_at)) is not None:
            b["invited"] += 1
    for (signed_up_at,) in db.session.execute(select(Referral.signed_up_at).where(Referral.signed_up_at >= start)):
        if (b := bucket(signed_up_at)) is not None:
            b["signed_up"] += 1
    for referral in db.session.scalars(select(Referral).where(Referral.converted_at >= start)):
        if (b := bucket(referral.converted_at)) is not None:
            b["converted"] += 1
            b["days"].append(_days(referral))
    return [
        {
            "week_start": week.date(),
            "invited": b["invited"],
            "signed_up": b["signed_up"],
            "converted": b["converted"],
            "avg_days_to_conversion": round(sum(b["days"]) / len(b["days"]), 2) if b["days"] else None,
        }
        for week, b in sorted(buckets.items(), reverse=True)
    ]
