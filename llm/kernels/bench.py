"""``rdro bench logprobs``: fused per-sequence log-probs + RDRO loss, forward and backward, beside the alternatives.

One training-step slice per method, all in one run on the same inputs: the reference log-probs without gradient
(log π_ref(y|x) summed over completion tokens), the policy log-probs with gradient, the RDRO loss
``rdro.losses.rdro_loss`` on t = log π_θ(y|x) − log π_ref(y|x), and the backward pass into the policy hidden states and
LM-head weight. Methods:

- ``rdro``: :func:`rdro.llm.kernels.sequence_logprobs` (Triton on CUDA, chunked torch on CPU);
- ``rdro-filtered``: the same with ``grad_filter`` = ε = (the dtype's machine epsilon) / 32 (2^-12 for bf16, the
  threshold cut-cross-entropy filters its gradient with by default): an approximate backward, see its docstring;
- ``naive``: full logits h W^T in the input dtype, fp32 log_softmax, gather (the textbook path);
- ``liger``: Liger-Kernel's fused chunked KTO loss (``LigerFusedLinearKTOLoss``; its own loss, same work), if installed;
- ``cce``: cut-cross-entropy's ``linear_cross_entropy`` per token, summed per sequence, then the RDRO loss, if installed.

Each time (median of ``--reps`` after ``--warmup``) is printed as a ratio to every other method and to the matmul floor
8·N·H·V / peak (policy forward 2NHV, its two gradient matmuls 4NHV, reference forward 2NHV). Peak memory is the CUDA
allocator's maximum above the inputs (CPU: not measured). The methods that compute the RDRO loss (all but ``liger``,
whose KTO loss has other gradients) also report the relative difference of their ∂h and ∂W from ``rdro``'s,
‖Δ‖/‖∂_rdro‖, measured after the timings.

Inputs (``--inputs``): ``anchor`` (default) draws them as the anchors did — random, with a softmax nearly uniform over
the vocabulary, unlike a trained LM's, which matters for gradient filters (``rdro-filtered``'s and cut-cross-entropy's);
``lm`` draws LM-like next-token distributions (:func:`make_inputs`). Each case records the inputs' mean entropy and the
share of vocabulary columns a 1024-token chunk keeps at the filter's ε (``input_stats``); ``python -m
rdro.llm.kernels.filter_report`` measures the same on a real LM. Results go to a JSON file (temp file + rename),
written after every case; ``--resume`` skips cases already in it (same device, inputs and dtype).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from rdro.losses import rdro_loss
from rdro.results import atomic_write_text

ANCHOR_SHAPES = {"qwen2.5-0.5b": (896, 151936), "qwen2.5-7b": (3584, 152064), "llama3-8b": (4096, 128256)}
TINY_SHAPES = {"tiny-a": (24, 97), "tiny-b": (33, 250)}
# dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}
METHODS = ("rdro", "rdro-filtered", "naive", "liger", "cce")
SAME_LOSS = ("rdro-filtered", "naive", "cce")  # methods whose gradients are compared with rdro's


# ---------------------------------------------------------------------------
# the methods: (h, W, h_ref, W_ref, targets [S, T], preferred [S], alpha) -> loss, after backward
# ---------------------------------------------------------------------------


def filter_eps(dtype: torch.dtype) -> float:
    """The ``rdro-filtered`` threshold: machine epsilon of ``dtype`` / 32 (bf16: 2^-12)."""
    return torch.finfo(dtype).eps / 32


def _rdro_step(h, w, h_ref, w_ref, targets, preferred, alpha, grad_filter: float = 0.0):
    from rdro.llm.kernels import sequence_logprobs

    with torch.no_grad():
        ref = sequence_logprobs(h_ref, w_ref, targets)
    policy = sequence_logprobs(h, w, targets, grad_filter=grad_filter)
    loss = rdro_loss(policy - ref, preferred, alpha)
    loss.backward()
    return loss


def _rdro_filtered_step(h, w, h_ref, w_ref, targets, preferred, alpha):
    return _rdro_step(h, w, h_ref, w_ref, targets, preferred, alpha, grad_filter=filter_eps(h.dtype))


def _naive_step(h, w, h_ref, w_ref, targets, preferred, alpha):
    from rdro.llm.kernels import naive_sequence_logprobs

    with torch.no_grad():
        ref = naive_sequence_logprobs(h_ref, w_ref, targets, matmul_dtype=h.dtype)
    policy = naive_sequence_logprobs(h, w, targets, matmul_dtype=h.dtype)
    loss = rdro_loss(policy - ref, preferred, alpha)
    loss.backward()
    return loss


def _cce_step(h, w, h_ref, w_ref, targets, preferred, alpha):
    from cut_cross_entropy import linear_cross_entropy

    n_seq, width = targets.shape[0], h.shape[-1]
    flat = targets.reshape(-1)  # cut-cross-entropy takes flattened [N, H] / [N] inputs
    with torch.no_grad():
        ref = -linear_cross_entropy(h_ref.reshape(-1, width), w_ref, flat, reduction="none").float()
    policy = -linear_cross_entropy(h.reshape(-1, width), w, flat, reduction="none").float()
    ref, policy = ref.view(n_seq, -1).sum(-1), policy.view(n_seq, -1).sum(-1)
    loss = rdro_loss(policy - ref, preferred, alpha)
    loss.backward()
    return loss


_LIGER = {}


def _liger_step(h, w, h_ref, w_ref, targets, preferred, alpha):
    from liger_kernel.chunked_loss import LigerFusedLinearKTOLoss

    if "loss" not in _LIGER:
        _LIGER["loss"] = LigerFusedLinearKTOLoss(beta=0.1, use_ref_model=True, chunk_size=1)
    kl = torch.zeros((), device=h.device)
    out = _LIGER["loss"](h, w, targets, None, preferred, h_ref, w_ref, None, kl)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    return loss


STEPS = {
    "rdro": _rdro_step,
    "rdro-filtered": _rdro_filtered_step,
    "naive": _naive_step,
    "liger": _liger_step,
    "cce": _cce_step,
}
REQUIRES = {"liger": "liger_kernel", "cce": "cut_cross_entropy"}


# ---------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------


#: conditional-logit spread of the "lm" inputs: with the Zipf prior below it gives a mean next-token entropy of
#: 2.2-2.3 nats and keeps 39-43 % of the vocabulary columns of a 1024-token chunk at p ≥ 2^-12 at the three anchor
#: shapes (bf16, measured on CPU), near SmolLM2's 36 % on its own samples (``filter_report``)
LM_LOGIT_STD = 6.0
INPUTS = ("anchor", "lm")


def make_inputs(width: int, vocab: int, n_seq: int, seq_len: int, dtype, device, seed: int, inputs: str = "anchor"):
    """Policy/reference hidden states and LM heads, targets with the first quarter of each sequence masked (prompt),
    alternating preferred / non-preferred rows.

    ``inputs="anchor"``: the anchors' random inputs (h ~ N(0, 1), W ~ N(0, 0.02²), uniform targets), whose softmax is
    nearly uniform over the vocabulary. ``"lm"``: next-token distributions shaped like a trained LM's — logits
    z_v = c_v + log π_Zipf(v), the conditional part c of std :data:`LM_LOGIT_STD`, the unigram prior Zipf(1) over the
    vocabulary carried by a constant last hidden feature (so every method sees it through the same matmul, no bias),
    and targets sampled from softmax(z)."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    gen = torch.Generator(device=device).manual_seed(seed)
    if inputs == "anchor":
        w = torch.randn(vocab, width, generator=gen, device=device, dtype=dtype) * 0.02
        h = torch.randn(n_seq, seq_len, width, generator=gen, device=device, dtype=dtype)
    else:
        log_prior = -torch.log(torch.arange(1, vocab + 1, device=device, dtype=torch.float32))
        log_prior -= torch.logsumexp(log_prior, 0)
        conditional = torch.randn(vocab, width - 1, generator=gen, device=device) * (LM_LOGIT_STD / (width - 1) ** 0.5)
        w = torch.cat([conditional, log_prior[:, None]], dim=1).to(dtype)
        noise = torch.randn(n_seq, seq_len, width - 1, generator=gen, device=device)
        h = torch.cat([noise, torch.ones(n_seq, seq_len, 1, device=device)], dim=-1).to(dtype)
    w.requires_grad_()
    w_ref = w.detach().clone()
    h.requires_grad_()
    h_ref = h.detach() + 0.01 * torch.randn(h.shape, generator=gen, device=device, dtype=dtype)
    if inputs == "anchor":
        targets = torch.randint(0, vocab, (n_seq, seq_len), generator=gen, device=device)
    else:
        flat = h.detach().reshape(-1, width)
        targets = torch.cat([
            torch.multinomial(torch.softmax(flat[i : i + 1024].float() @ w.detach().float().T, dim=-1), 1, generator=gen)
            for i in range(0, flat.shape[0], 1024)
        ]).view(n_seq, seq_len)  # fmt: skip
    targets[:, : seq_len // 4] = -100
    preferred = torch.arange(n_seq, device=device) % 2 == 0
    return h, w, h_ref, w_ref, targets, preferred


def probability_statistics(p: torch.Tensor, eps: float, targets: torch.Tensor):
    """For next-token probabilities p [n, V] and the tokens' targets [n] (−100: ignored): each row's entropy (nats)
    and probability mass below ``eps``, and for each column whether the gradient filter keeps it for these n tokens
    (some scored row has p ≥ ``eps``, or it is some scored row's target)."""
    scored = targets != -100
    below = p < eps
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)
    kept = ~below[scored].all(dim=0)
    kept[targets[scored]] = True
    return entropy, (p * below).sum(dim=1), kept


