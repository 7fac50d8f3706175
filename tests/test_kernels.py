"""sequence_logprobs, torch path: values and gradients against a float64 full-logits reference, API contract, errors,
torch.compile, and the chunked path's memory footprint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rdro.llm.kernels import naive_sequence_logprobs, sequence_logprobs
from rdro.llm.kernels.torch_chunked import torch_token_logprobs, torch_token_logprobs_backward

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# gradient tolerances (relative to the largest reference entry): one rounding of the fp32 result to the input dtype
GRAD_TOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


def random_case(rng: np.random.Generator, dtype: torch.dtype, max_t: int = 6, max_h: int = 13, max_v: int = 41):
    """A tiny random problem: odd sizes, masked prompts, all-ignored rows, T = 1, |logits| up to ~1e3."""
    b = int(rng.integers(1, 4))
    t = int(rng.choice([1, int(rng.integers(1, max_t + 1))]))
    h = int(rng.integers(1, max_h + 1))
    v = int(rng.integers(1, max_v + 1))
    magnitude = float(rng.choice([1.0, 30.0, 1e3]))
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    hidden = torch.randn(b, t, h, generator=gen)
    weight = torch.randn(v, h, generator=gen) * (magnitude / math.sqrt(h))
    bias = torch.randn(v, generator=gen) * magnitude if rng.random() < 0.5 else None
    targets = torch.randint(0, v, (b, t), generator=gen)
    prompt = torch.rand(b, t, generator=gen) < 0.3
    targets[prompt] = -100
    if rng.random() < 0.3:
        targets[int(rng.integers(b))] = -100  # a row with no scored token
    scale = float(rng.choice([1.0, 0.5, 1.7]))
    return dict(
        hidden=hidden.to(dtype),
        weight=weight.to(dtype),
        bias=None if bias is None else bias.to(dtype),
        targets=targets,
        logit_scale=scale,
    )


def reference_and_grads(case: dict, reduction: str, upstream: torch.Tensor):
    """float64 naive values and gradients (w.r.t. hidden, weight, bias) of Σ upstream · output."""
    leaves = {
        k: case[k].detach().double().requires_grad_() for k in ("hidden", "weight", "bias") if case[k] is not None
    }
    out = naive_sequence_logprobs(
        leaves["hidden"],
        leaves["weight"],
        case["targets"],
        bias=leaves.get("bias"),
        logit_scale=case["logit_scale"],
        reduction=reduction,
        compute_dtype=torch.float64,
    )
    grads = torch.autograd.grad((out * upstream).sum(), list(leaves.values()))
    return out.detach(), dict(zip(leaves, grads))


def op_and_grads(case: dict, reduction: str, upstream: torch.Tensor, **kwargs):
    leaves = {k: case[k].detach().clone().requires_grad_() for k in ("hidden", "weight", "bias") if case[k] is not None}
    out = sequence_logprobs(
        leaves["hidden"],
        leaves["weight"],
        case["targets"],
        bias=leaves.get("bias"),
        logit_scale=case["logit_scale"],
        reduction=reduction,
        **kwargs,
    )
    grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), list(leaves.values()))
    return out.detach(), dict(zip(leaves, grads))


def assert_matches_reference(case: dict, reduction: str, seed: int, **kwargs) -> None:
    dtype = case["hidden"].dtype
    ref, ref_grads = reference_and_grads(case, reduction, upstream := _upstream(case, reduction, seed))
    out, grads = op_and_grads(case, reduction, upstream, **kwargs)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-3)
    for name, ref_grad in ref_grads.items():
        got = grads[name]
        assert got.dtype == dtype and got.shape == ref_grad.shape, name
        tol = GRAD_TOL[dtype] * max(1.0, float(ref_grad.abs().max()))
        torch.testing.assert_close(
            got.double(), ref_grad, rtol=GRAD_TOL[dtype], atol=tol, msg=lambda m, name=name: f"{name}: {m}"
        )


def _upstream(case: dict, reduction: str, seed: int) -> torch.Tensor:
    shape = case["targets"].shape if reduction == "none" else case["targets"].shape[:1]
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return upstream.to(case["hidden"].device)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_random_shapes_match_float64_reference(dtype):
    """≥ 200 random shapes in total (70 per dtype × 3 dtypes), values and hidden/weight/bias gradients."""
    rng = np.random.default_rng(1234 + DTYPES.index(dtype))
    for i in range(70):
        case = random_case(rng, dtype)
        reduction = "sum" if i % 2 else "none"
        chunk = int(rng.integers(1, 8))  # several token chunks per call
        assert_matches_reference(case, reduction, seed=i, backend="torch", chunk_size=chunk)


def test_vocabulary_tiles_match_reference():
    """The online log-sum-exp across several vocabulary tiles (tile smaller than V) matches the full softmax."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        case = random_case(rng, torch.float32, max_v=97)
        flat_h = case["hidden"].reshape(-1, case["hidden"].shape[-1])
        flat_t = case["targets"].reshape(-1)
        logp, lse = torch_token_logprobs(
            flat_h, case["weight"], case["bias"], flat_t, case["logit_scale"], -100, chunk_size=3, vocab_tile=5
        )
        ref = naive_sequence_logprobs(
            flat_h.double(),
            case["weight"].double(),
            flat_t,
            bias=None if case["bias"] is None else case["bias"].double(),
            logit_scale=case["logit_scale"],
            reduction="none",
            compute_dtype=torch.float64,
        )
        torch.testing.assert_close(logp.double(), ref, rtol=2e-5, atol=2e-3)
        g = torch.randn(flat_t.shape[0])
        dh, dw, db = torch_token_logprobs_backward(
            g, flat_h, case["weight"], case["bias"], flat_t, lse, case["logit_scale"], -100,
            True, True, case["bias"] is not None, chunk_size=3, vocab_tile=5,
        )  # fmt: skip
        dh_full, dw_full, db_full = torch_token_logprobs_backward(
            g, flat_h, case["weight"], case["bias"], flat_t, lse, case["logit_scale"], -100,
            True, True, case["bias"] is not None, chunk_size=10**6, vocab_tile=10**6,
        )  # fmt: skip
        for got, full in ((dh, dh_full), (dw, dw_full), (db, db_full)):
            if full is not None:
                torch.testing.assert_close(got, full, rtol=1e-3, atol=1e-4 * max(1.0, float(full.abs().max())))


