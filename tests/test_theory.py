"""rdro.theory: loss constants against the core losses evaluated on dense grids, the Rademacher
bound against Monte Carlo, the shape of the bounds in n and R, and input validation."""

import math

import numpy as np
import pytest
import torch
from rdro.theory import (
    bound_ratio,
    ddro_bound,
    ddro_class_constants,
    ddro_loss_constants,
    ddro_t_interval,
    excess_risk_bound,
    kernel_feature_bound,
    rademacher_linear,
    rdro_bound,
    rdro_class_constants,
    rdro_loss_constants,
    uniform_deviation_bound,
)

from rdro.losses import ddro_loss, rdro_loss, rdro_loss_grad
from rdro.ratios import log_relative_ratio

GRID = 20001
CLASSES = (("preferred", True), ("non_preferred", False))


def _assert_tight(reported, measured, rel=1e-6):
    """The reported constant bounds the measured one and is attained (within ``rel``)."""
    assert measured <= reported * (1 + rel) + 1e-12, (reported, measured)
    assert measured >= reported * (1 - rel) - 1e-12, (reported, measured)


# ---------------------------------------------------------------------------
# loss constants vs the core losses
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.39, 0.5, 0.8])
@pytest.mark.parametrize("t_min", [-6.0, -1.0, 0.0])
def test_rdro_constants_match_the_loss_on_a_dense_grid(alpha, t_min):
    t = torch.linspace(t_min, math.log(1 / alpha), GRID, dtype=torch.float64)
    constants = rdro_class_constants(alpha, t_min)
    for key, label in CLASSES:
        pref = torch.full((GRID,), label)
        grad = rdro_loss_grad(t, pref, alpha).abs()
        values = rdro_loss(t, pref, alpha, reduction="none")
        _assert_tight(constants[key].lipschitz, float(grad.max()))
        _assert_tight(constants[key].loss_range, float(values.max() - values.min()))
    assert all(c.lipschitz <= 1.0 for c in constants.values())
    overall = rdro_loss_constants(alpha, t_min)
    assert overall.lipschitz == max(c.lipschitz for c in constants.values())
    assert overall.loss_range == max(c.loss_range for c in constants.values())


def test_rdro_constants_are_order_one_and_log_one_over_alpha():
    """Claim 3's orders: L ≤ 1 for any t_min; the non-preferred range ≤ (1 − α) log(1 + 1/α)."""
    for alpha in (1e-4, 0.01, 0.3, 0.9):
        c = rdro_class_constants(alpha, -50.0)
        assert c["preferred"].lipschitz <= 1 and c["non_preferred"].lipschitz <= (1 - alpha) / (1 + alpha) + 1e-15
        assert c["non_preferred"].loss_range <= (1 - alpha) * math.log(1 + 1 / alpha)


def _ddro_grid(divergence, R, g_min, mu, label):
    """Per-row DDRO loss values and |derivative| from rdro.losses.ddro_loss on a dense grid: in g
    (mu=None; g enters ddro_loss through t = log r_½(g), which ddro_loss maps back to log g) or in t."""
    pref = torch.full((GRID,), label)
    if mu is None:
        x = torch.logspace(math.log10(g_min), math.log10(R), GRID, dtype=torch.float64).requires_grad_(True)
        t = log_relative_ratio(torch.log(x), torch.zeros_like(x), 0.5)
        values = ddro_loss(t, pref, 0.5, divergence=divergence, reduction="none")
    else:
        lo, hi = ddro_t_interval(R, mu, g_min)
        x = torch.linspace(lo, hi, GRID, dtype=torch.float64).requires_grad_(True)
        values = ddro_loss(x, pref, mu, divergence=divergence, reduction="none")
    (deriv,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), deriv.abs()


@pytest.mark.parametrize("divergence", ["logistic", "lsif", "kliep"])
@pytest.mark.parametrize("R, g_min", [(3.0, None), (50.0, 0.2), (1e3, None)])
@pytest.mark.parametrize("mu", [None, 0.3, 0.5, 0.7])
def test_ddro_constants_match_the_loss_on_a_dense_grid(divergence, R, g_min, mu):
    constants = ddro_class_constants(divergence, R, g_min=g_min, mu=mu)
    for key, label in CLASSES:
        values, deriv = _ddro_grid(divergence, R, g_min if g_min is not None else 1 / R, mu, label)
        _assert_tight(constants[key].lipschitz, float(deriv.max()), rel=1e-5)
        _assert_tight(constants[key].loss_range, float(values.max() - values.min()), rel=1e-5)
    overall = ddro_loss_constants(divergence, R, g_min=g_min, mu=mu)
    assert overall.lipschitz == max(c.lipschitz for c in constants.values())


