"""Saved evaluation results: one JSON file per evaluation run, written atomically.

A results file is ``{"schema": RESULTS_SCHEMA, "rows": [row, ...], "details": {...}}``. Each row is flat and
self-describing, so ``rdro eval table`` can gather rows from many files without knowing how they were made:

    model, method, dataset            the table coordinates (base model, alignment method, training data set)
    metric                            one of METRIC_LABELS' keys
    value, stderr                     in percent (win rates and accuracies alike)
    n                                 number of evaluated instructions / examples
    annotator                         the judge (AlpacaEval) or "exact_match" (BBH)
    comparable_to_leaderboard         True only for the standard AlpacaEval 2 protocol on all 805 instructions
    task_variant                      e.g. "bbh_cot_fewshot"; "alpaca_eval_2" for AlpacaEval
    seed                              the seed of the run
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rdro.results import atomic_write_text

RESULTS_SCHEMA = "rdro-eval-results/1"

METRIC_LABELS = {
    "alpaca_eval2_lc_winrate": "LC WR",
    "alpaca_eval2_winrate": "WR",
    "bbh_exact_match": "BBH",
}

ROW_KEYS = (
    "model",
    "method",
    "dataset",
    "metric",
    "value",
    "stderr",
    "n",
    "annotator",
    "comparable_to_leaderboard",
    "task_variant",
    "seed",
)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically (:func:`rdro.results.atomic_write_text`)."""
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return Path(path)


def make_row(**fields: Any) -> dict[str, Any]:
    """Build one result row, checking that every key of ``ROW_KEYS`` is present and values are sane.

    ``value`` and ``stderr`` are percentages: finite, value in [0, 100], stderr >= 0 (or None when unknown).
    """
    missing = [k for k in ROW_KEYS if k not in fields]
    if missing:
        raise ValueError(f"result row is missing the field(s) {missing}; a row needs all of {list(ROW_KEYS)}")
    extra = [k for k in fields if k not in ROW_KEYS]
    if extra:
        raise ValueError(f"result row has unknown field(s) {extra}; allowed: {list(ROW_KEYS)}")
    if fields["metric"] not in METRIC_LABELS:
        raise ValueError(f"metric={fields['metric']!r}: expected one of {list(METRIC_LABELS)}")
    value = float(fields["value"])
    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise ValueError(
            f"value={fields['value']!r} for metric {fields['metric']!r}: expected a percentage in [0, 100]"
        )
    stderr = fields["stderr"]
    if stderr is not None:
        stderr = float(stderr)
        if not (math.isfinite(stderr) and stderr >= 0.0):
            raise ValueError(f"stderr={fields['stderr']!r}: expected a finite number >= 0 or None")
    for key in ("model", "method", "dataset"):
        if not isinstance(fields[key], str) or not fields[key].strip():
            raise ValueError(f"{key}={fields[key]!r}: expected a non-empty string")
    return {
        **fields,
        "value": value,
        "stderr": stderr,
        "comparable_to_leaderboard": bool(fields["comparable_to_leaderboard"]),
    }


def save_results(path: str | os.PathLike, rows: list[dict[str, Any]], details: dict[str, Any] | None = None) -> Path:
    """Save result rows (built by :func:`make_row`) and free-form run details to ``path`` atomically."""
    if not rows:
        raise ValueError("rows is empty: a results file needs at least one result row")
    checked = [make_row(**row) for row in rows]
    return write_json_atomic(path, {"schema": RESULTS_SCHEMA, "rows": checked, "details": details or {}})


def load_result_rows(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of all results files (``*.json`` with ``schema == RESULTS_SCHEMA``) under ``results_dir``.

    Each returned row gets a ``source`` key (the file it came from). Valid JSON files of other kinds (outputs,
    annotations, lm-eval dumps) lying in the same folder are skipped; a ``*.json`` file that is not valid JSON
    (e.g. a truncated copy) or a results file with bad rows is a ValueError naming the file, so that no result
    drops out of the table unnoticed.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results={str(results_dir)!r}: not a directory")
    rows = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(payload, dict) or payload.get("schema") != RESULTS_SCHEMA:
                continue
            rows += [
                {**make_row(**{k: r[k] for k in ROW_KEYS if k in r}), "source": str(path)} for r in payload["rows"]
            ]
        except (KeyError, TypeError, ValueError) as exc:  # ValueError includes JSON and Unicode decoding errors
            raise ValueError(
                f"results file {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); truncated or corrupt? "
                f"Restore or remove it: every *.json under results={str(results_dir)!r} is read."
            ) from exc
    return rows
