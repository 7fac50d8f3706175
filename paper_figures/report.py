"""REPORT.md and REPORT.html: every figure with its caption, claim, checks (PASS/FAIL) and metadata.

The report is rendered from the run's records only: each figure record carries the checks that
its ``compute`` returned (measured statistics, thresholds and verdicts from the experiments or
from the figure's own computation) and the metadata of the run that produced them. No number is
typed here. Both files are written atomically (temporary file, then rename); the HTML version
embeds the PNG images (base64), so it is a single self-contained file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from rdro.paper_figures.claims import CLAIMS, claim_numbers_in
from rdro.paper_figures.result_store import write_text_atomic

__all__ = [
    "claim_numbers",
    "claim_verdicts",
    "format_value",
    "format_threshold",
    "render_markdown",
    "render_html",
    "write_report",
]

VERDICT_PASS, VERDICT_FAIL = "PASS", "FAIL"


def claim_numbers(check: dict, figure_claims) -> list[int]:
    """The §4 claim numbers a check counts for: its ``claims`` list when the figure set one, else
    the numbers its ``claim`` field names (``2``, ``"2: …"``, ``"claim 3"``, ``"2, 5"``), else the
    claims of its figure."""
    if check.get("claims"):
        return [int(c) for c in check["claims"]]
    return claim_numbers_in(check.get("claim")) or [int(c) for c in figure_claims]


def format_threshold(check: dict) -> str:
    """The threshold with its comparison when the check gives one (``"<="`` and ``1e-8`` → ``"≤ 1e-08"``)."""
    symbols = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}
    comparison = check.get("comparison")
    text = format_value(check.get("threshold"))
    return f"{symbols.get(comparison, comparison)} {text}" if comparison else text


def format_value(value) -> str:
    """A measured value or threshold as report text (4 significant digits for floats)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 160 else text[:157] + "…"
    return str(value)


def claim_verdicts(records: list[dict]) -> list[dict]:
    """Per claim (1–6): the figures testing it, how many checks passed, and the verdict.

    HOLDS when it has at least one check and all passed; FAILS (n of m) when any failed;
    NOT TESTED when no figure produced a check for it in this run.
    """
    rows = []
    for number, statement in CLAIMS.items():
        figures, passed, total = [], 0, 0
        for rec in records:
            contributed = rec.get("status") == "ok" or rec.get("checks")
            if contributed and number in rec.get("claims", []) and rec["figure"] not in figures:
                figures.append(rec["figure"])
            for check in rec.get("checks", []):
                if number in claim_numbers(check, rec.get("claims", [])):
                    total += 1
                    passed += bool(check.get("passed"))
        if total == 0:
            verdict = "NOT TESTED"
        elif passed == total:
            verdict = "HOLDS"
        else:
            verdict = f"FAILS ({total - passed} of {total} checks)"
        rows.append(
            {
                "claim": number,
                "statement": statement,
                "figures": figures,
                "passed": passed,
                "total": total,
                "verdict": verdict,
            }
        )
    return rows


def _status_text(rec: dict) -> str:
    status = rec["status"]
    if status == "ok":
        return "built" + (" (results from cache)" if rec.get("timing", {}).get("from_cache") else "")
    if status == "omitted":
        return f"omitted: {rec.get('omitted', '')}"
    if status == "error":
        return "ERROR while building (see Errors)"
    return "not selected in this run" + (" (checks from cached results)" if rec.get("checks") else "")


def _timing_text(rec: dict) -> str:
    timing, computed = rec["timing"], rec.get("meta", {}).get("computed", {})
    if timing.get("from_cache"):
        first = (
            f" (computed in {format_value(computed.get('wall_time_s'))} s, started {computed.get('started_utc')})"
            if computed
            else ""
        )
        compute = f"results read from cache{first}"
    else:
        compute = f"computed in {format_value(timing.get('compute_s'))} s"
    return f"{compute}; drawn in {format_value(timing.get('draw_s'))} s."


