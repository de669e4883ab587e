"""The CUDA sources of the fused kernels, as one translation unit per float type.

The same text is compiled three ways: by CuPy on a GPU (:mod:`.device`), by NVRTC to PTX
without a GPU (:mod:`.nvrtc`, the CI compile check) and, with ``cuda/host_prelude.h`` in
front, by the system C++ compiler for the CPU (:mod:`.host`, the CI check of the kernels'
math). ``#line`` directives keep compiler messages pointing at the original files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent / "cuda"
# The translation unit, in order: per-element math, block reductions, kernels.
SOURCE_FILES = ("cells.cuh", "reduce.cuh", "scan.cu", "sample.cu")
REAL_TYPES = {"float32": "float", "float64": "double"}

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``kind`` is "pointer", "int", "real" (the unit's float type) or "double"."""

    name: str
    kind: str
    ctype: str        # the C type without the name, e.g. "const real*"


def translation_unit(dtype: str) -> str:
    """The kernels' source for ``dtype`` ("float32" or "float64"): every file in SOURCE_FILES,
    after ``#define SEQNET_REAL float|double``."""
    if dtype not in REAL_TYPES:
        raise ValueError(f"dtype: expected one of {tuple(REAL_TYPES)}, received {dtype!r}")
    parts = [f"#define SEQNET_REAL {REAL_TYPES[dtype]}\n"]
    for name in SOURCE_FILES:
        parts.append(f'#line 1 "{name}"\n{(CUDA_DIR / name).read_text()}\n')
    return "".join(parts)


def parse_kernels(text: str) -> dict[str, tuple[tuple[Param, ...], bool]]:
    """{kernel name: (its parameters, whether its body synchronises the block)} for every
    ``extern "C" __global__`` definition in ``text``. A body that calls ``__syncthreads`` or a
    block sum of reduce.cuh synchronises; the host build runs such kernels' threads as fibers."""
    matches = list(_KERNEL.finditer(text))
    found = {}
    for k, match in enumerate(matches):
        body = text[match.end():matches[k + 1].start() if k + 1 < len(matches) else len(text)]
        params = tuple(_param(p) for p in match.group(2).split(","))
        found[match.group(1)] = (params, "__syncthreads" in body or "block_sum" in body)
    return found


@lru_cache(maxsize=None)
def kernel_signatures() -> dict[str, tuple[Param, ...]]:
    """{kernel name: its parameters} for every kernel of the sources."""
    return {name: params for name, (params, _) in parse_kernels(translation_unit("float32")).items()}


def _param(text: str) -> Param:
    words = text.replace("*", " * ").split()
    name = words[-1]
    ctype = " ".join(w for w in words[:-1] if w != "__restrict__").replace(" *", "*")
    if "*" in ctype:
        kind = "pointer"
    elif ctype in ("int", "real", "double"):
        kind = ctype
    else:
        raise ValueError(f"kernel parameter {text.strip()!r}: expected a pointer, int, real or double")
    return Param(name, kind, ctype)
