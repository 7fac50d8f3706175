"""F7 — α sensitivity and class imbalance: pooled vs per-class RDRO (claim 2 and method.md §2).

Drawn from experiment E6 (``rdro.simulations.experiments``), a toy language model with on-policy
labelled rows (π_ref = q_α, true preferred fraction α). (a) The per-class loss fitted with α' on a
grid: π_θ reaches p+ only at α' = α. (b) Rows stratified to a preferred fraction π+ with the true
α: the per-class loss reaches p+ for every π+, the pooled loss (the authors' code) only at π+ = ½.
Population fits (exact expected counts) as dotted lines; fits on n rows as solid lines with 95 %
t-interval bands over seeds.

E6's checks test claim 2 / §2 of method.md (the preferred-fraction choice of
α and the two empirical forms), not claim 6 (training dynamics), so they are counted for claim 2.
"""

from __future__ import annotations

from rdro.paper_figures.experiment_results import column, load_experiment, select_rows
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result
from rdro.paper_figures.style import method_style, new_figure, plot_with_band

__all__ = ["INFO", "compute", "draw"]

INFO = FigureInfo(
    figure_id="F7",
    stem="F07_alpha_imbalance",
    title="α sensitivity and class imbalance: per-class RDRO needs the right α, pooled needs π+ = ½",
    caption=(
        "Experiment E6, toy language model with labelled rows sampled from π_ref = q_α. (a) Per-class RDRO fitted "
        "with α' instead of the true preferred fraction α: KL(π_θ ‖ p+) is zero only at α' = α (dotted: population "
        "fit; solid: n rows, mean over seeds with 95 % band). (b) Rows stratified to a preferred fraction π+, true α: "
        "the per-class loss reaches p+ for every class balance, the pooled loss (as in the authors' code) only at "
        "π+ = ½ — its optimum is pooled_rdro_target. The n-row fits with a wrong target (pooled at π+ ≠ ½, α' ≠ α) "
        "lie well above their own population fits (e.g. 1.94 against 0.96 nats, pooled at π+ = 0.1, in one sample of 20000 rows; "
        "more L-BFGS iterations, 150 to 2000, do not change them). A wrong target's mass Σ_y π_ref r is not 1 (≈ 0.2 "
        "per prompt for pooled at π+ = 0.1), so the normalised policy must put the rest somewhere, and it goes where "
        "the loss resists least — to a rarely seen response, chosen by a few counts: in that sample 0.80 of prompt 0's "
        "mass sits on a response with 1 preferred and 2 non-preferred rows (π_ref = 0.002), where the population "
        "fit puts 0.85 on another response. The wrong-target fits are unstable in n, not just biased."
    ),
    claims=(2,),
    compute_version=1,
)


def _series(summary, part: str, n, reduction: str, x_key: str) -> dict:
    rows = select_rows(summary, part=part, n=n, reduction=reduction)
    rows.sort(key=lambda r: r[x_key])
    return {
        "x": column(rows, x_key),
        "mean": column(rows, "mean"),
        "ci_lo": column(rows, "ci_lo"),
        "ci_hi": column(rows, "ci_hi"),
    }


def compute(settings: RunSettings) -> dict:
    """E6's KL(π_θ ‖ p+) series (α sweep; π+ sweep × reduction; population and n) and its checks."""
    e6 = load_experiment("E6", settings)
    cfg = e6["meta"]["config"]
    series = {}
    for n in ("population", cfg["n"]):
        series[f"alpha/{n}"] = _series(e6["summary"], "alpha", n, "per_class", "alpha_used")
        for reduction in ("per_class", "pooled"):
            series[f"imbalance/{n}/{reduction}"] = _series(
                e6["summary"], "imbalance", n, reduction, "preferred_fraction"
            )
    return {
        "figure": INFO.figure_id,
        "data": {"series": series, "alpha": cfg["alpha"], "n": cfg["n"], "seeds": cfg["seeds"]},
        # E6's checks test claim 2 / §2 (see the module docstring)
        "checks": checks_from_result(e6, "E6", claims=[2]),
        "meta": {"E6": e6["meta"]},
    }


def draw(results: dict):
    """(a) KL vs α'; (b) KL vs preferred fraction π+ for per-class and pooled RDRO."""
    d = results["data"]
    n = d["n"]
    fig, (ax_a, ax_b) = new_figure(2, title=INFO.title, panel_size=(4.8, 3.6))
    style = method_style("rdro_per_class")
    pop = d["series"]["alpha/population"]
    ax_a.plot(pop["x"], pop["mean"], **{**style, "linestyle": ":", "label": "per-class, population fit"})
    s = d["series"][f"alpha/{n}"]
    plot_with_band(
        ax_a,
        s["x"],
        s["mean"],
        s["ci_lo"],
        s["ci_hi"],
        style={**style, "linestyle": "-", "label": f"per-class, n = {n}"},
    )
    ax_a.axvline(d["alpha"], color="0.3", linestyle="-.", linewidth=0.9)
    ax_a.annotate(" true α", (d["alpha"], 0.02), xycoords=("data", "axes fraction"), color="0.3", fontsize=8)
    ax_a.set_xlabel("α' used in the loss")
    ax_a.set_ylabel("KL(π_θ ‖ p+) (nats)")
    ax_a.set_title(f"(a) α sensitivity (true α = {d['alpha']:g})")
    ax_a.legend(loc="upper left")

    for reduction in ("per_class", "pooled"):
        style = method_style(f"rdro_{reduction}")
        pop = d["series"][f"imbalance/population/{reduction}"]
        ax_b.plot(pop["x"], pop["mean"], **{**style, "linestyle": ":", "label": f"{style['label']}, population fit"})
        s = d["series"][f"imbalance/{n}/{reduction}"]
        plot_with_band(
            ax_b,
            s["x"],
            s["mean"],
            s["ci_lo"],
            s["ci_hi"],
            style={**style, "linestyle": "-", "label": f"{style['label']}, n = {n}"},
        )
    ax_b.axvline(0.5, color="0.3", linestyle="-.", linewidth=0.9)
    ax_b.set_xlabel("preferred fraction π+ of the rows")
    ax_b.set_ylabel("KL(π_θ ‖ p+) (nats)")
    ax_b.set_title(f"(b) class imbalance (α = {d['alpha']:g})")
    ax_b.legend(loc="upper right")
    return fig
