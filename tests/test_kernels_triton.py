"""Triton path of sequence_logprobs against the float64 full-logits reference.

Without a GPU the kernels run on CPU tensors under the Triton interpreter (TRITON_INTERPRET=1, set below before the
kernels are first imported); tiny shapes only, since the interpreter is slow. The ``gpu`` test runs the compiled
kernels on CUDA at vocabulary sizes of the real models.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (pip install 'rdro[kernels]')", allow_module_level=True)
INTERPRETED = not torch.cuda.is_available()
if INTERPRETED:
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first `import triton` of the process to take effect

import triton.language as tl  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

# Triton decides compiled vs interpreted when a function is decorated, i.e. at import. If this process imported
# triton before the line above (torch.compile does, in other test files), its built-ins are compiled-mode and
# cannot run on CPU: then one test re-runs this file in a fresh process and the others step aside.
STALE_TRITON = INTERPRETED and isinstance(tl.zeros, JITFunction)
in_this_process = pytest.mark.skipif(
    STALE_TRITON, reason="triton was imported before TRITON_INTERPRET=1: run by the fresh-process test"
)

from rdro.llm.kernels import naive_sequence_logprobs  # noqa: E402
from rdro.llm.kernels.triton_logprobs import triton_token_logprobs, triton_token_logprobs_backward  # noqa: E402
from test_kernels import (  # noqa: E402
    DTYPES,
    assert_edge_inputs_match_reference,
    assert_filter_error_within_dropped_mass,
    assert_matches_reference,
    columns_kept_only_as_targets,
    filtered_reference_grads,
    random_case,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _on_device(case: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in case.items()}


def _tiny_cases(seed: int, dtype: torch.dtype, count: int):
    """``count`` random tiny cases on DEVICE (H ≤ 37, V ≤ 41: the interpreter is slow)."""
    rng = np.random.default_rng(seed + DTYPES.index(dtype))
    return [_on_device(random_case(rng, dtype, max_t=5, max_h=37, max_v=41), DEVICE) for _ in range(count)]


@in_this_process
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_random_tiny_shapes(dtype):
    """Odd H and V (not multiples of the 16-wide interpreter blocks), masks, bias, logit scale, |logits| to 1e3."""
    for i, case in enumerate(_tiny_cases(99, dtype, 4)):
        assert_matches_reference(case, "sum" if i % 2 else "none", seed=i, backend="triton")


def _dense_case(seed: int, n: int, width: int, vocab: int, dtype, weight_std: float, ignore_every: int):
    """(hidden, weight, bias, targets with every ``ignore_every``-th ignored, upstream g) on DEVICE."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, width, generator=gen).to(DEVICE, dtype)
    weight = (torch.randn(vocab, width, generator=gen) * weight_std).to(DEVICE, dtype)
    bias = torch.randn(vocab, generator=gen).to(DEVICE, dtype)
    targets = torch.randint(0, vocab, (n,), generator=gen).to(DEVICE)
    targets[::ignore_every] = -100
    return hidden, weight, bias, targets, torch.randn(n, generator=gen).to(DEVICE)


def _assert_float64_close(logp, grads, hidden, weight, bias, targets, g, scale: float) -> None:
    """log-probs to 1e-4 and the three gradients (of Σ g_i log π_i) to 1e-4 (fp32) or 3e-2 (16-bit: G is stored in
    the input dtype and ∂W rounded once per token chunk) of the largest entry, against float64 full logits."""
    leaves = [t.double().requires_grad_() for t in (hidden, weight, bias)]
    out = naive_sequence_logprobs(
        *leaves[:2], targets, bias=leaves[2], logit_scale=scale, reduction="none", compute_dtype=torch.float64
    )
    torch.testing.assert_close(logp.double(), out.detach(), rtol=1e-5, atol=1e-4)
    tol = 1e-4 if hidden.dtype == torch.float32 else 3e-2
    for got, want in zip(grads, torch.autograd.grad((out * g.double()).sum(), leaves)):
        assert got.dtype == hidden.dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol / 10 * float(want.abs().max()))


