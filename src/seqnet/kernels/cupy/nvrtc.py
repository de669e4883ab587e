"""Compiling the kernel sources to PTX with NVRTC through ctypes: no GPU, no driver, no CuPy.

This is the CI check that every kernel compiles for the GPU architectures the CuPy wheels
target (:data:`ARCHITECTURES`): NVRTC is NVIDIA's runtime compiler, the one CuPy itself uses
on a GPU, and needs neither. It comes with the ``nvidia-cuda-nvrtc-cu12`` wheel (the ``test``
extra), the CUDA 13 ``nvidia-cuda-nvrtc`` wheel, or a CUDA toolkit (``CUDA_PATH``,
``/usr/local/cuda``); ``SEQNET_NVRTC`` may name the library file itself.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from functools import lru_cache

from . import sources

ARCHITECTURES = ("compute_80", "compute_90")       # A100 and H100/H200; PTX runs on later GPUs too
OPTIONS = ("--std=c++14",)              # what seqnet passes to CuPy's RawModule
# ...and what CuPy's NVRTC path adds to them (cupy/cuda/compiler.py), so CI compiles as a GPU does.
CUPY_ADDS = ("-ftz=true", "--device-as-default-execution-space")


class NvrtcError(RuntimeError):
    """A kernel source failed to compile; the message holds NVRTC's log."""


def _candidates() -> list[str]:
    found = []
    if os.environ.get("SEQNET_NVRTC"):
        found.append(os.environ["SEQNET_NVRTC"])
    for base in sys.path:                                    # the pip wheels: nvidia/cuda_nvrtc/lib, nvidia/cu13/lib
        nvidia = os.path.join(base, "nvidia")
        if os.path.isdir(nvidia):
            found += sorted(glob.glob(os.path.join(nvidia, "*", "lib", "libnvrtc.so*")))
    for root in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root:
            found += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    return [f for f in found if "builtins" not in os.path.basename(f)]


@lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """The NVRTC shared library, or NvrtcError saying how to get one."""
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as err:
            tried.append(f"{path} ({err})")
    raise NvrtcError("NVRTC not found: pip install nvidia-cuda-nvrtc-cu12 (or set SEQNET_NVRTC to libnvrtc.so)"
                     + (f"; tried {', '.join(tried)}" if tried else ""))


def version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    library().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_ptx(source: str, name: str, options: tuple[str, ...]) -> tuple[str, str]:
    """Compile ``source`` (file name ``name`` in messages) -> (PTX text, compiler log).
    Raises NvrtcError with the log on an error, and on any warning: a warning in a kernel is
    a bug waiting (an unused result, a narrowing conversion)."""
    lib = library()
    program = ctypes.c_void_p()
    status = lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None)
    if status != 0:
        raise NvrtcError(f"{name}: nvrtcCreateProgram failed with status {status}")
    try:
        encoded = [o.encode() for o in options]
        status = lib.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log_buffer = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log_buffer)
        log = log_buffer.value.decode(errors="replace")
        if status != 0 or "warning" in log:
            raise NvrtcError(f"{name} ({' '.join(options)}): NVRTC status {status}\n{log}")
        lib.nvrtcGetPTXSize(program, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(program, ptx)
        return ptx.value.decode(), log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def compile_all() -> dict[tuple[str, str], str]:
    """Every kernel, for every float type and architecture -> {(dtype, arch): PTX}. Checks that
    each PTX defines every ``extern "C"`` kernel of the sources under its own name."""
    names = sources.kernel_signatures()
    result = {}
    for dtype in sources.REAL_TYPES:
        for arch in ARCHITECTURES:
            ptx, _ = compile_ptx(sources.translation_unit(dtype), f"seqnet_kernels_{dtype}.cu",
                                 OPTIONS + CUPY_ADDS + (f"--gpu-architecture={arch}",))
            missing = [n for n in names if f".entry {n}(" not in ptx]
            if missing:
                raise NvrtcError(f"{dtype} {arch}: PTX lacks the entry points {missing}")
            result[(dtype, arch)] = ptx
    return result
