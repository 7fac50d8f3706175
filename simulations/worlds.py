"""Synthetic worlds with known p+, p−, q_α, r_α and g.

Two kinds of world, one interface. Each world exposes

- ``sample_pos(n, rng)`` / ``sample_neg(n, rng)``: n draws from p+ / p−;
- ``sample_mixture(n, alpha, rng)``: n draws from q_α = α p+ + (1 − α) p−;
- ``logpdf_pos(X)`` / ``logpdf_neg(X)``: exact log-densities;
- ``log_relative_ratio(X, alpha)`` = log r_α(X) and ``log_ordinary_ratio(X)`` = log g(X),
  computed from the exact log-densities with :mod:`rdro.ratios`.

:class:`ContinuousWorld` lives on R^d (Gaussian mean shift, Student-t, different
variances). :class:`ToyLanguageWorld` is a finite "language model": prompts x, responses
y = short token sequences, an autoregressive π_ref and labels from a known rule
P(preferred | x, y) = h(x, y), calibrated per prompt so that E_{π_ref}[h] = α. Then
p+(y|x) = π_ref(y|x) h(x, y) / α and p−(y|x) = π_ref(y|x) (1 − h(x, y)) / (1 − α), so
q_α = π_ref holds *exactly*: rows sampled from π_ref are on-policy data and the RDRO
optimum π_ref · r_α equals p+. Toy-world points are integer arrays [n, 2] holding
(prompt index, response index); densities are conditional on the prompt.

All randomness comes from an explicit ``numpy.random.Generator`` (samplers) or an
integer ``seed`` (world construction).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, gammaln, log_softmax, logsumexp

from rdro import ratios
from rdro.ratios import check_fraction

__all__ = [
    "FAMILIES",
    "PREFERENCE_RULES",
    "ContinuousWorld",
    "gaussian_shift_world",
    "student_t_world",
    "variance_world",
    "ToyLanguageWorld",
]

FAMILIES = ("gaussian", "student_t")
PREFERENCE_RULES = ("bradley_terry", "cyclic")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer number of samples, got {n!r}")
    return int(n)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _mixture_counts(n: int, alpha: float, rng: np.random.Generator) -> int:
    """Number of q_α draws that come from p+: Binomial(n, α)."""
    return int(rng.binomial(n, alpha))


class _RatioMixin:
    """log r_α and log g from the exact log-densities (rdro.ratios)."""

    def log_relative_ratio(self, X, alpha):
        """log r_α(X) = log p+ − log(α p+ + (1 − α) p−), from the exact densities."""
        return ratios.log_relative_ratio(self.logpdf_pos(X), self.logpdf_neg(X), check_fraction(alpha))

    def log_ordinary_ratio(self, X):
        """log g(X) = log p+(X) − log p−(X)."""
        return ratios.log_ordinary_ratio(self.logpdf_pos(X), self.logpdf_neg(X))

    def sample_mixture(self, n, alpha, rng):
        """n draws from q_α = α p+ + (1 − α) p− (component counts ~ Binomial(n, α)), shuffled."""
        n, a, rng = _check_n(n), check_fraction(alpha), _check_rng(rng)
        k = _mixture_counts(n, a, rng)
        X = np.concatenate([self.sample_pos(k, rng), self.sample_neg(n - k, rng)])
        return X[rng.permutation(n)]

    def sample_labelled(self, n_pos, n_neg, rng):
        """``n_pos`` preferred draws from p+ and ``n_neg`` non-preferred draws from p−, shuffled.

        Returns ``(X, preferred)``; the preferred fraction π+ = n_pos / (n_pos + n_neg) is fixed.
        """
        n_pos, n_neg, rng = _check_n(n_pos), _check_n(n_neg), _check_rng(rng)
        X = np.concatenate([self.sample_pos(n_pos, rng), self.sample_neg(n_neg, rng)])
        preferred = np.concatenate([np.ones(n_pos, bool), np.zeros(n_neg, bool)])
        order = rng.permutation(n_pos + n_neg)
        return X[order], preferred[order]


# ---------------------------------------------------------------------------
# continuous worlds
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuousWorld(_RatioMixin):
    """Two isotropic distributions on R^d: p+ = F(loc_pos, scale_pos² I), p− = F(loc_neg, scale_neg² I).

    ``family``: ``"gaussian"`` (N(m, s² I)) or ``"student_t"`` (multivariate t with ``df``
    degrees of freedom, location m, scale matrix s² I). Log-densities:

    - Gaussian: log N(x; m, s²I) = −‖x − m‖² / (2 s²) − (d/2) log(2π s²);
    - Student t: log Γ((ν + d)/2) − log Γ(ν/2) − (d/2) log(ν π s²)
      − ((ν + d)/2) log(1 + ‖x − m‖² / (ν s²)).
    """

    family: str
    d: int
    loc_pos: tuple
    loc_neg: tuple
    scale_pos: float = 1.0
    scale_neg: float = 1.0
    df: float = 3.0
    name: str = ""

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if isinstance(self.d, bool) or not isinstance(self.d, (int, np.integer)) or not 1 <= self.d <= 100:
            raise ValueError(f"d must be an integer dimension in [1, 100], got {self.d!r}")
        for nm in ("loc_pos", "loc_neg"):
            if len(getattr(self, nm)) != self.d:
                raise ValueError(f"{nm} must have length d = {self.d}, got {len(getattr(self, nm))}")
        for nm in ("scale_pos", "scale_neg", "df"):
            v = getattr(self, nm)
            if not (float(v) > 0 and math.isfinite(float(v))):
                raise ValueError(f"{nm} must be a finite positive number, got {v!r}")

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"X must have shape [n, d={self.d}], got {X.shape}")
        return X

    def _logpdf(self, X, loc, scale) -> np.ndarray:
        X = self._check_X(X)
        sq = np.sum((X - np.asarray(loc)) ** 2, axis=1) / scale**2
        d = self.d
        if self.family == "gaussian":
            return -0.5 * sq - 0.5 * d * math.log(2 * math.pi * scale**2)
        nu = self.df
        const = gammaln((nu + d) / 2) - gammaln(nu / 2) - 0.5 * d * math.log(nu * math.pi * scale**2)
        return const - 0.5 * (nu + d) * np.log1p(sq / nu)

    def _sample(self, n, rng, loc, scale) -> np.ndarray:
        n, rng = _check_n(n), _check_rng(rng)
        Z = rng.standard_normal((n, self.d))
        if self.family == "student_t":
            Z = Z / np.sqrt(rng.chisquare(self.df, size=(n, 1)) / self.df)
        return np.asarray(loc) + scale * Z

    def logpdf_pos(self, X):
        """log p+(X), shape [n]."""
        return self._logpdf(X, self.loc_pos, self.scale_pos)

    def logpdf_neg(self, X):
        """log p−(X), shape [n]."""
        return self._logpdf(X, self.loc_neg, self.scale_neg)

    def sample_pos(self, n, rng):
        """n draws from p+, shape [n, d]."""
        return self._sample(n, rng, self.loc_pos, self.scale_pos)

    def sample_neg(self, n, rng):
        """n draws from p−, shape [n, d]."""
        return self._sample(n, rng, self.loc_neg, self.scale_neg)


def _shift_locs(d: int, shift: float) -> tuple[tuple, tuple]:
    s = float(shift)
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"shift must be a finite non-negative distance, got {shift!r}")
    return (s,) + (0.0,) * (d - 1), (0.0,) * d


def gaussian_shift_world(d: int = 1, shift: float = 1.0) -> ContinuousWorld:
    """p+ = N(δ e₁, I), p− = N(0, I) in R^d: log g(x) = δ x₁ − δ²/2 (linear), E_{p+}[g] = e^{δ²}.

    δ = ``shift`` = 0 is full overlap; δ ≳ 6 gives nearly disjoint supports.
    """
    pos, neg = _shift_locs(d, shift)
    return ContinuousWorld("gaussian", d, pos, neg, name=f"gaussian(d={d}, shift={float(shift):g})")


def student_t_world(d: int = 1, shift: float = 1.0, df: float = 3.0) -> ContinuousWorld:
    """Heavy tails: p+ = t_ν(δ e₁, I), p− = t_ν(0, I) (ν = ``df``). g → 1 in the far tails, but the
    samples include outliers far from the bulk."""
    pos, neg = _shift_locs(d, shift)
    return ContinuousWorld("student_t", d, pos, neg, df=df, name=f"student_t(d={d}, shift={float(shift):g}, df={df:g})")


def variance_world(d: int = 1, scale_pos: float = 2.0, scale_neg: float = 1.0) -> ContinuousWorld:
    """Different variances: p+ = N(0, σ+² I), p− = N(0, σ−² I). With σ+ > σ−, g is unbounded in the
    tails (log g quadratic in ‖x‖) while r_α ≤ 1/α."""
    zero = (0.0,) * d
    return ContinuousWorld(
        "gaussian", d, zero, zero, scale_pos, scale_neg, name=f"variance(d={d}, {scale_pos:g} vs {scale_neg:g})"
    )


# ---------------------------------------------------------------------------
# toy language model
# ---------------------------------------------------------------------------


def _cyclic_sign(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rock-paper-scissors on three groups: +1 if group a beats b (b = a + 1 mod 3), −1 if b beats a, 0 on ties."""
    diff = (b - a) % 3
    return np.where(diff == 1, 1.0, np.where(diff == 2, -1.0, 0.0))


