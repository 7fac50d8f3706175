"""The paper's results table from saved evaluation results: rows = alignment methods, columns = base model ×
training data × metric (AlpacaEval 2 LC win rate, win rate, BBH accuracy), each cell "value ± standard error"
in percent. Written as Markdown (for reading) and CSV (for plotting), both atomically."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from rdro.llm.evaluation.records import METRIC_LABELS, load_result_rows
from rdro.results import atomic_write_text

# methods in the order the paper discusses them; others follow alphabetically
METHOD_ORDER = ("SFT", "DPO", "BCO", "KTO", "DDRO", "RDRO")


def _column_label(row: dict[str, Any]) -> str:
    label = METRIC_LABELS[row["metric"]]
    return f"{label} [{row['task_variant']}]" if row["metric"] == "bbh_exact_match" else label


def table_cells(rows: list[dict[str, Any]], methods: list[str] | None = None):
    """Arrange result rows into ``(methods, columns, cells)``.

    ``columns`` are ``(model, dataset, metric label)`` triples, sorted by model, dataset, then LC WR, WR, BBH;
    ``cells[(method, column)]`` is the row. Two rows for the same cell (e.g. two judges) are an error naming
    both source files: keep one per cell in the results folder.
    """
    if not rows:
        raise ValueError("no result rows: the results folder holds no rdro eval results files")
    metric_rank = {label: i for i, label in enumerate(METRIC_LABELS.values())}
    cells: dict[tuple[str, tuple[str, str, str]], dict[str, Any]] = {}
    for row in rows:
        column = (row["model"], row["dataset"], _column_label(row))
        key = (row["method"], column)
        if key in cells:
            raise ValueError(
                f"two results for method {row['method']!r}, {column}: {cells[key].get('source')} and "
                f"{row.get('source')}; keep one of them in the results folder"
            )
        cells[key] = row
    columns = sorted({c for _, c in cells}, key=lambda c: (c[0], c[1], metric_rank.get(c[2].split(" [")[0], 9), c[2]))
    found = {m for m, _ in cells}
    if methods is None:
        methods = [m for m in METHOD_ORDER if m in found] + sorted(found - set(METHOD_ORDER))
    else:
        unknown = [m for m in methods if m not in found]
        if unknown:
            raise ValueError(f"methods={unknown}: no results for them; found {sorted(found)}")
    return methods, columns, cells


def _cell_text(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    text = f"{row['value']:.1f}" + (f" ± {row['stderr']:.1f}" if row["stderr"] is not None else "")
    return text if row["comparable_to_leaderboard"] or row["metric"] == "bbh_exact_match" else text + " †"


def render_markdown(rows: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    """Markdown table; † marks AlpacaEval cells not comparable to the public leaderboard (judge named below)."""
    methods, columns, cells = table_cells(rows, methods)
    header = ["Method"] + [f"{m} · {d} · {label}" for m, d, label in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        lines.append("| " + " | ".join([method] + [_cell_text(cells.get((method, c))) for c in columns]) + " |")
    lines += ["", "Values in percent, ± one standard error (LC WR: bootstrap over instructions, GLM refitted)."]
    if any(r["stderr"] is None for r in rows):
        lines.append("A value without ± has no standard error available (e.g. LC WR saved with --lc-bootstrap 0).")
    judges = sorted(
        {r["annotator"] for r in rows if r["metric"] != "bbh_exact_match" and not r["comparable_to_leaderboard"]}
    )
    if judges:
        lines.append(
            "† AlpacaEval 2 numbers NOT comparable to the public leaderboard (judge or instruction subset not the "
            f"standard protocol); judges: {', '.join(judges)}."
        )
    variants = sorted({r["task_variant"] for r in rows if r["metric"] == "bbh_exact_match"})
    if variants:
        lines.append(f"BBH: lm-eval exact match, variant(s) {', '.join(variants)}.")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    """CSV with one line per method and, per column, ``<model>/<dataset>/<metric>`` and ``.../stderr`` fields."""
    methods, columns, cells = table_cells(rows, methods)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = []
    for m, d, label in columns:
        names += [f"{m}/{d}/{label}", f"{m}/{d}/{label}/stderr"]
    writer.writerow(["method"] + names)
    for method in methods:
        values = []
        for c in columns:
            row = cells.get((method, c))
            values += ["", ""] if row is None else [row["value"], "" if row["stderr"] is None else row["stderr"]]
        writer.writerow([method] + values)
    return buffer.getvalue()


def write_table(
    results_dir: str | os.PathLike, out: str | os.PathLike, methods: list[str] | None = None
) -> tuple[Path, Path]:
    """Gather every results file under ``results_dir`` and write ``out`` (Markdown) and ``out`` with suffix
    ``.csv``. Returns both paths."""
    rows = load_result_rows(results_dir)
    out = Path(out)
    csv_path = out.with_suffix(".csv")
    if csv_path == out:
        raise ValueError(f"out={str(out)!r}: give the Markdown file name (e.g. table.md); the CSV goes beside it")
    atomic_write_text(out, render_markdown(rows, methods))
    atomic_write_text(csv_path, render_csv(rows, methods))
    return out, csv_path
