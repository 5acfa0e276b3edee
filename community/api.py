"""Accounts API: auth, the member's own account, tokens, and admin user/role management."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app, request
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

import ratelimit
from contract import fields as f
from contract.fields import rfc3339
from contract.openapi import error_responses
from csv_export import csv_response
from extensions import db
from pagination import PageArgs, page_of, page_schema, paginate
from security.http import no_store

from . import auth, services
from .models import GRANTABLE_ROLES, ROLES, AuditLog, User, UserRole
from .permissions import ADMIN_USERS, READ_AUDIT, login_required, require
from .schemas import (
    AuditOut,
    BirthdayCorrectionIn,
    CsrfOut,
    LoginIn,
    LogoutEverywhereIn,
    LogoutEverywhereOut,
    MemberDatesIn,
    MemberOut,
    NotificationOut,
    PasswordChangeIn,
    ProfileIn,
    RegisterIn,
    RoleIn,
    SessionOut,
    StaffMemberOut,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
)

auth_blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Registration and sessions")
me_blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The logged-in member's account")
admin_blp = Blueprint("admin_users", __name__, url_prefix="/api/v1/admin", description="Admin: members and roles")
blueprints = [auth_blp, me_blp, admin_blp]


def init_app(app) -> None:
    """Refusals that must be audited (``services.Refused``): roll the request back, keep the record."""
    from errors import handle_app_error

    def _refused(error: services.Refused):
        db.session.rollback()
        db.session.add(AuditLog(**error.audit))
        db.session.commit()
        return handle_app_error(error)

    app.register_error_handler(services.Refused, _refused)


def client_ip() -> str:
    return request.remote_addr or "unknown"


@auth_blp.route("/register")
class Register(MethodView):
    @no_store
    @auth_blp.arguments(RegisterIn)
    @auth_blp.response(201, SessionOut)
    @error_responses(409, 429)
    def post(self, data):
        """Create a member account (optionally with a referral code) and log in."""
        limit, window = current_app.config["REGISTER_RATE_LIMIT"]
        ratelimit.hit(f"register:ip:{client_ip()}", limit, window, "Too many sign-ups from this address.")
        user = services.register(
            email=data["email"],
            password=data["password"],
            display_name=data["display_name"],
            referral_code=data.get("referral_code"),
            birthday=data.get("birthday"),
            signup_ip=client_ip(),
        )
        db.session.commit()
        token = auth.start_session(user)
        return {"member": user, "csrf_token": token}


def password_login(email: str, password: str):
    """Rate-limited email + password check shared by the API and the staff console's sign-in."""
    limit, window = current_app.config["LOGIN_RATE_LIMIT"]
    ratelimit.hit(f"login:ip:{client_ip()}", limit * 5, window, "Too many login attempts from this address.")
    email_key = (email or "").strip().lower()
    ratelimit.hit(f"login:email:{email_key}", limit, window, "Too many login attempts for this account.")
    return services.authenticate(email, password)


@auth_blp.route("/login")
class Login(MethodView):
    @no_store
    @auth_blp.arguments(LoginIn)
    @auth_blp.response(200, SessionOut)
    @error_responses(401, 429)
    def post(self, data):
        """Log in with email and password; sets the session cookie and returns a CSRF token."""
        user = password_login(data["email"], data["password"])
        token = auth.start_session(user)
        return {"member": user, "csrf_token": token}


@auth_blp.route("/logout")
class Logout(MethodView):
    @auth_blp.response(204)
    def post(self):
        """End this session; the cookie stops working even if replayed."""
        auth.end_session()


@auth_blp.route("/logout-everywhere")
class LogoutEverywhere(MethodView):
    @login_required
    @no_store
    @auth_blp.arguments(LogoutEverywhereIn)
    @auth_blp.response(200, LogoutEverywhereOut)
    def post(self, data):
        """Log out everywhere: every cookie session of the account ends, this one included (a
        lost phone, a shared computer); with ``revoke_tokens`` every API token is revoked too.
        Allowed while suspended, so a member can always lock a stolen account."""
        user = current_user._get_current_object()
        revoked = services.log_out_everywhere(user, revoke_tokens=data["revoke_tokens"])
        # One transaction: the revocations, the audit line and every session row (this one's too).
        ended = auth.end_all_sessions(user.id)
        auth.forget_session()
        return {"sessions_ended": ended, "tokens_revoked": revoked}


