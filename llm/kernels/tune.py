"""Measure block sizes and backward options of the Triton log-prob kernels on this GPU; write the winners as JSON.

``python -m rdro.llm.kernels.tune [--shapes qwen2.5-0.5b qwen2.5-7b llama3-8b] [--tokens 32768] [--out tuning.json]``

For each anchor shape (bf16, N tokens, a quarter of them ignored as prompt) it times, as medians of ``--reps`` runs
after one warm-up (``--quick``: only the loop flags FLATTEN / TMA / GROUP_ROWS added since the H200 tuning, on its
blocks; ``--kept``: only the blocks of the filtered backward's kept-column GEMMs, on LM-like inputs):

- the no-grad forward (``triton_token_logprobs``) for each candidate forward block configuration;
- the backward (``triton_token_logprobs_backward``, both gradients) for each (grad-kernel blocks × GEMM by Triton or
  by torch/cuBLAS × vocabulary slab width), with the buffer budget the memory goals allow (48 MiB).

A candidate that fails to compile or run is recorded with its error and left out. The winner of each part is the
candidate with the smallest geometric mean, over shapes, of its time divided by the best time for that shape. The
JSON at ``--out`` is a :data:`rdro.llm.kernels.triton_logprobs.TUNING` dict (hand it to other processes with
``RDRO_TRITON_TUNING=FILE``); ``--report`` gets every measured time. Not a test: timings, printed and saved.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from rdro.llm.kernels.bench import ANCHOR_SHAPES, TINY_SHAPES, _sync, make_inputs
from rdro.results import atomic_write_text

#: The forward blocks the H200 tuning chose (GPU_DEFAULTS), and the loop flags, each combination a candidate.
_H200_BLOCKS = dict(BLOCK_N=128, BLOCK_V=256, BLOCK_H=64, num_warps=8, num_stages=3)
LOOP_FLAG_CANDIDATES = [
    dict(FLATTEN=flatten, TMA=tma, GROUP_ROWS=group)
    for flatten in (False, True)
    for tma in (False, True)
    for group in (0, -1, 16)  # -1: auto (rdro.llm.kernels.l2_model.auto_group_rows)
]
FORWARD_CANDIDATES = [
    dict(BLOCK_N=128, BLOCK_V=128, BLOCK_H=64, num_warps=8, num_stages=3),  # the default before the H200 tuning
    dict(BLOCK_N=128, BLOCK_V=128, BLOCK_H=64, num_warps=4, num_stages=4),
    dict(BLOCK_N=64, BLOCK_V=256, BLOCK_H=64, num_warps=4, num_stages=4),
    dict(BLOCK_N=128, BLOCK_V=256, BLOCK_H=32, num_warps=8, num_stages=4),
    # not yet measured: the H200 winner with one more pipeline stage, and the transposed tile
    dict(BLOCK_N=128, BLOCK_V=256, BLOCK_H=64, num_warps=8, num_stages=4),
    dict(BLOCK_N=256, BLOCK_V=128, BLOCK_H=64, num_warps=8, num_stages=3),
    # the H200 winner with each combination of the loop flags (flattened tile loop, TMA loads, grouped token blocks)
    *({**_H200_BLOCKS, **flags} for flags in LOOP_FLAG_CANDIDATES),
]
#: ``--quick``: only what is new since the H200 tuning, on its blocks — five forward flag settings (plain, TMA,
#: automatic grouping of token blocks, both, and all three flags) and TMA on or off in the grad kernel with its GEMM
#: and slab; expected 1–2 minutes on an H200, most of it compilation.
QUICK_FORWARD_CANDIDATES = [
    {**_H200_BLOCKS, "FLATTEN": flatten, "TMA": tma, "GROUP_ROWS": group}
    for flatten, tma, group in (
        (False, False, 0),
        (False, True, 0),
        (False, False, -1),
        (False, True, -1),
        (True, True, -1),
    )
]
#: ``--kept``: blocks of the filtered backward's two kept-column GEMM kernels (the first is the built-in default), timed
#: in the filtered backward on LM-like inputs (``bench --inputs lm``: ~40 % of a chunk's columns kept at 2^-12), where
#: on the H200 those GEMMs ran at about a third of the GEMM rate.
KEPT_CANDIDATES = [
    dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=8, num_stages=3),
    dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=4, num_stages=4),
    dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, num_warps=8, num_stages=3),
    dict(BLOCK_M=256, BLOCK_N=128, BLOCK_K=64, num_warps=8, num_stages=3),
    dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=32, num_warps=4, num_stages=5),
    dict(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, num_warps=4, num_stages=4),
]
GEMMS = ("triton", "torch")
SLABS = (4096, 8192)


def _median_ms(fn, reps: int, device: torch.device) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _winner(times: dict[str, dict[str, float]]) -> str | None:
    """The candidate with the smallest geometric mean over shapes of time / best time for that shape."""
    shapes = {shape for per in times.values() for shape in per}
    best = {s: min(per[s] for per in times.values() if s in per) for s in shapes}
    complete = {c: per for c, per in times.items() if set(per) == shapes}
    if not complete:
        return None
    score = {c: math.exp(sum(math.log(per[s] / best[s]) for s in shapes) / len(shapes)) for c, per in complete.items()}
    return min(score, key=score.get)


def tune_kept(args, device, tk) -> tuple[dict, dict, dict | None]:
    """(times {candidate: {shape: ms}}, errors, winner) of the kept-column GEMM blocks: the filtered backward (both
    gradients, ε = 2^-12) on LM-like inputs at each shape, the other options at their defaults."""
    from rdro.llm.kernels.bench import filter_eps

    times: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    failed: set[str] = set()
    eps = filter_eps(torch.bfloat16)
    for shape in args.shapes:
        width, vocab = {**ANCHOR_SHAPES, **TINY_SHAPES}[shape]
        seq_len = min(2048, args.tokens)
        n_seq = max(1, args.tokens // seq_len)
        h, w, _, _, t, _ = make_inputs(width, vocab, n_seq, seq_len, torch.bfloat16, device, 0, "lm")
        h, w, t = h.detach().reshape(-1, width), w.detach(), t.reshape(-1)
        tk.set_tuning({})
        _, lse = tk.triton_token_logprobs(h, w, None, t, 1.0, -100)
        g = torch.randn(t.shape[0], device=device)
        for cfg in KEPT_CANDIDATES:
            name = json.dumps(cfg, sort_keys=True)
            if name in failed:
                continue
            tk.set_tuning({"kept": cfg})
            try:
                times.setdefault(name, {})[shape] = _median_ms(
                    lambda g=g, h=h, w=w, t=t, lse=lse: tk.triton_token_logprobs_backward(
                        g, h, w, None, t, lse, 1.0, -100, True, True, False, grad_filter=eps
                    ),
                    args.reps,
                    device,
                )
            except Exception as exc:  # a configuration that does not compile here is a result, not a crash
                errors[f"kept {name} {shape}"] = f"{type(exc).__name__}: {exc}"[:300]
                failed.add(name)
            print(f"kept {shape}: {name} {times.get(name, {}).get(shape)}", flush=True)
    tk.set_tuning({})
    winner = _winner(times)
    return times, errors, json.loads(winner) if winner else None


def main(argv: list[str] | None = None) -> int:
    from rdro.llm.kernels import triton_logprobs as tk

    p = argparse.ArgumentParser(prog="python -m rdro.llm.kernels.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=list(ANCHOR_SHAPES), choices=list(ANCHOR_SHAPES) + list(TINY_SHAPES))
    p.add_argument("--tokens", type=int, default=32768)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="tuning.json")
    p.add_argument("--report", default="tuning_report.json")
    p.add_argument("--quick", action="store_true", help="time only the loop flags on the H200 blocks (see QUICK_*)")
    p.add_argument(
        "--kept", action="store_true", help="time only the kept-column GEMM blocks of the filtered backward (KEPT_*)"
    )
    p.add_argument(
        "--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run under the Triton interpreter"
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("the tuner needs a CUDA GPU (torch sees none); --device cpu only smoke-tests it")
    if args.device == "cpu" and not tk._interpreted():
        raise SystemExit("--device cpu needs TRITON_INTERPRET=1 (the kernels run in the Triton interpreter)")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    if args.kept:
        kept_ms, errors, best = tune_kept(args, device, tk)
        tuning = {"kept": best} if best else {}
        atomic_write_text(args.out, json.dumps(tuning, indent=1))
        report = dict(device=name, torch=torch.__version__, tokens=args.tokens, reps=args.reps, inputs="lm",
                      kept_ms=kept_ms, errors=errors, chosen=tuning)  # fmt: skip
        atomic_write_text(args.report, json.dumps(report, indent=1))
        print(f"chosen: {json.dumps(tuning)}")
        return 0
    forward: dict[str, dict[str, float]] = {}
    backward: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    inputs = {}
    for shape in args.shapes:
        width, vocab = {**ANCHOR_SHAPES, **TINY_SHAPES}[shape]
        seq_len = min(2048, args.tokens)
        h, w, _, _, targets, _ = make_inputs(
            width, vocab, max(1, args.tokens // seq_len), seq_len, torch.bfloat16, device, 0
        )
        inputs[shape] = (h.detach().reshape(-1, width), w.detach(), targets.reshape(-1))
    for i, cfg in enumerate(QUICK_FORWARD_CANDIDATES if args.quick else FORWARD_CANDIDATES):
        name = json.dumps(cfg, sort_keys=True)
        tk.set_tuning({"forward": cfg})
        for shape, (h, w, t) in inputs.items():
            try:
                forward.setdefault(name, {})[shape] = _median_ms(
                    lambda h=h, w=w, t=t: tk.triton_token_logprobs(h, w, None, t, 1.0, -100), args.reps, device
                )
            except Exception as exc:  # a configuration that does not compile here is a result, not a crash
                errors[f"forward {name} {shape}"] = f"{type(exc).__name__}: {exc}"[:300]
                forward.pop(name, None)
                break
        print(f"forward {i}: {name} {forward.get(name)}", flush=True)
    best_forward = json.loads(_winner(forward) or json.dumps(tk.GPU_DEFAULTS["forward"]))
    # grad-kernel blocks to try (each with TMA off and on): the earlier default, the forward's winner, the GPU default
    grad_candidates = []
    for cfg in (FORWARD_CANDIDATES[0], best_forward, tk.GPU_DEFAULTS["grad"]):
        blocks = {k: v for k, v in cfg.items() if k in tk._BLOCK_KEYS}
        if blocks not in grad_candidates:
            grad_candidates.append(blocks)
    grad_candidates = [{**c, "TMA": tma} for c in grad_candidates for tma in (False, True)]
    gemms, slabs = GEMMS, SLABS
    if args.quick:
        grad_candidates = [{**tk.GPU_DEFAULTS["grad"], "TMA": tma} for tma in (False, True)]
        gemms, slabs = (tk.GPU_DEFAULTS["gemm"],), (tk.GPU_DEFAULTS["slab_vocab"],)
    for grad_cfg in grad_candidates:
        for gemm in gemms:
            for slab in slabs:
                option = dict(grad=grad_cfg, gemm=gemm, slab_vocab=slab, budget_mib=48)
                name = json.dumps(option, sort_keys=True)
                tk.set_tuning(option)
                for shape, (h, w, t) in inputs.items():
                    try:
                        _, lse = tk.triton_token_logprobs(h, w, None, t, 1.0, -100)
                        g = torch.randn(t.shape[0], device=device)
                        backward.setdefault(name, {})[shape] = _median_ms(
                            lambda g=g, h=h, w=w, t=t, lse=lse: tk.triton_token_logprobs_backward(
                                g, h, w, None, t, lse, 1.0, -100, True, True, False
                            ),
                            args.reps,
                            device,
                        )
                    except Exception as exc:
                        errors[f"backward {name} {shape}"] = f"{type(exc).__name__}: {exc}"[:300]
                        backward.pop(name, None)
                        break
                print(f"backward: {name} {backward.get(name)}", flush=True)
    best_backward = json.loads(_winner(backward) or "{}")
    tuning = {"forward": best_forward, **best_backward}
    tk.set_tuning(tuning)
    atomic_write_text(args.out, json.dumps(tuning, indent=1))
    report = dict(device=name, torch=torch.__version__, tokens=args.tokens,
                  reps=args.reps, forward_ms=forward, backward_ms=backward, errors=errors, chosen=tuning)  # fmt: skip
    atomic_write_text(args.report, json.dumps(report, indent=1))
    print(f"chosen: {json.dumps(tuning)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
