"""rdro.paper_figures — one module per paper figure, and the report (``rdro figures``).

Installed as ``rdro.paper_figures`` (the top-level folder ``paper_figures/`` is mapped there by
setuptools ``package-dir``). Each ``fNN_<name>.py`` has ``INFO``, ``compute(settings) -> results``
and ``draw(results) -> Figure`` (see :mod:`rdro.paper_figures.figure_contract`); ``cli.main`` builds
them, caches the results and writes ``REPORT.md`` / ``REPORT.html`` (:mod:`rdro.paper_figures.report`).
"""
