# Sourced by the device-machine scripts (llm/kernels/gpu_check.sh, llm/gpu_known_preference.sh), from the repository
# root, with PY set: installs the wheels carried in .whl/ into /tmp/site and, when rdro is not installed there, puts
# the checkout's packages on the path through links that follow the pyproject's package map (PYTHONSAFEPATH=1, so the
# repository root's own rdro/ folder cannot shadow them).
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONSAFEPATH=1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import rdro.llm" 2>/dev/null; then
  SRC="$(mktemp -d)"; mkdir "$SRC/rdro"
  for f in "$PWD"/rdro/*; do ln -s "$f" "$SRC/rdro/"; done
  for d in theory simulations llm paper_figures; do ln -s "$PWD/$d" "$SRC/rdro/$d"; done
  export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
fi
