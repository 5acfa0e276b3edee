"""API tokens, role management, the audit log and ``flask create-admin``."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from community.models import ApiToken, AuditLog, User, UserRole
from extensions import db
from tests.conftest import TEST_PASSWORD, in_threads


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def create_token(client, name="integration"):
    resp = client.post("/api/v1/me/tokens", json={"name": name, "password": TEST_PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_token_is_shown_once_and_stored_hashed(app, make_member, login):
    user = make_member()
    client = login(user)
    created = create_token(client)
    secret = created["token"]
    assert secret.startswith("kin_") and len(secret) > 30

    row = db.session.get(ApiToken, created["id"])
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (row.token_hash, row.prefix, row.name)
    listed = client.get("/api/v1/me/tokens").get_json()["items"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0] and "token_hash" not in listed[0]

    anonymous = app.test_client()
    me = anonymous.get("/api/v1/me", headers=bearer(secret))
    assert me.status_code == 200 and me.get_json()["id"] == user.id
    assert db.session.get(ApiToken, created["id"]).last_used_at is not None


def test_bearer_writes_need_no_csrf_and_set_no_cookie(app, make_member, login):
    secret = create_token(login(make_member()))["token"]
    client = app.test_client()
    resp = client.patch("/api/v1/me", json={"bio": "from an integration"}, headers=bearer(secret))
    assert resp.status_code == 200
    assert resp.get_json()["bio"] == "from an integration"
    assert client.get_cookie("session") is None or "sid" not in client.get_cookie("session").value


def test_bearer_token_wins_over_a_cookie(app, make_member, login):
    """A request carrying a token is the token's owner, whatever cookie rides along."""
    token_owner, cookie_owner = make_member(), make_member()
    secret = create_token(login(token_owner))["token"]
    client = login(cookie_owner)
    resp = client.get("/api/v1/me", headers=bearer(secret))
    assert resp.get_json()["id"] == token_owner.id
    bad = client.get("/api/v1/me", headers=bearer("kin_not-a-real-token"))
    assert bad.status_code == 401


def test_revoked_and_unknown_tokens_are_401(app, make_member, login):
    client = login(make_member())
    created = create_token(client)
    assert client.delete(f"/api/v1/me/tokens/{created['id']}").status_code == 204
    assert db.session.get(ApiToken, created["id"]).revoked_at is not None
    for secret in (created["token"], "kin_unknown"):
        resp = app.test_client().get("/api/v1/me", headers=bearer(secret))
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "invalid_token"


def test_only_the_owner_can_revoke_a_token(make_member, login):
    owner_client = login(make_member())
    created = create_token(owner_client)
    other = login(make_member())
    assert other.delete(f"/api/v1/me/tokens/{created['id']}").status_code == 404
    assert other.delete("/api/v1/me/tokens/999999").status_code == 404
    assert db.session.get(ApiToken, created["id"]).revoked_at is None


def test_token_name_is_validated(make_member, login):
    client = login(make_member())
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 81}, {"name": "ok", "scopes": ["admin"]}):
        body = body | {"password": TEST_PASSWORD}
        resp = client.post("/api/v1/me/tokens", json=body)
        assert resp.status_code == 422, body
        assert resp.get_json()["error"]["fields"]


# --------------------------------------------------------------------------- roles


def test_admin_grants_and_revokes_roles_with_audit(make_member, login):
    admin, member = make_member(roles=("admin",)), make_member()
    client = login(admin)
    resp = client.post(f"/api/v1/admin/users/{member.id}/roles", json={"role": "moderator"})
    assert resp.status_code == 200
    assert resp.get_json()["roles"] == ["member", "moderator"]
    again = client.post(f"/api/v1/admin/users/{member.id}/roles", json={"role": "moderator"})
    assert again.status_code == 200  # idempotent

    resp = client.delete(f"/api/v1/admin/users/{member.id}/roles/moderator")
    assert resp.status_code == 200 and resp.get_json()["roles"] == ["member"]

    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.target_id == member.id).order_by(AuditLog.id))
    assert list(actions) == ["community.role.grant", "community.role.revoke"]
    audit = client.get("/api/v1/admin/audit", query_string={"action": "community.role."}).get_json()
    assert audit["meta"]["total"] == 2 and audit["items"][0]["actor_id"] == admin.id


def test_members_cannot_grant_roles_to_anyone(make_member, login):
    member = make_member()
    client = login(member)
    for role in ("admin", "moderator"):
        resp = client.post(f"/api/v1/admin/users/{member.id}/roles", json={"role": role})
        assert resp.status_code == 403
    assert db.session.get(User, member.id).roles == {"member"}