@in_this_process
@pytest.mark.parametrize("gemm", ["triton", "torch"])
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=str)
def test_triton_multiple_splits_chunks_and_slabs_match_single_pass(gemm, dtype):
    """Vocabulary splits in the forward and several token chunks × vocabulary slabs in the backward, with the two
    backward GEMMs by the Triton kernel or by torch (cuBLAS on a GPU)."""
    hidden, weight, bias, targets, g = _dense_case(11, 37, 19, 83, dtype, weight_std=2.0, ignore_every=5)
    logp, lse = triton_token_logprobs(hidden, weight, bias, targets, 0.8, -100, num_splits=3)
    grads = triton_token_logprobs_backward(
        g, hidden, weight, bias, targets, lse, 0.8, -100, True, True, True, chunk_tokens=16, slab_vocab=30, gemm=gemm
    )
    _assert_float64_close(logp, grads, hidden, weight, bias, targets, g, 0.8)


LOOP_FLAG_CASES = {  # (forward flags, grad flags) against the plain pointer-load, ungrouped kernels
    "tma": (dict(TMA=True), dict(TMA=True)),
    "grouped": (dict(GROUP_ROWS=2), {}),  # 3 token blocks in groups of 2: a full group and a short one
    "tma-grouped-flattened": (dict(TMA=True, GROUP_ROWS=2, FLATTEN=True), dict(TMA=True)),
    "auto-grouped": (dict(GROUP_ROWS=-1), {}),  # with a 1000-byte "L2" below: auto picks groups of 1 token block
}


