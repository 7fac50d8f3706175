"""Density-ratio estimators with a scikit-learn-style API: plain (g = p+/p−) and relative (r_α = p+/q_α).

Notation (shared/method.md): p+ the numerator ("preferred") density, p− the denominator
("non-preferred") density, q_α = α p+ + (1 − α) p−, r_α = p+ / q_α ∈ [0, 1/α], g = p+ / p−.

Every estimator follows the same convention:

- hyper-parameters are set in ``__init__`` only (``alpha`` for the relative ones, kernel and
  regularisation grids, ``random_state``) and validated in ``fit``;
- ``fit(X_num, X_den)`` takes samples of the numerator p+ and of p− (arrays of shape
  [n, d]) and returns ``self``. The relative estimators never need samples of q_α: they form
  the mixture internally, E_{q_α}[h] = α E_{p+}[h] + (1 − α) E_{p−}[h] (as RuLSIF does);
- ``predict(X)`` returns the estimated ratio at the rows of X — r̂_α for the relative estimators
  (``relative = True``), ĝ for the plain ones; ``predict_log(X)`` its logarithm;
- learned state lives in attributes ending in ``_`` (``sigma_``, ``lambda_``, ``centers_``,
  ``coef_``, ``cv_scores_`` …); ``get_params`` / ``set_params`` work as in scikit-learn.

Estimators:

=========================  ========  ===================================================
class                      target    method
=========================  ========  ===================================================
:class:`ULSIF`             g         least squares, closed form (Kanamori et al. 2009)
:class:`RuLSIF`            r_α       relative least squares, closed form (Yamada et al. 2013)
:class:`KLIEP`             g         KL importance estimation (Sugiyama et al. 2008)
:class:`LogisticRatio`     g         logistic-regression classifier, g = (n−/n+)·odds
:class:`RelativeLogisticRatio`  r_α  the RDRO loss itself (:func:`rdro.losses.rdro_loss`)
:class:`BregmanRatio`      g         DDRO's Bregman loss (:func:`rdro.losses.bregman_ratio_loss`)
=========================  ========  ===================================================

Shared pieces, written once: :func:`gaussian_kernel` (the feature map of every estimator),
:func:`median_distance` (default kernel-width scale), K-fold splitting of both samples and the
grid search over (σ, λ) by a held-out criterion.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from rdro.losses import DIVERGENCES, bregman_ratio_loss, rdro_loss
from rdro.ratios import check_fraction, log_relative_ratio

__all__ = [
    "NotFittedError",
    "DensityRatioEstimator",
    "ULSIF",
    "RuLSIF",
    "KLIEP",
    "LogisticRatio",
    "RelativeLogisticRatio",
    "BregmanRatio",
    "gaussian_kernel",
    "median_distance",
]

# Default grids: σ as multiples of the median pairwise distance, λ absolute. Sized so that
# cross-validation seldom stops at an edge on the E4 worlds (1-D Gaussian mean shift 0.5-4, n = 400
# per class); with the earlier grids (σ × 0.2 … 2 for all kernel estimators, LSIF λ ≥ 1e-3, ERM σ ×
# 0.25 … 2 and λ ≥ 1e-3) CV chose the smallest λ in 70-90 % of fits, the largest σ in 20-65 % and
# KLIEP the smallest σ in half. Each side was extended where it was hit: KLIEP's σ grid downwards
# only (uLSIF/RuLSIF chose σ × 0.2 in 9 of 120 fits). Left: the smallest λ in 15-30 % of fits and
# the largest σ in 15-60 % (there log g is linear in x, the σ → ∞ limit). ERM λ = 1e-1 is not in
# the grid: CV never chose it, and each ERM λ costs a Newton fit per σ and fold. KLIEP, since its
# problem is solved exactly (EM updates; the earlier projected-gradient solver stopped early, which
# acted as a regulariser), takes the grid's smallest σ (0.05 × median) at shifts ≥ 1 (shift 1: 3 of 4
# seeds): its held-out log-likelihood keeps rising as σ shrinks (a numerator point where p− has almost
# no mass can get a ratio up to 1/b_l), until centres lose all X_den mass (b_l ≤ 1e-100, skipped) —
# with 0.03 in the grid it took 0.03 at shifts ≥ 2. So this floor, a choice of ours, bounds KLIEP's σ
# there; on the r_α scale the spikes are harmless (r_α = 1/(α + (1 − α)/g) ≤ 1/α).
LSIF_SIGMA_FACTORS = (0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0)
LSIF_LAMBDAS = tuple(float(10.0**e) for e in np.arange(-9.0, 1.01, 0.5))
KLIEP_SIGMA_FACTORS = (0.05, 0.07, 0.1, 0.15, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.0)
ERM_SIGMA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
ERM_LAMBDAS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


class NotFittedError(ValueError, AttributeError):
    """``predict`` was called before ``fit``."""


# ---------------------------------------------------------------------------
# shared pieces: validation, kernel features, width heuristic, folds
# ---------------------------------------------------------------------------


def _as_samples(X, name: str, n_features: int | None = None) -> np.ndarray:
    """X as a float64 array of shape [n, d], finite, with ``n_features`` columns if given."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a numeric array of shape [n_samples, n_features], got {type(X).__name__}"
        ) from None
    if arr.ndim != 2:
        hint = " (for 1-D data use X.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D [n_samples, n_features], got shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/Inf value(s); samples must be finite")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, expected {n_features} (as in the fitted data)")
    return arr


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_grid(values, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name} must be a non-empty sequence of finite positive numbers, got {values!r}")
    return arr