@pytest.mark.parametrize("divergence", ["logistic", "lsif", "kliep"])
def test_ddro_constants_grow_with_R(divergence):
    """In t (μ given) every DDRO Lipschitz constant grows at least ∝ R; ranges grow too."""
    Rs = [2.0, 10.0, 100.0, 1e4]
    lips = [ddro_loss_constants(divergence, R, mu=0.5).lipschitz for R in Rs]
    ranges = [ddro_loss_constants(divergence, R, mu=0.5).loss_range for R in Rs]
    assert all(b > a for a, b in zip(lips, lips[1:])) and all(b > a for a, b in zip(ranges, ranges[1:]))
    assert lips[-1] >= 0.5 * Rs[-1]


def test_ddro_t_interval_maps_to_the_g_interval():
    lo, hi = ddro_t_interval(40.0, 0.3, g_min=0.1)
    g = torch.exp(torch.tensor([lo, hi], dtype=torch.float64))
    np.testing.assert_allclose((0.7 * g / (1 - 0.3 * g)).numpy(), [0.1, 40.0], rtol=1e-12)
    assert hi < math.log(1 / 0.3)


# ---------------------------------------------------------------------------
# Rademacher complexity and the deviation bound
# ---------------------------------------------------------------------------


def test_rademacher_linear_against_monte_carlo():
    """Empirical Rademacher complexity of {⟨w, φ⟩: ‖w‖ ≤ B} is (B/n)‖Σσ_iφ_i‖ exactly; its Monte Carlo
    mean stays below B F/√n and, for features of norm exactly F, within 5 % of it."""
    rng = np.random.default_rng(0)
    n, dim, B, F = 200, 50, 2.0, 3.0
    phi = rng.normal(size=(n, dim))
    phi *= F / np.linalg.norm(phi, axis=1, keepdims=True)
    sigma = rng.choice([-1.0, 1.0], size=(4000, n))
    mc = B / n * np.linalg.norm(sigma @ phi, axis=1).mean()
    bound = rademacher_linear(n, B, F)
    assert bound == pytest.approx(B * F / math.sqrt(n))
    assert 0.95 * bound <= mc <= bound
    assert kernel_feature_bound(100) == pytest.approx(math.sqrt(101))
    assert kernel_feature_bound(100, intercept=False) == 10.0


def test_deviation_bound_holds_for_a_fixed_function():
    """For a one-function class (R_n = 0) the bound reduces to Hoeffding: |Ê ℓ+ − E ℓ+| ≤
    c √(log(2/δ)/(2n)) in ≥ 1 − δ of 2000 repeated samples (ℓ+ at t = clip(x, t_min, log 1/α))."""
    alpha, t_min, n, delta = 0.5, -2.0, 50, 0.1
    c = rdro_class_constants(alpha, t_min)["preferred"]
    D = uniform_deviation_bound(n, delta, c.lipschitz, c.loss_range, 0.0)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2000, n))).clamp(t_min, math.log(1 / alpha))
    pref = torch.ones(n, dtype=torch.bool)
    means = torch.stack([rdro_loss(row, pref, alpha, reduction="pooled") for row in x])
    big = torch.from_numpy(rng.normal(size=400_000)).clamp(t_min, math.log(1 / alpha))
    truth = rdro_loss(big, torch.ones_like(big, dtype=torch.bool), alpha, reduction="pooled")
    assert float(((means - truth).abs() > D).double().mean()) <= delta


def test_excess_risk_bound_formula():
    n, delta, L, c, rn = 300, 0.05, 0.7, 1.3, 0.2
    expected = 4 * L * rn + c * math.sqrt(2 * math.log(2 / delta) / n)
    assert excess_risk_bound(n, delta, L, c, rn) == pytest.approx(expected, rel=1e-14)
    assert excess_risk_bound(n, delta, L, c, rn) == pytest.approx(2 * uniform_deviation_bound(n, delta, L, c, rn))


# ---------------------------------------------------------------------------
# the bounds as functions of n, δ and R
# ---------------------------------------------------------------------------


