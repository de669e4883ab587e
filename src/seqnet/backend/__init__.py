"""Backends: the array namespace and device that seqnet computes with."""
from .arrays import check_array, host_int64, to_numpy
from .registry import (
    BACKEND_NAMES,
    Backend,
    backend,
    describe_array,
    float_dtype_name,
    get_backend,
    make_backend,
    use_backend,
)

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "backend",
    "check_array",
    "host_int64",
    "describe_array",
    "float_dtype_name",
    "get_backend",
    "make_backend",
    "to_numpy",
    "use_backend",
]
