"""Who reads analytics (marketing) and who changes it (admins, and marketers: segments, tags,
experiments, reviews, recomputes).  The configuration (class rules, weights, costs) is admins'."""

from __future__ import annotations

from community.permissions import define

VIEW = define("analytics.view", ["marketer"])
MANAGE = define("analytics.manage", ["marketer"])
CONFIGURE = define("analytics.configure", [])
