"""Triton kernels for token log-probs: online log-sum-exp forward, tile-recomputing backward.

Notation as in :mod:`rdro.llm.kernels.torch_chunked`: z_i = s (W h_i + b), log π(y_i) = z_{i,y_i} − LSE_i, and for an
upstream gradient g_i, G_i = s g_i (e_{y_i} − softmax(z_i)), ∂L/∂h = G W, ∂L/∂W = G^T h, ∂L/∂b = Σ_i G_i.

Forward (policy and reference alike; the reference, which needs no gradient, stores nothing): ``_lse_partial_kernel``
runs on a grid of (token block × vocabulary split). Each program computes [BLOCK_N, BLOCK_V] logits tiles with
``tl.dot`` (fp32 accumulator, K-loop over H) and folds them into a running max m and running sum l (online
log-sum-exp). The per-split (m, l) pairs ([splits, N], a few KiB) are merged in torch: LSE = M + log Σ_s l_s
exp(m_s − M). The target logits z_{i,y_i} come from ``_target_logit_kernel`` (h_i · W[y_i], N·H work) rather than
from a compare-and-select over every tile. Memory: O(N · splits); the logits never leave the SM.

Backward: tokens in chunks of ``chunk_tokens`` rows, vocabulary in slabs of ``slab_vocab`` columns. For each (chunk,
slab), ``_grad_logits_kernel`` recomputes the logits tile by tile and writes G for that slab in the input dtype (one
[chunk, slab] buffer, ~16-32 MiB at the default sizes); then ``_matmul_accumulate_kernel`` (a tiled GEMM with an fp32
accumulator that adds into its output) forms ∂L/∂h_chunk += G W_slab into an fp32 [chunk, H] buffer and
∂L/∂W_slab += G^T h_chunk straight into ∂L/∂W (accumulated in fp32 over the chunk's tokens, then added to the stored
value in W's dtype: N / chunk_tokens roundings in bf16, none for fp32 weights). Beyond the gradients themselves the
backward therefore holds only the G slab and the fp32 chunk accumulator. Work: the forward matmul (2NHV flop) once
more for the recompute plus the two gradient matmuls (4NHV). With ``grad_filter`` = ε > 0 the grad kernel also records
each slab column's largest probability, and the two gradient matmuls run on the columns where it reaches ε only
(:func:`triton_token_logprobs_backward`).

Every kernel masks rows ≥ N, vocabulary columns ≥ V and hidden columns ≥ H, so no size needs to be a multiple of a
block size. The kernels also run on CPU tensors under the Triton interpreter (TRITON_INTERPRET=1), with small blocks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rdro.llm.kernels.l2_model import DEFAULT_L2_BYTES, auto_group_rows

__all__ = ["TUNING", "set_tuning", "triton_token_logprobs", "triton_token_logprobs_backward", "backward_tiling"]


def _interpreted() -> bool:
    try:
        from triton import knobs
    except ImportError:  # triton < 3.4 reads the variable directly
        import os

        return os.environ.get("TRITON_INTERPRET", "0") == "1"
    return bool(knobs.runtime.interpret)


def _l2_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", DEFAULT_L2_BYTES))
    return DEFAULT_L2_BYTES


def _upcast(dtype: torch.dtype) -> bool:
    # the Triton interpreter's tl.dot mis-reads bf16/fp16 operands (raw bits); it gets fp32 copies instead
    return _interpreted() and dtype != torch.float32


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products (tf32 would cost ~3 decimal digits); bf16/fp16: native tensor-core products
    return "ieee" if dtype == torch.float32 else "tf32"


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


@triton.jit
def _logits_tile(
    h_src,
    w_src,
    b_ptr,
    row0,
    col0,
    rows,
    cols,
    row_mask,
    col_mask,
    width,
    scale,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    TMA: tl.constexpr,
):
    """z = s (h[rows] W[cols]^T + b[cols]) as an fp32 [BLOCK_N, BLOCK_V] tile; −inf in columns ≥ V.

    ``h_src``, ``w_src``: pointers to row-major [N, H] and [V, H], or with TMA tensor descriptors of them (block
    [BLOCK_N, BLOCK_H] and [BLOCK_V, BLOCK_H]) whose out-of-range rows and columns read as zeros; the Hopper copy
    engine then moves the tiles instead of every thread computing addresses (``rows``/``cols`` are contiguous ranges
    starting at ``row0``/``col0``)."""
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    offs_h = tl.arange(0, BLOCK_H)
    if not TMA:
        h_rows = h_src + rows.to(tl.int64)[:, None] * width
        w_rows = w_src + cols.to(tl.int64)[:, None] * width
    for k0 in range(0, width, BLOCK_H):
        if TMA:
            h = h_src.load([row0, k0])
            w = w_src.load([col0, k0])
        else:
            k = k0 + offs_h
            k_mask = k < width
            h = tl.load(h_rows + k[None, :], mask=row_mask[:, None] & k_mask[None, :], other=0.0)
            w = tl.load(w_rows + k[None, :], mask=col_mask[:, None] & k_mask[None, :], other=0.0)
        if UPCAST:
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, tl.trans(w), acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    acc = acc * scale
    return tl.where(col_mask[None, :], acc, float("-inf"))


@triton.jit
def _lse_partial_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    max_ptr,
    sum_ptr,
    n_rows,
    vocab,
    width,
    scale,
    tiles_per_split,
    n_row_blocks,
    n_splits,
    HAS_BIAS: tl.constexpr,
    FLATTEN: tl.constexpr,
    TMA: tl.constexpr,
    GROUP_ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """Per (token block, vocabulary split): running max m and running Σ exp(z − m) (online log-sum-exp).

    The target logits are not picked here (a compare, select and sum per element of every tile, which cost the
    per-tile update about as many instructions as the log-sum-exp itself) but by ``_target_logit_kernel``, an
    [N × H] gather-dot. (Forming the tiles in base 2, with log2(e) folded into the logit scale, would save one
    multiply per element more, but the backward's probabilities exp(z − LSE) must see the same rounding of z as
    the LSE did, or fp32 gradients lose ~4 digits at |logits| ~ 1e3: tried and measured by the tests.)

    FLATTEN: the tile loop and the K loop inside ``_logits_tile`` become one software-pipelined loop (Triton's loop
    flattening), so the loads of a tile's first K steps are in flight while the previous tile's online-softmax update
    runs, instead of starting after it (the nested loop's prologue at every tile). The inner K loop is never empty
    (H ≥ 1), the case in which Triton's flattening has miscompiled (triton-lang/triton#11656).

    The grid is 1-D over (token block, split) pairs. GROUP_ROWS = 0: token blocks vary fastest, so the programs that
    run together share the W tiles but each streams its own h block once per vocabulary tile — at H = 3584 that is
    ~0.9 MB per program per tile, 132 programs together ~120 MB, more than the L2, so h comes from HBM again for
    every tile (≈ 140 GB per forward at N = 32768, V = 152k). GROUP_ROWS = g > 0: programs run in groups of g token
    blocks × all splits (token block fastest within a group), so at most ~g h blocks are live (g = 16: ~15 MB, they
    stay in L2) and each W tile is read from HBM once per group (N / (128 g) times in all)."""
    pid = tl.program_id(0)
    if GROUP_ROWS > 0:
        per_group = GROUP_ROWS * n_splits
        first_block = (pid // per_group) * GROUP_ROWS
        blocks_here = tl.minimum(n_row_blocks - first_block, GROUP_ROWS)
        pid_n = first_block + (pid % per_group) % blocks_here
        pid_s = (pid % per_group) // blocks_here
    else:
        pid_n = pid % n_row_blocks
        pid_s = pid // n_row_blocks
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < n_rows
    split_lo = pid_s * tiles_per_split * BLOCK_V
    split_hi = tl.minimum(split_lo + tiles_per_split * BLOCK_V, vocab)
    run_max = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for v0 in tl.range(split_lo, split_hi, BLOCK_V, flatten=FLATTEN):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_mask = cols < vocab
        z = _logits_tile(
            h_ptr, w_ptr, b_ptr, pid_n * BLOCK_N, v0, rows, cols, row_mask, col_mask, width, scale, HAS_BIAS,
            BLOCK_N, BLOCK_V, BLOCK_H, PRECISION, UPCAST, TMA,
        )  # fmt: skip
        new_max = tl.maximum(run_max, tl.max(z, axis=1))
        # a finite shift: a row whose logits so far are all −inf (a −inf bias) would make exp(−inf − (−inf)) = NaN
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(z - shift[:, None]), axis=1)
        run_max = new_max
    out = pid_s * n_rows + rows
    tl.store(max_ptr + out, run_max, mask=row_mask)
    tl.store(sum_ptr + out, run_sum, mask=row_mask)


@triton.jit
def _target_logit_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    tgt_ptr,
    out_ptr,
    n_rows,
    width,
    scale,
    HAS_BIAS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """out[i] = s (h_i · W[y_i] + b[y_i]) in fp32 for the scored tokens (y_i ≥ 0), 0 at ignored ones: the products
    of the 16-bit inputs are exact in fp32, as in the tiles' tensor-core dot."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    tgt = tl.load(tgt_ptr + rows, mask=rows < n_rows, other=-1)
    scored = (rows < n_rows) & (tgt >= 0)
    h_rows = h_ptr + rows.to(tl.int64)[:, None] * width
    w_rows = w_ptr + tl.where(scored, tgt, 0).to(tl.int64)[:, None] * width
    acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for k0 in range(0, width, BLOCK_H):
        k = k0 + tl.arange(0, BLOCK_H)
        mask = scored[:, None] & (k < width)[None, :]
        h = tl.load(h_rows + k[None, :], mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_rows + k[None, :], mask=mask, other=0.0).to(tl.float32)
        acc += tl.sum(h * w, axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + tgt, mask=scored, other=0.0).to(tl.float32)
    tl.store(out_ptr + rows, tl.where(scored, acc * scale, 0.0), mask=rows < n_rows)


@triton.jit
def _grad_logits_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    tgt_ptr,
    lse_ptr,
    grad_ptr,
    out_ptr,
    col_max_ptr,
    n_rows,
    slab_lo,
    slab_width,
    vocab,
    width,
    scale,
    stride_out_row,
    stride_out_col,
    HAS_BIAS: tl.constexpr,
    COLUMN_MAX: tl.constexpr,
    TMA: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """G[i, v − slab_lo] = s g_i (1[v = y_i] − exp(z_iv − LSE_i)) for v in the slab; g_i = 0 at ignored tokens. G is
    stored with the given strides: [chunk, slab] row-major (exact backward) or transposed (filtered backward).

    COLUMN_MAX: also col_max[v − slab_lo] = max over the scored tokens (g_i ≠ 0) of p_iv, counting a scored token's
    own target column as 1 (atomic max across the token blocks; the caller zeroes it), for the gradient filter: so a
    column that is some scored token's target is always kept."""
    pid_n = tl.program_id(0)
    pid_v = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    local = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    cols = slab_lo + local
    row_mask = rows < n_rows
    col_mask = (local < slab_width) & (cols < vocab)
    z = _logits_tile(
        h_ptr, w_ptr, b_ptr, pid_n * BLOCK_N, slab_lo + pid_v * BLOCK_V, rows, cols, row_mask, col_mask, width, scale,
        HAS_BIAS, BLOCK_N, BLOCK_V, BLOCK_H, PRECISION, UPCAST, TMA,
    )  # fmt: skip
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=float("inf"))  # exp(z − inf) = 0 in padding rows
    g = tl.load(grad_ptr + rows, mask=row_mask, other=0.0)
    tgt = tl.load(tgt_ptr + rows, mask=row_mask, other=-1)
    prob = tl.exp(z - lse[:, None])
    if COLUMN_MAX:
        scored_prob = tl.where((g != 0.0)[:, None], prob, 0.0)
        tl.atomic_max(col_max_ptr + local, tl.max(scored_prob, axis=0), mask=col_mask)
        # a scored token's own target column counts as 1: one atomic per row whose target lies in this tile
        tile_lo = slab_lo + pid_v * BLOCK_V
        mine = row_mask & (g != 0.0) & (tgt >= tile_lo) & (tgt < tile_lo + BLOCK_V) & (tgt < slab_lo + slab_width)
        tl.atomic_max(col_max_ptr + (tgt - slab_lo), tl.full((BLOCK_N,), 1.0, tl.float32), mask=mine)
    onehot = (cols[None, :] == tgt[:, None]).to(tl.float32)
    grad_z = (scale * g)[:, None] * (onehot - prob)
    out = out_ptr + rows.to(tl.int64)[:, None] * stride_out_row + local.to(tl.int64)[None, :] * stride_out_col
    tl.store(out, grad_z.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & col_mask[None, :])


