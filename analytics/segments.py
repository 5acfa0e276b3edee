"""Segments: saved definitions (data, not code) over member attributes and scores, materialised
by a job into ``analytics_segment_members`` and queryable.

A definition is ``{"match": "all" | "any", "conditions": [{"field", "op", "value"}, ...]}``;
``FIELDS`` lists each field's operators and value type.  ``compile_definition`` turns it into one
SQL condition over ``users`` joined to ``member_scores``, so materialising a segment is one
``INSERT … SELECT``.

Published functions for other domains (audiences of campaigns, surveys, rewards):
``is_member_in(segment_id, member_id)``, ``members_of(segment_id)`` and ``require_segment``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, false, func, insert, literal, not_, or_, select, true, update

from community.models import TIERS, User, utcnow
from community.services import audit
from errors import Conflict, NotFound, ValidationError
from extensions import db
from surveys.models import FocusGroupSignup

from . import sql
from .models import RFM_CLASSES, MemberFlag, MemberScore, MemberTag, Segment, SegmentMember

MAX_CONDITIONS = 50
TAG_MAX = 64

# field -> (operators, value kind)
FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "tier": (("in", "not_in"), "tiers"),
    "rfm_class": (("in", "not_in"), "classes"),
    "value_score": (("gte", "lte"), "number"),
    "health": (("gte", "lte"), "number"),
    "last_activity_days": (("lte", "gte"), "days"),
    "birthday_month": (("in",), "months"),
    "tag": (("has_any", "has_none"), "tags"),
    "nps_detractor": (("is",), "bool"),
    "nps_promoter": (("is",), "bool"),
    "focus_group_attended": (("is",), "bool"),
    "strategic": (("is",), "bool"),
}


def _bad(path: str, message: str):
    return ValidationError("The segment definition is invalid.", fields={path: [message]})


def validate_definition(definition) -> dict:
    """A normalised copy of a definition, or ``ValidationError`` naming the bad part."""
    if not isinstance(definition, dict):
        raise _bad("definition", "An object with match and conditions.")
    unknown = set(definition) - {"match", "conditions"}
    if unknown:
        raise _bad("definition", f"Unknown keys: {', '.join(sorted(unknown))}.")
    match = definition.get("match", "all")
    if match not in ("all", "any"):
        raise _bad("definition.match", "One of all, any.")
    conditions = definition.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise _bad("definition.conditions", "At least one condition (an empty segment would be everyone).")
    if len(conditions) > MAX_CONDITIONS:
        raise _bad("definition.conditions", f"At most {MAX_CONDITIONS} conditions.")
    out = []
    for i, cond in enumerate(conditions):
        path = f"definition.conditions.{i}"
        if not isinstance(cond, dict) or set(cond) != {"field", "op", "value"}:
            raise _bad(path, "An object with exactly field, op and value.")
        field, op, value = cond["field"], cond["op"], cond["value"]
        if field not in FIELDS:
            raise _bad(f"{path}.field", f"Unknown field; one of {', '.join(FIELDS)}.")
        ops, kind = FIELDS[field]
        if op not in ops:
            raise _bad(f"{path}.op", f"One of {', '.join(ops)} for {field}.")
        out.append({"field": field, "op": op, "value": _check_value(f"{path}.value", kind, value)})
    return {"match": match, "conditions": out}


def _check_value(path: str, kind: str, value):
    def listed(allowed=None, check=None):
        if not isinstance(value, list) or not value or len(value) > 100:
            raise _bad(path, "A non-empty list (at most 100 values).")
        for v in value:
            if allowed is not None and v not in allowed:
                raise _bad(path, f"Unknown value {v!r}; one of {', '.join(map(str, allowed))}.")
            if check is not None and not check(v):
                raise _bad(path, f"Invalid value {v!r}.")
        return sorted(set(value), key=str)

    if kind == "tiers":
        return listed(TIERS)
    if kind == "classes":
        return listed(RFM_CLASSES)
    if kind == "months":
        return listed(check=lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 12)
    if kind == "tags":
        return listed(check=lambda v: isinstance(v, str) and 1 <= len(v) <= TAG_MAX)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad(path, "true or false.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(path, "A number.")
    if kind == "number" and not 0 <= value <= 100:
        raise _bad(path, "Between 0 and 100.")
    if kind == "days" and not 0 <= value <= 36500:
        raise _bad(path, "Between 0 and 36500 days.")
    return value


def _condition(cond: dict, now: datetime):
    field, op, value = cond["field"], cond["op"], cond["value"]
    s = MemberScore
    if field == "tier":
        expr = User.tier.in_(value)
        return expr if op == "in" else not_(expr)
    if field == "rfm_class":
        expr = func.coalesce(s.rfm_class, "low_value").in_(value)
        return expr if op == "in" else not_(expr)
    if field in ("value_score", "health"):
        column = func.coalesce(getattr(s, field), 0)
        return column >= value if op == "gte" else column <= value
    if field == "last_activity_days":
        since = now - timedelta(days=value)
        if op == "lte":  # active within the last N days
            return s.last_activity_at >= since
        return or_(s.last_activity_at.is_(None), s.last_activity_at < since)
    if field == "birthday_month":
        return func.extract("month", User.birthday).in_(value)
    if field == "tag":
        has = exists().where(MemberTag.member_id == User.id, MemberTag.tag.in_(value))
        return has if op == "has_any" else not_(has)
    if field == "nps_detractor":
        return (s.latest_nps <= 6) if value else or_(s.latest_nps.is_(None), s.latest_nps > 6)
    if field == "nps_promoter":
        return (s.latest_nps >= 9) if value else or_(s.latest_nps.is_(None), s.latest_nps < 9)
    if field == "focus_group_attended":
        attended = exists().where(FocusGroupSignup.member_id == User.id, FocusGroupSignup.status == "attended")
        return attended if value else not_(attended)
    if field == "strategic":
        flag = exists().where(MemberFlag.member_id == User.id, MemberFlag.strategic.is_(true()))
        return flag if value else not_(flag)
    raise _bad("definition", f"Unknown field {field}.")  # validate_definition keeps this unreachable


def compile_definition(definition: dict, now: datetime | None = None):
    """``(select of member ids)`` for a validated definition."""
    now = now or utcnow()
    parts = [_condition(c, now) for c in definition["conditions"]]
    where = and_(*parts) if definition["match"] == "all" else or_(*parts)
    return (
        select(User.id)
        .select_from(User)
        .outerjoin(MemberScore, MemberScore.member_id == User.id)
        .where(User.is_active_account.is_(true()), where)
    )


# --------------------------------------------------------------------------- published functions


def require_segment(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None or segment.archived:
        raise NotFound("No such segment.", fields={"segment_id": [segment_id]})
    return segment


def is_member_in(segment_id: int, member_id: int) -> bool:
    """Is the member in the segment's last materialisation?"""
    return db.session.scalar(
        select(literal(True)).where(SegmentMember.segment_id == segment_id, SegmentMember.member_id == member_id)
    ) is not None