def input_statistics(h, w, targets, eps: float, rows: int = 1024) -> dict:
    """On the first ``rows`` scored tokens: mean next-token entropy (nats), the share of vocabulary columns with some
    p ≥ ``eps`` or some token's target (what ``rdro-filtered`` keeps in a chunk of that size) and the mean probability
    mass below ``eps``."""
    scored = targets.reshape(-1) != -100
    flat = h.detach().reshape(-1, h.shape[-1])[scored][:rows]
    p = torch.softmax(flat.float() @ w.detach().float().T, dim=-1)
    entropy, mass, kept = probability_statistics(p, eps, targets.reshape(-1)[scored][:rows])
    return dict(
        tokens=int(flat.shape[0]),
        entropy_nats=float(entropy.mean()),
        kept_columns=float(kept.float().mean()),
        mass_below_eps=float(mass.mean()),
        eps=eps,
    )


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_method(step, inputs, device, reps: int, warmup: int, alpha: float):
    """Median wall time (ms) of one step and peak memory above the inputs (GiB; None off CUDA); the loss value."""
    h, w = inputs[0], inputs[1]
    for _ in range(warmup):
        step(*inputs, alpha)
        h.grad = w.grad = None
    _sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    loss = None
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        loss = step(*inputs, alpha)
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
        h.grad = w.grad = None
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak, float(loss)


