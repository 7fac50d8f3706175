"""Fitting t-models with the core losses of :mod:`rdro.losses`, deterministically and full-batch.

Two model families, both trained with the *same* loss functions the LLM trainer calls:

1. :func:`fit_policy` — a tabular softmax policy over a :class:`~rdro.simulations.worlds.ToyLanguageWorld`:
   π_θ(y|x) = softmax(θ[x])[y] (one logit per (prompt, response)), so
   t_θ(x, y) = log π_θ(y|x) − log π_ref(y|x) (the sum over tokens of the per-token
   differences is the sequence log-ratio). Methods: RDRO (pooled / per-class), DDRO (raw /
   stabilised) [reconstructed], KTO, BCO, DPO (on pairs) and SFT.
2. :func:`fit_relative_logit_model` — a parametric model of log r_α on R^d used for the
   continuous worlds: t_θ(x) = log r_α-link of a linear log-odds s_θ(x) = wᵀφ(x) + b,

       t_θ(x) = s_θ(x) − log(α e^{s_θ(x)} + 1 − α)      (= log relative_from_ordinary(e^s, α)),

   which contains log r_α exactly when log g is linear in φ(x) (Gaussian mean shift with
   φ(x) = x; different variances with φ(x) = (x, ‖x‖²)). t_θ ≤ log(1/α) by construction.

Data enter the toy-world fits as counts per cell (prompt, response, label) — a sample of n
rows and its cell counts give the same loss, and *expected* counts (probabilities) give the
population risk, whose minimiser is the method's optimum. The weighted reductions used
here equal the core reductions on the expanded rows (tested): ``pooled`` = Σ_c w_c ℓ_c / Σ_c w_c,
``per_class`` = Σ_{c∈+} w_c ℓ+_c / Σ_{c∈+} w_c + Σ_{c∈−} w_c ℓ−_c / Σ_{c∈−} w_c.

Optimisation: float64, torch L-BFGS with strong-Wolfe line search for the methods with a
fixed objective (RDRO, DDRO, DPO, SFT); for KTO and BCO, whose reference point z0 / reward
shift δ is a detached statistic of the current policy (not part of an objective), a fixed
number of full-batch Adam steps on the expanded rows, like a trainer would take.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from rdro import losses, ratios
from rdro.simulations.worlds import ToyLanguageWorld

__all__ = [
    "POLICY_METHODS",
    "UnpairedCounts",
    "PairCounts",
    "PolicyFit",
    "fit_policy",
    "policy_distances",
    "RelativeLogitFit",
    "fit_relative_logit_model",
]

POLICY_METHODS = ("rdro_pooled", "rdro_per_class", "ddro", "ddro_stabilized", "kto", "bco", "dpo", "sft")
_UNPAIRED = ("rdro_pooled", "rdro_per_class", "ddro", "ddro_stabilized", "kto", "bco", "sft")
FEATURES = ("linear", "quadratic")


# ---------------------------------------------------------------------------
# data as cell counts
# ---------------------------------------------------------------------------


@dataclass
class UnpairedCounts:
    """Unpaired rows of a toy world as counts per cell: ``pos[x, y]`` preferred rows, ``neg[x, y]``
    non-preferred rows, and ``mismatched[x, y]`` counts of KTO's mismatched (prompt, completion)
    pairs (x_j, y_{j+1}) — the batch's completions shifted by one. Counts may be expected counts
    (non-integer) for population fits of the objective-based methods."""

    pos: np.ndarray
    neg: np.ndarray
    mismatched: np.ndarray | None = None

    @classmethod
    def from_rows(cls, world: ToyLanguageWorld, X, preferred) -> UnpairedCounts:
        """Aggregate rows ``X`` [n, 2] (prompt, response) with labels ``preferred`` [n]."""
        X = world._check_X(X)
        preferred = np.asarray(preferred, dtype=bool)
        if preferred.shape != (len(X),):
            raise ValueError(f"preferred must have shape [{len(X)}], got {preferred.shape}")
        shape = (world.n_prompts, world.n_responses)
        pos = np.zeros(shape)
        neg = np.zeros(shape)
        np.add.at(pos, (X[preferred, 0], X[preferred, 1]), 1.0)
        np.add.at(neg, (X[~preferred, 0], X[~preferred, 1]), 1.0)
        mis = np.zeros(shape)
        np.add.at(mis, (X[:, 0], np.roll(X[:, 1], -1)), 1.0)
        return cls(pos, neg, mis)

    @classmethod
    def population(cls, world: ToyLanguageWorld, preferred_fraction: float | None = None) -> UnpairedCounts:
        """Expected cell weights of the population. Default: on-policy rows (x ~ ρ, y ~ π_ref,
        label ~ Bernoulli(h)), i.e. pos = ρ π_ref h, neg = ρ π_ref (1 − h). With
        ``preferred_fraction`` π+: stratified rows, pos = π+ ρ p+, neg = (1 − π+) ρ p−."""
        if preferred_fraction is None:
            pos, neg = world.cell_probabilities()
        else:
            pi = float(preferred_fraction)
            if not 0.0 < pi < 1.0:
                raise ValueError(f"preferred_fraction must lie in (0, 1), got {preferred_fraction!r}")
            pos = pi * np.exp(world.logp_pos_table) / world.n_prompts
            neg = (1.0 - pi) * np.exp(world.logp_neg_table) / world.n_prompts
        # mismatched pairs (x_j, y_k), k ≠ j: x ~ ρ and y from the marginal of all rows' responses
        marginal = (pos + neg).sum(axis=0)
        mismatched = np.outer(np.full(world.n_prompts, 1.0 / world.n_prompts), marginal / marginal.sum())
        return cls(pos, neg, mismatched)


@dataclass
class PairCounts:
    """Preference pairs of a toy world as counts ``counts[x, chosen, rejected]`` (or expected counts)."""

    counts: np.ndarray

    @classmethod
    def from_pairs(cls, world: ToyLanguageWorld, pairs) -> PairCounts:
        """Aggregate pairs [n, 3] of (prompt, chosen, rejected)."""
        pairs = np.asarray(pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 3:
            raise ValueError(f"pairs must have shape [n, 3] (prompt, chosen, rejected), got {pairs.shape}")
        counts = np.zeros((world.n_prompts, world.n_responses, world.n_responses))
        np.add.at(counts, (pairs[:, 0], pairs[:, 1], pairs[:, 2]), 1.0)
        return cls(counts)

    @classmethod
    def population(cls, world: ToyLanguageWorld) -> PairCounts:
        """The population pair distribution ρ(x) π_ref(y|x) π_ref(y'|x) P(y ≻ y' | x)."""
        return cls(world.pair_distribution())


# ---------------------------------------------------------------------------
# tabular policy
# ---------------------------------------------------------------------------


@dataclass
class PolicyFit:
    """A fitted tabular policy: ``log_policy`` [P, M] = log π_θ(y|x), its distances to p+
    (:func:`policy_distances`), the final objective and optimiser diagnostics. ``diverged`` is
    True when the fit ended with a non-finite loss or policy (raw DDRO crossing t = log(1/μ));
    ``note`` then says why."""

    method: str
    log_policy: np.ndarray
    distances: dict
    final_loss: float
    iterations: int
    diverged: bool
    note: str = ""


def policy_distances(world: ToyLanguageWorld, log_policy: np.ndarray) -> dict:
    """Exact distances between π_θ and p+ by enumeration, averaged over prompts x ~ ρ:

    - ``kl_pos_policy``  = E_x KL(p+ ‖ π_θ) = E_x Σ_y p+ (log p+ − log π_θ);
    - ``kl_policy_pos``  = E_x KL(π_θ ‖ p+);
    - ``tv``             = E_x ½ Σ_y |π_θ − p+|;
    - ``rmse_logratio``  = (E_x E_{q_α}[(t_θ − log r_α)²])^{1/2}, with q_α = π_ref and
      t_θ = log π_θ − log π_ref (the error of the fitted log-ratio against the truth).
    """
    lp = np.asarray(log_policy, dtype=float)
    if lp.shape != world.logp_ref.shape:
        raise ValueError(f"log_policy must have shape {world.logp_ref.shape}, got {lp.shape}")
    if not np.all(np.isfinite(lp)):
        nan = float("nan")
        return {"kl_pos_policy": nan, "kl_policy_pos": nan, "tv": nan, "rmse_logratio": nan}
    lpos = world.logp_pos_table
    ppos, pol, ref = np.exp(lpos), np.exp(lp), np.exp(world.logp_ref)
    t_err = (lp - world.logp_ref) - world.log_relative_ratio_table()
    return {
        "kl_pos_policy": float(np.mean(np.sum(ppos * (lpos - lp), axis=1))),
        "kl_policy_pos": float(np.mean(np.sum(pol * (lp - lpos), axis=1))),
        "tv": float(np.mean(0.5 * np.sum(np.abs(pol - ppos), axis=1))),
        "rmse_logratio": float(np.sqrt(np.mean(np.sum(ref * t_err**2, axis=1)))),
    }


def _weighted(per_row: torch.Tensor, preferred: torch.Tensor, w: torch.Tensor, reduction: str) -> torch.Tensor:
    """Count-weighted form of the core reductions (equal to them on the expanded rows)."""
    if reduction == "pooled":
        return (w * per_row).sum() / w.sum()
    pos = (w * per_row)[preferred].sum() / w[preferred].sum()
    neg = (w * per_row)[~preferred].sum() / w[~preferred].sum()
    return pos + neg


def _cells(counts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    flat = counts.reshape(-1)
    idx = np.flatnonzero(flat > 0)
    return torch.as_tensor(idx), torch.as_tensor(flat[idx], dtype=torch.float64)


def _expanded(counts: np.ndarray, name: str) -> torch.Tensor:
    flat = counts.reshape(-1)
    if not np.allclose(flat, np.round(flat)):
        raise ValueError(f"{name} must hold integer counts for this method (a sample, not population weights)")
    return torch.as_tensor(np.repeat(np.arange(flat.size), np.round(flat).astype(np.int64)))


@contextlib.contextmanager
def _one_torch_thread():
    """The toy problems have ≤ a few thousand parameters: intra-op threads only add contention."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _is_sample(data) -> bool:
    arrays = [data.counts] if isinstance(data, PairCounts) else [data.pos, data.neg]
    return all(np.allclose(a, np.round(a)) and a.sum() >= 1 for a in arrays)


