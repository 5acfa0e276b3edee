"""What marketing sends to build surveys and sessions, what members send, and what each sees."""

from __future__ import annotations

import marshmallow as ma

from community.models import ROLES, TIERS

from .models import QUESTION_TYPES

ID_RE = r"^[A-Za-z0-9_-]{1,64}$"
Str = ma.fields.String


class ConditionIn(ma.Schema):
    question = Str(required=True, validate=ma.validate.Regexp(ID_RE))
    in_ = ma.fields.List(ma.fields.Raw(), required=True, data_key="in", validate=ma.validate.Length(min=1, max=50))


class QuestionIn(ma.Schema):
    id = Str(required=True, validate=ma.validate.Regexp(ID_RE, error="Use 1-64 letters, digits, _ or -."))
    type = Str(required=True, validate=ma.validate.OneOf(QUESTION_TYPES))
    text = Str(required=True, validate=ma.validate.Length(min=1, max=1000))
    help = Str(validate=ma.validate.Length(max=1000))
    required = ma.fields.Boolean(load_default=False)
    options = ma.fields.List(Str(validate=ma.validate.Length(min=1, max=200)), validate=ma.validate.Length(max=50))
    min_choices = ma.fields.Integer(validate=ma.validate.Range(min=0, max=50))
    max_choices = ma.fields.Integer(validate=ma.validate.Range(min=1, max=50))
    max_length = ma.fields.Integer(validate=ma.validate.Range(min=1, max=5000))
    rows = ma.fields.List(Str(validate=ma.validate.Length(min=1, max=200)), validate=ma.validate.Length(max=30))
    scale = ma.fields.List(Str(validate=ma.validate.Length(min=1, max=100)), validate=ma.validate.Length(max=11))
    show_if = ma.fields.Nested(ConditionIn)

    @ma.post_load
    def _rename(self, data, **kwargs):
        if "show_if" in data:
            data["show_if"] = {"question": data["show_if"]["question"], "in": data["show_if"]["in_"]}
        return data


class PageIn(ma.Schema):
    title = Str(load_default="", validate=ma.validate.Length(max=200))
    questions = ma.fields.List(ma.fields.Nested(QuestionIn), required=True, validate=ma.validate.Length(max=100))


class DefinitionIn(ma.Schema):
    pages = ma.fields.List(ma.fields.Nested(PageIn), required=True, validate=ma.validate.Length(max=30))


class SurveyIn(ma.Schema):
    title = Str(required=True, validate=ma.validate.Length(min=1, max=200))
    description = Str(validate=ma.validate.Length(max=5000))
    definition = ma.fields.Nested(DefinitionIn)
    audience_tiers = ma.fields.List(Str(validate=ma.validate.OneOf(TIERS)))
    audience_roles = ma.fields.List(Str(validate=ma.validate.OneOf(ROLES)))
    audience_segment_id = ma.fields.Integer(allow_none=True, strict=True,
                                            validate=ma.validate.Range(min=1, max=2**31 - 1))
    opens_at = ma.fields.DateTime(allow_none=True)
    closes_at = ma.fields.DateTime(allow_none=True)
    max_responses = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=1))


class SurveyPatchIn(SurveyIn):
    title = Str(validate=ma.validate.Length(min=1, max=200))


class VersionOut(ma.Schema):
    number = ma.fields.Integer()
    created_at = ma.fields.DateTime()


class SurveyStaffOut(ma.Schema):
    id = ma.fields.Integer()
    title = Str()
    description = Str()
    status = Str()
    definition = ma.fields.Dict()
    current_version = ma.fields.Integer()
    versions = ma.fields.List(ma.fields.Nested(VersionOut))
    audience_tiers = ma.fields.List(Str())
    audience_roles = ma.fields.List(Str())
    audience_segment_id = ma.fields.Integer(allow_none=True)
    opens_at = ma.fields.DateTime(allow_none=True)
    closes_at = ma.fields.DateTime(allow_none=True)
    max_responses = ma.fields.Integer(allow_none=True)
    completed_count = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    published_at = ma.fields.DateTime(allow_none=True)
    closed_at = ma.fields.DateTime(allow_none=True)


class SurveySummaryOut(ma.Schema):
    """A survey in a member's list."""

    id = ma.fields.Integer()
    title = Str()
    description = Str()
    closes_at = ma.fields.DateTime(allow_none=True)
    my_status = Str(allow_none=True, metadata={"description": "partial, complete, or null if not started"})


class ResponseOut(ma.Schema):
    id = ma.fields.Integer()
    survey_id = ma.fields.Integer()
    version = ma.fields.Function(lambda r: r.version.number)
    client_id = Str()
    status = Str()
    answers = ma.fields.Dict()
    started_at = ma.fields.DateTime()
    completed_at = ma.fields.DateTime(allow_none=True)


