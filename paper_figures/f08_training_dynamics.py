"""F8 — training dynamics on a real transformer trained on CPU (claim 6).

Drawn from the trainer's own per-step log in ``rdro.llm.known_preference`` (the same runs as F9,
plus the training-dynamics runs on the shipped example preference dataset): the gradient norm
(before clipping), the mean sequence log-ratio t per class, and the share of preferred rows whose t
lies within 0.1 of log(1/α), for RDRO vs DDRO (raw and stabilised [reconstructed]) vs KTO.
"""

from __future__ import annotations

import math

import numpy as np

from rdro.paper_figures.experiment_results import column, load_known_preference, select_rows
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result
from rdro.paper_figures.style import method_style, new_figure

__all__ = ["INFO", "compute", "draw"]

INFO = FigureInfo(
    figure_id="F8",
    stem="F08_training_dynamics",
    title="Training dynamics on a real transformer: gradient norms and log-ratios, RDRO vs DDRO vs KTO",
    caption=(
        "Per-step log of the project's trainer (rdro.llm.trainer) for LoRA policies. Top row: the known-preference "
        "data (threshold rule, on-policy rows; the learning rate decays linearly to 0 over the run, as in F9); bottom "
        "row: the shipped example preference dataset (off-policy; constant learning rate, a stability test at a fixed "
        "step size). "
        "Left: gradient norm before clipping (log scale). Middle: mean sequence log-ratio t of the batch's preferred "
        "rows (solid) and non-preferred rows (dashed); dotted: log(1/α), RDRO's bound on t; the axis stops 4 nats "
        "below it, so a series that falls further leaves the panel. Right: share of the batch's preferred rows with "
        "|t − log(1/α)| < 0.1 (lines; open circles: the held-out preferred rows at each evaluation, the statistic of "
        "the saturation check); dashed grey (known-preference data, where r_α is known): that share at the optimum "
        "π_θ = p+, where t = log r_α = log(w/α) and only the preferred rows with w ≈ 1 sit at the bound. A cross marks "
        "the step at which a run's weights became non-finite (drawn at its last finite value). Claim 6's row-level "
        "check fails for RDRO although its batch mean stays under the bound: some preferred rows end above "
        "log(1/α) + 0.1 — training rows as often as held-out ones, and neither more steps nor a larger LoRA rank "
        "removes them (README, stop 18). RDRO's loss is minimised at t = log(1/α) row by row, but a LoRA adapter "
        "moves the logits of similar responses together, so the fitted ratio of the normalised policy is bounded on "
        "average, not row by row."
    ),
    claims=(6,),
    compute_version=6,
)

METHODS = ("rdro_pooled", "rdro_per_class", "ddro_raw", "ddro_stabilized", "kto")
WORLDS = ("threshold", "example")
LOG_KEYS = ("grad_norm", "t_preferred_mean", "t_nonpreferred_mean", "share_near_bound_train")


def compute(settings: RunSettings) -> dict:
    """Per-step trainer-log series per (world, method), α per world, the claim-6 checks and meta."""
    kp = load_known_preference(settings)
    series, alphas = {}, {}
    for world in WORLDS:
        for method in METHODS:
            summary = select_rows(kp["summary"], world=world, method=method)
            if not summary:
                continue
            alphas[world] = summary[0]["alpha"]
            rows = sorted(
                select_rows(kp["table"], world=world, method=method, source="train_log"), key=lambda r: r["step"]
            )
            evals = sorted(select_rows(kp["table"], world=world, method=method, source="eval"), key=lambda r: r["step"])
            series[f"{world}/{method}"] = {
                "step": column(rows, "step"),
                **{key: column(rows, key) for key in LOG_KEYS},
                "diverged_at": summary[0].get("diverged_at"),
                # the held-out rows' share near the bound at each evaluation (the statistic of the claim-6 check)
                "eval_step": column(evals, "step"),
                "share_near_bound_heldout": column(evals, "share_near_bound"),
            }
    ceiling = {w: m.get("share_near_bound_optimum_train") for w, m in kp["meta"].get("worlds", {}).items()}
    return {
        "figure": INFO.figure_id,
        "data": {"series": series, "alpha": alphas, "model": kp["meta"].get("model"), "share_at_optimum": ceiling},
        "checks": checks_from_result(kp, "known_preference", where=lambda c: c.get("claim") == 6),
        "meta": {"known_preference": kp["meta"]},
    }


