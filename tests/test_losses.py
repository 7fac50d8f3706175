"""The core losses against independent closed forms, their minimisers, gradients and bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from rdro import losses, ratios
from rdro.losses import (
    RewardRunningMean,
    bco_loss,
    ddro_loss,
    dpo_loss,
    kto_loss,
    kto_reference_point,
    preferred_fraction,
    rdro_loss,
    rdro_loss_grad,
    sft_loss,
)

# ---------------------------------------------------------------------------
# independent closed forms (numpy, float64, written from method.md, not from rdro.losses)
# ---------------------------------------------------------------------------


def np_softplus(t):
    return np.logaddexp(0.0, t)


def np_sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def np_rdro_rows(t, pref, a):
    return np.where(pref, (1 + a) * np_softplus(t) - t, (1 - a) * np_softplus(t))


def np_ddro_rows(t, pref, mu, f):
    g = (1 - mu) * np.exp(t) / (1 - mu * np.exp(t))
    if f == "lsif":  # f(u) = (u-1)^2/2, f'(u) = u-1
        fp, fv = g - 1, 0.5 * (g - 1) ** 2
    elif f == "kliep":  # f(u) = u log u - u, f'(u) = log u
        fp, fv = np.log(g), g * np.log(g) - g
    else:  # f(u) = u log u - (1+u) log(1+u), f'(u) = log(u/(1+u))
        fp, fv = np.log(g / (1 + g)), g * np.log(g) - (1 + g) * np.log(1 + g)
    return np.where(pref, -fp, fp * g - fv)


def sample_batch(seed, n=12, scale=3.0):
    rng = np.random.default_rng(seed)
    t = rng.normal(scale=scale, size=n)
    pref = rng.random(n) < 0.4
    pref[0], pref[1] = True, False
    return t, pref


def tt(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def tb(x):
    return torch.tensor(x, dtype=torch.bool)


# ---------------------------------------------------------------------------
# values and reductions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha", [0.1, 0.39, 0.5, 0.9])
def test_rdro_rows_and_reductions_match_closed_form(seed, alpha):
    t, pref = sample_batch(seed)
    rows = np_rdro_rows(t, pref, alpha)
    got = rdro_loss(tt(t), tb(pref), alpha, reduction="none").numpy()
    np.testing.assert_allclose(got, rows, rtol=1e-12, atol=1e-12)
    pooled = rdro_loss(tt(t), tb(pref), alpha, reduction="pooled").item()
    assert pooled == pytest.approx(rows.mean(), rel=1e-12)
    per_class = rdro_loss(tt(t), tb(pref), alpha, reduction="per_class").item()
    assert per_class == pytest.approx(rows[pref].mean() + rows[~pref].mean(), rel=1e-12)


def test_rdro_auto_alpha_is_batch_preferred_fraction():
    t, pref = sample_batch(7, n=20)
    auto = rdro_loss(tt(t), tb(pref), "auto")
    explicit = rdro_loss(tt(t), tb(pref), pref.mean())
    assert auto.item() == pytest.approx(explicit.item(), rel=1e-14)


@pytest.mark.parametrize("f", ["logistic", "lsif", "kliep"])
@pytest.mark.parametrize("mu", [0.2, 0.5, 0.8])
def test_ddro_rows_match_bregman_closed_form(f, mu):
    t, pref = sample_batch(3, scale=1.0)
    t = np.minimum(t, -math.log(mu) - 0.05)  # stay below the pole e^t = 1/μ
    rows = np_ddro_rows(t, pref, mu, f)
    got = ddro_loss(tt(t), tb(pref), mu, divergence=f, reduction="none").numpy()
    np.testing.assert_allclose(got, rows, rtol=1e-10, atol=1e-10)
    per_class = ddro_loss(tt(t), tb(pref), mu, divergence=f).item()
    assert per_class == pytest.approx(rows[pref].mean() + rows[~pref].mean(), rel=1e-10)
    pooled = ddro_loss(tt(t), tb(pref), mu, divergence=f, reduction="pooled").item()
    assert pooled == pytest.approx(rows.mean(), rel=1e-10)


def test_ddro_raw_is_undefined_beyond_the_pole_and_stabilised_clips():
    mu = 0.4
    t = tt([-math.log(mu) + 0.5, 0.0])
    pref = tb([True, False])
    raw = ddro_loss(t, pref, mu, reduction="none")
    assert math.isnan(raw[0].item()) and math.isfinite(raw[1].item())
    clipped = ddro_loss(t, pref, mu, stabilize=True, clip_margin=0.1, reduction="none")
    expect = np_ddro_rows(np.array([-math.log(mu) - 0.1, 0.0]), np.array([True, False]), mu, "logistic")
    np.testing.assert_allclose(clipped.numpy(), expect, rtol=1e-12)


@pytest.mark.parametrize("z0", [0.0, 0.7, -2.0])
def test_kto_matches_closed_form(z0):
    t, pref = sample_batch(11)
    beta, lam_d, lam_u = 0.1, 1.3, 0.8
    z = max(z0, 0.0)  # clamped at 0
    rows = np.where(pref, lam_d * (1 - np_sigmoid(beta * (t - z))), lam_u * (1 - np_sigmoid(beta * (z - t))))
    got = kto_loss(tt(t), tb(pref), z0, beta=beta, desirable_weight=lam_d, undesirable_weight=lam_u, reduction="none")
    np.testing.assert_allclose(got.numpy(), rows, rtol=1e-12)
    assert kto_loss(tt(t), tb(pref), z0, beta, lam_d, lam_u).item() == pytest.approx(rows.mean(), rel=1e-12)


def test_kto_reference_point_is_detached_clamped_mean():
    mism = tt([0.5, -2.0, 0.3], dtype=torch.float32).requires_grad_()
    assert kto_reference_point(mism).item() == 0.0  # mean -0.4 clamps to 0
    mism2 = tt([1.0, 2.0], dtype=torch.float32).requires_grad_()
    z0 = kto_reference_point(mism2)
    assert z0.item() == pytest.approx(1.5) and not z0.requires_grad
    # the reference point carries no gradient into the loss
    t = tt([0.1, -0.2], dtype=torch.float32).requires_grad_()
    kto_loss(t, tb([True, False]), z0).backward()
    assert mism2.grad is None


def test_bco_matches_closed_form_with_running_mean():
    beta = 0.2
    state = RewardRunningMean()
    seen = []
    for seed in range(3):
        t, pref = sample_batch(seed)
        seen.extend(beta * t)
        delta = float(np.mean(seen))  # running mean of all rewards so far, this batch included
        z = beta * t - delta
        rows = np.where(pref, -np.log(np_sigmoid(z)), -np.log(np_sigmoid(-z)))
        got = bco_loss(tt(t), tb(pref), state, beta=beta, reduction="none")
        np.testing.assert_allclose(got.numpy(), rows, rtol=1e-10)
        assert state.mean == pytest.approx(delta, rel=1e-12)
    restored = RewardRunningMean()
    restored.load_state_dict(state.state_dict())
    assert (restored.mean, restored.count) == (state.mean, state.count)


def test_dpo_and_sft_match_closed_forms():
    rng = np.random.default_rng(0)
    tc, tr = rng.normal(size=6), rng.normal(size=6)
    rows = -np.log(np_sigmoid(0.5 * (tc - tr)))
    np.testing.assert_allclose(dpo_loss(tt(tc), tt(tr), beta=0.5, reduction="none").numpy(), rows, rtol=1e-12)
    assert dpo_loss(tt(tc), tt(tr), beta=0.5).item() == pytest.approx(rows.mean())

    logp = -np.abs(rng.normal(size=5)) * 10
    pref = np.array([True, False, True, True, False])
    ntok = np.array([3, 4, 5, 6, 7])
    assert sft_loss(tt(logp), tb(pref)).item() == pytest.approx(-logp[pref].mean())
    per_token = sft_loss(tt(logp), tb(pref), num_tokens=torch.tensor(ntok)).item()
    assert per_token == pytest.approx(-logp[pref].sum() / ntok[pref].sum())
    x = tt(logp).requires_grad_()
    zero = sft_loss(x, tb([False] * 5))
    zero.backward()
    assert zero.item() == 0.0 and torch.all(x.grad == 0)


# ---------------------------------------------------------------------------
# minimisers (claim: per-class RDRO targets log r_α; pooled targets the π+-weighted form)
# ---------------------------------------------------------------------------


def _expected_loss_minimiser(loss_rows, w_pos, w_neg, k):
    """argmin over t ∈ R^k of Σ_y w_pos[y] ℓ+(t_y) + w_neg[y] ℓ−(t_y), via scipy with autograd gradients."""
    pref = torch.tensor([True] * k + [False] * k)
    w = torch.tensor(np.concatenate([w_pos, w_neg]))

    def objective(x):
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        val = (loss_rows(torch.cat([t, t]), pref) * w).sum()
        val.backward()
        return val.item(), t.grad.numpy().copy()

    res = minimize(objective, np.zeros(k), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    assert res.success, res.message
    return res.x


@pytest.mark.parametrize("seed", range(5))
def test_per_class_rdro_minimiser_is_log_relative_ratio(seed):
    rng = np.random.default_rng(seed)
    k = 6
    p_pos, p_neg = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
    alpha = float(rng.uniform(0.1, 0.9))
    t_hat = _expected_loss_minimiser(lambda t, p: rdro_loss(t, p, alpha, reduction="none"), p_pos, p_neg, k)
    np.testing.assert_allclose(t_hat, np.log(ratios.relative_ratio(p_pos, p_neg, alpha)), atol=1e-5)
    assert np.all(t_hat <= math.log(1 / alpha) + 1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_pooled_rdro_minimiser_matches_method_formula(seed):
    rng = np.random.default_rng(100 + seed)
    k = 5
    p_pos, p_neg = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
    alpha, pi = float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.2, 0.8))
    # pooled mean over rows = π+ E_{p+}[ℓ+] + (1 − π+) E_{p−}[ℓ−]
    rows = lambda t, p: rdro_loss(t, p, alpha, reduction="none")  # noqa: E731
    t_hat = _expected_loss_minimiser(rows, pi * p_pos, (1 - pi) * p_neg, k)
    target = ratios.pooled_rdro_target(p_pos, p_neg, alpha, pi)
    np.testing.assert_allclose(t_hat, np.log(target), atol=1e-5)
    if abs(pi - 0.5) > 0.1:  # and it is not r_α
        assert np.max(np.abs(t_hat - np.log(ratios.relative_ratio(p_pos, p_neg, alpha)))) > 1e-2


@pytest.mark.parametrize("f", ["logistic", "lsif", "kliep"])
def test_ddro_per_class_minimiser_recovers_ordinary_ratio(f):
    rng = np.random.default_rng(5)
    k = 4
    p_pos, p_neg = rng.dirichlet(np.ones(k) * 3), rng.dirichlet(np.ones(k) * 3)
    mu = 0.3
    t_hat = _expected_loss_minimiser(lambda t, p: ddro_loss(t, p, mu, divergence=f, reduction="none"), p_pos, p_neg, k)
    g_hat = ratios.ddro_ratio(t_hat, mu)
    np.testing.assert_allclose(g_hat, p_pos / p_neg, rtol=1e-4)
    # equivalently e^t = r_μ: the same target as RDRO with α = μ
    np.testing.assert_allclose(np.exp(t_hat), ratios.relative_ratio(p_pos, p_neg, mu), rtol=1e-4)


# ---------------------------------------------------------------------------
# gradients: bounded for RDRO, unbounded for raw DDRO
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.39, 0.95])
def test_rdro_gradient_bounded_by_one_everywhere(alpha):
    grid = torch.cat([torch.linspace(-1e4, 1e4, 4001), torch.linspace(-30, 30, 2001)]).double()
    for cls in (True, False):
        t = grid.clone().requires_grad_()
        pref = torch.full_like(grid, cls, dtype=torch.bool)
        rdro_loss(t, pref, alpha, reduction="none").sum().backward()
        assert torch.isfinite(t.grad).all()
        assert t.grad.abs().max().item() <= 1.0 + 1e-12
        lo, hi = (-1.0, alpha) if cls else (0.0, 1.0 - alpha)
        assert t.grad.min().item() >= lo - 1e-12 and t.grad.max().item() <= hi + 1e-12
        np.testing.assert_allclose(t.grad.numpy(), rdro_loss_grad(grid, pref, alpha).numpy(), atol=1e-12)


@pytest.mark.parametrize("f", ["logistic", "lsif", "kliep"])
def test_ddro_raw_gradient_grows_without_bound_near_pole_stabilised_does_not(f):
    mu, margin = 0.5, 1e-2
    pole = -math.log(mu)
    pref = tb([True, False])

    def grad_nonpref(t0, **kw):
        t = tt([t0, t0]).requires_grad_()
        ddro_loss(t, pref, mu, divergence=f, reduction="none", **kw)[1].backward()
        return abs(t.grad[1].item())

    raw = [grad_nonpref(pole - gap) for gap in [1e-1, 1e-2, 1e-3, 1e-4]]
    assert all(b > 5 * a for a, b in zip(raw, raw[1:])), raw  # grows at least like 1/gap
    assert raw[-1] > 1e3
    # stabilised: finite everywhere, including at and beyond the pole, and never above its value at the clip
    at_clip = grad_nonpref(pole - margin, stabilize=True, clip_margin=margin)
    grid = np.concatenate([np.linspace(-20, pole + 5, 400), pole - np.logspace(-6, 0, 50)])
    stab = [grad_nonpref(t0, stabilize=True, clip_margin=margin) for t0 in grid]
    assert np.all(np.isfinite(stab)) and max(stab) <= at_clip * (1 + 1e-9)
    assert at_clip < raw[-1] / 10


def test_gradcheck_float64():
    torch.manual_seed(0)
    t = torch.randn(7, dtype=torch.float64, requires_grad=True)
    pref = tb([True, False, True, True, False, False, True])
    fns = [
        lambda x: rdro_loss(x, pref, 0.3, reduction="per_class"),
        lambda x: rdro_loss(x, pref, 0.3),
        lambda x: ddro_loss(x * 0.1, pref, 0.3, divergence="lsif"),
        lambda x: ddro_loss(x * 0.1, pref, 0.3, divergence="kliep"),
        lambda x: ddro_loss(x * 0.1, pref, 0.3),
        lambda x: kto_loss(x, pref, 0.2),
        # δ is detached: a state with a huge count keeps it fixed while gradcheck perturbs t
        lambda x: bco_loss(x, pref, RewardRunningMean(0.3, 10**15)),
        lambda x: dpo_loss(x, x.flip(0) * 0.5),
        lambda x: sft_loss(x, pref),
    ]
    for fn in fns:
        assert torch.autograd.gradcheck(fn, (t,))


# ---------------------------------------------------------------------------
# stability over shapes and dtypes (hypothesis)
# ---------------------------------------------------------------------------

DTYPES = [torch.float16, torch.bfloat16, torch.float32]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    dtype_idx=st.integers(0, 2),
    scale=st.sampled_from([1.0, 100.0, 1e4]),
    alpha=st.floats(0.01, 0.99),
    seed=st.integers(0, 10_000),
)
def test_all_losses_finite_for_large_logratios_in_low_precision(n, dtype_idx, scale, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    t = ((torch.rand(n, generator=g) * 2 - 1) * scale).to(DTYPES[dtype_idx])
    t[0] = scale  # extremes included
    t[1] = -scale
    pref = torch.rand(n, generator=g) < 0.5
    pref[0], pref[1] = True, False
    calls = [
        lambda x: rdro_loss(x, pref, alpha, reduction="per_class"),
        lambda x: rdro_loss(x, pref, alpha),
        lambda x: ddro_loss(x, pref, alpha, stabilize=True),
        lambda x: ddro_loss(x, pref, alpha, divergence="lsif", stabilize=True),
        lambda x: ddro_loss(x, pref, alpha, divergence="kliep", stabilize=True),
        lambda x: kto_loss(x, pref, 0.5),
        lambda x: bco_loss(x, pref, RewardRunningMean()),
        lambda x: dpo_loss(x, x.flip(0)),
        lambda x: sft_loss(-x.abs(), pref),
    ]
    for fn in calls:
        x = t.clone().requires_grad_()
        val = fn(x)
        assert val.dtype == torch.float32 and torch.isfinite(val)
        val.backward()
        assert x.grad.dtype == t.dtype and torch.isfinite(x.grad).all()


def test_rdro_low_precision_agrees_with_float64():
    t = torch.linspace(-50, 50, 101)
    pref = torch.arange(101) % 3 == 0
    ref = rdro_loss(t.double(), pref, 0.4).item()
    for dtype in DTYPES:
        # inputs are rounded to dtype; compare against float64 on the same rounded inputs
        rounded = t.to(dtype)
        assert rdro_loss(rounded, pref, 0.4).item() == pytest.approx(
            rdro_loss(rounded.double(), pref, 0.4).item(), rel=1e-6
        )
    assert rdro_loss(t, pref, 0.4).item() == pytest.approx(ref, rel=1e-6)


# ---------------------------------------------------------------------------
# bad input: ValueError naming the argument
# ---------------------------------------------------------------------------

T = torch.tensor([0.1, -0.2, 0.3])
P = torch.tensor([True, False, True])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rdro_loss(T, P, 0.0), "alpha"),
        (lambda: rdro_loss(T, P, 1.0), "alpha"),
        (lambda: rdro_loss(T, P, float("nan")), "alpha"),
        (lambda: rdro_loss(T, P, "half"), "alpha"),
        (lambda: rdro_loss(T, torch.tensor([1, 0, 1]), 0.5), "preferred"),
        (lambda: rdro_loss(T, torch.tensor([True, False]), 0.5), "preferred"),
        (lambda: rdro_loss(T, P, 0.5, reduction="sum"), "reduction"),
        (lambda: rdro_loss(torch.tensor([0.1, float("nan"), 0.0]), P, 0.5), "logratio"),
        (lambda: rdro_loss(torch.tensor([0.1, float("inf"), 0.0]), P, 0.5), "logratio"),
        (lambda: rdro_loss(torch.tensor([[0.1]]), torch.tensor([[True]]), 0.5), "logratio"),
        (lambda: rdro_loss(torch.tensor([1, 2, 3]), P, 0.5), "logratio"),
        (lambda: rdro_loss(torch.tensor([]), torch.tensor([], dtype=torch.bool), 0.5), "logratio"),
        (lambda: rdro_loss(T, torch.tensor([True, True, True]), 0.5, reduction="per_class"), "non-preferred"),
        (lambda: rdro_loss(T, torch.tensor([False, False, False]), 0.5, reduction="per_class"), "no preferred"),
        (lambda: rdro_loss(T, torch.tensor([True, True, True]), "auto"), "only preferred"),
        (lambda: ddro_loss(T, P, 0.5, divergence="hellinger"), "divergence"),
        (lambda: ddro_loss(T, P, 1.5), "mu"),
        (lambda: ddro_loss(T, P, 0.5, stabilize=True, clip_margin=0.0), "clip_margin"),
        (lambda: kto_loss(T, P, 0.0, beta=-1.0), "beta"),
        (lambda: kto_loss(T, P, float("nan")), "reference_point"),
        (lambda: kto_loss(T, P, torch.tensor([0.1, 0.2])), "reference_point"),
        (lambda: bco_loss(T, P, running_mean=0.0), "running_mean"),
        (lambda: dpo_loss(T, T[:2]), "same shape"),
        (lambda: dpo_loss(T, T, reduction="per_class"), "reduction"),
        (lambda: sft_loss(T, P, num_tokens=torch.tensor([1, 2])), "num_tokens"),
        (lambda: sft_loss(T, P, num_tokens=torch.tensor([0, 2, 1])), "num_tokens"),
        (lambda: preferred_fraction([]), "empty"),
        (lambda: preferred_fraction([1, 0]), "boolean"),
        (lambda: preferred_fraction(torch.tensor([1, 0])), "boolean"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_preferred_fraction():
    assert preferred_fraction([True, False, False, True, True]) == pytest.approx(0.6)
    assert preferred_fraction(torch.tensor([True, False, False, False])) == pytest.approx(0.25)
    assert preferred_fraction(np.array([True, False])) == pytest.approx(0.5)


def test_core_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, rdro, rdro.losses, rdro.ratios; sys.exit(int('transformers' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_public_names_exist():
    for name in ["rdro_loss", "ddro_loss", "kto_loss", "bco_loss", "dpo_loss", "sft_loss", "preferred_fraction"]:
        assert callable(getattr(losses, name))


def test_per_class_with_dataset_fraction_is_unbiased_and_accepts_one_class_batches():
    # a tiny dataset: 3 preferred rows, 1 non-preferred (π+ = 0.75)
    t = torch.tensor([0.3, -1.2, 2.0, 0.7], dtype=torch.float64)
    pref = torch.tensor([True, True, True, False])
    target = rdro_loss(t, pref, 0.4, reduction="per_class").item()
    # a batch whose balance equals the dataset's: the same as the plain per-class reduction
    assert rdro_loss(t, pref, 0.4, "per_class", dataset_preferred_fraction=0.75).item() == pytest.approx(target)
    # the mean over every ordered batch of 2 rows drawn with replacement (16 batches) is exactly the
    # dataset's sum of class means, although 10 of the 16 batches hold one class only
    values = []
    for i in range(4):
        for j in range(4):
            idx = torch.tensor([i, j])
            values.append(rdro_loss(t[idx], pref[idx], 0.4, "per_class", dataset_preferred_fraction=0.75).item())
    assert np.mean(values) == pytest.approx(target, rel=1e-12)
    rows = np_rdro_rows(t.numpy(), pref.numpy(), 0.4)
    one_class = rdro_loss(t[:2], pref[:2], 0.4, "per_class", dataset_preferred_fraction=0.75).item()
    assert one_class == pytest.approx(rows[:2].sum() / (0.75 * 2))
    ddro_all = ddro_loss(t * 0.1, pref, 0.4, "lsif", reduction="per_class").item()
    ddro_w = ddro_loss(t * 0.1, pref, 0.4, "lsif", reduction="per_class", dataset_preferred_fraction=0.75).item()
    assert ddro_w == pytest.approx(ddro_all)
    with pytest.raises(ValueError, match="dataset_preferred_fraction"):
        rdro_loss(t, pref, 0.4, "per_class", dataset_preferred_fraction=1.0)


# ---------------------------------------------------------------------------
# exactness in float64 far from 0: softplus beyond |t| = 20, DDRO/Bregman at large log g
# (references in mpmath at 60 digits, written from the formulas, not from rdro.losses)
# ---------------------------------------------------------------------------

mp = pytest.importorskip("mpmath")
mp.mp.dps = 60


def mp_softplus(t):
    return mp.log1p(mp.exp(mp.mpf(t)))


def mp_sigmoid(t):
    return 1 / (1 + mp.exp(-mp.mpf(t)))


def mp_bregman(g, f):
    """(f'(g), f''(g), f(g)) of the Bregman generators of method.md §3."""
    if f == "lsif":
        return g - 1, mp.mpf(1), (g - 1) ** 2 / 2
    if f == "kliep":
        return mp.log(g), 1 / g, g * mp.log(g) - g
    return mp.log(g / (1 + g)), 1 / (g * (1 + g)), g * mp.log(g) - (1 + g) * mp.log(1 + g)


def mp_bregman_row(s, preferred, f):
    """Row loss and d(loss)/ds at s = log g: preferred −f'(g), non-preferred f'(g) g − f(g)."""
    g = mp.exp(mp.mpf(s))
    fp, fpp, fv = mp_bregman(g, f)
    if preferred:
        return -fp, -fpp * g
    return fp * g - fv, fpp * g * g


@pytest.mark.parametrize("alpha", [0.05, 0.39, 0.9])
def test_rdro_values_and_gradients_exact_in_float64_beyond_20(alpha):
    t = np.array([-60.0, -35.0, -25.0, -20.5, -1.0, 0.0, 3.0, 20.5, 25.0, 35.0, 60.0])
    for cls in (True, False):
        tt_ = tt(t).requires_grad_()
        rows = rdro_loss(tt_, torch.full((t.size,), cls), alpha, reduction="none")
        rows.sum().backward()
        if cls:
            ref = [mp_softplus(-x) + alpha * mp_softplus(x) for x in t]
            dref = [(1 + alpha) * mp_sigmoid(x) - 1 for x in t]
        else:
            ref = [(1 - alpha) * mp_softplus(x) for x in t]
            dref = [(1 - alpha) * mp_sigmoid(x) for x in t]
        np.testing.assert_allclose(rows.detach().numpy(), np.array(ref, dtype=float), rtol=1e-14, atol=0)
        np.testing.assert_allclose(tt_.grad.numpy(), np.array(dref, dtype=float), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("f", ["logistic", "lsif", "kliep"])
def test_bregman_ratio_loss_is_exact_for_large_log_g(f):
    s = np.array([-60.0, -36.0, -5.0, 0.0, 0.7, 5.0, 20.0, 36.0, 45.0, 60.0])
    for cls in (True, False):
        st_ = tt(s).requires_grad_()
        rows = losses.bregman_ratio_loss(st_, torch.full((s.size,), cls), f, reduction="none")
        rows.sum().backward()
        ref = [mp_bregman_row(x, cls, f) for x in s]
        assert torch.isfinite(rows).all() and torch.isfinite(st_.grad).all()
        np.testing.assert_allclose(rows.detach().numpy(), [float(v) for v, _ in ref], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(st_.grad.numpy(), [float(d) for _, d in ref], rtol=1e-12, atol=1e-300)
    # ddro_loss is this loss after its model: the same rows at t with log g = ddro_log_ratio(t)
    t, pref = sample_batch(2, scale=1.0)
    t = np.minimum(t, -math.log(0.3) - 0.05)
    log_g = losses.ddro_log_ratio(tt(t), 0.3)
    np.testing.assert_allclose(
        ddro_loss(tt(t), tb(pref), 0.3, divergence=f, reduction="none").numpy(),
        losses.bregman_ratio_loss(log_g, tb(pref), f, reduction="none").numpy(),
        rtol=0,
        atol=0,
    )


def mp_ddro_grad_from_t(log_g, preferred, mu, f):
    """dℓ/dt of raw DDRO written on t: with t = log r_μ(g) at 60 digits, dℓ/dt = dℓ/dg · dg/dt,
    dg/dt = g / (1 − μ e^t), dℓ/dg = −f''(g) (preferred) or g f''(g) (non-preferred)."""
    with mp.workdps(40 + int(log_g / 2)):  # 1 − μ e^t ≈ e^−log g: enough digits to resolve it
        g = mp.exp(mp.mpf(log_g))
        t = mp.log(g / (mu * g + 1 - mu))
        _, fpp, _ = mp_bregman(g, f)
        dl_dg = -fpp if preferred else g * fpp
        return dl_dg * g / (1 - mu * mp.exp(t))


@pytest.mark.parametrize("f", ["logistic", "lsif", "kliep"])
@pytest.mark.parametrize("mu", [0.3, 0.5])
def test_ddro_log_abs_grad_matches_autograd_and_high_precision(f, mu):
    pole = -math.log(mu)
    # moderate log g: float64 autograd through ddro_loss at t is accurate there
    t = np.concatenate([np.linspace(-5.0, pole - 1e-2, 40), pole - np.logspace(-2, -6, 9)])
    log_g = losses.ddro_log_ratio(tt(t), mu)
    for cls in (True, False):
        pref = torch.full((t.size,), cls)
        t_ = tt(t).requires_grad_()
        ddro_loss(t_, pref, mu, divergence=f, reduction="none").sum().backward()
        closed = losses.ddro_log_abs_grad(log_g, pref, mu, f).numpy()
        np.testing.assert_allclose(np.exp(closed), np.abs(t_.grad.numpy()), rtol=1e-8)
    # large log g, where t = log r_μ(g) rounds to the pole in float64: against 60-digit arithmetic on t
    big = np.array([10.0, 20.0, 35.0, 40.0, 60.0, 200.0])
    for cls in (True, False):
        pref = torch.full((big.size,), cls)
        got = losses.ddro_log_abs_grad(tt(big), pref, mu, f).numpy()
        ref = [float(mp.log(abs(mp_ddro_grad_from_t(x, cls, mu, f)))) for x in big]
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)  # log values; 0 for μ = ½ logistic
        if not cls:  # non-preferred rows: |dℓ/dt| grows without bound in log g
            assert np.all(np.diff(got) > 1.0)


def test_ddro_raw_is_infinite_at_the_pole_and_nan_beyond():
    mu = 0.4
    t = tt([-math.log(mu)] * 2 + [-math.log(mu) + 1e-9] * 2)  # at t = log(1/μ), then just beyond
    pref = tb([True, False, True, False])
    assert losses.ddro_log_ratio(t[:1], mu).item() == math.inf
    expected_at_pole = {"logistic": (0.0, math.inf), "lsif": (-math.inf, math.inf), "kliep": (-math.inf, math.inf)}
    for f, (at_pref, at_nonpref) in expected_at_pole.items():
        rows = ddro_loss(t, pref, mu, divergence=f, reduction="none")
        assert rows[0].item() == at_pref and rows[1].item() == at_nonpref
        assert math.isnan(rows[2].item()) and math.isnan(rows[3].item())


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: rdro_loss(T, P, 0.5, reduction="pooled", dataset_preferred_fraction=0.5),
            "dataset_preferred_fraction",
        ),
        (lambda: rdro_loss(T, P, 0.5, reduction="none", dataset_preferred_fraction=0.5), "dataset_preferred_fraction"),
        (
            lambda: ddro_loss(T, P, 0.5, reduction="pooled", dataset_preferred_fraction=0.5),
            "dataset_preferred_fraction",
        ),
        (lambda: losses.bregman_ratio_loss(torch.tensor([0.0, float("nan"), 1.0]), P), "log_g"),
        (lambda: losses.bregman_ratio_loss(T, P, "hellinger"), "divergence"),
        (lambda: losses.bregman_ratio_loss(T, P, reduction="sum"), "reduction"),
        (lambda: losses.ddro_log_abs_grad(T, P, 1.0), "mu"),
        (lambda: losses.ddro_log_ratio(T, 0.0), "mu"),
        (lambda: losses.ddro_log_ratio(T, 1.5), "mu"),
        (lambda: losses.ddro_log_abs_grad(T, P, 0.5, "hellinger"), "divergence"),
        (lambda: losses.ddro_log_abs_grad(torch.tensor([float("inf"), 0.0, 1.0]), P, 0.5), "log_g"),
    ],
)
def test_bad_input_of_the_log_g_functions_and_reductions(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bco_running_mean_unchanged_when_the_call_raises():
    """A bco_loss call that raises (one-class batch, per-class reduction) leaves δ's state as it was."""
    running = losses.RewardRunningMean()
    losses.bco_loss(torch.tensor([1.0, -1.0]), torch.tensor([True, False]), running, reduction="per_class")
    before = running.state_dict()
    with pytest.raises(ValueError, match="per_class"):
        losses.bco_loss(torch.tensor([5.0, 7.0]), torch.tensor([True, True]), running, reduction="per_class")
    assert running.state_dict() == before
