"""``sequence_logprobs``: per-token / per-sequence log-probs of target tokens straight from final hidden states.

The op behind it is registered with ``torch.library`` as ``rdro::token_logprobs`` (forward) and
``rdro::token_logprobs_backward`` (backward), with fake (meta) implementations, so autograd, ``torch.compile`` and the
trainer see one opaque op. Two implementations sit behind the same op:

- ``"torch"``: the chunked pure-torch path (:mod:`rdro.llm.kernels.torch_chunked`), the CPU path and the reference;
- ``"triton"``: the Triton kernels (:mod:`rdro.llm.kernels.triton_logprobs`), online log-sum-exp over vocabulary tiles.

Neither ever forms the [N, V] logits.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from rdro.llm.kernels.torch_chunked import (
    DEFAULT_CHUNK_SIZE,
    compute_dtype,
    torch_token_logprobs,
    torch_token_logprobs_backward,
)

__all__ = ["BACKENDS", "REDUCTIONS", "check_grad_filter", "sequence_logprobs", "triton_available", "resolve_backend"]

BACKENDS = ("auto", "triton", "torch")
REDUCTIONS = ("sum", "none")
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_AUTOCAST_ELIGIBLE = (torch.float32, torch.bfloat16, torch.float16)


def triton_available() -> bool:
    """True when ``triton`` imports."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_interpreter_on() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Map ``backend`` ∈ {"auto", "triton", "torch"} to the implementation that runs on ``device``.

    "auto" picks "triton" for non-fp64 CUDA tensors when triton imports, else "torch". "triton" on CPU tensors needs the Triton
    interpreter (environment variable TRITON_INTERPRET=1 set before triton is first imported).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" and dtype != torch.float64 and triton_available() else "torch"
    if dtype == torch.float64:
        raise ValueError("backend='triton' supports fp32, bf16 and fp16 inputs; use backend='torch' for float64")
    if not triton_available():
        raise ValueError("backend='triton' needs the triton package: pip install 'rdro[kernels]'")
    if device.type != "cuda" and not _triton_interpreter_on():
        raise ValueError(
            f"backend='triton' on {device.type} tensors needs the Triton interpreter: set TRITON_INTERPRET=1 "
            "before importing triton (or use backend='torch')"
        )
    if device.type != "cuda" and not _triton_interpreter_active():
        raise ValueError(
            "backend='triton' on CPU tensors: TRITON_INTERPRET=1 is set, but triton was imported before it was set, "
            "so its kernels are compiled for a GPU; set it before the first `import triton` of the process (or use "
            "backend='torch')"
        )
    return "triton"


def _triton_interpreter_active() -> bool:
    """True when triton was imported under TRITON_INTERPRET=1: its language functions are then plain Python, not
    ``@triton.jit`` functions (the variable is read once, when triton is first imported)."""
    import triton.language as tl

    try:
        from triton.runtime.jit import JITFunction
    except ImportError:  # pragma: no cover - a triton without this class: trust the environment variable
        return True
    return not isinstance(tl.zeros, JITFunction)


# ---------------------------------------------------------------------------
# the custom op
# ---------------------------------------------------------------------------


def _check_targets_in_range(targets: torch.Tensor, vocab: int, ignore_index: int) -> None:
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= vocab))
    if targets.numel() and bool(bad.any()):
        first = int(targets[bad][0])
        raise ValueError(
            f"targets contains {first}: every target must lie in [0, {vocab}) (the vocabulary size, weight.shape[0]) "
            f"or equal ignore_index={ignore_index}"
        )


