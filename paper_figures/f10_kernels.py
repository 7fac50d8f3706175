"""F10 — the fused log-prob kernel benchmark: time and peak memory beside the alternatives.

Drawn only from a results file that ``rdro bench logprobs`` saved on a GPU (its JSON: ``meta`` with the
device name, dtype, peak TFLOP/s…, and ``cases``: per anchor shape and token count N the matmul floor
8·N·H·V / peak and, per method — rdro, naive full logits, Liger-Kernel, cut-cross-entropy — the median
step time in ms and the peak memory above the inputs in GiB). No number is typed here: the figure and
its checks read the file, and the figure is labelled with the GPU it ran on. Without a GPU results file
the figure is omitted and the report says so.

Where it looks, in order: ``--kernel-results FILE``; ``paper_figures/data/logprob_bench_gpu.json``
(the documented place to keep a GPU run's file in the checkout); ``results/bench_logprobs.json`` (the
benchmark's default ``--out``) in the checkout and in the current directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, make_check
from rdro.paper_figures.result_store import read_json
from rdro.paper_figures.style import new_figure

__all__ = ["INFO", "compute", "draw", "candidate_files", "is_gpu_results"]

INFO = FigureInfo(
    figure_id="F10",
    stem="F10_kernels",
    title="Fused per-sequence log-prob kernels: time and peak memory vs the alternatives",
    caption=(
        "rdro bench logprobs, one training-step slice per method on the same inputs (reference log-probs without "
        "gradient, policy log-probs with gradient, RDRO loss, backward), at the anchor LM-head shapes and token "
        "counts N. (a) Median step time; black ticks: the matmul floor 8·N·H·V / peak. (b) Peak GPU memory above "
        "the inputs. Read from the saved GPU results file named in the metadata; missing bars: method not installed "
        "or failed (its error is in the file). The inputs are named in the title: the anchors' random inputs give a "
        "near-uniform softmax, which flatters any ε-filter of the backward (rdro-filtered, cut-cross-entropy); "
        "`rdro bench logprobs --inputs lm` draws next-token distributions like a trained LM's instead."
    ),
    claims=(),
    compute_version=1,
    cache_results=False,  # reading the file is instant, and a newer file must be picked up
)

METHOD_COLORS = {
    "rdro": "#1f5fbf",
    "rdro-filtered": "#7fa7e0",
    "naive": "#6f6f6f",
    "liger": "#c62828",
    "cce": "#ef8a17",
}
METHOD_LABELS = {
    "rdro": "rdro (fused)",
    "rdro-filtered": "rdro, gradient filter ε = 2^-12 (approximate)",
    "naive": "naive full logits",
    "liger": "Liger-Kernel",
    "cce": "cut-cross-entropy",
}
CHECKOUT = Path(__file__).resolve().parent.parent
DOCUMENTED_FILE = Path(__file__).resolve().parent / "data" / "logprob_bench_gpu.json"
BENCH_DEFAULT = Path("results") / "bench_logprobs.json"


def candidate_files(settings: RunSettings) -> list[Path]:
    """The files F10 looks at, in order (explicit file first); duplicates removed."""
    paths = [settings.kernel_results] if settings.kernel_results else []
    paths += [DOCUMENTED_FILE, CHECKOUT / BENCH_DEFAULT, Path.cwd() / BENCH_DEFAULT]
    seen, out = set(), []
    for p in paths:
        p = Path(p).resolve()
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def is_gpu_results(payload) -> tuple[bool, str]:
    """(True, "") when ``payload`` is a ``rdro bench logprobs`` results dict measured on a GPU — it has cases
    and some method's peak memory was measured (the CUDA allocator; None on CPU) — else (False, why not)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("cases"), list) or "meta" not in payload:
        return False, "not a `rdro bench logprobs` results file (needs 'meta' and 'cases')"
    if not payload["cases"]:
        return False, "no benchmark cases in the file"
    if payload["meta"].get("inputs", "anchor") != "anchor":
        return False, f"measured on --inputs {payload['meta']['inputs']}; F10 and its goals use the anchors' inputs"
    measured = [
        m.get("peak_gib") for c in payload["cases"] for m in c.get("methods", {}).values() if isinstance(m, dict)
    ]
    if not any(v is not None for v in measured):
        return False, f"measured on {payload['meta'].get('device', 'an unknown device')} without CUDA memory (CPU run)"
    return True, ""


#: the issue's goals per anchor shape: time / matmul floor at most, (alternative, its name, alternative time / rdro
#: time at least), rdro peak memory above the inputs at most (GiB)
GOALS = {
    "qwen2.5-7b": {"floor": 1.25, "faster_than": ("liger", "Liger", 1.25), "peak_gib": 1.3},
    "llama3-8b": {"floor": 1.25, "faster_than": ("liger", "Liger", 1.25), "peak_gib": 1.3},
    "qwen2.5-0.5b": {"floor": None, "faster_than": ("cce", "cut-cross-entropy", 1.0), "peak_gib": 0.5},
}