@dataclass
class ToyLanguageWorld(_RatioMixin):
    """A finite "language model" world where π_ref = q_α holds exactly and p+ is known.

    - prompts x ∈ {0, …, n_prompts − 1}, ρ(x) uniform;
    - responses y = (y₁, …, y_L) ∈ {0, …, V − 1}^L (M = V^L of them, enumerable);
    - π_ref autoregressive (bigram): π_ref(y|x) = Π_l softmax(A[x, y_{l−1}])[y_l] with seeded
      Gaussian logits A (y₀ = BOS);
    - a desirability score s(x, y) = Σ_l W[x, l, y_l] (seeded Gaussian W, context-dependent)
      and the label rule P(preferred | x, y) = h(x, y) = σ(s(x, y) − c_x), the per-prompt
      threshold c_x solving Σ_y π_ref(y|x) h(x, y) = α (so every prompt has preferred
      probability α);
    - p+ = π_ref h / α, p− = π_ref (1 − h) / (1 − α), hence q_α = α p+ + (1 − α) p− = π_ref;
    - paired comparisons of y, y' (both from π_ref) with

          P(y ≻ y' | x) = σ( log h(x, y) − log h(x, y') + κ_x · c(G(y), G(y')) )

      where G(y) = y₁ mod 3 is a response group, c the rock-paper-scissors sign (+1 when
      G(y) beats G(y') in the cycle 0 ≻ 1 ≻ 2 ≻ 0) and κ_x = κ for even prompts, −κ for odd
      ones (the direction of the cycle flips with the context). ``rule="bradley_terry"``
      sets κ = 0: then P is Bradley–Terry with reward log h, and DPO with β = 1 targets
      π_ref · h / Z = p+. ``rule="cyclic"`` (κ = ``cycle_strength``) is intransitive — not
      Bradley–Terry for any reward — and DPO's optimum moves away from p+.
    """

    n_prompts: int = 3
    vocab_size: int = 4
    length: int = 3
    alpha: float = 0.3
    rule: str = "bradley_terry"
    cycle_strength: float = 2.0
    ref_scale: float = 1.0
    score_scale: float = 1.0
    seed: int = 0
    responses: np.ndarray = field(init=False, repr=False)
    logp_ref: np.ndarray = field(init=False, repr=False)
    h: np.ndarray = field(init=False, repr=False)
    groups: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        for nm, lo, hi in (("n_prompts", 1, 64), ("vocab_size", 2, 16), ("length", 1, 6)):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"{nm} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.vocab_size**self.length > 5000:
            raise ValueError(
                f"vocab_size**length = {self.vocab_size**self.length} responses is too many to enumerate (max 5000)"
            )
        self.alpha = check_fraction(self.alpha)
        if self.rule not in PREFERENCE_RULES:
            raise ValueError(f"rule must be one of {PREFERENCE_RULES}, got {self.rule!r}")
        if not (math.isfinite(self.cycle_strength) and self.cycle_strength >= 0):
            raise ValueError(f"cycle_strength must be a finite number ≥ 0, got {self.cycle_strength!r}")
        rng = np.random.default_rng(self.seed)
        P, V, L = self.n_prompts, self.vocab_size, self.length
        self.responses = np.array(list(itertools.product(range(V), repeat=L)), dtype=np.int64)  # [M, L]
        bigram = log_softmax(self.ref_scale * rng.standard_normal((P, V + 1, V)), axis=-1)  # prev V = BOS
        prev = np.concatenate([np.full((len(self.responses), 1), V), self.responses[:, :-1]], axis=1)
        self.logp_ref = np.stack([bigram[x][prev, self.responses].sum(axis=1) for x in range(P)])  # [P, M], Σ_y exp = 1
        W = self.score_scale * rng.standard_normal((P, L, V))
        score = np.stack([W[x][np.arange(L), self.responses].sum(axis=1) for x in range(P)])  # [P, M]
        ref = np.exp(self.logp_ref)
        thresholds = [
            brentq(lambda c, x=x: float(ref[x] @ expit(score[x] - c)) - self.alpha, -60.0, 60.0, xtol=1e-14)
            for x in range(P)
        ]
        self.h = expit(score - np.asarray(thresholds)[:, None])
        self.groups = self.responses[:, 0] % 3

    # --- sizes and exact tables -------------------------------------------------

    @property
    def n_responses(self) -> int:
        """M = V^L."""
        return len(self.responses)

    @property
    def kappa(self) -> np.ndarray:
        """κ_x per prompt: 0 for Bradley–Terry, ±cycle_strength (sign flips with prompt parity) for cyclic."""
        k = 0.0 if self.rule == "bradley_terry" else self.cycle_strength
        return k * np.where(np.arange(self.n_prompts) % 2 == 0, 1.0, -1.0)

    @property
    def logp_pos_table(self) -> np.ndarray:
        """log p+(y|x) = log π_ref + log h − log α, shape [P, M]."""
        return self.logp_ref + np.log(self.h) - math.log(self.alpha)

    @property
    def logp_neg_table(self) -> np.ndarray:
        """log p−(y|x) = log π_ref + log(1 − h) − log(1 − α), shape [P, M]."""
        return self.logp_ref + np.log1p(-self.h) - math.log1p(-self.alpha)

    def log_relative_ratio_table(self, alpha=None) -> np.ndarray:
        """log r_α(y|x) for all (x, y), shape [P, M] (α defaults to the world's α)."""
        a = self.alpha if alpha is None else check_fraction(alpha)
        return ratios.log_relative_ratio(self.logp_pos_table, self.logp_neg_table, a)

    def pair_preference(self) -> np.ndarray:
        """P(y ≻ y' | x) for all (x, y, y'), shape [P, M, M]; P + Pᵀ = 1."""
        logh = np.log(self.h)
        cyc = _cyclic_sign(self.groups[:, None], self.groups[None, :])
        return expit(logh[:, :, None] - logh[:, None, :] + self.kappa[:, None, None] * cyc[None])

    def pair_distribution(self) -> np.ndarray:
        """Joint probability of a (prompt, chosen, rejected) triple, shape [P, M, M]:
        2 ρ(x) π_ref(y|x) π_ref(y'|x) P(y ≻ y' | x) (y chosen, y' rejected; the factor 2 counts both
        draw orders (y, y') and (y', y); on the diagonal it gives ρ π_ref(y|x)², as it should)."""
        ref = np.exp(self.logp_ref)
        return 2.0 * ref[:, :, None] * ref[:, None, :] * self.pair_preference() / self.n_prompts

    def cell_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint probabilities of (x, y, preferred) and (x, y, non-preferred) for a row with x ~ ρ,
        y ~ π_ref(·|x), label ~ Bernoulli(h): ρ π_ref h and ρ π_ref (1 − h), each [P, M]."""
        ref = np.exp(self.logp_ref) / self.n_prompts
        return ref * self.h, ref * (1.0 - self.h)

    # --- the common world interface ----------------------------------------------

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != 2 or not np.issubdtype(X.dtype, np.integer):
            raise ValueError(f"X must be an integer array [n, 2] of (prompt, response) indices, got {X.shape}")
        if X.size and (X[:, 0].min() < 0 or X[:, 0].max() >= self.n_prompts):
            raise ValueError(f"prompt indices must lie in [0, {self.n_prompts}), got {X[:, 0].min()}…{X[:, 0].max()}")
        if X.size and (X[:, 1].min() < 0 or X[:, 1].max() >= self.n_responses):
            raise ValueError(f"response indices must lie in [0, {self.n_responses}), got {X[:, 1].min()}…")
        return X

    def logpdf_pos(self, X):
        """log p+(y|x) at X = [(x, y)], shape [n]."""
        X = self._check_X(X)
        return self.logp_pos_table[X[:, 0], X[:, 1]]

    def logpdf_neg(self, X):
        """log p−(y|x) at X = [(x, y)], shape [n]."""
        X = self._check_X(X)
        return self.logp_neg_table[X[:, 0], X[:, 1]]

    def logpdf_ref(self, X):
        """log π_ref(y|x) at X = [(x, y)], shape [n]."""
        X = self._check_X(X)
        return self.logp_ref[X[:, 0], X[:, 1]]

    def _draw_given(self, x: np.ndarray, logp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One response per prompt in ``x`` from the conditional table exp(logp[x]) (inverse-CDF draw)."""
        prob = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
        cdf = np.cumsum(prob, axis=1)
        return np.minimum((rng.random(len(x))[:, None] > cdf[x]).sum(axis=1), self.n_responses - 1)

    def _sample_table(self, n, rng, logp: np.ndarray) -> np.ndarray:
        n, rng = _check_n(n), _check_rng(rng)
        x = rng.integers(0, self.n_prompts, size=n)
        return np.stack([x, self._draw_given(x, logp, rng)], axis=1)

    def sample_pos(self, n, rng):
        """n draws (x, y): x ~ ρ, y ~ p+(·|x). Shape [n, 2]."""
        return self._sample_table(n, rng, self.logp_pos_table)

    def sample_neg(self, n, rng):
        """n draws (x, y): x ~ ρ, y ~ p−(·|x). Shape [n, 2]."""
        return self._sample_table(n, rng, self.logp_neg_table)

    def sample_ref(self, n, rng):
        """n draws (x, y): x ~ ρ, y ~ π_ref(·|x). Shape [n, 2]."""
        return self._sample_table(n, rng, self.logp_ref)

    def sample_rows(self, n, rng):
        """n on-policy labelled rows: x ~ ρ, y ~ π_ref(·|x), preferred ~ Bernoulli(h(x, y)).

        Returns ``(X, preferred)``; the preferred fraction is ≈ α (Binomial), and the rows'
        preferred / non-preferred responses are draws from p+ / p−.
        """
        X = self.sample_ref(n, rng)
        preferred = rng.random(len(X)) < self.h[X[:, 0], X[:, 1]]
        return X, preferred

    def sample_pairs(self, n, rng):
        """n preference pairs: x ~ ρ, y, y' ~ π_ref(·|x) independently, y chosen with
        probability P(y ≻ y' | x). Returns an int array [n, 3] of (prompt, chosen, rejected)."""
        n, rng = _check_n(n), _check_rng(rng)
        x = rng.integers(0, self.n_prompts, size=n)
        y1 = self._draw_given(x, self.logp_ref, rng)
        y2 = self._draw_given(x, self.logp_ref, rng)
        first_wins = rng.random(n) < self.pair_preference()[x, y1, y2]
        return np.stack([x, np.where(first_wins, y1, y2), np.where(first_wins, y2, y1)], axis=1)
