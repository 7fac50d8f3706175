"""F9 — the known-preference LLM benchmark: distance to p+ and preferred rate vs steps (claims 2, 5).

Drawn from ``rdro.llm.known_preference``: responses sampled from π_ref itself and labelled with a
per-prompt rule of preferred probability α, so π_ref = q_α and p+ = π_ref · w / α is known. Every
method trains a LoRA policy with the project's trainer; every few steps the benchmark measures, on
held-out π_ref rows and fresh samples y ~ π_θ: an estimate of KL(p+ ‖ π_θ) (± standard error), the
mean |t − log r_α|, and the preferred rate E_{π_θ}[w] (± standard error). Bands on sampled estimates are ±1.96 SE.
Quick mode uses a tiny Llama built from a config; the full run SmolLM2-135M-Instruct on CPU.
"""

from __future__ import annotations

import numpy as np

from rdro.paper_figures.experiment_results import column, load_known_preference, select_rows
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result
from rdro.paper_figures.style import method_style, new_figure, plot_with_band

__all__ = ["INFO", "compute", "draw"]

INFO = FigureInfo(
    figure_id="F9",
    stem="F09_known_preference",
    title="Known-preference LLM benchmark: how close each method gets to p+ over training",
    caption=(
        "rdro.llm.known_preference: responses sampled from π_ref and labelled with a per-prompt rule of preferred "
        "probability α, so π_ref = q_α and p+ is known. Top row: a Bradley–Terry-consistent rule (shorter is "
        "better, per-prompt threshold); bottom row: an intransitive rule (rock–paper–scissors over length classes, "
        "claim 5; three length classes, cut per prompt to masses near ½ / 0.4 / 0.1). Left: estimated KL(p+ ‖ π_θ) on held-out preferred π_ref rows (0 at π_θ = p+; this direction, unlike F3, F6 "
        "and F7's KL(π_θ ‖ p+), can be estimated from p+ samples). Middle: mean "
        "|t − log r_α| on the held-out rows with w > 0 (where log r_α is finite). Right: preferred rate of fresh "
        "samples from π_θ (dotted: α, the rate of π_ref; dashed: the rate of p+ on the same prompts). Bands, drawn on "
        "sampled estimates only: ±1.96 standard errors. Raw DDRO's weights become non-finite before the first "
        "evaluation in the full run, so only its step-0 point (shared by every method) is drawn. Bottom row, full run: each method trained with 3 seeds (LoRA initialisation "
        "and data order) on the same data, since p+ lies only ≈ 0.05 nats from π_ref there; thick lines are the mean "
        "over the seeds, thin lines the seeds themselves. When the response space is enumerable (the tiny model's 2-token "
        "responses, SmolLM2's single-token responses) the left and right panels show the exact KL(p+ ‖ π_θ) and "
        "E_π_θ[w] summed over every response and averaged over every prompt instead (no band: no sampling error). "
        "KTO, DPO and BCO move away from p+ under the Bradley–Terry rule too (top row), so the bottom row shows that "
        "RDRO still approaches p+ under an intransitive rule, not that the others fail because of it. Model and sizes "
        "in the metadata below."
    ),
    claims=(2, 5),
    compute_version=7,
)

METRICS = (  # (metric, its standard error or None, axis label)
    ("kl_pplus", "kl_pplus_se", "KL(p+ ‖ π_θ) estimate (nats)"),
    ("dist_log_ratio", None, "mean |t − log r_α| at w > 0 (nats)"),
    ("fresh_preferred_rate", "fresh_preferred_rate_se", "preferred rate of samples from π_θ"),
)
#: enumerable worlds: the exact value replaces the sampled estimate in a panel (metric → (exact metric, axis label))
EXACT = {
    "kl_pplus": ("kl_pplus_exact", "KL(p+ ‖ π_θ), exact (nats)"),
    "fresh_preferred_rate": ("preferred_rate_exact", "preferred rate E_π_θ[w], exact"),
}
WORLDS = ("threshold", "cyclic")


def compute(settings: RunSettings) -> dict:
    """Evaluation series per (world, method, metric) from the benchmark, its claim-2/5 checks and meta."""
    kp = load_known_preference(settings)
    series, reference = {}, {}
    for world in WORLDS:
        for row in select_rows(kp["summary"], world=world):
            reference[world] = {
                key: row.get(key) for key in ("alpha", "target_preferred_rate", "target_preferred_rate_fresh")
            }
            rows = sorted(
                select_rows(kp["table"], world=world, method=row["method"], source="eval"), key=lambda r: r["step"]
            )
            entry = {"step": column(rows, "step"), "diverged_at": row.get("diverged_at")}
            for metric, se, _ in METRICS:
                entry[metric] = column(rows, metric)
                if se:
                    entry[se] = column(rows, se)
                if metric in EXACT:
                    entry[EXACT[metric][0]] = column(rows, EXACT[metric][0])
            _add_seed_statistics(
                entry, rows, select_rows(kp["table"], world=world, method=row["method"], source="eval_replicate")
            )
            series[f"{world}/{row['method']}"] = entry
    return {
        "figure": INFO.figure_id,
        "data": {"series": series, "reference": reference, "model": kp["meta"].get("model")},
        "checks": checks_from_result(kp, "known_preference", where=lambda c: c.get("claim") in (2, 5)),
        "meta": {"known_preference": kp["meta"]},
    }


