"""What marketing sends to build surveys and sessions, what members send, and what each sees."""

from __future__ import annotations

import marshmallow as ma

from community.models import ROLES, TIERS
from contract import Schema, patch_of
from contract import fields as f
from pagination import PageArgs

from .models import QUESTION_TYPES

ID_RE = r"^[A-Za-z0-9_-]{1,64}$"
Str = f.String


class ConditionIn(Schema):
    question = Str(required=True, validate=ma.validate.Regexp(ID_RE))
    in_ = ma.fields.List(ma.fields.Raw(), required=True, data_key="in", validate=ma.validate.Length(min=1, max=50))


class QuestionIn(Schema):
    id = Str(required=True, validate=ma.validate.Regexp(ID_RE, error="Use 1-64 letters, digits, _ or -."))
    type = Str(required=True, validate=ma.validate.OneOf(QUESTION_TYPES))
    text = Str(required=True, validate=ma.validate.Length(min=1, max=1000))
    help = Str(validate=ma.validate.Length(max=1000))
    required = ma.fields.Boolean(load_default=False)
    options = ma.fields.List(Str(validate=ma.validate.Length(min=1, max=200)), validate=ma.validate.Length(max=50))
    min_choices = f.Integer(validate=ma.validate.Range(min=0, max=50))
    max_choices = f.Integer(validate=ma.validate.Range(min=1, max=50))
    max_length = f.Integer(validate=ma.validate.Range(min=1, max=5000))
    rows = ma.fields.List(Str(validate=ma.validate.Length(min=1, max=200)), validate=ma.validate.Length(max=30))
    scale = ma.fields.List(Str(validate=ma.validate.Length(min=1, max=100)), validate=ma.validate.Length(max=11))
    show_if = ma.fields.Nested(ConditionIn)

    @ma.post_load
    def _rename(self, data, **kwargs):
        if "show_if" in data:
            data["show_if"] = {"question": data["show_if"]["question"], "in": data["show_if"]["in_"]}
        return data


class PageIn(Schema):
    title = Str(load_default="", validate=ma.validate.Length(max=200))
    questions = ma.fields.List(ma.fields.Nested(QuestionIn), required=True, validate=ma.validate.Length(max=100))


class DefinitionIn(Schema):
    pages = ma.fields.List(ma.fields.Nested(PageIn), required=True, validate=ma.validate.Length(max=30))


class SurveyIn(Schema):
    title = Str(required=True, validate=ma.validate.Length(min=1, max=200))
    description = Str(validate=ma.validate.Length(max=5000))
    definition = ma.fields.Nested(DefinitionIn)
    audience_tiers = ma.fields.List(Str(validate=ma.validate.OneOf(TIERS)))
    audience_roles = ma.fields.List(Str(validate=ma.validate.OneOf(ROLES)))
    audience_segment_id = f.Id(allow_none=True)
    opens_at = f.DateTime(allow_none=True)
    closes_at = f.DateTime(allow_none=True)
    max_responses = f.Integer(allow_none=True, validate=ma.validate.Range(min=1, max=1_000_000))


SurveyPatchIn = patch_of(SurveyIn, "SurveyPatchIn")


class VersionOut(Schema):
    number = f.Integer()
    created_at = f.DateTime()


class SurveyStaffOut(Schema):
    id = f.Integer()
    title = Str()
    description = Str()
    status = Str()
    definition = ma.fields.Dict()
    current_version = f.Integer()
    versions = ma.fields.List(ma.fields.Nested(VersionOut))
    audience_tiers = ma.fields.List(Str())
    audience_roles = ma.fields.List(Str())
    audience_segment_id = f.Integer(allow_none=True)
    opens_at = f.DateTime(allow_none=True)
    closes_at = f.DateTime(allow_none=True)
    max_responses = f.Integer(allow_none=True)
    completed_count = f.Integer()
    created_at = f.DateTime()
    published_at = f.DateTime(allow_none=True)
    closed_at = f.DateTime(allow_none=True)


class SurveySummaryOut(Schema):
    """A survey in a member's list."""

    id = f.Integer()
    title = Str()
    description = Str()
    closes_at = f.DateTime(allow_none=True)
    my_status = Str(allow_none=True, metadata={"description": "partial, complete, or null if not started"})


class ResponseOut(Schema):
    id = f.Integer()
    survey_id = f.Integer()
    version = ma.fields.Function(lambda r: r.version.number)
    client_id = Str()
    status = Str()
    answers = ma.fields.Dict()
    started_at = f.DateTime()
    completed_at = f.DateTime(allow_none=True)


