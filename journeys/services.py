"""Managing journeys and their message templates (staff operations; every write is audited).

A journey's definition lives in immutable versions: ``create`` writes version 1, ``revise``
writes the next one and points the journey at it.  Members already inside an older version
finish on it, or with ``migrate=True`` move to the new version at the step they are on (those
whose step no longer exists finish on their version).

Status: ``draft`` (nobody enters) → ``active`` ⇄ ``paused`` → ``archived``.  Pausing stops new
entries and new sends at once: the engine checks the status when it executes a step, not only
when it enqueues one.  A journey with a holdout share gets an analytics *touch* experiment when it
is first activated, whose control arm is the holdout (``arm_of``).
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from community.models import utcnow
from community.services import audit
from errors import Conflict, NotFound, ValidationError
from extensions import db

from . import definition
from .models import Enrolment, Journey, JourneyTask, JourneyTemplate, JourneyVersion

LOCALES = ("en", "zh-CN")


# --------------------------------------------------------------------------- templates


def get_template(key: str) -> JourneyTemplate:
    found = db.session.scalar(select(JourneyTemplate).where(JourneyTemplate.key == key))
    if found is None:
        raise NotFound("No such journey template.", fields={"template": [key]})
    return found


def _check_texts(data: dict) -> None:
    for part in ("subject", "body"):
        texts = data.get(part)
        if texts is None:
            continue
        if "en" not in texts:
            raise ValidationError("Every template has an English text.", fields={f"{part}.en": ["Required."]})
        unknown = sorted(set(texts) - set(LOCALES))
        if unknown:
            raise ValidationError("Unknown locale.", fields={f"{part}.{unknown[0]}": [f"One of {', '.join(LOCALES)}."]})


def create_template(actor_id: int | None, data: dict) -> JourneyTemplate:
    _check_texts(data)
    if db.session.scalar(select(JourneyTemplate.id).where(JourneyTemplate.key == data["key"])) is not None:
        raise Conflict("A template with this key exists.", fields={"key": [data["key"]]})
    tpl = JourneyTemplate(key=data["key"], category=data["category"], subject=data["subject"], body=data["body"])
    db.session.add(tpl)
    db.session.flush()
    audit(actor_id, "journeys.template.create", "journey_template", tpl.id, details={"key": tpl.key})
    return tpl


def update_template(actor_id: int, key: str, data: dict) -> JourneyTemplate:
    tpl = get_template(key)
    _check_texts(data)
    for field in ("category", "subject", "body"):
        if field in data:
            setattr(tpl, field, data[field])
    db.session.flush()
    audit(actor_id, "journeys.template.update", "journey_template", tpl.id, details={"key": key})
    return tpl


# --------------------------------------------------------------------------- journeys


def get(journey_id: int) -> Journey:
    journey = db.session.get(Journey, journey_id)
    if journey is None:
        raise NotFound("No such journey.")
    return journey


def get_version(version_id: int) -> JourneyVersion:
    version = db.session.get(JourneyVersion, version_id)
    if version is None:
        raise NotFound("No such journey version.")
    return version


def current_version(journey: Journey) -> JourneyVersion:
    return get_version(journey.current_version_id)


def _new_version(journey: Journey, actor_id: int | None, defn: dict) -> JourneyVersion:
    number = (db.session.scalar(select(func.max(JourneyVersion.number))
                                .where(JourneyVersion.journey_id == journey.id)) or 0) + 1
    version = JourneyVersion(journey_id=journey.id, number=number, created_by_id=actor_id, **defn)
    db.session.add(version)
    db.session.flush()
    journey.current_version_id = version.id
    return version


def create(actor_id: int | None, data: dict) -> Journey:
    defn = definition.validate(data["definition"])
    if db.session.scalar(select(Journey.id).where(Journey.name == data["name"])) is not None:
        raise Conflict("A journey with this name exists.", fields={"name": [data["name"]]})
    journey = Journey(name=data["name"], description=data.get("description") or "",
                      holdout_share_bp=round(data.get("holdout_share", 0) * 10000), created_by_id=actor_id)
    db.session.add(journey)
    db.session.flush()
    _new_version(journey, actor_id, defn)
    audit(actor_id, "journeys.journey.create", "journey", journey.id, details={"name": journey.name})
    _changed()
    return journey


def revise(actor_id: int, journey_id: int, data: dict) -> tuple[Journey, int]:
    """Change the name/description and, with ``definition``, write a new version.

    Returns the journey and how many members moved to the new version (``migrate``).
    """
    journey = get(journey_id)
    if journey.status == "archived":
        raise Conflict("The journey is archived.", code="journey_archived")
    if "name" in data and data["name"] != journey.name and db.session.scalar(
            select(Journey.id).where(Journey.name == data["name"])) is not None:
        raise Conflict("A journey with this name exists.", fields={"name": [data["name"]]})
    for key in ("name", "description"):
        if key in data:
            setattr(journey, key, data[key])
    if "holdout_share" in data:
        if journey.experiment_id is not None:
            raise Conflict("The holdout share is fixed once the journey's experiment started.",
                           code="experiment_started", fields={"holdout_share": ["Fixed once started."]})
        journey.holdout_share_bp = round(data["holdout_share"] * 10000)
    moved = 0
    if "definition" in data:
        old_id = journey.current_version_id
        defn = definition.validate(data["definition"])
        version = _new_version(journey, actor_id, defn)
        if data.get("migrate"):
            moved = _migrate(journey.id, old_id, version)
    db.session.flush()
    audit(actor_id, "journeys.journey.revise", "journey", journey.id,
          details={"version_id": journey.current_version_id, "migrated": moved})
    _changed()
    return journey, moved


def _migrate(journey_id: int, old_version_id: int, version: JourneyVersion) -> int:
    """Move active members of earlier versions whose current step exists in ``version``."""
    ids = [s["id"] for s in version.steps]
    return db.session.execute(
        update(Enrolment).where(Enrolment.journey_id == journey_id, Enrolment.state == "active",
                                Enrolment.version_id != version.id, Enrolment.current_step.in_(ids))
        .values(version_id=version.id).execution_options(synchronize_session=False)
    ).rowcount or 0


def _start_experiment(actor_id: int, journey: Journey) -> None:
    from analytics import experiments

    exp = experiments.create(actor_id, {
        "name": f"journey {journey.id}: {journey.name}"[:120], "kind": "touch",
        "description": f"Holdout of journey {journey.id}: entrants in control receive none of its touches.",
        "test_share": 1 - journey.holdout_share_bp / 10000,
    }, exclusive=False)
    experiments.start(actor_id, exp.id, exclusive=False)
    journey.experiment_id = exp.id


def set_status(actor_id: int, journey_id: int, action: str) -> Journey:
    """``activate`` (draft/paused → active), ``pause`` (active → paused), ``archive``."""
    journey = db.session.scalar(select(Journey).where(Journey.id == journey_id).with_for_update())
    if journey is None:
        raise NotFound("No such journey.")
    allowed = {"activate": ("draft", "paused"), "pause": ("active",), "archive": ("draft", "active", "paused")}
    target = {"activate": "active", "pause": "paused", "archive": "archived"}[action]
    if journey.status not in allowed[action]:
        raise Conflict(f"A {journey.status} journey cannot {action}.", code="journey_state",
                       fields={"status": [journey.status]})
    if action == "activate":
        version = current_version(journey)
        awards = any(s.get("action") in definition.POINTS_ACTIONS for s in version.steps)
        if awards and actor_id is not None and actor_id == version.created_by_id:
            from errors import Forbidden

            raise Forbidden("A journey that awards points is activated by someone other than its author.",
                            code="four_eyes")
    if action == "activate" and journey.holdout_share_bp and journey.experiment_id is None:
        _start_experiment(actor_id, journey)
    if action == "archive":
        db.session.execute(update(Enrolment).where(Enrolment.journey_id == journey.id, Enrolment.state == "active")
                           .values(state="exited", finished_at=utcnow(), next_run_at=None)
                           .execution_options(synchronize_session=False))
    journey.status = target
    db.session.flush()
    audit(actor_id, f"journeys.journey.{action}", "journey", journey.id)
    _changed()
    return journey


def _changed() -> None:
    from . import triggers

    triggers.invalidate()


# --------------------------------------------------------------------------- tasks


def complete_task(actor_id: int, task_id: int) -> JourneyTask:
    task = db.session.get(JourneyTask, task_id)
    if task is None:
        raise NotFound("No such task.")
    if task.member_id == actor_id:
        raise Conflict("Staff do not close tasks about themselves.", code="own_task")
    if task.status == "open":
        task.status, task.done_at, task.done_by_id = "done", utcnow(), actor_id
        db.session.flush()
        audit(actor_id, "journeys.task.done", "journey_task", task.id)
    return task