def segments_of(member_id: int):
    """A SELECT of the ids of the segments the member is in (compose it, e.g. a catalogue filter)."""
    return select(SegmentMember.segment_id).where(SegmentMember.member_id == member_id)


def members_of(segment_id: int):
    """A SELECT of the segment's member ids (compose it into other queries, or execute it)."""
    return select(SegmentMember.member_id).where(SegmentMember.segment_id == segment_id)


# --------------------------------------------------------------------------- staff operations


def create(actor_id: int, data: dict) -> Segment:
    definition = validate_definition(data["definition"])
    if db.session.scalar(select(Segment.id).where(Segment.name == data["name"])) is not None:
        raise Conflict("A segment with this name exists.", fields={"name": [data["name"]]})
    segment = Segment(name=data["name"], description=data.get("description") or "", definition=definition,
                      created_by_id=actor_id, created_at=utcnow(), updated_at=utcnow())
    db.session.add(segment)
    db.session.flush()
    audit(actor_id, "analytics.segment.create", "segment", segment.id, details={"definition": definition})
    return segment


def update_segment(actor_id: int, segment_id: int, data: dict) -> Segment:
    segment = require_segment(segment_id)
    if "definition" in data:
        segment.definition = validate_definition(data["definition"])
    if "name" in data and data["name"] != segment.name:
        if db.session.scalar(select(Segment.id).where(Segment.name == data["name"])) is not None:
            raise Conflict("A segment with this name exists.", fields={"name": [data["name"]]})
        segment.name = data["name"]
    if "description" in data:
        segment.description = data["description"]
    segment.updated_at = utcnow()
    db.session.flush()
    audit(actor_id, "analytics.segment.update", "segment", segment.id, details={k: v for k, v in data.items()})
    return segment


