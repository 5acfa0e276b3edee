"""Messaging API: preferences, one-click unsubscribe, account emails, the inbox, delivery state.

Also ``init_app``: the mail channel, the catalogue compile, the signal receivers,
and three small HTML pages the email links open (``pages``): unsubscribe, verify the address,
reset the password.  They post back to themselves and redirect (POST/redirect/GET).
"""

from __future__ import annotations

import hashlib
import logging

from flask import Blueprint as FlaskBlueprint
from flask import Flask, current_app, redirect, render_template, request, url_for
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

import ratelimit
from community import auth
from community.permissions import login_required, require
from community.services import member_registered, notification_created
from contract.openapi import error_responses
from contract.requests import accepts
from errors import AppError, NotFound
from extensions import db
from pagination import page_schema, paginate

from . import account, inbox, mail, preferences, render, services, settings
from .models import EmailDelivery
from .permissions import VIEW_DELIVERIES
from .schemas import (
    AcceptedOut,
    DeliveryFilterArgs,
    DeliveryOut,
    EmailChangeIn,
    EmailTokenIn,
    InboxArgs,
    InboxItemOut,
    InboxPageOut,
    MarkedOut,
    PreferencesIn,
    PreferencesOut,
    ResetConfirmIn,
    ResetRequestIn,
    UnreadOut,
    UnsubscribeOut,
    VerifiedOut,
)

log = logging.getLogger(__name__)

prefs_blp = Blueprint("messaging_preferences", __name__, url_prefix="/api/v1",
                      description="Notification preferences and unsubscribe")
account_blp = Blueprint("messaging_account", __name__, url_prefix="/api/v1",
                        description="Account emails: verification, email change, password reset")
inbox_blp = Blueprint("messaging_inbox", __name__, url_prefix="/api/v1/me/inbox",
                      description="In-app notifications")
staff_blp = Blueprint("messaging_staff", __name__, url_prefix="/api/v1/admin",
                      description="Staff: email delivery state")
blueprints = [prefs_blp, account_blp, inbox_blp, staff_blp]


def _client_ip() -> str:
    return request.remote_addr or "unknown"


# --------------------------------------------------------------------------- preferences


@prefs_blp.route("/me/notification-preferences")
class Preferences(MethodView):
    @login_required
    @prefs_blp.response(200, PreferencesOut)
    def get(self):
        """Locale, time zone and channels per category (defaults where the member chose nothing)."""
        return preferences.view(current_user.id)

    @login_required
    @prefs_blp.arguments(PreferencesIn)
    @prefs_blp.response(200, PreferencesOut)
    def patch(self, data):
        """Change the locale, time zone or channels; ``transactional`` cannot be switched off."""
        result = preferences.update(current_user, data)
        db.session.commit()
        return result


# RFC 8058: the mail client posts ``List-Unsubscribe=One-Click`` as a form; the token is the credential.
ONE_CLICK_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
ONE_CLICK_BODY = {
    "required": False,
    "content": {media: {"schema": {"type": "object", "properties": {"List-Unsubscribe": {"type": "string"}}}}
                for media in ONE_CLICK_MEDIA_TYPES},
}


@prefs_blp.route("/unsubscribe/<string:token>")
class OneClickUnsubscribe(MethodView):
    @prefs_blp.doc(requestBody=ONE_CLICK_BODY)
    @prefs_blp.response(200, UnsubscribeOut)
    @accepts(*ONE_CLICK_MEDIA_TYPES)
    @error_responses(s422="The unsubscribe link has expired.")
    def post(self, token):
        """RFC 8058 one-click unsubscribe (the ``List-Unsubscribe`` URL); the token is the credential."""
        result = preferences.unsubscribe(token, "one_click")
        db.session.commit()
        return result


# --------------------------------------------------------------------------- account emails


@account_blp.route("/auth/verify-email")
class VerifyEmail(MethodView):
    @account_blp.arguments(EmailTokenIn)
    @account_blp.response(200, VerifiedOut)
    @error_responses(409, s422="The token is invalid or expired (`invalid_token`), or the body is invalid.")
    def post(self, data):
        """Confirm an address with the token from the email (sign-up or email change)."""
        user = account.verify(data["token"])
        db.session.commit()
        return {"email": user.email, "email_verified": True}