@torch.library.custom_op("rdro::token_logprobs", mutates_args=())
def _token_logprobs_op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    targets: torch.Tensor,
    logit_scale: float,
    ignore_index: int,
    backend: str,
    chunk_size: int,
    grad_filter: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y_i), LSE_i), fp32 [N] each (fp64 for fp64 inputs), for flattened hidden [N, H]; 0 at ignored tokens."""
    _check_targets_in_range(targets, weight.shape[0], ignore_index)
    with torch.autocast(hidden.device.type, enabled=False):  # the op fixes its own precision (fp32 statistics)
        if backend == "triton":
            from rdro.llm.kernels.triton_logprobs import triton_token_logprobs

            return triton_token_logprobs(hidden, weight, bias, targets, logit_scale, ignore_index)
        return torch_token_logprobs(
            hidden, weight, bias, targets, logit_scale, ignore_index, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE
        )


@_token_logprobs_op.register_fake
def _token_logprobs_fake(hidden, weight, bias, targets, logit_scale, ignore_index, backend, chunk_size, grad_filter):
    n = hidden.shape[0]
    out_dtype = compute_dtype(hidden.dtype)
    return hidden.new_empty(n, dtype=out_dtype), hidden.new_empty(n, dtype=out_dtype)


@torch.library.custom_op("rdro::token_logprobs_backward", mutates_args=())
def _token_logprobs_backward_op(
    grad_logp: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    targets: torch.Tensor,
    lse: torch.Tensor,
    logit_scale: float,
    ignore_index: int,
    backend: str,
    chunk_size: int,
    grad_filter: float,
    need_hidden: bool,
    need_weight: bool,
    need_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(∂L/∂h, ∂L/∂W, ∂L/∂b); a gradient that is not needed comes back as an empty tensor."""
    args = (grad_logp, hidden, weight, bias, targets, lse, logit_scale, ignore_index, need_hidden, need_weight)
    with torch.autocast(hidden.device.type, enabled=False):
        if backend == "triton":
            from rdro.llm.kernels.triton_logprobs import triton_token_logprobs_backward

            grads = triton_token_logprobs_backward(*args, need_bias, grad_filter=grad_filter)
        else:
            chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
            grads = torch_token_logprobs_backward(*args, need_bias, chunk_size=chunk_size, grad_filter=grad_filter)
    return tuple(g if g is not None else hidden.new_empty(0) for g in grads)


@_token_logprobs_backward_op.register_fake
def _token_logprobs_backward_fake(
    grad_logp,
    hidden,
    weight,
    bias,
    targets,
    lse,
    logit_scale,
    ignore_index,
    backend,
    chunk_size,
    grad_filter,
    need_hidden,
    need_weight,
    need_bias,
):
    empty = hidden.new_empty(0)
    return (
        torch.empty_like(hidden) if need_hidden else empty,
        torch.empty_like(weight) if need_weight else empty,
        torch.empty_like(bias) if need_bias else empty,
    )


def _setup_context(ctx, inputs, output):
    hidden, weight, bias, targets, logit_scale, ignore_index, backend, chunk_size, grad_filter = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(hidden, weight, bias, targets, output[1])
    ctx.options = (logit_scale, ignore_index, backend, chunk_size, grad_filter)


def _backward(ctx, grad_logp, _grad_lse):
    hidden, weight, bias, targets, lse = ctx.saved_tensors
    need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
    need_bias = bool(need_bias and bias is not None)
    if grad_logp is None or not (need_hidden or need_weight or need_bias):
        return (None,) * 9
    gh, gw, gb = _token_logprobs_backward_op(
        grad_logp.contiguous(), hidden, weight, bias, targets, lse, *ctx.options, need_hidden, need_weight, need_bias
    )
    return (
        gh if need_hidden else None,
        gw if need_weight else None,
        gb if need_bias else None,
        *(None,) * 6,
    )


