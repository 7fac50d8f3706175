"""Pure-torch chunked token log-probs: the CPU path of ``sequence_logprobs`` and the reference for the Triton kernels.

For token i with final hidden state h_i ∈ R^H, LM-head weight W ∈ R^{V×H}, bias b ∈ R^V and logit scale s
(s = 1/temperature) the logits are z_i = s (W h_i + b) and the token log-prob of target y_i is

    log π(y_i) = z_{i,y_i} − LSE_i,        LSE_i = log Σ_v exp z_{i,v}.

The tokens are processed in chunks of ``chunk_size`` rows and the vocabulary in tiles of ``vocab_tile`` columns with an
online log-sum-exp (running max m and running sum l, rescaled by exp(m_old − m_new) whenever the max grows), so the
largest intermediate is one fp32 [chunk_size, vocab_tile] tile, never the full [N, V] logits.

Backward, for an upstream gradient g_i = ∂L/∂log π(y_i) (zero at ignored tokens), with p_i = softmax(z_i):

    ∂L/∂z_i = g_i (e_{y_i} − p_i),        G = s · [g_i (e_{y_i} − p_i)]_i
    ∂L/∂h_i = G_i W,   ∂L/∂W = Σ_i G_i^T h_i,   ∂L/∂b = Σ_i G_i,

recomputing each logits tile from h and W (p_i = exp(z_i − LSE_i) with the LSE saved by the forward). Every product is
formed in fp32; ∂L/∂h is accumulated per chunk and ∂L/∂W, ∂L/∂b over all chunks in fp32 buffers, then cast to the
dtype of the input they belong to.

Gradient filtering (``grad_filter`` = ε > 0, off by default): in each token chunk, the vocabulary columns v where
every scored token (g_i ≠ 0) has p_iv < ε and which are no scored token's target are dropped from G, and the gradient
matmuls run on the kept columns only (gathered). A dropped column holds only softmax parts −s g_i p_iv, each below
s |g_i| ε; every target part s g_i e_{y_i} lies in a kept column, formed there with its softmax part as in the exact
backward. The Triton path applies the same rule per its own token chunk. The error in ∂L/∂h_i is at most
s |g_i| Σ_{v dropped} p_iv ‖W_v‖, small when the probability mass below ε is; the bias gradient stays exact. The
idea of skipping gradient entries below ε is cut-cross-entropy's (its default ε for bf16 is 2^-12); its unit is a
token × vocabulary tile, which on a trained LM's distributions almost never has every entry below ε
(``python -m rdro.llm.kernels.filter_report`` measures both), hence columns here.

All functions here work on flattened inputs: hidden [N, H], weight [V, H], bias [V] or None, targets [N] int64.
"""

from __future__ import annotations

import torch

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_VOCAB_TILE",
    "compute_dtype",
    "torch_token_logprobs",
    "torch_token_logprobs_backward",
]