def _meta_lines(meta: dict, depth: int = 0) -> list[tuple[int, str, str]]:
    lines = []
    for key, value in meta.items():
        if isinstance(value, dict) and value and depth < 2:
            lines.append((depth, str(key), ""))
            lines.extend(_meta_lines(value, depth + 1))
        else:
            lines.append((depth, str(key), format_value(value)))
    return lines


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(records: list[dict], run_meta: dict) -> str:
    """The report as Markdown; images are linked relative to the report's folder."""
    out = ["# rdro — paper figures and the claims they test", ""]
    out.append(
        f"Generated by `{run_meta.get('command', 'rdro figures')}` — mode **{run_meta.get('mode')}**, "
        f"started {run_meta.get('started_utc')}, wall time {format_value(run_meta.get('wall_time_s'))} s, "
        f"CPU time {format_value(run_meta.get('cpu_time_s'))} s. Every number below was measured by this run "
        "(or read from the cached results of an earlier run, as marked); verdicts come from the experiments' checks."
    )
    out += [
        "",
        "## Claims at a glance",
        "",
        "| claim | statement | figures | checks passed | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in claim_verdicts(records):
        out.append(
            f"| {row['claim']} | {_md_escape(row['statement'])} | {', '.join(row['figures']) or '—'} | "
            f"{row['passed']} / {row['total']} | **{row['verdict']}** |"
        )
    out += ["", "## Figures", ""]
    out += ["| figure | title | status |", "|---|---|---|"]
    for rec in records:
        out.append(f"| {rec['figure']} | {_md_escape(rec['title'])} | {_md_escape(_status_text(rec))} |")
    for rec in records:
        out += ["", f"### {rec['figure']} — {rec['title']}", ""]
        if rec.get("images", {}).get("png"):
            out += [f"![{rec['figure']}]({rec['images']['png']})", ""]
            out += [
                f"PNG: [{rec['images']['png']}]({rec['images']['png']}) · PDF: [{rec['images']['pdf']}]({rec['images']['pdf']})",
                "",
            ]
        out += [f"*Status:* {_status_text(rec)}", ""]
        out += [f"*Caption.* {rec['caption']}", ""]
        for c in rec.get("claims", []):
            out.append(f"*Claim {c}.* {CLAIMS[c]}")
        out.append("")
        if rec.get("checks"):
            out += ["| claim | statistic | value | threshold | verdict | source |", "|---|---|---|---|---|---|"]
            for ch in rec["checks"]:
                verdict = VERDICT_PASS if ch.get("passed") else VERDICT_FAIL
                claims = ", ".join(str(n) for n in claim_numbers(ch, rec.get("claims", [])))
                out.append(
                    f"| {claims} | {_md_escape(ch.get('statistic', ''))} | {_md_escape(format_value(ch.get('value')))} | "
                    f"{_md_escape(format_threshold(ch))} | **{verdict}** | {_md_escape(ch.get('source', ''))} |"
                )
            out.append("")
        elif rec["status"] == "ok":
            out += ["No checks were reported for this figure.", ""]
        if rec.get("meta"):
            out += ["<details><summary>metadata of the results</summary>", ""]
            for depth, key, value in _meta_lines(rec["meta"]):
                out.append(f"{'  ' * depth}- {key}: {value}" if value else f"{'  ' * depth}- {key}:")
            out += ["", "</details>", ""]
        if rec.get("timing"):
            out += [f"*Timing:* {_timing_text(rec)}", ""]
    errors = [rec for rec in records if rec["status"] == "error"]
    if errors:
        out += ["## Errors", ""]
        for rec in errors:
            out += [f"### {rec['figure']}", "", "```", rec.get("error", "").rstrip(), "```", ""]
    out += ["## Run metadata", ""]
    for depth, key, value in _meta_lines({k: v for k, v in run_meta.items() if k != "command"}):
        out.append(f"{'  ' * depth}- {key}: {value}" if value else f"{'  ' * depth}- {key}:")
    out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .55em;vertical-align:top}