def gaussian_kernel(X: np.ndarray, centers: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian kernel features φ_l(x) = exp(−‖x − c_l‖² / (2σ²)), shape [n, b], each in (0, 1].

    The feature map of every estimator here: ratio (or log-ratio) models are linear in φ(x),
    so ‖φ(x)‖₂ ≤ √b — the feature bound used by :func:`rdro.theory.rademacher_linear`.
    """
    sq = (X * X).sum(1)[:, None] + (centers * centers).sum(1)[None, :] - 2.0 * X @ centers.T
    return np.exp(-np.maximum(sq, 0.0) / (2.0 * sigma * sigma))


def median_distance(X: np.ndarray, max_points: int = 500, random_state=0) -> float:
    """Median Euclidean distance between distinct rows of X (a random subset of ``max_points``
    rows when X is larger): the scale of the default kernel-width grids."""
    X = _as_samples(X, "X")
    rng = np.random.default_rng(random_state)
    if X.shape[0] > max_points:
        X = X[rng.choice(X.shape[0], max_points, replace=False)]
    sq = (X * X).sum(1)[:, None] + (X * X).sum(1)[None, :] - 2.0 * X @ X.T
    d = np.sqrt(np.maximum(sq[np.triu_indices(X.shape[0], 1)], 0.0))
    d = d[d > 0]
    if d.size == 0:
        raise ValueError("all samples coincide: the median distance (kernel-width scale) is 0")
    return float(np.median(d))


def _single_threaded():
    """Limit BLAS and OpenMP (numpy's and torch's) to one thread while fitting, when threadpoolctl
    is installed.

    The estimators work on small matrices (b ≈ 100 centres), where threading only adds
    synchronisation: on a busy 2-core machine one 100 × 100 ``eigh`` took 13 ms with the default
    OpenBLAS threads against ≈ 1 ms with one, and a torch 800 × 101 mat-vec 23 ms against 0.013 ms
    (a 10-25× slower ``fit``). Without threadpoolctl this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _fold_ids(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A random assignment of n rows to ``n_folds`` folds of (almost) equal size."""
    return rng.permutation(np.arange(n) % n_folds)


class _FoldPlan:
    """The K-fold split of both samples and the kernel centres, drawn once per ``fit`` from its rng.

    Centres are ``n_centers`` random rows of X_num (``center_source="num"``) or of the stacked
    [X_num; X_den] (``"pooled"``). In fold k only the centres whose rows are in the training part
    are used (:meth:`center_mask`): a held-out row that is also a kernel centre has φ = 1 on its own
    kernel, which biases the held-out criterion towards ever smaller σ (seen with uLSIF: CV picked
    σ = 0.1 × median distance and a 300× larger error).
    """

    def __init__(self, n_num, n_den, n_folds, n_centers, center_source, rng):
        self.n_folds = n_folds
        self.folds_num = _fold_ids(n_num, n_folds, rng)
        self.folds_den = _fold_ids(n_den, n_folds, rng)
        source = self.folds_num if center_source == "num" else np.r_[self.folds_num, self.folds_den]
        self.center_idx = rng.choice(source.size, min(n_centers, source.size), replace=False)
        self.center_folds = source[self.center_idx]

    def center_mask(self, k: int) -> np.ndarray:
        return self.center_folds != k


# ---------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------


class DensityRatioEstimator:
    """Common API of the estimators (see the module docstring). Subclasses implement ``_fit``
    and ``_predict_log``."""

    #: True when ``predict`` returns r_α (the estimator has an ``alpha``), False for g.
    relative = False

    # -- scikit-learn parameter protocol -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The hyper-parameters given to ``__init__``, as a dict."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set hyper-parameters (names as in ``__init__``); returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"unknown parameter {name!r} for {type(self).__name__}; valid: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fit / predict ---------------------------------------------------------------------
    def _validate_fit_inputs(self, X_num, X_den) -> tuple[np.ndarray, np.ndarray]:
        n_folds = _check_int(self.n_folds, "n_folds", 2)
        X_num = _as_samples(X_num, "X_num")
        X_den = _as_samples(X_den, "X_den", n_features=X_num.shape[1])
        for name, X in (("X_num", X_num), ("X_den", X_den)):
            if X.shape[0] < 2 * n_folds:
                raise ValueError(
                    f"{name} has {X.shape[0]} rows; {type(self).__name__} needs at least 2·n_folds = "
                    f"{2 * n_folds} per sample for its {n_folds}-fold cross-validation"
                )
        if self.relative:
            check_fraction(self.alpha)
        return X_num, X_den

    def _sigma_grid(self, X_num, X_den, default_factors) -> np.ndarray:
        if self.sigma_grid is not None:
            return _check_grid(self.sigma_grid, "sigma_grid")
        scale = median_distance(np.vstack([X_num, X_den]), random_state=self.random_state)
        return scale * np.asarray(default_factors)

    def fit(self, X_num, X_den):
        """Fit on samples X_num ~ p+ (numerator) and X_den ~ p− (denominator); returns self."""
        X_num, X_den = self._validate_fit_inputs(X_num, X_den)
        with _single_threaded():
            self._fit(X_num, X_den, np.random.default_rng(self.random_state))
        self.n_features_in_ = X_num.shape[1]
        return self

    def _checked_X(self, X) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X_num, X_den) first")
        return _as_samples(X, "X", n_features=self.n_features_in_)

    def predict(self, X) -> np.ndarray:
        """Estimated ratio at the rows of X, shape [n]: r̂_α(x) for relative estimators, ĝ(x) otherwise."""
        return np.exp(self.predict_log(X))

    def predict_log(self, X) -> np.ndarray:
        """log of :meth:`predict` (−inf where a least-squares estimate is clipped at 0)."""
        return self._predict_log(self._checked_X(X))


# ---------------------------------------------------------------------------
# least squares: uLSIF and RuLSIF
# ---------------------------------------------------------------------------


class _LeastSquaresRatio(DensityRatioEstimator):
    """Kernel least-squares fit of a (relative) ratio, closed form, K-fold CV over (σ, λ).

    Model r̂(x) = Σ_l θ_l φ_l(x) with Gaussian kernels centred on ``n_centers`` numerator points.
    Minimising the squared error ½ E_{q}[(r̂ − r)²] (q = q_α, or p− for α = 0) up to a constant:

        J(θ) = ½ θᵀ Ĥ θ − ĥᵀ θ + (λ/2) θᵀθ,
        Ĥ = α E_{p+}[φφᵀ] + (1 − α) E_{p−}[φφᵀ],   ĥ = E_{p+}[φ]
        θ̂ = (Ĥ + λ I)^{-1} ĥ,

    θ left unconstrained as in Yamada et al. (2013), and the estimate rounded up to 0 where negative,
    r̂(x) = max(0, φ(x)ᵀθ̂) (the true ratio is ≥ 0, so this never increases the error). Kanamori et
    al.'s uLSIF clips θ̂ ← max(0, θ̂) instead; on 2-D Gaussians (n = 400, shift 1) that raised the
    mean squared error of RuLSIF from ≈ 0.008 to ≈ 0.035, so both classes here use the
    unconstrained θ̂ (the same recipe for plain and relative). The CV criterion is the held-out
    squared loss  J_hold = α/2 E_{p+}[r̂²] + (1 − α)/2 E_{p−}[r̂²] − E_{p+}[r̂]  (the risk whose
    minimiser is r, = ½ E_q[(r̂ − r)²] − ½ E_q[r²]), averaged over folds.
    """

    def _mixture_weight(self) -> float:  # α in Ĥ; 0 for uLSIF
        raise NotImplementedError

    def _fit(self, X_num, X_den, rng):
        n_centers = _check_int(self.n_centers, "n_centers", 1)
        lambdas = _check_grid(self.lambda_grid, "lambda_grid")
        sigmas = self._sigma_grid(X_num, X_den, LSIF_SIGMA_FACTORS)
        a = self._mixture_weight()
        plan = _FoldPlan(X_num.shape[0], X_den.shape[0], self.n_folds, n_centers, "num", rng)
        centers = X_num[plan.center_idx]
        scores = np.zeros((sigmas.size, lambdas.size))
        for i, sigma in enumerate(sigmas):
            P_num, P_den = gaussian_kernel(X_num, centers, sigma), gaussian_kernel(X_den, centers, sigma)
            # per-fold Gram blocks and row sums, computed once; a training part's moments are the
            # totals minus its held-out fold's block, restricted to the fold's centres
            blocks = [(P_num[plan.folds_num == k], P_den[plan.folds_den == k]) for k in range(self.n_folds)]
            G_num = np.stack([B.T @ B for B, _ in blocks])
            G_den = np.stack([B.T @ B for _, B in blocks])
            S_num = np.stack([B.sum(0) for B, _ in blocks])
            for k, (te_num, te_den) in enumerate(blocks):
                c = plan.center_mask(k)
                n_tr, d_tr = X_num.shape[0] - te_num.shape[0], X_den.shape[0] - te_den.shape[0]
                H = (1.0 - a) * (G_den.sum(0) - G_den[k]) / d_tr + a * (G_num.sum(0) - G_num[k]) / n_tr
                h = (S_num.sum(0) - S_num[k]) / n_tr
                thetas = self._solve(H[np.ix_(c, c)], h[c], lambdas)  # [b_k, n_lambda]
                r_num = np.maximum(te_num[:, c] @ thetas, 0.0)
                r_den = np.maximum(te_den[:, c] @ thetas, 0.0)
                scores[i] += (
                    0.5 * a * (r_num**2).mean(0) + 0.5 * (1.0 - a) * (r_den**2).mean(0) - r_num.mean(0)
                ) / self.n_folds
        i, j = np.unravel_index(np.argmin(scores), scores.shape)
        self.sigma_, self.lambda_ = float(sigmas[i]), float(lambdas[j])
        self.sigma_grid_, self.lambda_grid_, self.cv_scores_ = sigmas, lambdas, scores
        self.centers_ = centers
        P_num, P_den = gaussian_kernel(X_num, centers, self.sigma_), gaussian_kernel(X_den, centers, self.sigma_)
        H, h = self._moments(P_num, P_den, a)
        self.coef_ = self._solve(H, h, np.array([self.lambda_]))[:, 0]

    @staticmethod
    def _moments(P_num, P_den, a):
        H = (1.0 - a) * (P_den.T @ P_den) / P_den.shape[0]
        if a > 0:
            H = H + a * (P_num.T @ P_num) / P_num.shape[0]
        return H, P_num.mean(0)

    @staticmethod
    def _solve(H, h, lambdas):
        """θ(λ) = (H + λI)^{-1} h for every λ at once, through one eigendecomposition of H."""
        evals, evecs = np.linalg.eigh(H)
        proj = evecs.T @ h
        thetas = evecs @ (proj[:, None] / (np.maximum(evals, 0.0)[:, None] + lambdas[None, :]))
        return thetas

    def predict(self, X) -> np.ndarray:
        X = self._checked_X(X)
        return np.maximum(gaussian_kernel(X, self.centers_, self.sigma_) @ self.coef_, 0.0)

    def _predict_log(self, X):
        with np.errstate(divide="ignore"):
            return np.log(np.maximum(gaussian_kernel(X, self.centers_, self.sigma_) @ self.coef_, 0.0))


class ULSIF(_LeastSquaresRatio):
    """uLSIF (Kanamori, Hido & Sugiyama 2009): unconstrained least-squares fit of the plain ratio g = p+/p−.

    ĝ(x) = max(0, Σ_l θ_l exp(−‖x − c_l‖²/(2σ²))), centres c_l = ``n_centers`` random numerator
    points, θ̂ = (Ĥ + λI)^{-1} ĥ,  Ĥ = E_{p−}[φφᵀ],  ĥ = E_{p+}[φ]  (sample means; θ̂ is not
    clipped, see :class:`_LeastSquaresRatio`).

    σ and λ are chosen by ``n_folds``-fold cross-validation of the held-out squared loss
    ½ E_{p−}[ĝ²] − E_{p+}[ĝ] over ``sigma_grid`` (default: median pairwise distance × 0.2 … 4,
    :data:`LSIF_SIGMA_FACTORS`) and ``lambda_grid`` (default 10^−9 … 10^1, :data:`LSIF_LAMBDAS`).
    That criterion is unbounded below (nothing penalises large ĝ on held-out numerator rows;
    RuLSIF's is ≥ −1/(2α)), so at small λ CV can pick an unstable fit whose held-out score a few
    large values drive — in E4, uLSIF's error grew when the λ grid was extended below 10^−3.
    Fitted attributes: ``sigma_``, ``lambda_``, ``centers_`` [b, d], ``coef_`` (θ) [b],
    ``cv_scores_`` [n_sigma, n_lambda].
    """

    relative = False

    def __init__(self, n_centers=100, sigma_grid=None, lambda_grid=LSIF_LAMBDAS, n_folds=5, random_state=0):
        self.n_centers = n_centers
        self.sigma_grid = sigma_grid
        self.lambda_grid = lambda_grid
        self.n_folds = n_folds
        self.random_state = random_state

    def _mixture_weight(self):
        return 0.0


class RuLSIF(_LeastSquaresRatio):
    """RuLSIF (Yamada et al. 2013): least-squares fit of the relative ratio r_α = p+/(α p+ + (1 − α) p−).

    r̂_α(x) = max(0, Σ_l θ_l exp(−‖x − c_l‖²/(2σ²))) with

        θ̂ = (α Ĥ+ + (1 − α) Ĥ− + λI)^{-1} ĥ,  Ĥ± = E_{p±}[φφᵀ],  ĥ = E_{p+}[φ],

    the minimiser of ½ E_{q_α}[(r̂ − r_α)²] + (λ/2)‖θ‖² up to constants (q_α formed from the two
    samples, no mixture sample needed). Nothing forces r̂_α ≤ 1/α; the fit respects it up to
    estimation error because r_α does.
    σ, λ by K-fold CV of the held-out criterion α/2 E_{p+}[r̂²] + (1 − α)/2 E_{p−}[r̂²] − E_{p+}[r̂].
    Attributes as :class:`ULSIF`.
    """

    relative = True

    def __init__(self, alpha=0.5, n_centers=100, sigma_grid=None, lambda_grid=LSIF_LAMBDAS, n_folds=5, random_state=0):
        self.alpha = alpha
        self.n_centers = n_centers
        self.sigma_grid = sigma_grid
        self.lambda_grid = lambda_grid
        self.n_folds = n_folds
        self.random_state = random_state

    def _mixture_weight(self):
        return check_fraction(self.alpha)


# ---------------------------------------------------------------------------
# KLIEP
# ---------------------------------------------------------------------------


def _kliep_ascent(A: np.ndarray, b: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Maximise mean_i log (Aθ)_i subject to bᵀθ = 1, θ ≥ 0 (KLIEP's problem, a concave maximisation).

    Multiplicative (EM) updates θ_l ← θ_l ∇_l / b_l, ∇ = Aᵀ(1/Aθ)/n: with β_l = b_l θ_l this is the EM
    step for the weights β of the mixture Σ_l β_l (φ_l p− / b_l), so every step keeps θ ≥ 0 and bᵀθ = 1,
    never decreases the objective, and from the interior start θ = 1/Σb converges to the maximiser
    (its fixed points satisfy KKT: ∇_l = b_l wherever θ_l > 0). Stops when a step gains less than
    ``tol`` or after ``max_iter`` steps. Centres with b_l ≤ 1e-100 (no X_den mass to speak of: the problem
    is unbounded along θ_l, and θ_l ≤ 1/b_l would overflow) are left at θ_l = 0; in the update 1/(Aθ)_i
    is capped at 1e150 (a row with no kernel mass at any centre in use gives log 0 whatever θ, and
    would overflow Aᵀ(1/Aθ)).

    (Sugiyama et al.'s projected gradient step θ ← θ + ε∇, θ ← θ + (1 − bᵀθ)b/‖b‖², max(0, ·),
    ← /bᵀθ, used here before, is not the Euclidean projection onto the feasible set: with an
    adaptive ε it stopped far from the maximiser, short by 0.02-1 in mean log-likelihood with the KKT
    conditions visibly violated.)
    """
    keep = b > 1e-100
    theta = np.zeros(A.shape[1])
    if not keep.any():
        return theta
    A, b = A[:, keep], b[keep]
    th = np.full(b.size, 1.0 / b.sum())
    v = A @ th
    value = np.log(np.maximum(v, 1e-300)).mean()
    for _ in range(max_iter):
        th = th * (A.T @ (1.0 / np.maximum(v, 1e-150)) / A.shape[0]) / b
        th = th / (b @ th)  # = 1 up to rounding (rows with Aθ ≈ 0 contribute nothing)
        v = A @ th
        new = np.log(np.maximum(v, 1e-300)).mean()
        gain, value = new - value, new
        if gain < tol:
            break
    theta[keep] = th
    return theta


class KLIEP(DensityRatioEstimator):
    """KLIEP (Sugiyama et al. 2008): the plain ratio g = p+/p− by maximum likelihood under p+.

    ĝ(x) = Σ_l θ_l φ_l(x) (Gaussian kernels on ``n_centers`` numerator points) maximises

        (1/n+) Σ_{x ∈ X_num} log ĝ(x)    subject to   (1/n−) Σ_{x ∈ X_den} ĝ(x) = 1,  θ ≥ 0

    (KL(p+ ‖ ĝ p−) up to a constant), solved by multiplicative EM updates. σ is chosen by K-fold
    CV of the held-out log-likelihood mean log ĝ over numerator folds (each fit uses all of X_den
    for the normalisation, as in the original) over ``sigma_grid`` (default: median pairwise
    distance × 0.05 … 2, :data:`KLIEP_SIGMA_FACTORS`). Attributes: ``sigma_``, ``centers_``, ``coef_``,
    ``cv_scores_`` [n_sigma] (held-out mean log-likelihood, larger is better).
    """

    relative = False

    def __init__(self, n_centers=100, sigma_grid=None, n_folds=5, max_iter=2000, tol=1e-7, random_state=0):
        self.n_centers = n_centers
        self.sigma_grid = sigma_grid
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _fit(self, X_num, X_den, rng):
        n_centers = _check_int(self.n_centers, "n_centers", 1)
        max_iter = _check_int(self.max_iter, "max_iter", 1)
        tol = _check_grid([self.tol], "tol")[0]
        sigmas = self._sigma_grid(X_num, X_den, KLIEP_SIGMA_FACTORS)
        plan = _FoldPlan(X_num.shape[0], X_den.shape[0], self.n_folds, n_centers, "num", rng)
        centers = X_num[plan.center_idx]
        scores = np.zeros(sigmas.size)
        for i, sigma in enumerate(sigmas):
            A, b = gaussian_kernel(X_num, centers, sigma), gaussian_kernel(X_den, centers, sigma).mean(0)
            for k in range(self.n_folds):
                c, te = plan.center_mask(k), plan.folds_num == k
                theta = _kliep_ascent(A[~te][:, c], b[c], max_iter, tol)
                scores[i] += np.log(np.maximum(A[te][:, c] @ theta, 1e-300)).mean() / self.n_folds
        if not np.isfinite(scores).any():
            raise ValueError(f"KLIEP: no σ in sigma_grid gave a finite CV score (grid {sigmas.tolist()})")
        i = int(np.argmax(np.where(np.isfinite(scores), scores, -np.inf)))
        self.sigma_, self.sigma_grid_, self.cv_scores_, self.centers_ = float(sigmas[i]), sigmas, scores, centers
        A, b = gaussian_kernel(X_num, centers, self.sigma_), gaussian_kernel(X_den, centers, self.sigma_).mean(0)
        self.coef_ = _kliep_ascent(A, b, max_iter, tol)

    def _predict_log(self, X):
        with np.errstate(divide="ignore"):
            return np.log(gaussian_kernel(X, self.centers_, self.sigma_) @ self.coef_)


# ---------------------------------------------------------------------------
# loss-minimising estimators on a linear-in-features log-ratio model
# ---------------------------------------------------------------------------

FEATURES = ("gaussian", "linear")


def _newton_minimise(loss, Phi, preferred, lam, start, max_iter, tol=1e-10):
    """Minimise F(w, w₀) = loss(s, preferred) + λ‖w‖², s = Φw + w₀, by damped Newton with backtracking.

    ``loss`` is a sum of per-row terms (every density-ratio loss here is), so ∂²loss/∂s² is diagonal:
    torch autograd gives its diagonal d₂ from one double-backward. The Newton system uses
    H = Φ̃ᵀ diag(max(d₂, 0)) Φ̃ + 2λ I_w (+ a 1e-10 ridge on the intercept), Φ̃ = [Φ, 1], which is
    positive definite, so the step is a descent direction even where a loss is not convex in s
    (DDRO's LSIF loss on log g). Armijo backtracking; stops when the Newton decrement falls below
    ``tol`` or after ``max_iter`` steps, and with a ``RuntimeWarning`` when the step overflows. All in
    float64.
    """
    Phi1 = np.hstack([Phi, np.ones((Phi.shape[0], 1))])
    Phi1_t = torch.from_numpy(Phi1)
    pref_t = torch.from_numpy(preferred)
    ridge = np.full(Phi1.shape[1], 2.0 * lam)
    ridge[-1] = 1e-10

    def objective(params):
        with torch.no_grad():
            return float(loss(Phi1_t @ torch.from_numpy(params), pref_t)) + lam * float(params[:-1] @ params[:-1])

    params = np.array(start, dtype=np.float64)
    value = objective(params)
    for _ in range(max_iter):
        s = (Phi1_t @ torch.from_numpy(params)).requires_grad_(True)
        (d1,) = torch.autograd.grad(loss(s, pref_t), s, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), s)
        d1, d2 = d1.detach().numpy(), d2.numpy()
        grad = Phi1.T @ d1 + ridge * params * (np.arange(params.size) < params.size - 1)
        H = (Phi1 * np.maximum(d2, 0.0)[:, None]).T @ Phi1 + np.diag(ridge)
        with np.errstate(over="ignore", invalid="ignore"):
            step = -np.linalg.solve(H, grad)
            decrement = -float(grad @ step)
        if not np.isfinite(decrement):
            warnings.warn(
                "Newton fit stopped: the gradient or Newton step overflowed (the loss may be unbounded below "
                "on this model, e.g. DDRO's LSIF loss on linear features); the estimate is not a minimiser",
                RuntimeWarning,
                stacklevel=5,
            )
            break
        if decrement < tol:
            break
        eta = 1.0
        while eta > 1e-10:
            cand = params + eta * step
            cand_value = objective(cand)
            if np.isfinite(cand_value) and cand_value <= value - 0.25 * eta * decrement:
                break
            eta *= 0.5
        else:
            break
        params, value = cand, cand_value
    return params


class _LogRatioRiskMinimizer(DensityRatioEstimator):
    """Fit s(x) = φ(x)ᵀw + w₀ by minimising  L(s) + λ‖w‖²  (intercept unpenalised), with L an
    empirical density-ratio loss on the pooled rows (numerator rows labelled preferred).

    ``features="gaussian"``: φ = Gaussian kernels on ``n_centers`` points drawn from both samples,
    σ and λ chosen by K-fold CV of the held-out (unpenalised) loss L; ``features="linear"``:
    φ(x) = x, only λ is cross-validated. Solved in float64 by damped Newton
    (:func:`_newton_minimise`, derivatives from torch autograd through the core loss),
    warm-started along the decreasing λ grid.
    Subclasses define ``_loss(s, preferred)`` (a scalar torch tensor) and ``_log_ratio(s, …)``.
    """

    def _loss(self, s: torch.Tensor, preferred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, X, sigma):
        return X if self.features == "linear" else gaussian_kernel(X, self.centers_, sigma)

    def _minimise(self, Phi, preferred, lam, start):
        return _newton_minimise(self._loss, Phi, preferred, lam, start, self.max_iter)

    def _held_out_loss(self, Phi, preferred, params):
        with torch.no_grad():
            s = torch.from_numpy(Phi @ params[:-1] + params[-1])
            return float(self._loss(s, torch.from_numpy(preferred)))

    def _fit(self, X_num, X_den, rng):
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        _check_int(self.max_iter, "max_iter", 1)
        lambdas = np.sort(_check_grid(self.lambda_grid, "lambda_grid"))[::-1]
        X = np.vstack([X_num, X_den])
        preferred = np.r_[np.ones(X_num.shape[0], bool), np.zeros(X_den.shape[0], bool)]
        n_centers = _check_int(self.n_centers, "n_centers", 1)
        plan = _FoldPlan(X_num.shape[0], X_den.shape[0], self.n_folds, n_centers, "pooled", rng)
        folds = np.r_[plan.folds_num, plan.folds_den]
        if self.features == "gaussian":
            sigmas = self._sigma_grid(X_num, X_den, ERM_SIGMA_FACTORS)
            self.centers_ = X[plan.center_idx]
        else:
            sigmas = np.array([np.nan])
            self.centers_ = None
        scores = np.zeros((sigmas.size, lambdas.size))
        for i, sigma in enumerate(sigmas):
            Phi = self._features(X, sigma)
            for k in range(self.n_folds):
                tr, te = folds != k, folds == k
                c = plan.center_mask(k) if self.features == "gaussian" else np.ones(Phi.shape[1], bool)
                params = np.zeros(c.sum() + 1)
                for j, lam in enumerate(lambdas):
                    params = self._minimise(Phi[tr][:, c], preferred[tr], lam, params)
                    scores[i, j] += self._held_out_loss(Phi[te][:, c], preferred[te], params) / self.n_folds
        i, j = np.unravel_index(np.argmin(scores), scores.shape)
        self.sigma_ = None if self.features == "linear" else float(sigmas[i])
        self.lambda_ = float(lambdas[j])
        self.sigma_grid_, self.lambda_grid_, self.cv_scores_ = sigmas, lambdas, scores
        Phi = self._features(X, self.sigma_)
        params = self._minimise(Phi, preferred, self.lambda_, np.zeros(Phi.shape[1] + 1))
        self.coef_, self.intercept_ = params[:-1], float(params[-1])
        self.n_num_, self.n_den_ = X_num.shape[0], X_den.shape[0]

    def decision_function(self, X) -> np.ndarray:
        """The fitted linear model s(x) = φ(x)ᵀw + w₀ at the rows of X."""
        X = self._checked_X(X)
        return self._features(X, self.sigma_) @ self.coef_ + self.intercept_

    def _predict_log(self, X):
        return self._log_ratio(self._features(X, self.sigma_) @ self.coef_ + self.intercept_)


class LogisticRatio(_LogRatioRiskMinimizer):
    """Plain ratio g = p+/p− from a probabilistic classifier (logistic regression), the classic
    classifier-based estimator.

    A logistic regression with logit s(x) = φ(x)ᵀw + w₀ separates numerator rows (label 1) from
    denominator rows (label 0) by the pooled binary cross-entropy (torch's
    ``binary_cross_entropy_with_logits``, mean over all n+ + n− rows) + λ‖w‖². Its population
    minimiser is the posterior log-odds s = log(n+ p+ / (n− p−)), hence

        ĝ(x) = (n−/n+) · exp(s(x))     (``predict``),   log ĝ = s + log(n−/n+).

    ``features``: ``"gaussian"`` (kernels on ``n_centers`` pooled points, σ and λ by K-fold CV of
    the held-out cross-entropy) or ``"linear"`` (φ(x) = x; exact when log g is affine, e.g.
    equal-covariance Gaussians). Attributes: ``sigma_``, ``lambda_``, ``centers_``, ``coef_``,
    ``intercept_``, ``cv_scores_``.
    """

    relative = False

    def __init__(
        self,
        features="gaussian",
        n_centers=100,
        sigma_grid=None,
        lambda_grid=ERM_LAMBDAS,
        n_folds=3,
        max_iter=100,
        random_state=0,
    ):
        self.features = features
        self.n_centers = n_centers
        self.sigma_grid = sigma_grid
        self.lambda_grid = lambda_grid
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.random_state = random_state

    def _loss(self, s, preferred):
        return F.binary_cross_entropy_with_logits(s, preferred.to(s.dtype))

    def _log_ratio(self, s):
        return s + math.log(self.n_den_ / self.n_num_)


RELATIVE_LINKS = ("bounded", "identity")


class RelativeLogisticRatio(_LogRatioRiskMinimizer):
    """The relative ratio r_α fitted with the RDRO loss itself — RDRO's estimator on a feature model.

    t(x) = φ(x)ᵀw + w₀ minimises the per-class RDRO loss (:func:`rdro.losses.rdro_loss`,
    ``reduction="per_class"``)

        L(t) = mean_{X_num} ℓ+(t) + mean_{X_den} ℓ−(t)
             = Ê_{p+}[softplus(−t)] + α Ê_{p+}[softplus(t)] + (1 − α) Ê_{p−}[softplus(t)]

    + λ‖w‖², i.e. logistic regression of p+ against q_α, whose pointwise minimiser is e^t = r_α
    for any class sizes. ``predict`` returns exp(t̂) ≈ r_α, ``predict_log`` returns t̂. σ, λ by
    K-fold CV of the held-out RDRO loss; ``features`` as in :class:`LogisticRatio`.

    ``link`` says how t depends on the linear model s(x) = φ(x)ᵀw + w₀:

    - ``"bounded"`` (default): t = log r_α(e^s) = s − log(α e^s + 1 − α), i.e. s models log g in
      the same feature class as :class:`LogisticRatio` and t ≤ log(1/α) holds by construction —
      the two estimators then differ only in the loss;
    - ``"identity"``: t = s, unconstrained (t̂ may exceed log(1/α) by estimation error).
    """

    relative = True

    def __init__(
        self,
        alpha=0.5,
        link="bounded",
        features="gaussian",
        n_centers=100,
        sigma_grid=None,
        lambda_grid=ERM_LAMBDAS,
        n_folds=3,
        max_iter=100,
        random_state=0,
    ):
        self.alpha = alpha
        self.link = link
        self.features = features
        self.n_centers = n_centers
        self.sigma_grid = sigma_grid
        self.lambda_grid = lambda_grid
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.random_state = random_state

    def _validate_fit_inputs(self, X_num, X_den):
        if self.link not in RELATIVE_LINKS:
            raise ValueError(f"link must be one of {RELATIVE_LINKS}, got {self.link!r}")
        return super()._validate_fit_inputs(X_num, X_den)

    def _t(self, s):
        return log_relative_ratio(s, s * 0, self.alpha) if self.link == "bounded" else s

    def _loss(self, s, preferred):
        return rdro_loss(self._t(s), preferred, self.alpha, reduction="per_class")

    def _log_ratio(self, s):
        return self._t(s)


class BregmanRatio(_LogRatioRiskMinimizer):
    """DDRO-style plain-ratio estimator: the Bregman density-ratio loss of DDRO
    (:func:`rdro.losses.bregman_ratio_loss`, [reconstructed], shared/method.md §3) on a log-linear
    model of g.

    The model is the log of the *ordinary* ratio, s(x) = log ĝ(x) = φ(x)ᵀw + w₀, so ĝ = e^s has no
    pole (unlike DDRO's LM parameterisation g_θ = (1 − μ)e^t/(1 − μe^t), which diverges as
    e^t → 1/μ); s goes into the loss directly, which is exact for any finite s. Minimised:

        L_f(ĝ) = Ê_{p−}[f'(ĝ) ĝ − f(ĝ)] − Ê_{p+}[f'(ĝ)]  + λ‖w‖²   (``reduction="per_class"``)

    with ``divergence`` f ∈ {``"logistic"``, ``"lsif"``, ``"kliep"``}; its pointwise minimiser is
    g = p+/p−. ``predict`` returns ĝ = e^s, ``predict_log`` s. σ, λ by K-fold CV of the held-out
    L_f; ``features`` as in :class:`LogisticRatio`. With ``divergence="logistic"`` this is the
    class-balanced logistic regression (compare :class:`LogisticRatio`). With ``"lsif"`` the
    empirical risk is unbounded below whenever the model can raise s on numerator rows more than on
    denominator rows (−ĝ = −e^s outgrows λ‖w‖²): with linear features as soon as a numerator row
    lies beyond every denominator row, with Gaussian features for small λ and few rows. The fit
    then stops with a ``RuntimeWarning`` where e^s overflows, and is not a minimiser.
    """

    relative = False

    def __init__(
        self,
        divergence="logistic",
        features="gaussian",
        n_centers=100,
        sigma_grid=None,
        lambda_grid=ERM_LAMBDAS,
        n_folds=3,
        max_iter=100,
        random_state=0,
    ):
        self.divergence = divergence
        self.features = features
        self.n_centers = n_centers
        self.sigma_grid = sigma_grid
        self.lambda_grid = lambda_grid
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.random_state = random_state

    def _validate_fit_inputs(self, X_num, X_den):
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        return super()._validate_fit_inputs(X_num, X_den)

    def _loss(self, s, preferred):
        return bregman_ratio_loss(s, preferred, self.divergence, reduction="per_class")

    def _log_ratio(self, s):
        return s
