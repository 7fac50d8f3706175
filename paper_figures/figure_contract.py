"""What every figure module provides, and the settings a run passes to it.

A figure module ``fNN_<name>.py`` defines

- ``INFO``: a :class:`FigureInfo` (id, file stem, title, caption, the claims it tests);
- ``compute(settings: RunSettings) -> dict``: runs or loads what the figure needs and returns a
  JSON-able results dict ``{"figure", "data", "checks", "meta"}`` — or ``{"figure", "omitted":
  reason, ...}`` when the figure cannot be drawn in this run (F10 without a GPU results file);
- ``draw(results) -> matplotlib.figure.Figure``: draws from those results only, so a figure can
  be redrawn from cached results without recomputing.

``checks`` are dicts ``{"claim", "statistic", "value", "threshold", "passed", "source"}``; the
report shows them verbatim. They come from the experiments' own ``checks`` (see
:func:`checks_from_result`) or from measurements made in ``compute``; no verdict is typed by hand.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from rdro.paper_figures.claims import claim_numbers_in
from rdro.paper_figures.result_store import to_jsonable

__all__ = ["FigureInfo", "RunSettings", "make_check", "checks_from_result", "result_payload"]


@dataclass(frozen=True)
class FigureInfo:
    """Static description of one paper figure.

    ``figure_id`` ("F1" … "F10"), ``stem`` (image file name without suffix, e.g. "F01_bounded"),
    ``title`` (what is shown), ``caption`` (how to read it), ``claims`` (numbers in
    shared/method.md §4), ``compute_version`` (bump when ``compute`` changes so cached results are
    recomputed), ``cache_results`` (False when compute only reads a file and must see updates).
    """

    figure_id: str
    stem: str
    title: str
    caption: str
    claims: tuple[int, ...]
    compute_version: int = 1
    cache_results: bool = True


@dataclass(frozen=True)
class RunSettings:
    """Options of one ``rdro figures`` run, as the figure modules see them.

    ``quick``: small sizes (the ≤ 60 s configuration); ``jobs``: worker processes passed to the
    experiments; ``cache_dir``: root of the caches (experiments under ``experiments/``, LLM runs under
    ``llm/``, figure results under ``figures/``); ``force``: recompute instead of reading caches;
    ``progress``: show progress bars; ``kernel_results``: an explicit kernel-benchmark JSON for F10.
    """

    quick: bool = False
    jobs: int = 2
    cache_dir: Path = Path(".rdro_cache")
    force: bool = False
    progress: bool = True
    kernel_results: Path | None = None

    @property
    def experiment_cache(self) -> Path:
        return Path(self.cache_dir) / "experiments"

    @property
    def llm_cache(self) -> Path:
        return Path(self.cache_dir) / "llm"

    def as_meta(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))


def make_check(claim, statistic: str, value, threshold, passed, source: str, comparison=None, claims=None) -> dict:
    """A check row for the report: what was measured (``statistic``, ``value``), against what
    (``comparison`` such as "<=" and ``threshold``, or a threshold text such as "≤ 1"), the verdict
    ``passed`` (bool), where the measurement comes from (``source``, e.g. "E2" or "F2 autograd grid")
    and the §4 claim numbers it counts for (``claims``; default: the numbers ``claim`` names)."""
    return to_jsonable(
        {
            "claim": claim,
            "claims": list(claims) if claims else claim_numbers_in(claim),
            "statistic": str(statistic),
            "value": value,
            "comparison": comparison,
            "threshold": threshold,
            "passed": bool(passed),
            "source": str(source),
        }
    )


def _field(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def checks_from_result(result, source: str | None = None, claims=None, where=None) -> list[dict]:
    """The ``checks`` of an ExperimentResult(-like) object as report rows, verdicts unchanged.

    ``claims``: the §4 claim numbers to count them for, overriding what their ``claim`` text names
    (for an experiment whose own numbering differs from method.md §4); ``where``: keep only the
    checks for which ``where(check)`` is true (to split one experiment's checks between figures).
    """
    src = source or str(_field(result, "name", "experiment"))
    rows = []
    for check in _field(result, "checks", []) or []:
        if where is not None and not where(check):
            continue
        rows.append(
            make_check(
                _field(check, "claim"),
                _field(check, "statistic", ""),
                _field(check, "value"),
                _field(check, "threshold"),
                bool(_field(check, "passed", False)),
                src,
                comparison=_field(check, "comparison"),
                claims=claims,
            )
        )
    return rows


def result_payload(result) -> dict:
    """An ExperimentResult(-like) object as a JSON-able dict: name, claim, table, summary, checks (as the
    experiment wrote them; turn them into report rows with :func:`checks_from_result`), meta."""
    return to_jsonable(
        {
            "name": _field(result, "name"),
            "claim": _field(result, "claim"),
            "table": list(_field(result, "table", []) or []),
            "summary": list(_field(result, "summary", []) or []),
            "checks": [_infinite_value_as_text(c) for c in _field(result, "checks", []) or []],
            "meta": dict(_field(result, "meta", {}) or {}),
        }
    )


def _infinite_value_as_text(check) -> dict:
    """A check whose value is ±inf (a diverged run's ratio) keeps it as the text "inf" / "-inf": JSON, and so the
    results cache, would turn it into None, which the report shows as a missing value."""
    check = dict(check) if isinstance(check, dict) else dict(vars(check))
    value = check.get("value")
    if isinstance(value, float) and math.isinf(value):
        check["value"] = "inf" if value > 0 else "-inf"
    return check
