"""rdro.paper_figures — one module per paper figure, and the report.

Installed as ``rdro.paper_figures`` (the top-level folder ``paper_figures/`` is
mapped there by setuptools ``package-dir``).
"""