DEFAULT_CHUNK_SIZE = 1024  # tokens per chunk
DEFAULT_VOCAB_TILE = 16384  # vocabulary columns per tile; with the default chunk: a 64 MiB fp32 logits tile at most


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 for fp64 inputs, fp32 for everything else (fp32, bf16, fp16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _logits_tile(h32: torch.Tensor, weight: torch.Tensor, bias, v0: int, v1: int, scale: float) -> torch.Tensor:
    """z = s (h W[v0:v1]^T + b[v0:v1]) in the compute dtype of ``h32`` for one [chunk, tile] block."""
    z = h32 @ weight[v0:v1].to(h32.dtype).T
    if bias is not None:
        z += bias[v0:v1].to(h32.dtype)
    if scale != 1.0:
        z *= scale
    return z


def torch_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias,
    targets: torch.Tensor,
    logit_scale: float,
    ignore_index: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    vocab_tile: int = DEFAULT_VOCAB_TILE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_i) = z_{i,y_i} − LSE_i and LSE_i, both fp32 [N] (fp64 for fp64 inputs); log π = 0 where
    y_i == ignore_index.

    Online log-sum-exp over vocabulary tiles inside token chunks (see the module docstring); no [N, V] tensor is formed.
    """
    n = hidden.shape[0]
    vocab = weight.shape[0]
    cdt = compute_dtype(hidden.dtype)
    logp = torch.zeros(n, dtype=cdt, device=hidden.device)
    lse = torch.empty(n, dtype=cdt, device=hidden.device)
    for c0 in range(0, n, chunk_size):
        c1 = min(n, c0 + chunk_size)
        h32 = hidden[c0:c1].to(cdt)
        tgt = targets[c0:c1]
        run_max = torch.full((c1 - c0,), float("-inf"), dtype=cdt, device=hidden.device)
        run_sum = torch.zeros(c1 - c0, dtype=cdt, device=hidden.device)
        target_logit = torch.zeros(c1 - c0, dtype=cdt, device=hidden.device)
        for v0 in range(0, vocab, vocab_tile):
            v1 = min(vocab, v0 + vocab_tile)
            z = _logits_tile(h32, weight, bias, v0, v1, logit_scale)
            new_max = torch.maximum(run_max, z.amax(dim=1))
            # a finite shift: a row whose logits so far are all −inf (a −inf bias) would give exp(−inf − (−inf)) = NaN
            shift = torch.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * torch.exp(run_max - shift) + torch.exp(z - shift[:, None]).sum(dim=1)
            run_max = new_max
            in_tile = (tgt >= v0) & (tgt < v1)
            col = torch.where(in_tile, tgt - v0, 0)
            target_logit = torch.where(in_tile, z.gather(1, col[:, None]).squeeze(1), target_logit)
        chunk_lse = run_max + torch.log(run_sum)
        lse[c0:c1] = chunk_lse
        logp[c0:c1] = torch.where(tgt != ignore_index, target_logit - chunk_lse, 0.0)
    return logp, lse


def torch_token_logprobs_backward(
    grad_logp: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias,
    targets: torch.Tensor,
    lse: torch.Tensor,
    logit_scale: float,
    ignore_index: int,
    need_hidden: bool,
    need_weight: bool,
    need_bias: bool,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    vocab_tile: int = DEFAULT_VOCAB_TILE,
    grad_filter: float = 0.0,
):
    """(∂L/∂h, ∂L/∂W, ∂L/∂b) from g = ∂L/∂log π [N]; each is None when not needed.

    G = s · g_i (e_{y_i} − exp(z_i − LSE_i)) per recomputed tile; ∂L/∂h = G W, ∂L/∂W = G^T h, ∂L/∂b = Σ_i G_i,
    products in fp32, ∂L/∂W and ∂L/∂b accumulated over token chunks in fp32. ``grad_filter`` = ε > 0 drops the softmax
    part of the vocabulary columns whose scored tokens in the chunk all have p < ε (module docstring).
    """
    n, width = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    cdt = compute_dtype(hidden.dtype)
    valid = targets != ignore_index
    g_all = torch.where(valid, grad_logp.to(cdt), 0.0)
    grad_hidden = torch.empty_like(hidden) if need_hidden else None
    grad_w32 = torch.zeros(vocab, width, dtype=cdt, device=dev) if need_weight else None
    grad_b32 = torch.zeros(vocab, dtype=cdt, device=dev) if need_bias else None
    for c0 in range(0, n, chunk_size):
        c1 = min(n, c0 + chunk_size)
        h32 = hidden[c0:c1].to(cdt)
        tgt = targets[c0:c1]
        g = g_all[c0:c1]
        chunk_lse = lse[c0:c1].to(cdt)
        dh = torch.zeros(c1 - c0, width, dtype=cdt, device=dev) if need_hidden else None
        scored = g != 0
        for v0 in range(0, vocab, vocab_tile):
            v1 = min(vocab, v0 + vocab_tile)
            prob = torch.exp(_logits_tile(h32, weight, bias, v0, v1, logit_scale) - chunk_lse[:, None])
            rows = torch.nonzero((tgt >= v0) & (tgt < v1)).squeeze(1)
            if grad_filter > 0:  # columns with some scored p ≥ ε, and every scored token's target column
                keep = torch.where(scored[:, None], prob, 0.0).amax(dim=0) >= grad_filter
                keep[tgt[rows[scored[rows]]] - v0] = True
            grad_z = prob.mul_(-g[:, None])
            grad_z[rows, tgt[rows] - v0] += g[rows]
            if logit_scale != 1.0:
                grad_z *= logit_scale
            if need_bias:  # every column: the bias gradient stays exact
                grad_b32[v0:v1] += grad_z.sum(dim=0)
            w_tile = weight[v0:v1]
            if grad_filter > 0:
                cols = torch.nonzero(keep).squeeze(1)
                grad_z, w_tile = grad_z[:, cols], w_tile[cols]
            if need_hidden:
                dh += grad_z @ w_tile.to(cdt)
            if need_weight:
                if grad_filter > 0:
                    grad_w32.index_add_(0, v0 + cols, grad_z.T @ h32)
                else:
                    grad_w32[v0:v1] += grad_z.T @ h32
        if need_hidden:
            grad_hidden[c0:c1] = dh.to(hidden.dtype)
    grad_weight = grad_w32.to(weight.dtype) if need_weight else None
    grad_bias = grad_b32.to(bias.dtype) if need_bias else None
    return grad_hidden, grad_weight, grad_bias
