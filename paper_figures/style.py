"""One look for every paper figure: rc parameters, a colour per method, bands, and saving.

Every figure module draws through these pieces so that a method has the same colour,
line style and label in every figure (RDRO blue, DDRO red/orange, KTO green, …), the fonts
and sizes match, and each figure is written as PNG and PDF atomically (temporary file, then
rename; nothing half-written).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rdro.paper_figures.result_store import atomic_target  # noqa: E402

__all__ = [
    "RC_PARAMS",
    "METHOD_STYLES",
    "method_style",
    "paper_style",
    "new_figure",
    "plot_with_band",
    "save_figure",
]

RC_PARAMS = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "figure.titlesize": 11.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.7,
    "lines.markersize": 4.5,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.8",
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
}

# Method -> drawing style. Relative-ratio methods in blues, ordinary-ratio (plain) ones in
# reds/oranges, preference-model methods (KTO, BCO, DPO) in greens/purples/browns, SFT grey.
METHOD_STYLES: dict[str, dict] = {
    "rdro": {"color": "#1f5fbf", "linestyle": "-", "marker": "o", "label": "RDRO"},
    "rdro_pooled": {"color": "#1f5fbf", "linestyle": "-", "marker": "o", "label": "RDRO (pooled)"},
    "rdro_per_class": {"color": "#5aa0e6", "linestyle": "--", "marker": "s", "label": "RDRO (per-class)"},
    "rdro_preferred": {"color": "#1f5fbf", "linestyle": "-", "marker": None, "label": "RDRO, preferred row"},
    "rdro_nonpreferred": {"color": "#5aa0e6", "linestyle": "--", "marker": None, "label": "RDRO, non-preferred row"},
    "ddro": {"color": "#c62828", "linestyle": "-", "marker": "^", "label": "DDRO"},
    "ddro_raw": {"color": "#c62828", "linestyle": "-", "marker": "^", "label": "DDRO (raw)"},
    "ddro_stabilized": {"color": "#ef8a17", "linestyle": "--", "marker": "v", "label": "DDRO (stabilised)"},
    "kto": {"color": "#2e8b57", "linestyle": "-.", "marker": "D", "label": "KTO"},
    "bco": {"color": "#7b4fa0", "linestyle": ":", "marker": "P", "label": "BCO"},
    "dpo": {"color": "#8c564b", "linestyle": "-.", "marker": "X", "label": "DPO"},
    "sft": {"color": "#6f6f6f", "linestyle": ":", "marker": "*", "label": "SFT"},
    "reference": {"color": "#222222", "linestyle": ":", "marker": None, "label": "reference"},
    # density-ratio estimators (claim 4)
    "rulsif": {"color": "#1f5fbf", "linestyle": "-", "marker": "o", "label": "RuLSIF (relative)"},
    "relative_logistic": {"color": "#5aa0e6", "linestyle": "--", "marker": "s", "label": "relative logistic"},
    "ulsif": {"color": "#c62828", "linestyle": "-", "marker": "^", "label": "uLSIF (plain)"},
    "kliep": {"color": "#ef8a17", "linestyle": "--", "marker": "v", "label": "KLIEP (plain)"},
    "logistic": {"color": "#b5651d", "linestyle": "-.", "marker": "D", "label": "logistic (plain)"},
    "bregman": {"color": "#e377c2", "linestyle": ":", "marker": "P", "label": "Bregman / DDRO (plain)"},
}

_FALLBACK_COLORS = ("#17becf", "#bcbd22", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _style_key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def method_style(name: str, index: int = 0) -> dict:
    """Drawing keywords (color, linestyle, marker, label) for a method or estimator name.

    Names are matched case-insensitively with ``-``/space read as ``_`` (``"RDRO-pooled"`` →
    ``rdro_pooled``; ``"ddro_stabilised"`` → ``ddro_stabilized``). An unknown name gets a
    fallback colour chosen by ``index`` and its own name as label, so a new method still draws.
    """
    key = _style_key(name).replace("stabilised", "stabilized")
    if key in METHOD_STYLES:
        return dict(METHOD_STYLES[key])
    return {
        "color": _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)],
        "linestyle": "-",
        "marker": "o",
        "label": str(name),
    }


@contextmanager
def paper_style():
    """Context in which matplotlib uses the paper figures' rc parameters."""
    with plt.rc_context(RC_PARAMS):
        yield


def new_figure(ncols: int, nrows: int = 1, title: str = "", panel_size=(3.9, 3.1), **subplot_kw):
    """A figure with ``nrows × ncols`` panels (constrained layout), the suptitle ``title``.

    Returns ``(fig, axes)`` with ``axes`` a flat list (row-major). Call inside :func:`paper_style`.
    """
    if ncols < 1 or nrows < 1:
        raise ValueError(f"ncols and nrows must be ≥ 1, got ncols={ncols!r}, nrows={nrows!r}")
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows + (0.45 if title else 0.0)),
        layout="constrained",
        squeeze=False,
        **subplot_kw,
    )
    if title:
        fig.suptitle(title)
    return fig, list(axes.ravel())


def plot_with_band(ax, x, y, lo=None, hi=None, style: dict | None = None, band_alpha: float = 0.18, **kw):
    """Line ``y(x)`` and, when ``lo``/``hi`` are given, the shaded confidence band [lo, hi].

    Points where y is not finite are dropped (a missing summary row is not drawn as zero).
    """
    style = dict(style or {})
    style.update(kw)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind="stable")
    xs, ys = x[keep][order], y[keep][order]
    (line,) = ax.plot(xs, ys, **style)
    if lo is not None and hi is not None:
        lo = np.asarray(lo, dtype=float)[keep][order]
        hi = np.asarray(hi, dtype=float)[keep][order]
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(xs[ok], lo[ok], hi[ok], color=line.get_color(), alpha=band_alpha, linewidth=0)
    return line


def save_figure(fig, directory, stem: str) -> list[Path]:
    """Write ``fig`` as ``<directory>/<stem>.png`` and ``.pdf`` (each via temp file + rename).

    Returns the two paths. ``stem`` must be a plain file name without a suffix.
    """
    if not stem or "/" in stem or os.sep in stem or "." in stem:
        raise ValueError(f"stem must be a plain file name without suffix or directory, got {stem!r}")
    directory = Path(directory)
    paths = [directory / f"{stem}.png", directory / f"{stem}.pdf"]
    for path in paths:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."))
    return paths
