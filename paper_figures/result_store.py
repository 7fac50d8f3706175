"""Atomic writes and the figure-level results cache.

Every output (JSON results, the report, images) is written to a temporary file in the
target directory and renamed into place, so an interrupted run never leaves a half-written
file. The figure cache stores each figure's ``compute`` results as JSON under
``<cache_dir>/figures/<figure id>-<quick|full>.json`` together with the key it was computed
under (figure id, mode, the module's ``compute_version``, the rdro version); a mismatch or
``--force`` recomputes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = [
    "to_jsonable",
    "atomic_target",
    "write_text_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "read_json",
    "FigureCache",
]


def to_jsonable(obj):
    """``obj`` with numpy scalars/arrays, tuples, Paths and dataclass-like objects turned into JSON types.

    Non-finite floats become ``None`` (JSON has no NaN), so a cached result reads back the
    same everywhere.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # torch / numpy 0-d
        return to_jsonable(obj.item())
    return str(obj)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_target(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (mode 0666 & ~umask,
    like a normally created file), on error remove it. Nothing half-written is ever at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj) -> Path:
    """``obj`` (made JSON-able by :func:`to_jsonable`) as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=1, ensure_ascii=False) + "\n")


def read_json(path):
    """The JSON content of ``path``; ``ValueError`` naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


class FigureCache:
    """Cached ``compute`` results of the figures, one JSON file per (figure, mode)."""

    def __init__(self, cache_dir):
        self.directory = Path(cache_dir) / "figures"

    def path(self, figure_id: str, quick: bool) -> Path:
        return self.directory / f"{figure_id}-{'quick' if quick else 'full'}.json"

    def load(self, figure_id: str, quick: bool, key: dict):
        """The cached results when present and computed under ``key``; else ``None``."""
        path = self.path(figure_id, quick)
        if not path.exists():
            return None
        try:
            stored = read_json(path)
        except (ValueError, OSError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != to_jsonable(key):
            return None
        return stored.get("results")

    def save(self, figure_id: str, quick: bool, key: dict, results: dict) -> Path:
        return write_json_atomic(self.path(figure_id, quick), {"key": key, "results": results})