_token_logprobs_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def _validate(hidden, weight, targets, bias, logit_scale, ignore_index, reduction, chunk_size, grad_filter):
    for name, t in (("hidden", hidden), ("weight", weight), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if hidden.dim() not in (2, 3):
        raise ValueError(f"hidden must be [N, H] or [B, T, H], got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1] or weight.shape[0] < 1 or weight.shape[1] < 1:
        raise ValueError(
            f"weight must be [V, H] with V >= 1 and H = hidden.shape[-1] = {hidden.shape[-1]} >= 1, "
            f"got shape {tuple(weight.shape)}"
        )
    if tuple(targets.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"targets must have shape hidden.shape[:-1] = {tuple(hidden.shape[:-1])}, got {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor (int64), got dtype {targets.dtype}")
    if hidden.dtype not in _FLOAT_DTYPES or weight.dtype != hidden.dtype:
        raise TypeError(
            f"hidden and weight must share one floating dtype among {_FLOAT_DTYPES}, "
            f"got hidden {hidden.dtype} and weight {weight.dtype} (after any autocast cast)"
        )
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if tuple(bias.shape) != (weight.shape[0],) or not bias.dtype.is_floating_point:
            raise ValueError(
                f"bias must be a floating [V] = [{weight.shape[0]}] tensor, got {bias.dtype} {tuple(bias.shape)}"
            )
    for name, t in (("weight", weight), ("targets", targets), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            raise ValueError(f"{name} is on {t.device} but hidden is on {hidden.device}; put them on one device")
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float)):
        raise TypeError(f"logit_scale must be a float, got {type(logit_scale).__name__}")
    if not (math.isfinite(logit_scale) and logit_scale > 0):
        raise ValueError(f"logit_scale must be a finite number > 0 (1/temperature), got {logit_scale}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of {REDUCTIONS}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    check_grad_filter(grad_filter)


def check_grad_filter(value, name: str = "grad_filter") -> None:
    """ValueError naming ``name`` unless ``value`` is a number in [0, 1): the approximate backward's threshold ε
    (0: exact gradients). The one check behind the op's argument, the trainer's and the benchmark's options."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability threshold in [0, 1) (0: exact gradients), got {value!r}")


def sequence_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: Optional[torch.Tensor] = None,
    logit_scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "sum",
    backend: str = "auto",
    chunk_size: Optional[int] = None,
    grad_filter: float = 0.0,
) -> torch.Tensor:
    """Log-probs of ``targets`` under the LM head, without materialising the [tokens × vocabulary] logits.

    For each position i with final hidden state h_i, logits z_i = s (W h_i + b) (s = ``logit_scale`` =
    1/temperature) and

        log π(y_i) = z_{i,y_i} − log Σ_v exp z_{i,v},

    0 where y_i == ``ignore_index`` (no gradient flows from those positions). With ``reduction="sum"`` a [B, T]
    batch returns the per-sequence sums log π(y|x) = Σ_t log π(y_t) [B] — the quantity whose policy-minus-reference
    difference is the sequence log-ratio t of ``rdro.losses``. For 2-D input ``reduction="sum"`` returns the total
    over all N positions (a 0-dim tensor); ``reduction="none"`` returns per-position log-probs shaped like ``targets``.

    The op is position-wise: position i is scored against ``targets[i]``. Shifting (hidden state at t predicts token
    t+1) is the caller's job, e.g. ``sequence_logprobs(h[:, :-1], W, input_ids[:, 1:])`` with prompt tokens set to
    ``ignore_index``.

    Args:
        hidden: [N, H] or [B, T, H] final hidden states (fp32, bf16, fp16 or fp64).
        weight: [V, H] LM-head weight, same dtype as ``hidden`` (may be tied to the input embeddings: its gradient
            then adds to the embedding gradient as autograd does for any shared tensor).
        targets: integer tensor shaped ``hidden.shape[:-1]``, values in [0, V) or ``ignore_index``.
        bias: optional [V] LM-head bias.
        logit_scale: s > 0 multiplying the logits (1/temperature).
        ignore_index: target value whose positions contribute 0.
        reduction: "sum" or "none" (see above).
        backend: "auto" (Triton for CUDA tensors when triton imports, else torch), "triton" or "torch".
        chunk_size: tokens per chunk for the torch path (default 1024); the Triton path picks its own tiling.
        grad_filter: ε in [0, 1). 0 (default): exact gradients. ε > 0: the backward drops the softmax part of
            ∂L/∂logits in the vocabulary columns where every scored token of a token chunk has probability < ε,
            and skips their matrix work; the target part is kept exactly.
            Error in ∂L/∂h_i ≤ s |g_i| Σ_{dropped v} p_iv ‖W_v‖ (cut-cross-entropy's gradient filtering uses
            ε = 2^-12 for bf16). The forward (the log-probs themselves) is never affected.

    Returns:
        fp32 tensor (fp64 when the inputs are fp64; fp64 always runs on the torch path).

    Under autocast, ``hidden`` and ``weight`` (fp32, fp16 or bf16; fp64 stays fp64) are cast to the autocast dtype
    first (as ``nn.Linear``'s would be); the
    softmax statistics are always accumulated in fp32 and the result is fp32. Gradients reach ``hidden``,
    ``weight`` and ``bias`` when they require grad; when none does (the reference model), the op runs its
    forward-only path and keeps nothing for backward.
    """
    tensors = isinstance(hidden, torch.Tensor) and isinstance(weight, torch.Tensor)  # else _validate says so
    if tensors and torch.is_autocast_enabled(hidden.device.type):
        # as autocast treats nn.Linear: fp32 / fp16 / bf16 tensors take the autocast dtype, fp64 ones stay as they are
        cast = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight = (t.to(cast) if t.dtype in _AUTOCAST_ELIGIBLE else t for t in (hidden, weight))
    _validate(hidden, weight, targets, bias, logit_scale, ignore_index, reduction, chunk_size, grad_filter)
    impl = resolve_backend(backend, hidden.device, hidden.dtype)
    lead_shape = targets.shape
    flat_hidden = hidden.reshape(-1, hidden.shape[-1]).contiguous()
    flat_targets = targets.reshape(-1).to(torch.int64).contiguous()
    logp, _ = _token_logprobs_op(
        flat_hidden,
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        flat_targets,
        float(logit_scale),
        int(ignore_index),
        impl,
        int(chunk_size or 0),
        float(grad_filter),
    )
    if reduction == "none":
        return logp.reshape(lead_shape)
    if hidden.dim() == 3:
        return logp.reshape(lead_shape).sum(dim=-1)
    return logp.sum()
