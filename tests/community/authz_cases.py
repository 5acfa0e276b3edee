from tests.authz import EVERYONE, LOGGED_IN, Case
from tests.conftest import TEST_PASSWORD

WRITERS = LOGGED_IN - {"suspended"}


def _other_user(ctx):
    return {"user_id": ctx.users["member"].id}


def _token(ctx):
    from community.services import create_token
    from extensions import db

    token, _ = create_token(ctx.users["owner"], "ci")
    db.session.commit()
    return {"token_id": token.id}


CASES = [
    # A suspended member (logged in) cannot open another account: read-only means that too.
    Case("POST", "/api/v1/auth/register", EVERYONE - {"suspended"},
         body=lambda ctx, p: {"email": f"new{id(p)}@example.com", "password": "long enough pw", "display_name": "N"}),
    Case("POST", "/api/v1/auth/login", EVERYONE, body={"email": "nobody@example.com", "password": "x" * 12},
         note="wrong credentials answer 401 for everyone; only authz errors (403) are checked"),
    Case("POST", "/api/v1/auth/logout", EVERYONE),
    # Every logged-in member may lock their account, suspended ones included.
    Case("POST", "/api/v1/auth/logout-everywhere", LOGGED_IN, body={}),
    Case("GET", "/api/v1/auth/csrf", EVERYONE),
    Case("GET", "/api/v1/me", LOGGED_IN),
    Case("PATCH", "/api/v1/me", WRITERS, body={"bio": "hello"}),
    Case("POST", "/api/v1/me/password", WRITERS,
         body={"current_password": "wrong password", "new_password": "another long one"}),
    Case("GET", "/api/v1/me/tokens", LOGGED_IN),
    # Suspended accounts are read-only: every write but logout answers 403 account_suspended.
    Case("POST", "/api/v1/me/tokens", WRITERS, body={"name": "ci", "password": TEST_PASSWORD}),
    # Only the owner can revoke; others get 404 (the token is not theirs), never a 2xx.
    Case("DELETE", "/api/v1/me/tokens/<int:token_id>", frozenset({"owner"}), setup=_token),
    Case("GET", "/api/v1/me/notifications", LOGGED_IN),
    Case("GET", "/api/v1/admin/users", frozenset({"admin"})),
    Case("GET", "/api/v1/admin/users/<int:user_id>", frozenset({"admin"}), setup=_other_user),
    Case("POST", "/api/v1/admin/users/<int:user_id>/roles", frozenset({"admin"}), setup=_other_user,
         body={"role": "moderator"}),
    Case("DELETE", "/api/v1/admin/users/<int:user_id>/roles/<any(moderator, marketer, redemption_staff, admin):role>",
         frozenset({"admin"}),
         setup=lambda ctx: {"user_id": ctx.users["member"].id, "role": "moderator"}),
    Case("PUT", "/api/v1/admin/users/<int:user_id>/birthday", frozenset({"admin"}), setup=_other_user,
         body={"birthday": "1990-05-17", "reason": "member's request, ID seen"}),
    Case("PATCH", "/api/v1/admin/users/<int:user_id>/dates", frozenset({"admin"}), setup=_other_user,
         body={"contract_on": "2024-03-01", "reason": "contract signed"}),
    Case("GET", "/api/v1/admin/audit", frozenset({"admin"})),
    Case("GET", "/api/v1/admin/audit.csv", frozenset({"admin"})),
]
