"""Sign in and out, the language switch, the home page with waiting work, and ``GET /``."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from community import auth
from community.api import password_login
from community.models import utcnow
from community.permissions import has_permission
from errors import AppError
from extensions import db
from forums.models import Flag
from forums.permissions import MODERATE
from points.models import PendingAward
from points.permissions import REVIEW_AWARDS
from rewards.models import Redemption
from rewards.permissions import FULFIL_REDEMPTIONS
from surveys.models import Survey
from surveys.permissions import MANAGE_SURVEYS

from . import nav
from .web import LANGUAGES, bp, is_staff, safe_next, staff_page

SURVEY_CLOSING_DAYS = 7
LANDING_CSP = "default-src 'self'; img-src 'self' data:; script-src 'none'; object-src 'none'"
# States a redemption waits in for staff (the processing job moves the others on its own).
WAITING_STATES = ("awaiting_fulfilment", "approved")

nav.register(nav.NavItem("home", _l("Waiting work"), "console.home", order=0))


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = safe_next(request.values.get("next"), url_for("console.home"))
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = password_login(email, request.form.get("password", ""))
        except AppError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return render_template("console/login.html", email=email, next=target), exc.status
        auth.start_session(user)
        if not is_staff(user):
            # A member may hold a session (the same cookie as the member app) but not the console.
            flash(_("Signed in, but this account has no staff role."), "error")
        return redirect(target, code=303)
    if is_staff(current_user):
        return redirect(target)
    return render_template("console/login.html", email="", next=target)


@bp.post("/logout")
def logout():
    auth.end_session()
    flash(_("Signed out."), "info")
    return redirect(url_for("console.login"), code=303)


@bp.post("/language")
def set_language():
    lang = request.form.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
    return redirect(safe_next(request.form.get("back") or _local_referrer(), url_for("console.home")), code=303)


def _local_referrer() -> str | None:
    from urllib.parse import urlsplit

    ref = request.referrer
    if not ref or urlsplit(ref).netloc != request.host:
        return None
    parts = urlsplit(ref)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@bp.get("/")
@staff_page()
def home():
    return render_template("console/home.html", cards=nav.waiting_for(current_user))


def _domain_waiting(user) -> list[nav.Waiting]:
    cards = []
    if has_permission(user, MODERATE):
        n = db.session.scalar(select(func.count()).select_from(Flag).where(Flag.status == "open"))
        cards.append(nav.Waiting(_l("Open flags"), n, "console.flags"))
    if has_permission(user, FULFIL_REDEMPTIONS):
        n = db.session.scalar(
            select(func.count()).select_from(Redemption).where(Redemption.state.in_(WAITING_STATES))
        )
        cards.append(nav.Waiting(_l("Redemptions waiting for staff"), n, "console.redemptions"))
    if has_permission(user, MANAGE_SURVEYS):
        now = utcnow()
        n = db.session.scalar(
            select(func.count()).select_from(Survey).where(
                Survey.status == "published", Survey.closes_at > now,
                Survey.closes_at <= now + timedelta(days=SURVEY_CLOSING_DAYS),
            )
        )
        cards.append(nav.Waiting(_l("Surveys closing within a week"), n, "console.surveys"))
    if has_permission(user, REVIEW_AWARDS):
        n = db.session.scalar(select(func.count()).select_from(PendingAward).where(PendingAward.status == "pending"))
        cards.append(nav.Waiting(_l("Awards waiting for a second approval"), n, "console.approvals"))
    return cards


nav.register_waiting(_domain_waiting)


def init_landing(app: Flask) -> None:
    """``GET /``: what this server is, with links to the console and the API docs."""

    @app.get("/")
    def landing():
        response = app.make_response(render_template("console/landing.html"))
        response.headers["Content-Security-Policy"] = LANDING_CSP
        return response
