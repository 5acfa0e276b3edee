"""Admins: members (search, member page), role grants, point adjustments, the audit log with
filters and CSV, and background job health (queues, failed jobs, workers)."""

from __future__ import annotations

import secrets

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import or_, select

from community import services as community_services
from community.api import _audit_query
from community.models import GRANTABLE_ROLES, User, UserRole
from community.permissions import ADMIN_USERS, READ_AUDIT, has_permission
from community.schemas import RoleIn
from csv_export import csv_response
from extensions import db, get_redis
from forums import services as forum_services
from jobs import QUEUES
from pagination import paginate
from points import ledger, reports
from points import services as points_services
from points.models import PendingAward
from points.permissions import ADJUST
from points.schemas import PointsAdjustmentIn
from rewards import services as rewards_services
from tiers import services as tier_services

from . import nav
from .web import bp, form_int, form_str, page_args, staff_page, validated

nav.register(nav.NavItem("admin", _l("Members"), "console.members", ADMIN_USERS, 10))
nav.register(nav.NavItem("admin", _l("Audit log"), "console.audit", READ_AUDIT, 20))
nav.register(nav.NavItem("admin", _l("Background jobs"), "console.jobs_health", ADMIN_USERS, 30))


@bp.get("/members")
@staff_page(ADMIN_USERS)
def members():
    q = (request.args.get("q") or "").strip()
    role = request.args.get("role") or ""
    page, per_page = page_args(25)
    query = select(User).order_by(User.id)
    if q:
        term = q.lower()
        conditions = [User.email.contains(term), User.display_name.contains(q)]
        if q.isdigit():
            conditions.append(User.id == int(q))
        query = query.where(or_(*conditions))
    if role in GRANTABLE_ROLES or role == "member":
        query = query.where(User.id.in_(select(UserRole.user_id).where(UserRole.role == role)))
    result = paginate(query, page, per_page)
    return render_template("console/members.html", result=result, q=q, role=role, roles=GRANTABLE_ROLES)


@bp.get("/members/<int:member_id>")
@staff_page(ADMIN_USERS)
def member(member_id):
    user = community_services.get_user(member_id)
    balance = ledger.get_balance(member_id)
    available = balance.available - ledger.due_unexpired(member_id)
    page, per_page = page_args(20)
    history = paginate(reports.history_query(member_id), page, per_page)
    history["items"] = reports.with_deltas(history["items"])
    tier = tier_services.my_tier(user)
    sanctions = forum_services.list_sanctions(member_id)
    redemptions = list(db.session.scalars(rewards_services.member_redemptions_query(member_id).limit(20)))
    return render_template(
        "console/member.html", user=user, balance=balance, available=available, history=history, tier=tier,
        sanctions=sanctions, redemptions=redemptions, grantable=GRANTABLE_ROLES,
        can_adjust=has_permission(current_user, ADJUST), request_id=secrets.token_hex(16),
        sections=nav.member_sections(user, current_user),
    )


@bp.post("/members/<int:member_id>/roles")
@staff_page(ADMIN_USERS)
def member_role(member_id):
    data = validated(RoleIn(), {"role": request.form.get("role", "")})
    if request.form.get("op") == "revoke":
        community_services.revoke_role(current_user, member_id, data["role"])
        message = _("Role %(role)s revoked.", role=_(data["role"]))
    else:
        community_services.grant_role(current_user, member_id, data["role"])
        message = _("Role %(role)s granted.", role=_(data["role"]))
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("console.member", member_id=member_id), code=303)


@bp.post("/members/<int:member_id>/adjustments")
@staff_page(ADJUST)
def member_adjust(member_id):
    """A manual credit or debit.  The form carries a ``request_id`` made when it was rendered:
    submitting it twice (double click, reload) posts one ledger entry."""
    data = validated(PointsAdjustmentIn(), {
        "member_id": member_id, "delta": form_int("delta"), "reason": form_str("reason", ""),
        "request_id": form_str("request_id"),
    })
    entry = points_services.adjust_points(
        current_user.id, member_id, data["delta"], data["reason"], data.get("request_id") or secrets.token_hex(16)
    )
    db.session.commit()
    if isinstance(entry, PendingAward):  # a credit above the threshold waits for a second admin (four-eyes)
        flash(_("A credit of %(n)s points needs a second admin: request #%(id)s waits in Award approvals.",
                n=entry.points, id=entry.id), "info")
    else:
        flash(_("Adjustment recorded (entry #%(id)s).", id=entry.id), "success")
    return redirect(url_for("console.member", member_id=member_id), code=303)


def _audit_filters() -> dict:
    filters = {}
    for name in ("action", "target_type"):
        if request.args.get(name):
            filters[name] = request.args[name]
    if (request.args.get("actor_id") or "").isdigit():
        filters["actor_id"] = int(request.args["actor_id"])
    return filters


@bp.get("/audit")
@staff_page(READ_AUDIT)
def audit():
    page, per_page = page_args(50)
    filters = _audit_filters()
    result = paginate(_audit_query(filters), page, per_page)
    ids = {e.actor_id for e in result["items"] if e.actor_id}
    names = dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all()) if ids else {}
    return render_template("console/audit.html", result=result, names=names, moderation=False, current=filters)


@bp.get("/audit.csv")
@staff_page(READ_AUDIT)
def audit_csv():
    query = _audit_query(_audit_filters()).execution_options(yield_per=500)

    def rows():
        for e in db.session.scalars(query):
            yield [e.id, e.created_at.isoformat(), e.actor_id, e.action, e.target_type, e.target_id, e.reason,
                   e.details]

    return csv_response(
        "audit.csv", ["id", "created_at", "actor_id", "action", "target_type", "target_id", "reason", "details"],
        rows(),
    )


@bp.get("/jobs")
@staff_page(ADMIN_USERS)
def jobs_health():
    """RQ's own registries, read from Redis: queue lengths, failed jobs with their error, workers."""
    conn = get_redis()
    queues, failed = [], []
    for name in QUEUES:
        queue = Queue(name, connection=conn)
        registry = FailedJobRegistry(queue=queue)
        queues.append({"name": name, "queued": queue.count, "started": StartedJobRegistry(queue=queue).count,
                       "failed": registry.count})
        for job in queue.job_class.fetch_many(registry.get_job_ids(0, 19), connection=conn):
            if job is not None:
                failed.append({"id": job.id, "queue": name, "func": job.func_name, "ended_at": job.ended_at,
                               "error": (job.latest_result().exc_string if job.latest_result() else "")[-500:]})
    workers = [{"name": w.name, "state": w.get_state(), "queues": ", ".join(w.queue_names()),
                "last_heartbeat": w.last_heartbeat} for w in Worker.all(connection=conn)]
    return render_template("console/jobs.html", queues=queues, failed=failed, workers=workers)


