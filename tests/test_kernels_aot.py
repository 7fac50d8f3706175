"""The Triton kernels compile for a GPU (sm_90, Hopper) on this CPU-only machine: ``rdro.llm.kernels.aot_check``.

The interpreter tests check the kernels' arithmetic but never lower them; this catches what only compilation can
(operand layouts, loop bounds read from memory, shared memory). Run in a fresh process without TRITON_INTERPRET."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (pip install 'rdro[kernels]')", allow_module_level=True)
ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # compile for real, not from an earlier run's cache
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_every_kernel_compiles_for_hopper(tmp_path):
    done = _run(["-m", "rdro.llm.kernels.aot_check", "--arch", "90"], tmp_path)
    if "No module named 'triton.backends.nvidia'" in done.stdout + done.stderr:
        pytest.skip("this triton has no NVIDIA backend")
    assert done.returncode == 0, done.stdout + done.stderr
    source = (ROOT / "llm" / "kernels" / "triton_logprobs.py").read_text()
    kernels = set(re.findall(r"@triton\.jit\ndef (_\w+_kernel)\(", source))
    assert len(kernels) >= 6
    for dtype in ("bf16", "fp32"):
        compiled = set(re.findall(rf"^ok   sm_90 +{dtype} (\w+)[^:]*:", done.stdout, flags=re.M))
        assert compiled == kernels, f"{dtype}: compiled {sorted(compiled)}, kernels in the module {sorted(kernels)}"
        assert re.search(
            rf"^ok   sm_90 +{dtype} _lse_partial_kernel \[FLATTEN=1 TMA=1 GROUP_ROWS=16\]:", done.stdout, flags=re.M
        )
    assert "FAIL" not in done.stdout


def test_a_kernel_the_interpreter_accepts_but_a_gpu_cannot_compile_is_reported(tmp_path):
    """A tl.dot with K = 8 (tensor cores need K ≥ 16) runs in the interpreter; compile_kernel must raise."""
    script = tmp_path / "broken.py"
    script.write_text(
        textwrap.dedent(
            """
            import triton, triton.language as tl
            from rdro.llm.kernels.aot_check import compile_kernel

            @triton.jit
            def small_dot(a_ptr, out_ptr):
                r = tl.arange(0, 16)
                k = tl.arange(0, 8)
                a = tl.load(a_ptr + r[:, None] * 8 + k[None, :])
                tl.store(out_ptr + r[:, None] * 16 + r[None, :], tl.dot(a, tl.trans(a)))

            try:
                compile_kernel(small_dot, {"a_ptr": "*bf16", "out_ptr": "*fp32"}, {}, {}, 90)
            except Exception as error:
                print("raised", type(error).__name__)
            else:
                print("compiled")
            """
        )
    )
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("raised"), done.stdout + done.stderr
