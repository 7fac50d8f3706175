"""CPU training-speed benchmark: rdro's trainer vs TRL's KTOTrainer defaults on SmolLM2-135M-Instruct.

The setup of the project's CPU anchor (shared/anchors/README.md): 128 conversational rows (user prompt
≈ 20 words, assistant completion ≈ 40 words, labels alternating), batch 8, max_length 128, lr 5e-7,
seed 42, full fine-tuning. Each configuration runs in its own process (so peak RSS is its own) for
18 steps; the speed is the median step interval over steps 3-18 (two warm-up steps) measured at
``on_step_end``, tokens/s = mean non-padding tokens per batch / that median.

Configurations:
  - ``trl_kto``: ``trl.KTOTrainer`` with its defaults (bf16 autocast, gradient checkpointing, KL passes,
    reference forward every step) — the anchor's baseline;
  - ``rdro``: ``RDROTrainer`` (loss rdro), reference log-probs cached once before training (that pass is
    reported separately, not in the step time), fused log-probs (chunks of 128 tokens), fp32, gradient
    checkpointing, fused AdamW (``RDRO_OPTIONS``).

Usage: ``python -m rdro.llm.bench_trainer [--configs trl_kto,rdro] [--reps 1] [--out results.json]``.
Prints per configuration s/step, tokens/s, peak RSS, and the ratios rdro / trl_kto. Other processes
on the machine slow both sides; the two run back to back, compare ratios only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

import yaml

from rdro.results import atomic_write_text

N_ROWS, BATCH, MAX_LENGTH, LEARNING_RATE, SEED = 128, 8, 128, 5e-7, 42
STEPS, WARMUP_STEPS = 18, 2
#: rdro's settings in this benchmark (RDROConfig fields); ``--rdro_args`` overrides them
RDRO_OPTIONS = {"bf16": False, "gradient_checkpointing": True, "optim": "adamw_torch_fused", "logprob_chunk_size": 128}
_VOCABULARY = (
    "apple bridge candle desert engine forest garden harbor island jacket kettle ladder meadow needle orchard "
    "pepper quarry river saddle tunnel valley wagon yarrow zephyr amber basket cedar dolphin ember falcon "
    "glacier hollow ivory jungle kernel lantern marble nectar oyster pebble quiver raven summit timber umbrella "
    "velvet willow"
).split()


def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_VOCABULARY) for _ in range(n_words)).capitalize() + "."


def benchmark_rows(seed: int = SEED) -> list[dict]:
    """128 conversational unpaired rows of random words (labels alternate True / False)."""
    rng = random.Random(seed)
    return [
        {
            "prompt": [{"role": "user", "content": _sentence(rng, rng.randint(17, 21))}],
            "completion": [{"role": "assistant", "content": _sentence(rng, rng.randint(36, 42))}],
            "label": i % 2 == 0,
        }
        for i in range(N_ROWS)
    ]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    return StepTimer()


def _run_one(name: str, steps: int = STEPS, rdro_overrides: dict | None = None) -> dict:
    import datasets
    import torch

    from rdro.llm.data import to_unpaired, tokenize_dataset
    from rdro.llm.models import load_causal_lm, load_tokenizer, smollm2_model_dir

    torch.manual_seed(SEED)
    folder = smollm2_model_dir()
    tok = load_tokenizer(folder)
    raw = datasets.Dataset.from_list(benchmark_rows())
    rows = tokenize_dataset(to_unpaired(raw), tok, MAX_LENGTH, MAX_LENGTH - 1)
    tokens_per_row = statistics.mean(len(ids) for ids in rows["input_ids"])
    timer = _step_timer()
    extra = {}
    common = dict(
        output_dir=f"/tmp/rdro_bench_trainer/{name}",
        per_device_train_batch_size=BATCH,
        learning_rate=LEARNING_RATE,
        max_steps=steps,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=SEED,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if name == "trl_kto":
        from trl import KTOConfig, KTOTrainer

        policy = load_causal_lm(folder)
        ref = load_causal_lm(folder)
        args = KTOConfig(max_length=MAX_LENGTH, **common)
        trainer = KTOTrainer(
            model=policy, ref_model=ref, args=args, train_dataset=raw, processing_class=tok, callbacks=[timer]
        )
        extra.update(bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing)
    elif name == "rdro":
        from rdro.llm.trainer import RDROConfig, RDROTrainer

        policy = load_causal_lm(folder)
        options = dict(RDRO_OPTIONS, **(rdro_overrides or {}))
        args = RDROConfig(loss="rdro", max_length=MAX_LENGTH, max_prompt_length=MAX_LENGTH - 1, **options, **common)
        trainer = RDROTrainer(policy, args, rows, processing_class=tok, callbacks=[timer])
        t0 = time.perf_counter()
        trainer._attach_reference_logprobs()
        extra.update(
            reference_pass_s=time.perf_counter() - t0,
            bf16=args.bf16,
            gradient_checkpointing=args.gradient_checkpointing,
        )
    else:
        raise ValueError(f"unknown configuration {name!r}; expected trl_kto or rdro")
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    intervals = [b - a for a, b in zip(timer.ends[WARMUP_STEPS - 1 :], timer.ends[WARMUP_STEPS:])]
    median = statistics.median(intervals)
    return {
        "config": name,
        "s_per_step_median": median,
        "tokens_per_step": tokens_per_row * BATCH,
        "tokens_per_s": tokens_per_row * BATCH / median,
        "peak_rss_mb": _peak_rss_mb(),
        "train_s": total,
        "first_loss": next(h["loss"] for h in trainer.state.log_history if "loss" in h),
        "threads": torch.get_num_threads(),
        "seed": SEED,
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="trl_kto,rdro")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", default=None, help="write all results (JSON) here")
    ap.add_argument("--steps", type=int, default=STEPS, help="training steps per run (≥ 4; the anchor uses 18)")
    ap.add_argument(
        "--rdro_args", default="", help="RDROConfig overrides for rdro, e.g. bf16=true,optim=adamw_torch_fused"
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = ap.parse_args(argv)
    if args.steps < WARMUP_STEPS + 2:
        raise SystemExit(f"--steps must be at least {WARMUP_STEPS + 2}, got {args.steps}")
    overrides = {}
    for item in filter(None, args.rdro_args.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    if args.one:
        print("RESULT " + json.dumps(_run_one(args.one, args.steps, overrides)), flush=True)
        return 0
    results = []
    env = dict(os.environ, TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    for rep in range(args.reps):
        for name in args.configs.split(","):
            load = os.getloadavg()[0]
            proc = subprocess.run(
                [sys.executable, "-m", "rdro.llm.bench_trainer", "--one", name, "--steps", str(args.steps)]
                + ["--rdro_args", args.rdro_args],
                capture_output=True,
                text=True,
                env=env,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            res = dict(json.loads(lines[-1][7:]), rep=rep, load_before=load, load_after=os.getloadavg()[0])
            results.append(res)
            print(
                f"{name:8s} rep {rep}: {res['s_per_step_median']:.2f} s/step  {res['tokens_per_s']:.0f} tokens/s  "
                f"peak RSS {res['peak_rss_mb']:.0f} MB  (load avg {load:.1f} -> {res['load_after']:.1f})",
                flush=True,
            )
    by = {n: [r for r in results if r["config"] == n] for n in args.configs.split(",")}
    if by.get("trl_kto") and by.get("rdro"):
        speed = statistics.median(r["tokens_per_s"] for r in by["rdro"]) / statistics.median(
            r["tokens_per_s"] for r in by["trl_kto"]
        )
        memory = statistics.median(r["peak_rss_mb"] for r in by["rdro"]) / statistics.median(
            r["peak_rss_mb"] for r in by["trl_kto"]
        )
        print(f"rdro / TRL KTO defaults: tokens/s x{speed:.2f} (goal >= 2.0), peak RSS x{memory:.2f} (goal <= 0.8)")
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
