"""Which backends get which fast paths.

A fast path overrides a named, portable reference function; ``Backend.kernel(name,
reference)`` returns the override when one is registered. Only overrides tested against
their reference (tests/test_fast_paths.py) are registered; CuPy and array_api_strict use
the portable references.
"""
from __future__ import annotations


def register_fast_kernels(backend) -> None:
    """Attach this backend's tested overrides to ``backend.kernels``."""
    if backend.name == "numpy":
        from . import numpy_kernels

        backend.kernels.update({
            "scan_forward": numpy_kernels.scan_forward,
            "scan_backward": numpy_kernels.scan_backward,
            "prepare_weight": numpy_kernels.prepare_weight,
            "adam_update": numpy_kernels.adam_update,
            "embedding_backward": numpy_kernels.embedding_backward,
        })
