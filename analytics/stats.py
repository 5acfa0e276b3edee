"""Statistics of an experiment from sufficient statistics (per-arm moments), with SciPy.

Every estimate here needs only, per arm, n and the sums of x, x², y, y² and x·y (x = the metric
in the pre-period, y = in the post-period), so the database aggregates a million members in one
pass and Python never sees per-member rows.

* ``welch``: difference of means with a Welch t interval (unequal variances).
* post-period difference (y), difference-in-differences (y − x) and CUPED (y − θ(x − x̄), θ from
  the pooled covariance: the pre-period as covariate) are each a Welch comparison of a derived
  per-member variable whose moments follow from the sums above.
* ``srm``: the sample-ratio-mismatch check, a chi-square goodness-of-fit test of the arm sizes
  against the configured split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

CONFIDENCE = 0.95
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Moments:
    n: float
    sx: float = 0.0
    sxx: float = 0.0
    sy: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    @property
    def mean_x(self) -> float:
        return self.sx / self.n if self.n else 0.0

    @property
    def mean_y(self) -> float:
        return self.sy / self.n if self.n else 0.0

    def _cov(self, s_ab: float, s_a: float, s_b: float) -> float:
        if self.n < 2:
            return 0.0
        return max(-1e300, (s_ab - s_a * s_b / self.n) / (self.n - 1))

    @property
    def var_x(self) -> float:
        return max(0.0, self._cov(self.sxx, self.sx, self.sx))

    @property
    def var_y(self) -> float:
        return max(0.0, self._cov(self.syy, self.sy, self.sy))

    @property
    def cov_xy(self) -> float:
        return self._cov(self.sxy, self.sx, self.sy)

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.sx + other.sx, self.sxx + other.sxx, self.sy + other.sy,
                       self.syy + other.syy, self.sxy + other.sxy)


@dataclass(frozen=True)
class Estimate:
    effect: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    se: float | None

    def as_dict(self) -> dict:
        return {"effect": self.effect, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "se": self.se}


def welch(mean_t: float, var_t: float, n_t: float, mean_c: float, var_c: float, n_c: float,
          confidence: float = CONFIDENCE) -> Estimate:
    """Test minus control with a Welch t interval."""
    effect = mean_t - mean_c
    if n_t < 2 or n_c < 2:
        return Estimate(effect, None, None, None, None)
    a, b = var_t / n_t, var_c / n_c
    se = math.sqrt(a + b)
    if se == 0:
        return Estimate(effect, effect, effect, None if effect == 0 else 0.0, 0.0)
    df = (a + b) ** 2 / ((a * a) / (n_t - 1) + (b * b) / (n_c - 1))
    q = float(sps.t.ppf(0.5 + confidence / 2, df))
    p = float(2 * sps.t.sf(abs(effect) / se, df))
    return Estimate(effect, effect - q * se, effect + q * se, p, se)


def post_difference(t: Moments, c: Moments) -> Estimate:
    return welch(t.mean_y, t.var_y, t.n, c.mean_y, c.var_y, c.n)


def diff_in_diff(t: Moments, c: Moments) -> Estimate:
    def var_d(m: Moments) -> float:
        return max(0.0, m.var_y + m.var_x - 2 * m.cov_xy)

    return welch(t.mean_y - t.mean_x, var_d(t), t.n, c.mean_y - c.mean_x, var_d(c), c.n)


def cuped_theta(t: Moments, c: Moments) -> float:
    pooled = t + c
    return pooled.cov_xy / pooled.var_x if pooled.var_x > 0 else 0.0


def cuped(t: Moments, c: Moments) -> Estimate:
    """Post-period difference adjusted by the pre-period covariate (CUPED)."""
    theta = cuped_theta(t, c)
    grand_x = (t + c).mean_x

    def adjusted(m: Moments) -> tuple[float, float]:
        mean = m.mean_y - theta * (m.mean_x - grand_x)
        var = max(0.0, m.var_y + theta * theta * m.var_x - 2 * theta * m.cov_xy)
        return mean, var

    mt, vt = adjusted(t)
    mc, vc = adjusted(c)
    return welch(mt, vt, t.n, mc, vc, c.n)


def relative_lift(t: Moments, c: Moments, confidence: float = CONFIDENCE) -> dict:
    """(test − control) / control of the post-period means, with a delta-method interval."""
    if c.n < 2 or t.n < 2 or c.mean_y == 0:
        return {"effect": None, "ci_low": None, "ci_high": None}
    ratio = t.mean_y / c.mean_y - 1
    var = (t.var_y / t.n) / c.mean_y ** 2 + (t.mean_y ** 2) * (c.var_y / c.n) / c.mean_y ** 4
    q = float(sps.norm.ppf(0.5 + confidence / 2))
    se = math.sqrt(var)
    return {"effect": ratio, "ci_low": ratio - q * se, "ci_high": ratio + q * se}


def srm(n_test: int, n_control: int, test_share: float) -> dict:
    total = n_test + n_control
    if total == 0:
        return {"p_value": None, "mismatch": False, "expected_test": 0.0}
    expected = [total * test_share, total * (1 - test_share)]
    result = sps.chisquare([n_test, n_control], f_exp=expected)
    p = float(result.pvalue)
    return {"p_value": p, "mismatch": p < SRM_ALPHA, "expected_test": expected[0]}
