"""Ratio definitions: bounds, conversions, log forms, numpy and torch inputs."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from rdro import ratios


def test_relative_ratio_bounded_and_conversions_invert():
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = 50
        p_pos, p_neg = rng.dirichlet(np.ones(k) * 0.3), rng.dirichlet(np.ones(k) * 0.3)
        alpha = rng.uniform(0.01, 0.99)
        r = ratios.relative_ratio(p_pos, p_neg, alpha)
        assert np.all(r >= 0) and np.all(r <= 1 / alpha + 1e-12)
        g = ratios.ordinary_ratio(p_pos, p_neg)
        np.testing.assert_allclose(ratios.relative_from_ordinary(g, alpha), r, rtol=1e-10)
        # the inverse map is ill-conditioned as α r → 1 (1 − α r cancels): check it where it is well posed
        ok = alpha * r < 0.999
        np.testing.assert_allclose(ratios.ordinary_from_relative(r[ok], alpha), g[ok], rtol=1e-8)
        logr = ratios.log_relative_ratio(np.log(p_pos), np.log(p_neg), alpha)
        np.testing.assert_allclose(np.exp(logr), r, rtol=1e-10)
        np.testing.assert_allclose(ratios.log_ordinary_ratio(np.log(p_pos), np.log(p_neg)), np.log(g), rtol=1e-10)


def test_disjoint_supports_g_infinite_r_at_bound():
    with np.errstate(divide="ignore"):
        g = ratios.ordinary_ratio(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]))
    assert np.isinf(g[0])
    r = ratios.relative_ratio(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]), 0.25)
    np.testing.assert_allclose(r, [4.0, 1.0, 0.0])
    assert ratios.relative_ratio_bound(0.25) == 4.0


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_gaussian_sup_g_diverges_sup_r_stays_one_over_alpha(alpha):
    x = np.linspace(-30, 30, 20001)
    sup_g, sup_r = [], []
    for shift in [0.5, 2.0, 5.0, 10.0]:
        lp, ln = stats.norm.logpdf(x, shift / 2), stats.norm.logpdf(x, -shift / 2)
        sup_g.append(np.exp(ratios.log_ordinary_ratio(lp, ln)).max())
        sup_r.append(np.exp(ratios.log_relative_ratio(lp, ln, alpha)).max())
    assert all(b > 10 * a for a, b in zip(sup_g, sup_g[1:]))
    assert max(sup_r) <= 1 / alpha + 1e-9 and sup_r[-1] == pytest.approx(1 / alpha, rel=1e-6)


def test_torch_inputs_return_torch_and_pooled_target():
    lp = torch.log(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
    ln = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    out = ratios.log_relative_ratio(lp, ln, 0.3)
    assert isinstance(out, torch.Tensor)
    p, q = lp.exp(), ln.exp()
    torch.testing.assert_close(ratios.pooled_rdro_target(p, q, 0.3, 0.5), ratios.relative_ratio(p, q, 0.3))
    # with π+ = α ... the pooled target equals p+/(α p+ + (1-α) p−) reweighted: compare to the formula directly
    pi = 0.7
    expect = pi * p / (0.3 * pi * p + 0.7 * (1 - pi) * q)
    torch.testing.assert_close(ratios.pooled_rdro_target(p, q, 0.3, pi), expect)
    t = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(ratios.ddro_ratio(t, 0.4), 0.6 * t.exp() / (1 - 0.4 * t.exp()))
    # the DDRO model maps e^t = r_μ back to the ordinary ratio
    g = torch.tensor([0.1, 1.0, 30.0], dtype=torch.float64)
    torch.testing.assert_close(ratios.ddro_ratio(torch.log(ratios.relative_from_ordinary(g, 0.4)), 0.4), g)


@pytest.mark.parametrize("alpha", [0, 1, -0.2, 1.5, float("nan"), "x"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ratios.relative_ratio(1.0, 1.0, alpha)
    with pytest.raises(ValueError, match="mu"):
        ratios.ddro_ratio(0.0, alpha)
    assert math.isfinite(ratios.relative_ratio(1.0, 1.0, 0.5))