def filtered_reference_grads(hidden, weight, bias, targets, scale, g, eps, row_group, col_group):
    """float64 gradients with the filtering rule applied by hand: the softmax part of G is dropped on the
    (row group × column group) blocks where every scored token (g ≠ 0) has p < eps and none has its target; the
    target part and the bias gradient stay exact. row_group [N] / col_group [V]: the block index of each token /
    vocabulary column."""
    h, w = hidden.double(), weight.double()
    z = scale * (h @ w.T + (0 if bias is None else bias.double()))
    p = torch.softmax(z, dim=-1)
    g = torch.where(targets != -100, g.double(), 0.0)
    onehot = torch.zeros_like(p)
    rows = torch.nonzero(targets != -100).squeeze(1)
    onehot[rows, targets[rows]] = 1.0
    keep = torch.zeros_like(p, dtype=torch.bool)
    for r in row_group.unique():
        in_rows = row_group == r
        for c in col_group.unique():
            in_cols = col_group == c
            block = p[in_rows & (g != 0)][:, in_cols]
            block_targets = onehot[in_rows & (g != 0)][:, in_cols]
            if block.numel() and (float(block.max()) >= eps or bool(block_targets.any())):
                keep[in_rows.nonzero()[:, None], in_cols.nonzero()[None, :, 0]] = True
    grad_z = scale * g[:, None] * (onehot - p * keep)
    exact_bias = (scale * g[:, None] * (onehot - p)).sum(0)
    return grad_z @ w, grad_z.T @ h, exact_bias, keep


def columns_kept_only_as_targets(hidden, weight, bias, targets, scale, g, eps, row_group, keep) -> set:
    """The (row group, column) pairs that ``keep`` keeps although every scored token there has p < eps: the columns
    the filter keeps only because they are some scored token's target."""
    p = torch.softmax(scale * (hidden.double() @ weight.double().T + (0 if bias is None else bias.double())), -1)
    scored = (targets != -100) & (g != 0)
    pairs = set()
    for r in row_group.unique().tolist():
        in_rows = row_group == r
        if not bool((in_rows & scored).any()):
            continue
        below = p[in_rows & scored].amax(dim=0) < eps
        first = int(in_rows.nonzero()[0])
        pairs |= {(r, int(v)) for v in torch.nonzero(below & keep[first]).squeeze(1)}
    return pairs


