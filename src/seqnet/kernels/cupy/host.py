"""The fused kernels compiled for the CPU: the CUDA sources' own text, built as host C++.

``cuda/host_prelude.h`` defines the CUDA keywords and built-ins the kernels use for the
host; ``cuda/host_launch.h`` runs a grid (blocks in turn, each block's threads as fibers that
meet at every ``__syncthreads()``). Each kernel gets an ``extern "C"`` launcher generated from
its signature. :class:`HostOps` runs the CuPy path's driver (:mod:`.driver`) on numpy arrays
with numpy GEMMs and these kernels, so tests check the kernels' math, the driver's buffer and
step logic and the launch counts on any machine with a C++ compiler. What this cannot check:
cuBLAS itself, CuPy's launch mechanics, data races between threads of a block outside
barriers (threads run in turn here), and GPU rounding (FMA contraction; CuPy compiles with
-ftz=true, which flushes float32 denormals to zero).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import sources
from .driver import scan_kernels
from .ops import Ops
from .sampling import make_next_tokens

CXX_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-Wall", "-Werror", "-Wno-unused-function")


class HostBuildError(RuntimeError):
    """The kernel sources did not compile as host C++; the message holds the compiler's output."""


def host_source(unit: str) -> str:
    """The host translation unit around a kernels' unit (:func:`sources.translation_unit`): the
    prelude, the unit, the launcher, and one ``extern "C"`` launcher per kernel,
    ``int seqnet_launch_<name>(grid, block, void** argv)`` (argv[k] points at argument k)."""
    prelude = (sources.CUDA_DIR / "host_prelude.h").read_text()
    launch = (sources.CUDA_DIR / "host_launch.h").read_text()
    wrappers = []
    for name, (params, barriers) in sources.parse_kernels(unit).items():
        args = ", ".join(f"*({p.ctype}*)argv[{k}]" for k, p in enumerate(params))
        wrappers.append(f'extern "C" int seqnet_launch_{name}(int grid, int block, void** argv) {{\n'
                        f"    return seqnet_host::launch(grid, block, {'true' if barriers else 'false'}, "
                        f"[&] {{ {name}({args}); }});\n}}\n")
    return (f'#line 1 "host_prelude.h"\n{prelude}\n{unit}\n'
            f'#line 1 "host_launch.h"\n{launch}\n#line 1 "wrappers"\n' + "".join(wrappers))


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@lru_cache(maxsize=None)
def build(unit: str) -> ctypes.CDLL:
    """The host build of a kernels' translation unit, compiled once per text (cached in the
    temporary directory under a hash of the source and flags)."""
    cxx = compiler()
    if cxx is None:
        raise HostBuildError("no C++ compiler found (set CXX, or install g++)")
    text = host_source(unit)
    digest = hashlib.sha256((text + " ".join(CXX_FLAGS) + cxx).encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / "seqnet-host-kernels" / f"{digest}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.with_suffix(f".{os.getpid()}.cpp")           # per process: concurrent builds never share a file
        src.write_text(text)
        partial = out.with_suffix(f".{os.getpid()}.tmp")
        done = subprocess.run([cxx, *CXX_FLAGS, "-x", "c++", str(src), "-o", str(partial)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise HostBuildError(f"{cxx} failed on the kernels:\n{done.stderr}")
        os.replace(partial, out)                 # atomic: a concurrent build never loads half a file
        src.unlink()
    return ctypes.CDLL(str(out))


_SCALARS = {"int": ctypes.c_int, "double": ctypes.c_double}


class HostOps(Ops):
    """Device operations on numpy arrays: numpy GEMMs, and the kernels' host build."""

    def __init__(self, dtype: str, unit: str | None = None):
        """``unit``: the kernels' translation unit to build (default: the sources, for ``dtype``)."""
        super().__init__(dtype)
        unit = sources.translation_unit(dtype) if unit is None else unit
        self.signatures = {name: params for name, (params, _) in sources.parse_kernels(unit).items()}
        lib = build(unit)
        self._real = ctypes.c_float if dtype == "float32" else ctypes.c_double
        self._launchers = {}
        for name in self.signatures:
            fn = getattr(lib, f"seqnet_launch_{name}")
            fn.argtypes, fn.restype = (ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)), ctypes.c_int
            self._launchers[name] = fn

    # -- memory ------------------------------------------------------------------------
    def empty(self, shape, dtype=None):
        return np.empty(shape, dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype or self.dtype)

    def copy(self, x):
        return np.array(x, order="C")

    def contiguous(self, x):
        return np.ascontiguousarray(x)

    def reshape(self, x, shape):
        return np.reshape(x, shape)

    def stack(self, arrays):
        return np.stack(arrays)

    def asarray(self, host):
        return np.array(host, dtype=host.dtype if host.dtype == bool else self.dtype)

    def sum_rows(self, x):
        return np.sum(np.reshape(x, (-1, x.shape[-1])), axis=0)

    # -- the two launches ------------------------------------------------------------------
    def _gemm(self, out, out_row, a, a_row, b, rows, transpose_b, accumulate):
        a_rows = a[a_row:a_row + rows]
        product = a_rows @ (b.T if transpose_b else b)
        target = out[out_row:out_row + rows]
        if accumulate:
            target += product
        else:
            target[...] = product

    def _launch(self, name, grid, block, args):
        keep, argv = [], (ctypes.c_void_p * len(args))()
        for k, (param, value) in enumerate(zip(self.signatures[name], args)):
            if param.kind == "pointer":
                cell = ctypes.c_void_p(0 if value is None else self._pointer(value, param))
            else:
                cell = (self._real if param.kind == "real" else _SCALARS[param.kind])(value)
            keep.append(cell)
            argv[k] = ctypes.cast(ctypes.pointer(cell), ctypes.c_void_p)
        status = self._launchers[name](grid, block, argv)
        if status:
            why = {1: "divergent __syncthreads", 2: "bad launch configuration",
                   3: "__syncthreads in a kernel sources.kernels_with_barriers() does not list"}[status]
            raise RuntimeError(f"kernel {name}: host launch failed: {why}")

    def _pointer(self, array, param):
        """The array's address, after the checks a GPU cannot make: C-contiguous, of the
        element type the kernel parameter declares."""
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous):
            raise TypeError(f"{param.name}: expected a C-contiguous numpy array, received {type(array).__name__}")
        element = param.ctype.replace("const", "").replace("*", "").strip()
        want = {"real": self.dtype, "bool": "bool", "long long": "int64", "double": "float64"}[element]
        if array.dtype != np.dtype(want):
            raise TypeError(f"{param.name}: expected {want} ({param.ctype}), received {array.dtype}")
        return array.ctypes.data


@lru_cache(maxsize=None)
def host_ops(dtype: str) -> HostOps:
    return HostOps(dtype)


# An override table like seqnet.kernels.cupy's, running on numpy through the host build: tests
# point seqnet.kernels.OVERRIDE_MODULES at this module to run layers through the fused loop.
SCAN_KERNELS = scan_kernels(host_ops)
KERNELS = {"next_tokens": make_next_tokens(host_ops)}
