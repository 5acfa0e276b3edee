"""Moderators: the review queue, thread actions, member sanctions, the moderation audit log."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from community.api import _audit_query
from community.auth import end_all_sessions
from community.models import User
from extensions import db
from forums import services
from forums.permissions import MODERATE
from forums.schemas import PostActionIn, ResolveIn, SanctionIn, ThreadActionIn
from pagination import paginate
from sanitize import to_text

from . import nav
from .web import back, bp, form_str, page_args, staff_page, validated

nav.register(nav.NavItem("moderation", _l("Review queue"), "console.flags", MODERATE, 10))
nav.register(nav.NavItem("moderation", _l("Moderation log"), "console.moderation_audit", MODERATE, 30))

FLAG_STATUSES = ("open", "agreed", "disagreed")


@bp.get("/moderation/flags")
@staff_page(MODERATE)
def flags():
    status = request.args.get("status", "open")
    if status not in FLAG_STATUSES:
        status = "open"
    page, per_page = page_args(20)
    rows, total = services.list_flags(status, page, per_page)
    items = [
        {"flag": flag, "post": post, "thread_title": title, "board_id": board_id, "flagger_name": flagger,
         "excerpt": services.excerpt(post.search_text)}
        for flag, post, title, board_id, flagger in rows
    ]
    meta = {"page": page, "per_page": per_page, "total": total, "pages": (total + per_page - 1) // per_page}
    return render_template("console/flags.html", items=items, meta=meta, status=status, statuses=FLAG_STATUSES)


@bp.post("/moderation/flags/<int:flag_id>")
@staff_page(MODERATE)
def flag_action(flag_id):
    """One form per queue item: agree / disagree resolve the flag, hide / restore act on its post."""
    decision = request.form.get("decision", "")
    note = form_str("note", "") or ""
    if decision in ("agree", "disagree"):
        data = validated(ResolveIn(), {"decision": decision, "note": note})
        services.resolve_flag(current_user, flag_id, data["decision"], data["note"])
        message = _("Flag #%(id)s: %(decision)s.", id=flag_id, decision=_(decision))
    else:
        from forums.models import Flag

        flag = db.session.get(Flag, flag_id)
        if flag is None:
            from errors import NotFound

            raise NotFound(_("No such flag."))
        reason = note or _("Reviewed from flag #%(id)s", id=flag_id)
        data = validated(PostActionIn(), {"action": decision, "reason": reason})
        services.moderate_post(current_user, flag.post_id, data["action"], data["reason"])
        message = _("Post #%(id)s: %(action)s.", id=flag.post_id, action=_(decision))
    db.session.commit()
    flash(message, "success")
    return back("console.flags")


@bp.get("/moderation/threads/<int:thread_id>")
@staff_page(MODERATE)
def thread(thread_id):
    page, per_page = page_args(20)
    tp = services.thread_page(current_user, thread_id, page, per_page)
    posts = [{"row": row, "text": to_text(row.body)} for row in tp.posts]
    boards = services.list_boards(current_user)
    meta = {"page": page, "per_page": per_page, "total": tp.total, "pages": (tp.total + per_page - 1) // per_page}
    return render_template("console/thread.html", tp=tp, posts=posts, boards=boards, meta=meta)


@bp.post("/moderation/threads/<int:thread_id>")
@staff_page(MODERATE)
def thread_action(thread_id):
    board_id = form_str("board_id")
    data = validated(ThreadActionIn(), {
        "action": request.form.get("action", ""), "reason": form_str("reason", ""),
        "board_id": board_id,
    })
    services.moderate_thread(current_user, thread_id, data["action"], data["reason"], data.get("board_id"))
    db.session.commit()
    flash(_("Thread #%(id)s: %(action)s.", id=thread_id, action=_(data["action"])), "success")
    return redirect(url_for("console.thread", thread_id=thread_id), code=303)


@bp.post("/moderation/posts/<int:post_id>")
@staff_page(MODERATE)
def post_action(post_id):
    data = validated(PostActionIn(), {"action": request.form.get("action", ""), "reason": form_str("reason", "")})
    post = services.moderate_post(current_user, post_id, data["action"], data["reason"])
    db.session.commit()
    flash(_("Post #%(id)s: %(action)s.", id=post_id, action=_(data["action"])), "success")
    return redirect(url_for("console.thread", thread_id=post.thread_id), code=303)


@bp.get("/moderation/members/<int:member_id>/sanctions")
@staff_page(MODERATE)
def sanctions(member_id):
    history = services.list_sanctions(member_id)  # 404 for an unknown member
    member = db.session.get(User, member_id)
    names = _names({s.moderator_id for s in history})
    return render_template("console/sanctions.html", member=member, history=history, names=names)


@bp.post("/moderation/members/<int:member_id>/sanctions")
@staff_page(MODERATE)
def sanction(member_id):
    data = validated(SanctionIn(), {
        "action": request.form.get("action", ""), "reason": form_str("reason", ""),
        "duration_hours": form_str("duration_hours"),
    })
    result = services.sanction_member(current_user, member_id, data["action"], data["reason"],
                                      data.get("duration_hours"))
    if result.kind == "suspend":
        end_all_sessions(member_id)  # commits: the sanction and the sessions' end together
    else:
        db.session.commit()
    flash(_("Sanction recorded: %(kind)s.", kind=_(result.kind)), "success")
    return redirect(url_for("console.sanctions", member_id=member_id), code=303)


@bp.get("/moderation/audit")
@staff_page(MODERATE)
def moderation_audit():
    """The moderation part of the audit log: every ``forums.*`` action."""
    page, per_page = page_args(50)
    action = request.args.get("action") or ""
    prefix = action if action.startswith("forums.") else "forums."
    result = paginate(_audit_query({"action": prefix}), page, per_page)
    names = _names({e.actor_id for e in result["items"]})
    return render_template("console/audit.html", result=result, names=names, moderation=True,
                           current={"action": action})


def _names(ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