class WithdrawalOut(Schema):
    """A withdrawn response: the response itself is gone; this is what remains of it."""

    survey_id = f.Integer()
    response_id = f.Integer()
    completed_at = f.DateTime(allow_none=True)
    withdrawn_at = f.DateTime()
    points_reversed = f.Integer(
        metadata={"description": "The completion award reversed (points already spent are not taken back)"}
    )


class SurveyMemberOut(Schema):
    """A survey as a member answers it: the questions of their version, and their response."""

    id = f.Integer()
    title = Str()
    description = Str()
    version = f.Integer()
    definition = ma.fields.Dict()
    open = ma.fields.Boolean()
    closes_at = f.DateTime(allow_none=True)
    response = ma.fields.Nested(ResponseOut, allow_none=True)


class AnswersIn(Schema):
    client_id = Str(required=True, validate=ma.validate.Length(min=8, max=64))
    answers = ma.fields.Dict(keys=Str(validate=ma.validate.Length(max=64)), required=True)


class ReasonIn(Schema):
    reason = Str(required=True, validate=ma.validate.Length(min=1, max=500))


class ResultsOut(Schema):
    survey_id = f.Integer()
    responses = f.Integer()
    questions = ma.fields.List(ma.fields.Dict())
    tiers = ma.fields.List(ma.fields.Dict())


class ResponseStaffOut(ResponseOut):
    member_id = f.Integer()
    member_tier = Str(allow_none=True)
    nps_score = f.Integer(allow_none=True)


class ResponseFilterArgs(PageArgs):
    status = Str(load_default=None, validate=ma.validate.OneOf(("partial", "complete")))


# --------------------------------------------------------------------------- focus groups


class FocusSessionIn(Schema):
    title = Str(required=True, validate=ma.validate.Length(min=1, max=200))
    description = Str(validate=ma.validate.Length(max=5000))
    starts_at = f.DateTime(required=True)
    ends_at = f.DateTime(required=True)
    location = Str(allow_none=True, validate=ma.validate.Length(max=300))
    online_url = f.Url(allow_none=True)
    capacity = f.Integer(validate=ma.validate.Range(min=1, max=1000))
    screener_survey_id = f.Id(allow_none=True)
    eligibility_rule = ma.fields.Nested(ConditionIn, allow_none=True)
    signup_deadline = f.DateTime(allow_none=True)
    cancellation_cutoff = f.DateTime(allow_none=True)
    attendance_points = f.Integer(validate=ma.validate.Range(min=0, max=100_000))

    @ma.post_load
    def _rename(self, data, **kwargs):
        if data.get("eligibility_rule"):
            rule = data["eligibility_rule"]
            data["eligibility_rule"] = {"question": rule["question"], "in": rule["in_"]}
        return data


FocusSessionPatchIn = patch_of(FocusSessionIn, "FocusSessionPatchIn")


class FocusSessionOut(Schema):
    """A session as members see it."""

    id = f.Integer()
    title = Str()
    description = Str()
    starts_at = f.DateTime()
    ends_at = f.DateTime()
    location = Str(allow_none=True)
    online_url = Str(allow_none=True)
    capacity = f.Integer()
    confirmed_count = f.Integer()
    screener_survey_id = f.Integer(allow_none=True)
    signup_deadline = f.DateTime(allow_none=True)
    cancellation_cutoff = f.DateTime(allow_none=True)
    attendance_points = f.Integer()
    cancelled_at = f.DateTime(allow_none=True)
    my_status = Str(allow_none=True)


class FocusSessionStaffOut(FocusSessionOut):
    eligibility_rule = ma.fields.Dict(allow_none=True)
    waitlisted_count = f.Integer()
    created_at = f.DateTime()


class SignupOut(Schema):
    id = f.Integer()
    session_id = f.Integer()
    status = Str()
    signed_up_at = f.DateTime()
    confirmed_at = f.DateTime(allow_none=True)
    waitlist_position = f.Integer(allow_none=True)


class SignupStaffOut(SignupOut):
    member_id = f.Integer()
    priority = f.Integer()
    cancelled_at = f.DateTime(allow_none=True)
    marked_at = f.DateTime(allow_none=True)


class AttendanceIn(Schema):
    attended = ma.fields.List(f.Id(), load_default=list, validate=ma.validate.Length(max=1000),
                              metadata={"description": "Member ids"})
    no_show = ma.fields.List(f.Id(), load_default=list, validate=ma.validate.Length(max=1000),
                             metadata={"description": "Member ids"})
