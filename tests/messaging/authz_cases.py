from tests.authz import EVERYONE, LOGGED_IN, Case

ADMIN = frozenset({"admin"})


def _unsubscribe_token(ctx):
    from messaging.preferences import unsubscribe_token

    return {"token": unsubscribe_token(ctx.users["owner"].id, "research")}


def _owners_notification(ctx):
    from community.services import notify
    from extensions import db

    notify(ctx.users["owner"].id, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    db.session.commit()
    from sqlalchemy import select

    from community.models import Notification

    return {"notification_id": db.session.scalar(select(Notification.id).order_by(Notification.id.desc()))}


CASES = [
    Case("GET", "/api/v1/me/notification-preferences", LOGGED_IN),
    Case("PATCH", "/api/v1/me/notification-preferences", LOGGED_IN, body={"locale": "zh-CN"}),
    # The signed token is the credential: anyone holding the link may use it (idempotent).
    Case("POST", "/api/v1/unsubscribe/<string:token>", EVERYONE, setup=_unsubscribe_token),
    Case("POST", "/api/v1/auth/verify-email", EVERYONE, body={"token": "x" * 43},
         note="an unknown token is a 422 for everyone"),
    Case("POST", "/api/v1/me/verification-email", LOGGED_IN),
    Case("POST", "/api/v1/me/email", LOGGED_IN,
         body={"new_email": "new@example.com", "password": "wrong one!"}),
    Case("POST", "/api/v1/auth/password-reset", EVERYONE,
         body=lambda ctx, p: {"email": f"nobody{id(p)}@example.com"}),
    Case("POST", "/api/v1/auth/password-reset/confirm", EVERYONE,
         body={"token": "x" * 43, "new_password": "a new long password"}),
    Case("GET", "/api/v1/me/inbox", LOGGED_IN),
    Case("GET", "/api/v1/me/inbox/unread-count", LOGGED_IN),
    # Others get 404: the notification is not theirs.
    Case("POST", "/api/v1/me/inbox/<int:notification_id>/read", frozenset({"owner"}), setup=_owners_notification),
    Case("POST", "/api/v1/me/inbox/read-all", LOGGED_IN),
    Case("GET", "/api/v1/admin/notifications/<int:notification_id>/delivery", ADMIN, setup=_owners_notification),
    Case("GET", "/api/v1/admin/email-deliveries", ADMIN),
]
