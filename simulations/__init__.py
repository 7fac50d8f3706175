"""rdro.simulations — synthetic worlds with known p+, p−, r_α and g, and the experiments E1–E6.

Installed as ``rdro.simulations`` (the top-level folder ``simulations/`` is mapped
there by setuptools ``package-dir``). Never imports ``rdro.llm``.
"""