@account_blp.route("/me/verification-email")
class ResendVerification(MethodView):
    @login_required
    @account_blp.response(202, AcceptedOut)
    @error_responses(429)
    def post(self):
        """Send a new verification link (rate limited); nothing if the address is verified."""
        ratelimit.hit(f"verify-resend:{current_user.id}", 5, 3600, "Too many verification emails.")
        sent = account.resend_verification(current_user)
        db.session.commit()
        return {"status": "sent" if sent else "already_verified"}


@account_blp.route("/me/email")
class EmailChange(MethodView):
    @login_required
    @account_blp.arguments(EmailChangeIn)
    @account_blp.response(202, AcceptedOut)
    @error_responses(429)
    def post(self, data):
        """Ask to change the email: a link goes to the new address, which counts once confirmed."""
        ratelimit.hit(f"email-change:{current_user.id}", 5, 3600, "Too many email change requests.")
        account.request_email_change(current_user, data["new_email"], data["password"])
        db.session.commit()
        return {"status": "accepted"}


@account_blp.route("/auth/password-reset")
class PasswordReset(MethodView):
    @account_blp.arguments(ResetRequestIn)
    @account_blp.response(202, AcceptedOut)
    @error_responses(429)
    def post(self, data):
        """Email a reset link if the address has an account; the answer never says whether it has."""
        limit, window = current_app.config["PASSWORD_RESET_RATE_LIMIT"]
        ratelimit.hit(f"pw-reset:ip:{_client_ip()}", limit * 4, window, "Too many reset requests.")
        email_key = hashlib.sha256((data["email"] or "").strip().lower().encode()).hexdigest()[:32]
        ratelimit.hit(f"pw-reset:email:{email_key}", limit, window, "Too many reset requests.")
        account.request_password_reset(data["email"])
        db.session.commit()
        return {"status": "accepted"}


@account_blp.route("/auth/password-reset/confirm")
class PasswordResetConfirm(MethodView):
    @account_blp.arguments(ResetConfirmIn)
    @account_blp.response(204)
    @error_responses(429, s422="The token is invalid or expired (`invalid_token`), or the body is invalid.")
    def post(self, data):
        """Set a new password with the emailed token; ends every session and revokes every API token."""
        ratelimit.hit(f"pw-reset-confirm:ip:{_client_ip()}", 30, 3600, "Too many attempts.")
        user = account.reset_password(data["token"], data["new_password"])
        auth.end_all_sessions(user.id)  # commits: the new password and the sessions' end together


# --------------------------------------------------------------------------- inbox


@inbox_blp.route("")
class Inbox(MethodView):
    @login_required
    @inbox_blp.arguments(InboxArgs, location="query")
    @inbox_blp.response(200, InboxPageOut)
    def get(self, args):
        """Newest first, one page at a time, with the unread count."""
        return inbox.page(current_user.id, page=args["page"], per_page=args["per_page"], unread_only=args["unread"])


@inbox_blp.route("/unread-count")
class UnreadCount(MethodView):
    @login_required
    @inbox_blp.response(200, UnreadOut)
    def get(self):
        """How many visible notifications are unread."""
        return {"unread_count": inbox.unread_count(current_user.id)}


@inbox_blp.route("/<int:notification_id>/read")
class MarkRead(MethodView):
    @login_required
    @inbox_blp.response(200, InboxItemOut)
    def post(self, notification_id):
        """Mark one of the member's notifications read (idempotent)."""
        note = inbox.mark_read(current_user.id, notification_id)
        db.session.commit()
        return note


@inbox_blp.route("/read-all")
class MarkAllRead(MethodView):
    @login_required
    @inbox_blp.response(200, MarkedOut)
    def post(self):
        """Mark every unread notification read; returns how many changed."""
        marked = inbox.mark_all_read(current_user.id)
        db.session.commit()
        return {"marked": marked}


# --------------------------------------------------------------------------- staff


@staff_blp.route("/notifications/<int:notification_id>/delivery")
class NotificationDelivery(MethodView):
    @require(VIEW_DELIVERIES)
    @staff_blp.response(200, DeliveryOut)
    def get(self, notification_id):
        """The email delivery state of one notification."""
        delivery = services.get_delivery(notification_id)
        if delivery is None:
            raise NotFound("This notification has no email delivery (yet).")
        return delivery