def _lbfgs(params: torch.Tensor, objective, max_iter: int) -> tuple[float, int]:
    opt = torch.optim.LBFGS(
        [params],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-16,
        history_size=30,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        final = float(objective())
    return final, int(opt.state[opt._params[0]].get("n_iter", 0))


def fit_policy(world: ToyLanguageWorld, data, method: str, **options) -> PolicyFit:
    """Fit π_θ = softmax(θ) over the toy world's responses with one core loss, from θ = log π_ref (t = 0).

    ``method`` (t = log π_θ − log π_ref per cell; ``data`` an :class:`UnpairedCounts` except DPO):

    - ``"rdro_per_class"`` / ``"rdro_pooled"``: :func:`rdro.losses.rdro_loss` with α = ``alpha``
      (default: the world's α); the per-class optimum is π_ref r_α = p+ when π_ref = q_α.
    - ``"ddro"`` / ``"ddro_stabilized"``: :func:`rdro.losses.ddro_loss` [reconstructed], μ = α,
      ``divergence``, raw or clipped at t ≤ log(1/μ) − ``clip_margin``.
    - ``"kto"``: :func:`rdro.losses.kto_loss` (β = ``beta``, default 0.1), z0 =
      :func:`rdro.losses.kto_reference_point` of t on the mismatched pairs; Adam.
    - ``"bco"``: :func:`rdro.losses.bco_loss` (β default 0.1) with a running reward mean kept
      across the Adam steps.
    - ``"sft"``: :func:`rdro.losses.sft_loss` on the preferred rows (MLE of p+).
    - ``"dpo"``: :func:`rdro.losses.dpo_loss` on ``data`` = :class:`PairCounts`, β default 1
      (with β = 1 the Bradley–Terry world's DPO optimum is exactly p+, see the world's docstring).

    ``options``: ``alpha``, ``beta``, ``divergence``, ``clip_margin``, ``max_iter``, ``adam_steps``,
    ``adam_lr``. ``max_iter``: L-BFGS iterations (default 150 for samples, 400 for population weights).
    """
    with _one_torch_thread():
        return _fit_policy(world, data, method, **options)


def _fit_policy(
    world: ToyLanguageWorld,
    data,
    method: str,
    alpha: float | None = None,
    beta: float | None = None,
    divergence: str = "logistic",
    clip_margin: float = 1e-2,
    max_iter: int | None = None,
    adam_steps: int = 1500,
    adam_lr: float = 0.05,
) -> PolicyFit:
    """The body of :func:`fit_policy`."""
    if not isinstance(world, ToyLanguageWorld):
        raise TypeError(f"world must be a ToyLanguageWorld, got {type(world).__name__}")
    if method not in POLICY_METHODS:
        raise ValueError(f"method must be one of {POLICY_METHODS}, got {method!r}")
    if method == "dpo" and not isinstance(data, PairCounts):
        raise TypeError(f"method 'dpo' needs PairCounts data, got {type(data).__name__}")
    if method in _UNPAIRED and not isinstance(data, UnpairedCounts):
        raise TypeError(f"method {method!r} needs UnpairedCounts data, got {type(data).__name__}")
    a = world.alpha if alpha is None else float(alpha)
    if max_iter is None:  # population fits are checked to 1e-8 in KL; sample fits only need to beat their noise
        max_iter = 150 if _is_sample(data) else 400
    logp_ref = torch.as_tensor(world.logp_ref, dtype=torch.float64)
    theta = logp_ref.clone().requires_grad_(True)

    def t_flat() -> torch.Tensor:
        return (torch.log_softmax(theta, dim=1) - logp_ref).reshape(-1)

    if method in ("rdro_pooled", "rdro_per_class", "ddro", "ddro_stabilized"):
        idx_p, w_p = _cells(data.pos)
        idx_n, w_n = _cells(data.neg)
        idx = torch.cat([idx_p, idx_n])
        w = torch.cat([w_p, w_n])
        preferred = torch.cat([torch.ones(len(idx_p), dtype=torch.bool), torch.zeros(len(idx_n), dtype=torch.bool)])

        def objective():
            t = t_flat()[idx]
            if method.startswith("rdro"):
                reduction = method.split("_", 1)[1]
                return _weighted(losses.rdro_loss(t, preferred, a, reduction="none"), preferred, w, reduction)
            per_row = losses.ddro_loss(
                t,
                preferred,
                a,
                divergence,
                stabilize=method == "ddro_stabilized",
                clip_margin=clip_margin,
                reduction="none",
            )
            return _weighted(per_row, preferred, w, "per_class")

    elif method == "dpo":
        cell, w = _cells(data.counts)
        M = world.n_responses
        x, rest = cell // (M * M), cell % (M * M)
        chosen, rejected = x * M + rest // M, x * M + rest % M
        b = 1.0 if beta is None else beta

        def objective():
            t = t_flat()
            return (w * losses.dpo_loss(t[chosen], t[rejected], b, reduction="none")).sum() / w.sum()

    elif method == "sft":
        rows = _expanded(data.pos, "data.pos")
        preferred = torch.ones(len(rows), dtype=torch.bool)

        def objective():
            return losses.sft_loss(torch.log_softmax(theta, dim=1).reshape(-1)[rows], preferred)

    else:  # kto, bco: full-batch Adam (their z0 / δ are detached statistics, not part of an objective)
        idx_p, w_p = _cells(data.pos)
        idx_n, w_n = _cells(data.neg)
        idx = torch.cat([idx_p, idx_n])
        w = torch.cat([w_p, w_n])
        preferred = torch.cat([torch.ones(len(idx_p), dtype=torch.bool), torch.zeros(len(idx_n), dtype=torch.bool)])
        b = 0.1 if beta is None else beta
        if method == "kto":
            if data.mismatched is None:
                raise ValueError("data.mismatched is needed for KTO's reference point z0")
            idx_m, w_m = _cells(data.mismatched)
        else:
            rows = torch.cat([_expanded(data.pos, "data.pos"), _expanded(data.neg, "data.neg")])
            row_pref = torch.cat(
                [
                    torch.ones(int(round(data.pos.sum())), dtype=torch.bool),
                    torch.zeros(int(round(data.neg.sum())), dtype=torch.bool),
                ]
            )
        running = losses.RewardRunningMean()
        opt = torch.optim.Adam([theta], lr=adam_lr)
        final = float("nan")
        for _ in range(adam_steps):
            opt.zero_grad()
            t = t_flat()
            if method == "kto":
                # z0 = max(0, mean over mismatched pairs of t), the count-weighted mean passed as one value
                z0 = losses.kto_reference_point(((w_m * t[idx_m]).sum() / w_m.sum()).reshape(1))
                loss = _weighted(
                    losses.kto_loss(t[idx], preferred, z0, beta=b, reduction="none"), preferred, w, "pooled"
                )
            else:  # BCO's running mean must see every row's reward: expanded rows
                loss = losses.bco_loss(t[rows], row_pref, running, beta=b)
            loss.backward()
            opt.step()
            final = float(loss.detach())
        lp = torch.log_softmax(theta.detach(), dim=1).numpy()
        return PolicyFit(method, lp, policy_distances(world, lp), final, adam_steps, not math.isfinite(final))

    try:
        final, n_iter = _lbfgs(theta, objective, max_iter)
    except ValueError as exc:  # raw DDRO: a step crossed t = log(1/μ), the loss became NaN
        if method != "ddro":
            raise
        nan = np.full(world.logp_ref.shape, np.nan)
        return PolicyFit(method, nan, policy_distances(world, nan), float("nan"), -1, True, str(exc))
    lp = torch.log_softmax(theta.detach(), dim=1).numpy()
    diverged = not (math.isfinite(final) and np.all(np.isfinite(lp)))
    return PolicyFit(method, lp, policy_distances(world, lp), final, n_iter, diverged)


# ---------------------------------------------------------------------------
# continuous: linked linear model of log r_α
# ---------------------------------------------------------------------------


def _features(X: np.ndarray, features: str) -> np.ndarray:
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must have shape [n, d], got {X.shape}")
    return X if features == "linear" else np.concatenate([X, np.sum(X**2, axis=1, keepdims=True)], axis=1)


@dataclass
class RelativeLogitFit:
    """A fitted linked model t(x) = s(x) − log(α e^{s(x)} + 1 − α), s(x) = wᵀφ(x) + b."""

    weights: np.ndarray
    bias: float
    alpha: float
    features: str
    final_loss: float
    iterations: int

    def log_ratio(self, X) -> np.ndarray:
        """t̂(X), the fitted estimate of log r_α (≤ log(1/α))."""
        s = _features(X, self.features) @ self.weights + self.bias
        return ratios.log_relative_ratio(s, np.zeros_like(s), self.alpha)


def fit_relative_logit_model(
    X, preferred, alpha: float, reduction: str = "per_class", features: str = "linear", max_iter: int = 200
) -> RelativeLogitFit:
    """See :func:`_fit_relative_logit_model` (run with one torch thread)."""
    with _one_torch_thread():
        return _fit_relative_logit_model(X, preferred, alpha, reduction, features, max_iter)


def _fit_relative_logit_model(
    X, preferred, alpha: float, reduction: str = "per_class", features: str = "linear", max_iter: int = 200
) -> RelativeLogitFit:
    """Minimise the core RDRO loss :func:`rdro.losses.rdro_loss` over the linked model
    t_θ(x) = log r_α-link(s_θ(x)) = s_θ(x) − log(α e^{s_θ(x)} + 1 − α), s_θ = wᵀφ(x) + b.

    Per-class: the minimiser over all t is log r_α, which lies in the model when log g is
    linear in φ; pooled with preferred fraction π+: log of :func:`rdro.ratios.pooled_rdro_target`,
    which is again the link of a linear log-odds (shifted by log(π+/(1 − π+))). float64, L-BFGS.
    """
    phi = torch.as_tensor(_features(X, features), dtype=torch.float64)
    pref = torch.as_tensor(np.asarray(preferred, dtype=bool))
    if pref.shape != (phi.shape[0],):
        raise ValueError(f"preferred must have shape [{phi.shape[0]}], got {tuple(pref.shape)}")
    a = float(alpha)
    params = torch.zeros(phi.shape[1] + 1, dtype=torch.float64, requires_grad=True)

    def objective():
        s = phi @ params[:-1] + params[-1]
        t = ratios.log_relative_ratio(s, torch.zeros_like(s), a)
        return losses.rdro_loss(t, pref, a, reduction=reduction)

    final, n_iter = _lbfgs(params, objective, max_iter)
    p = params.detach().numpy()
    return RelativeLogitFit(p[:-1].copy(), float(p[-1]), a, features, final, n_iter)
