"""Programme analytics: RFM, value and health scores, segments, daily KPIs, review snapshots and
control-vs-test experiments (see ``docs/analytics.md``)."""
