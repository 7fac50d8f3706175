"""Uniform-deviation (Rademacher) excess-risk bounds for RDRO and DDRO — [reconstructed] form of
shared/method.md §4 claim 3. The full argument, with every assumption, is in theory/README.md.

The model class is the one used by the simulations and by :mod:`rdro.estimators`: a linear function
of bounded features, t(x) = ⟨w, φ(x)⟩ with ‖w‖₂ ≤ B and ‖φ(x)‖₂ ≤ F (Gaussian kernel features with
an intercept: each coordinate in (0, 1], so F = √(b + 1)), clipped to the interval on which the
loss constants of :mod:`rdro.theory.loss_constants` are computed.
"""

from __future__ import annotations

import math

from rdro.ratios import check_fraction
from rdro.theory.loss_constants import (
    _finite,
    ddro_class_constants,
    ddro_t_interval,
    rdro_class_constants,
)

__all__ = [
    "rademacher_linear",
    "kernel_feature_bound",
    "uniform_deviation_bound",
    "excess_risk_bound",
    "per_class_excess_risk_bound",
    "rdro_bound",
    "ddro_bound",
    "bound_pair",
    "bound_ratio",
]


def _positive(value, name: str) -> float:
    v = _finite(value, name)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _nonnegative(value, name: str) -> float:
    v = _finite(value, name)
    if v < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")
    return v


def _sample_size(value, name: str) -> int:
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and value >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def rademacher_linear(n, weight_bound, feature_bound) -> float:
    """Rademacher complexity of the bounded linear class T = {x ↦ ⟨w, φ(x)⟩ : ‖w‖₂ ≤ B}, ‖φ(x)‖₂ ≤ F::

        R_n(T) = E sup_{‖w‖≤B} (1/n) Σ_i σ_i ⟨w, φ(x_i)⟩ = (B/n) E‖Σ_i σ_i φ(x_i)‖₂
               ≤ (B/n) (E‖Σ_i σ_i φ(x_i)‖₂²)^{1/2} = (B/n) (Σ_i ‖φ(x_i)‖²)^{1/2} ≤ B F / √n

    (Cauchy–Schwarz, then Jensen; E σ_iσ_j = δ_ij). Clipping t to an interval is 1-Lipschitz, so by
    the contraction lemma the clipped class has the same bound.
    """
    n = _sample_size(n, "n")
    return _positive(weight_bound, "weight_bound") * _positive(feature_bound, "feature_bound") / math.sqrt(n)


def kernel_feature_bound(n_centers, intercept=True) -> float:
    """F = sup ‖φ(x)‖₂ for b Gaussian kernel features (each in (0, 1]) plus, if ``intercept``, a
    constant feature 1: F = √(b + 1) (√b without intercept)."""
    b = _sample_size(n_centers, "n_centers")
    return math.sqrt(b + (1 if intercept else 0))


def uniform_deviation_bound(n, delta, lipschitz, loss_range, rademacher) -> float:
    """Two-sided uniform deviation of one sample mean: with probability ≥ 1 − δ, for all t ∈ T,

        |Ê_n[ℓ(t)] − E[ℓ(t)]| ≤ D = 2 L R_n(T) + c √(log(2/δ) / (2n)),

    L the Lipschitz constant of ℓ in t, c its range (values in an interval of length c), R_n(T) =
    ``rademacher`` the Rademacher complexity of the class at sample size n.

    Derivation: Φ = sup_t (E ℓ(t) − Ê ℓ(t)) changes by ≤ c/n when one sample changes, so McDiarmid
    gives Φ ≤ E Φ + c √(log(1/δ')/(2n)) w.p. ≥ 1 − δ'; symmetrisation gives E Φ ≤ 2 R_n(ℓ∘T), and
    the contraction lemma (Ledoux–Talagrand, in the form without absolute values) R_n(ℓ∘T) ≤ L R_n(T).
    The same holds for sup_t (Ê − E); a union bound over the two sides with δ' = δ/2 gives D.
    """
    n = _sample_size(n, "n")
    d = check_fraction(delta, "delta")
    L = _nonnegative(lipschitz, "lipschitz")
    c = _nonnegative(loss_range, "loss_range")
    rn = _nonnegative(rademacher, "rademacher")
    return 2.0 * L * rn + c * math.sqrt(math.log(2.0 / d) / (2.0 * n))


def excess_risk_bound(n, delta, lipschitz, loss_range, rademacher) -> float:
    """Excess risk of empirical risk minimisation over T, with probability ≥ 1 − δ::

        L(t̂) − L(t*) ≤ 2 D = 4 L R_n(T) + c √(2 log(2/δ) / n),

    t̂ = argmin_T L̂, t* = argmin_T L, D = :func:`uniform_deviation_bound`. Derivation:
    L(t̂) − L(t*) = [L(t̂) − L̂(t̂)] + [L̂(t̂) − L̂(t*)] + [L̂(t*) − L(t*)] ≤ D + 0 + D, the middle
    term ≤ 0 because t̂ minimises L̂. (2·√(log(2/δ)/(2n)) = √(2 log(2/δ)/n).)
    """
    return 2.0 * uniform_deviation_bound(n, delta, lipschitz, loss_range, rademacher)


