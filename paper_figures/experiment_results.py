"""Running (or loading from their caches) the experiments the figures draw.

The known-truth experiments E1–E6 live in ``rdro.simulations.experiments``, the known-preference
LLM benchmark and training-dynamics runs in ``rdro.llm.known_preference``; this module only calls
them with the run's settings (quick sizes, worker processes, cache folders under the figures' cache,
``force``) and turns each ExperimentResult into a JSON-able dict, plus small helpers to select rows
of its tidy tables. No experiment logic is repeated here. Within one process each experiment is
run at most once per settings (F8 and F9 share the LLM runs; ``--force`` recomputes them once).
"""

from __future__ import annotations

import math

from rdro.paper_figures.figure_contract import RunSettings, result_payload

__all__ = ["load_experiment", "load_known_preference", "select_rows", "column"]

_LOADED: dict[tuple, dict] = {}  # (what, settings) -> payload, for this process


def load_experiment(name: str, settings: RunSettings) -> dict:
    """``run_experiment(name, quick, jobs, cache_dir, force, progress)`` as a dict with keys
    name, claim, table, summary, checks (as the experiment wrote them), meta."""
    key = (name, settings)
    if key not in _LOADED:
        from rdro.simulations.experiments import run_experiment

        result = run_experiment(
            name,
            quick=settings.quick,
            jobs=settings.jobs,
            cache_dir=settings.experiment_cache,
            force=settings.force,
            progress=settings.progress,
        )
        _LOADED[key] = result_payload(result)
    return _LOADED[key]


def load_known_preference(settings: RunSettings) -> dict:
    """``rdro.llm.known_preference.run_known_preference`` (quick: tiny Llama from a config; full: SmolLM2-135M
    with LoRA on CPU) as a dict like :func:`load_experiment`'s; cached under ``settings.llm_cache``."""
    key = ("known_preference", settings)
    if key not in _LOADED:
        from rdro.llm.known_preference import run_known_preference

        result = run_known_preference(
            quick=settings.quick, cache_dir=str(settings.llm_cache), progress=settings.progress, force=settings.force
        )
        _LOADED[key] = result_payload(result)
    return _LOADED[key]


def select_rows(rows: list[dict], **equal) -> list[dict]:
    """The rows whose columns equal the given values (``select_rows(summary, metric="rmse")``)."""
    return [row for row in rows if all(row.get(k) == v for k, v in equal.items())]


def column(rows: list[dict], name: str) -> list[float]:
    """Column ``name`` of ``rows`` as floats (missing or None → NaN, so it is not drawn)."""
    out = []
    for row in rows:
        value = row.get(name)
        out.append(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan)
    return out
