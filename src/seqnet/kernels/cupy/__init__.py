"""CuPy overrides of the reference time loop: fused CUDA kernels, one GEMM and one kernel per step.

- ``cuda/``: the kernel sources (per-element math in cells.cuh, block sums in reduce.cuh,
  the time-loop kernels in scan.cu, next-token sampling in sample.cu);
- :mod:`.sampling`: the override of the next-token choice (generation on the device);
- :mod:`.driver`: the time loop against a small device interface (:mod:`.ops`);
- :mod:`.device`: that interface on a GPU (cuBLAS, kernels built by CuPy from the sources);
- :mod:`.host`: the same on the CPU (numpy GEMMs, the sources built with the system C++
  compiler) for tests; :mod:`.nvrtc`: the NVRTC compile check, no GPU needed.

Importing this package does not import CuPy; the first fused scan on a CuPy backend does.
"""
from .device import cupy_ops
from .driver import scan_kernels
from .sampling import make_next_tokens

SCAN_KERNELS = scan_kernels(cupy_ops)
KERNELS = {"next_tokens": make_next_tokens(cupy_ops)}
