"""F5 — relative vs plain density-ratio estimators: error and variance vs overlap (claim 4).

Drawn from experiment E4 (``rdro.simulations.experiments``, estimators from ``rdro.estimators``):
Gaussian mean-shift worlds with growing shift δ; each estimator is fitted on the same n samples per
class for several seeds and compared on the common scale r_α (plain estimates ĝ are mapped through
r_α = g / (α g + 1 − α)). Drawn: mean squared error against the true r_α (mean over seeds, 95 %
band), the variance of r̂_α across seeds, and the plain/relative MSE ratios.
"""

from __future__ import annotations

import numpy as np

from rdro.paper_figures.experiment_results import column, load_experiment, select_rows
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result
from rdro.paper_figures.style import method_style, new_figure, plot_with_band

__all__ = ["INFO", "compute", "draw"]

INFO = FigureInfo(
    figure_id="F5",
    stem="F05_estimators",
    title="Relative vs plain density-ratio estimators: error and variance as the overlap shrinks",
    caption=(
        "Experiment E4: p+ = N(δ, 1), p− = N(0, 1), the same n samples per class for every estimator and seed. "
        "Relative estimators (RuLSIF; relative logistic = the RDRO loss) estimate r_α directly; plain ones (uLSIF, "
        "KLIEP, logistic) estimate g, mapped to r_α = g / (α g + 1 − α) for comparison. (a) Mean squared error "
        "against the true r_α on test points from q_α (mean over seeds, 95 % band, cut at the bottom of the panel "
        "where it reaches below zero). (b) Variance of r̂_α across seeds, averaged over test points. (c) MSE of each "
        "plain estimator over its relative counterpart, uLSIF / RuLSIF and logistic / relative logistic (KLIEP has "
        "no relative counterpart; > 1: the relative one is better)."
    ),
    claims=(4,),
    compute_version=2,
)

ESTIMATORS = {  # E4 estimator -> style key
    "RuLSIF": "rulsif",
    "RelativeLogisticRatio": "relative_logistic",
    "ULSIF": "ulsif",
    "KLIEP": "kliep",
    "LogisticRatio": "logistic",
}
RATIOS = {  # E4 mse_ratio row -> (style key, label)
    "ULSIF/RuLSIF": ("ulsif", "uLSIF / RuLSIF"),
    "LogisticRatio/RelativeLogisticRatio": ("logistic", "logistic / relative logistic"),
}


def compute(settings: RunSettings) -> dict:
    """E4's per-estimator series vs shift (MSE with CI, variance, bias²), the MSE ratios and E4's checks."""
    e4 = load_experiment("E4", settings)
    series = {}
    for est in ESTIMATORS:
        entry = {}
        for quantity in ("mse_r_alpha", "variance_r_alpha", "bias2_r_alpha"):
            rows = sorted(select_rows(e4["summary"], estimator=est, quantity=quantity), key=lambda r: r["shift"])
            entry[quantity] = {k: column(rows, k) for k in ("shift", "mean", "ci_lo", "ci_hi")}
        series[est] = entry
    ratios = {}
    for name in RATIOS:
        rows = sorted(select_rows(e4["summary"], estimator=name, quantity="mse_ratio"), key=lambda r: r["shift"])
        ratios[name] = {"shift": column(rows, "shift"), "mean": column(rows, "mean")}
    cfg = e4["meta"]["config"]
    return {
        "figure": INFO.figure_id,
        "data": {
            "series": series,
            "ratios": ratios,
            "alpha": cfg.get("alpha"),
            "n_per_class": cfg.get("n_per_class"),
            "seeds": cfg.get("seeds"),
        },
        "checks": checks_from_result(e4, "E4"),
        "meta": {"E4": e4["meta"]},
    }


def draw(results: dict):
    """(a) MSE vs shift; (b) variance across seeds vs shift; (c) plain/relative MSE ratio vs shift."""
    d = results["data"]
    fig, (ax_a, ax_b, ax_c) = new_figure(3, title=INFO.title, panel_size=(4.1, 3.4))
    means = [v for e in d["series"].values() for v in e["mse_r_alpha"]["mean"] if np.isfinite(v) and v > 0]
    floor = min(means) / 20 if means else 1e-9
    for est, key in ESTIMATORS.items():
        style = method_style(key)
        mse = d["series"][est]["mse_r_alpha"]
        lo = np.maximum(np.asarray(mse["ci_lo"], dtype=float), floor)
        plot_with_band(ax_a, mse["shift"], mse["mean"], lo, mse["ci_hi"], style=style)
        var = d["series"][est]["variance_r_alpha"]
        plot_with_band(ax_b, var["shift"], var["mean"], style=style)
    for ax, ylabel, title in (
        (ax_a, "MSE of r̂_α vs r_α (log scale)", f"(a) error, n = {d['n_per_class']} per class"),
        (ax_b, "variance of r̂_α across seeds (log scale)", f"(b) variance over {d['seeds']} seeds"),
    ):
        ax.set_yscale("log")
        ax.set_xlabel("mean shift δ (overlap shrinks →)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    ax_a.legend(loc="upper left", fontsize=7)
    for name, (key, label) in RATIOS.items():
        r = d["ratios"][name]
        plot_with_band(ax_c, r["shift"], r["mean"], style={**method_style(key), "label": label})
    ax_c.axhline(1.0, color="0.4", linestyle=":", linewidth=1.0)
    ax_c.set_yscale("log")
    ax_c.set_xlabel("mean shift δ (overlap shrinks →)")
    ax_c.set_ylabel("MSE plain / MSE relative (log scale)")
    ax_c.set_title(f"(c) plain over relative, α = {d['alpha']:g}")
    ax_c.legend(loc="upper left", fontsize=7)
    return fig
