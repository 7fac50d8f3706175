#!/usr/bin/env bash
# One-command GPU check of rdro's log-prob kernels: correctness on CUDA, then `rdro bench logprobs` at the anchor shapes.
# Run from anywhere on a machine with a CUDA GPU (< 8 minutes on an H100):
#   bash llm/kernels/gpu_check.sh [OUT_DIR]
# Optional wheels (Liger-Kernel, cut-cross-entropy) in .whl/ at the repository root are installed first.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR="${1:-${OUT:-results}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import rdro.llm.kernels" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
# correctness: the CUDA tests at real vocabulary sizes plus the Triton sweep (marked slow) and the torch-path tests
timeout 240 "$PY" -m pytest tests/test_kernels_triton.py tests/test_kernels.py -q -x --runslow \
  -k "not inductor" 2>&1 | tee "$OUT_DIR/kernels_tests.log"
# benchmark: rdro vs naive vs Liger-Kernel vs cut-cross-entropy, N = 8192 and 32768, bf16
timeout 300 "$PY" -m rdro.llm.kernels.bench logprobs --out "$OUT_DIR/bench_logprobs.json" --reps 10 --warmup 3 \
  2>&1 | tee "$OUT_DIR/bench_logprobs.log"
