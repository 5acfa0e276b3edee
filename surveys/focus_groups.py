"""Focus-group sessions: sign-up with a waitlist, cancellation, attendance, calendar files.

Capacity is a counter (``confirmed_count``) taken only by a guarded ``UPDATE ... WHERE
confirmed_count < capacity``, so concurrent sign-ups can never overfill a session on either
database.  Waitlist order: ``benefits_for(tier)["focus_group_priority"]`` (higher first), then
sign-up time.  Functions only flush; the caller commits.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from community.models import User, utcnow
from community.services import audit, notify, refuse_self_dealing
from errors import Conflict, Forbidden, NotFound, ValidationError
from extensions import db
from messaging.webhooks import events as webhooks
from tiers.benefits import benefits_for

from . import definition as defs
from .models import FocusGroupSession, FocusGroupSignup, Survey, SurveyResponse
from .services import current_version, naive_utc

# Members with this many recorded no-shows may not sign up again (``FOCUS_GROUP_NO_SHOW_LIMIT``).
DEFAULT_NO_SHOW_LIMIT = 2
SESSION_FIELDS = (
    "title", "description", "starts_at", "ends_at", "location", "online_url", "capacity", "screener_survey_id",
    "eligibility_rule", "signup_deadline", "cancellation_cutoff", "attendance_points",
)
ACTIVE = ("confirmed", "waitlisted")


def no_show_limit() -> int:
    return int(current_app.config.get("FOCUS_GROUP_NO_SHOW_LIMIT", DEFAULT_NO_SHOW_LIMIT))


def get_session(session_id: int) -> FocusGroupSession:
    session = db.session.get(FocusGroupSession, session_id)
    if session is None:
        raise NotFound("No such focus-group session.")
    return session


# --------------------------------------------------------------------------- staff


def _apply(session: FocusGroupSession, data: dict) -> None:
    # Checked before any attribute changes: a dangling id must not reach an autoflush.
    if data.get("screener_survey_id") is not None and db.session.get(Survey, data["screener_survey_id"]) is None:
        raise ValidationError("No such screener survey.", fields={"screener_survey_id": ["No such survey."]})
    cap = int(current_app.config.get("MAX_ATTENDANCE_POINTS", 1000))
    if data.get("attendance_points") is not None and data["attendance_points"] > cap:
        raise ValidationError(
            "The attendance points exceed the configured limit.",
            fields={"attendance_points": [f"At most {cap} (MAX_ATTENDANCE_POINTS)."]},
        )
    for name in SESSION_FIELDS:
        if name in data:
            value = data[name]
            setattr(session, name, naive_utc(value) if isinstance(value, datetime) else value)
    errors: dict[str, list[str]] = {}
    if session.ends_at <= session.starts_at:
        errors["ends_at"] = ["Must be after starts_at."]
    if session.signup_deadline and session.signup_deadline > session.starts_at:
        errors["signup_deadline"] = ["Must not be after the start."]
    if session.cancellation_cutoff and session.cancellation_cutoff > session.starts_at:
        errors["cancellation_cutoff"] = ["Must not be after the start."]
    if not session.location and not session.online_url:
        errors["location"] = ["Give a place or an online link."]
    if session.eligibility_rule and not session.screener_survey_id:
        errors["eligibility_rule"] = ["An eligibility rule needs a screener survey."]
    if session.capacity < session.confirmed_count:
        errors["capacity"] = [f"{session.confirmed_count} members are confirmed already."]
    if errors:
        raise ValidationError("The session is invalid.", fields=errors)
    if session.screener_survey_id:
        screener = db.session.get(Survey, session.screener_survey_id)
        if session.eligibility_rule:
            version = current_version(screener)
            screener_definition = version.definition if version else screener.definition
            defs.check_eligibility_rule(session.eligibility_rule, screener_definition)


def create_session(actor_id: int, data: dict) -> FocusGroupSession:
    session = FocusGroupSession(created_by_id=actor_id, capacity=30, confirmed_count=0, attendance_points=100)
    _apply(session, data)
    db.session.add(session)
    db.session.flush()
    audit(actor_id, "surveys.focus_group.create", "focus_group_session", session.id)
    return session


def update_session(actor_id: int, session_id: int, data: dict) -> FocusGroupSession:
    """Edit a session; raising the capacity promotes waiting members at once."""
    session = _lock_session(session_id)
    if session.cancelled_at is not None:
        raise Conflict("This session was cancelled.")
    _apply(session, data)
    db.session.flush()
    if "capacity" in data:
        promote_waitlist(session.id)
    audit(actor_id, "surveys.focus_group.update", "focus_group_session", session.id, details={"fields": sorted(data)})
    return session


def cancel_session(actor_id: int, session_id: int, reason: str) -> FocusGroupSession:
    """Call a session off: sign-ups stop, and every confirmed or waiting member is told once."""
    session = _lock_session(session_id)
    if session.cancelled_at is not None:
        return session
    session.cancelled_at = utcnow()
    active = db.session.scalars(
        select(FocusGroupSignup).where(FocusGroupSignup.session_id == session_id, FocusGroupSignup.status.in_(ACTIVE))
    )
    for signup in active:
        notify(signup.member_id, "surveys.focus_group_cancelled", {"session_id": session.id, "title": session.title},
               dedupe_key=f"focus_group_cancelled:{signup.id}")
    audit(actor_id, "surveys.focus_group.cancel", "focus_group_session", session.id, reason=reason)
    db.session.flush()
    return session


def _lock_session(session_id: int) -> FocusGroupSession:
    session = db.session.scalar(
        select(FocusGroupSession).where(FocusGroupSession.id == session_id).with_for_update()
    )
    if session is None:
        raise NotFound("No such focus-group session.")
    return session


def list_signups(session_id: int) -> list[FocusGroupSignup]:
    get_session(session_id)
    return list(
        db.session.scalars(
            select(FocusGroupSignup)
            .where(FocusGroupSignup.session_id == session_id)
            .order_by(FocusGroupSignup.priority.desc(), FocusGroupSignup.signed_up_at, FocusGroupSignup.id)
        )
    )


def waitlisted_count(session_id: int) -> int:
    return db.session.scalar(
        select(func.count()).where(FocusGroupSignup.session_id == session_id, FocusGroupSignup.status == "waitlisted")
    )


def mark_attendance(actor_id: int, session_id: int, attended: list[int], no_show: list[int]) -> list[FocusGroupSignup]:
    """Record who came (points through the ledger, once) and who did not (counts against them).

    Marks are final: marking the same again is a no-op, changing a mark is a conflict.  Staff
    never mark their own attendance (403 ``self_dealing``, audited), and attendance points
    above ``AWARD_APPROVAL_THRESHOLD`` wait for a second staff member (``points.approvals``).
    """
    if actor_id in set(attended) | set(no_show):
        refuse_self_dealing(actor_id, "surveys.focus_group.attendance", "focus_group_session", session_id,
                            "You cannot mark your own attendance.")
    session = get_session(session_id)
    if session.cancelled_at is not None:
        raise Conflict("This session was cancelled.", code="session_cancelled")
    if session.starts_at > utcnow():
        raise Conflict("Attendance can be marked once the session has started.")
    overlap = set(attended) & set(no_show)
    if overlap:
        raise ValidationError(
            "A member cannot both attend and miss.", fields={"no_show": [f"Also attended: {sorted(overlap)}."]}
        )
    wanted = {m: "attended" for m in attended} | {m: "no_show" for m in no_show}
    signups = {
        s.member_id: s
        for s in db.session.scalars(
            select(FocusGroupSignup).where(
                FocusGroupSignup.session_id == session_id, FocusGroupSignup.member_id.in_(list(wanted))
            )
        )
    }
    errors: dict[str, list[str]] = {}
    for member_id, status in wanted.items():
        signup = signups.get(member_id)
        if signup is None or signup.status not in ("confirmed", "attended", "no_show"):
            errors[str(member_id)] = ["Not a confirmed participant of this session."]
        elif signup.status != "confirmed" and signup.status != status:
            errors[str(member_id)] = [f"Already marked {signup.status}."]
    if errors:
        raise ValidationError("Some members cannot be marked.", fields=errors)
    now = utcnow()
    marked = []
    for member_id, status in wanted.items():
        signup = signups[member_id]
        if signup.status == status:
            continue
        changed = db.session.execute(
            update(FocusGroupSignup)
            .where(FocusGroupSignup.id == signup.id, FocusGroupSignup.status == "confirmed")
            .values(status=status, marked_at=now, marked_by_id=actor_id)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed != 1:
            raise Conflict("The attendance changed meanwhile; reload and try again.")
        if status == "attended":
            _award_attendance(signup, session, actor_id)
        webhooks.publish("focus_group.signup_changed", {"signup_id": signup.id, "session_id": session_id,
                         "member_id": member_id, "status": status})
        marked.append(signup)
    db.session.flush()
    for signup in marked:
        db.session.refresh(signup)
    audit(actor_id, "surveys.focus_group.attendance", "focus_group_session", session_id,
          details={"attended": sorted(attended), "no_show": sorted(no_show)})
    return marked


def _award_attendance(signup: FocusGroupSignup, session: FocusGroupSession, actor_id: int) -> None:
    from points import approvals
    from points.services import record_interaction

    args = {
        "kind": "focus_group_attended", "key": f"focus_group_signup:{signup.id}",
        "source_type": "focus_group_signup", "source_id": signup.id, "value": session.attendance_points,
        "meta": {"session_id": session.id},
    }
    if approvals.needs_approval(session.attendance_points):
        approvals.request_award(
            kind="interaction", key=f"pending:{args['key']}", member_id=signup.member_id,
            points=session.attendance_points, reason=f"Focus group attended: {session.title}"[:200], request=args,
            requested_by_id=actor_id,
        )
        return
    record_interaction(signup.member_id, **{k: v for k, v in args.items() if k != "kind"}, kind=args["kind"])


# --------------------------------------------------------------------------- members


def upcoming_sessions(limit: int = 100) -> list[FocusGroupSession]:
    return list(
        db.session.scalars(
            select(FocusGroupSession)
            .where(FocusGroupSession.starts_at > utcnow(), FocusGroupSession.cancelled_at.is_(None))
            .order_by(FocusGroupSession.starts_at)
            .limit(limit)
        )
    )


def my_signups(member_id: int, session_ids: list[int]) -> dict[int, FocusGroupSignup]:
    if not session_ids:
        return {}
    return {
        s.session_id: s
        for s in db.session.scalars(
            select(FocusGroupSignup).where(
                FocusGroupSignup.member_id == member_id, FocusGroupSignup.session_id.in_(session_ids)
            )
        )
    }


def no_show_count(member_id: int) -> int:
    return db.session.scalar(
        select(func.count()).where(FocusGroupSignup.member_id == member_id, FocusGroupSignup.status == "no_show")
    )


def check_eligible(session: FocusGroupSession, user: User) -> None:
    """Raise Forbidden (with the reason) if ``user`` may not sign up for ``session``."""
    limit = no_show_limit()
    if no_show_count(user.id) >= limit:
        raise Forbidden(
            f"After {limit} missed sessions you can no longer sign up for focus groups.", code="too_many_no_shows"
        )
    if session.screener_survey_id:
        response = db.session.scalar(
            select(SurveyResponse).where(
                SurveyResponse.survey_id == session.screener_survey_id,
                SurveyResponse.member_id == user.id,
                SurveyResponse.status == "complete",
            )
        )
        if response is None:
            raise Forbidden(
                "Complete the screener survey first.", code="screener_required",
                fields={"screener_survey_id": [str(session.screener_survey_id)]},
            )
        if session.eligibility_rule and not defs.condition_met(session.eligibility_rule, response.answers):
            raise Forbidden("Your screener answers do not match this session's audience.", code="not_eligible")


def sign_up(user: User, session_id: int) -> FocusGroupSignup:
    """Sign up: confirmed while places are free (and nobody waits), else waitlisted.

    Signing up again while confirmed or waiting returns the existing sign-up unchanged.
    """
    session = get_session(session_id)
    now = utcnow()
    if session.cancelled_at is not None:
        raise Conflict("This session was cancelled.", code="session_cancelled")
    if session.starts_at <= now or (session.signup_deadline and session.signup_deadline <= now):
        raise Conflict("Sign-up for this session has closed.", code="signup_closed")
    signup = db.session.scalar(
        select(FocusGroupSignup).where(FocusGroupSignup.session_id == session_id, FocusGroupSignup.member_id == user.id)
    )
    if signup is not None and signup.status in ACTIVE:
        return signup
    if signup is not None and signup.status != "cancelled":
        raise Conflict("Your attendance for this session is already recorded.")
    check_eligible(session, user)

    priority = int(benefits_for(user.tier).get("focus_group_priority", 0))
    if signup is None:
        signup = FocusGroupSignup(session_id=session_id, member_id=user.id, status="waitlisted", priority=priority,
                                  signed_up_at=now)
        try:
            with db.session.begin_nested():
                db.session.add(signup)
                db.session.flush()
        except IntegrityError:  # a concurrent request of this member won
            raise Conflict("You are already signed up for this session.") from None
    else:  # re-joining after a cancellation goes to the back of the line
        signup.status, signup.priority, signup.signed_up_at = "waitlisted", priority, now
        signup.cancelled_at = signup.confirmed_at = None
        db.session.flush()
    # Newcomers do not jump a queue: a place goes to them only if nobody is waiting.
    others_waiting = db.session.scalar(
        select(func.count()).where(
            FocusGroupSignup.session_id == session_id,
            FocusGroupSignup.status == "waitlisted",
            FocusGroupSignup.id != signup.id,
        )
    )
    if not others_waiting and _take_place(session_id):
        _confirm(signup.id, now)
    db.session.refresh(signup)
    webhooks.publish("focus_group.signup_changed", {"signup_id": signup.id, "session_id": session_id,
                     "member_id": user.id, "status": signup.status})
    return signup


def _take_place(session_id: int) -> bool:
    """Atomically take one place; False when the session is full."""
    return db.session.execute(
        update(FocusGroupSession)
        .where(FocusGroupSession.id == session_id, FocusGroupSession.confirmed_count < FocusGroupSession.capacity)
        .values(confirmed_count=FocusGroupSession.confirmed_count + 1)
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def _confirm(signup_id: int, now: datetime) -> bool:
    return db.session.execute(
        update(FocusGroupSignup)
        .where(FocusGroupSignup.id == signup_id, FocusGroupSignup.status == "waitlisted")
        .values(status="confirmed", confirmed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def cancel_signup(user: User, session_id: int) -> FocusGroupSignup:
    """Cancel (before the cutoff); a freed place goes to the first waiting member at once."""
    session = get_session(session_id)
    now = utcnow()
    signup = db.session.scalar(
        select(FocusGroupSignup).where(FocusGroupSignup.session_id == session_id, FocusGroupSignup.member_id == user.id)
    )
    if signup is None or signup.status not in ACTIVE:
        raise NotFound("You are not signed up for this session.")
    if session.cancelled_at is not None:
        raise Conflict("This session was cancelled.", code="session_cancelled")
    cutoff = session.cancellation_cutoff or session.starts_at
    if now >= cutoff:
        raise Conflict("It is too late to cancel; please tell the organisers.", code="cancellation_closed")
    was = signup.status
    changed = db.session.execute(
        update(FocusGroupSignup)
        .where(FocusGroupSignup.id == signup.id, FocusGroupSignup.status == was)
        .values(status="cancelled", cancelled_at=now, confirmed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        raise Conflict("Your sign-up changed meanwhile; reload and try again.")
    if was == "confirmed":
        db.session.execute(
            update(FocusGroupSession)
            .where(FocusGroupSession.id == session_id, FocusGroupSession.confirmed_count > 0)
            .values(confirmed_count=FocusGroupSession.confirmed_count - 1)
            .execution_options(synchronize_session=False)
        )
        promote_waitlist(session_id)
    db.session.refresh(signup)
    webhooks.publish("focus_group.signup_changed", {"signup_id": signup.id, "session_id": session_id,
                     "member_id": user.id, "status": signup.status})
    return signup


def promote_waitlist(session_id: int) -> list[int]:
    """Fill free places from the waitlist in order; returns the promoted members' ids.

    Each promotion is a guarded status change, so two concurrent cancellations never promote
    the same member, and a place is taken before anyone is confirmed.
    """
    now = utcnow()
    promoted: list[int] = []
    skipped: set[int] = set()
    while True:
        query = (
            select(FocusGroupSignup.id, FocusGroupSignup.member_id)
            .where(FocusGroupSignup.session_id == session_id, FocusGroupSignup.status == "waitlisted")
            .order_by(FocusGroupSignup.priority.desc(), FocusGroupSignup.signed_up_at, FocusGroupSignup.id)
            .limit(1)
        )
        if skipped:
            query = query.where(FocusGroupSignup.id.not_in(skipped))
        first = db.session.execute(query).first()
        if first is None or not _take_place(session_id):
            break
        if not _confirm(first.id, now):
            # Someone else changed it meanwhile: give the place back and look further.
            db.session.execute(
                update(FocusGroupSession)
                .where(FocusGroupSession.id == session_id)
                .values(confirmed_count=FocusGroupSession.confirmed_count - 1)
                .execution_options(synchronize_session=False)
            )
            skipped.add(first.id)
            continue
        notify(first.member_id, "surveys.focus_group_promoted", {"session_id": session_id, "signup_id": first.id})
        webhooks.publish("focus_group.signup_changed", {"signup_id": first.id, "session_id": session_id,
                         "member_id": first.member_id, "status": "confirmed"})
        promoted.append(first.member_id)
    return promoted


def waitlist_position(signup: FocusGroupSignup) -> int | None:
    """1-based position among waiting members, or None if not waiting."""
    if signup.status != "waitlisted":
        return None
    S = FocusGroupSignup
    ahead = db.session.scalar(
        select(func.count()).where(
            S.session_id == signup.session_id,
            S.status == "waitlisted",
            (S.priority > signup.priority)
            | ((S.priority == signup.priority) & (S.signed_up_at < signup.signed_up_at))
            | ((S.priority == signup.priority) & (S.signed_up_at == signup.signed_up_at) & (S.id < signup.id)),
        )
    )
    return ahead + 1


# --------------------------------------------------------------------------- reminders and calendar


def sessions_needing_reminders(lead: timedelta) -> list[int]:
    """Sessions starting within ``lead`` from now (not cancelled, not started)."""
    now = utcnow()
    return list(
        db.session.scalars(
            select(FocusGroupSession.id).where(
                FocusGroupSession.cancelled_at.is_(None),
                FocusGroupSession.starts_at > now,
                FocusGroupSession.starts_at <= now + lead,
            )
        )
    )


def send_reminders(session_id: int) -> int:
    """Write one reminder per confirmed member to the outbox; dedupe keys make repeats no-ops."""
    session = db.session.get(FocusGroupSession, session_id)
    if session is None or session.cancelled_at is not None or session.starts_at <= utcnow():
        return 0
    signups = db.session.scalars(
        select(FocusGroupSignup).where(
            FocusGroupSignup.session_id == session_id, FocusGroupSignup.status == "confirmed"
        )
    )
    sent = 0
    for signup in signups:
        notify(
            signup.member_id,
            "surveys.focus_group_reminder",
            {"session_id": session.id, "title": session.title, "starts_at": session.starts_at.isoformat() + "Z",
             "location": session.location, "online_url": session.online_url},
            # Per sign-up and start time: a rescheduled session reminds again.
            dedupe_key=f"focus_group_reminder:{signup.id}:{session.starts_at:%Y%m%dT%H%M}",
        )
        sent += 1
    return sent


# Line breaks in any Unicode spelling (CR LF, CR, LF, NEL, LS, PS) become the TEXT escape \n.
_ICS_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# Control characters RFC 5545 forbids in a value (3.1: all CTLs but HTAB), and bidi controls.
_ICS_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _ics_clean(value: str) -> str:
    """A value with no control characters left (for URIs and other non-TEXT values)."""
    return _ICS_CONTROLS.sub("", _ICS_BREAKS.sub("", value or ""))


def _ics_text(value: str) -> str:
    """RFC 5545 TEXT escaping (3.3.11), with every control character stripped."""
    value = _ICS_BREAKS.sub("\n", value or "")
    value = _ICS_CONTROLS.sub("", value)
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Fold a content line at 75 octets without splitting a UTF-8 character (RFC 5545 3.1)."""
    out, current, size = [], "", 0
    for char in line:
        width = len(char.encode())
        if size + width > 75:
            out.append(current)
            current, size = " ", 1
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


def _ics_time(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def calendar_file(session_id: int, host: str) -> str:
    """The session as an iCalendar file (one VEVENT, times in UTC, CRLF line endings)."""
    session = get_session(session_id)
    description = session.description or ""
    if session.online_url:
        description = f"{description}\n\nJoin online: {session.online_url}".strip()
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Kinship//Focus groups//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:focus-group-session-{session.id}@{_ics_clean(host)}",
        f"DTSTAMP:{_ics_time(utcnow())}",
        f"DTSTART:{_ics_time(session.starts_at)}",
        f"DTEND:{_ics_time(session.ends_at)}",
        f"SUMMARY:{_ics_text(session.title)}",
    ]
    if description:
        lines.append(f"DESCRIPTION:{_ics_text(description)}")
    if session.location or session.online_url:
        lines.append(f"LOCATION:{_ics_text(session.location or session.online_url)}")
    if session.online_url:
        lines.append(f"URL:{_ics_clean(session.online_url)}")
    lines.append("STATUS:CANCELLED" if session.cancelled_at else "STATUS:CONFIRMED")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(_fold(line) + "\r\n" for line in lines)