@auth_blp.route("/csrf")
class Csrf(MethodView):
    @auth_blp.response(200, CsrfOut)
    def get(self):
        """The CSRF token to echo in ``X-CSRF-Token`` on cookie-authenticated writes."""
        return {"csrf_token": auth.csrf_token()}


@me_blp.route("")
class Me(MethodView):
    @login_required
    @no_store
    @me_blp.response(200, MemberOut)
    def get(self):
        """The logged-in member."""
        return current_user

    @login_required
    @no_store
    @me_blp.arguments(ProfileIn)
    @me_blp.response(200, MemberOut)
    @error_responses(409)
    def patch(self, data):
        """Edit the profile (display name, bio; the birthday can be set once, staff correct it)."""
        services.update_profile(current_user, data)
        db.session.commit()
        return current_user


@me_blp.route("/password")
class Password(MethodView):
    @login_required
    @no_store
    @me_blp.arguments(PasswordChangeIn)
    @me_blp.response(200, CsrfOut)
    def post(self, data):
        """Change the password: every other session ends, every API token is revoked; this
        session gets a fresh id."""
        services.change_password(current_user, data["current_password"], data["new_password"])
        user = current_user._get_current_object()
        auth.end_all_sessions(user.id)  # commits: the new password and the sessions' end together
        return {"csrf_token": auth.start_session(user)}


@me_blp.route("/tokens")
class Tokens(MethodView):
    @login_required
    @me_blp.arguments(PageArgs, location="query")
    @me_blp.response(200, page_schema(TokenOut, "TokenPage"))
    def get(self, args):
        """API tokens of the logged-in member (secrets are never shown again)."""
        return page_of(list(services.list_tokens(current_user)), args["page"], args["per_page"])

    @login_required
    @no_store
    @me_blp.arguments(TokenIn)
    @me_blp.response(201, TokenCreatedOut)
    def post(self, data):
        """Create an API token for integrations (needs the current password); the secret is in
        this response only."""
        token, secret = services.create_token(current_user, data["name"], password=data["password"])
        db.session.commit()
        token.token = secret  # transient: serialised in this response only, never stored
        return token


@me_blp.route("/tokens/<int:token_id>")
class TokenItem(MethodView):
    @login_required
    @me_blp.response(204)
    def delete(self, token_id):
        """Revoke a token; requests with it get 401 from now on."""
        services.revoke_token(current_user, token_id)
        db.session.commit()


@me_blp.route("/notifications")
class Notifications(MethodView):
    @login_required
    @me_blp.arguments(PageArgs, location="query")
    @me_blp.response(200, page_schema(NotificationOut, "NotificationPage"))
    def get(self, args):
        """The member's latest notifications from the outbox (newest first)."""
        return page_of(list(services.list_notifications(current_user.id)), args["page"], args["per_page"])


class UserFilterArgs(PageArgs):
    role = f.String(load_default=None, validate=ma.validate.OneOf(ROLES))
    email = f.String(load_default=None, validate=ma.validate.Length(min=1, max=254),
                     metadata={"description": "A fragment of the email address"})


@admin_blp.route("/users")
class AdminUsers(MethodView):
    @require(ADMIN_USERS)
    @admin_blp.arguments(UserFilterArgs, location="query")
    @admin_blp.response(200, page_schema(StaffMemberOut, "StaffMemberPage"))
    def get(self, args):
        """Members, optionally filtered by role or email fragment."""
        query = select(User).order_by(User.id)
        if args.get("role"):
            query = query.where(User.id.in_(select(UserRole.user_id).where(UserRole.role == args["role"])))
        if args.get("email"):
            query = query.where(User.email.contains(args["email"].lower()))
        return paginate(query, args["page"], args["per_page"])


