"""rdro.llm — data, models, fused log-prob kernels and the trainer for LLM alignment.

Installed as ``rdro.llm`` (the top-level folder ``llm/`` is mapped there by
setuptools ``package-dir``, so there is no top-level module named ``llm``).
Needs the ``llm`` extra: ``pip install 'rdro[llm]'``.
"""