th{background:#f3f3f3}.PASS,.HOLDS{color:#17703a;font-weight:700}.FAIL,.FAILS{color:#b3261e;font-weight:700}
.NOT{color:#8a6d00;font-weight:700}img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.8em;overflow:auto}
.caption{font-size:.95em}.meta{font-size:.85em;color:#444}h3{margin-top:2em;border-top:1px solid #ddd;padding-top:1em}
"""


def _h(text) -> str:
    return html.escape(str(text))


def _verdict_class(verdict: str) -> str:
    return verdict.split()[0]


def _html_meta(meta: dict) -> str:
    items = []
    for key, value in meta.items():
        if isinstance(value, dict) and value:
            items.append(f"<li>{_h(key)}:{_html_meta(value)}</li>")
        else:
            items.append(f"<li>{_h(key)}: {_h(format_value(value))}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def render_html(records: list[dict], run_meta: dict, out_dir) -> str:
    """The report as one self-contained HTML page (PNG images embedded as base64)."""
    out_dir = Path(out_dir)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rdro — paper figures report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>rdro — paper figures and the claims they test</h1>",
        f"<p>Generated by <code>{_h(run_meta.get('command', 'rdro figures'))}</code> — mode <b>{_h(run_meta.get('mode'))}</b>, "
        f"started {_h(run_meta.get('started_utc'))}, wall time {_h(format_value(run_meta.get('wall_time_s')))} s, "
        f"CPU time {_h(format_value(run_meta.get('cpu_time_s')))} s. Every number was measured by this run (or read from "
        "cached results of an earlier run, as marked); verdicts come from the experiments' checks.</p>",
        "<h2>Claims at a glance</h2><table><tr><th>claim</th><th>statement</th><th>figures</th><th>checks passed</th><th>verdict</th></tr>",
    ]
    for row in claim_verdicts(records):
        parts.append(
            f"<tr><td>{row['claim']}</td><td>{_h(row['statement'])}</td><td>{_h(', '.join(row['figures']) or '—')}</td>"
            f"<td>{row['passed']} / {row['total']}</td><td class='{_verdict_class(row['verdict'])}'>{_h(row['verdict'])}</td></tr>"
        )
    parts.append("</table><h2>Figures</h2>")
    for rec in records:
        parts.append(f"<h3 id='{_h(rec['figure'])}'>{_h(rec['figure'])} — {_h(rec['title'])}</h3>")
        png = rec.get("images", {}).get("png")
        if png and (out_dir / png).is_file():
            data = base64.b64encode((out_dir / png).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{_h(rec['figure'])}' src='data:image/png;base64,{data}'>")
            parts.append(
                f"<p class='meta'>PDF: <a href='{_h(rec['images']['pdf'])}'>{_h(rec['images']['pdf'])}</a></p>"
            )
        parts.append(f"<p><i>Status:</i> {_h(_status_text(rec))}</p>")
        parts.append(f"<p class='caption'><i>Caption.</i> {_h(rec['caption'])}</p>")
        for c in rec.get("claims", []):
            parts.append(f"<p><i>Claim {c}.</i> {_h(CLAIMS[c])}</p>")
        if rec.get("checks"):
            parts.append(
                "<table><tr><th>claim</th><th>statistic</th><th>value</th><th>threshold</th><th>verdict</th><th>source</th></tr>"
            )
            for ch in rec["checks"]:
                verdict = VERDICT_PASS if ch.get("passed") else VERDICT_FAIL
                claims = ", ".join(str(n) for n in claim_numbers(ch, rec.get("claims", [])))
                parts.append(
                    f"<tr><td>{claims}</td><td>{_h(ch.get('statistic', ''))}</td><td>{_h(format_value(ch.get('value')))}</td>"
                    f"<td>{_h(format_threshold(ch))}</td><td class='{verdict}'>{verdict}</td>"
                    f"<td>{_h(ch.get('source', ''))}</td></tr>"
                )
            parts.append("</table>")
        if rec.get("meta"):
            parts.append(
                f"<details class='meta'><summary>metadata of the results</summary>{_html_meta(rec['meta'])}</details>"
            )
        if rec.get("timing"):
            parts.append(f"<p class='meta'>Timing: {_h(_timing_text(rec))}</p>")
    errors = [rec for rec in records if rec["status"] == "error"]
    if errors:
        parts.append("<h2>Errors</h2>")
        for rec in errors:
            parts.append(f"<h3>{_h(rec['figure'])}</h3><pre>{_h(rec.get('error', ''))}</pre>")
    parts.append("<h2>Run metadata</h2>")
    parts.append(_html_meta({k: v for k, v in run_meta.items() if k != "command"}))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(records: list[dict], run_meta: dict, out_dir) -> tuple[Path, Path]:
    """Write ``<out_dir>/REPORT.md`` and ``<out_dir>/REPORT.html`` atomically; return both paths."""
    out_dir = Path(out_dir)
    md = write_text_atomic(out_dir / "REPORT.md", render_markdown(records, run_meta))
    page = write_text_atomic(out_dir / "REPORT.html", render_html(records, run_meta, out_dir))
    return md, page
