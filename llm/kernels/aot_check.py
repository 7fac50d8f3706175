"""Compile every Triton kernel of the log-prob op for a GPU target on a machine without a GPU (ahead of time).

``python -m rdro.llm.kernels.aot_check [--arch 90 80]``

The Triton interpreter runs the kernels' arithmetic on CPU tensors but never lowers them, so a kernel can pass the
interpreter tests and still fail to compile for a GPU (layouts of ``tl.dot`` operands, loop bounds read from memory,
shared memory beyond the chip's limit). This tool builds each kernel down to a CUDA binary (Triton's own ptxas) at
the block sizes the GPU runs use — :data:`~rdro.llm.kernels.triton_logprobs.GPU_DEFAULTS` for 16-bit inputs, the
built-in choices for fp32 — and checks its shared memory against the per-block limit of the target, and reports registers, spill stack and
spill traffic inside the tensor-core loops from the binary. It needs the
``triton`` package with its NVIDIA backend, not a GPU or a CUDA driver; it must run without ``TRITON_INTERPRET=1``.
Exit status 1 when a kernel fails (each failure is printed with the kernel, dtype and error).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

#: Largest shared memory one block may use (bytes, opt-in maximum) per compute capability.
SHARED_MEMORY_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}

#: Integer arguments that are multiples of 16 in the GPU runs (N, H, V of the anchor shapes, chunk and slab sizes).
ALIGNED_INTEGERS = {
    "n_rows", "vocab", "width", "slab_lo", "slab_width", "m_size", "n_size", "k_size",
    "stride_am", "stride_ak", "stride_bk", "stride_bn", "stride_cm", "stride_cn", "stride_out_row", "stride_out_col",
}  # fmt: skip

_TRITON_TYPE = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def kernel_builds(dtype: torch.dtype) -> list[tuple]:
    """(kernel, argument types, constexpr values, compile options) for every kernel of the op at ``dtype``, with the
    launch-time block sizes and options of :mod:`~rdro.llm.kernels.triton_logprobs`."""
    from rdro.llm.kernels import triton_logprobs as tk

    x = _TRITON_TYPE[dtype]
    math_flags = dict(PRECISION=tk._dot_precision(dtype), UPCAST=tk._upcast(dtype))

    def split(config: dict) -> tuple[dict, dict]:
        options = {k: config[k] for k in ("num_warps", "num_stages") if k in config}
        return {k: v for k, v in config.items() if k not in options}, options

    def types(spec: str) -> dict:
        return dict(item.split(":") for item in spec.split())

    forward, forward_opts = split(tk._tile_config(dtype, "forward"))
    grad, grad_opts = split(tk._tile_config(dtype, "grad"))
    gemm, gemm_opts = split(tk._matmul_config(dtype))
    slab = tk._tuned(dtype).get("slab_vocab", 4096)

    def tile_args(config: dict, tma: bool) -> str:
        sources = (
            f"h_ptr:tensordesc<{x}[{config['BLOCK_N']},{config['BLOCK_H']}]> "
            f"w_ptr:tensordesc<{x}[{config['BLOCK_V']},{config['BLOCK_H']}]>"
            if tma
            else f"h_ptr:*{x} w_ptr:*{x}"
        )
        return f"{sources} b_ptr:*{x} n_rows:i32 vocab:i32 width:i32 scale:fp32"

    builds = [
        *(
            (
                tk._lse_partial_kernel,
                types(
                    f"{tile_args(forward, tma)} max_ptr:*fp32 sum_ptr:*fp32 tiles_per_split:i32 n_row_blocks:i32 "
                    "n_splits:i32"
                ),
                dict(HAS_BIAS=True, **{**forward, "FLATTEN": flatten, "TMA": tma, "GROUP_ROWS": group}, **math_flags),
                forward_opts,
            )
            for flatten in (False, True)  # every combination of the forward's loop flags the tuner may choose
            for tma in (False, True)
            for group in (0, 16)
        ),
        *(
            (
                tk._matmul_accumulate_kernel,
                types(
                    f"a_ptr:*{x} b_ptr:*{x} c_ptr:*{c} m_size:i32 n_size:i32 k_size:i32 stride_am:i32 stride_ak:i32 "
                    "stride_bk:i32 stride_bn:i32 stride_cm:i32 stride_cn:i32"
                ),
                dict(ACCUMULATE=True, **{a_unit: 1}, stride_bn=1, stride_cn=1, **gemm, **math_flags),
                gemm_opts,
            )
            for a_unit, c in (("stride_ak", "fp32"), ("stride_am", x))  # ∂h += G W (fp32 buffer); ∂W += Gᵀ h
        ),
        (
            tk._target_logit_kernel,
            types(f"h_ptr:*{x} w_ptr:*{x} b_ptr:*{x} tgt_ptr:*i64 out_ptr:*fp32 n_rows:i32 width:i32 scale:fp32"),
            dict(HAS_BIAS=True, **split(tk._target_logit_config())[0]),
            split(tk._target_logit_config())[1],
        ),
        (
            tk._compact_kept_columns_kernel,
            types("col_max_ptr:*fp32 cols_ptr:*i32 count_ptr:*i32 slab_width:i32 threshold:fp32"),
            dict(BLOCK_V=1 << (slab - 1).bit_length()),
            {},
        ),
    ]
    for column_max, unit_stride in ((False, "stride_out_col"), (True, "stride_out_row")):  # G, or Gᵀ when filtered
        for tma in (False, True):
            builds.append(
                (
                    tk._grad_logits_kernel,
                    types(
                        f"{tile_args(grad, tma)} tgt_ptr:*i64 lse_ptr:*fp32 grad_ptr:*fp32 out_ptr:*{x} col_max_ptr:*fp32 "
                        "slab_lo:i32 slab_width:i32 stride_out_row:i32 stride_out_col:i32"
                    ),
                    dict(
                        HAS_BIAS=True, COLUMN_MAX=column_max, **{unit_stride: 1}, **{**grad, "TMA": tma}, **math_flags
                    ),
                    grad_opts,
                )
            )
    kept = f"gt_ptr:*{x} cols_ptr:*i32 count_ptr:*i32 n_rows:i32 width:i32 slab_lo:i32"
    kept_configs = [(gemm, gemm_opts)]
    if dtype != torch.float32:  # and every candidate of `tune --kept` (16-bit inputs only)
        from rdro.llm.kernels.tune import KEPT_CANDIDATES

        kept_configs += [split(c) for c in KEPT_CANDIDATES if split(c) != (gemm, gemm_opts)]
    for blocks, opts in kept_configs:
        builds.append(
            (
                tk._kept_columns_grad_hidden_kernel,
                types(f"{kept} w_ptr:*{x} acc_ptr:*fp32"),
                dict(**blocks, **math_flags),
                opts,
            )
        )
        builds.append(
            (
                tk._kept_columns_grad_weight_kernel,
                types(f"{kept} h_ptr:*{x} grad_w_ptr:*{x}"),
                dict(**blocks, **math_flags),
                opts,
            )
        )
    return builds


def compile_kernel(kernel, arg_types: dict, constexprs: dict, options: dict, arch: int):
    """The compiled kernel (Triton's CompiledKernel) for CUDA compute capability ``arch``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    missing = [name for name in kernel.arg_names if name not in arg_types and name not in constexprs]
    if missing:
        raise ValueError(f"no type given for the arguments {missing} of {kernel.__name__}")
    signature = {name: "constexpr" if name in constexprs else arg_types[name] for name in kernel.arg_names}
    # what the JIT infers from real arguments: every pointer 16-byte aligned, and the integers that are multiples of
    # 16 at the GPU shapes (sizes, offsets, strides ≠ 1; the unit strides are passed as constexpr 1, as the JIT does)
    aligned = [["tt.divisibility", 16]]
    attrs = {
        (i,): aligned
        for i, name in enumerate(kernel.arg_names)
        if name not in constexprs and (arg_types[name].startswith("*") or name in ALIGNED_INTEGERS)
    }
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def machine_code_report(compiled) -> dict:
    """Registers and stack (spill) bytes per thread from the CUDA binary, and the local-memory loads/stores inside
    the innermost loop that holds the tensor-core instructions (a spill there is paid at every K step), read with the
    ``cuobjdump`` that ships with Triton's NVIDIA backend. {} when it is missing."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    import triton

    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not cuobjdump.exists():
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "kernel.cubin"
        binary.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([cuobjdump, "-res-usage", binary], capture_output=True, text=True).stdout
        sass = subprocess.run([cuobjdump, "-sass", binary], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    if not found:
        return {}
    code = [
        (int(m.group(1), 16), m.group(2)) for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)
    ]  # (address, instruction)
    mma = [addr for addr, op in code if "GMMA" in op or "HMMA" in op]
    loops = []  # (top, bottom) of every backward branch around a tensor-core instruction
    for addr, op in code:
        back_edge = re.search(r"BRA\s+(?:.*\s)?0x([0-9a-f]+)", op)
        if back_edge and int(back_edge.group(1), 16) < addr:
            top = int(back_edge.group(1), 16)
            if any(top <= a <= addr for a in mma):
                loops.append((top, addr))
    local_in_mma_loops = 0
    if loops:  # the innermost one: the K loop (out-of-line wait loops that jump back over it are wider)
        top, bottom = min(loops, key=lambda loop: loop[1] - loop[0])
        local_in_mma_loops = sum(1 for a, o in code if top <= a <= bottom and re.search(r"\b(LDL|STL)\b", o))
    return dict(registers=int(found.group(1)), stack_bytes=int(found.group(2)), local_in_mma_loop=local_in_mma_loops)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rdro.llm.kernels.aot_check", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--arch", type=int, nargs="+", default=[90], help=f"compute capabilities, of {sorted(SHARED_MEMORY_LIMIT)}"
    )
    args = parser.parse_args(argv)
    unknown = [a for a in args.arch if a not in SHARED_MEMORY_LIMIT]
    if unknown:
        parser.error(f"--arch: unknown compute capability {unknown}; expected some of {sorted(SHARED_MEMORY_LIMIT)}")
    from rdro.llm.kernels.triton_logprobs import _interpreted

    if _interpreted():
        parser.error("TRITON_INTERPRET=1 is set: the kernels would be interpreted, not compiled; unset it")
    failures = 0
    for arch in args.arch:
        for dtype in (torch.bfloat16, torch.float32):
            for kernel, arg_types, constexprs, options in kernel_builds(dtype):
                flags = " ".join(
                    f"{k}={int(v)}"
                    for k, v in constexprs.items()
                    if k in ("FLATTEN", "TMA", "GROUP_ROWS", "COLUMN_MAX")
                )
                if "BLOCK_M" in constexprs:  # a GEMM: its blocks, warps and stages
                    flags = "{BLOCK_M}×{BLOCK_N}×{BLOCK_K}".format(**constexprs) + " w{num_warps} s{num_stages}".format(
                        **{"num_warps": "?", "num_stages": "?", **options}
                    )
                label = f"sm_{arch} {_TRITON_TYPE[dtype]:>4} {kernel.__name__}" + (f" [{flags}]" if flags else "")
                start = time.perf_counter()
                try:
                    compiled = compile_kernel(kernel, arg_types, constexprs, options, arch)
                except Exception as error:  # noqa: BLE001 - report every kernel, then fail
                    failures += 1
                    print(f"FAIL {label}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
                    continue
                shared = compiled.metadata.shared
                pipelined = (
                    "async_copy_global_to_local" in compiled.asm["ttgir"] or "async_tma" in compiled.asm["ttgir"]
                )
                if shared > SHARED_MEMORY_LIMIT[arch]:
                    failures += 1
                    print(f"FAIL {label}: {shared} B shared memory > {SHARED_MEMORY_LIMIT[arch]} B per block")
                    continue
                machine = machine_code_report(compiled)
                machine_text = (
                    f"{machine['registers']} registers, {machine['stack_bytes']} B stack, "
                    f"{machine['local_in_mma_loop']} spill loads/stores in the MMA loop, "
                    if machine
                    else ""
                )
                print(
                    f"ok   {label}: {shared} B shared memory, loads {'pipelined' if pipelined else 'not pipelined'}, "
                    f"{machine_text}{time.perf_counter() - start:.1f} s"
                )
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
