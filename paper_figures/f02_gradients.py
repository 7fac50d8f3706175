"""F2 — loss gradients in t: RDRO (both classes), DDRO raw and stabilised, KTO (claim 1).

Pure computation from ``rdro.losses``: each loss is evaluated per row (``reduction="none"``) on
a grid of sequence log-ratios t and differentiated by autograd, dℓ/dt. The closed form of RDRO's
gradient (``rdro_loss_grad``: (1 + α)σ(t) − 1 for preferred rows, (1 − α)σ(t) for non-preferred
rows) is compared with autograd as a check on the implementation. DDRO is the [reconstructed]
Bregman loss on g_θ = (1 − μ)e^t/(1 − μe^t), which has a pole at t = log(1/μ).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rdro.losses import ddro_loss, kto_loss, rdro_loss, rdro_loss_grad
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, make_check
from rdro.paper_figures.style import method_style, new_figure

__all__ = ["INFO", "compute", "draw", "loss_gradient"]

INFO = FigureInfo(
    figure_id="F2",
    stem="F02_gradients",
    title="Loss gradients dℓ/dt: RDRO stays bounded, DDRO diverges at its pole",
    caption=(
        "Per-row derivative of each loss with respect to the sequence log-ratio t = log π_θ − log π_ref, "
        "computed by autograd through rdro.losses. (a) RDRO's gradients lie in [−1, α] (preferred) and "
        "[0, 1 − α] (non-preferred) for every t; KTO's are bounded by β/4. (b) |dℓ/dt| on a log scale: the "
        "raw [reconstructed] DDRO gradient blows up as t approaches log(1/μ); the stabilised form clips t at "
        "log(1/μ) − ε (its gradient is zero beyond the clip; the panel stops at the pole). (c) The largest |dℓ/dt| "
        "over t ≤ log(1/μ) − ε as the distance ε to the pole shrinks (log–log): raw DDRO grows without bound for "
        "every Bregman f — like ε^−1 (logistic), ε^−2 (KLIEP) and ε^−3 (LSIF), the slopes in the legend — while "
        "RDRO stays ≤ 1."
    ),
    claims=(1,),
    compute_version=3,
)

ALPHA = 0.39  # UF-G's preferred fraction; α = μ so the DDRO pole sits at log(1/α)
KTO_BETA = 0.1
CLIP_MARGIN = 1e-2


def loss_gradient(loss_fn, t: np.ndarray, preferred: bool) -> np.ndarray:
    """dℓ/dt by autograd for per-row loss ``loss_fn(t_tensor, preferred_tensor)`` (reduction "none").

    ``t`` is evaluated in float64; the result has the shape of ``t``.
    """
    tt = torch.tensor(np.asarray(t, dtype=np.float64), requires_grad=True)
    pref = torch.full(tt.shape, bool(preferred), dtype=torch.bool)
    loss_fn(tt, pref).sum().backward()
    return tt.grad.detach().numpy()


def _rdro(alpha):
    return lambda t, p: rdro_loss(t, p, alpha, reduction="none")


def _ddro(mu, divergence="logistic", stabilize=False):
    return lambda t, p: ddro_loss(
        t, p, mu, divergence=divergence, stabilize=stabilize, clip_margin=CLIP_MARGIN, reduction="none"
    )


def _kto(t, p):
    return kto_loss(t, p, reference_point=0.0, beta=KTO_BETA, reduction="none")


def _max_abs_both(loss_fn, t):
    return float(np.max(np.abs(np.concatenate([loss_gradient(loss_fn, t, True), loss_gradient(loss_fn, t, False)]))))


def compute(settings: RunSettings) -> dict:
    """Gradients dℓ/dt on t grids for RDRO, KTO, DDRO (raw, stabilised); checks for claim 1."""
    pole = math.log(1.0 / ALPHA)  # DDRO's model g_θ diverges at e^t = 1/μ
    t_wide = np.linspace(-8.0, 8.0, 641)
    t_below = np.concatenate([np.linspace(-4.0, pole - 2e-3, 500), pole - np.logspace(-3.0, -6.0, 60)])
    eps = np.logspace(-6.0, 0.0, 25)  # distance to the pole

    curves_a = {
        "rdro_preferred": loss_gradient(_rdro(ALPHA), t_wide, True),
        "rdro_nonpreferred": loss_gradient(_rdro(ALPHA), t_wide, False),
        "kto_preferred": loss_gradient(_kto, t_wide, True),
        "kto_nonpreferred": loss_gradient(_kto, t_wide, False),
    }
    curves_b = {
        "ddro_raw_nonpreferred": loss_gradient(_ddro(ALPHA), t_below, False),
        "ddro_raw_preferred": loss_gradient(_ddro(ALPHA), t_below, True),
        "ddro_stabilized_nonpreferred": loss_gradient(_ddro(ALPHA, stabilize=True), t_below, False),
        "rdro_nonpreferred": loss_gradient(_rdro(ALPHA), t_below, False),
        "rdro_preferred": loss_gradient(_rdro(ALPHA), t_below, True),
    }

    # (c) max |dℓ/dt| over t ∈ [−4, pole − ε] for shrinking ε, both classes
    growth = {name: [] for name in ("ddro_raw_logistic", "ddro_raw_lsif", "ddro_raw_kliep", "ddro_stabilized", "rdro")}
    for e in eps:
        grid = np.linspace(-4.0, pole - e, 400)
        if e < CLIP_MARGIN:  # put the stabiliser's clip point itself on the grid
            grid = np.sort(np.append(grid, pole - CLIP_MARGIN))
        growth["ddro_raw_logistic"].append(_max_abs_both(_ddro(ALPHA, "logistic"), grid))
        growth["ddro_raw_lsif"].append(_max_abs_both(_ddro(ALPHA, "lsif"), grid))
        growth["ddro_raw_kliep"].append(_max_abs_both(_ddro(ALPHA, "kliep"), grid))
        growth["ddro_stabilized"].append(_max_abs_both(_ddro(ALPHA, stabilize=True), grid))
        growth["rdro"].append(_max_abs_both(_rdro(ALPHA), grid))

    # checks: RDRO's bound over a very wide grid and several α; closed form = autograd; DDRO's divergence rate
    t_check = np.linspace(-50.0, 50.0, 2001)
    alphas = (0.05, 0.39, 0.5, 0.95)
    rdro_max = max(_max_abs_both(_rdro(a), t_check) for a in alphas)
    tt = torch.tensor(t_check, dtype=torch.float64)
    closed_gap = 0.0
    for a in alphas:
        for pref in (True, False):
            closed = rdro_loss_grad(tt, torch.full(tt.shape, pref), a).numpy()
            closed_gap = max(closed_gap, float(np.max(np.abs(closed - loss_gradient(_rdro(a), t_check, pref)))))
    slopes = {}
    for name in ("ddro_raw_logistic", "ddro_raw_lsif", "ddro_raw_kliep"):
        small = eps <= 1e-2  # the asymptotic regime near the pole
        slopes[name] = float(np.polyfit(np.log(eps[small]), np.log(np.asarray(growth[name])[small]), 1)[0])
    worst_slope = max(slopes.values())
    checks = [
        make_check(
            1,
            f"max |dℓ/dt| of RDRO over t ∈ [−50, 50], both classes, α ∈ {list(alphas)}",
            rdro_max,
            "≤ 1",
            rdro_max <= 1.0,
            "F2 autograd grid",
        ),
        make_check(
            1,
            "max |autograd − closed-form rdro_loss_grad| on the same grid (float64, both exact for every t)",
            closed_gap,
            "≤ 1e-12",
            closed_gap <= 1e-12,
            "F2 autograd grid",
        ),
        make_check(
            1,
            "raw DDRO (worst of logistic/LSIF/KLIEP): log–log slope of max |dℓ/dt| vs distance ε to log(1/μ), ε ≤ 1e-2",
            worst_slope,
            "≤ −0.5 (diverges as ε → 0)",
            worst_slope <= -0.5,
            "F2 autograd grid",
        ),
    ]
    return {
        "figure": INFO.figure_id,
        "data": {
            "alpha": ALPHA,
            "mu": ALPHA,
            "kto_beta": KTO_BETA,
            "clip_margin": CLIP_MARGIN,
            "pole": pole,
            "t_wide": t_wide,
            "curves_a": curves_a,
            "t_below": t_below,
            "curves_b": curves_b,
            "eps": eps,
            "growth": growth,
            "slopes": slopes,
        },
        "checks": checks,
        "meta": {
            "seed": None,
            "sizes": {"t_wide": len(t_wide), "t_below": len(t_below), "eps": len(eps), "t_check": len(t_check)},
            "note": "deterministic: no sampling",
        },
    }


def draw(results: dict):
    """Three panels: (a) dℓ/dt of RDRO and KTO; (b) |dℓ/dt| of DDRO raw/stabilised vs RDRO; (c) growth near the pole."""
    d = results["data"]
    alpha, pole = d["alpha"], d["pole"]
    fig, (ax_a, ax_b, ax_c) = new_figure(3, title=INFO.title, panel_size=(4.1, 3.3))

    t = np.asarray(d["t_wide"])
    ca = d["curves_a"]
    kto = method_style("kto")
    ax_a.plot(t, ca["rdro_preferred"], **{**method_style("rdro_preferred"), "label": "RDRO, preferred"})
    ax_a.plot(t, ca["rdro_nonpreferred"], **{**method_style("rdro_nonpreferred"), "label": "RDRO, non-preferred"})
    ax_a.plot(t, ca["kto_preferred"], color=kto["color"], linestyle="-", label=f"KTO (β={d['kto_beta']}), preferred")
    ax_a.plot(t, ca["kto_nonpreferred"], color=kto["color"], linestyle="--", label="KTO, non-preferred")
    for y in (-1.0, 1.0):
        ax_a.axhline(y, color="0.35", linestyle=":", linewidth=1.0)
    ax_a.axvline(math.log(1 / alpha), color="0.5", linestyle="-.", linewidth=0.9)
    ax_a.text(math.log(1 / alpha) + 0.15, -0.62, "t = log(1/α)", fontsize=7.5, color="0.35")
    ax_a.set_ylim(-1.15, 1.15)
    ax_a.set_xlabel("sequence log-ratio t (nats)")
    ax_a.set_ylabel("dℓ/dt (per row)")
    ax_a.set_title(f"(a) RDRO and KTO, α = {alpha}")
    ax_a.legend(loc="upper left")

    tb = np.asarray(d["t_below"])
    cb = d["curves_b"]
    raw, stab = method_style("ddro_raw"), method_style("ddro_stabilized")
    ax_b.semilogy(tb, np.abs(cb["ddro_raw_nonpreferred"]), color=raw["color"], label="DDRO raw, non-preferred")
    ax_b.semilogy(
        tb, np.abs(cb["ddro_raw_preferred"]) + 1e-12, color=raw["color"], linestyle=":", label="DDRO raw, preferred"
    )
    stab_abs = np.abs(cb["ddro_stabilized_nonpreferred"])
    keep = stab_abs > 0  # zero beyond the clip: not drawable on a log axis
    ax_b.semilogy(tb[keep], stab_abs[keep], color=stab["color"], linestyle="--", label="DDRO stabilised, non-pref.")
    ax_b.semilogy(
        tb, np.abs(cb["rdro_nonpreferred"]), **{**method_style("rdro_nonpreferred"), "label": "RDRO, non-preferred"}
    )
    ax_b.axvline(pole, color="0.3", linestyle="-.", linewidth=0.9)
    ax_b.text(pole - 0.08, 2e-3, "pole\nt = log(1/μ)", fontsize=7.5, color="0.3", ha="right")
    ax_b.set_ylim(1e-4, 3e6)
    ax_b.set_xlabel("sequence log-ratio t (nats)")
    ax_b.set_ylabel("|dℓ/dt| (log scale)")
    ax_b.set_title(f"(b) DDRO [reconstructed], μ = {d['mu']}")
    ax_b.legend(loc="upper left")

    eps = np.asarray(d["eps"])
    g = d["growth"]
    for key, label, ls in (
        ("ddro_raw_logistic", "DDRO raw, logistic f", "-"),
        ("ddro_raw_lsif", "DDRO raw, LSIF f", "--"),
        ("ddro_raw_kliep", "DDRO raw, KLIEP f", ":"),
    ):
        ax_c.loglog(eps, g[key], color=raw["color"], linestyle=ls, label=f"{label} (slope {d['slopes'][key]:.2f})")
    ax_c.loglog(
        eps,
        g["ddro_stabilized"],
        color=stab["color"],
        linestyle="--",
        label=f"DDRO stabilised (ε_clip={d['clip_margin']})",
    )
    ax_c.loglog(eps, g["rdro"], **{**method_style("rdro"), "marker": None, "label": "RDRO"})
    ax_c.axhline(1.0, color="0.35", linestyle=":", linewidth=1.0)
    ax_c.invert_xaxis()
    ax_c.set_xlabel("distance ε to the pole log(1/μ) (nats, decreasing →)")
    ax_c.set_ylabel("max |dℓ/dt| over t ≤ log(1/μ) − ε")
    ax_c.set_title("(c) growth near the pole")
    ax_c.legend(loc="upper left")
    return fig