def test_grad_filter_matches_float64_with_the_same_dropped_columns():
    """Torch path: the dropped blocks are vocabulary columns whose scored tokens in a chunk all have p < ε and none of
    which has its target there."""
    gen = torch.Generator().manual_seed(21)
    n, width, vocab, chunk, eps = 29, 11, 53, 8, 0.02
    hidden = torch.randn(n, width, generator=gen) * 1.5
    weight = torch.randn(vocab, width, generator=gen)
    bias = torch.randn(vocab, generator=gen)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[[2, 9, 10]] = -100
    g = torch.randn(n, generator=gen)
    logp, lse = torch_token_logprobs(hidden, weight, bias, targets, 0.7, -100, chunk_size=chunk)
    got = torch_token_logprobs_backward(
        g, hidden, weight, bias, targets, lse, 0.7, -100, True, True, True, chunk_size=chunk, vocab_tile=20,
        grad_filter=eps,
    )  # fmt: skip
    *want, keep = filtered_reference_grads(
        hidden, weight, bias, targets, 0.7, g, eps, torch.arange(n) // chunk, torch.arange(vocab)
    )
    assert 0.05 < keep.double().mean() < 0.95  # the rule drops some blocks and keeps others here
    assert columns_kept_only_as_targets(hidden, weight, bias, targets, 0.7, g, eps, torch.arange(n) // chunk, keep)
    for name, a, b in zip(("hidden", "weight", "bias"), got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    exact = torch_token_logprobs_backward(g, hidden, weight, bias, targets, lse, 0.7, -100, True, True, True)
    assert float((exact[0] - got[0]).abs().max()) > 1e-2  # and the dropping is visible in ∂L/∂h


def assert_filter_error_within_dropped_mass(case: dict, eps: float, seed: int, **kwargs) -> None:
    """|Δ ∂L/∂h_ij| ≤ s |g_i| Σ_{v: p_iv < ε} p_iv |W_vj| and |Δ ∂L/∂W_vj| ≤ s Σ_i |g_i| p_iv 1[p_iv < ε] |h_ij|
    (whatever blocks an implementation drops, it drops only entries below ε), plus the dtype's rounding; the bias
    gradient matches the exact one."""
    dtype = case["hidden"].dtype
    ref, ref_grads = reference_and_grads(case, "none", upstream := _upstream(case, "none", seed))
    out, grads = op_and_grads(case, "none", upstream, grad_filter=eps, **kwargs)
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-3)  # the forward is never filtered
    h = case["hidden"].reshape(-1, case["hidden"].shape[-1]).double()
    w = case["weight"].double()
    targets = case["targets"].reshape(-1)
    z = case["logit_scale"] * (h @ w.T + (0 if case["bias"] is None else case["bias"].double()))
    p = torch.softmax(z, dim=-1)
    below = torch.where(p < eps, p, 0.0)
    g = torch.where(targets != -100, upstream.reshape(-1), 0.0).abs() * case["logit_scale"]
    bounds = {"hidden": (g[:, None] * below) @ w.abs(), "weight": (g[:, None] * below).T @ h.abs()}
    bounds["bias"] = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    for name, ref_grad in ref_grads.items():
        got = grads[name].double().reshape(ref_grad.shape)
        bound = bounds[name].reshape(ref_grad.shape)
        rounding = GRAD_TOL[dtype] * max(1.0, float(ref_grad.abs().max()))
        excess = (got - ref_grad).abs() - bound - rounding - GRAD_TOL[dtype] * ref_grad.abs()
        assert float(excess.max()) <= 0, f"{name}: error above the dropped-mass bound by {float(excess.max()):.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_grad_filter_error_within_dropped_mass_bound_and_tiny_eps_is_exact(dtype):
    rng = np.random.default_rng(77 + DTYPES.index(dtype))
    for i in range(12):
        case = random_case(rng, dtype, max_v=97)
        chunk = int(rng.integers(1, 8))
        assert_filter_error_within_dropped_mass(case, 0.05, seed=i, backend="torch", chunk_size=chunk)
        assert_matches_reference(case, "none", seed=i, backend="torch", chunk_size=chunk, grad_filter=1e-30)


def test_float64_inputs_are_exact_and_pass_gradcheck():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = torch.tensor([[1, -100, 10], [0, 3, -100]])

    def fn(h, w, b):
        return sequence_logprobs(h, w, targets, bias=b, logit_scale=0.8, chunk_size=2)

    assert fn(hidden, weight, bias).dtype == torch.float64
    assert torch.autograd.gradcheck(fn, (hidden, weight, bias))


def test_three_d_two_d_and_reductions_agree():
    rng = np.random.default_rng(3)
    case = random_case(rng, torch.float32)
    b, t, h = case["hidden"].shape
    kw = dict(bias=case["bias"], logit_scale=case["logit_scale"])
    per_token = sequence_logprobs(case["hidden"], case["weight"], case["targets"], reduction="none", **kw)
    per_seq = sequence_logprobs(case["hidden"], case["weight"], case["targets"], reduction="sum", **kw)
    flat = sequence_logprobs(case["hidden"].reshape(b * t, h), case["weight"], case["targets"].reshape(-1), **kw)
    assert per_token.shape == (b, t) and per_seq.shape == (b,) and flat.shape == ()
    torch.testing.assert_close(per_token.sum(1), per_seq)
    torch.testing.assert_close(per_seq.sum(), flat)
    assert torch.all(per_token[case["targets"] == -100] == 0)
    assert torch.all(per_token <= 0)


def test_ignored_positions_get_no_gradient_and_all_ignored_row_is_zero():
    hidden = torch.randn(2, 4, 6, requires_grad=True)
    weight = torch.randn(9, 6, requires_grad=True)
    targets = torch.tensor([[-100, -100, -100, -100], [-100, 2, 5, -100]])
    out = sequence_logprobs(hidden, weight, targets)
    assert out[0].item() == 0.0
    out.sum().backward()
    assert torch.all(hidden.grad[0] == 0) and torch.all(hidden.grad[1, [0, 3]] == 0)
    assert hidden.grad[1, 1].abs().sum() > 0


def test_tied_embedding_gradient_accumulates():
    """The same tensor as input embedding and LM head: its gradient is the sum of both uses, as with full logits."""
    gen = torch.Generator().manual_seed(5)
    embedding = torch.randn(23, 8, generator=gen, requires_grad=True)
    mix = torch.randn(8, 8, generator=gen)
    ids = torch.randint(0, 23, (3, 6), generator=gen)
    targets = ids.roll(-1, dims=1)
    targets[:, -1] = -100

    def loss(fn, **kw):
        hidden = torch.tanh(embedding[ids] @ mix)
        return fn(hidden, embedding, targets, **kw).pow(2).sum()

    (got,) = torch.autograd.grad(loss(sequence_logprobs, chunk_size=4), embedding)
    (ref,) = torch.autograd.grad(loss(naive_sequence_logprobs), embedding)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    head_only = torch.autograd.grad(
        sequence_logprobs(torch.tanh(embedding[ids] @ mix).detach(), embedding, targets).pow(2).sum(), embedding
    )[0]
    assert not torch.allclose(got, head_only)  # the embedding path really contributes


def test_no_grad_path_keeps_nothing_for_backward():
    hidden = torch.randn(2, 3, 4)
    weight = torch.randn(7, 4)
    targets = torch.randint(0, 7, (2, 3))
    ref_out = sequence_logprobs(hidden, weight, targets)
    assert ref_out.grad_fn is None and not ref_out.requires_grad
    policy_out = sequence_logprobs(hidden, weight.requires_grad_(), targets)
    assert policy_out.grad_fn is not None
    torch.testing.assert_close(ref_out, policy_out.detach())
    (gw,) = torch.autograd.grad(policy_out.sum(), weight)
    assert gw.shape == weight.shape


def assert_edge_inputs_match_reference(backend: str, device: str = "cpu", vocab_tile: int | None = None) -> None:
    """Inputs the random sweep does not make, each against float64 full logits: a non-contiguous bias; a bias that
    is −inf on whole vocabulary tiles (banned tokens); an ignore_index far beyond V; no tokens at all ([B, 0, H]:
    single-token sequences after the shift); and fp16 with a loss scaler's upstream gradient (2^17), whose
    intermediate s·g·(1 − p) exceeds fp16's range although the gradients do not."""
    gen = torch.Generator().manual_seed(21)
    n, width, vocab = 7, 12, 40

    def check(hidden, weight, bias, targets, upstream, ignore_index=-100, grad_tol=1e-4):
        leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight)]
        out = sequence_logprobs(
            *leaves, targets, bias=bias, reduction="none", ignore_index=ignore_index, backend=backend
        )
        params = leaves + ([bias] if bias is not None and bias.requires_grad else [])
        grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), params, allow_unused=True)
        ref_leaves = [t.detach().double().requires_grad_() for t in (hidden, weight)]
        ref_b = None if bias is None else bias.detach().double().requires_grad_(bias.requires_grad)
        scored = targets != ignore_index
        ref_targets = torch.where(scored, targets, -100)
        ref = naive_sequence_logprobs(
            *ref_leaves, ref_targets, bias=ref_b, reduction="none", compute_dtype=torch.float64
        )
        ref_params = ref_leaves + ([ref_b] if ref_b is not None and ref_b.requires_grad else [])
        want = torch.autograd.grad((ref * upstream.double()).sum(), ref_params)
        torch.testing.assert_close(out.double(), ref.detach(), rtol=1e-5, atol=1e-4)
        for got, w in zip(grads, want):
            assert torch.isfinite(got).all()
            scale = max(1.0, float(w.abs().max()))
            torch.testing.assert_close(got.double(), w, rtol=grad_tol, atol=grad_tol * scale)

    on = dict(device=device)
    hidden = torch.randn(n, width, generator=gen).to(**on)
    weight = torch.randn(vocab, width, generator=gen).to(**on)
    targets = torch.randint(0, vocab, (n,), generator=gen).to(**on)
    upstream = torch.randn(n, generator=gen).to(**on)
    # a bias that is a strided view of a larger tensor
    big = torch.randn(2 * vocab, generator=gen).to(**on).requires_grad_()
    check(hidden, weight, big[::2], targets, upstream)
    # −inf on the first and the last 16 columns (whole tiles of the interpreter's 16-wide blocks and of vocab_tile)
    banned = torch.zeros(vocab, **on)
    banned[:16] = float("-inf")
    banned[-16:] = float("-inf")
    allowed = torch.randint(16, vocab - 16, (n,), generator=gen).to(**on)
    check(hidden, weight, banned, allowed, upstream)
    if vocab_tile is not None:  # the torch path's tiles are 16k columns: check the tile logic itself with small ones
        logp, _ = torch_token_logprobs(
            hidden.double(), weight.double(), banned.double(), allowed, 1.0, -100, 3, vocab_tile
        )
        ref = naive_sequence_logprobs(
            hidden, weight, allowed, bias=banned, reduction="none", compute_dtype=torch.float64
        )
        torch.testing.assert_close(logp, ref, rtol=1e-12, atol=1e-10)
    # an ignore_index far beyond the vocabulary
    far = targets.clone()
    far[::3] = 10**9
    check(hidden, weight, None, far, upstream, ignore_index=10**9)
    # no tokens
    empty_h = torch.randn(2, 0, width, **on, requires_grad=True)
    w = weight.clone().requires_grad_()
    out = sequence_logprobs(empty_h, w, torch.zeros(2, 0, dtype=torch.long, **on), backend=backend)
    assert out.shape == (2,) and not out.any()
    gh, gw = torch.autograd.grad(out.sum(), [empty_h, w])
    assert gh.shape == empty_h.shape and not gw.any()
    # fp16 with a large upstream gradient
    h16, w16 = (hidden * 0.01).half(), (weight * 0.05).half()
    check(h16, w16, None, targets, upstream * 2.0**17, grad_tol=2e-3)


