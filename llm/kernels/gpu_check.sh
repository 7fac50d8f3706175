#!/usr/bin/env bash
# One-command GPU check of rdro's log-prob kernels and trainer (about 8 minutes on an H200, most of the first two
# spent compiling on a fresh machine):
#   2. (only when asked: STEPS="2 ...") a quick tuning (python -m rdro.llm.kernels.tune --quick): the loop flags on or
#      off, timed at the three anchor shapes; the later steps use its choice (STEPS="2full ..." runs the full tuning
#      instead: block sizes, backward GEMM, slab width). The defaults are the H200's choice of 2026-11-27;
#   2kept. (only when asked) python -m rdro.llm.kernels.tune --kept: the blocks of the filtered backward's two
#      kept-column GEMMs, timed on LM-like inputs; merged into tuning.json for the later steps;
#   1. correctness of the compiled Triton kernels at real vocabulary sizes;
#   3. `rdro bench logprobs` (exact and gradient-filtered) beside naive, Liger-Kernel and cut-cross-entropy;
#   4. `rdro benchmark throughput`: rdro's trainer vs TRL KTOTrainer (± Liger) on the Qwen2.5-0.5B architecture;
#   5. the full Triton correctness sweep (slow tests included; it sets its own tuning where it tests the flags);
#   6. (only when asked: STEPS="... 6") the benchmark again on LM-like inputs (--inputs lm; N = 32768), with the naive
#      full-logits path as a third opinion (on the H200, cut-cross-entropy's losses there disagreed with rdro's; naive
#      rounds the logits to bf16, so it is no exact arbiter), each method also profiled (--profile 3: kernel launches
#      and GPU busy time per step, the largest kernels).
# Usage: bash llm/kernels/gpu_check.sh [OUT_DIR]. Optional wheels (Liger-Kernel, cut-cross-entropy, trl, ...) in
# .whl/ at the repository root are installed first. STEPS="3 4" runs only those steps (default "1 3 4 5"; the
# order of the steps is fixed). Each step has its own time limit; one failing step does not stop the others.
# Everything lands in OUT_DIR: log, tuning.json, tuning_report.json, tuning_kept_report.json, bench_logprobs.json,
# trainer_throughput.json, bench_logprobs_lm.json (at most 7 files: the device tool returns 8).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR="${1:-${OUT:-results}}"
mkdir -p "$OUT_DIR" && OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOG="$OUT_DIR/log"
PY="${PYTHON:-python3}"
STEPS="${STEPS:-1 3 4 5}"  # which of the numbered steps below to run
step() { echo "=== $(date +%T) $*" | tee -a "$LOG"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }
source scripts/device_env.sh  # wheels from .whl/, and the checkout on the path
step environment
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
  "$PY" -c "
import importlib, torch
print('torch', torch.__version__, torch.cuda.get_device_name())
for m in ('triton', 'transformers', 'trl', 'peft', 'accelerate', 'datasets', 'liger_kernel', 'cut_cross_entropy'):
    try:
        print(m, getattr(importlib.import_module(m), '__version__', '?'))
    except Exception as e:
        print(m, 'MISSING', type(e).__name__, e)
a = torch.ones(4, 4, device='cuda', dtype=torch.bfloat16)
try:
    print('mm out_dtype', torch.mm(a, a, out_dtype=torch.float32).dtype)
except Exception as e:
    print('mm out_dtype unsupported', type(e).__name__)
"; } 2>&1 | tee -a "$LOG"
if want 2 || want 2full; then
  step "2 tuning ($(want 2full && echo full || echo quick))"
  timeout "$(want 2full && echo 300 || echo 120)" "$PY" -m rdro.llm.kernels.tune $(want 2full || echo --quick) \
    --out "$OUT_DIR/tuning.json" --report "$OUT_DIR/tuning_report.json" 2>&1 | tee -a "$LOG"
  [ -s "$OUT_DIR/tuning.json" ] && export RDRO_TRITON_TUNING="$OUT_DIR/tuning.json"
fi
if want 2kept; then
  step "2kept tuning of the filtered backward's kept-column GEMM blocks (LM-like inputs)"
  timeout 150 "$PY" -m rdro.llm.kernels.tune --kept --out "$OUT_DIR/tuning_kept.json" \
    --report "$OUT_DIR/tuning_kept_report.json" 2>&1 | tee -a "$LOG"
  if [ -s "$OUT_DIR/tuning_kept.json" ]; then  # merged into tuning.json (with step 2's choice, if any), for the later steps
    "$PY" -c "
import json, os, sys
merged = json.load(open(sys.argv[1])) if os.path.exists(sys.argv[1]) else {}
merged.update(json.load(open(sys.argv[2])))
json.dump(merged, open(sys.argv[1], 'w'), indent=1)
" "$OUT_DIR/tuning.json" "$OUT_DIR/tuning_kept.json" && rm "$OUT_DIR/tuning_kept.json" \
      && export RDRO_TRITON_TUNING="$OUT_DIR/tuning.json"
  fi
fi
if want 1; then
  step "1 correctness at model vocabulary sizes (tuning: ${RDRO_TRITON_TUNING:-defaults})"
  timeout 90 "$PY" -m pytest tests/test_kernels_triton.py -q -k "model_vocabulary" --tb=line 2>&1 | tail -12 | tee -a "$LOG"
fi
if want 3; then
  step "3 bench logprobs (tuning: ${RDRO_TRITON_TUNING:-none})"
  timeout 190 "$PY" -m rdro.llm.kernels.bench logprobs --out "$OUT_DIR/bench_logprobs.json" --reps 10 --warmup 3 2>&1 \
    | grep -v "it/s\]$" | tee -a "$LOG"
fi
if want 4; then
  step "4 trainer throughput"
  timeout 140 "$PY" -m rdro.llm.trainer_throughput --steps 8 --warmup 2 --batch-size 16 --seq-len 1024 \
    --out "$OUT_DIR/trainer_throughput.json" 2>&1 | grep -v "Warning\|warn(" | tail -8 | tee -a "$LOG"
fi
if want 5; then
  step "5 Triton correctness sweep"
  timeout 200 "$PY" -m pytest tests/test_kernels_triton.py -q --runslow --tb=short -rf 2>&1 | tail -40 | tee -a "$LOG"
fi
if want 6; then
  step "6 bench logprobs on LM-like inputs"
  timeout 240 "$PY" -m rdro.llm.kernels.bench logprobs --inputs lm --tokens 32768 --methods rdro rdro-filtered naive liger cce --profile 3 \
    --out "$OUT_DIR/bench_logprobs_lm.json" --reps 10 --warmup 3 2>&1 | grep -v "it/s\]$" | tee -a "$LOG"
fi
step done
