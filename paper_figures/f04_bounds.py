"""F4 — convergence bounds vs measured excess risk; DDRO/RDRO bound ratio vs R (claim 3, [reconstructed]).

Drawn from experiment E3 (``rdro.simulations.experiments``, bounds from ``rdro.theory``): in a toy
language model, the per-class RDRO empirical risk minimiser over a clipped tabular class is fitted on
n rows per class (several seeds); its excess population risk is compared with the uniform-deviation
(Rademacher) bound at confidence 1 − δ. The bounds' form is [reconstructed] (shared/method.md §4.3):
RDRO's logistic loss on t ≤ log(1/α) has O(1) Lipschitz constant and O(log(1/α)) range; DDRO's
Bregman losses on g ∈ [0, R] have constants growing with the ordinary-ratio bound R.
"""

from __future__ import annotations

import numpy as np

from rdro.paper_figures.experiment_results import column, load_experiment, select_rows
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result
from rdro.paper_figures.style import method_style, new_figure, plot_with_band

__all__ = ["INFO", "compute", "draw"]

INFO = FigureInfo(
    figure_id="F4",
    stem="F04_bounds",
    title="Convergence bounds [reconstructed]: measured excess risk under the bound; DDRO/RDRO bound ratio grows with R",
    caption=(
        "Experiment E3, toy language model, bounds from rdro.theory (a [reconstructed] Rademacher form). (a) Excess "
        "population risk of per-class RDRO's empirical risk minimiser vs the number of rows per class (mean over "
        "seeds, 95 % band) and RDRO's uniform-deviation bound at confidence 1 − δ; the fitted slope of each is in "
        "the legend. (b) DDRO's and RDRO's bounds at the largest n vs the ordinary-ratio bound R of DDRO's model "
        "class. Both on the same class of t: DDRO's model g ∈ [1/R, R], RDRO's t ∈ [log r_α(1/R), "
        "log(1/α)]. (c) Their ratio DDRO / RDRO vs R: RDRO's bound grows only through the log R in the range of its "
        "loss (its target r_α ≤ 1/α whatever R), DDRO's with R itself."
    ),
    claims=(3,),
    compute_version=3,
)


def compute(settings: RunSettings) -> dict:
    """E3's excess-risk series with its bound, the slopes, the bounds and their ratio vs R, and E3's checks."""
    e3 = load_experiment("E3", settings)
    excess = sorted(select_rows(e3["summary"], quantity="excess_risk"), key=lambda r: r["n_per_class"])
    slopes = {q: (select_rows(e3["summary"], quantity=q) or [{}])[0] for q in ("excess_risk_slope", "bound_slope")}
    ratio_rows = sorted((r for r in e3["table"] if r.get("kind") == "bound_ratio"), key=lambda r: r["R"])
    cfg = e3["meta"]["config"]
    return {
        "figure": INFO.figure_id,
        "data": {
            "n_per_class": column(excess, "n_per_class"),
            "excess_mean": column(excess, "mean"),
            "excess_ci_lo": column(excess, "ci_lo"),
            "excess_ci_hi": column(excess, "ci_hi"),
            "bound": column(excess, "bound"),
            "violations": column(excess, "violations"),
            "excess_slope": slopes["excess_risk_slope"].get("slope"),
            "bound_slope": slopes["bound_slope"].get("slope"),
            "R": column(ratio_rows, "R"),
            "ddro_bound": column(ratio_rows, "ddro_bound"),
            "rdro_bound": column(ratio_rows, "rdro_bound"),
            "ratio": column(ratio_rows, "ratio"),
            "ratio_n_per_class": ratio_rows[0]["n_per_class"] if ratio_rows else None,
            "alpha": cfg.get("alpha"),
            "delta": cfg.get("delta"),
            "seeds": cfg.get("seeds"),
        },
        "checks": checks_from_result(e3, "E3"),
        "meta": {"E3": e3["meta"]},
    }


def draw(results: dict):
    """(a) excess risk and bound vs n; (b) both bounds vs R; (c) their ratio vs R."""
    d = results["data"]
    fig, (ax_a, ax_b, ax_c) = new_figure(3, title=INFO.title, panel_size=(4.1, 3.4))
    rdro, ddro = method_style("rdro_per_class"), method_style("ddro")
    n = np.asarray(d["n_per_class"], dtype=float)
    mean = np.asarray(d["excess_mean"], dtype=float)
    positive = mean[np.isfinite(mean) & (mean > 0)]
    floor = positive.min() / 20 if positive.size else 1e-12
    lo = np.maximum(np.asarray(d["excess_ci_lo"], dtype=float), floor)
    slope = f", slope {d['excess_slope']:.2f}" if d.get("excess_slope") is not None else ""
    plot_with_band(ax_a, n, mean, lo, d["excess_ci_hi"], style={**rdro, "label": f"measured excess risk{slope}"})
    bslope = f", slope {d['bound_slope']:.2f}" if d.get("bound_slope") is not None else ""
    ax_a.plot(n, d["bound"], color="0.15", linestyle="--", marker=None, label=f"RDRO bound (δ = {d['delta']}){bslope}")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    ax_a.set_xlabel("rows per class n (log scale)")
    ax_a.set_ylabel("excess population risk (nats)")
    ax_a.set_title(f"(a) excess risk vs bound, α = {d['alpha']:g}")
    ax_a.legend(loc="lower left", fontsize=7)

    R = np.asarray(d["R"], dtype=float)
    ax_b.loglog(R, d["ddro_bound"], **{**ddro, "label": "DDRO bound"})
    ax_b.loglog(R, d["rdro_bound"], **{**rdro, "label": "RDRO bound"})
    ax_b.set_xlabel("ordinary-ratio bound R (log scale)")
    ax_b.set_ylabel("uniform-deviation bound (nats)")
    ax_b.set_title(f"(b) bounds at n = {d['ratio_n_per_class']} per class")
    ax_b.legend(loc="upper left", fontsize=7)

    ax_c.loglog(R, d["ratio"], color="0.15", marker="o", label="DDRO bound / RDRO bound")
    ax_c.axhline(1.0, color="0.5", linestyle=":", linewidth=1.0)
    ax_c.set_xlabel("ordinary-ratio bound R (log scale)")
    ax_c.set_ylabel("bound ratio DDRO / RDRO")
    ax_c.set_title("(c) the ratio grows with R")
    ax_c.legend(loc="upper left", fontsize=7)
    return fig