def test_edge_inputs_match_reference():
    assert_edge_inputs_match_reference("torch", vocab_tile=8)


def test_autocast_casts_like_linear_and_matches_a_reference_at_that_precision():
    """Under autocast the op sees bf16 copies of fp32 inputs (values and gradients match float64 math on those
    bf16 values), accepts an fp32 hidden with a bf16 weight as nn.Linear does, and leaves fp64 inputs in fp64."""
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 5, 16, generator=gen)
    weight = torch.randn(33, 16, generator=gen)
    targets = torch.randint(0, 33, (2, 5), generator=gen)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sequence_logprobs(h, w, targets)
        mixed = sequence_logprobs(hidden, weight.bfloat16(), targets)
        in_fp64 = sequence_logprobs(hidden.double(), weight.double(), targets)
    assert out.dtype == torch.float32
    ref_h, ref_w = hidden.bfloat16().double().requires_grad_(), weight.bfloat16().double().requires_grad_()
    ref = naive_sequence_logprobs(ref_h, ref_w, targets, compute_dtype=torch.float64)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(mixed, out.detach())
    out.sum().backward()
    want_h, want_w = torch.autograd.grad(ref.sum(), [ref_h, ref_w])
    assert h.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    # the op's gradients are bf16 (its inputs' dtype) before autocast's cast back: one bf16 rounding
    torch.testing.assert_close(h.grad.double(), want_h, rtol=1.6e-2, atol=1.6e-2 * float(want_h.abs().max()))
    torch.testing.assert_close(w.grad.double(), want_w, rtol=1.6e-2, atol=1.6e-2 * float(want_w.abs().max()))
    assert in_fp64.dtype == torch.float64
    exact = naive_sequence_logprobs(hidden.double(), weight.double(), targets, compute_dtype=torch.float64)
    torch.testing.assert_close(in_fp64, exact, rtol=1e-12, atol=1e-12)


