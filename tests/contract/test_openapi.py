"""The served OpenAPI document says what the server does (issue 12, point 4 and 5).

These walk the whole document: every operation's errors use the real envelope, security is
per operation, collections share one shape, and the constraints the server enforces are there.
The property-based test (``test_schemathesis.py``) then checks the server against it.
"""

from __future__ import annotations

import re

import pytest

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def spec(client):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(spec, schema):
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def test_error_envelope_is_a_component_used_by_every_error_response(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = resolve(spec, error["properties"]["error"])
    assert set(detail["required"]) == {"code", "message", "fields"}
    for path, method, op in operations(spec):
        assert "default" not in op["responses"], (path, method)
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert {"500", "503"} <= set(errors), (path, method)
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, code)


def test_statuses_follow_from_what_the_operation_has(spec):
    for path, method, op in operations(spec):
        codes = set(op["responses"])
        if op["security"]:
            assert "401" in codes, (path, method)
        if "{" in path:
            assert "404" in codes, (path, method)
        if op.get("parameters") or "requestBody" in op:
            assert "422" in codes, (path, method)
        if method in ("post", "put", "patch", "delete"):
            assert "415" in codes, (path, method)
    ops = {(p, m): op for p, m, op in operations(spec)}
    assert "409" in ops[("/api/v1/auth/register", "post")]["responses"]
    assert "429" in ops[("/api/v1/redemptions", "post")]["responses"]
    assert "409" in ops[("/api/v1/surveys/{survey_id}/response", "delete")]["responses"]


def test_security_is_per_operation(spec):
    assert "security" not in spec
    ops = {(p, m): op for p, m, op in operations(spec)}
    for public in [("/api/v1/auth/login", "post"), ("/api/v1/auth/register", "post"), ("/api/v1/tiers", "get")]:
        assert ops[public]["security"] == [], public
    assert ops[("/api/v1/me", "get")]["security"] == [{"bearerToken": []}, {"sessionCookie": []}]
    assert ops[("/api/v1/me", "patch")]["security"] == [{"bearerToken": []}, {"sessionCookie": [], "csrfToken": []}]
    assert ops[("/api/v1/points/events", "post")]["security"] == [{"bearerToken": []}]
    assert "403" in ops[("/api/v1/admin/audit", "get")]["responses"]


def test_required_headers_and_uploads_are_documented(spec):
    post = spec["paths"]["/api/v1/redemptions"]["post"]
    (key,) = [p for p in post["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    assert key["schema"]["maxLength"] == 100
    upload = spec["paths"]["/api/v1/admin/rewards/{reward_id}/codes"]["post"]["requestBody"]
    assert upload["required"] is True
    assert upload["content"]["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "text/csv" in upload["content"]


def test_path_ids_declare_their_range(spec):
    (param,) = spec["paths"]["/api/v1/posts/{post_id}"]["parameters"]
    assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def test_declared_constraints(spec):
    schemas = spec["components"]["schemas"]
    register = schemas["RegisterIn"]["properties"]
    assert register["email"]["format"] == "email"
    assert register["password"]["minLength"] == 10 and register["password"]["maxLength"] == 128
    assert set(schemas["RoleIn"]["properties"]["role"]["enum"]) == {"moderator", "marketer", "redemption_staff",
                                                                     "admin"}
    assert schemas["FocusSessionIn"]["properties"]["online_url"]["pattern"].startswith("^https?://")
    multiplier = schemas["PointsCampaignIn"]["properties"]["multiplier"]
    assert multiplier["type"] == "number" and multiplier["minimum"] == 1 and multiplier["maximum"] == 10
    for name in ("ProfileIn", "BoardPatchIn", "PostPatch", "PointsCampaignPatchIn", "RewardPatchIn",
                 "SurveyPatchIn", "FocusSessionPatchIn", "EarningRuleIn"):
        schema = schemas[name]
        assert schema["minProperties"] == 1, name
        assert schema["additionalProperties"] is False, name
        assert not [f for f, prop in schema["properties"].items() if "default" in prop], name
        assert "required" not in schema, name


def test_every_integer_input_is_bounded(spec):
    """No integer a client sends is unbounded: the database's range is always declared."""
    def walk(schema, where):
        schema = resolve(spec, schema)
        if schema.get("type") == "integer" and not schema.get("readOnly"):
            assert "minimum" in schema and "maximum" in schema, where
            assert schema["maximum"] <= 2**31 - 1 and schema["minimum"] >= -(2**31), where
        for name, prop in (schema.get("properties") or {}).items():
            walk(prop, f"{where}.{name}")
        if "items" in schema:
            walk(schema["items"], f"{where}[]")

    for path, method, op in operations(spec):
        for param in op.get("parameters", []) + spec["paths"][path].get("parameters", []):
            walk(param["schema"], f"{method} {path} {param['name']}")
        for media, content in (op.get("requestBody") or {}).get("content", {}).items():
            walk(content["schema"], f"{method} {path} body {media}")


def test_strings_say_plain_text_or_sanitized_html(spec):
    schemas = spec["components"]["schemas"]
    assert "Sanitized HTML" in schemas["PostOut"]["properties"]["body"]["description"]
    assert "Plain text" in schemas["ThreadOut"]["properties"]["title"]["description"]
    assert "sanitized when stored" in schemas["ReplyIn"]["properties"]["body"]["description"]


def test_timestamps_are_documented_as_date_time(spec):
    assert spec["components"]["schemas"]["PostOut"]["properties"]["created_at"]["format"] == "date-time"


def test_summaries_have_no_rest_markup(spec):
    for path, method, op in operations(spec):
        for key in ("summary", "description"):
            assert "``" not in op.get(key, ""), (path, method, key)
            assert not re.search(r":\w+:`", op.get(key, "")), (path, method, key)


def test_every_collection_is_items_and_meta(spec):
    for path, method, op in operations(spec):
        for code, response in op["responses"].items():
            if not code.startswith("2") or "content" not in response:
                continue
            for content in response["content"].values():
                schema = resolve(spec, content.get("schema", {}))
                assert schema.get("type") != "array", (path, method, code)
                if "items" in schema.get("properties", {}):
                    assert set(schema["properties"]) >= {"items", "meta"}, (path, method)
                    meta = resolve(spec, schema["properties"]["meta"])
                    assert set(meta["required"]) == {"page", "per_page", "total", "pages"}
                    if method == "get":
                        names = {p["name"] for p in op.get("parameters", [])}
                        assert {"page", "per_page"} <= names, (path, method)


def test_the_document_is_built_on_first_read_once_and_whole(app):
    """``create_app`` leaves the document for later (it is most of an app's start-up); the
    first readers, at once from several threads, all get the one finished document."""
    import threading

    from app import create_app
    from tests.conftest import make_config

    fresh = create_app(make_config())
    api = fresh.extensions["kinship_api"]
    assert api._queued_docs  # nothing documented yet
    assert api._spec._paths == {}
    documents, barrier = [], threading.Barrier(4)

    def read():
        barrier.wait()
        documents.append(fresh.test_client().get("/api/v1/openapi.json").get_json())

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert api._queued_docs is None
    assert len(documents) == 4 and all(d == documents[0] for d in documents)
    # the test's own app, built the same way, documents itself the same
    assert app.test_client().get("/api/v1/openapi.json").get_json() == documents[0]
    paths = documents[0]["paths"]
    assert len(paths) > 100
    # contract.openapi.finalize ran: per-operation security and our error envelope
    op = paths["/api/v1/me/points"]["get"]
    assert "security" in op and op["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
