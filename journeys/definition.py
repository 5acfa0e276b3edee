"""A journey's definition as data, and its save-time validation.

A definition is ``{"trigger", "audience", "entry", "goal", "steps"}``:

* ``trigger``: ``{"type": "event", "event": <EVENTS>}``,
  ``{"type": "date", "field": "birthday"|"signup_anniversary"|"renewal_on"|"contract_on",
  "offset_days": -365..365}`` (negative: that many days *before* the date; ``renewal_on`` is the
  date itself, ``contract_on`` its yearly anniversary, as birthdays and sign-ups),
  ``{"type": "inactivity", "days": 1..730}``, or
  ``{"type": "calendar", "every": "week", "weekday": 0..6}`` / ``{"every": "month", "day": 1..28}`` /
  ``{"every": "quarter", "day": 1..28, "month_of_quarter": 1..3}`` (default 1: January, April, July,
  October) / ``{"every": "year", "month": 1..12, "day": 1..28}`` (the "four ones" cadence: a weekly
  message, a monthly training, a quarterly visit, a yearly event).
* ``audience``: ``{"type": "everyone"}``, ``{"type": "segment", "segment_id"}``,
  ``{"type": "tier", "tiers": [...]}``.
* ``entry``: ``{"rule": "once"}`` (once ever), ``{"rule": "per_occurrence"}`` (once per event or
  date), ``{"rule": "reentry_after", "days": 1..3650}``.
* ``goal`` (optional): ``{"event": <EVENTS>, "within_days": 1..365}``: the member converts when
  the goal event happens within that many days of entering.
* ``steps``: a list; the first is where members start.  Each has a unique ``id`` and a ``type``:
  ``wait`` (``delay_minutes`` 1..525600, and/or ``until_local_time`` "HH:MM" in the member's time
  zone; with ``on_entry_day``: true instead of a delay, that time on the local day the member
  entered for (a date trigger's day), at once if it has passed: a birthday greeting at 09:00 on
  the birthday itself, east or west of UTC), ``condition`` (``condition``: ``in_segment`` +
  ``segment_id``, ``purchased_since_entry``,
  ``answered_survey`` + ``survey_id``; branches ``then`` / ``else``), ``action`` (``action``:
  ``send`` + ``template`` or + ``variants`` (an A/B test: 2-5 ``{"id", "weight", "template"}``),
  ``award_points`` + ``points`` 1..10000, ``points_multiplier`` +
  ``multiplier`` (more than 1, at most 10, 3 decimals) + either ``hours`` 1..720 or ``until``:
  ``"end_of_local_day"`` (the rest of the member's day in their messaging time zone; for a date
  trigger, the day the schedule entered them for) [+ ``kinds``: interaction kinds], ``invite_survey`` + ``survey_id``,
  ``invite_focus_group`` + ``session_id``, ``tag`` + ``tag``, ``task`` + ``title`` [+ ``note``]) or
  ``exit``.  ``next`` names the following step (none: the journey ends there).

``validate`` refuses unknown keys' values, references to unknown steps, templates, segments,
surveys and sessions, cycles, unreachable steps and out-of-range numbers, naming the field
(``steps.2.next``) in the 422 envelope.
"""

from __future__ import annotations

import re

from errors import NotFound, ValidationError

EVENTS = (
    "member.registered", "purchase.recorded", "tier.changed", "points.expiring", "redemption.fulfilled",
    "survey.completed", "focus_group.attended", "referral.converted",
)
DATE_FIELDS = ("birthday", "signup_anniversary", "renewal_on", "contract_on")
STEP_TYPES = ("wait", "condition", "action", "exit")
CONDITIONS = ("in_segment", "purchased_since_entry", "answered_survey")
ACTIONS = ("send", "award_points", "points_multiplier", "invite_survey", "invite_focus_group", "tag", "task")
TIERS = ("aware", "engaged", "satisfied", "loyal", "advocate")
MAX_STEPS = 50
MAX_DELAY_MINUTES = 525_600  # a year
MAX_POINTS = 10_000
MAX_MULTIPLIER_HOURS = 720  # 30 days
# A multiplier's window by the member's own clock instead of ``hours``: ``end_of_local_day`` is
# the rest of the member's local day (the schedule's date for a date trigger), see engine.
MULTIPLIER_UNTIL = ("end_of_local_day",)
# A send's A/B test: 2-5 variants, each a message (the same fields a plain send takes) with a
# positive integer weight (the share of members is weight / the sum of the weights).
MESSAGE_FIELDS = ("template",)
MIN_VARIANTS, MAX_VARIANTS = 2, 5
MAX_VARIANT_WEIGHT = 10_000
# Actions that give points: activated by someone other than the version's author (four eyes),
# never to the journey's authors.
POINTS_ACTIONS = ("award_points", "points_multiplier")
_STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:\-]{0,63}$")