def test_torch_compile_fullgraph_captures_the_op():
    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 3, 8, generator=gen, requires_grad=True)
    weight = torch.randn(13, 8, generator=gen, requires_grad=True)
    targets = torch.randint(0, 13, (2, 3), generator=gen)

    def step(h, w):
        return (sequence_logprobs(h, w, targets, backend="torch", logit_scale=0.5) ** 2).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(hidden, weight), (hidden, weight))
    ref = torch.autograd.grad(step(hidden, weight), (hidden, weight))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_torch_compile_inductor_fullgraph():
    hidden = torch.randn(2, 3, 8, requires_grad=True)
    weight = torch.randn(13, 8, requires_grad=True)
    targets = torch.randint(0, 13, (2, 3))
    compiled = torch.compile(lambda h, w: sequence_logprobs(h, w, targets).sum(), fullgraph=True)
    out = compiled(hidden, weight)
    torch.testing.assert_close(out, naive_sequence_logprobs(hidden, weight, targets).sum())
    out.backward()
    assert hidden.grad is not None and weight.grad is not None


def test_opcheck_schema_fake_and_autograd_registrations():
    hidden = torch.randn(6, 5, requires_grad=True)
    weight = torch.randn(9, 5, requires_grad=True)
    bias = torch.randn(9, requires_grad=True)
    targets = torch.tensor([0, 8, -100, 3, 3, 1])
    op = torch.ops.rdro.token_logprobs.default
    torch.library.opcheck(op, (hidden, weight, bias, targets, 0.9, -100, "torch", 4, 0.0))
    torch.library.opcheck(op, (hidden, weight, None, targets, 1.0, -100, "torch", 0, 0.1))


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any aten op produces while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_chunked_path_never_forms_token_by_vocabulary_tensors():
    """Largest intermediate: one [chunk, V] tile (and the [V, H] weight gradient), never [N, V]."""
    n, h, v, chunk = 2048, 4, 300, 32
    hidden = torch.randn(n, h)
    weight = torch.randn(v, h)
    targets = torch.randint(0, v, (n,))
    with LargestTensor() as probe:
        logp, lse = torch_token_logprobs(hidden, weight, None, targets, 1.0, -100, chunk_size=chunk)
    assert probe.largest == chunk * v
    with LargestTensor() as probe:
        torch_token_logprobs_backward(
            torch.ones(n), hidden, weight, None, targets, lse, 1.0, -100, True, True, False, chunk_size=chunk
        )
    assert probe.largest == chunk * v
    with LargestTensor() as probe:  # the probe does see an [N, V] tensor when one is formed
        naive_sequence_logprobs(hidden, weight, targets)
    assert probe.largest == n * v


