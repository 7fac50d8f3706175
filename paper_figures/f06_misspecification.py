"""F6 — misspecification: distance to p+ vs n when preferences are not Bradley–Terry (claim 5).

Drawn from experiment E5 (``rdro.simulations.experiments``): a toy language model with an
intransitive ("cyclic", rock–paper–scissors, context-dependent) pair-preference rule and a
Bradley–Terry control. The rule changes only the pairs (DPO's data); the unpaired labelled rows of
the other methods have the same law under both rules. Each method's policy is fitted on n rows (DPO
on n/2 pairs) with several seeds; KL(π_θ ‖ p+) is drawn with 95 % t-interval bands, and each
method's population fit (on the exact expected counts) as a thin horizontal line — for KTO, whose
loss has no finite minimiser here, the policy after E5's fixed number of Adam steps.
"""

from __future__ import annotations

import math

import numpy as np

from rdro.paper_figures.experiment_results import column, load_experiment, select_rows
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result
from rdro.paper_figures.style import method_style, new_figure, plot_with_band

__all__ = ["INFO", "compute", "draw"]

INFO = FigureInfo(
    figure_id="F6",
    stem="F06_misspecification",
    title="Misspecification: a non-Bradley–Terry pair rule moves DPO away from p+; RDRO/DDRO reach p+",
    caption=(
        "Experiment E5, toy language model where the labelled rows are sampled from π_ref = q_α, so p+ is known. "
        "The preference rule changes only the pairs DPO learns from: the unpaired labelled rows of RDRO, DDRO "
        "[reconstructed], KTO and SFT have the same law under both rules, so their curves differ between the panels "
        "by sampling noise only. (a) Intransitive (cyclic, context-dependent) pair preferences: KL(π_θ ‖ p+) of each "
        "method's fitted policy vs the number of rows n (DPO: n/2 pairs). RDRO and stabilised DDRO keep falling towards 0; DPO "
        "falls towards its own population optimum, not p+ (thin horizontal lines: fits on the exact expected counts; "
        "RDRO's and DDRO's are ≈ 0, below the panel) — at small n DPO is as far from p+ under the control rule (b), so "
        "there the gap is estimation error, and the misspecification shows only as n grows. KTO's loss has no finite minimiser here: its curve and line are the "
        "policy after a fixed number of Adam steps, not an optimum, away from p+ under both rules. (b) Control with "
        "Bradley–Terry pairs, where DPO (β = 1) targets p+ as well. Lines: mean over seeds; bands: 95 % t-intervals, "
        "cut at the bottom of the panel where they reach below zero. Raw DDRO's fits can diverge: its line is the mean over all "
        "its fits, converged and diverged, drawn without a band, with the percentage of diverged fits beside each "
        "point; its converged fits reach ≈ 0.001–0.003 nats."
    ),
    claims=(5,),
    compute_version=4,
)

METHOD_STYLE = {  # E5 method -> style key
    "rdro_per_class": "rdro_per_class",
    "ddro_stabilized": "ddro_stabilized",
    "ddro": "ddro_raw",
    "kto": "kto",
    "dpo": "dpo",
    "sft": "sft",
}


def compute(settings: RunSettings) -> dict:
    """E5's KL(π_θ ‖ p+) series per (rule, method), population values, slopes and its checks."""
    e5 = load_experiment("E5", settings)
    cfg = e5["meta"]["config"]
    series = {}
    for rule in cfg["rules"]:
        for method in METHOD_STYLE:
            rows = [r for r in select_rows(e5["summary"], rule=rule, method=method) if isinstance(r["n"], (int, float))]
            rows.sort(key=lambda r: r["n"])
            population = select_rows(e5["summary"], rule=rule, method=method, n="population")
            slope = select_rows(e5["summary"], rule=rule, method=method, n="slope")
            series[f"{rule}/{method}"] = {
                "n": column(rows, "n"),
                "mean": column(rows, "mean"),
                "ci_lo": column(rows, "ci_lo"),
                "ci_hi": column(rows, "ci_hi"),
                "diverged_fraction": column(rows, "diverged_fraction"),
                "population": population[0]["mean"] if population else None,
                "slope": slope[0].get("slope") if slope else None,
            }
    return {
        "figure": INFO.figure_id,
        "data": {
            "series": series,
            "rules": cfg["rules"],
            "dpo_beta": cfg.get("dpo_beta"),
            "kto_beta": cfg.get("kto_beta"),
            "adam_steps": cfg.get("adam_steps"),
        },
        "checks": checks_from_result(e5, "E5"),
        "meta": {"E5": e5["meta"]},
    }


def draw(results: dict):
    """One log-log panel per preference rule (cyclic first): KL(π_θ ‖ p+) vs n per method."""
    d = results["data"]
    rules = sorted(d["rules"], key=lambda r: r != "cyclic")
    fig, axes = new_figure(len(rules), title=INFO.title, panel_size=(5.0, 3.7))
    titles = {"cyclic": "intransitive (cyclic) preferences", "bradley_terry": "Bradley–Terry control"}
    for i, (ax, rule) in enumerate(zip(axes, rules)):
        means = [v for m in METHOD_STYLE for v in d["series"][f"{rule}/{m}"]["mean"] if math.isfinite(v) and v > 0]
        floor = min(means) / 1000 if means else 1e-6  # room below the data for the legend
        for method, key in METHOD_STYLE.items():
            s = d["series"][f"{rule}/{method}"]
            style = method_style(key)
            label = style["label"]
            if method == "dpo":
                label += f" (β={d['dpo_beta']:g}, pairs)"
            if method == "kto" and d.get("adam_steps"):
                label += f" ({d['adam_steps']} Adam steps)"
            diverged = max([v for v in s["diverged_fraction"] if math.isfinite(v)] or [0.0])
            if s.get("slope") is not None and not diverged:  # a slope through partly diverged fits means nothing
                label += f", slope {s['slope']:.2f}"
            if diverged > 0:
                label += ", % of fits diverged at each n"
            lo = np.maximum(np.asarray(s["ci_lo"], dtype=float), floor)
            if diverged > 0:  # means over partly diverged fits: line only, the band would be meaningless
                plot_with_band(ax, s["n"], s["mean"], style={**style, "label": label})
                for n, mean, frac in zip(s["n"], s["mean"], s["diverged_fraction"]):
                    if math.isfinite(frac) and frac > 0 and math.isfinite(mean) and mean > 0:
                        ax.annotate(f"{frac:.0%}", (n, mean), textcoords="offset points", xytext=(0, 7), ha="center",
                                    fontsize=6.5, color=style["color"], zorder=5,
                                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})  # fmt: skip
            else:
                plot_with_band(ax, s["n"], s["mean"], lo, s["ci_hi"], style={**style, "label": label})
            pop = s.get("population")
            if pop is not None and pop > floor:
                ax.axhline(pop, color=style["color"], linestyle=(0, (1, 1.5)), linewidth=1.0, alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_xlabel("labelled rows n (log scale)")
        ax.set_ylabel("KL(π_θ ‖ p+) (nats, log scale)")
        ax.set_title(f"({'ab'[i]}) {titles.get(rule, rule)}")
        ax.legend(loc="lower left", fontsize=6.8)
    return fig