class _Errors:
    def __init__(self):
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.fields:
            fields = {f"definition.{k}": v for k, v in self.fields.items()}
            first = next(iter(fields))
            raise ValidationError(f"The journey definition is invalid ({first}).", fields=fields)


def _int(errors: _Errors, obj: dict, key: str, path: str, lo: int, hi: int, *, required: bool = True) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            errors.add(f"{path}.{key}", "Required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        errors.add(f"{path}.{key}", f"An integer from {lo} to {hi}.")
        return None
    return value


def _choice(errors: _Errors, obj: dict, key: str, path: str, choices) -> str | None:
    value = obj.get(key)
    if value not in choices:
        errors.add(f"{path}.{key}", f"One of {', '.join(map(str, choices))}.")
        return None
    return value


def _exists(errors: _Errors, path: str, check, ident) -> None:
    if isinstance(ident, bool) or not isinstance(ident, int) or ident < 1:
        errors.add(path, "An id.")
        return
    try:
        check(ident)
    except NotFound:
        errors.add(path, f"Unknown: {ident}.")


def _segment(ident):
    from analytics.segments import require_segment

    require_segment(ident)


def _survey(ident):
    from surveys.services import get_survey

    get_survey(ident)


def _session(ident):
    from surveys.focus_groups import get_session

    get_session(ident)


def _template(key):
    from .services import get_template

    get_template(key)


def _trigger(errors: _Errors, trig) -> None:
    if not isinstance(trig, dict):
        errors.add("trigger", "An object.")
        return
    kind = _choice(errors, trig, "type", "trigger", ("event", "date", "inactivity", "calendar"))
    if kind == "event":
        _choice(errors, trig, "event", "trigger", EVENTS)
    elif kind == "date":
        _choice(errors, trig, "field", "trigger", DATE_FIELDS)
        _int(errors, trig, "offset_days", "trigger", -365, 365, required=False)
    elif kind == "inactivity":
        _int(errors, trig, "days", "trigger", 1, 730)
    elif kind == "calendar":
        every = _choice(errors, trig, "every", "trigger", ("week", "month", "quarter", "year"))
        if every == "week":
            _int(errors, trig, "weekday", "trigger", 0, 6)
        elif every in ("month", "quarter", "year"):
            _int(errors, trig, "day", "trigger", 1, 28)
        if every == "quarter":
            _int(errors, trig, "month_of_quarter", "trigger", 1, 3, required=False)
        elif every == "year":
            _int(errors, trig, "month", "trigger", 1, 12)


def _audience(errors: _Errors, aud) -> None:
    if not isinstance(aud, dict):
        errors.add("audience", "An object.")
        return
    kind = _choice(errors, aud, "type", "audience", ("everyone", "segment", "tier"))
    if kind == "segment":
        _exists(errors, "audience.segment_id", _segment, aud.get("segment_id"))
    elif kind == "tier":
        tiers = aud.get("tiers")
        if not isinstance(tiers, list) or not tiers or any(t not in TIERS for t in tiers):
            errors.add("audience.tiers", f"A non-empty list of {', '.join(TIERS)}.")


def _entry(errors: _Errors, entry) -> None:
    if not isinstance(entry, dict):
        errors.add("entry", "An object.")
        return
    rule = _choice(errors, entry, "rule", "entry", ("once", "per_occurrence", "reentry_after"))
    if rule == "reentry_after":
        _int(errors, entry, "days", "entry", 1, 3650)


def _goal(errors: _Errors, goal) -> None:
    if goal is None:
        return
    if not isinstance(goal, dict):
        errors.add("goal", "An object or null.")
        return
    _choice(errors, goal, "event", "goal", EVENTS)
    _int(errors, goal, "within_days", "goal", 1, 365)


def _step(errors: _Errors, step: dict, path: str) -> None:
    kind = step.get("type")
    if kind == "wait":
        delay = _int(errors, step, "delay_minutes", path, 1, MAX_DELAY_MINUTES, required=False)
        at = step.get("until_local_time")
        if at is not None and (not isinstance(at, str) or not _TIME.match(at)):
            errors.add(f"{path}.until_local_time", "A time HH:MM (24 h).")
        if delay is None and at is None and "delay_minutes" not in step:
            errors.add(f"{path}.delay_minutes", "A wait needs delay_minutes or until_local_time.")
        on_day = step.get("on_entry_day")
        if on_day is not None:
            if not isinstance(on_day, bool):
                errors.add(f"{path}.on_entry_day", "true or false.")
            elif on_day and at is None:
                errors.add(f"{path}.on_entry_day", "Needs until_local_time.")
            elif on_day and "delay_minutes" in step:
                errors.add(f"{path}.on_entry_day", "Either delay_minutes or on_entry_day, not both.")
    elif kind == "condition":
        cond = _choice(errors, step, "condition", path, CONDITIONS)
        if cond == "in_segment":
            _exists(errors, f"{path}.segment_id", _segment, step.get("segment_id"))
        elif cond == "answered_survey":
            _exists(errors, f"{path}.survey_id", _survey, step.get("survey_id"))
    elif kind == "action":
        action = _choice(errors, step, "action", path, ACTIONS)
        if action == "send":
            _send(errors, step, path)
        elif action == "award_points":
            _int(errors, step, "points", path, 1, MAX_POINTS)
        elif action == "points_multiplier":
            _multiplier(errors, step, path)
        elif action == "invite_survey":
            _exists(errors, f"{path}.survey_id", _survey, step.get("survey_id"))
        elif action == "invite_focus_group":
            _exists(errors, f"{path}.session_id", _session, step.get("session_id"))
        elif action == "tag":
            tag = step.get("tag")
            if not isinstance(tag, str) or not _TAG.match(tag):
                errors.add(f"{path}.tag", "1-64 letters, digits, space, _ . : -")
        elif action == "task":
            title = step.get("title")
            if not isinstance(title, str) or not 1 <= len(title.strip()) <= 200:
                errors.add(f"{path}.title", "1-200 characters.")
            if not isinstance(step.get("note", ""), str) or len(step.get("note", "")) > 2000:
                errors.add(f"{path}.note", "At most 2000 characters.")


def _message(errors: _Errors, obj: dict, path: str) -> None:
    """The message fields of a send (or of one of its variants): ``template``, a known key."""
    key = obj.get("template")
    if not isinstance(key, str) or not key:
        errors.add(f"{path}.template", "Required.")
        return
    try:
        _template(key)
    except NotFound:
        errors.add(f"{path}.template", f"Unknown template: {key}.")


def _send(errors: _Errors, step: dict, path: str) -> None:
    """A send carries one message (``template``) or ``variants``: an A/B test of 2-5 messages,
    each ``{"id", "weight", "template"}`` (the engine assigns members by a hash, see
    ``engine.variant_of``), never both."""
    if "variants" not in step:
        _message(errors, step, path)
        return
    variants = step["variants"]
    if any(key in step for key in MESSAGE_FIELDS):
        errors.add(f"{path}.variants", f"Either {' / '.join(MESSAGE_FIELDS)} or variants, not both.")
    if not isinstance(variants, list) or not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        errors.add(f"{path}.variants", f"A list of {MIN_VARIANTS} to {MAX_VARIANTS} variants.")
        return
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        vpath = f"{path}.variants.{i}"
        if not isinstance(variant, dict):
            errors.add(vpath, "An object {id, weight, template}.")
            continue
        for key in sorted(set(variant) - {"id", "weight", *MESSAGE_FIELDS}):
            errors.add(f"{vpath}.{key}", "Unknown field.")
        vid = variant.get("id")
        if not isinstance(vid, str) or not _STEP_ID.match(vid):
            errors.add(f"{vpath}.id", "1-40 letters, digits, _ or -.")
        elif vid in seen:
            errors.add(f"{vpath}.id", f"Duplicate variant id: {vid}.")
        else:
            seen.add(vid)
        _int(errors, variant, "weight", vpath, 1, MAX_VARIANT_WEIGHT)
        _message(errors, variant, vpath)


def _multiplier(errors: _Errors, step: dict, path: str) -> None:
    from decimal import Decimal, InvalidOperation

    value = step.get("multiplier")
    try:
        # A JSON number, as every decimal of the API (docs/api.md): strings are refused.
        number = None if isinstance(value, bool) or not isinstance(value, (int, float)) else Decimal(str(value))
    except InvalidOperation:
        number = None
    from points.services import MAX_MULTIPLIER

    if (number is None or not number.is_finite() or not 1 < number <= MAX_MULTIPLIER
            or number != number.quantize(Decimal("0.001"))):
        errors.add(f"{path}.multiplier", "A number more than 1 and at most 10 (3 decimals).")
    until = step.get("until")
    if until is not None and until not in MULTIPLIER_UNTIL:
        errors.add(f"{path}.until", f"One of {', '.join(MULTIPLIER_UNTIL)}.")
    elif until is not None and "hours" in step:
        errors.add(f"{path}.until", "Either hours or until, not both.")
    elif until is None:
        _int(errors, step, "hours", path, 1, MAX_MULTIPLIER_HOURS)
    kinds = step.get("kinds")
    if kinds is not None:
        from points.services import INTERACTION_KINDS

        if not isinstance(kinds, list) or not kinds or any(k not in INTERACTION_KINDS for k in kinds):
            errors.add(f"{path}.kinds", f"A non-empty list of {', '.join(INTERACTION_KINDS)}.")


def successors(step: dict) -> list[str]:
    if step.get("type") == "condition":
        return [s for s in (step.get("then"), step.get("else")) if s]
    if step.get("type") == "exit":
        return []
    return [step["next"]] if step.get("next") else []


def _graph(errors: _Errors, steps: list[dict]) -> None:
    index = {s["id"]: i for i, s in enumerate(steps)}
    for i, step in enumerate(steps):
        keys = ("then", "else") if step.get("type") == "condition" else ("next",)
        if step.get("type") == "exit" and step.get("next"):
            errors.add(f"steps.{i}.next", "An exit step has no next step.")
        for key in keys:
            target = step.get(key)
            if target is not None and target not in index:
                errors.add(f"steps.{i}.{key}", f"Unknown step: {target}.")
    if errors.fields:
        return
    # Cycles: depth-first search with colours, from every step.
    colour = dict.fromkeys(index, 0)

    def visit(sid: str) -> bool:
        colour[sid] = 1
        for nxt in successors(steps[index[sid]]):
            if colour[nxt] == 1:
                errors.add(f"steps.{index[sid]}", f"A cycle: {sid} leads back to {nxt}.")
                return True
            if colour[nxt] == 0 and visit(nxt):
                return True
        colour[sid] = 2
        return False

    for sid in index:
        if colour[sid] == 0 and visit(sid):
            return
    reached, todo = set(), [steps[0]["id"]]
    while todo:
        sid = todo.pop()
        if sid in reached:
            continue
        reached.add(sid)
        todo.extend(successors(steps[index[sid]]))
    for i, step in enumerate(steps):
        if step["id"] not in reached:
            errors.add(f"steps.{i}", f"Unreachable from the first step: {step['id']}.")


def validate(defn: dict) -> dict:
    """Check a whole definition; returns it (normalised) or raises a 422 naming every bad field."""
    errors = _Errors()
    _trigger(errors, defn.get("trigger"))
    _audience(errors, defn.get("audience"))
    _entry(errors, defn.get("entry"))
    _goal(errors, defn.get("goal"))
    steps = defn.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        errors.add("steps", f"A list of 1 to {MAX_STEPS} steps.")
        errors.raise_if_any()
    seen: set[str] = set()
    for i, step in enumerate(steps):
        path = f"steps.{i}"
        if not isinstance(step, dict):
            errors.add(path, "An object.")
            continue
        sid = step.get("id")
        if not isinstance(sid, str) or not _STEP_ID.match(sid):
            errors.add(f"{path}.id", "1-40 letters, digits, _ or -.")
        elif sid in seen:
            errors.add(f"{path}.id", f"Duplicate step id: {sid}.")
        seen.add(sid) if isinstance(sid, str) else None
        if _choice(errors, step, "type", path, STEP_TYPES):
            _step(errors, step, path)
    errors.raise_if_any()
    _graph(errors, steps)
    errors.raise_if_any()
    return {"trigger": defn["trigger"], "audience": defn["audience"], "entry": defn["entry"],
            "goal": defn.get("goal"), "steps": steps}