def test_bad_inputs_raise_clear_errors():
    hidden = torch.randn(2, 3, 4)
    weight = torch.randn(7, 4)
    targets = torch.randint(0, 7, (2, 3))
    cases = [
        (dict(hidden=torch.randn(4)), ValueError, "hidden must be"),
        (dict(weight=torch.randn(7, 5)), ValueError, "weight must be"),
        (dict(hidden=torch.randn(2, 3, 0), weight=torch.randn(7, 0)), ValueError, "H = hidden.shape"),
        (dict(targets=torch.randint(0, 7, (2, 4))), ValueError, "targets must have shape"),
        (dict(targets=targets.float()), TypeError, "targets must be an integer"),
        (dict(weight=weight.double()), TypeError, "share one floating dtype"),
        (dict(bias=torch.randn(6)), ValueError, "bias must be"),
        (dict(logit_scale=0.0), ValueError, "logit_scale must be a finite number > 0"),
        (dict(logit_scale=float("nan")), ValueError, "logit_scale"),
        (dict(reduction="mean"), ValueError, "reduction='mean'"),
        (dict(backend="cuda"), ValueError, "backend='cuda'"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(grad_filter=1.0), ValueError, r"grad_filter must be a probability threshold in \[0, 1\)"),
        (dict(grad_filter=-0.1), ValueError, "grad_filter"),
        (dict(grad_filter=True), ValueError, "grad_filter"),
        (dict(ignore_index=1.5), TypeError, "ignore_index"),
        (dict(targets=torch.full((2, 3), 7)), ValueError, r"targets contains 7.*\[0, 7\)"),
        (dict(targets=torch.full((2, 3), -1)), ValueError, "targets contains -1"),
    ]
    for override, error, message in cases:
        args = dict(hidden=hidden, weight=weight, targets=targets)
        kwargs = {k: v for k, v in override.items() if k not in args}
        args.update({k: v for k, v in override.items() if k in args})
        with pytest.raises(error, match=message):
            sequence_logprobs(args["hidden"], args["weight"], args["targets"], **kwargs)


def test_triton_backend_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        sequence_logprobs(torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 1, 2]), backend="triton")