def _add_seed_statistics(entry: dict, rows: list, replicate_rows: list) -> None:
    """Runs trained with several seeds (the benchmark's ``cyclic_train_seeds``): every metric of every seed at each
    evaluation step, as ``METRIC_seed_values`` [seeds][steps], and their mean, ``METRIC_seed_mean``."""
    if not replicate_rows:
        return
    runs = [rows] + [
        sorted((r for r in replicate_rows if r["train_seed"] == seed), key=lambda r: r["step"])
        for seed in sorted({r["train_seed"] for r in replicate_rows})
    ]
    length = min(len(run) for run in runs)  # the evaluations every seed reached
    entry["train_seeds"] = len(runs)
    entry["step"] = entry["step"][:length]
    for metric in [m for m, _, _ in METRICS] + [exact for exact, _ in EXACT.values()]:
        values = np.array([column(run[:length], metric) for run in runs], dtype=float)
        entry[f"{metric}_seed_values"] = values.tolist()
        entry[f"{metric}_seed_mean"] = values.mean(axis=0).tolist()


def _has_values(series: dict, key: str) -> bool:
    """True when ``series[key]`` has a finite value (a diverged run's later evaluations are NaN)."""
    return bool(np.isfinite(np.asarray(series.get(key, [np.nan]), dtype=float)).any())


def draw(results: dict):
    """Rows: worlds (threshold, cyclic); columns: KL(p+ ‖ π_θ), |t − log r_α|, preferred rate, vs steps."""
    d = results["data"]
    worlds = [w for w in WORLDS if any(k.startswith(w + "/") for k in d["series"])]
    fig, axes = new_figure(3, len(worlds), title=f"{INFO.title} (model: {d['model']})", panel_size=(4.0, 3.1))
    world_titles = {"threshold": "Bradley–Terry rule", "cyclic": "intransitive rule"}
    for r, world in enumerate(worlds):
        methods = [k.split("/", 1)[1] for k in d["series"] if k.startswith(world + "/")]
        for c, (metric, se, ylabel) in enumerate(METRICS):
            ax = axes[r * 3 + c]
            exact = EXACT.get(metric)
            if exact and not all(_has_values(d["series"][f"{world}/{m}"], exact[0]) for m in methods):
                exact = None
            if exact:
                ylabel = exact[1]
            drawn = []
            for i, method in enumerate(methods):
                s = d["series"][f"{world}/{method}"]
                key = exact[0] if exact else metric
                lo = hi = None
                style = method_style(method, i)
                if f"{key}_seed_mean" in s:  # several training seeds: their mean, and each seed as a thin line
                    y = np.asarray(s[f"{key}_seed_mean"], dtype=float)
                    for seed_values in s[f"{key}_seed_values"]:
                        ax.plot(s["step"], seed_values, color=style["color"], linestyle=style["linestyle"],
                                linewidth=0.7, alpha=0.4)  # fmt: skip
                    style = {**style, "label": f"{style['label']}, mean of {s['train_seeds']} seeds"}
                else:
                    y = np.asarray(s[key], dtype=float)
                    if se and not exact:
                        half = 1.96 * np.asarray(s[se], dtype=float)
                        lo, hi = y - half, y + half
                drawn.append(y)
                plot_with_band(ax, s["step"], y, lo, hi, style={**style, "markersize": 3.5}, band_alpha=0.08)
            if metric == "fresh_preferred_rate":
                ref = d["reference"].get(world, {})
                refs = []
                if ref.get("alpha") is not None:
                    refs.append(
                        ax.axhline(ref["alpha"], color="0.35", linestyle=":", linewidth=1.0, label="rate of π_ref (α)")
                    )
                # exact panel: p+'s rate over every prompt; sampled: over the prompts the fresh samples come from
                target = ref.get("target_preferred_rate" if exact else "target_preferred_rate_fresh")
                if target is not None:
                    refs.append(ax.axhline(target, color="0.1", linestyle="--", linewidth=1.0, label="rate of p+"))
                ax.legend(handles=refs, loc="best", fontsize=6.5)  # "best" keeps it off the curves
            if c < 2 and all((v[np.isfinite(v)] > 0).all() for v in drawn):
                ax.set_yscale("log")  # KL and |t − log r_α| span orders of magnitude between methods
                ylabel += ", log scale"
            ax.set_xlabel("training step")
            ax.set_ylabel(ylabel)
            ax.set_title(f"({'abcdef'[r * 3 + c]}) {world_titles.get(world, world)}")
            if c == 0:  # intransitive rule: the methods part to the top and the bottom, the middle right stays free
                cyclic = world == "cyclic"
                ax.legend(loc="center right" if cyclic else "best", fontsize=6.5, ncol=1 if cyclic else 2)
    return fig
