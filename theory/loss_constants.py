"""Lipschitz constants and ranges of the RDRO and DDRO per-row losses on a bounded interval — the
two loss-dependent factors of the uniform-deviation bound ([reconstructed], shared/method.md §4
claim 3; full argument in theory/README.md).

Closed forms, derived in each docstring from the losses of :mod:`rdro.losses` (the tests check every
constant against those implementations on a dense grid). Every per-row loss here is monotone on the
interval considered, and its derivative is monotone too, so the Lipschitz constant is the larger
|derivative| at the two ends and the range is |ℓ(end) − ℓ(start)|.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from rdro.ratios import check_fraction

__all__ = [
    "LossConstants",
    "rdro_class_constants",
    "rdro_loss_constants",
    "ddro_class_constants",
    "ddro_loss_constants",
    "ddro_t_interval",
]

DIVERGENCES = ("logistic", "lsif", "kliep")


class LossConstants(NamedTuple):
    """Lipschitz constant (in the model output) and range (sup − inf of the values) of a loss."""

    lipschitz: float
    loss_range: float


def _finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def _softplus(t: float) -> float:
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t)) if t >= 0 else math.exp(t) / (1.0 + math.exp(t))


# ---------------------------------------------------------------------------
# RDRO
# ---------------------------------------------------------------------------


def rdro_class_constants(alpha, t_min, t_max=None) -> dict[str, LossConstants]:
    """Per-class Lipschitz constant in t and range of RDRO's per-row losses on t ∈ [t_min, t_max].

    Losses (shared/method.md §2, :func:`rdro.losses.rdro_loss`)::

        ℓ+(t) = softplus(−t) + α softplus(t),   ℓ+'(t) = (1 + α)σ(t) − 1
        ℓ−(t) = (1 − α) softplus(t),            ℓ−'(t) = (1 − α)σ(t)

    Assumption: the model class is clipped to t ≤ t_max ≤ log(1/α) (default t_max = log(1/α), the
    largest value of the target log r_α, so the clip never excludes it) and t ≥ t_min.

    Derivation. Both derivatives increase with t (σ does). ℓ+' vanishes at σ(t) = 1/(1 + α), i.e. at
    t = log(1/α): on the interval ℓ+' ∈ [(1 + α)σ(t_min) − 1, (1 + α)σ(t_max) − 1] ⊂ [−1, 0], so ℓ+
    decreases and

        L+ = 1 − (1 + α)σ(t_min) ≤ 1,         range+ = ℓ+(t_min) − ℓ+(t_max);

    ℓ−' ∈ [0, (1 − α)σ(t_max)], so ℓ− increases and

        L− = (1 − α)σ(t_max) ≤ (1 − α)/(1 + α), range− = ℓ−(t_max) − ℓ−(t_min) ≤ (1 − α) log(1 + 1/α).

    Hence L ≤ 1 whatever α, t_min; range+ grows like |t_min| as t_min → −∞ and range− is
    O(log(1/α)) — the O(1) / O(log 1/α) constants of claim 3 [reconstructed].

    Returns ``{"preferred": LossConstants(L+, range+), "non_preferred": LossConstants(L−, range−)}``.
    """
    a = check_fraction(alpha, "alpha")
    upper = math.log(1.0 / a)
    lo = _finite(t_min, "t_min")
    hi = upper if t_max is None else _finite(t_max, "t_max")
    if hi > upper * (1 + 1e-12):
        raise ValueError(f"t_max must be ≤ log(1/α) = {upper:.6g} (the bound on log r_α), got {t_max!r}")
    if not lo < hi:
        raise ValueError(f"t_min must be < t_max = {hi:.6g}, got t_min = {t_min!r}")

    def loss_pos(t):
        return _softplus(-t) + a * _softplus(t)

    def loss_neg(t):
        return (1.0 - a) * _softplus(t)

    return {
        "preferred": LossConstants(1.0 - (1.0 + a) * _sigmoid(lo), loss_pos(lo) - loss_pos(hi)),
        "non_preferred": LossConstants((1.0 - a) * _sigmoid(hi), loss_neg(hi) - loss_neg(lo)),
    }


def rdro_loss_constants(alpha, t_min, t_max=None) -> LossConstants:
    """(Lipschitz constant in t, range) of RDRO's per-row losses on t ∈ [t_min, t_max ≤ log(1/α)]:
    the larger of the two classes' constants of :func:`rdro_class_constants` (derivation there).
    L ≤ 1 always; the range is max(ℓ+(t_min) − ℓ+(t_max), ℓ−(t_max) − ℓ−(t_min))."""
    per_class = rdro_class_constants(alpha, t_min, t_max).values()
    return LossConstants(max(c.lipschitz for c in per_class), max(c.loss_range for c in per_class))


# ---------------------------------------------------------------------------
# DDRO [reconstructed]
# ---------------------------------------------------------------------------


def _ddro_rows(divergence: str, g: float):
    """(ℓ_pref(g), ℓ'_pref(g), ℓ_non(g), ℓ'_non(g)) for the Bregman losses of rdro.losses.ddro_loss."""
    if divergence == "lsif":  # f(u) = (u − 1)²/2: −(g − 1) and (g² − 1)/2
        return 1.0 - g, -1.0, 0.5 * (g * g - 1.0), g
    if divergence == "kliep":  # f(u) = u log u − u: −log g and g
        return -math.log(g), -1.0 / g, g, 1.0
    # logistic, f(u) = u log u − (1 + u) log(1 + u): softplus(−log g) = log(1 + 1/g) and log(1 + g)
    return math.log1p(1.0 / g), -1.0 / (g * (1.0 + g)), math.log1p(g), 1.0 / (1.0 + g)


def _check_ddro_args(divergence, R, g_min, mu):
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    r = _finite(R, "R")
    if r <= 0:
        raise ValueError(f"R (the bound on the ordinary ratio g) must be > 0, got {R!r}")
    lo = 1.0 / r if g_min is None else _finite(g_min, "g_min")
    if not 0.0 < lo < r:
        raise ValueError(f"g_min must satisfy 0 < g_min < R = {r:.6g}, got {g_min!r}")
    m = None if mu is None else check_fraction(mu, "mu")
    return r, lo, m


def ddro_t_interval(R, mu, g_min=None) -> tuple[float, float]:
    """The t-interval on which DDRO's model g_μ(t) = (1 − μ)e^t/(1 − μe^t) takes values in [g_min, R]
    [reconstructed]: t(g) = log(g / (μ g + 1 − μ)) = log r_μ(g), increasing, with t(R) < log(1/μ).
    With μ = α this is the t-range of a relative ratio whose ordinary ratio lies in [g_min, R]."""
    r, lo, m = _check_ddro_args("logistic", R, g_min, mu)
    if m is None:
        raise ValueError("mu must be a number in (0, 1) for the t-interval of DDRO's model")
    return math.log(lo / (m * lo + 1.0 - m)), math.log(r / (m * r + 1.0 - m))


def ddro_class_constants(divergence, R, g_min=None, mu=None) -> dict[str, LossConstants]:
    """Per-class Lipschitz constant and range of DDRO's Bregman per-row losses [reconstructed] for
    model values g ∈ [g_min, R] (R: the bound on the ordinary ratio g = p+/p−; default g_min = 1/R,
    i.e. |log g| ≤ log R, the symmetric case of a mean shift).

    Per-row losses (:func:`rdro.losses.ddro_loss`; preferred −f'(g), non-preferred f'(g)g − f(g))
    and their g-derivatives::

        lsif      preferred 1 − g,             −1;        non-preferred (g² − 1)/2,  g
        kliep     preferred −log g,            −1/g;      non-preferred g,           1
        logistic  preferred log(1 + 1/g),      −1/(g(1+g)); non-preferred log(1 + g), 1/(1 + g)

    All are monotone in g on (0, ∞), so the range is |ℓ(R) − ℓ(g_min)|:
    lsif R − g_min and (R² − g_min²)/2; kliep log(R/g_min) and R − g_min; logistic
    log((1 + 1/g_min)/(1 + 1/R)) and log((1 + R)/(1 + g_min)).

    ``mu=None``: Lipschitz constant **in g** (a model that outputs g, as uLSIF/KLIEP or
    :class:`rdro.estimators.BregmanRatio` on e^s): the larger |ℓ'| at the ends — lsif max(1, R),
    kliep max(1/g_min, 1), logistic 1/(g_min(1 + g_min)) and 1/(1 + g_min): here the log makes the
    kliep/logistic constants depend on g_min, not on R.

    ``mu`` in (0, 1): Lipschitz constant **in t** through DDRO's LM parameterisation
    g = g_μ(t) = (1 − μ)e^t/(1 − μe^t), the quantity comparable with RDRO's (same model class for t).
    Since d log g/dt = 1/(1 − μe^t) = (1 − μ + μg)/(1 − μ) =: k(g), dℓ/dt = ℓ'(g)·g·k(g):

        lsif      pref g k(g),                  non-pref g² k(g)
        kliep     pref k(g),                    non-pref g k(g)
        logistic  pref k(g)/(1 + g),            non-pref g k(g)/(1 + g)

    each monotone in g (logistic pref: d/dg[(1 − μ + μg)/(1 + g)] = (2μ − 1)/(1 + g)²), so the
    constant is the larger value at g_min and R. Every non-preferred constant grows at least like
    μR/(1 − μ): unbounded as the supports separate (claim 3), unlike RDRO's L ≤ 1.

    Returns ``{"preferred": LossConstants, "non_preferred": LossConstants}``.
    """
    r, lo, m = _check_ddro_args(divergence, R, g_min, mu)
    ends = [_ddro_rows(divergence, g) for g in (lo, r)]
    out = {}
    for name, (value, deriv) in (("preferred", (0, 1)), ("non_preferred", (2, 3))):
        slopes = []
        for g, row in zip((lo, r), ends):
            d = abs(row[deriv])
            if m is not None:
                d *= g * (1.0 - m + m * g) / (1.0 - m)
            slopes.append(d)
        out[name] = LossConstants(max(slopes), abs(ends[1][value] - ends[0][value]))
    return out


def ddro_loss_constants(divergence, R, g_min=None, mu=None) -> LossConstants:
    """(Lipschitz constant, range) of DDRO's Bregman per-row losses on g ∈ [g_min, R] [reconstructed]:
    the larger of the two classes' constants of :func:`ddro_class_constants` (derivation and the
    meaning of ``mu`` there: ``None`` → Lipschitz in g, a number → Lipschitz in t through g_μ(t))."""
    per_class = ddro_class_constants(divergence, R, g_min, mu).values()
    return LossConstants(max(c.lipschitz for c in per_class), max(c.loss_range for c in per_class))
