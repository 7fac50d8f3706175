"""Density-ratio definitions: relative ratio r_α, ordinary ratio g, and the maps between them.

Notation (shared/method.md): q_α = α p+ + (1 − α) p−, r_α = p+ / q_α ∈ [0, 1/α],
g = p+ / p− (unbounded). Each helper accepts numpy arrays, Python floats or torch
tensors and returns the same kind. ``log_*`` variants work on log-densities and
stay exact where the densities underflow.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "check_fraction",
    "relative_ratio",
    "log_relative_ratio",
    "ordinary_ratio",
    "log_ordinary_ratio",
    "relative_from_ordinary",
    "ordinary_from_relative",
    "pooled_rdro_target",
    "ddro_ratio",
    "relative_ratio_bound",
]


def check_fraction(alpha, name: str = "alpha") -> float:
    """``alpha`` as a float strictly inside (0, 1) (α, μ, a preferred fraction), else a ValueError naming ``name``."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}") from None
    if not (0.0 < a < 1.0):
        raise ValueError(f"{name} must lie strictly inside (0, 1), got {alpha!r}")
    return a


def _lib(x):
    return torch if isinstance(x, torch.Tensor) else np


def relative_ratio_bound(alpha) -> float:
    """sup r_α = 1/α, whatever p+ and p− are."""
    return 1.0 / check_fraction(alpha)


def relative_ratio(p_pos, p_neg, alpha):
    """r_α = p+ / (α p+ + (1 − α) p−), from the two densities (both ≥ 0, not both 0)."""
    a = check_fraction(alpha)
    return p_pos / (a * p_pos + (1.0 - a) * p_neg)


def log_relative_ratio(logp_pos, logp_neg, alpha):
    """log r_α = log p+ − logaddexp(log α + log p+, log(1 − α) + log p−)."""
    a = check_fraction(alpha)
    lib = _lib(logp_pos)
    return logp_pos - lib.logaddexp(math.log(a) + logp_pos, math.log1p(-a) + logp_neg)


def ordinary_ratio(p_pos, p_neg):
    """g = p+ / p− (infinite where p− = 0 < p+)."""
    return p_pos / p_neg


def log_ordinary_ratio(logp_pos, logp_neg):
    """log g = log p+ − log p−."""
    return logp_pos - logp_neg


def relative_from_ordinary(g, alpha):
    """r_α = g / (α g + 1 − α)  (monotone in g, → 1/α as g → ∞)."""
    a = check_fraction(alpha)
    return g / (a * g + (1.0 - a))


def ordinary_from_relative(r, alpha):
    """g = (1 − α) r / (1 − α r), the inverse of :func:`relative_from_ordinary` on r ∈ [0, 1/α)."""
    a = check_fraction(alpha)
    return (1.0 - a) * r / (1.0 - a * r)


def pooled_rdro_target(p_pos, p_neg, alpha, preferred_fraction):
    """The pointwise minimiser e^t of the *pooled* RDRO loss when a fraction π+ of rows is preferred:

        e^t = π+ p+ / (α π+ p+ + (1 − α)(1 − π+) p−)

    It equals r_α only when π+ = ½ (shared/method.md §2).
    """
    a = check_fraction(alpha)
    pi = check_fraction(preferred_fraction, "preferred_fraction")
    return pi * p_pos / (a * pi * p_pos + (1.0 - a) * (1.0 - pi) * p_neg)


def ddro_ratio(logratio, mu):
    """DDRO's ordinary-ratio model [reconstructed]: g_θ = (1 − μ) e^t / (1 − μ e^t).

    Diverges as e^t → 1/μ; negative (meaningless) beyond. See rdro.losses.ddro_log_ratio
    for the log form used in the loss.
    """
    m = check_fraction(mu, "mu")
    lib = _lib(logratio)
    e = lib.exp(logratio)
    return (1.0 - m) * e / (1.0 - m * e)