@in_this_process
@pytest.mark.parametrize("case", list(LOOP_FLAG_CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_loop_flags_match_the_plain_kernels_and_float64(dtype, case, monkeypatch):
    """The loop flags — TMA (tile loads through tensor descriptors, zero-filled past the last row / column),
    GROUP_ROWS (the forward's programs in groups of token blocks × all splits), FLATTEN (a no-op in the interpreter)
    — give the same numbers as the plain kernels, within float64 tolerances: forward over 3 vocabulary splits, exact
    and filtered backward over 3 chunks × 3 slabs. H = 24 keeps every row 16-byte aligned, as TMA needs."""
    from rdro.llm.kernels import triton_logprobs as tk

    forward_flags, grad_flags = LOOP_FLAG_CASES[case]
    used = []
    make_sources = tk._tma_sources

    def recording_sources(hidden, weight, config):
        sources = make_sources(hidden, weight, config)
        used.append(sources[2])
        return sources

    monkeypatch.setattr(tk, "_tma_sources", recording_sources)
    if case == "auto-grouped":
        monkeypatch.setattr(tk, "_l2_bytes", lambda device: 1000)
        assert (
            tk.auto_group_rows(3, 16 * 24 * torch.finfo(dtype).bits // 8, tk._sm_count(torch.device(DEVICE)), 1000) == 1
        )
    hidden, weight, bias, targets, g = _dense_case(23, 37, 24, 83, dtype, weight_std=1.5, ignore_every=6)
    blocks = dict(BLOCK_N=16, BLOCK_V=16, BLOCK_H=16, num_warps=4, num_stages=2)
    results = {}
    saved = dict(tk.TUNING)
    try:
        for flagged in (False, True):
            forward, grad = (forward_flags, grad_flags) if flagged else ({}, {})
            tk.set_tuning({"forward": {**blocks, **forward}, "grad": {**blocks, **grad}})
            logp, lse = triton_token_logprobs(hidden, weight, bias, targets, 0.8, -100, num_splits=3)
            options = dict(chunk_tokens=16, slab_vocab=30)
            exact = triton_token_logprobs_backward(
                g, hidden, weight, bias, targets, lse, 0.8, -100, True, True, True, **options
            )
            filtered = triton_token_logprobs_backward(
                g, hidden, weight, bias, targets, lse, 0.8, -100, True, True, True, grad_filter=0.05, **options
            )
            results[flagged] = (logp, lse, *exact, *filtered)
    finally:
        tk.set_tuning(saved)
    tma = forward_flags.get("TMA", False)
    assert used == [False] * 7 + [tma] + [grad_flags.get("TMA", False)] * 6  # forward + 3 chunks × 2 backwards
    for plain, flagged in zip(results[False], results[True]):
        torch.testing.assert_close(flagged, plain, rtol=1e-6, atol=1e-6)
    _assert_float64_close(results[True][0], results[True][2:5], hidden, weight, bias, targets, g, 0.8)


@in_this_process
@pytest.mark.skipif(not INTERPRETED, reason="a CPU smoke run of the tuner; on a GPU gpu_check.sh runs the real one")
def test_tuner_quick_run_end_to_end_in_the_interpreter(tmp_path):
    """``tune --quick`` and ``tune --kept`` on CPU (interpreter, tiny shapes): every candidate runs without error, the
    five forward flag settings and TMA on/off in the backward (``--kept``: every kept-column GEMM candidate at both
    shapes) are timed, and the chosen tuning is valid for set_tuning."""
    import json

    from rdro.llm.kernels import triton_logprobs as tk
    from rdro.llm.kernels import tune

    def run_tuner(*mode_and_shapes: str) -> tuple[dict, dict]:
        """(chosen tuning, report) of one CPU tuner run; the chosen tuning must pass set_tuning."""
        out, report_path = tmp_path / "tuning.json", tmp_path / "report.json"
        args = [*mode_and_shapes, "--device", "cpu", "--tokens", "64", "--reps", "1"]
        saved = dict(tk.TUNING)
        try:
            assert tune.main([*args, "--out", str(out), "--report", str(report_path)]) == 0
            chosen = json.loads(out.read_text())
            tk.set_tuning(chosen)
        finally:
            tk.set_tuning(saved)
        return chosen, json.loads(report_path.read_text())

    chosen, report = run_tuner("--quick", "--shapes", "tiny-a")
    assert report["errors"] == {}
    assert len(report["forward_ms"]) == 5 and len(report["backward_ms"]) == 2
    assert chosen["forward"] in tune.QUICK_FORWARD_CANDIDATES
    assert chosen["grad"]["TMA"] in (False, True) and chosen["gemm"] == tk.GPU_DEFAULTS["gemm"]
    # --kept: the kept-column GEMM blocks in the filtered backward on LM-like inputs (in the interpreter every
    # candidate runs the interpreter's own blocks: this checks the plumbing, not the ranking)
    chosen, report = run_tuner("--kept", "--shapes", "tiny-a", "tiny-b")
    assert report["errors"] == {} and report["inputs"] == "lm"
    assert len(report["kept_ms"]) == len(tune.KEPT_CANDIDATES)
    assert all(set(times) == {"tiny-a", "tiny-b"} for times in report["kept_ms"].values())
    assert list(chosen) == ["kept"] and chosen["kept"] in tune.KEPT_CANDIDATES


def _filtered_backward_matches_float64(hidden, weight, bias, targets, g, scale, eps, chunk, slab) -> torch.Tensor:
    """The Triton filtered backward (token chunks of ``chunk``, slabs of ``slab`` columns) against the float64
    emulation of the rule; returns the emulation's kept [N, V] map."""
    _, lse = triton_token_logprobs(hidden, weight, bias, targets, scale, -100)
    got = triton_token_logprobs_backward(
        g, hidden, weight, bias, targets, lse, scale, -100, True, True, True, chunk_tokens=chunk, slab_vocab=slab,
        grad_filter=eps,
    )  # fmt: skip
    n, vocab = hidden.shape[0], weight.shape[0]
    *want, keep = filtered_reference_grads(
        hidden.cpu(), weight.cpu(), bias.cpu(), targets.cpu(), scale, g.cpu(), eps, torch.arange(n) // chunk,
        torch.arange(vocab),
    )  # fmt: skip
    for name, a, b in zip(("hidden", "weight", "bias"), got, want):
        torch.testing.assert_close(a.double().cpu(), b, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    return keep


@in_this_process
def test_triton_grad_filter_matches_float64_with_the_same_dropped_columns():
    """Filtered backward over several chunks × slabs: the columns whose scored tokens in a chunk all have p < ε and
    none of which has its target there are dropped and their matmul work skipped; a target's column is kept even
    where all its p < ε, also at the first and last column of a slab."""
    gen = torch.Generator().manual_seed(31)
    n, width, vocab, chunk, slab, eps = 45, 13, 87, 24, 40, 0.05
    hidden = (torch.randn(n, width, generator=gen) * 1.5).to(DEVICE)
    weight = torch.randn(vocab, width, generator=gen).to(DEVICE)
    bias = torch.randn(vocab, generator=gen).to(DEVICE)
    targets = torch.randint(0, vocab, (n,), generator=gen).to(DEVICE)
    targets[[0, 7, 30]] = -100
    edges = [1, 2, 3, 4, 5, 25, 26, 27, 28, 29]  # slab edges (0, 39, 40, 79, 80, 86) in both chunks
    targets[edges] = torch.tensor([39, 40, 79, 80, 86, 0, 39, 40, 79, 86], device=DEVICE)
    weight[[39, 79, 86]] = 0.0  # the last column of each slab: logit 0.7 × (−6), p < ε in every chunk
    bias[[39, 79, 86]] = -6.0
    g = torch.randn(n, generator=gen).to(DEVICE)
    keep = _filtered_backward_matches_float64(hidden, weight, bias, targets, g, 0.7, eps, chunk, slab)
    assert 0.05 < keep.double().mean() < 0.95  # some columns dropped, some kept
    kept_as_targets = columns_kept_only_as_targets(
        hidden.cpu(), weight.cpu(), bias.cpu(), targets.cpu(), 0.7, g.cpu(), eps, torch.arange(n) // chunk, keep
    )
    assert {(0, 39), (0, 79), (0, 86), (1, 39), (1, 86)} <= kept_as_targets  # the last column of slabs, both chunks


@in_this_process
def test_triton_grad_filter_with_a_slab_that_keeps_nothing():
    """A middle slab whose columns all have p < ε and hold no target keeps no column in any chunk (count 0): the
    kept-column kernels must leave ∂h's accumulator of the slabs before it as it was."""
    gen = torch.Generator().manual_seed(5)
    n, width, vocab, chunk, slab, eps = 20, 9, 60, 16, 20, 0.05
    hidden = torch.randn(n, width, generator=gen).to(DEVICE)
    weight = torch.randn(vocab, width, generator=gen).to(DEVICE)
    bias = torch.zeros(vocab).to(DEVICE)
    weight[20:40], bias[20:40] = 0.0, -8.0  # the middle slab: p ≈ e^-8 / 40 everywhere
    targets = torch.cat([torch.randint(0, 20, (10,), generator=gen), torch.randint(40, 60, (10,), generator=gen)])
    targets = targets.to(DEVICE)
    g = torch.randn(n, generator=gen).to(DEVICE)
    keep = _filtered_backward_matches_float64(hidden, weight, bias, targets, g, 1.0, eps, chunk, slab)
    assert not keep[:, 20:40].any() and keep[:, :20].any() and keep[:, 40:].any()


@in_this_process
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_grad_filter_error_within_dropped_mass_bound_and_tiny_eps_is_exact(dtype):
    for i, case in enumerate(_tiny_cases(88, dtype, 3)):
        assert_filter_error_within_dropped_mass(case, 0.05, seed=i, backend="triton")
        assert_matches_reference(case, "none", seed=i, backend="triton", grad_filter=1e-30)


def test_backward_tiling_fits_the_budget_and_grows_it_below_h_2048():
    """The chunk fills budget × min(2, max(1, 2048 / H)) with the G slab plus the fp32 accumulator, in multiples of
    128 tokens: the Qwen2.5-7B / Llama-3-8B shapes keep 48 MiB, Qwen2.5-0.5B (H = 896) gets 96 MiB."""
    from rdro.llm.kernels.triton_logprobs import backward_tiling

    mib = 2**20
    for width, vocab, scale in ((3584, 152064, 1), (4096, 128256, 1), (896, 151936, 2), (1536, 151936, 2048 / 1536)):
        chunk, slab = backward_tiling(32768, width, vocab, 2, 48 * mib, 8192)
        per_token = 4 * width + 2 * slab
        assert slab == 8192 and chunk % 128 == 0
        assert chunk * per_token <= 48 * mib * scale < (chunk + 128) * per_token
    assert backward_tiling(100, 896, 50, 2, 48 * mib, 8192) == (100, 50)  # never more than N tokens or V columns


def test_set_tuning_checks_its_input():
    from rdro.llm.kernels import triton_logprobs

    saved = dict(triton_logprobs.TUNING)
    try:
        with pytest.raises(ValueError, match="unknown keys"):
            triton_logprobs.set_tuning({"blocks": {}})
        with pytest.raises(ValueError, match="forward"):
            triton_logprobs.set_tuning({"forward": {"BLOCK_N": 64}})
        with pytest.raises(ValueError, match="gemm"):
            triton_logprobs.set_tuning({"gemm": "cublas"})
        with pytest.raises(ValueError, match="slab_vocab"):
            triton_logprobs.set_tuning({"slab_vocab": 0})
        blocks = dict(BLOCK_N=64, BLOCK_V=256, BLOCK_H=64, num_warps=4, num_stages=3)
        with pytest.raises(ValueError, match="grad"):  # only the forward has a tile loop to flatten
            triton_logprobs.set_tuning({"grad": {**blocks, "FLATTEN": False}})
        triton_logprobs.set_tuning({"forward": {**blocks, "FLATTEN": False}, "gemm": "torch"})
        assert triton_logprobs.TUNING == {"forward": {**blocks, "FLATTEN": False}, "gemm": "torch"}
        with pytest.raises(ValueError, match="GROUP_ROWS"):
            triton_logprobs.set_tuning({"forward": {**blocks, "GROUP_ROWS": -2}})  # -1 (auto) is allowed
        # the interpreter keeps its small blocks whatever the tuning says but takes its loop flags (defaults: off);
        # a GPU takes the tuned blocks for 16-bit inputs
        blocks_here = dict(BLOCK_N=16, BLOCK_V=16, BLOCK_H=16) if triton_logprobs._interpreted() else blocks
        off = dict(FLATTEN=False, TMA=False, GROUP_ROWS=0)
        assert triton_logprobs._tile_config(torch.bfloat16) == {**blocks_here, **off}
        triton_logprobs.set_tuning({"forward": {**blocks, "TMA": True}, "grad": {**blocks, "TMA": True}})
        assert triton_logprobs._tile_config(torch.bfloat16) == {**blocks_here, **off, "TMA": True}
        assert triton_logprobs._tile_config(torch.bfloat16, "grad") == {**blocks_here, "TMA": True}
    finally:
        triton_logprobs.set_tuning(saved)


@in_this_process
def test_triton_edge_inputs_match_reference():
    assert_edge_inputs_match_reference("triton", device=DEVICE)


@in_this_process
def test_triton_no_grad_forward_and_partial_gradients():
    gen = torch.Generator().manual_seed(12)
    hidden = torch.randn(2, 6, 20, generator=gen).to(DEVICE)
    weight = torch.randn(33, 20, generator=gen).to(DEVICE)
    targets = torch.randint(0, 33, (2, 6), generator=gen).to(DEVICE)
    from rdro.llm.kernels import sequence_logprobs

    reference = sequence_logprobs(hidden, weight, targets, backend="triton")
    assert reference.grad_fn is None
    w = weight.clone().requires_grad_()
    out = sequence_logprobs(hidden, w, targets, backend="triton")  # gradient for the weight only
    (gw,) = torch.autograd.grad(out.sum(), w)
    torch.testing.assert_close(out.detach(), reference)
    ref_w = weight.double().requires_grad_()
    (want,) = torch.autograd.grad(
        naive_sequence_logprobs(hidden.double(), ref_w, targets, compute_dtype=torch.float64).sum(), ref_w
    )
    torch.testing.assert_close(gw.double(), want, rtol=1e-4, atol=1e-5)


@in_this_process
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_random_shapes_sweep(dtype):
    rng = np.random.default_rng(500 + DTYPES.index(dtype))
    for i in range(25):
        case = _on_device(random_case(rng, dtype, max_t=9, max_h=70, max_v=150), DEVICE)
        assert_matches_reference(case, "sum" if i % 2 else "none", seed=i, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float32), ids=str)
@pytest.mark.parametrize("width,vocab", [(896, 151936), (257, 128256), (3584, 152064)])
def test_triton_on_cuda_at_model_vocabulary_sizes(dtype, width, vocab):
    """Compiled kernels on a GPU: the real vocabulary sizes (not multiples of any block), several chunks."""
    rng = np.random.default_rng(width)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    b, t = 2, 300
    case = dict(
        hidden=torch.randn(b, t, width, generator=gen).to(dtype),
        weight=(torch.randn(vocab, width, generator=gen) * (4 / width**0.5)).to(dtype),
        bias=None,
        targets=torch.randint(0, vocab, (b, t), generator=gen),
        logit_scale=1.0,
    )
    case["targets"][:, :50] = -100
    assert_matches_reference(_on_device(case, "cuda"), "sum", seed=0, backend="triton")
    # the gradient filter at the benchmark's threshold, against its float64 bound (here ≈ 2/3 of the columns are kept,
    # 1/3 dropped, ≈ 15 % of each token's probability mass below the threshold; checked on CPU)
    assert_filter_error_within_dropped_mass(_on_device(case, "cuda"), 2.0**-12, seed=0, backend="triton")


@pytest.mark.skipif(not STALE_TRITON, reason="this process runs the interpreter tests itself")
def test_triton_interpreter_tests_in_fresh_process(request):
    args = [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"]
    if request.config.getoption("--runslow"):
        args.append("--runslow")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run(args, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
