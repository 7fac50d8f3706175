"""``rdro figures``: regenerate every paper figure (PNG + PDF) and the report of which claims held.

    rdro figures [--quick] [--only F3,F5] [--out DIR] [--jobs N] [--force] [--kernel-results FILE]

For each selected figure: ``compute`` (or read its cached results), ``draw``, save
``<out>/figures/<stem>.png|.pdf``; then write ``<out>/REPORT.md``, ``<out>/REPORT.html`` and
``<out>/figures_results.json`` (all checks and metadata, machine-readable).

Where things go. From a source checkout the default ``--out`` is the ``paper_figures/`` folder
itself for the full run (so the report is ``paper_figures/REPORT.md`` and the images
``paper_figures/figures/``) and ``paper_figures/quick/`` for ``--quick`` (a quick run never
overwrites the full report). From a non-editable install it is ``./rdro-figures`` (or
``./rdro-figures-quick``). Caches live in ``<out>/.rdro_cache/`` (experiments, LLM runs, figure
results); a second run redraws from them in seconds, ``--force`` recomputes everything.

Exit status: 0 when every selected figure was built (or deliberately omitted, as F10 without a
GPU results file) — a claim that FAILED is a finding, stated in the report, not a crash; 1 when
any figure raised an error (the report is still written, listing the error); 2 for bad options.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import resource
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from rdro.paper_figures.figure_contract import RunSettings
from rdro.paper_figures.report import claim_verdicts, write_report
from rdro.paper_figures.result_store import FigureCache, to_jsonable, write_json_atomic

__all__ = ["FIGURE_MODULES", "FIGURE_IDS", "default_out_dir", "parse_only", "build_figures", "main"]

# figure id -> module (imported only when the figure is built, so one figure's missing extra
# cannot stop the others)
FIGURE_MODULES: dict[str, str] = {
    "F1": "rdro.paper_figures.f01_bounded",
    "F2": "rdro.paper_figures.f02_gradients",
    "F3": "rdro.paper_figures.f03_consistency",
    "F4": "rdro.paper_figures.f04_bounds",
    "F5": "rdro.paper_figures.f05_estimators",
    "F6": "rdro.paper_figures.f06_misspecification",
    "F7": "rdro.paper_figures.f07_alpha_imbalance",
    "F8": "rdro.paper_figures.f08_training_dynamics",
    "F9": "rdro.paper_figures.f09_known_preference",
    "F10": "rdro.paper_figures.f10_kernels",
}
FIGURE_IDS = tuple(FIGURE_MODULES)

_VERSION_PACKAGES = ("rdro", "torch", "numpy", "scipy", "matplotlib", "transformers")


def default_out_dir(quick: bool) -> Path:
    """``paper_figures/`` (full) or ``paper_figures/quick/`` of the source checkout this module runs
    from; ``./rdro-figures[-quick]`` when rdro is installed without its source folders."""
    package_dir = Path(__file__).resolve().parent
    if package_dir.name == "paper_figures" and (package_dir.parent / "pyproject.toml").is_file():
        return package_dir / "quick" if quick else package_dir
    return Path.cwd() / ("rdro-figures-quick" if quick else "rdro-figures")


def parse_only(text: str | None) -> list[str]:
    """Figure ids from ``--only`` ("F3,F5", "f3 f05", "3"), in canonical order; ValueError for unknown ones."""
    if text is None:
        return list(FIGURE_IDS)
    wanted, unknown = set(), []
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        m = re.fullmatch(r"[Ff]?0*(\d+)", token)
        fid = f"F{m.group(1)}" if m else None
        if fid in FIGURE_MODULES:
            wanted.add(fid)
        else:
            unknown.append(token)
    if unknown or not wanted:
        raise ValueError(
            f"--only: unknown figure name(s) {unknown or [text]!r}; expected a comma-separated list of {', '.join(FIGURE_IDS)}"
        )
    return [fid for fid in FIGURE_IDS if fid in wanted]


def _versions() -> dict:
    found = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


#: the code behind every figure's results: a change to any of it recomputes the figure (whose experiments keep their
#: own, narrower cache, so an unrelated change costs a re-read, not a re-run)
_FIGURE_SOURCES = ("rdro", "rdro.theory", "rdro.simulations", "rdro.llm", "rdro.paper_figures")


def _figure_cache_key(fid: str, info, settings: RunSettings) -> dict:
    from rdro.simulations.experiments import source_digest

    return {"figure": fid, "quick": settings.quick, "compute_version": info.compute_version,
            "rdro": _versions()["rdro"], "source": source_digest(_FIGURE_SOURCES)}  # fmt: skip


def _build_one(fid: str, module, settings: RunSettings, cache: FigureCache, figures_dir: Path, out_dir: Path) -> dict:
    """Compute (or load) and draw one figure; the record the report shows. Exceptions propagate."""
    from matplotlib import pyplot as plt

    from rdro.paper_figures.style import paper_style, save_figure

    info = module.INFO
    key = _figure_cache_key(fid, info, settings)
    t0 = time.perf_counter()
    results = None if (settings.force or not info.cache_results) else cache.load(fid, settings.quick, key)
    from_cache = results is not None
    if results is None:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results = to_jsonable(module.compute(settings))
        results.setdefault("meta", {})["computed"] = {
            "started_utc": started,
            "wall_time_s": time.perf_counter() - t0,
            "mode": "quick" if settings.quick else "full",
            "jobs": settings.jobs,
        }
        if info.cache_results and not results.get("omitted"):
            cache.save(fid, settings.quick, key, results)
    compute_s = time.perf_counter() - t0
    record = _record(fid, info, "ok", results)
    record["timing"] = {"compute_s": compute_s, "from_cache": from_cache}
    if results.get("omitted"):
        record["status"] = "omitted"
        record["omitted"] = results["omitted"]
        record["timing"]["draw_s"] = 0.0
        for suffix in (".png", ".pdf"):  # a stale image from an earlier run must not look current
            stale = figures_dir / f"{info.stem}{suffix}"
            if stale.exists():
                stale.unlink()
        return record
    t1 = time.perf_counter()
    with paper_style():
        fig = module.draw(results)
        try:
            png, pdf = save_figure(fig, figures_dir, info.stem)
        finally:
            plt.close(fig)
    record["timing"]["draw_s"] = time.perf_counter() - t1
    record["images"] = {"png": png.relative_to(out_dir).as_posix(), "pdf": pdf.relative_to(out_dir).as_posix()}
    return record


def _record(fid: str, info, status: str, results: dict | None) -> dict:
    results = results or {}
    return {
        "figure": fid,
        "title": info.title,
        "caption": info.caption,
        "claims": list(info.claims),
        "status": status,
        "checks": list(results.get("checks", [])),
        "meta": dict(results.get("meta", {})),
        "images": {},
    }


def build_figures(selected: list[str], settings: RunSettings, out_dir: Path, quiet: bool = False) -> list[dict]:
    """Build the ``selected`` figures into ``out_dir/figures``; one report record per figure id
    (unselected figures appear with the checks of their cached results, if any)."""
    figures_dir = out_dir / "figures"
    cache = FigureCache(settings.cache_dir)
    records, start = [], time.perf_counter()
    for fid in FIGURE_IDS:
        if fid not in selected:
            records.append(_unselected_record(fid, settings, cache))
            continue
        position = f"[{selected.index(fid) + 1}/{len(selected)}] {fid}"
        _log(f"{position}: building … (elapsed {time.perf_counter() - start:.1f} s)", quiet)
        try:
            module = importlib.import_module(FIGURE_MODULES[fid])
            record = _build_one(fid, module, settings, cache, figures_dir, out_dir)
            timing = record["timing"]
            _log(
                f"{position}: {record['status']} — compute {timing['compute_s']:.1f} s"
                f"{' (cached)' if timing['from_cache'] else ''}, draw {timing['draw_s']:.1f} s"
                f"{'; ' + record.get('omitted', '') if record['status'] == 'omitted' else ''}",
                quiet,
            )
        except Exception:  # noqa: BLE001 — a figure that crashes is reported, the others still build
            error = traceback.format_exc()
            _log(f"{position}: ERROR\n{error}", quiet)
            info = _info_or_placeholder(fid)
            record = _record(fid, info, "error", None)
            record["error"] = error
        records.append(record)
    return records


def _info_or_placeholder(fid: str):
    try:
        return importlib.import_module(FIGURE_MODULES[fid]).INFO
    except Exception:  # noqa: BLE001 — the module itself failed to import
        from rdro.paper_figures.figure_contract import FigureInfo

        return FigureInfo(fid, fid, f"{fid} (module failed to import)", "", ())


def _unselected_record(fid: str, settings: RunSettings, cache: FigureCache) -> dict:
    info = _info_or_placeholder(fid)
    key = _figure_cache_key(fid, info, settings)
    return _record(fid, info, "not selected", cache.load(fid, settings.quick, key))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rdro figures``; returns the exit status (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="rdro figures", description="Regenerate every paper figure (PNG + PDF) and REPORT.md / REPORT.html."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and the tiny-transformer LLM configuration (≤ 60 s)"
    )
    parser.add_argument("--only", metavar="F3,F5", help=f"build only these figures (of {', '.join(FIGURE_IDS)})")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: paper_figures/ of the checkout; quick: paper_figures/quick/)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the experiments (default 2)")
    parser.add_argument("--force", action="store_true", help="recompute instead of reading cached results")
    parser.add_argument("--kernel-results", type=Path, help="JSON saved by `rdro bench logprobs` on a GPU, for F10")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its message
        return int(exc.code or 0)
    try:
        selected = parse_only(args.only)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
        if args.kernel_results is not None and not args.kernel_results.is_file():
            raise ValueError(f"--kernel-results: no such file {str(args.kernel_results)!r}")
    except ValueError as exc:
        print(f"rdro figures: {exc}", file=sys.stderr)
        return 2

    out_dir = (args.out or default_out_dir(args.quick)).resolve()
    settings = RunSettings(
        quick=args.quick,
        jobs=args.jobs,
        cache_dir=out_dir / ".rdro_cache",
        force=args.force,
        progress=not args.no_progress,
        kernel_results=args.kernel_results.resolve() if args.kernel_results else None,
    )
    started = datetime.now(timezone.utc)
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    _log(
        f"rdro figures: {len(selected)} figure(s) → {out_dir} ({'quick' if args.quick else 'full'} mode)",
        args.no_progress,
    )
    records = build_figures(selected, settings, out_dir, quiet=args.no_progress)
    run_meta = {
        "command": "rdro figures " + " ".join(argv),
        "mode": "quick" if args.quick else "full",
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_time_s": time.perf_counter() - wall0,
        "cpu_time_s": _cpu_seconds() - cpu0,
        "cpu_time_note": "this process plus worker processes that had exited when the run ended",
        "selected": selected,
        "jobs": args.jobs,
        "out_dir": str(out_dir),
        "cache_dir": str(settings.cache_dir),
        "force": args.force,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "versions": _versions(),
    }
    md, page = write_report(records, run_meta, out_dir)
    write_json_atomic(
        out_dir / "figures_results.json", {"run": run_meta, "claims": claim_verdicts(records), "figures": records}
    )
    failed = [r["figure"] for r in records if r["status"] == "error"]
    _log(
        f"rdro figures: report {md} (and {page.name}); wall {run_meta['wall_time_s']:.1f} s, CPU {run_meta['cpu_time_s']:.1f} s",
        args.no_progress,
    )
    if failed:
        print(f"rdro figures: {len(failed)} figure(s) failed to build: {', '.join(failed)} (see {md})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