def test_triton_backend_with_the_interpreter_set_after_import_is_refused_clearly():
    """TRITON_INTERPRET=1 set after `import triton` has no effect; the op says so instead of failing inside Triton."""
    pytest.importorskip("triton")
    import subprocess
    import sys

    code = (
        "import os, torch, triton, triton.language\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "from rdro.llm.kernels import sequence_logprobs\n"
        "try:\n"
        "    sequence_logprobs(torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 1, 2]), backend='triton')\n"
        "except ValueError as exc:\n"
        "    print('ValueError:', exc)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert "triton was imported before it was set" in done.stdout, done.stdout + done.stderr


def test_bench_cpu_smoke_writes_results_with_matching_losses(tmp_path, capsys):
    from rdro.llm.kernels import bench

    out = tmp_path / "bench.json"
    argv = ["logprobs", "--device", "cpu", "--shapes", "tiny", "--tokens", "32", "--seq-len", "8"]
    argv += ["--methods", "rdro", "rdro-filtered", "naive", "--reps", "1", "--warmup", "0", "--out", str(out)]
    assert bench.main(argv) == 0
    import json

    result = json.loads(out.read_text())
    assert result["meta"]["seed"] == 0 and result["meta"]["peak_tflops"] > 0
    assert [c["shape"] for c in result["cases"]] == ["tiny-a", "tiny-b"]
    for case in result["cases"]:
        rdro_run, naive_run = case["methods"]["rdro"], case["methods"]["naive"]
        assert rdro_run["ms"] > 0 and naive_run["ms"] > 0 and case["floor_ms"] > 0
        # same inputs, same loss: the fused path and the full-logits path agree (bf16 inputs, fp32 softmax)
        assert abs(rdro_run["loss"] - naive_run["loss"]) < 1e-3 * max(1.0, abs(naive_run["loss"]))
        # and their gradients: naive rounds the logits to bf16, so ~1e-2; the filter (2^-12 on bf16) drops a little
        for method in ("naive", "rdro-filtered"):
            diff = case["methods"][method]["grad_rel_diff_vs_rdro"]
            assert 0 <= diff["hidden"] < 0.05 and 0 <= diff["weight"] < 0.05, (method, diff)
        assert "grad_rel_diff_vs_rdro" not in rdro_run
    printed = capsys.readouterr().out
    assert "x floor" in printed and "x naive" in printed
    with pytest.raises(SystemExit):
        bench.main(["logprobs", "--alpha", "1.5", "--out", str(out)])


def test_bench_profile_counts_the_operators_of_one_method_per_step(tmp_path, capsys):
    """``--profile 2``: per step, the operators (on CPU: aten ops; on a GPU: kernels) and their summed time, the largest
    first; the full-logits step issues one matmul per forward (policy and reference) and two in the backward."""
    import json

    from rdro.llm.kernels import bench

    out = tmp_path / "bench.json"
    argv = ["logprobs", "--device", "cpu", "--shapes", "tiny-a", "--tokens", "32", "--seq-len", "8", "--methods"]
    argv += ["naive", "rdro", "--reps", "1", "--warmup", "0", "--profile", "2", "--out", str(out)]
    assert bench.main(argv) == 0
    methods = json.loads(out.read_text())["cases"][0]["methods"]
    for method in ("naive", "rdro"):
        prof = methods[method]["profile"]
        assert prof["steps"] == 2 and prof["busy_ms_per_step"] > 0
        times = [k["ms_per_step"] for k in prof["top"]]
        assert times == sorted(times, reverse=True) and prof["launches_per_step"] >= sum(
            k["launches_per_step"] for k in prof["top"]
        )
    naive_ops = {k["name"]: k["launches_per_step"] for k in methods["naive"]["profile"]["top"]}
    assert naive_ops.get("aten::mm") == 4, naive_ops
    assert "profile:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["logprobs", "--profile", "-1", "--out", str(out)])


def test_tuner_picks_the_best_geometric_mean_ratio_among_complete_candidates():
    from rdro.llm.kernels.tune import _winner

    times = {
        # best per shape: small 5.0 (c), big 80.0 (b)
        "a": {"small": 10.0, "big": 100.0},  # ratios 2.0 and 1.25 → geometric mean 1.58
        "b": {"small": 12.0, "big": 80.0},  # ratios 2.4 and 1.0 → 1.55: the winner
        "c": {"small": 5.0},  # fastest where it ran, but it failed on "big": left out
    }
    assert _winner(times) == "b"
    assert _winner({"c": {"small": 5.0}, "d": {"big": 1.0}}) is None  # no candidate ran on every shape


def test_every_tuner_candidate_is_a_valid_tuning():
    """Each forward candidate (full and --quick) and each loop-flag combination passes set_tuning's checks, as a
    forward and (without FLATTEN and GROUP_ROWS, which only the forward has) as a grad configuration, and each
    ``--kept`` candidate as kept-column GEMM blocks — so no candidate is lost to a validation error on the GPU."""
    from rdro.llm.kernels import triton_logprobs as tk
    from rdro.llm.kernels.tune import (
        FORWARD_CANDIDATES,
        KEPT_CANDIDATES,
        LOOP_FLAG_CANDIDATES,
        QUICK_FORWARD_CANDIDATES,
    )

    assert len(LOOP_FLAG_CANDIDATES) == 12 and all(c in FORWARD_CANDIDATES for c in QUICK_FORWARD_CANDIDATES)
    assert KEPT_CANDIDATES[0] == tk._matmul_config(torch.bfloat16) or tk._interpreted()  # the default comes first
    saved = dict(tk.TUNING)
    try:
        for cfg in FORWARD_CANDIDATES + QUICK_FORWARD_CANDIDATES:
            grad = {k: v for k, v in cfg.items() if k not in ("FLATTEN", "GROUP_ROWS")}
            tk.set_tuning({"forward": cfg, "grad": {**grad, "TMA": True}})
            assert tk.TUNING["forward"] == cfg
        for cfg in KEPT_CANDIDATES:
            tk.set_tuning({"kept": cfg})
            assert tk.TUNING["kept"] == cfg
        for bad in ({**cfg, "BLOCK_M": 96}, {**cfg, "num_warps": 0}, {"BLOCK_M": 64}, {**cfg, "TMA": True}):
            with pytest.raises(ValueError, match="kept"):
                tk.set_tuning({"kept": bad})
    finally:
        tk.set_tuning(saved)


def test_l2_model_orders_are_permutations_and_its_traffic_is_bounded_by_the_compulsory_reads():
    """The cache model of the forward's program order: every order visits each (token block, split) once, grouped
    orders run token blocks fastest within a group; with an L2 that holds everything the modelled traffic is the
    compulsory one; ``auto`` does not group when a wave's h blocks fit the L2 and does otherwise."""
    from rdro.llm.kernels.l2_model import auto_group_rows, forward_program_order, hbm_traffic

    for row_blocks, splits, group in [(3, 3, 0), (3, 3, 2), (10, 4, 3), (7, 1, 16)]:
        order = forward_program_order(row_blocks, splits, group)
        assert sorted(order) == [(b, s) for b in range(row_blocks) for s in range(splits)]
        if group:
            assert [b for b, _ in order[: min(group, row_blocks)]] == list(range(min(group, row_blocks)))
    huge = hbm_traffic(4096, 896, 19968, group_rows=0, sms=8, l2_bytes=2**40)  # 32 token blocks, 78 tiles
    assert huge["total_gb"] == pytest.approx(huge["compulsory_gb"])
    for group in (0, 4, -1):
        small = hbm_traffic(4096, 896, 19968, group_rows=group, sms=8, l2_bytes=2 * 2**20)
        assert small["total_gb"] >= small["compulsory_gb"] * (1 - 1e-9)
    assert auto_group_rows(row_blocks=256, h_block_bytes=2**18, sms=132, l2_bytes=50 * 2**20) == 0  # 33 MiB fit
    assert auto_group_rows(row_blocks=256, h_block_bytes=2**20, sms=132, l2_bytes=50 * 2**20) == 12


def test_filter_report_statistics_agree_with_the_op_and_count_columns_and_tiles():
    """The report's error of the column rule equals the op's own filtered-vs-exact gradient difference; kept columns
    and tiles are counted right on a case where they are known."""
    from rdro.llm.kernels.filter_report import _tiles_kept, filter_statistics

    gen = torch.Generator().manual_seed(3)
    n, width, vocab, chunk, eps = 300, 16, 700, 128, 0.01
    hidden = torch.randn(n, width, generator=gen) * 2
    weight = torch.randn(vocab, width, generator=gen)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    upstream = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
    stats = filter_statistics(hidden, weight, targets, upstream, [eps], chunks=[chunk])[f"eps={eps:.6g} chunk={chunk}"]
    grads = {}
    for e in (0.0, eps):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        out = sequence_logprobs(h, w, targets, reduction="none", backend="torch", chunk_size=chunk, grad_filter=e)
        (out * upstream).sum().backward()
        grads[e] = (h.grad, w.grad)
    for i, key in enumerate(("grad_rel_error_hidden", "grad_rel_error_weight")):
        direct = float((grads[eps][i] - grads[0.0][i]).norm() / grads[0.0][i].norm())
        assert direct > 1e-4 and stats[key] == pytest.approx(direct, rel=1e-3)
    assert 0 < stats["kept_columns"] < stats["kept_tiles"] <= 1
    below = torch.ones(300, 700, dtype=torch.bool)
    below[5, 3] = below[299, 699] = below[130, 300] = False  # tiles (0, 0), (2, 2), (1, 1) of 3 × 3
    assert _tiles_kept(below, (128, 256)) == (3, 9)


def test_bench_lm_inputs_sample_targets_from_their_own_softmax():
    """``--inputs lm``: the targets are draws from softmax(h W^T), so the mean surprisal −log p(y) of the scored
    tokens estimates their mean entropy (within 4 standard errors); the Zipf prior makes the distributions peaked."""
    from rdro.llm.kernels import bench

    h, w, _, _, targets, _ = bench.make_inputs(65, 3000, 4, 512, torch.float32, torch.device("cpu"), 0, "lm")
    scored = targets.reshape(-1) != -100
    flat_h = h.detach().reshape(-1, 65)[scored]
    logp = torch.log_softmax(flat_h @ w.detach().T, dim=-1)
    surprisal = -logp.gather(1, targets.reshape(-1)[scored][:, None]).squeeze(1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    se = float(surprisal.std()) / surprisal.numel() ** 0.5
    assert abs(float(surprisal.mean() - entropy.mean())) < 4 * se
    stats = bench.input_statistics(h, w, targets, 2.0**-12)
    assert stats["tokens"] == 1024 and 0.5 < stats["entropy_nats"] < 4.0
    assert stats["entropy_nats"] == pytest.approx(float(entropy[:1024].mean()), rel=1e-5)
    a_h, a_w, _, _, a_targets, _ = bench.make_inputs(65, 3000, 4, 512, torch.float32, torch.device("cpu"), 0)
    anchor = bench.input_statistics(a_h, a_w, a_targets, 2.0**-12)
    assert anchor["entropy_nats"] > 7.5  # the anchors' inputs: nearly uniform over 3000 tokens (log 3000 = 8.0)
    with pytest.raises(ValueError, match="inputs must be one of"):
        bench.make_inputs(65, 3000, 4, 512, torch.float32, torch.device("cpu"), 0, "real")


def test_probability_statistics_and_the_reports_entropy_match_direct_computations():
    from rdro.llm.kernels.bench import probability_statistics
    from rdro.llm.kernels.filter_report import filter_statistics

    gen = torch.Generator().manual_seed(4)
    hidden, weight = torch.randn(37, 8, generator=gen), torch.randn(50, 8, generator=gen)
    p = torch.softmax(hidden.double() @ weight.double().T, dim=-1)
    direct = float(-(p * p.log()).sum(1).mean())
    stats = filter_statistics(hidden, weight, torch.zeros(37, dtype=torch.long), torch.ones(37), [0.01], chunks=[10])
    assert stats["eps=0.01 chunk=10"]["entropy_nats"] == pytest.approx(direct, rel=1e-5)
    targets = torch.randint(0, 50, (37,), generator=gen)
    targets[:5] = -100  # ignored rows count neither their p nor their target
    entropy, mass, kept = probability_statistics(p, 0.05, targets)
    assert float(entropy.mean()) == pytest.approx(direct, rel=1e-12)
    torch.testing.assert_close(mass, torch.where(p < 0.05, p, 0.0).sum(1))
    want = (p[5:] >= 0.05).any(0)
    want[targets[5:]] = True
    assert torch.equal(kept, want) and not torch.equal(kept, (p[5:] >= 0.05).any(0))  # the targets add columns
    uniform, _, kept = probability_statistics(torch.full((3, 50), 1 / 50, dtype=torch.float64), 0.05, targets[5:8])
    assert torch.equal(kept.nonzero().squeeze(1), targets[5:8].unique())
    torch.testing.assert_close(uniform, torch.full((3,), math.log(50), dtype=torch.float64))