def _mark_divergence(ax, s: dict, key: str, color) -> None:
    if s.get("diverged_at") is None:
        return
    values = np.asarray(s[key], dtype=float)
    finite = np.isfinite(values)
    if finite.any():  # at the step whose update made the weights non-finite, at the last finite value
        ax.plot(s["diverged_at"], values[finite][-1], marker="x", color=color, markersize=9, markeredgewidth=2)


def draw(results: dict):
    """Rows: worlds (known-preference data, example data); columns: grad norm, mean t per class, share near log(1/α)."""
    d = results["data"]
    worlds = [w for w in WORLDS if any(k.startswith(w + "/") for k in d["series"])]
    fig, axes = new_figure(3, len(worlds), title=f"{INFO.title} (model: {d['model']})", panel_size=(4.0, 3.1))
    world_titles = {"threshold": "known-preference data", "example": "example preference data"}
    for r, world in enumerate(worlds):
        ax_g, ax_t, ax_s = axes[r * 3 : r * 3 + 3]
        bound = math.log(1.0 / d["alpha"][world])
        for method in METHODS:
            s = d["series"].get(f"{world}/{method}")
            if s is None:
                continue
            style = method_style(method)
            common = {"color": style["color"], "linewidth": 1.4}
            ax_g.plot(s["step"], s["grad_norm"], linestyle=style["linestyle"], label=style["label"], **common)
            _mark_divergence(ax_g, s, "grad_norm", style["color"])
            ax_t.plot(s["step"], s["t_preferred_mean"], linestyle="-", **common)
            ax_t.plot(s["step"], s["t_nonpreferred_mean"], linestyle="--", **common)
            _mark_divergence(ax_t, s, "t_preferred_mean", style["color"])
            ax_s.plot(s["step"], s["share_near_bound_train"], linestyle=style["linestyle"], **common)
            if s.get("eval_step"):
                ax_s.plot(s["eval_step"], s["share_near_bound_heldout"], linestyle="none", marker="o", markersize=5,
                          markerfacecolor="white", markeredgecolor=style["color"], markeredgewidth=1.4)  # fmt: skip
        ax_g.set_yscale("log")
        ax_g.set_ylabel("gradient norm (before clipping)")
        ax_t.axhline(bound, color="0.3", linestyle=":", linewidth=1.0)
        low = max(min(ax_t.get_ylim()[0], bound), bound - 4.0)  # a method that runs far below does not squash RDRO
        ax_t.set_ylim(low, bound + 0.35 * (bound - low))  # room above the bound for the legend
        ax_t.annotate(f"log(1/α) = {bound:.2f}", (0.02, bound), xycoords=("axes fraction", "data"), fontsize=7,
                      color="0.3", va="bottom")  # fmt: skip
        ax_t.set_ylabel("mean t per class (nats)")
        ax_t.plot([], [], color="0.4", linestyle="-", label="preferred rows")
        ax_t.plot([], [], color="0.4", linestyle="--", label="non-preferred rows")
        ax_t.legend(loc="upper right", fontsize=6.5, ncol=2)
        if d.get("share_at_optimum", {}).get(world) is not None:
            ax_s.axhline(d["share_at_optimum"][world], color="0.4", linestyle="--", linewidth=1.0)
            ax_s.annotate("at p+", (0.02, d["share_at_optimum"][world]), xycoords=("axes fraction", "data"),
                          fontsize=7, color="0.3", va="bottom")  # fmt: skip
        if any(d["series"].get(f"{world}/{m}", {}).get("eval_step") for m in METHODS):
            ax_s.plot([], [], color="0.4", linestyle="-", label="training batch")
            ax_s.plot([], [], color="0.4", linestyle="none", marker="o", markerfacecolor="white", label="held-out rows")
            ax_s.legend(loc="upper left", fontsize=6.5)
        ax_s.set_ylim(-0.03, 1.03)
        ax_s.set_ylabel("share of preferred t near log(1/α)")
        for c, ax in enumerate((ax_g, ax_t, ax_s)):
            ax.set_xlabel("training step")
            ax.set_title(f"({'abcdef'[r * 3 + c]}) {world_titles.get(world, world)}, α = {d['alpha'][world]:.2g}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    return fig
