"""Flags, auto-hide, the review queue, moderator actions, sanctions, the audit log and points."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from community.models import User, utcnow
from extensions import db
from forums.models import Board, Flag, Post, Thread
from points.ledger import get_balance
from points.models import Interaction


def _posts(thread):
    return db.session.scalars(select(Post).where(Post.thread_id == thread.id).order_by(Post.id)).all()


def test_flags_weigh_by_tier_and_auto_hide_at_threshold(make_board, make_thread, make_member, login):
    board = make_board(flag_threshold=6)
    thread = make_thread(board, replies=1)
    reply = _posts(thread)[1]
    aware, loyal = login(make_member()), login(make_member(tier="loyal"))
    resp = aware.post(f"/api/v1/posts/{reply.id}/flags", json={"reason": "spam", "note": "ads"})
    assert resp.status_code == 201 and resp.get_json()["status"] == "open"
    db.session.refresh(reply)
    assert reply.flag_score == 1 and reply.hidden_at is None
    again = aware.post(f"/api/v1/posts/{reply.id}/flags", json={"reason": "spam"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_flagged"
    assert loyal.post(f"/api/v1/posts/{reply.id}/flags", json={"reason": "abuse"}).status_code == 201  # weight 4
    db.session.refresh(reply)
    assert reply.flag_score == 5 and reply.hidden_at is None
    advocate = login(make_member(tier="advocate"))
    assert advocate.post(f"/api/v1/posts/{reply.id}/flags", json={"reason": "abuse"}).status_code == 201
    db.session.refresh(reply)
    assert reply.flag_score == 10 and reply.state == "hidden" and reply.hidden_reason == "flags"
    assert db.session.get(Thread, thread.id).reply_count == 0
    assert aware.get(f"/api/v1/posts/{reply.id}").status_code == 404
    page = aware.get(f"/api/v1/threads/{thread.id}").get_json()
    assert [p["id"] for p in page["items"]] == [thread.last_post_id - 1]
    # the author is told, and the admin audit log shows the automatic action
    author = db.session.get(User, reply.author_id)
    notes = login(author).get("/api/v1/me/notifications").get_json()["items"]
    assert any(n["kind"] == "forums.post_hidden" for n in notes)
    admin = login(make_member(roles=("admin",)))
    audit = admin.get("/api/v1/admin/audit?action=forums.post.auto_hide").get_json()["items"]
    assert [a["target_id"] for a in audit] == [reply.id] and audit[0]["actor_id"] is None


def test_flag_bad_input_and_own_post(make_board, make_thread, make_member, login):
    board = make_board()
    author = make_member(tier="advocate")
    thread = make_thread(board, author=author)
    post = _posts(thread)[0]
    client = login(make_member())
    assert client.post(f"/api/v1/posts/{post.id}/flags", json={"reason": "meh"}).status_code == 422
    assert client.post(f"/api/v1/posts/{post.id}/flags", json={}).status_code == 422
    assert client.post(f"/api/v1/posts/{post.id}/flags", json={"reason": "spam", "note": "x" * 1001}).status_code == 422
    resp = login(author).post(f"/api/v1/posts/{post.id}/flags", json={"reason": "spam"})
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "own_post"
    assert db.session.scalar(select(db.func.count()).select_from(Flag)) == 0


def test_review_queue_and_resolution(make_board, make_thread, make_member, login):
    board = make_board(flag_threshold=2)
    thread = make_thread(board, replies=2)
    _first, r1, r2 = _posts(thread)
    f1, f2, f3 = (login(make_member()) for _ in range(3))
    flag_a = f1.post(f"/api/v1/posts/{r1.id}/flags", json={"reason": "spam"}).get_json()
    flag_b = f2.post(f"/api/v1/posts/{r1.id}/flags", json={"reason": "spam"}).get_json()  # hides r1 (score 2)
    flag_c = f3.post(f"/api/v1/posts/{r2.id}/flags", json={"reason": "off_topic"}).get_json()
    mod = login(make_member(roles=("moderator",)))
    queue = mod.get("/api/v1/moderation/flags").get_json()
    assert [f["id"] for f in queue["items"]] == [flag_a["id"], flag_b["id"], flag_c["id"]]
    assert queue["items"][1]["post_state"] == "hidden" and queue["items"][1]["post_flag_score"] == 2
    assert mod.get("/api/v1/moderation/flags?status=bogus").status_code == 422
    # disagreeing with one flag brings r1 back under the threshold: it is restored
    resp = mod.post(f"/api/v1/moderation/flags/{flag_a['id']}/resolve", json={"decision": "disagree", "note": "fine"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "disagreed"
    db.session.refresh(r1)
    assert r1.state == "visible" and r1.flag_score == 1
    assert db.session.get(Thread, thread.id).reply_count == 2
    again = mod.post(f"/api/v1/moderation/flags/{flag_a['id']}/resolve", json={"decision": "agree"})
    assert again.status_code == 409
    # agreeing hides the post even below the threshold
    assert mod.post(f"/api/v1/moderation/flags/{flag_c['id']}/resolve", json={"decision": "agree"}).status_code == 200
    db.session.refresh(r2)
    assert r2.state == "hidden" and r2.hidden_reason == "moderator"
    assert [f["id"] for f in mod.get("/api/v1/moderation/flags").get_json()["items"]] == [flag_b["id"]]
    assert len(mod.get("/api/v1/moderation/flags?status=agreed").get_json()["items"]) == 1
    # agreeing with a flag on a post the flags hid keeps it hidden whatever happens to the others
    f4 = login(make_member())
    flag_d = f4.post(f"/api/v1/posts/{r1.id}/flags", json={"reason": "spam"}).get_json()  # score 2 again: hidden
    db.session.refresh(r1)
    assert r1.hidden_reason == "flags"
    mod.post(f"/api/v1/moderation/flags/{flag_d['id']}/resolve", json={"decision": "agree"})
    mod.post(f"/api/v1/moderation/flags/{flag_b['id']}/resolve", json={"decision": "disagree"})
    db.session.refresh(r1)
    assert r1.state == "hidden" and r1.hidden_reason == "moderator" and r1.flag_score == 1
    assert mod.post("/api/v1/moderation/flags/9999/resolve", json={"decision": "agree"}).status_code == 404
    assert mod.post(f"/api/v1/moderation/flags/{flag_a['id']}/resolve", json={"decision": "maybe"}).status_code == 422
    admin = login(make_member(roles=("admin",)))
    actions = [a["action"] for a in admin.get("/api/v1/admin/audit?action=forums.flag").get_json()["items"]]
    assert sorted(actions) == ["forums.flag.agree"] * 2 + ["forums.flag.disagree"] * 2


def test_moderator_post_actions_counters_and_audit(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board, replies=1)
    reply = _posts(thread)[1]
    mod = login(make_member(roles=("moderator",)))
    url = f"/api/v1/moderation/posts/{reply.id}"
    assert mod.post(url, json={"action": "hide", "reason": "rude"}).get_json()["state"] == "hidden"
    assert mod.post(url, json={"action": "hide", "reason": "rude"}).status_code == 409
    assert db.session.get(Thread, thread.id).reply_count == 0
    assert mod.post(url, json={"action": "restore", "reason": "ok after all"}).get_json()["state"] == "visible"
    assert db.session.get(Thread, thread.id).reply_count == 1
    assert mod.post(url, json={"action": "delete", "reason": "spam"}).get_json()["state"] == "deleted"
    assert db.session.get(Thread, thread.id).reply_count == 0
    assert mod.post(url, json={"action": "explode", "reason": "x"}).status_code == 422
    assert mod.post(url, json={"action": "hide"}).status_code == 422
    assert mod.post("/api/v1/moderation/posts/9999", json={"action": "hide", "reason": "x"}).status_code == 404
    admin = login(make_member(roles=("admin",)))
    audit = admin.get("/api/v1/admin/audit?action=forums.post").get_json()["items"]
    assert [a["action"] for a in audit] == ["forums.post.delete", "forums.post.restore", "forums.post.hide"]
    assert audit[0]["reason"] == "spam" and audit[0]["target_id"] == reply.id
    csv = admin.get("/api/v1/admin/audit.csv?action=forums.post").get_data(as_text=True)
    assert csv.count("forums.post.") == 3 and f'"forums.post.delete","post","{reply.id}","spam",' in csv


def test_moderator_thread_actions(make_board, make_thread, make_member, login):
    a, b = make_board(), make_board()
    thread = make_thread(a, replies=2)
    mod = login(make_member(roles=("moderator",)))
    url = f"/api/v1/moderation/threads/{thread.id}"
    for action, field, value in (("pin", "pinned", True), ("lock", "locked", True), ("unpin", "pinned", False)):
        resp = mod.post(url, json={"action": action, "reason": "r"})
        assert resp.status_code == 200 and resp.get_json()[field] is value
    assert mod.post(url, json={"action": "unpin", "reason": "r"}).status_code == 409
    assert mod.post(url, json={"action": "move", "reason": "r"}).status_code == 422
    assert mod.post(url, json={"action": "move", "reason": "r", "board_id": 9999}).status_code == 422
    resp = mod.post(url, json={"action": "move", "reason": "wrong board", "board_id": b.id})
    assert resp.status_code == 200 and resp.get_json()["board_id"] == b.id
    assert (db.session.get(Board, a.id).thread_count, db.session.get(Board, b.id).thread_count) == (0, 1)
    assert mod.post(url, json={"action": "delete", "reason": "r"}).get_json()["deleted"] is True
    assert db.session.get(Board, b.id).thread_count == 0
    member = login(make_member())
    assert member.get(f"/api/v1/threads/{thread.id}").status_code == 404
    assert mod.post(url, json={"action": "restore", "reason": "r"}).get_json()["deleted"] is False
    assert db.session.get(Board, b.id).thread_count == 1
    assert mod.post("/api/v1/moderation/threads/9999", json={"action": "lock", "reason": "r"}).status_code == 404
    admin = login(make_member(roles=("admin",)))
    audit = admin.get("/api/v1/admin/audit?action=forums.thread").get_json()["items"]
    assert [x["action"] for x in audit][:2] == ["forums.thread.restore", "forums.thread.delete"]
    move = next(x for x in audit if x["action"] == "forums.thread.move")
    assert move["details"] == {"from_board_id": a.id, "to_board_id": b.id}


def test_sanctions_warn_silence_suspend_lift(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board)
    target = make_member()
    target_client = login(target)
    mod_user = make_member(roles=("moderator",))
    mod = login(mod_user)
    url = f"/api/v1/moderation/members/{target.id}/sanctions"
    assert mod.post(url, json={"action": "warn", "reason": "tone"}).status_code == 201
    resp = mod.post(url, json={"action": "silence", "reason": "spam", "duration_hours": 24})
    assert resp.status_code == 201
    db.session.refresh(target)
    assert target.is_silenced() and not target.is_suspended()
    assert target.silenced_until > utcnow() + timedelta(hours=23)
    assert target_client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "hi"}).status_code == 403
    assert mod.post(url, json={"action": "silence", "reason": "x"}).status_code == 422  # needs a duration
    assert mod.post(url, json={"action": "silence", "reason": "x", "duration_hours": 0}).status_code == 422
    assert mod.post(url, json={"action": "ban", "reason": "x", "duration_hours": 1}).status_code == 422
    missing = mod.post("/api/v1/moderation/members/9999/sanctions", json={"action": "warn", "reason": "x"})
    assert missing.status_code == 404
    assert mod.post(f"/api/v1/moderation/members/{mod_user.id}/sanctions",
                    json={"action": "warn", "reason": "x"}).status_code == 403  # self_sanction (#13: 403, audited)
    other_mod = make_member(roles=("moderator",))
    assert mod.post(f"/api/v1/moderation/members/{other_mod.id}/sanctions",
                    json={"action": "warn", "reason": "x"}).status_code == 403
    resp = mod.post(url, json={"action": "suspend", "reason": "abuse", "duration_hours": 48})
    assert resp.status_code == 201
    # the suspended account is read-only (#13): its session still reads, every write is refused
    assert target_client.get("/api/v1/me").status_code == 200
    refused = target_client.patch("/api/v1/me", json={"bio": "x"})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "account_suspended"
    db.session.refresh(target)
    assert target.is_suspended()
    assert mod.post(url, json={"action": "lift", "reason": "appeal"}).status_code == 201
    db.session.refresh(target)
    assert not target.is_suspended() and not target.is_silenced()
    history = mod.get(url).get_json()["items"]
    assert [s["kind"] for s in history] == ["lift", "suspend", "silence", "warn"]
    assert mod.get("/api/v1/moderation/members/9999/sanctions").status_code == 404
    admin = login(make_member(roles=("admin",)))
    audit = admin.get("/api/v1/admin/audit?action=forums.member").get_json()["items"]
    # The refused attempts (self, another moderator) are audited too (#13), on their own targets.
    refused = [a for a in audit if a["action"].endswith(".refused")]
    assert sorted(a["target_id"] for a in refused) == sorted([mod_user.id, other_mod.id])
    audit = [a for a in audit if not a["action"].endswith(".refused")]
    assert [a["action"] for a in audit] == [
        "forums.member.lift", "forums.member.suspend", "forums.member.silence", "forums.member.warn",
    ]
    assert all(a["target_id"] == target.id and a["actor_id"] == mod_user.id for a in audit)
    notes = login(target).get("/api/v1/me/notifications").get_json()["items"]
    kinds = {"forums.sanction_warn", "forums.sanction_silence", "forums.sanction_suspend", "forums.sanction_lift"}
    assert kinds <= {n["kind"] for n in notes}


def test_points_for_posts_replies_and_reactions(make_board, make_member, login):
    board = make_board()
    alice, bob = make_member(tier="advocate"), make_member(tier="advocate")
    a, b = login(alice), login(bob)
    thread = a.post(f"/api/v1/boards/{board.id}/threads", json={"title": "t", "body": "b"}).get_json()
    reply = b.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "r"}).get_json()
    kinds = {(i.member_id, i.kind, i.key) for i in db.session.scalars(select(Interaction))}
    first_id = thread["last_post_id"]
    assert kinds == {(alice.id, "post", f"post:{first_id}"), (bob.id, "reply", f"post:{reply['id']}")}
    alice_before, bob_before = get_balance(alice.id).available, get_balance(bob.id).available
    assert alice_before > 0 and bob_before > 0
    # liking your own post earns nothing; a like from someone else earns the author points
    a.put(f"/api/v1/posts/{first_id}/like")
    assert get_balance(alice.id).available == alice_before
    b.put(f"/api/v1/posts/{first_id}/like")
    assert get_balance(alice.id).available > alice_before
    received = db.session.scalar(select(Interaction).where(Interaction.kind == "reaction_received"))
    assert received.member_id == alice.id and received.source_type == "reaction"
    # taking the like back reverses its points
    b.delete(f"/api/v1/posts/{first_id}/like")
    assert get_balance(alice.id).available == alice_before


def test_moderator_removal_reverses_points(make_board, make_member, login):
    board = make_board()
    bob = make_member(tier="advocate")
    b = login(bob)
    thread = b.post(f"/api/v1/boards/{board.id}/threads", json={"title": "t", "body": "b"}).get_json()
    reply = b.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "spammy"}).get_json()
    earned = get_balance(bob.id).available
    mod = login(make_member(roles=("moderator",)))
    # hiding is reversible and keeps the points; deleting removes them
    mod.post(f"/api/v1/moderation/posts/{reply['id']}", json={"action": "hide", "reason": "check"})
    assert get_balance(bob.id).available == earned
    mod.post(f"/api/v1/moderation/posts/{reply['id']}", json={"action": "delete", "reason": "spam"})
    after_reply = get_balance(bob.id).available
    assert 0 < after_reply < earned
    mod.post(f"/api/v1/moderation/threads/{thread['id']}", json={"action": "delete", "reason": "spam"})
    assert get_balance(bob.id).available == 0