def test_bounds_decrease_as_inverse_square_root_of_n():
    F = kernel_feature_bound(100)
    for bound in (
        lambda a, b: rdro_bound(a, b, 0.05, 0.4, 1.0, F),
        lambda a, b: ddro_bound(a, b, 0.05, 20.0, 1.0, F, "lsif", mu=0.4),
    ):
        values = [bound(n, 2 * n) for n in (100, 400, 1600, 6400)]
        np.testing.assert_allclose(np.array(values[1:]) / values[:-1], 0.5, rtol=1e-12)
        assert bound(200, 200) < bound(100, 200) and bound(100, 400) < bound(100, 200)  # each class counts
    assert rdro_bound(100, 100, 0.01, 0.4, 1.0, F) > rdro_bound(100, 100, 0.1, 0.4, 1.0, F)


@pytest.mark.parametrize("divergence", ["logistic", "lsif", "kliep"])
def test_bound_ratio_increases_with_R(divergence):
    Rs = np.geomspace(1.5, 1e4, 12)
    ratios = [bound_ratio(500, 500, 0.05, 0.4, R, 1.0, kernel_feature_bound(50), divergence) for R in Rs]
    assert all(b > a for a, b in zip(ratios, ratios[1:]))
    assert ratios[-1] > 10 * ratios[0]


def test_rdro_bound_grows_only_logarithmically_in_R():
    """On the matched t-class the RDRO bound depends on R only through t_min = log r_α(1/R)."""
    F = kernel_feature_bound(50)
    vals = [rdro_bound(500, 500, 0.05, 0.4, 1.0, F, t_min=ddro_t_interval(R, 0.4)[0]) for R in (10.0, 1e4)]
    assert vals[1] / vals[0] < math.log(1e4) / math.log(10.0)


# ---------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rdro_loss_constants(0.0, -1.0), r"alpha must lie strictly inside \(0, 1\), got 0.0"),
        (lambda: rdro_loss_constants(1.2, -1.0), r"alpha must lie strictly inside"),
        (lambda: rdro_loss_constants("x", -1.0), r"alpha must be a number"),
        (lambda: rdro_loss_constants(0.5, 2.0), r"t_min must be < t_max"),
        (lambda: rdro_loss_constants(0.5, -1.0, t_max=3.0), r"t_max must be ≤ log\(1/α\)"),
        (lambda: rdro_loss_constants(0.5, float("-inf")), r"t_min must be a finite number"),
        (lambda: ddro_loss_constants("hellinger", 10.0), r"divergence must be one of .*'hellinger'"),
        (lambda: ddro_loss_constants("lsif", 0.0), r"R \(the bound on the ordinary ratio g\) must be > 0"),
        (lambda: ddro_loss_constants("lsif", 10.0, g_min=20.0), r"g_min must satisfy 0 < g_min < R"),
        (lambda: ddro_loss_constants("lsif", 10.0, g_min=0.0), r"g_min must satisfy"),
        (lambda: ddro_loss_constants("lsif", 10.0, mu=1.0), r"mu must lie strictly inside"),
        (lambda: ddro_t_interval(10.0, None), r"mu must be a number in \(0, 1\)"),
        (lambda: rademacher_linear(0, 1.0, 1.0), r"n must be a positive integer, got 0"),
        (lambda: rademacher_linear(10.5, 1.0, 1.0), r"n must be a positive integer"),
        (lambda: rademacher_linear(10, -1.0, 1.0), r"weight_bound must be > 0"),
        (lambda: rademacher_linear(10, 1.0, float("nan")), r"feature_bound must be a finite number"),
        (lambda: kernel_feature_bound(0), r"n_centers must be a positive integer"),
        (lambda: excess_risk_bound(10, 1.0, 1.0, 1.0, 0.1), r"delta must lie strictly inside"),
        (lambda: excess_risk_bound(10, 0.1, -1.0, 1.0, 0.1), r"lipschitz must be ≥ 0"),
        (lambda: excess_risk_bound(10, 0.1, 1.0, -1.0, 0.1), r"loss_range must be ≥ 0"),
        (lambda: rdro_bound(0, 10, 0.05, 0.5, 1.0, 1.0), r"n_pos must be a positive integer"),
        (lambda: ddro_bound(10, "many", 0.05, 10.0, 1.0, 1.0), r"n_neg must be a positive integer"),
        (lambda: bound_ratio(10, 10, 0.05, 0.5, -3.0, 1.0, 1.0), r"R \(the bound"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
