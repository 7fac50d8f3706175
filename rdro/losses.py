"""Alignment losses on per-sequence log-ratios — the one implementation of each objective.

Every objective here is written on the sequence log-ratio

    t = log π_θ(y|x) − log π_ref(y|x)          (tensor ``logratio``, shape [B])

(the *sum* over completion tokens, no β, no length normalisation) and, for the
unpaired losses, a boolean tensor ``preferred`` [B] (True for a preferred row,
False for a non-preferred one). The toy simulations and the LLM trainer call
these same functions. DDRO's Bregman loss [reconstructed] is also available on
log g directly (``bregman_ratio_loss``, used by ``ddro_loss`` after its model
``ddro_log_ratio`` and by the plain-ratio estimator ``rdro.estimators.BregmanRatio``),
with its gradient in t in closed form (``ddro_log_abs_grad``), exact where t
itself has rounded to the pole.

Numerics: every loss is computed in float32 (or float64 when given float64)
through softplus / log-sigmoid forms, so values and gradients stay finite for
|t| up to 1e4 in fp16, bf16 and fp32. The returned loss has that computation
dtype; gradients flow back to ``logratio`` in its own dtype.

Notation follows ``shared/method.md``: p+ / p− the preferred / non-preferred
response distributions, q_α = α p+ + (1 − α) p−, r_α = p+ / q_α ∈ [0, 1/α],
g = p+ / p−.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F

from rdro.ratios import check_fraction

__all__ = [
    "REDUCTIONS",
    "DIVERGENCES",
    "preferred_fraction",
    "rdro_loss",
    "rdro_loss_grad",
    "ddro_loss",
    "ddro_log_ratio",
    "ddro_log_abs_grad",
    "bregman_ratio_loss",
    "kto_loss",
    "kto_reference_point",
    "bco_loss",
    "RewardRunningMean",
    "dpo_loss",
    "sft_loss",
]

REDUCTIONS = ("pooled", "per_class", "none")
DIVERGENCES = ("logistic", "lsif", "kliep")

AlphaLike = Union[float, str]


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_logratio(logratio, name: str = "logratio") -> torch.Tensor:
    if not isinstance(logratio, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B], got {type(logratio).__name__}")
    if not logratio.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {logratio.dtype}")
    if logratio.dim() != 1:
        raise ValueError(f"{name} must have shape [B] (one value per sequence), got shape {tuple(logratio.shape)}")
    if logratio.numel() == 0:
        raise ValueError(f"{name} is empty: a batch needs at least one row")
    finite = torch.isfinite(logratio.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{name} contains {bad} NaN/Inf value(s); log-ratios must be finite "
            "(check the log-probs of the policy and the reference)"
        )
    return logratio


def _check_preferred(preferred, logratio: torch.Tensor) -> torch.Tensor:
    if not isinstance(preferred, torch.Tensor) or preferred.dtype != torch.bool:
        got = preferred.dtype if isinstance(preferred, torch.Tensor) else type(preferred).__name__
        raise ValueError(f"preferred must be a boolean torch.Tensor (True = preferred row), got {got}")
    if preferred.shape != logratio.shape:
        raise ValueError(
            f"preferred must have the same shape as logratio {tuple(logratio.shape)}, got {tuple(preferred.shape)}"
        )
    return preferred.to(logratio.device)


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _softplus(t: torch.Tensor) -> torch.Tensor:
    """softplus(t) = log(1 + e^t), exact for every t in the computation dtype: −log σ(−t), which torch
    evaluates as max(t, 0) + log1p(e^−|t|) (``F.softplus`` instead returns t itself beyond t = 20,
    off by e^−20 ≈ 2e-9 in float64); its derivative is σ(t), also without the cut."""
    return -F.logsigmoid(-t)


def _check_positive(value, name: str) -> float:
    v = float(value)
    if not (v > 0.0) or math.isinf(v):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def preferred_fraction(labels) -> float:
    """Fraction of preferred rows, the paper's choice of α.

    ``labels``: a boolean tensor, array or sequence (True = preferred). The RDRO
    paper sets α to this fraction over the *training set* (0.39 for UF-G, 0.5 for
    MIX-14K); compute it once on the dataset and pass it as ``alpha`` rather than
    relying on per-batch estimates.

    Raises ``ValueError`` when ``labels`` is empty, not boolean, or holds one
    class only (α would be 0 or 1, outside (0, 1)).
    """
    if isinstance(labels, torch.Tensor):
        if labels.dtype != torch.bool:
            raise ValueError(f"labels must be boolean (True = preferred), got dtype {labels.dtype}")
        n, k = labels.numel(), int(labels.sum())
    elif hasattr(labels, "dtype") and hasattr(labels, "shape"):  # numpy / pandas / arrow arrays
        if getattr(labels.dtype, "kind", None) != "b":
            raise ValueError(f"labels must be boolean (True = preferred), got dtype {labels.dtype}")
        n, k = int(labels.size), int(labels.sum())
    else:
        values = list(labels)
        if not all(isinstance(v, bool) for v in values):
            raise ValueError("labels must all be booleans (True = preferred, False = non-preferred)")
        n, k = len(values), sum(bool(v) for v in values)
    if n == 0:
        raise ValueError("labels is empty: cannot compute the preferred fraction")
    if k == 0 or k == n:
        which = "non-preferred" if k == 0 else "preferred"
        raise ValueError(
            f"labels hold only {which} rows ({n} of {n}); α = preferred fraction must lie in (0, 1), "
            "so the data need both classes"
        )
    return k / n


def _resolve_fraction(value: AlphaLike, preferred: torch.Tensor, name: str) -> float:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name} must be a number in (0, 1) or 'auto', got {value!r}")
        return preferred_fraction(preferred)
    return check_fraction(value, name)


def _reduce(
    per_row: torch.Tensor, preferred: torch.Tensor, reduction: str, dataset_preferred_fraction=None
) -> torch.Tensor:
    """``pooled``: mean over all rows; ``per_class``: mean over preferred rows + mean over
    non-preferred rows (the *sum* of the two class means); ``none``: per-row values.

    ``per_class`` with ``dataset_preferred_fraction`` π+ (the class balance of the data the batch is
    drawn from) weights preferred rows by 1/(π+ B) and non-preferred rows by 1/((1 − π+) B): an
    unbiased estimate of the same sum of class means that also works for batches holding one class
    only (small micro-batches). With ``pooled`` or ``none`` it would have no effect: ValueError."""
    if dataset_preferred_fraction is not None and reduction != "per_class":
        raise ValueError(
            f"dataset_preferred_fraction applies to reduction='per_class' only (it weights the two class "
            f"means), got it with reduction={reduction!r}; pass None"
        )
    if reduction == "none":
        return per_row
    if reduction == "pooled":
        return per_row.mean()
    if dataset_preferred_fraction is not None:
        pi = check_fraction(dataset_preferred_fraction, "dataset_preferred_fraction")
        b = preferred.numel()
        zero = torch.zeros((), dtype=per_row.dtype, device=per_row.device)
        pos = torch.where(preferred, per_row, zero).sum() / (pi * b)
        return pos + torch.where(preferred, zero, per_row).sum() / ((1.0 - pi) * b)
    n_pos = int(preferred.sum())
    n_neg = preferred.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        empty = "preferred" if n_pos == 0 else "non-preferred"
        raise ValueError(
            f"reduction='per_class' needs both classes in the batch, but it has no {empty} rows "
            f"(batch size {preferred.numel()}); use reduction='pooled' or larger / stratified batches"
        )
    zero = torch.zeros((), dtype=per_row.dtype, device=per_row.device)
    return torch.where(preferred, per_row, zero).sum() / n_pos + torch.where(preferred, zero, per_row).sum() / n_neg


# ---------------------------------------------------------------------------
# RDRO
# ---------------------------------------------------------------------------


def rdro_loss(
    logratio: torch.Tensor,
    preferred: torch.Tensor,
    alpha: AlphaLike,
    reduction: str = "pooled",
    dataset_preferred_fraction=None,
):
    """RDRO: logistic fit of the relative density ratio r_α = p+ / (α p+ + (1 − α) p−).

    Per row, with softplus(t) = log(1 + e^t)  [paper, authors' code]::

        preferred:      ℓ+(t) = (1 + α) · softplus(t) − t  =  softplus(−t) + α · softplus(t)
        non-preferred:  ℓ−(t) = (1 − α) · softplus(t)

    (the right-hand form of ℓ+ is the same function without the cancellation.)

    Reductions:
      - ``"pooled"`` (default, as the authors' code): mean of ℓ over all B rows.
        With a preferred fraction π+ in the data its pointwise minimiser is
        e^t = π+ p+ / (α π+ p+ + (1 − α)(1 − π+) p−), equal to r_α only when π+ = ½.
      - ``"per_class"``: the **sum** of the two class means,
        mean_{preferred}(ℓ+) + mean_{non-preferred}(ℓ−), an unbiased estimate of
        L = E_{p+}[softplus(−t)] + E_{q_α}[softplus(t)], whose pointwise minimiser
        is e^t = r_α for any class balance. Needs both classes in the batch, unless
        ``dataset_preferred_fraction`` π+ is given: then rows are weighted 1/(π+ B) and
        1/((1 − π+) B), an unbiased estimate of the same L for any batch (see ``_reduce``).
      - ``"none"``: the per-row values ℓ, shape [B].

    ``alpha``: a number in (0, 1), or ``"auto"`` for the batch's preferred fraction
    (prefer passing the dataset's fraction, see :func:`preferred_fraction`).

    Gradients: dℓ+/dt = (1 + α)σ(t) − 1 ∈ [−1, α], dℓ−/dt = (1 − α)σ(t) ∈ [0, 1 − α].
    """
    _check_logratio(logratio)
    preferred = _check_preferred(preferred, logratio)
    reduction = _check_reduction(reduction)
    a = _resolve_fraction(alpha, preferred, "alpha")
    t = logratio.to(_compute_dtype(logratio))
    sp_pos = _softplus(t)
    sp_neg = _softplus(-t)
    per_row = torch.where(preferred, sp_neg + a * sp_pos, (1.0 - a) * sp_pos)
    return _reduce(per_row, preferred, reduction, dataset_preferred_fraction)


def rdro_loss_grad(logratio: torch.Tensor, preferred: torch.Tensor, alpha: AlphaLike) -> torch.Tensor:
    """Closed-form per-row derivative dℓ/dt of :func:`rdro_loss` (before reduction)::

    preferred:      (1 + α) σ(t) − 1   ∈ [−1, α]
    non-preferred:  (1 − α) σ(t)       ∈ [0, 1 − α]
    """
    _check_logratio(logratio)
    preferred = _check_preferred(preferred, logratio)
    a = _resolve_fraction(alpha, preferred, "alpha")
    s = torch.sigmoid(logratio.to(_compute_dtype(logratio)))
    return torch.where(preferred, (1.0 + a) * s - 1.0, (1.0 - a) * s)


# ---------------------------------------------------------------------------
# DDRO [reconstructed]
# ---------------------------------------------------------------------------


def ddro_log_ratio(logratio: torch.Tensor, mu: float) -> torch.Tensor:
    """log g_θ for DDRO's ordinary-ratio model [reconstructed]::

        g_θ = (1 − μ) e^t / (1 − μ e^t),   log g_θ = log(1 − μ) + t − log(1 − μ e^t)

    obtained by reading π_ref = μ p+ + (1 − μ) p− with π_θ standing for p+ (the inverse of
    t = log r_μ(g)). It diverges as e^t → 1/μ: +∞ at t = log(1/μ) (computed as −log μ) and NaN
    beyond, where the model is undefined. ``mu`` must lie in (0, 1) (ValueError naming it otherwise).
    """
    mu = check_fraction(mu, "mu")
    u = logratio + math.log(mu)  # log(μ e^t); must be < 0
    return math.log1p(-mu) + logratio - torch.log(-torch.expm1(u))


def _bregman_rows(log_g: torch.Tensor, preferred: torch.Tensor, divergence: str) -> torch.Tensor:
    """Per-row Bregman loss of :func:`bregman_ratio_loss` as a function of s = log g (no checks).

    Each class's branch sees only its own rows' s (0 elsewhere), so an overflowing e^s in the branch
    a row does not use cannot turn its gradient into 0 · ∞ = NaN."""
    zero = torch.zeros((), dtype=log_g.dtype, device=log_g.device)
    s_pos, s_neg = torch.where(preferred, log_g, zero), torch.where(preferred, zero, log_g)
    if divergence == "logistic":
        return torch.where(preferred, _softplus(-s_pos), _softplus(s_neg))
    if divergence == "lsif":  # 1 − g and (g² − 1)/2 (through exp, not expm1, so the gradients are exact)
        return torch.where(preferred, 1.0 - torch.exp(s_pos), 0.5 * (torch.exp(2.0 * s_neg) - 1.0))
    return torch.where(preferred, -s_pos, torch.exp(s_neg))  # kliep: −log g and g


def _check_divergence(divergence: str) -> str:
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    return divergence


def bregman_ratio_loss(
    log_g: torch.Tensor,
    preferred: torch.Tensor,
    divergence: str = "logistic",
    reduction: str = "per_class",
    dataset_preferred_fraction=None,
):
    """The Bregman density-ratio loss on s = log g, a model of the ordinary ratio g = p+/p− — DDRO's
    loss in the **[reconstructed]** form of shared/method.md §3 (:func:`ddro_loss` is this loss after
    its model ``ddro_log_ratio``). With f strictly convex::

        L_f(g) = E_{p−}[ f'(g) g − f(g) ] − E_{p+}[ f'(g) ]

    whose pointwise minimiser is g = p+/p−. Per row (preferred: −f'(g); non-preferred:
    f'(g) g − f(g)), for ``divergence``:

      - ``"logistic"``: f(u) = u log u − (1 + u) log(1 + u):
        preferred softplus(−s), non-preferred softplus(s);
      - ``"lsif"``: f(u) = (u − 1)²/2: preferred −(g − 1), non-preferred (g² − 1)/2;
      - ``"kliep"``: f(u) = u log u − u: preferred −s, non-preferred g.

    Every term is evaluated from s directly (g = e^s), so it is exact for any finite s (g² of LSIF
    overflows beyond s ≈ 354 in float64, 44 in float32). ``reduction``: ``"per_class"`` (default:
    the sum of the two class means, the sample version of L_f; with ``dataset_preferred_fraction``
    the reweighted form of :func:`rdro_loss`), ``"pooled"`` (mean over rows) or ``"none"``.
    """
    _check_logratio(log_g, "log_g")
    preferred = _check_preferred(preferred, log_g)
    reduction = _check_reduction(reduction)
    rows = _bregman_rows(log_g.to(_compute_dtype(log_g)), preferred, _check_divergence(divergence))
    return _reduce(rows, preferred, reduction, dataset_preferred_fraction)


def ddro_loss(
    logratio: torch.Tensor,
    preferred: torch.Tensor,
    mu: AlphaLike,
    divergence: str = "logistic",
    stabilize: bool = False,
    clip_margin: float = 1e-2,
    reduction: str = "per_class",
    dataset_preferred_fraction=None,
):
    """DDRO's Bregman density-ratio loss on the ordinary ratio g = p+/p− — a **[reconstructed]**
    form (see shared/method.md §3); it does not claim fidelity to the DDRO paper.

    Model: g_θ = (1 − μ) e^t / (1 − μ e^t) (:func:`ddro_log_ratio`); loss:
    :func:`bregman_ratio_loss` of log g_θ, L_f(g) = E_{p−}[f'(g) g − f(g)] − E_{p+}[f'(g)], per row
    (preferred / non-preferred) for ``divergence``: ``"logistic"`` softplus(−log g) / softplus(log g);
    ``"lsif"`` −(g − 1) / (g² − 1)/2; ``"kliep"`` −log g / g. Its pointwise minimiser is
    g = p+/p−, i.e. e^t = r_μ.

    ``stabilize=False`` is the raw form: values and gradients grow without bound as
    e^t → 1/μ; at t = log(1/μ) exactly log g = +∞ and a row's loss is ±∞ (0 for a preferred
    logistic row), and rows with t > log(1/μ) give NaN (the model is undefined there).
    ``stabilize=True`` is the heuristic stabiliser reconstructed as clipping
    t ≤ log(1/μ) − ``clip_margin`` (zero gradient above the clip).

    ``reduction``: ``"per_class"`` (default), ``"pooled"`` or ``"none"``, with
    ``dataset_preferred_fraction`` as in :func:`bregman_ratio_loss`.
    ``mu``: the mixture weight of p+ in π_ref, in (0, 1), or ``"auto"``.
    """
    _check_logratio(logratio)
    preferred = _check_preferred(preferred, logratio)
    reduction = _check_reduction(reduction)
    divergence = _check_divergence(divergence)
    m = _resolve_fraction(mu, preferred, "mu")
    t = logratio.to(_compute_dtype(logratio))
    if stabilize:
        margin = _check_positive(clip_margin, "clip_margin")
        t = torch.clamp(t, max=-math.log(m) - margin)
    rows = _bregman_rows(ddro_log_ratio(t, m), preferred, divergence)
    return _reduce(rows, preferred, reduction, dataset_preferred_fraction)


def ddro_log_abs_grad(log_g: torch.Tensor, preferred: torch.Tensor, mu: AlphaLike, divergence: str = "logistic"):
    """log |dℓ/dt| per row of the raw :func:`ddro_loss` [reconstructed], in closed form from s = log g_θ(t)::

        dℓ/dt = dℓ/ds · ds/dt,    ds/dt = 1/(1 − μ e^t) = 1 + μ g/(1 − μ)

        log |dℓ/ds|:  logistic  preferred log σ(−s),  non-preferred log σ(s)
                      lsif      preferred s,          non-preferred 2s
                      kliep     preferred 0,          non-preferred s

    (dℓ/dt < 0 for preferred rows, > 0 for non-preferred ones). Written on log g because near the
    pole t = log r_μ(g) = log(1/μ) − O(1/g) carries no digits of 1 − μ e^t once log g ≳ 35 in
    float64, so differentiating the loss at t gives artefacts there; from s the result is accurate
    for every finite s. It is a logarithm because |dℓ/dt| itself (≈ e^{2s} for LSIF) overflows.
    ``mu`` in (0, 1) or ``"auto"``; ``log_g`` [B] finite, ``preferred`` [B] boolean.
    """
    _check_logratio(log_g, "log_g")
    preferred = _check_preferred(preferred, log_g)
    divergence = _check_divergence(divergence)
    m = _resolve_fraction(mu, preferred, "mu")
    s = log_g.to(_compute_dtype(log_g))
    log_ds_dt = _softplus(s + math.log(m / (1.0 - m)))  # log(1 + μ g/(1 − μ))
    if divergence == "logistic":
        log_dl_ds = torch.where(preferred, F.logsigmoid(-s), F.logsigmoid(s))
    elif divergence == "lsif":
        log_dl_ds = torch.where(preferred, s, 2.0 * s)
    else:  # kliep
        log_dl_ds = torch.where(preferred, torch.zeros_like(s), s)
    return log_dl_ds + log_ds_dt


# ---------------------------------------------------------------------------
# KTO, BCO, DPO, SFT
# ---------------------------------------------------------------------------


def kto_reference_point(mismatched_logratio: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0: a detached batch estimate of KL(π_θ ‖ π_ref),

        z0 = max(0, mean_j t(x_j, y_{k(j)}))

    over mismatched (prompt, completion) pairs; clamped at 0, no gradient. Under
    data parallelism, average the mean across processes before calling this.
    """
    _check_logratio(mismatched_logratio, "mismatched_logratio")
    return mismatched_logratio.detach().to(_compute_dtype(mismatched_logratio)).mean().clamp(min=0.0)


def kto_loss(
    logratio: torch.Tensor,
    preferred: torch.Tensor,
    reference_point,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reduction: str = "pooled",
):
    """KTO (Ethayarajh et al. 2024, as in TRL) per row::

        preferred:      λ_D · (1 − σ(β (t − z0)))
        non-preferred:  λ_U · (1 − σ(β (z0 − t)))

    ``reference_point`` z0: a scalar (float or 0-d tensor), detached here and clamped
    at 0 — see :func:`kto_reference_point`. ``desirable_weight`` = λ_D,
    ``undesirable_weight`` = λ_U. ``reduction`` as in :func:`rdro_loss`
    (TRL averages over the pooled batch).
    """
    _check_logratio(logratio)
    preferred = _check_preferred(preferred, logratio)
    reduction = _check_reduction(reduction)
    b = _check_positive(beta, "beta")
    lam_d = _check_positive(desirable_weight, "desirable_weight")
    lam_u = _check_positive(undesirable_weight, "undesirable_weight")
    dtype = _compute_dtype(logratio)
    z0 = torch.as_tensor(reference_point, dtype=dtype, device=logratio.device).detach()
    if z0.numel() != 1 or not bool(torch.isfinite(z0).all()):
        raise ValueError(f"reference_point must be a finite scalar, got {reference_point!r}")
    z0 = z0.reshape(()).clamp(min=0.0)
    t = logratio.to(dtype)
    # 1 − σ(x) = σ(−x)
    per_row = torch.where(preferred, lam_d * torch.sigmoid(-b * (t - z0)), lam_u * torch.sigmoid(-b * (z0 - t)))
    return _reduce(per_row, preferred, reduction)


@dataclass
class RewardRunningMean:
    """BCO's reward shift δ: the running mean of all rewards β·t seen so far.

    ``update(rewards)`` folds a batch in (Chan et al. parallel mean), ``mean`` is δ.
    Its state is a plain dict (``state_dict`` / ``load_state_dict``) so a trainer can
    checkpoint it with the rest.
    """

    mean: float = 0.0
    count: int = 0

    def update(self, rewards: torch.Tensor) -> float:
        r = rewards.detach().double().reshape(-1)
        if r.numel() == 0:
            return self.mean
        n_new = r.numel()
        batch_mean = float(r.mean())
        total = self.count + n_new
        self.mean = self.mean + (batch_mean - self.mean) * n_new / total
        self.count = total
        return self.mean

    def state_dict(self) -> dict:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = float(state["mean"])
        self.count = int(state["count"])


def bco_loss(
    logratio: torch.Tensor,
    preferred: torch.Tensor,
    running_mean: RewardRunningMean,
    beta: float = 0.1,
    reduction: str = "pooled",
):
    """BCO (Jung et al. 2024): binary classification of rewards β t, shifted by δ::

        preferred:      −log σ(β t − δ)
        non-preferred:  −log σ(−(β t − δ))

    δ is the running mean of the rewards β t (``running_mean``, updated in place
    with this batch's detached rewards *before* the loss is formed; left unchanged when the call
    raises, e.g. a one-class batch with ``reduction="per_class"``).
    """
    _check_logratio(logratio)
    preferred = _check_preferred(preferred, logratio)
    reduction = _check_reduction(reduction)
    if not isinstance(running_mean, RewardRunningMean):
        raise ValueError(f"running_mean must be a RewardRunningMean, got {type(running_mean).__name__}")
    b = _check_positive(beta, "beta")
    t = logratio.to(_compute_dtype(logratio))
    rewards = b * t
    pending = dataclasses.replace(running_mean)  # a copy, committed only once the loss is formed
    delta = pending.update(rewards)
    z = rewards - delta
    per_row = torch.where(preferred, -F.logsigmoid(z), -F.logsigmoid(-z))
    loss = _reduce(per_row, preferred, reduction)
    running_mean.load_state_dict(pending.state_dict())
    return loss


def dpo_loss(chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, beta: float = 0.1, reduction="mean"):
    """DPO (Rafailov et al. 2023) on pairs: −log σ(β (t_chosen − t_rejected)).

    ``reduction``: ``"mean"`` over pairs or ``"none"``.
    """
    _check_logratio(chosen_logratio, "chosen_logratio")
    _check_logratio(rejected_logratio, "rejected_logratio")
    if chosen_logratio.shape != rejected_logratio.shape:
        raise ValueError(
            f"chosen_logratio {tuple(chosen_logratio.shape)} and rejected_logratio "
            f"{tuple(rejected_logratio.shape)} must have the same shape (one value per pair)"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none' for dpo_loss, got {reduction!r}")
    b = _check_positive(beta, "beta")
    dtype = _compute_dtype(chosen_logratio)
    per_pair = -F.logsigmoid(b * (chosen_logratio.to(dtype) - rejected_logratio.to(dtype)))
    return per_pair.mean() if reduction == "mean" else per_pair


def sft_loss(policy_logprob: torch.Tensor, preferred: torch.Tensor, num_tokens=None):
    """SFT floor: negative log-likelihood of the preferred rows only.

    ``policy_logprob``: per-sequence log π_θ(y|x) [B]. With ``num_tokens`` [B]
    (completion tokens per row) the loss is the token-mean NLL over preferred
    rows, Σ_{pref} −log π_θ / Σ_{pref} n_tokens; without, the mean over preferred
    rows of −log π_θ(y|x). A batch with no preferred row gives 0 (attached to the
    graph, so gradient accumulation still works).
    """
    _check_logratio(policy_logprob, "policy_logprob")
    preferred = _check_preferred(preferred, policy_logprob)
    lp = policy_logprob.to(_compute_dtype(policy_logprob))
    nll = torch.where(preferred, -lp, torch.zeros_like(lp))
    if num_tokens is None:
        denom = preferred.sum().clamp(min=1).to(lp.dtype)
    else:
        n = torch.as_tensor(num_tokens, device=lp.device)
        if n.shape != lp.shape:
            raise ValueError(f"num_tokens must have shape {tuple(lp.shape)}, got {tuple(n.shape)}")
        if bool((n[preferred] <= 0).any()):
            raise ValueError("num_tokens must be positive for every preferred row")
        denom = n[preferred].sum().clamp(min=1).to(lp.dtype)
    return nll.sum() / denom
