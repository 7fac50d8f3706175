"""Synthetic worlds, toy policy fitting and the experiment helpers of rdro.simulations."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from rdro import losses
from rdro.simulations import model_fitting as mf
from rdro.simulations import worlds
from rdro.simulations.experiments import ExperimentResult, _check
from rdro.simulations.summary_statistics import loglog_slope, mean_ci

# ---------------------------------------------------------------------------
# continuous worlds
# ---------------------------------------------------------------------------


def test_gaussian_and_student_t_logpdf_match_scipy():
    rng = np.random.default_rng(0)
    g = worlds.gaussian_shift_world(3, 1.5)
    X = rng.standard_normal((50, 3)) * 2
    np.testing.assert_allclose(g.logpdf_pos(X), stats.multivariate_normal([1.5, 0, 0], np.eye(3)).logpdf(X), rtol=1e-12)
    np.testing.assert_allclose(g.logpdf_neg(X), stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(X), rtol=1e-12)
    t = worlds.student_t_world(2, 1.0, df=3.0)
    ref = stats.multivariate_t([1.0, 0.0], np.eye(2), df=3.0)
    np.testing.assert_allclose(t.logpdf_pos(X[:, :2]), ref.logpdf(X[:, :2]), rtol=1e-12)
    v = worlds.variance_world(2, 2.0, 1.0)
    np.testing.assert_allclose(
        v.logpdf_pos(X[:, :2]), stats.multivariate_normal(np.zeros(2), 4 * np.eye(2)).logpdf(X[:, :2])
    )


def test_continuous_samplers_follow_their_densities():
    rng = np.random.default_rng(1)
    g = worlds.gaussian_shift_world(2, 2.0)
    Xp = g.sample_pos(20000, rng)
    np.testing.assert_allclose(Xp.mean(axis=0), [2.0, 0.0], atol=0.05)
    np.testing.assert_allclose(np.cov(Xp.T), np.eye(2), atol=0.05)
    t = worlds.student_t_world(1, 0.5, df=4.0)
    assert stats.kstest(t.sample_pos(5000, rng)[:, 0], stats.t(df=4.0, loc=0.5).cdf).pvalue > 1e-3
    v = worlds.variance_world(1, 2.0, 1.0)
    assert stats.kstest(v.sample_pos(5000, rng)[:, 0], stats.norm(scale=2.0).cdf).pvalue > 1e-3
    Xm = g.sample_mixture(20000, 0.3, rng)
    # the mean of q_α along e1 is α·δ
    assert abs(Xm[:, 0].mean() - 0.3 * 2.0) < 0.05


def test_continuous_ratios_closed_form_and_bound():
    g = worlds.gaussian_shift_world(1, 3.0)
    x = np.linspace(-5, 10, 31)[:, None]
    np.testing.assert_allclose(g.log_ordinary_ratio(x), 3.0 * x[:, 0] - 4.5, atol=1e-12)  # log g = δx − δ²/2
    log_r = g.log_relative_ratio(x, 0.2)
    r_closed = np.exp(3.0 * x[:, 0] - 4.5) / (0.2 * np.exp(3.0 * x[:, 0] - 4.5) + 0.8)
    np.testing.assert_allclose(np.exp(log_r), r_closed, rtol=1e-12)
    assert np.all(log_r <= math.log(1 / 0.2) + 1e-12)


def test_world_input_errors():
    g = worlds.gaussian_shift_world(2, 1.0)
    with pytest.raises(ValueError, match="X must have shape"):
        g.logpdf_pos(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="alpha"):
        g.sample_mixture(10, 1.5, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        g.sample_pos(10, 0)
    with pytest.raises(ValueError, match="shift"):
        worlds.gaussian_shift_world(1, -1.0)
    with pytest.raises(ValueError, match="family"):
        worlds.ContinuousWorld("cauchy", 1, (0.0,), (0.0,))
    with pytest.raises(ValueError, match="rule"):
        worlds.ToyLanguageWorld(rule="plackett")
    with pytest.raises(ValueError, match="too many"):
        worlds.ToyLanguageWorld(vocab_size=16, length=6)


# ---------------------------------------------------------------------------
# toy language world
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cyclic_world():
    return worlds.ToyLanguageWorld(n_prompts=3, vocab_size=3, length=3, alpha=0.3, rule="cyclic", seed=11)


@pytest.fixture(scope="module")
def bt_world():
    return worlds.ToyLanguageWorld(n_prompts=3, vocab_size=3, length=3, alpha=0.3, rule="bradley_terry", seed=11)


def test_toy_world_reference_equals_mixture_exactly(cyclic_world):
    w = cyclic_world
    ref = np.exp(w.logp_ref)
    np.testing.assert_allclose(ref.sum(axis=1), 1.0, atol=1e-13)
    np.testing.assert_allclose((ref * w.h).sum(axis=1), w.alpha, atol=1e-12)  # per-prompt preferred probability
    ppos, pneg = np.exp(w.logp_pos_table), np.exp(w.logp_neg_table)
    np.testing.assert_allclose(ppos.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(w.alpha * ppos + (1 - w.alpha) * pneg, ref, atol=1e-14)  # π_ref = q_α
    # the RDRO optimum π_ref · r_α is p+
    np.testing.assert_allclose(ref * np.exp(w.log_relative_ratio_table()), ppos, atol=1e-13)
    # the autoregressive π_ref factorises: log π_ref(y|x) = Σ_l log P(y_l | x, y_{l-1}) sums to one over prefixes
    assert w.n_responses == 27


def test_toy_world_samplers_match_exact_tables(cyclic_world):
    w, rng = cyclic_world, np.random.default_rng(3)
    X, pref = w.sample_rows(60000, rng)
    assert abs(pref.mean() - w.alpha) < 0.01
    counts = np.zeros_like(w.h)
    np.add.at(counts, (X[pref, 0], X[pref, 1]), 1.0)
    expected = w.cell_probabilities()[0] * len(X)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert stats.chi2(counts.size - 1).sf(chi2) > 1e-4
    Xp = w.sample_pos(30000, rng)
    emp = np.bincount(Xp[:, 0] * w.n_responses + Xp[:, 1], minlength=w.h.size).reshape(w.h.shape) / len(Xp)
    np.testing.assert_allclose(emp, np.exp(w.logp_pos_table) / w.n_prompts, atol=0.01)
    np.testing.assert_allclose(np.exp(w.logpdf_pos(Xp[:5])), np.exp(w.logp_pos_table[Xp[:5, 0], Xp[:5, 1]]))


def test_pair_rule_is_bradley_terry_or_intransitive(bt_world, cyclic_world):
    for w in (bt_world, cyclic_world):
        P = w.pair_preference()
        np.testing.assert_allclose(P + P.transpose(0, 2, 1), 1.0, atol=1e-14)
        np.testing.assert_allclose(w.pair_distribution().sum(), 1.0, atol=1e-12)
    # three responses from the three groups: BT log-odds around a cycle sum to 0, the cyclic rule's to ±3κ
    a, b, c = (int(np.flatnonzero(cyclic_world.groups == g)[0]) for g in (0, 1, 2))

    def cycle_logodds(w):
        L = np.log(w.pair_preference()[0]) - np.log1p(-w.pair_preference()[0])
        return L[a, b] + L[b, c] + L[c, a]

    assert abs(cycle_logodds(bt_world)) < 1e-10
    assert cycle_logodds(cyclic_world) == pytest.approx(3 * cyclic_world.cycle_strength, rel=1e-9)
    pairs = cyclic_world.sample_pairs(20000, np.random.default_rng(0))
    emp = mf.PairCounts.from_pairs(cyclic_world, pairs).counts / len(pairs)
    np.testing.assert_allclose(emp, cyclic_world.pair_distribution(), atol=0.01)


# ---------------------------------------------------------------------------
# policy fitting
# ---------------------------------------------------------------------------


def test_weighted_reductions_equal_core_reductions_on_expanded_rows(bt_world):
    w, rng = bt_world, np.random.default_rng(5)
    X, pref = w.sample_rows(400, rng)
    data = mf.UnpairedCounts.from_rows(w, X, pref)
    t_cells = torch.randn(w.h.size, dtype=torch.float64) * 0.5
    idx_p, w_p = mf._cells(data.pos)
    idx_n, w_n = mf._cells(data.neg)
    cell_pref = torch.cat([torch.ones(len(idx_p), dtype=torch.bool), torch.zeros(len(idx_n), dtype=torch.bool)])
    cell_t, cell_w = t_cells[torch.cat([idx_p, idx_n])], torch.cat([w_p, w_n])
    rows_t = t_cells[torch.as_tensor(X[:, 0] * w.n_responses + X[:, 1])]
    rows_pref = torch.as_tensor(pref)
    for reduction in ("pooled", "per_class"):
        weighted = mf._weighted(losses.rdro_loss(cell_t, cell_pref, 0.3, "none"), cell_pref, cell_w, reduction)
        torch.testing.assert_close(weighted, losses.rdro_loss(rows_t, rows_pref, 0.3, reduction))
    per_row = losses.ddro_loss(cell_t, cell_pref, 0.3, stabilize=True, reduction="none")
    torch.testing.assert_close(
        mf._weighted(per_row, cell_pref, cell_w, "per_class"), losses.ddro_loss(rows_t, rows_pref, 0.3, stabilize=True)
    )


def test_rdro_per_class_recovers_p_plus_and_dpo_does_not_in_non_bt_world(bt_world, cyclic_world):
    pop = mf.UnpairedCounts.population(cyclic_world)
    rdro = mf.fit_policy(cyclic_world, pop, "rdro_per_class")
    assert rdro.distances["kl_policy_pos"] < 1e-8 and rdro.distances["tv"] < 1e-4
    dpo = mf.fit_policy(cyclic_world, mf.PairCounts.population(cyclic_world), "dpo")
    assert dpo.distances["kl_policy_pos"] > 0.02
    dpo_bt = mf.fit_policy(bt_world, mf.PairCounts.population(bt_world), "dpo")
    assert dpo_bt.distances["kl_policy_pos"] < 1e-6  # the control: BT preferences, β = 1
    pooled = mf.fit_policy(cyclic_world, pop, "rdro_pooled")  # π+ = 0.3 ≠ ½: biased
    assert pooled.distances["kl_policy_pos"] > 1e-2


def test_sample_fits_get_closer_to_p_plus_with_more_data(cyclic_world):
    rng = np.random.default_rng(2)
    kl = {}
    for n in (2000, 50000):
        data = mf.UnpairedCounts.from_rows(cyclic_world, *cyclic_world.sample_rows(n, rng))
        kl[n] = {
            m: mf.fit_policy(cyclic_world, data, m).distances["kl_policy_pos"] for m in ("rdro_per_class", "sft", "kto")
        }
    assert kl[50000]["rdro_per_class"] < kl[2000]["rdro_per_class"] / 5
    assert kl[50000]["sft"] < kl[2000]["sft"] / 5  # SFT on preferred rows is the MLE of p+: also consistent
    assert kl[50000]["kto"] > 20 * kl[50000]["rdro_per_class"]


def test_fit_policy_input_errors(bt_world):
    pop = mf.UnpairedCounts.population(bt_world)
    with pytest.raises(ValueError, match="method"):
        mf.fit_policy(bt_world, pop, "ipo")
    with pytest.raises(TypeError, match="PairCounts"):
        mf.fit_policy(bt_world, pop, "dpo")
    with pytest.raises(ValueError, match="integer counts"):
        mf.fit_policy(bt_world, pop, "bco")
    with pytest.raises(ValueError, match="shape"):
        mf.policy_distances(bt_world, np.zeros((2, 2)))


def test_relative_logit_model_recovers_the_gaussian_log_ratio():
    g, rng = worlds.gaussian_shift_world(1, 1.0), np.random.default_rng(4)
    X, pref = g.sample_labelled(6000, 14000, rng)
    fit = mf.fit_relative_logit_model(X, pref, 0.3, reduction="per_class")
    # log g = δx − δ²/2 = x − 0.5
    assert fit.weights[0] == pytest.approx(1.0, abs=0.08) and fit.bias == pytest.approx(-0.5, abs=0.08)
    x = np.linspace(-2, 3, 11)[:, None]
    np.testing.assert_allclose(fit.log_ratio(x), g.log_relative_ratio(x, 0.3), atol=0.1)
    assert np.all(fit.log_ratio(x * 100) <= math.log(1 / 0.3) + 1e-12)


# ---------------------------------------------------------------------------
# statistics and result serialisation
# ---------------------------------------------------------------------------


def test_summary_statistics_against_scipy():
    n = np.array([100, 1000, 10000] * 3)
    slope = loglog_slope(n, 3.0 * n**-0.5 * np.exp(np.array([0.1, -0.1, 0.05] * 3)))
    assert slope["slope_lo"] <= -0.5 <= slope["slope_hi"] or abs(slope["slope"] + 0.5) < 0.05
    assert loglog_slope([10, 100, 1000], [1.0, 0.1, 0.01])["slope"] == pytest.approx(-1.0)
    v = [1.0, 2.0, 4.0, 3.0]
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(v), scale=stats.sem(v))
    ci = mean_ci(v)
    assert ci["ci_lo"] == pytest.approx(lo) and ci["ci_hi"] == pytest.approx(hi) and ci["count"] == 4


def test_checks_and_result_json_roundtrip(tmp_path):
    assert _check("c", "s", 0.5, "<=", 1.0)["passed"] and not _check("c", "s", float("nan"), "<=", 1.0)["passed"]
    with pytest.raises(ValueError, match="comparison"):
        _check("c", "s", 1.0, "~", 1.0)
    res = ExperimentResult(
        "E0", "claim", [{"n": 1, "v": np.float64(0.5)}], [], [_check("c", "s", 2.0, ">=", 1.0)], {"seed": 1}
    )
    path = tmp_path / "r.json"
    res.to_json(path)
    back = ExperimentResult.from_json(path)
    assert back.table == [{"n": 1, "v": 0.5}] and back.passed and back.meta == {"seed": 1}
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="missing keys"):
        ExperimentResult.from_json('{"name": "x"}')


def test_e3_closed_form_erm_is_the_minimiser_of_the_core_per_class_loss():
    from rdro.simulations.experiments import _per_class_risk

    rng = np.random.default_rng(0)
    cp, cn = rng.dirichlet(np.ones(20)), rng.dirichlet(np.ones(20))
    a = 0.3
    t_hat = np.log(cp) - np.log(a * cp + (1 - a) * cn)  # e^t = p̂+ / (α p̂+ + (1 − α) p̂−)
    best = _per_class_risk(t_hat, cp, cn, a)
    for k in range(5):
        for eps in (1e-3, -1e-3):
            t = t_hat.copy()
            t[k] += eps
            assert _per_class_risk(t, cp, cn, a) > best
