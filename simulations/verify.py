"""``rdro verify``: run the known-truth experiments E1–E6 and print claim / statistic / value / threshold / PASS-FAIL.

A statistic starting "sanity:" marks a check that cannot fail in practice (it restates a closed form,
or its margin is orders of magnitude); values an experiment reports without a threshold (such as how
loose E3's bound is) are listed after the table.

Usage::

    rdro verify [--quick] [--only E2,E4] [--jobs N] [--cache-dir DIR] [--force] [--no-progress]

Exit status 0 when every check of every experiment run passed, 1 when a check failed, 2 on a
usage error. Results are cached (see :func:`rdro.simulations.experiments.run_experiment`), so a
second call only reprints them; ``--force`` recomputes.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from rdro.simulations.experiments import DEFAULT_CACHE_DIR, EXPERIMENTS, run_experiment

__all__ = ["main", "parse_only"]


def parse_only(text: str | None) -> list[str]:
    """``"E2,E4"`` → ["E2", "E4"] (case-insensitive, order kept); None → every experiment."""
    if text is None:
        return list(EXPERIMENTS)
    names = [t.strip().upper() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if not names or unknown:
        raise ValueError(f"--only must list experiments among {', '.join(EXPERIMENTS)}; got {text!r}")
    return names


def _format_value(v: float) -> str:
    return f"{v:.4g}"


def _print_table(results) -> None:
    rows = [("exp", "claim", "statistic", "value", "threshold", "result")]
    for res in results:
        for c in res.checks:
            rows.append(
                (
                    res.name,
                    c["claim"],
                    c["statistic"],
                    _format_value(c["value"]),
                    f"{c['comparison']} {_format_value(c['threshold'])}",
                    "PASS" if c["passed"] else "FAIL",
                )
            )
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((4, 60, 90, 12, 14, 6))]
    for i, r in enumerate(rows):
        cells = [(cell if len(cell) <= w else cell[: w - 1] + "…").ljust(w) for cell, w in zip(r, widths)]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _print_reported(results) -> None:
    """Summary values an experiment reports without a threshold (summary rows with a ``reported`` text)."""
    rows = [(res.name, row) for res in results for row in res.summary if row.get("reported")]
    if rows:
        print("\nreported, not thresholded:")
        for name, row in rows:
            print(f"{name:<4}  {row['reported']}: {_format_value(row['mean'])}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rdro verify``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rdro verify", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test-suite form, ~1 minute)")
    parser.add_argument("--only", default=None, help="comma-separated experiments to run, e.g. E2,E4")
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes for the seeds (default 2; 1 = in-process)"
    )
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="where results are cached (default %(default)s)"
    )
    parser.add_argument("--force", action="store_true", help="recompute even when a cached result exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    try:
        names = parse_only(args.only)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"rdro verify: error: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"rdro verify: error: --jobs must be ≥ 1, got {args.jobs}", file=sys.stderr)
        return 2
    start, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    results = []
    for name in names:
        res = run_experiment(
            name,
            quick=args.quick,
            jobs=args.jobs,
            cache_dir=args.cache_dir,
            force=args.force,
            progress=not args.no_progress,
        )
        source = "cached" if "loaded_from_cache" in res.meta else f"{res.meta['wall_seconds']:.1f} s"
        print(f"{name}: {'PASS' if res.passed else 'FAIL'} ({source}) — {res.claim}", flush=True)
        results.append(res)
    print()
    _print_table(results)
    _print_reported(results)
    failed = [r.name for r in results if not r.passed]
    wall = time.perf_counter() - start
    cpu = (
        resource.getrusage(resource.RUSAGE_SELF).ru_utime
        - cpu0
        + sum(
            r.meta.get("task_cpu_seconds", 0.0)
            for r in results
            if "loaded_from_cache" not in r.meta and r.meta.get("jobs", 1) > 1
        )
    )
    print(
        f"\n{len(results) - len(failed)}/{len(results)} experiments passed; wall {wall:.1f} s, CPU (user) ≈ {cpu:.1f} s"
    )
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