@admin_blp.route("/users/<int:user_id>")
class AdminUser(MethodView):
    @require(ADMIN_USERS)
    @admin_blp.response(200, StaffMemberOut)
    def get(self, user_id):
        """One member, with staff-only fields."""
        return services.get_user(user_id)


@admin_blp.route("/users/<int:user_id>/roles")
class AdminUserRoles(MethodView):
    @require(ADMIN_USERS)
    @admin_blp.arguments(RoleIn)
    @admin_blp.response(200, StaffMemberOut)
    @error_responses(409)
    def post(self, data, user_id):
        """Grant a role."""
        user = services.grant_role(current_user, user_id, data["role"])
        db.session.commit()
        return user


@admin_blp.route(f"/users/<int:user_id>/roles/<any({', '.join(GRANTABLE_ROLES)}):role>")
class AdminUserRole(MethodView):
    @require(ADMIN_USERS)
    @admin_blp.response(200, StaffMemberOut)
    @error_responses(409)
    def delete(self, user_id, role):
        """Revoke a role."""
        user = services.revoke_role(current_user, user_id, role)
        db.session.commit()
        return user


@admin_blp.route("/users/<int:user_id>/birthday")
class AdminUserBirthday(MethodView):
    @require(ADMIN_USERS)
    @admin_blp.arguments(BirthdayCorrectionIn)
    @admin_blp.response(200, StaffMemberOut)
    def put(self, data, user_id):
        """Correct a member's birthday (members set theirs once); audited."""
        user = services.correct_birthday(current_user, user_id, data["birthday"], data["reason"])
        db.session.commit()
        return user


@admin_blp.route("/users/<int:user_id>/dates")
class AdminUserDates(MethodView):
    @require(ADMIN_USERS)
    @admin_blp.arguments(MemberDatesIn)
    @admin_blp.response(200, StaffMemberOut)
    def patch(self, data, user_id):
        """Set the member's renewal date and / or contract start date (journeys' date triggers
        ``renewal_on`` and ``contract_on``; null clears one); audited."""
        reason = data.pop("reason")
        user = services.set_member_dates(current_user, user_id, data, reason)
        db.session.commit()
        return user


class AuditArgs(PageArgs):
    action = f.String(load_default=None, validate=ma.validate.Length(min=1, max=64),
                      metadata={"description": "An action or a prefix of one, e.g. `forums.`"})
    actor_id = f.QueryId(load_default=None)
    target_type = f.String(load_default=None, validate=ma.validate.Length(min=1, max=32))


def _audit_query(args):
    query = select(AuditLog).order_by(AuditLog.id.desc())
    if args.get("action"):
        query = query.where(AuditLog.action.startswith(args["action"]))
    if args.get("actor_id") is not None:
        query = query.where(AuditLog.actor_id == args["actor_id"])
    if args.get("target_type"):
        query = query.where(AuditLog.target_type == args["target_type"])
    return query


@admin_blp.route("/audit")
class Audit(MethodView):
    @require(READ_AUDIT)
    @admin_blp.arguments(AuditArgs, location="query")
    @admin_blp.response(200, page_schema(AuditOut, "AuditPage"))
    def get(self, args):
        """The audit log (role changes, moderator actions, adjustments, pins), newest first."""
        return paginate(_audit_query(args), args["page"], args["per_page"])


@admin_blp.route("/audit.csv")
class AuditExport(MethodView):
    @require(READ_AUDIT)
    @admin_blp.arguments(AuditArgs, location="query")
    @admin_blp.response(200, content_type="text/csv")
    def get(self, args):
        """The filtered audit log as CSV, streamed row by row."""
        query = _audit_query(args).execution_options(yield_per=500)

        def rows():
            for e in db.session.scalars(query):
                yield [e.id, rfc3339(e.created_at), e.actor_id, e.action, e.target_type, e.target_id, e.reason,
                       e.details]

        return csv_response(
            "audit.csv", ["id", "created_at", "actor_id", "action", "target_type", "target_id", "reason", "details"],
            rows(),
        )
