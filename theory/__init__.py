"""rdro.theory — convergence bounds and loss constants as code.

Installed as ``rdro.theory`` (the top-level folder ``theory/`` is mapped there by
setuptools ``package-dir``); import it as ``rdro.theory``, never as ``theory``.
"""
