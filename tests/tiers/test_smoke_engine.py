from community.models import utcnow
from extensions import db
from tiers import engine

from .helpers import award, rules


def test_points_promote(app, make_member):
    m = make_member()
    award(m, 100)
    engine.recompute_members(m.id, m.id, utcnow(), rules(points_earned=100))
    db.session.commit()
    db.session.refresh(m)
    assert m.tier == "engaged"
