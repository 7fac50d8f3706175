"""Naive full-logits log-probs: the textbook computation the fused op must match (tests, benchmark baseline).

It forms the full [N, V] logits z = s (h W^T + b), applies log_softmax and gathers the targets:
log π(y_i) = z_{i,y_i} − log Σ_v exp z_{i,v}. Memory O(N·V): only for references and the "naive" benchmark row.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["naive_sequence_logprobs"]


def naive_sequence_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: Optional[torch.Tensor] = None,
    logit_scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "sum",
    compute_dtype: torch.dtype = torch.float32,
    matmul_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """log π(y_i) = log_softmax(s (h_i W^T + b))[y_i] from the full logits, 0 at ``ignore_index``.

    Same contract as :func:`rdro.llm.kernels.sequence_logprobs` ("sum" → per-sequence sums for [B, T, H] input, the
    total for [N, H]; "none" → per-position values). The logits are formed in ``compute_dtype`` (float64 for the test
    reference); with ``matmul_dtype`` set (the benchmark's naive baseline: bf16), the matmul runs in that dtype and
    its output is cast to ``compute_dtype`` for the softmax, as a typical training loop does.
    """
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction={reduction!r} is not one of ('sum', 'none')")
    mm = matmul_dtype or compute_dtype
    logits = (hidden.to(mm) @ weight.to(mm).T).to(compute_dtype)
    if bias is not None:
        logits = logits + bias.to(compute_dtype)
    logits = logits * logit_scale
    valid = targets != ignore_index
    picked = torch.log_softmax(logits, dim=-1).gather(-1, torch.where(valid, targets, 0).unsqueeze(-1)).squeeze(-1)
    logp = torch.where(valid, picked, torch.zeros((), dtype=compute_dtype, device=picked.device))
    if reduction == "none":
        return logp
    return logp.sum(dim=-1) if hidden.dim() == 3 else logp.sum()
