"""Shared test configuration: the ``slow`` and ``gpu`` markers, Triton's interpreter on CPU."""

import os

# Tests use small matrices: one BLAS/OpenMP thread is much faster than two fighting over
# the 2 cores of a CI machine. Set before numpy/torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Without CUDA, Triton kernels run on CPU tensors through the interpreter. Triton reads
# this once, at its first import, so it is set before any test module imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