def _goal_checks(cases: list[dict], source: str) -> list[dict]:
    """The kernel goals of the benchmark's issue (:data:`GOALS`), evaluated on the largest N per shape where the file
    has it."""
    checks = []
    claim = "kernel goal (rdro bench logprobs)"
    largest = {}
    for case in cases:
        if case["tokens"] >= largest.get(case["shape"], {}).get("tokens", -1):
            largest[case["shape"]] = case
    for shape, case in sorted(largest.items()):
        m, goal = case["methods"], GOALS.get(shape)
        for name in ("rdro", "rdro-filtered"):  # the exact op, and its approximate backward when it was measured
            rdro = m.get(name, {})
            if goal is None or rdro.get("ms") is None:
                continue
            at = f"{shape}, N = {case['tokens']}"
            if goal["floor"] is not None:
                ratio = rdro["ms"] / case["floor_ms"]
                checks.append(
                    make_check(claim, f"{at}: {name} time / matmul floor", ratio, goal["floor"],
                               ratio <= goal["floor"], source, "<=")
                )  # fmt: skip
            other, other_name, at_least = goal["faster_than"]
            if m.get(other, {}).get("ms") is not None:
                speed = m[other]["ms"] / rdro["ms"]
                checks.append(
                    make_check(claim, f"{at}: {other_name} time / {name} time", speed, at_least, speed >= at_least,
                               source, ">=")
                )  # fmt: skip
            if rdro.get("peak_gib") is not None:
                peak, budget = rdro["peak_gib"], goal["peak_gib"]
                checks.append(
                    make_check(claim, f"{at}: {name} peak memory (GiB)", peak, budget, peak <= budget, source, "<=")
                )
    return checks


def compute(settings: RunSettings) -> dict:
    """Read the first GPU results file found; omitted (with the reasons per file) when there is none."""
    looked = []
    for path in candidate_files(settings):
        if not path.is_file():
            looked.append(f"{path}: not found")
            continue
        try:
            payload = read_json(path)
        except (ValueError, OSError) as exc:
            looked.append(f"{path}: unreadable ({exc})")
            continue
        ok, why = is_gpu_results(payload)
        if not ok:
            looked.append(f"{path}: {why}")
            continue
        shown = path.relative_to(CHECKOUT) if path.is_relative_to(CHECKOUT) else path  # paths come resolved
        return {
            "figure": INFO.figure_id,
            "data": {"file": str(shown), "meta": payload["meta"], "cases": payload["cases"]},
            "checks": _goal_checks(payload["cases"], f"{path.name} ({payload['meta'].get('device')})"),
            "meta": {"results_file": str(shown), **payload["meta"]},
        }
    return {
        "figure": INFO.figure_id,
        "omitted": "no GPU results file of `rdro bench logprobs` was found (run it on a GPU and pass "
        "--kernel-results FILE, or save it as paper_figures/data/logprob_bench_gpu.json). Looked at: "
        + "; ".join(looked),
        "checks": [],
        "meta": {"looked_at": looked},
    }


def draw(results: dict):
    """(a) median step time per case and method, with the matmul floor; (b) peak memory per case and method."""
    d = results["data"]
    cases = sorted(d["cases"], key=lambda c: (c["hidden"] * c["vocab"], c["tokens"]))
    methods = [m for m in METHOD_COLORS if any(c["methods"].get(m, {}).get("ms") is not None for c in cases)]
    meta = d["meta"]
    inputs = {"anchor": "the anchors' random inputs", "lm": "LM-like inputs"}.get(
        meta.get("inputs"), meta.get("inputs")
    )
    title = f"{INFO.title} — {meta.get('device')}, {meta.get('dtype')}" + (f", {inputs}" if inputs else "")
    fig, (ax_t, ax_m) = new_figure(2, title=title, panel_size=(max(4.5, 1.1 * len(cases) + 1.5), 3.6))
    x = np.arange(len(cases))
    width = 0.8 / max(len(methods), 1)
    for j, method in enumerate(methods):
        offs = x - 0.4 + width * (j + 0.5)
        ms = [c["methods"].get(method, {}).get("ms") for c in cases]
        gib = [c["methods"].get(method, {}).get("peak_gib") for c in cases]
        ms = np.array([np.nan if v is None else v for v in ms], dtype=float)
        gib = np.array([np.nan if v is None else v for v in gib], dtype=float)
        style = {"color": METHOD_COLORS[method], "width": width, "label": METHOD_LABELS.get(method, method)}
        ax_t.bar(offs, ms, **style)
        ax_m.bar(offs, gib, **style)
    floor = [c["floor_ms"] for c in cases]
    ax_t.hlines(floor, x - 0.45, x + 0.45, color="black", linewidth=1.6, label="matmul floor")
    labels = [f"{c['shape']}\nN = {c['tokens']}" for c in cases]
    for ax, ylabel in ((ax_t, "median step time (ms, log scale)"), (ax_m, "peak memory above inputs (GiB, log scale)")):
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
    ax_t.set_title("(a) time, forward + backward")
    ax_m.set_title("(b) peak memory")
    ax_t.legend(loc="upper left", fontsize=7)
    return fig