@staff_blp.route("/email-deliveries")
class Deliveries(MethodView):
    @require(VIEW_DELIVERIES)
    @staff_blp.arguments(DeliveryFilterArgs, location="query")
    @staff_blp.response(200, page_schema(DeliveryOut, "EmailDeliveryPage"))
    def get(self, args):
        """Email deliveries, newest first, optionally of one member or in one state."""
        query = select(EmailDelivery).order_by(EmailDelivery.id.desc())
        if args["member_id"] is not None:
            query = query.where(EmailDelivery.member_id == args["member_id"])
        if args["state"]:
            query = query.where(EmailDelivery.state == args["state"])
        return paginate(query, args["page"], args["per_page"])


# --------------------------------------------------------------------------- pages

pages = FlaskBlueprint("messaging_pages", __name__, template_folder="templates")


def _page(title: str, message: str, *, form: str | None = None, token: str = "", status: int = 200):
    return render_template("messaging/page.html", title=title, message=message, form=form, token=token), status


@pages.route("/unsubscribe/<string:token>", methods=["GET", "POST"])
def unsubscribe_page(token):
    """The footer link: GET shows a button (link scanners must not unsubscribe), POST does it."""
    try:
        data = preferences.read_unsubscribe_token(token)
    except AppError as exc:
        return _page("Unsubscribe", exc.message, status=exc.status)
    if request.method == "POST":
        preferences.unsubscribe(token, "footer_link")
        db.session.commit()
        return redirect(url_for("messaging_pages.unsubscribe_page", token=token, done=1))
    if request.args.get("done") or not preferences.channel_enabled(data["m"], data["c"], "email"):
        return _page("Unsubscribed", f"You will no longer receive {data['c'].replace('_', ' ')} emails.")
    return _page("Unsubscribe", f"Stop {data['c'].replace('_', ' ')} emails?", form="unsubscribe", token=token)


@pages.route("/account/verify-email", methods=["GET", "POST"])
def verify_page():
    token = request.values.get("token", "")
    if request.method == "POST":
        try:
            account.verify(token)
            db.session.commit()
        except AppError as exc:
            db.session.rollback()
            return _page("Confirm your email", exc.message, status=exc.status)
        return redirect(url_for("messaging_pages.verify_page", done=1))
    if request.args.get("done"):
        return _page("Email confirmed", "Thank you: your email address is confirmed.")
    return _page("Confirm your email", "Confirm this address for your Kinship account?", form="verify", token=token)


@pages.route("/account/reset-password", methods=["GET", "POST"])
def reset_page():
    token = request.values.get("token", "")
    if request.method == "POST":
        try:
            user = account.reset_password(token, request.form.get("new_password", ""))
        except AppError as exc:
            db.session.rollback()
            return _page("Reset your password", exc.message, form="reset", token=token, status=exc.status)
        auth.end_all_sessions(user.id)  # commits: the new password and the sessions' end together
        return redirect(url_for("messaging_pages.reset_page", done=1))
    if request.args.get("done"):
        return _page("Password changed", "Your password is changed. Log in with the new one.")
    return _page("Reset your password", "Choose a new password.", form="reset", token=token)


def _on_notification_created(notification, **_):
    services.queue_for_notification(notification)


def init_app(app: Flask) -> None:
    for key, value in settings.defaults().items():
        app.config.setdefault(key, value)
    mail.init_mail(app)
    render.ensure_compiled()
    app.register_blueprint(pages)
    # These pages and the one-click endpoint carry their own credential (a signed or random
    # token) and no ambient authority, so CSRF protection does not apply (RFC 8058 clients
    # send no CSRF header; the pages post plain forms).
    auth.CSRF_EXEMPT.update({"messaging_pages.unsubscribe_page", "messaging_pages.verify_page",
                             "messaging_pages.reset_page", "messaging_preferences.OneClickUnsubscribe"})
    # A suspended member (read-only in the community) still controls their own mail and account.
    auth.SUSPENDED_MAY.update({
        "messaging_preferences.Preferences", "messaging_preferences.OneClickUnsubscribe",
        "messaging_account.VerifyEmail", "messaging_account.ResendVerification", "messaging_account.EmailChange",
        "messaging_account.PasswordReset", "messaging_account.PasswordResetConfirm",
        "messaging_inbox.MarkRead", "messaging_inbox.MarkAllRead",
        "messaging_pages.unsubscribe_page", "messaging_pages.verify_page", "messaging_pages.reset_page",
    })
    notification_created.connect(_on_notification_created)
    member_registered.connect(account.on_member_registered)
    app.extensions["kinship_mail"] = mail.describe(app)