class WithdrawalOut(ma.Schema):
    """A withdrawn response: the response itself is gone; this is what remains of it."""

    survey_id = ma.fields.Integer()
    response_id = ma.fields.Integer()
    completed_at = ma.fields.DateTime(allow_none=True)
    withdrawn_at = ma.fields.DateTime()
    points_reversed = ma.fields.Integer(
        metadata={"description": "The completion award reversed (points already spent are not taken back)"}
    )


class SurveyMemberOut(ma.Schema):
    """A survey as a member answers it: the questions of their version, and their response."""

    id = ma.fields.Integer()
    title = Str()
    description = Str()
    version = ma.fields.Integer()
    definition = ma.fields.Dict()
    open = ma.fields.Boolean()
    closes_at = ma.fields.DateTime(allow_none=True)
    response = ma.fields.Nested(ResponseOut, allow_none=True)


class AnswersIn(ma.Schema):
    client_id = Str(required=True, validate=ma.validate.Length(min=8, max=64))
    answers = ma.fields.Dict(keys=Str(validate=ma.validate.Length(max=64)), required=True)


class ReasonIn(ma.Schema):
    reason = Str(required=True, validate=ma.validate.Length(min=1, max=500))


class ResultsOut(ma.Schema):
    survey_id = ma.fields.Integer()
    responses = ma.fields.Integer()
    questions = ma.fields.List(ma.fields.Dict())
    tiers = ma.fields.List(ma.fields.Dict())


class ResponseStaffOut(ResponseOut):
    member_id = ma.fields.Integer()
    member_tier = Str(allow_none=True)
    nps_score = ma.fields.Integer(allow_none=True)


class ResponseFilterArgs(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    status = Str(load_default=None, validate=ma.validate.OneOf(("partial", "complete")))


# --------------------------------------------------------------------------- focus groups


class FocusSessionIn(ma.Schema):
    title = Str(required=True, validate=ma.validate.Length(min=1, max=200))
    description = Str(validate=ma.validate.Length(max=5000))
    starts_at = ma.fields.DateTime(required=True)
    ends_at = ma.fields.DateTime(required=True)
    location = Str(allow_none=True, validate=ma.validate.Length(max=300))
    online_url = ma.fields.URL(allow_none=True, schemes={"https", "http"}, validate=ma.validate.Length(max=500))
    capacity = ma.fields.Integer(validate=ma.validate.Range(min=1, max=1000))
    screener_survey_id = ma.fields.Integer(allow_none=True)
    eligibility_rule = ma.fields.Nested(ConditionIn, allow_none=True)
    signup_deadline = ma.fields.DateTime(allow_none=True)
    cancellation_cutoff = ma.fields.DateTime(allow_none=True)
    attendance_points = ma.fields.Integer(validate=ma.validate.Range(min=0, max=100_000))

    @ma.post_load
    def _rename(self, data, **kwargs):
        if data.get("eligibility_rule"):
            rule = data["eligibility_rule"]
            data["eligibility_rule"] = {"question": rule["question"], "in": rule["in_"]}
        return data


class FocusSessionPatchIn(FocusSessionIn):
    title = Str(validate=ma.validate.Length(min=1, max=200))
    starts_at = ma.fields.DateTime()
    ends_at = ma.fields.DateTime()


class FocusSessionOut(ma.Schema):
    """A session as members see it."""

    id = ma.fields.Integer()
    title = Str()
    description = Str()
    starts_at = ma.fields.DateTime()
    ends_at = ma.fields.DateTime()
    location = Str(allow_none=True)
    online_url = Str(allow_none=True)
    capacity = ma.fields.Integer()
    confirmed_count = ma.fields.Integer()
    screener_survey_id = ma.fields.Integer(allow_none=True)
    signup_deadline = ma.fields.DateTime(allow_none=True)
    cancellation_cutoff = ma.fields.DateTime(allow_none=True)
    attendance_points = ma.fields.Integer()
    cancelled_at = ma.fields.DateTime(allow_none=True)
    my_status = Str(allow_none=True)


class FocusSessionStaffOut(FocusSessionOut):
    eligibility_rule = ma.fields.Dict(allow_none=True)
    waitlisted_count = ma.fields.Integer()
    created_at = ma.fields.DateTime()


class SignupOut(ma.Schema):
    id = ma.fields.Integer()
    session_id = ma.fields.Integer()
    status = Str()
    signed_up_at = ma.fields.DateTime()
    confirmed_at = ma.fields.DateTime(allow_none=True)
    waitlist_position = ma.fields.Integer(allow_none=True)


class SignupStaffOut(SignupOut):
    member_id = ma.fields.Integer()
    priority = ma.fields.Integer()
    cancelled_at = ma.fields.DateTime(allow_none=True)
    marked_at = ma.fields.DateTime(allow_none=True)


class AttendanceIn(ma.Schema):
    attended = ma.fields.List(ma.fields.Integer(), load_default=list, validate=ma.validate.Length(max=1000))
    no_show = ma.fields.List(ma.fields.Integer(), load_default=list, validate=ma.validate.Length(max=1000))