def per_class_excess_risk_bound(n_pos, n_neg, delta, constants, weight_bound, feature_bound) -> float:
    """Excess-risk bound of the per-class empirical risk L̂ = Ê_{p+}[ℓ+] + Ê_{p−}[ℓ−] (the sum of the
    two class means, ``reduction="per_class"``), with probability ≥ 1 − δ::

        L(t̂) − L(t*) ≤ Σ_{c ∈ {+, −}} [4 L_c R_{n_c}(T) + c_c √(2 log(4/δ) / n_c)]

    Derivation: sup_t |L̂ − L| ≤ sup_t |Ê+ℓ+ − E+ℓ+| + sup_t |Ê−ℓ− − E−ℓ−|; each class term is bounded
    by :func:`uniform_deviation_bound` at its own sample size n_c with confidence δ/2 (union bound
    over the classes), then excess ≤ 2 sup|L̂ − L|. R_{n_c}(T) = :func:`rademacher_linear`.
    ``constants``: ``{"preferred": LossConstants, "non_preferred": LossConstants}``.
    """
    d = check_fraction(delta, "delta")
    total = 0.0
    for n_c, key, name in ((n_pos, "preferred", "n_pos"), (n_neg, "non_preferred", "n_neg")):
        n_c = _sample_size(n_c, name)
        c = constants[key]
        rn = rademacher_linear(n_c, weight_bound, feature_bound)
        total += excess_risk_bound(n_c, d / 2.0, c.lipschitz, c.loss_range, rn)
    return total


def rdro_bound(n_pos, n_neg, delta, alpha, weight_bound, feature_bound, t_min=None, t_max=None) -> float:
    """Excess-risk bound of per-class RDRO over the clipped linear class [reconstructed], w.p. ≥ 1 − δ::

        Σ_{c ∈ {+, −}} [4 L_c B F / √n_c + range_c √(2 log(4/δ) / n_c)]

    with L_c, range_c of :func:`rdro.theory.rdro_class_constants` on t ∈ [t_min, t_max]
    (default t_max = log(1/α), t_min = −log(1/α)), B = ``weight_bound``, F = ``feature_bound``.
    L_c ≤ 1, so the bound is O((B F + range) / √n) with no dependence on the ordinary-ratio bound R
    except through t_min. Decreases exactly ∝ n^{-1/2} when both class sizes scale together.
    """
    a = check_fraction(alpha, "alpha")
    lo = -math.log(1.0 / a) if t_min is None else t_min
    constants = rdro_class_constants(a, lo, t_max)
    return per_class_excess_risk_bound(n_pos, n_neg, delta, constants, weight_bound, feature_bound)


def ddro_bound(n_pos, n_neg, delta, R, weight_bound, feature_bound, divergence="logistic", mu=0.5, g_min=None) -> float:
    """Excess-risk bound of per-class DDRO [reconstructed] over a clipped linear class, w.p. ≥ 1 − δ::

        Σ_{c ∈ {+, −}} [4 L_c B F / √n_c + range_c √(2 log(4/δ) / n_c)]

    with L_c, range_c of :func:`rdro.theory.ddro_class_constants` for model values g ∈ [g_min, R]
    (default g_min = 1/R). ``mu`` in (0, 1): the class is t(x) = ⟨w, φ(x)⟩ clipped to
    :func:`rdro.theory.ddro_t_interval` and g = g_μ(t), DDRO's LM parameterisation (L_c in t,
    growing ∝ R); ``mu=None``: the class outputs g itself (‖w‖ ≤ B on g, L_c in g). Grows with R
    through both the Lipschitz constant and the range.
    """
    constants = ddro_class_constants(divergence, R, g_min, mu)
    return per_class_excess_risk_bound(n_pos, n_neg, delta, constants, weight_bound, feature_bound)


def bound_pair(n_pos, n_neg, delta, alpha, R, weight_bound, feature_bound, divergence="logistic", g_min=None):
    """(DDRO bound, RDRO bound) on the same t-class [reconstructed]: DDRO with μ = α on the
    g-range [g_min, R] (default g_min = 1/R), RDRO on t ∈ [t(g_min), log(1/α)] where
    t(g) = log r_α(g) = log(g / (α g + 1 − α)) — the same lower end in t, and RDRO's upper end
    log(1/α) ≥ t(R) covers every ratio whatever R. RDRO's grows with R only through log R in the range of ℓ+."""
    t_lo, _ = ddro_t_interval(R, alpha, g_min)
    ddro = ddro_bound(n_pos, n_neg, delta, R, weight_bound, feature_bound, divergence, mu=alpha, g_min=g_min)
    return ddro, rdro_bound(n_pos, n_neg, delta, alpha, weight_bound, feature_bound, t_min=t_lo)


def bound_ratio(n_pos, n_neg, delta, alpha, R, weight_bound, feature_bound, divergence="logistic", g_min=None):
    """DDRO / RDRO bound ratio of :func:`bound_pair` [reconstructed]. Increases with R (≈ linearly for large R,
    against RDRO's logarithmic growth through the range of ℓ+)."""
    ddro, rdro = bound_pair(n_pos, n_neg, delta, alpha, R, weight_bound, feature_bound, divergence, g_min)
    return ddro / rdro