def test_role_input_is_validated(make_member, login):
    admin, member = make_member(roles=("admin",)), make_member()
    client = login(admin)
    for body in ({"role": "member"}, {"role": "overlord"}, {}, {"role": "moderator", "extra": 1}):
        assert client.post(f"/api/v1/admin/users/{member.id}/roles", json=body).status_code == 422, body
    assert client.post("/api/v1/admin/users/999999/roles", json={"role": "moderator"}).status_code == 404
    # The role in the path is one of the documented roles (an enum): any other is no such resource.
    assert client.delete(f"/api/v1/admin/users/{member.id}/roles/overlord").status_code == 404
    assert client.delete("/api/v1/admin/users/999999/roles/moderator").status_code == 404


def test_last_admin_is_protected(make_member, login):
    first = make_member(roles=("admin",))
    first_client = login(first)
    resp = first_client.delete(f"/api/v1/admin/users/{first.id}/roles/admin")
    assert resp.status_code == 409

    second = make_member(roles=("admin",))
    assert first_client.delete(f"/api/v1/admin/users/{second.id}/roles/admin").status_code == 200
    assert db.session.get(User, second.id).roles == {"member"}
    assert first_client.delete(f"/api/v1/admin/users/{first.id}/roles/admin").status_code == 409


def test_two_admins_revoking_each_other_at_once_leave_one_admin(app, make_member, login):
    a, b = make_member(roles=("admin",)), make_member(roles=("admin",))
    clients = [login(a), login(b)]
    targets = [b.id, a.id]

    def revoke(i):
        with app.app_context():
            return clients[i].delete(f"/api/v1/admin/users/{targets[i]}/roles/admin").status_code

    statuses = in_threads(2, revoke)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) - {200} <= {403, 409}, statuses
    admins = db.session.scalars(select(UserRole.user_id).where(UserRole.role == "admin")).all()
    assert len(admins) == 1


def test_admin_user_listing_filters_and_paginates(make_member, login):
    admin = make_member(roles=("admin",))
    make_member(roles=("moderator",), email="mod-one@example.com")
    for _ in range(3):
        make_member()
    client = login(admin)
    page = client.get("/api/v1/admin/users", query_string={"per_page": 2}).get_json()
    assert page["meta"] == {"page": 1, "per_page": 2, "total": 5, "pages": 3}
    assert len(page["items"]) == 2 and "signup_ip" in page["items"][0]
    mods = client.get("/api/v1/admin/users", query_string={"role": "moderator"}).get_json()
    assert [u["email"] for u in mods["items"]] == ["mod-one@example.com"]
    by_email = client.get("/api/v1/admin/users", query_string={"email": "MOD-ONE"}).get_json()
    assert by_email["meta"]["total"] == 1
    assert client.get("/api/v1/admin/users", query_string={"per_page": 1000}).status_code == 422
    assert client.get("/api/v1/admin/users/999999").status_code == 404


def test_audit_csv_is_streamed_and_formula_safe(make_member, login):
    from community.services import audit

    admin = make_member(roles=("admin",))
    audit(admin.id, "community.role.grant", "user", admin.id, reason="=HYPERLINK(\"http://evil\")")
    db.session.commit()
    resp = login(admin).get("/api/v1/admin/audit.csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).splitlines()
    # Every cell is quoted (#13: a ";" locale cannot split a cell into a formula).
    assert lines[0] == '"id","created_at","actor_id","action","target_type","target_id","reason","details"'
    assert "'=HYPERLINK" in lines[1]


# --------------------------------------------------------------------------- CLI


def test_create_admin_cli_creates_an_admin_who_can_log_in(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-admin", "--email", "Boss@Example.com", "--password", TEST_PASSWORD, "--display-name", "Boss"]
    )
    assert result.exit_code == 0, result.output
    assert "admin boss@example.com" in result.output
    db.session.rollback()
    user = db.session.scalar(select(User).where(User.email == "boss@example.com"))
    assert user.roles == {"member", "admin"}
    resp = app.test_client().post("/api/v1/auth/login", json={"email": "boss@example.com", "password": TEST_PASSWORD})
    assert resp.status_code == 200


def test_create_admin_cli_promotes_an_existing_member_and_prompts_for_the_password(app, make_member):
    member = make_member(email="promote@example.com")
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-admin", "--email", "promote@example.com"], input="prompted pw 1\nprompted pw 1\n"
    )
    assert result.exit_code == 0, result.output
    db.session.rollback()
    assert db.session.get(User, member.id).roles == {"member", "admin"}


def test_create_admin_cli_rejects_a_weak_password(app):
    result = app.test_cli_runner().invoke(args=["create-admin", "--email", "weak@example.com", "--password", "short"])
    assert result.exit_code != 0
    db.session.rollback()
    assert db.session.scalar(select(User).where(User.email == "weak@example.com")) is None
