"""rdro.llm.kernels — fused per-sequence log-prob kernels (Triton) and their pure-torch reference.

Installed as ``rdro.llm.kernels`` (folder ``llm/kernels/`` mapped by setuptools ``package-dir``).

Public API: :func:`sequence_logprobs` (log π(y_t) per token, or Σ_t log π(y_t) per sequence, straight from the final
hidden states and the LM-head weight, without materialising the [tokens × vocabulary] logits) and
:func:`naive_sequence_logprobs` (the full-logits reference). ``rdro bench logprobs`` runs :mod:`.bench`.
See ``llm/kernels/README.md`` for the design.
"""

from rdro.llm.kernels.logprobs import (
    BACKENDS,
    REDUCTIONS,
    check_grad_filter,
    resolve_backend,
    sequence_logprobs,
    triton_available,
)
from rdro.llm.kernels.naive import naive_sequence_logprobs

__all__ = [
    "BACKENDS",
    "REDUCTIONS",
    "check_grad_filter",
    "naive_sequence_logprobs",
    "resolve_backend",
    "sequence_logprobs",
    "triton_available",
]