def profile_method(step, inputs, device, steps: int, alpha: float, top: int = 8) -> dict:
    """Where one method's step time goes, from ``steps`` steps under torch.profiler: per step, the launches and the
    summed device time of the GPU kernels (on CPU: the torch operators and their self time) and the largest ``top``
    kernels (name, launches, ms). Compared with the un-profiled median step time this tells a GPU-bound step from a
    launch-bound one (the profiler's own overhead makes the profiled wall time larger, so it is not reported)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    h, w = inputs[0], inputs[1]
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    _sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(*inputs, alpha)
            h.grad = w.grad = None
        _sync(device)
    totals: dict[str, list] = {}
    for event in prof.events():
        if on_gpu and event.device_type != DeviceType.CUDA:
            continue
        if not on_gpu and (event.device_type != DeviceType.CPU or not event.name.startswith("aten::")):
            continue
        duration_us = event.time_range.elapsed_us() if on_gpu else event.self_cpu_time_total
        entry = totals.setdefault(event.name, [0, 0.0])
        entry[0] += 1
        entry[1] += duration_us
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])
    return dict(
        unit="GPU kernels" if on_gpu else "CPU torch operators (self time)",
        steps=steps,
        launches_per_step=sum(n for n, _ in totals.values()) / steps,
        busy_ms_per_step=sum(us for _, us in totals.values()) / steps / 1e3,
        top=[
            dict(name=name[:80], launches_per_step=n / steps, ms_per_step=us / steps / 1e3)
            for name, (n, us) in ranked[:top]
        ],
    )


def gradient_differences(inputs, alpha: float, methods) -> dict:
    """{method: {"hidden": ‖∂h − ∂h_rdro‖ / ‖∂h_rdro‖, "weight": the same for ∂W}} for ``methods``, one step each."""
    h, w = inputs[0], inputs[1]
    STEPS["rdro"](*inputs, alpha)
    reference = (h.grad, w.grad)
    h.grad = w.grad = None
    out = {}
    for method in methods:
        STEPS[method](*inputs, alpha)
        out[method] = {
            name: float((got.float() - want.float()).norm() / want.float().norm())
            for name, got, want in (("hidden", h.grad, reference[0]), ("weight", w.grad, reference[1]))
        }
        h.grad = w.grad = None
    return out


def spec_peak_tflops(device) -> float | None:
    """The data-sheet dense bf16 peak of this GPU (TFLOP/s) from :data:`PEAK_TFLOPS`, or None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def peak_tflops(device, dtype, override: float | None) -> tuple[float, str]:
    """Dense matmul rate in TFLOP/s for the floor: the override, else a large GEMM measured here and now.

    The measured rate (8192³ on a GPU, as the anchors' "~800 TFLOP/s" was) is what a perfect kernel could reach on this
    card today; the data-sheet peak is reported beside it (:func:`spec_peak_tflops`)."""
    if override:
        return float(override), "--peak-tflops"
    size = 8192 if device.type == "cuda" else 512
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 10 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return reps * 2 * size**3 / (time.perf_counter() - start) / 1e12, f"measured {size}^3 {dtype} GEMM"


