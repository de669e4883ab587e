"""Moving arrays between backends and checking where an array lives."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendMismatchError, ConfigError, DTypeError, ShapeError
from .registry import Backend, _array_library, _dtype_to_name, describe_array


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy copy of ``x`` (C-contiguous), whichever backend or device it lives on."""
    if type(x) is np.ndarray:
        return x.copy()
    lib = _array_library(x)
    if lib is None and (x is None or isinstance(x, (str, bytes, dict))):
        raise ConfigError(f"x: expected an array (or a number, or a list of numbers), received {type(x).__name__}")
    if lib == "numpy":
        return np.array(x, copy=True, order="C")
    if lib == "torch":
        return x.detach().cpu().numpy().copy()
    if lib == "cupy":
        return np.ascontiguousarray(x.get())
    if lib == "array_api_strict":
        import array_api_strict

        return np.array(x.to_device(array_api_strict.Device("CPU_DEVICE")), copy=True, order="C")
    return np.array(x, copy=True, order="C")


def host_int64(values: Any, name: str = "ids") -> np.ndarray:
    """Host integers (a list, a numpy integer array) as int64, unchanged in value: DTypeError
    naming ``name`` for floats (1.7 is no id), ConfigError for values int64 cannot hold."""
    host = np.asarray(values)
    if host.dtype.kind not in "iu" and not (host.size == 0 and host.dtype.kind == "f"):
        raise DTypeError(f"{name}: expected host integer ids, received dtype {host.dtype}")
    if host.dtype.kind == "u" and host.size and host.max() > np.iinfo(np.int64).max:
        raise ConfigError(f"{name}: expected ids below 2**63 (int64), received {host.max()}")
    return host.astype(np.int64)


def check_array(backend: Backend, x: Any, name: str, *, ndim: int | None = None, dtype: Any = None):
    """Raise a clear error unless ``x`` is a ``backend`` array with ``ndim`` dims and float ``dtype``."""
    if not backend.owns(x):
        raise BackendMismatchError(
            f"{name}: expected a {backend.name} array on device {backend.device!s}, received "
            f"{describe_array(x)}; move data explicitly (seqnet.to_numpy, layer.to(...)) - seqnet never copies silently"
        )
    if ndim is not None and x.ndim != ndim:
        raise ShapeError(f"{name}: expected a {ndim}-D array, received shape {tuple(x.shape)}")
    if dtype is not None:
        want, got = _dtype_to_name(dtype), _dtype_to_name(x.dtype)
        if want != got:
            kind = "an integer" if got.startswith(("int", "uint")) else "a"
            raise DTypeError(f"{name}: expected dtype {want}, received {kind} {got} array")
    return x
