"""The result container every experiment and benchmark of rdro returns and caches.

An :class:`ExperimentResult` holds a tidy ``table`` (one flat dict per measurement: setting,
seed, method, n, value …), ``summary`` rows (means with confidence intervals, fitted slopes),
``checks`` (one dict per claim checked: ``claim``, ``statistic``, ``value``, ``threshold``,
``passed``) and ``meta`` (seeds, sizes, versions, wall time). The known-truth experiments
(rdro.simulations), the LLM benchmarks (rdro.llm) and the figures (rdro.paper_figures) share it.
Files are written to a temporary file in the same folder and renamed, so a reader never sees
half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ExperimentResult", "atomic_write_text"]


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


@dataclass
class ExperimentResult:
    """One experiment's results: tidy ``table`` rows, ``summary`` rows, ``checks`` and ``meta``."""

    name: str
    claim: str
    table: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed (and there is at least one)."""
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def to_json(self, path=None) -> str:
        """The result as JSON text; with ``path``, also written there (temp file, then rename)."""
        text = json.dumps(dataclasses.asdict(self), indent=1, default=_json_default, allow_nan=True)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_json(cls, text_or_path) -> ExperimentResult:
        """Rebuild a result from JSON text or from a path to a JSON file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        data = json.loads(text)
        missing = {"name", "claim", "table", "summary", "checks", "meta"} - set(data)
        if missing:
            raise ValueError(f"not an ExperimentResult JSON: missing keys {sorted(missing)}")
        return cls(**{k: data[k] for k in ("name", "claim", "table", "summary", "checks", "meta")})