def archive(actor_id: int, segment_id: int) -> None:
    segment = require_segment(segment_id)
    from .models import Experiment

    used = db.session.scalar(select(Experiment.id).where(Experiment.segment_id == segment_id,
                                                          Experiment.status != "stopped").limit(1))
    if used is not None:
        raise Conflict("An experiment still uses this segment.", fields={"experiment_id": [used]})
    segment.archived = True
    db.session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment_id))
    _record_history(segment_id, utcnow(), False)  # every stay ends now
    audit(actor_id, "analytics.segment.archive", "segment", segment.id)


def preview_count(definition: dict) -> int:
    query = compile_definition(validate_definition(definition))
    return db.session.scalar(select(func.count()).select_from(query.subquery()))


def materialise(segment_id: int, now: datetime | None = None) -> int:
    """Replace the segment's members with what its definition selects now (one INSERT … SELECT)."""
    segment = require_segment(segment_id)
    # Read, not the loaded object's attribute: the UPDATE below bypasses the session's copy.
    first = db.session.scalar(select(Segment.materialised_at).where(Segment.id == segment_id)) is None
    now = now or utcnow()
    query = compile_definition(segment.definition, now)
    db.session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment_id))
    db.session.execute(
        insert(SegmentMember).from_select(["segment_id", "member_id"],
                                          query.with_only_columns(literal(segment_id), User.id))
    )
    _record_history(segment_id, now, first)
    count = db.session.scalar(select(func.count()).where(SegmentMember.segment_id == segment_id))
    db.session.execute(update(Segment).where(Segment.id == segment_id)
                       .values(member_count=count, materialised_at=now))
    return count


def _record_history(segment_id: int, now: datetime, first: bool) -> None:
    """Close the stays of members no longer in the segment, open one for each newcomer (two
    set-based statements).  The first materialisation's members count from before history."""
    sql.run("UPDATE analytics_segment_history SET left_at = :now WHERE segment_id = :s AND left_at IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM analytics_segment_members sm WHERE sm.segment_id = :s "
            "AND sm.member_id = analytics_segment_history.member_id)", s=segment_id, now=now)
    joined = "NULL" if first else ":now"
    sql.run("INSERT INTO analytics_segment_history (segment_id, member_id, joined_at) "
            f"SELECT :s, sm.member_id, {joined} FROM analytics_segment_members sm WHERE sm.segment_id = :s "
            "AND NOT EXISTS (SELECT 1 FROM analytics_segment_history h WHERE h.segment_id = :s "
            "AND h.member_id = sm.member_id AND h.left_at IS NULL)", s=segment_id, now=now)


def materialise_all(now: datetime | None = None) -> dict:
    ids = db.session.scalars(select(Segment.id).where(Segment.archived.is_(false())).order_by(Segment.id)).all()
    return {str(i): materialise(i, now) for i in ids}


# --------------------------------------------------------------------------- tags and flags


def tag_members(actor_id: int, tag: str, member_ids: list[int]) -> int:
    found = set(db.session.scalars(select(User.id).where(User.id.in_(member_ids))))
    missing = sorted(set(member_ids) - found)
    if missing:
        raise NotFound("Unknown members.", fields={"member_ids": missing})
    have = set(db.session.scalars(select(MemberTag.member_id).where(MemberTag.tag == tag,
                                                                     MemberTag.member_id.in_(member_ids))))
    new = sorted(found - have)
    for member_id in new:
        db.session.add(MemberTag(member_id=member_id, tag=tag, tagged_by_id=actor_id, created_at=utcnow()))
    db.session.flush()
    audit(actor_id, "analytics.member.tag", "tag", None, details={"tag": tag, "member_ids": new})
    return len(new)


def untag_member(actor_id: int, member_id: int, tag: str) -> None:
    removed = db.session.execute(delete(MemberTag).where(MemberTag.member_id == member_id, MemberTag.tag == tag))
    if not removed.rowcount:
        raise NotFound("The member does not have this tag.")
    audit(actor_id, "analytics.member.untag", "member", member_id, details={"tag": tag})


def member_tags(member_id: int) -> list[str]:
    return list(db.session.scalars(select(MemberTag.tag).where(MemberTag.member_id == member_id)
                                   .order_by(MemberTag.tag)))
