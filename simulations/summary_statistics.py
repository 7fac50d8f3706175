"""Confidence intervals and log-log rate fits used to summarise the experiments."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["mean_ci", "loglog_slope", "group_rows"]


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean of ``values`` with a Student-t confidence interval: m ± t_{(1+level)/2, k−1} · s / √k.

    NaN values are dropped (and counted in ``n_nan``); with fewer than two finite values the
    interval is (mean, mean).
    """
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    k = len(finite)
    if k == 0:
        return {"mean": float("nan"), "ci_lo": float("nan"), "ci_hi": float("nan"), "count": 0, "n_nan": int(len(v))}
    m = float(finite.mean())
    if k < 2:
        return {"mean": m, "ci_lo": m, "ci_hi": m, "count": k, "n_nan": int(len(v) - k)}
    half = float(stats.t.ppf(0.5 + level / 2, k - 1) * finite.std(ddof=1) / math.sqrt(k))
    return {"mean": m, "ci_lo": m - half, "ci_hi": m + half, "count": k, "n_nan": int(len(v) - k)}


def loglog_slope(n, error, level: float = 0.95) -> dict:
    """Least-squares fit log(error) = a + b log(n) over all (seed, n) points, with the t-interval
    of the slope b: b ± t_{(1+level)/2, k−2} · SE(b). A parametric rate n^(−1/2) gives b ≈ −0.5
    for an error in t̂ (RMSE) and b ≈ −1 for a KL divergence (quadratic in the error)."""
    x = np.log(np.asarray(n, dtype=float))
    y = np.log(np.asarray(error, dtype=float))
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        nan = float("nan")
        return {"slope": nan, "slope_lo": nan, "slope_hi": nan, "intercept": nan, "points": int(len(x))}
    res = stats.linregress(x, y)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 2) * res.stderr)
    return {
        "slope": float(res.slope),
        "slope_lo": float(res.slope - half),
        "slope_hi": float(res.slope + half),
        "intercept": float(res.intercept),
        "points": int(len(x)),
    }


def group_rows(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys`` (insertion order kept)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups
