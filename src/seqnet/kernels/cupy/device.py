"""The device interface of :mod:`.ops` on a CUDA GPU: cuBLAS GEMMs and the fused kernels, which
CuPy compiles from the sources (:mod:`.sources`) with NVRTC on first use and caches on disk.

Per call, ``gemm`` is one raw cuBLAS ``sgemm`` / ``dgemm`` on CuPy's handle (CuPy's cuBLAS
wrappers bind the current stream on every call; no CuPy array is made) and ``launch`` one
``RawKernel`` call; neither synchronises. The cuBLAS argument mapping is a pure function,
:func:`gemm_arguments`, and tests/test_cuda_kernels.py runs ``_gemm`` through the driver with
a column-major BLAS on the host. What the CPU tests cannot run: cuBLAS and the RawKernel
launch themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import nvrtc, sources
from .ops import Ops

OP_N, OP_T = 0, 1            # cublasOperation_t


@dataclass(frozen=True)
class Operand:
    """A 2-D matrix in memory: address of element [0, 0], shape, strides in elements."""

    ptr: int
    rows: int
    cols: int
    row_stride: int
    col_stride: int
    itemsize: int

    def row(self, k: int) -> int:
        return self.ptr + k * self.row_stride * self.itemsize


def _storage(m: Operand) -> tuple[bool, int]:
    """(row-major?, leading dimension) of a matrix whose rows or columns are contiguous."""
    if m.col_stride == 1:
        return True, max(m.row_stride, m.cols, 1)
    if m.row_stride == 1:
        return False, max(m.col_stride, m.rows, 1)
    raise ValueError(f"gemm: a matrix with strides ({m.row_stride}, {m.col_stride}) has neither contiguous rows "
                     "nor contiguous columns")


def gemm_arguments(out: Operand, out_row: int, a: Operand, a_row: int, b: Operand, rows: int,
                   transpose_b: bool) -> tuple:
    """cuBLAS (column-major) arguments for the row-major product of :meth:`Ops.gemm`:
    ``(op_x, op_y, m, n, k, x_ptr, ldx, y_ptr, ldy, c_ptr, ldc)`` for C = op(X) op(Y).

    Row-major C (rows, n) = A (rows, k) @ B' is column-major C^T = B'^T A^T: X is B'^T
    (n, k), Y is A^T (k, rows). A row-major matrix's memory read column-major is its transpose.
    """
    out_row_major, ldc = _storage(out)
    if not out_row_major:
        raise ValueError("gemm: out must have contiguous rows")
    n = b.rows if transpose_b else b.cols
    k = a.cols
    b_row_major, ldb = _storage(b)
    a_row_major, lda = _storage(a)
    # X = B'^T. Stored B (k, n), B' = B: row-major memory is B^T -> N; column-major is B -> T.
    # transpose_b: stored S (n, k), B' = S^T, X = S: row-major memory is S^T -> T; column-major -> N.
    op_x = (OP_T if b_row_major else OP_N) if transpose_b else (OP_N if b_row_major else OP_T)
    op_y = OP_N if a_row_major else OP_T
    return (op_x, op_y, n, rows, k, b.ptr, ldb, a.row(a_row), lda, out.row(out_row), ldc)


def kernel_arguments(params, args, real) -> tuple:
    """RawKernel arguments for ``args`` in the types the kernel declares: ints as int32 (CuPy
    would pass a Python int as 8 bytes), the unit's float type, float64 for ``double``, arrays
    as they are (CuPy passes their data pointers), and None as a null pointer (8 zero bytes:
    older CuPy releases have no null of their own)."""
    converted = []
    for param, value in zip(params, args):
        if param.kind == "pointer":
            converted.append(np.uint64(0) if value is None else value)
        elif param.kind == "int":
            converted.append(np.int32(value))
        else:
            converted.append((real if param.kind == "real" else np.float64)(value))
    return tuple(converted)


def operand(array) -> Operand:
    """The Operand of a 2-D CuPy (or numpy) array."""
    itemsize = array.itemsize
    strides = array.strides
    ptr = array.data.ptr if hasattr(array.data, "ptr") else array.ctypes.data
    return Operand(ptr, array.shape[0], array.shape[1], strides[0] // itemsize, strides[1] // itemsize, itemsize)


class CupyOps(Ops):
    """:class:`.ops.Ops` on the current CUDA device (CuPy arrays)."""

    def __init__(self, dtype: str):
        super().__init__(dtype)
        import cupy
        from cupy_backends.cuda.libs import cublas

        self._cupy, self._cublas = cupy, cublas
        self._np_dtype = np.dtype(dtype)
        module = cupy.RawModule(code=sources.translation_unit(dtype), options=nvrtc.OPTIONS)
        self._functions = {name: module.get_function(name) for name in self.signatures}
        self._gemm_fn = cublas.sgemm if dtype == "float32" else cublas.dgemm
        # Host pointer mode (cuBLAS' default, and what CuPy restores after its own calls).
        self._one, self._zero = np.ones(1, self._np_dtype), np.zeros(1, self._np_dtype)

    # -- memory ------------------------------------------------------------------------
    def empty(self, shape, dtype=None):
        return self._cupy.empty(shape, dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        return self._cupy.zeros(shape, dtype or self.dtype)

    def copy(self, x):
        return self._cupy.array(x, order="C")

    def contiguous(self, x):
        return self._cupy.ascontiguousarray(x)

    def reshape(self, x, shape):
        return self._cupy.reshape(x, shape)

    def stack(self, arrays):
        return self._cupy.stack(arrays)

    def asarray(self, host):
        return self._cupy.asarray(host, dtype=host.dtype if host.dtype == bool else self.dtype)

    def sum_rows(self, x):
        return self._cupy.sum(self._cupy.reshape(x, (-1, x.shape[-1])), axis=0)

    # -- the two launches ------------------------------------------------------------------
    def matrix(self, array):
        return operand(array)

    def _gemm(self, out, out_row, a, a_row, b, rows, transpose_b, accumulate):
        op_x, op_y, m, n, k, x, ldx, y, ldy, c, ldc = gemm_arguments(out, out_row, a, a_row, b, rows, transpose_b)
        handle = self._cupy.cuda.device.get_cublas_handle()       # bound to the current stream
        beta = self._one if accumulate else self._zero
        self._gemm_fn(handle, op_x, op_y, m, n, k, self._one.ctypes.data, x, ldx, y, ldy, beta.ctypes.data, c, ldc)

    def _launch(self, name, grid, block, args):
        self._functions[name]((grid,), (block,), kernel_arguments(self.signatures[name], args, self._np_dtype.type))


@lru_cache(maxsize=None)
def _ops(dtype: str, device_id: int) -> CupyOps:
    return CupyOps(dtype)


def cupy_ops(dtype: str) -> CupyOps:
    """The CupyOps of ``dtype`` on the current CUDA device (built once per device)."""
    import cupy

    return _ops(dtype, cupy.cuda.Device().id)
