"""The device operations the fused time loop is written against: a GEMM into a buffer and a
kernel launch by name, plus buffer allocation outside the loop.

Two implementations: :class:`seqnet.kernels.cupy.device.CupyOps` (cuBLAS and the NVRTC-built
kernels on a GPU) and :class:`seqnet.kernels.cupy.host.HostOps` (numpy GEMMs and the same
kernel sources built for the CPU, for tests). The driver (:mod:`.driver`) cannot tell them
apart, so what it does per step, and how many launches that is, is the same on both:
``launches`` counts them.
"""
from __future__ import annotations

from collections import Counter

from . import sources


class Ops:
    """Base: argument checks and launch counting; subclasses do the work in ``_gemm`` / ``_launch``."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.signatures = sources.kernel_signatures()
        self.launches: Counter = Counter()        # by kernel name, and "gemm"

    def matrix(self, array):
        """A 2-D array as a GEMM operand, made once before the loop (CuPy: its address, shape
        and strides, so a step computes no descriptor)."""
        return array

    def gemm(self, out, out_row: int, a, a_row: int, b, rows: int, *, transpose_b: bool = False,
             accumulate: bool = False) -> None:
        """out[out_row:out_row + rows] (+)= a[a_row:a_row + rows] @ (b^T if transpose_b else b).

        Operands come from :meth:`matrix` of 2-D arrays (rows of ``out`` and ``a`` are batch
        rows of one step); ``out`` has contiguous rows, ``a`` and ``b`` may be column slices."""
        self.launches["gemm"] += 1
        self._gemm(out, out_row, a, a_row, b, rows, transpose_b, accumulate)

    def launch(self, name: str, grid: int, block: int, *args) -> None:
        """Run kernel ``name`` on ``grid`` blocks of ``block`` threads with ``args`` (arrays, None
        for an unused pointer, Python ints and floats), in the kernel's parameter order."""
        params = self.signatures[name]
        if len(args) != len(params):
            raise TypeError(f"kernel {name}: expected {len(params)} arguments ({', '.join(p.name for p in params)}), "
                            f"received {len(args)}")
        self.launches[name] += 1
        self._launch(name, grid, block, args)

    # Outside the loop (each a host call or at most one launch per scan, never per step):
    # empty, zeros, copy, contiguous, reshape, stack, sum_rows (sum over all leading axes),
    # asarray (a host numpy array onto the device, as this dtype unless bool).

    @property
    def total_launches(self) -> int:
        return sum(self.launches.values())

    def _gemm(self, out, out_row, a, a_row, b, rows, transpose_b, accumulate):
        raise NotImplementedError

    def _launch(self, name, grid, block, args):
        raise NotImplementedError
