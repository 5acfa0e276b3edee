from sqlalchemy import func, select

from community import demo as community_demo
from extensions import db
from surveys import demo
from surveys.models import FocusGroupSession, Survey


def test_demo_loads_once(app):
    ctx: dict = {}
    community_demo.load(ctx)
    for _ in range(2):
        demo.load(ctx)
        db.session.commit()
    survey = db.session.scalar(select(Survey))
    assert survey.status == "published" and survey.current_version == 1
    assert db.session.scalar(select(func.count()).select_from(Survey)) == 1
    assert db.session.scalar(select(func.count()).select_from(FocusGroupSession)) == 1
