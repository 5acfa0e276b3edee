def test_register_login_me(client):
    resp = client.post(
        "/api/v1/auth/register",
        json={"email": " New@Example.COM ", "password": "a fine long password", "display_name": "New"},
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["member"]["email"] == "new@example.com"
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.get_json()["roles"] == ["member"]


def test_me_requires_login(client):
    resp = client.get("/api/v1/me")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_unknown_route_is_json_404(client):
    resp = client.get("/api/v1/nope")
    assert resp.status_code == 404
    assert set(resp.get_json()["error"]) == {"code", "message", "fields"}