@triton.jit
def _matmul_accumulate_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    m_size,
    n_size,
    k_size,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    ACCUMULATE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """C ← C + A B (ACCUMULATE) or C ← A B, with an fp32 accumulator and one rounding to C's dtype at the store."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    m_mask = rm < m_size
    n_mask = rn < n_size
    a_rows = a_ptr + rm.to(tl.int64)[:, None] * stride_am
    b_cols = b_ptr + rn.to(tl.int64)[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k_size, BLOCK_K):
        k = (k0 + rk).to(tl.int64)
        k_mask = k < k_size
        a = tl.load(a_rows + k[None, :] * stride_ak, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(b_cols + k[:, None] * stride_bk, mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    c = c_ptr + rm.to(tl.int64)[:, None] * stride_cm + rn.to(tl.int64)[None, :] * stride_cn
    mask = m_mask[:, None] & n_mask[None, :]
    if ACCUMULATE:
        acc += tl.load(c, mask=mask, other=0.0).to(tl.float32)
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _compact_kept_columns_kernel(
    col_max_ptr,
    cols_ptr,
    count_ptr,
    slab_width,
    threshold,
    BLOCK_V: tl.constexpr,
):
    """One program per (chunk, slab) of the filtered backward, so that the host never waits for the kept count:
    cols[0:count] = the slab's columns with col_max ≥ ε in increasing order and count = their number (both stay on
    the device, read by the two kernels below); col_max is reset to 0 for the next slab."""
    local = tl.arange(0, BLOCK_V)
    in_slab = local < slab_width
    kept = (tl.load(col_max_ptr + local, mask=in_slab, other=0.0) >= threshold) & in_slab
    position = tl.cumsum(kept.to(tl.int32), axis=0) - 1
    tl.store(cols_ptr + position, local, mask=kept)
    tl.store(count_ptr, tl.sum(kept.to(tl.int32), axis=0))
    tl.debug_barrier()  # every load of col_max above precedes the reset
    tl.store(col_max_ptr + local, tl.zeros((BLOCK_V,), tl.float32), mask=in_slab)


@triton.jit
def _kept_columns_grad_hidden_kernel(
    gt_ptr,
    w_ptr,
    cols_ptr,
    count_ptr,
    acc_ptr,
    n_rows,
    width,
    slab_lo,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """acc[i, :] += Σ_{t < count} Gᵀ[cols[t], i] W[slab_lo + cols[t], :] — ∂L/∂h of the chunk over the kept columns
    only (fp32 acc [chunk, H]; Gᵀ [slab, chunk] from the grad kernel). Both operands are row gathers, contiguous
    along the token and hidden axes; the K loop stops at the count read from device memory."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = rm < n_rows
    n_mask = rn < width
    count = tl.load(count_ptr)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t0 in range(0, count, BLOCK_K):
        t = t0 + tl.arange(0, BLOCK_K)
        t_mask = t < count
        col = tl.load(cols_ptr + t, mask=t_mask, other=0).to(tl.int64)
        a = tl.load(gt_ptr + col[None, :] * n_rows + rm[:, None], mask=m_mask[:, None] & t_mask[None, :], other=0.0)
        b = tl.load(
            w_ptr + (slab_lo + col)[:, None] * width + rn[None, :], mask=t_mask[:, None] & n_mask[None, :], other=0.0
        )
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    out = acc_ptr + rm.to(tl.int64)[:, None] * width + rn[None, :]
    rows_written = tl.where(count > 0, n_rows, 0)  # nothing kept: no read-modify-write of acc either
    mask = (rm < rows_written)[:, None] & n_mask[None, :]
    tl.store(out, acc + tl.load(out, mask=mask, other=0.0), mask=mask)