def _triton_tuning() -> dict:
    """The Triton kernels' effective options for 16-bit inputs on a GPU (built-in defaults and any tuning)."""
    try:
        from rdro.llm.kernels.triton_logprobs import GPU_DEFAULTS, TUNING
    except ImportError:
        return {}
    return {**GPU_DEFAULTS, **TUNING}


def _available(method: str) -> bool:
    import importlib.util

    return method not in REQUIRES or importlib.util.find_spec(REQUIRES[method]) is not None


def save_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    atomic_write_text(path, json.dumps(payload, indent=2))


def ratio_table(cases: list[dict]) -> list[str]:
    """Lines: for each (shape, N), each method's time and memory, its ratio to the floor and to every other method."""
    lines = []
    for case in cases:
        head = f"{case['shape']} (H={case['hidden']}, V={case['vocab']}) N={case['tokens']}"
        lines.append(f"{head}: floor {case['floor_ms']:.2f} ms")
        ok = {m: r for m, r in case["methods"].items() if r.get("ms") is not None}
        for method, res in case["methods"].items():
            if res.get("ms") is None:
                lines.append(f"  {method:13s} {res.get('error', 'skipped')}")
                continue
            mem = f"{res['peak_gib']:.3f} GiB" if res["peak_gib"] is not None else "mem n/a"
            others = ", ".join(f"{res['ms'] / o['ms']:.2f}x {m}" for m, o in ok.items() if m != method)
            diff = res.get("grad_rel_diff_vs_rdro")
            diff = f"  grad vs rdro: h {diff['hidden']:.1e}, W {diff['weight']:.1e}" if diff else ""
            lines.append(
                f"  {method:13s} {res['ms']:9.2f} ms  {mem:>12s}  {res['ms'] / case['floor_ms']:.2f}x floor  {others}"
                f"{diff}"
            )
            if res.get("profile"):
                prof = res["profile"]
                top = ", ".join(
                    f"{k['name']} {k['ms_per_step']:.2f} ms ({k['launches_per_step']:.0f}×)" for k in prof["top"][:4]
                )
                lines.append(
                    f"      profile: {prof['launches_per_step']:.0f} {prof['unit']} per step, busy {prof['busy_ms_per_step']:.2f} ms"
                    f" ({prof['busy_ms_per_step'] / res['ms']:.0%} of the step); {top}"
                )
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(prog="rdro bench logprobs", description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", default="logprobs", choices=["logprobs"], help="benchmark to run")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--shapes", nargs="+", default=["anchors"], choices=["anchors", "tiny", *ANCHOR_SHAPES, *TINY_SHAPES],
        help="anchors (all anchor model shapes), tiny (both tiny ones), or shape names",
    )  # fmt: skip
    p.add_argument("--tokens", type=int, nargs="+", default=None, help="N values (default 8192 32768; tiny: 64 256)")
    p.add_argument(
        "--seq-len", type=int, default=None, help="tokens per sequence (default 1024 for N ≤ 8192, else 2048)"
    )
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument(
        "--inputs", default="anchor", choices=INPUTS, help="anchor: the anchors' random inputs; lm: LM-like logits"
    )
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.5, help="RDRO α in (0, 1)")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the dense matmul peak (TFLOP/s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/bench_logprobs.json"))
    p.add_argument("--resume", action="store_true", help="keep cases already in --out and skip them")
    p.add_argument(
        "--profile", type=int, default=0, metavar="STEPS",
        help="also profile STEPS steps of each method (torch.profiler): launches and busy time per step, top kernels",
    )  # fmt: skip
    args = p.parse_args(argv)
    if not 0 < args.alpha < 1:
        p.error(f"--alpha must lie in (0, 1), got {args.alpha}")
    if args.reps < 1 or args.warmup < 0:
        p.error(f"--reps must be ≥ 1 and --warmup ≥ 0, got {args.reps} and {args.warmup}")
    if args.profile < 0:
        p.error(f"--profile must be ≥ 0 steps, got {args.profile}")
    if args.tokens and any(n < 1 for n in args.tokens):
        p.error(f"--tokens must be positive, got {args.tokens}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the ratio table; save the JSON results. Returns 0, or 1 if the rdro method failed."""
    import triton  # noqa: F401  (version below; absent → ImportError with the extra to install)
    from tqdm import tqdm

    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch sees no CUDA GPU; use --device cpu --shapes tiny")
    dtype = getattr(torch, args.dtype)
    groups = {"anchors": ANCHOR_SHAPES, "tiny": TINY_SHAPES}
    shapes = {}
    for name in args.shapes:
        shapes.update(groups.get(name) or {name: {**ANCHOR_SHAPES, **TINY_SHAPES}[name]})
    token_counts = args.tokens or ([64, 256] if set(shapes) <= set(TINY_SHAPES) else [8192, 32768])
    peak, peak_source = peak_tflops(device, dtype, args.peak_tflops)
    meta = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__,
        triton=triton.__version__,
        dtype=args.dtype,
        peak_tflops=peak,
        peak_source=peak_source,
        spec_peak_tflops=spec_peak_tflops(device),
        triton_tuning=_triton_tuning(),
        seed=args.seed,
        inputs=args.inputs,
        lm_logit_std=LM_LOGIT_STD if args.inputs == "lm" else None,
        reps=args.reps,
        warmup=args.warmup,
        alpha=args.alpha,
        timing="median wall ms of one step (CUDA-synchronised), peak allocated above inputs",
    )
    done = {}
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text())
        if all(previous.get("meta", {}).get(k) == meta[k] for k in ("device", "inputs", "dtype")):
            done = {(c["shape"], c["tokens"]): c for c in previous.get("cases", [])}
    cases = []
    plan = [(name, hw, n) for name, hw in shapes.items() for n in token_counts]
    rdro_failed = False
    print(
        f"device {meta['device']}, torch {meta['torch']}, triton {meta['triton']}, peak {peak:.1f} TFLOP/s ({peak_source})"
    )
    for name, (width, vocab), n_tokens in tqdm(plan, desc="bench logprobs", unit="case"):
        if (name, n_tokens) in done:
            cases.append(done[(name, n_tokens)])
            continue
        seq_len = min(n_tokens, args.seq_len or (1024 if n_tokens <= 8192 else 2048))
        n_seq = max(1, n_tokens // seq_len)
        inputs = make_inputs(width, vocab, n_seq, seq_len, dtype, device, args.seed, args.inputs)
        tokens = n_seq * seq_len
        case = dict(shape=name, hidden=width, vocab=vocab, tokens=tokens, n_seq=n_seq, seq_len=seq_len)
        case["input_stats"] = input_statistics(inputs[0], inputs[1], inputs[4], filter_eps(dtype))
        case["floor_ms"] = 8 * tokens * width * vocab / (peak * 1e12) * 1e3
        if meta["spec_peak_tflops"]:
            case["floor_spec_ms"] = 8 * tokens * width * vocab / (meta["spec_peak_tflops"] * 1e12) * 1e3
        case["methods"] = {}
        for method in args.methods:
            if not _available(method):
                case["methods"][method] = dict(ms=None, peak_gib=None, error=f"not installed ({REQUIRES[method]})")
                continue
            try:
                ms, gib, loss = time_method(STEPS[method], inputs, device, args.reps, args.warmup, args.alpha)
                case["methods"][method] = dict(ms=ms, peak_gib=gib, loss=loss)
                if args.profile:
                    case["methods"][method]["profile"] = profile_method(
                        STEPS[method], inputs, device, args.profile, args.alpha
                    )
            except Exception as exc:  # an OOM or a library failure is a result to report, not a crash
                case["methods"][method] = dict(ms=None, peak_gib=None, error=f"{type(exc).__name__}: {exc}"[:300])
                rdro_failed |= method == "rdro"
            inputs[0].grad = inputs[1].grad = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
        compared = [m for m in SAME_LOSS if case["methods"].get(m, {}).get("ms") is not None]
        if compared and case["methods"].get("rdro", {}).get("ms") is not None:
            try:
                for method, diff in gradient_differences(inputs, args.alpha, compared).items():
                    case["methods"][method]["grad_rel_diff_vs_rdro"] = diff
            except Exception as exc:  # e.g. no room for the reference gradients: say so, keep the timings
                case["grad_diff_error"] = f"{type(exc).__name__}: {exc}"[:300]
            inputs[0].grad = inputs[1].grad = None
        del inputs
        cases.append(case)
        save_json(args.out, dict(meta=meta, cases=cases))
    print("\n".join(ratio_table(cases)))
    print(f"saved {args.out}")
    return 1 if rdro_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