@triton.jit
def _kept_columns_grad_weight_kernel(
    gt_ptr,
    h_ptr,
    cols_ptr,
    count_ptr,
    grad_w_ptr,
    n_rows,
    width,
    slab_lo,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """∂W[slab_lo + cols[t], :] += Σ_i Gᵀ[cols[t], i] h[i, :] for t < count — one block of kept columns per program
    (fp32 accumulator, one rounding to ∂W's dtype per chunk); programs past the count do no work."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    count = tl.load(count_ptr)
    t = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    t_mask = t < count
    n_mask = rn < width
    col = tl.load(cols_ptr + t, mask=t_mask, other=0).to(tl.int64)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, tl.where(pid_m * BLOCK_M < count, n_rows, 0), BLOCK_K):
        k = (k0 + rk).to(tl.int64)
        k_mask = k < n_rows
        a = tl.load(gt_ptr + col[:, None] * n_rows + k[None, :], mask=t_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(h_ptr + k[:, None] * width + rn[None, :], mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    out = grad_w_ptr + (slab_lo + col)[:, None] * width + rn[None, :]
    mask = t_mask[:, None] & n_mask[None, :]
    acc += tl.load(out, mask=mask, other=0.0).to(tl.float32)
    tl.store(out, acc.to(grad_w_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------


#: Block sizes and backward options measured on a GPU (``rdro.llm.kernels.tune``), for bf16/fp16 inputs on CUDA.
#: Keys: "forward" and "grad" (tile blocks of the fused kernels: BLOCK_N, BLOCK_V, BLOCK_H, num_warps, num_stages),
#: "gemm" ("triton": the Triton GEMM below; "torch": cuBLAS through torch), "slab_vocab", "budget_mib" (backward
#: buffer budget), "kept" (blocks of the filtered backward's kept-column GEMMs: BLOCK_M, BLOCK_N, BLOCK_K, num_warps,
#: num_stages). A missing key keeps the built-in default. The environment variable RDRO_TRITON_TUNING may name a
#: JSON file with such a dict (read at import), which is how the tuner hands its choice to the benchmark.
TUNING: dict = {}
_TUNING_KEYS = {"forward", "grad", "gemm", "slab_vocab", "budget_mib", "kept"}
_BLOCK_KEYS = {"BLOCK_N", "BLOCK_V", "BLOCK_H", "num_warps", "num_stages"}
#: tuning["kept"]: the blocks of the filtered backward's two kept-column GEMM kernels (default: :func:`_matmul_config`)
_GEMM_KEYS = {"BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages"}
#: Optional loop flags of the tile kernels in tuning["forward"] / tuning["grad"], with their defaults.
_LOOP_FLAGS = {"forward": {"FLATTEN": False, "TMA": False, "GROUP_ROWS": 0}, "grad": {"TMA": False}}


def set_tuning(tuning: dict) -> None:
    """Replace :data:`TUNING` after checking its keys and values (ValueError naming the bad entry)."""
    unknown = set(tuning) - _TUNING_KEYS
    if unknown:
        raise ValueError(f"tuning has unknown keys {sorted(unknown)}; expected some of {sorted(_TUNING_KEYS)}")
    for key, optional in _LOOP_FLAGS.items():
        if key in tuning and not _BLOCK_KEYS <= set(tuning[key]) <= _BLOCK_KEYS | set(optional):
            raise ValueError(
                f"tuning[{key!r}] must have the keys {sorted(_BLOCK_KEYS)} and optionally {sorted(optional)}, "
                f"got {tuning[key]}"
            )
        group = tuning.get(key, {}).get("GROUP_ROWS", 0)
        if not (isinstance(group, int) and not isinstance(group, bool) and group >= -1):
            raise ValueError(f"tuning[{key!r}]['GROUP_ROWS'] must be an int ≥ -1 (-1: auto), got {group!r}")
    kept = tuning.get("kept")
    if kept is not None and not (
        isinstance(kept, dict)
        and set(kept) == _GEMM_KEYS
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in kept.values())
        and all(kept[k] >= 16 and kept[k] & (kept[k] - 1) == 0 for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))
    ):
        raise ValueError(
            f"tuning['kept'] must map {sorted(_GEMM_KEYS)} to positive ints (block sizes powers of two ≥ 16), got {kept!r}"
        )
    if tuning.get("gemm", "triton") not in ("triton", "torch"):
        raise ValueError(f"tuning['gemm'] must be 'triton' or 'torch', got {tuning['gemm']!r}")
    for key in ("slab_vocab", "budget_mib"):
        if key in tuning and not (isinstance(tuning[key], int) and tuning[key] > 0):
            raise ValueError(f"tuning[{key!r}] must be a positive int, got {tuning[key]!r}")
    TUNING.clear()
    TUNING.update(tuning)


def _load_tuning_from_environment() -> None:
    import json
    import os

    path = os.environ.get("RDRO_TRITON_TUNING")
    if path:
        set_tuning(json.loads(open(path).read()))


#: The defaults on a GPU: the tuner's choice on an NVIDIA H200 (torch 2.11, Triton 3.6; N = 32768 tokens at the
#: Qwen2.5-0.5B / Qwen2.5-7B / Llama-3-8B shapes; llm/kernels/README.md has the measured times). Block sizes and the
#: backward options apply to 16-bit inputs, as do the loop flags (flattened tile loop, TMA loads, automatic grouping of
#: token blocks: ``tune --quick``, 2026-11-27, forward −21 % at 7B).
GPU_DEFAULTS = dict(
    forward=dict(
        BLOCK_N=128, BLOCK_V=256, BLOCK_H=64, num_warps=8, num_stages=3, FLATTEN=True, TMA=True, GROUP_ROWS=-1
    ),
    grad=dict(BLOCK_N=128, BLOCK_V=256, BLOCK_H=64, num_warps=8, num_stages=3, TMA=True),
    gemm="torch",
    slab_vocab=8192,
    budget_mib=48,
)


def _tuned(dtype: torch.dtype) -> dict:
    """Block sizes and options for compiled kernels on 16-bit inputs (:data:`GPU_DEFAULTS` overridden by
    :data:`TUNING`), else {} (fp32 inputs and the interpreter keep the built-in choices)."""
    return {**GPU_DEFAULTS, **TUNING} if dtype != torch.float32 and not _interpreted() else {}


def _tile_config(dtype: torch.dtype, kernel: str = "forward") -> dict:
    """Block sizes: small under the interpreter (speed), tensor-core sized on a GPU (tuned for 16-bit inputs, fixed
    for fp32); ``kernel`` ∈ {forward, grad}. Plus the kernel's loop flags (:data:`_LOOP_FLAGS`): for 16-bit inputs on
    a GPU from :data:`TUNING` over :data:`GPU_DEFAULTS`; for fp32 inputs and in the interpreter (which keeps its small
    blocks, so that the tests run the flagged paths on CPU too) from :data:`TUNING` alone, else off — the defaults
    were measured in bf16, and with TMA the fp32 kernels spill (``aot_check``: 255 registers, 330–480 B of stack)."""
    tuned = _tuned(dtype)
    flags = dict(_LOOP_FLAGS[kernel])
    flags.update({k: v for k, v in (tuned or TUNING).get(kernel, {}).items() if k in flags})
    if _interpreted():
        config = dict(BLOCK_N=16, BLOCK_V=16, BLOCK_H=16)
    elif kernel in tuned:
        config = {k: v for k, v in tuned[kernel].items() if k not in flags}
    else:
        config = dict(BLOCK_N=64, BLOCK_V=64, BLOCK_H=32, num_warps=4, num_stages=3)  # fp32 inputs
    return {**flags, **config}


def _tma_sources(hidden: torch.Tensor, weight: torch.Tensor, config: dict):
    """(h source, W source, TMA flag) for a tile kernel: tensor descriptors (tiles [BLOCK_N, BLOCK_H] and [BLOCK_V,
    BLOCK_H], zero-filled out of range) when ``config["TMA"]`` asks for them and the tensors allow them — a GPU of
    compute capability ≥ 9 (or the interpreter), 2-D row-major tensors with 16-byte aligned base and row stride —
    else the tensors themselves (pointer loads)."""
    if not config.get("TMA"):
        return hidden, weight, False
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:  # a Triton without host-side descriptors
        return hidden, weight, False
    if hidden.device.type == "cuda":
        if torch.cuda.get_device_capability(hidden.device)[0] < 9:
            return hidden, weight, False
    elif not _interpreted():
        return hidden, weight, False
    for t in (hidden, weight):
        if t.dim() != 2 or t.stride(1) != 1 or (t.stride(0) * t.element_size()) % 16 or t.data_ptr() % 16:
            return hidden, weight, False
    return (
        TensorDescriptor.from_tensor(hidden, [config["BLOCK_N"], config["BLOCK_H"]]),
        TensorDescriptor.from_tensor(weight, [config["BLOCK_V"], config["BLOCK_H"]]),
        True,
    )


def _target_logit_config() -> dict:
    return dict(BLOCK_R=16, BLOCK_H=16) if _interpreted() else dict(BLOCK_R=64, BLOCK_H=64, num_warps=4)


def _matmul_config(dtype: torch.dtype) -> dict:
    if _interpreted():
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)
    if dtype == torch.float32:
        return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, num_warps=4, num_stages=3)
    return dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=8, num_stages=3)


def _matmul_accumulate(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, accumulate: bool) -> None:
    """c (+)= a @ b for 2-D strided views (fp32 accumulation, one rounding to c.dtype)."""
    m_size, k_size = a.shape
    n_size = b.shape[1]
    cfg = _matmul_config(a.dtype)
    grid = (triton.cdiv(m_size, cfg["BLOCK_M"]), triton.cdiv(n_size, cfg["BLOCK_N"]))
    _matmul_accumulate_kernel[grid](
        a, b, c, m_size, n_size, k_size, *a.stride(), *b.stride(), *c.stride(),
        ACCUMULATE=accumulate, PRECISION=_dot_precision(a.dtype), UPCAST=_upcast(a.dtype), **cfg,
    )  # fmt: skip


def _torch_matmul_accumulate(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, accumulate: bool) -> None:
    """The same contract as :func:`_matmul_accumulate` through torch (cuBLAS on CUDA): products accumulated in fp32
    and one rounding to c.dtype. c of a's dtype: addmm with β = 1 (cuBLAS adds C in its fp32 epilogue); an fp32 c
    for 16-bit a, b: an fp32-output product added to it."""
    if c.dtype == a.dtype:
        if accumulate:
            c.addmm_(a, b)
        else:
            torch.mm(a, b, out=c)
        return
    try:
        product = torch.mm(a, b, out_dtype=c.dtype)  # CUDA: 16-bit operands, fp32 accumulator and output
    except (RuntimeError, TypeError, NotImplementedError):  # CPU tensors (the interpreter's tests) and older torch:
        product = torch.mm(a, b).to(c.dtype)  # one more rounding of this partial product to a's dtype
    if accumulate:
        c.add_(product)
    else:
        c.copy_(product)


def _kernel_targets(targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The targets as the kernels read them: ignored positions as −1, whatever ``ignore_index`` is (an
    ignore_index ≥ V would otherwise be read as a row of W)."""
    return torch.where(targets == ignore_index, -1, targets).contiguous()


def triton_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias,
    targets: torch.Tensor,
    logit_scale: float,
    ignore_index: int,
    num_splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y_i), LSE_i), fp32 [N] each, by the online log-sum-exp kernel; log π = 0 at ignored tokens.

    ``num_splits`` (vocabulary splits per token block) defaults to enough programs to fill the GPU ~4 times.
    """
    n_rows, width = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    if n_rows == 0:
        empty = torch.zeros(0, dtype=torch.float32, device=dev)
        return empty, empty.clone()
    kernel_targets = _kernel_targets(targets, ignore_index)
    cfg = _tile_config(hidden.dtype)
    row_blocks = triton.cdiv(n_rows, cfg["BLOCK_N"])
    n_tiles = triton.cdiv(vocab, cfg["BLOCK_V"])
    group_rows = cfg["GROUP_ROWS"]
    if group_rows < 0:  # "auto": group only when one wave's h blocks overflow the L2 (rdro.llm.kernels.l2_model)
        group_rows = auto_group_rows(
            row_blocks, cfg["BLOCK_N"] * width * hidden.element_size(), _sm_count(dev), _l2_bytes(dev)
        )
    wanted = num_splits or max(
        1,
        triton.cdiv(4 * _sm_count(dev), row_blocks),
        triton.cdiv(_sm_count(dev), group_rows) if group_rows else 1,  # a group fills the GPU
    )
    tiles_per_split = triton.cdiv(n_tiles, min(max(1, wanted), n_tiles))
    splits = triton.cdiv(n_tiles, tiles_per_split)  # every split owns at least one tile
    part_max = torch.empty(splits, n_rows, dtype=torch.float32, device=dev)
    part_sum = torch.empty(splits, n_rows, dtype=torch.float32, device=dev)
    target_logit = torch.empty(n_rows, dtype=torch.float32, device=dev)
    bias_arg = bias if bias is not None else hidden
    h_src, w_src, tma = _tma_sources(hidden, weight, cfg)
    _lse_partial_kernel[(row_blocks * splits,)](
        h_src, w_src, bias_arg, part_max, part_sum, n_rows, vocab, width, float(logit_scale), tiles_per_split,
        row_blocks, splits,
        HAS_BIAS=bias is not None, PRECISION=_dot_precision(hidden.dtype), UPCAST=_upcast(hidden.dtype),
        **{**cfg, "TMA": tma, "GROUP_ROWS": group_rows},
    )  # fmt: skip
    gather = _target_logit_config()
    _target_logit_kernel[(triton.cdiv(n_rows, gather["BLOCK_R"]),)](
        hidden, weight, bias_arg, kernel_targets, target_logit, n_rows, width, float(logit_scale),
        HAS_BIAS=bias is not None, **gather,
    )  # fmt: skip
    top = part_max.amax(dim=0)
    top = torch.where(top == float("-inf"), 0.0, top)  # every logit −inf: LSE = log 0 = −inf, not NaN
    lse = top + torch.log((part_sum * torch.exp(part_max - top)).sum(dim=0))
    # the target logit and the LSE come from two reductions in different orders: the clamp keeps log π ≤ 0 exactly
    logp = torch.where(targets != ignore_index, (target_logit - lse).clamp(max=0.0), 0.0)
    return logp, lse


def backward_tiling(
    n_rows: int, width: int, vocab: int, itemsize: int, budget_bytes: int = 48 * 2**20, max_slab: int = 4096
):
    """(chunk_tokens, slab_vocab) for the backward: a slab of ≤ ``max_slab`` vocabulary columns and as many tokens
    (multiple of 128, ≥ 128) as fit the budget for the G slab (itemsize each) plus the fp32 [chunk, H] accumulator.

    The budget is ``budget_bytes`` × min(2, max(1, 2048 / H)): at small H a (chunk, slab) step holds little matrix
    work for its fixed launches, so below H = 2048 the steps grow, up to twice. Measured on the H200 at Qwen2.5-0.5B
    (H = 896, N = 32768; two runs, llm/kernels/README.md): the whole step took 77.7 ms at 96 MiB against 81.2–85.1 ms
    at 48, at 0.42 GiB peak (goal ≤ 0.5)."""
    budget_bytes = int(budget_bytes * min(2.0, max(1.0, 2048 / width)))
    slab = min(vocab, max_slab)
    chunk = budget_bytes // (4 * width + itemsize * slab)
    chunk = max(128, (chunk // 128) * 128)
    return min(chunk, n_rows), slab


def triton_token_logprobs_backward(
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
    chunk_tokens: int | None = None,
    slab_vocab: int | None = None,
    gemm: str | None = None,
    grad_filter: float = 0.0,
):
    """(∂L/∂h, ∂L/∂W, ∂L/∂b) — None where not needed — from g = ∂L/∂log π, recomputing logits tiles (module doc).

    ``gemm`` ("triton" or "torch", default from :data:`TUNING`) picks the GEMM of the exact backward.

    ``grad_filter`` = ε > 0: the rule of :mod:`~rdro.llm.kernels.torch_chunked` — in each token chunk, the vocabulary
    columns where every scored token has p < ε and which are no scored token's target are dropped. The grad kernel
    then writes Gᵀ and each column's largest scored p (1 at a target); ``_compact_kept_columns_kernel`` lists the kept
    columns and their count on the device, and the two kept-column kernels form ∂L/∂h and ∂L/∂W from those columns
    only, reading the count from device memory — so the host never waits on the GPU. Every target column being kept,
    each token's target and softmax parts are formed together in fp32 before G's one rounding, as in the exact path
    (a confident token's s g (1 − p_y) must not become the difference of two rounded numbers)."""
    n_rows, width = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    dtype = hidden.dtype
    tuned = _tuned(dtype)
    default_chunk, default_slab = backward_tiling(
        n_rows, width, vocab, hidden.element_size(), tuned.get("budget_mib", 48) * 2**20, tuned.get("slab_vocab", 4096)
    )
    chunk_tokens = chunk_tokens or default_chunk
    slab_vocab = slab_vocab or default_slab
    g = torch.where(targets != ignore_index, grad_logp.float(), 0.0).contiguous()
    targets = _kernel_targets(targets, ignore_index)
    grad_hidden = torch.empty_like(hidden) if need_hidden else None
    grad_weight = torch.zeros_like(weight) if need_weight else None  # zeros: N = 0 leaves it untouched
    grad_bias32 = torch.zeros(vocab, dtype=torch.float32, device=dev) if need_bias else None
    if n_rows == 0:
        return grad_hidden, grad_weight, grad_bias32.to(bias.dtype) if need_bias else None
    # fp16 stores G = s g (1[v = y] − p) in fp16: with a loss scaler's large g (2^16 and more) it overflows where
    # the gradient itself does not. The kernels then see g / k, k = s max|g| / 2^10 (≥ 1), and the results are
    # multiplied by k in fp32 (one host read of max|g|, fp16 only).
    unscale = 1.0
    if dtype == torch.float16:
        unscale = max(1.0, float(g.abs().max()) * float(logit_scale) / 2.0**10)
        if unscale > 1.0:
            g = g / unscale
    cfg = _tile_config(dtype, "grad")
    precision = _dot_precision(dtype)
    gemm = gemm or tuned.get("gemm", "triton")
    if gemm not in ("triton", "torch"):
        raise ValueError(f"gemm must be 'triton' or 'torch', got {gemm!r}")
    matmul = _matmul_accumulate if gemm == "triton" else _torch_matmul_accumulate
    filtered = grad_filter > 0
    bias_arg = bias if bias is not None else hidden
    max_rows = min(chunk_tokens, n_rows)
    max_slab = min(slab_vocab, vocab)
    g_buffer = torch.empty(max_rows * max_slab, dtype=dtype, device=dev)
    acc_hidden = torch.empty(max_rows, width, dtype=torch.float32, device=dev) if need_hidden else None
    col_max = torch.zeros(max_slab if filtered else 1, dtype=torch.float32, device=dev)
    if filtered:  # the kept columns of the current (chunk, slab) and their count, on the device
        kept_cols = torch.empty(max_slab, dtype=torch.int32, device=dev)
        kept_count = torch.empty(1, dtype=torch.int32, device=dev)
        compact_blocks = dict(BLOCK_V=triton.next_power_of_2(max_slab))
        kept_blocks = {**_matmul_config(dtype), **tuned.get("kept", {})}
    for c0 in range(0, n_rows, chunk_tokens):
        c1 = min(n_rows, c0 + chunk_tokens)
        rows = c1 - c0
        h_chunk = hidden[c0:c1]
        h_src, w_src, tma = _tma_sources(h_chunk, weight, cfg)
        chunk_targets = targets[c0:c1]
        if filtered and need_hidden:
            acc_hidden[:rows].zero_()
        for s_idx, v0 in enumerate(range(0, vocab, slab_vocab)):
            v1 = min(vocab, v0 + slab_vocab)
            slab = v1 - v0
            # exact: G [chunk, slab] row-major for the two GEMMs; filtered: Gᵀ [slab, chunk], whose kept rows the
            # kept-column kernels gather contiguously
            grad_z = g_buffer[: rows * slab].view(slab, rows) if filtered else g_buffer[: rows * slab].view(rows, slab)
            out_strides = (1, rows) if filtered else (slab, 1)
            grid = (triton.cdiv(rows, cfg["BLOCK_N"]), triton.cdiv(slab, cfg["BLOCK_V"]))
            _grad_logits_kernel[grid](
                h_src, w_src, bias_arg, chunk_targets, lse[c0:c1], g[c0:c1], grad_z, col_max,
                rows, v0, slab, vocab, width, float(logit_scale), *out_strides,
                HAS_BIAS=bias is not None, COLUMN_MAX=filtered, PRECISION=precision, UPCAST=_upcast(dtype),
                **{**cfg, "TMA": tma},
            )  # fmt: skip
            if need_bias:  # every column: the bias gradient stays exact
                grad_bias32[v0:v1] += grad_z.sum(dim=1 if filtered else 0, dtype=torch.float32)
            if not filtered:
                if need_hidden:
                    matmul(grad_z, weight[v0:v1], acc_hidden[:rows], accumulate=s_idx > 0)
                if need_weight:
                    matmul(grad_z.T, h_chunk, grad_weight[v0:v1], accumulate=c0 > 0)
                continue
            _compact_kept_columns_kernel[(1,)](
                col_max, kept_cols, kept_count, slab, float(grad_filter), **compact_blocks,
            )  # fmt: skip
            mm = dict(PRECISION=precision, UPCAST=_upcast(dtype), **kept_blocks)
            if need_hidden:
                grid = (triton.cdiv(rows, mm["BLOCK_M"]), triton.cdiv(width, mm["BLOCK_N"]))
                _kept_columns_grad_hidden_kernel[grid](
                    grad_z, weight, kept_cols, kept_count, acc_hidden, rows, width, v0, **mm
                )
            if need_weight:
                grid = (triton.cdiv(slab, mm["BLOCK_M"]), triton.cdiv(width, mm["BLOCK_N"]))
                _kept_columns_grad_weight_kernel[grid](
                    grad_z, h_chunk, kept_cols, kept_count, grad_weight, rows, width, v0, **mm
                )
        if need_hidden:
            grad_hidden[c0:c1] = acc_hidden[:rows] * unscale if unscale > 1.0 else acc_hidden[:rows]
    if unscale > 1.0 and need_weight:  # a Python scalar: the product is formed in fp32 before rounding to fp16
        grad_weight.mul_(unscale)
    grad_bias = (grad_bias32 * unscale).to(bias.dtype) if need_bias else None
    return grad_hidden, grad_weight, grad_bias


_load_tuning_from_environment()
