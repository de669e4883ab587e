"""Choosing a backend: which array library (and which device) seqnet computes with.

A :class:`Backend` bundles an array-API namespace ``xp`` with a device. The current
backend lives in a ContextVar; layers capture it when they are built, so changing the
backend later never moves an existing layer behind its back (use ``layer.to(...)``).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import BackendError, ConfigError, DTypeError

BACKEND_NAMES = ("numpy", "cupy", "torch", "array_api_strict")
FLOAT_DTYPES = ("float32", "float64")


@dataclass(eq=False)
class Backend:
    """An array namespace ``xp`` and the device that every array of this backend lives on.

    ``fast_paths``: whether :mod:`seqnet.kernels` may run this backend's overrides of the
    portable reference kernels (False runs the references, as tests and op counts need).
    """

    name: str
    xp: Any
    device: Any
    fast_paths: bool = True

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r})"

    # -- dtypes ---------------------------------------------------------------------
    def float_dtype(self, dtype: Any = None):
        """The backend's float dtype for ``dtype`` (None -> float32; "float64", np.float64, xp.float64 ...)."""
        return getattr(self.xp, float_dtype_name(dtype))

    def dtype_name(self, dtype: Any) -> str:
        return _dtype_to_name(dtype)

    @property
    def supports_float64(self) -> bool:
        """Whether this backend's device holds float64 arrays (array_api_strict's "no_float64" does not)."""
        info = getattr(self.xp, "__array_namespace_info__", None)
        if info is None:
            return True
        try:
            return "float64" in info().dtypes(device=self.device)
        except Exception:  # noqa: BLE001 - a namespace without device-aware dtype info
            return True

    # -- arrays ---------------------------------------------------------------------
    def asarray(self, values: Any, dtype: Any = None):
        """Copy host data (numpy array, list, scalar) onto this backend and device."""
        if dtype is not None and not isinstance(dtype, str):
            dtype = _dtype_to_name(dtype)
        if self.name == "numpy":                # the hot path of token-by-token generation
            return np.asarray(values, dtype=dtype)
        xp_dtype = getattr(self.xp, dtype) if isinstance(dtype, str) else None
        values = np.asarray(values)
        if self.name == "array_api_strict":
            # array_api_strict only accepts numpy input on its CPU device; go there first.
            arr = self.xp.asarray(values, dtype=xp_dtype)
            return arr if self.device == arr.device else arr.to_device(self.device)
        if self.name == "cupy":
            with self.activate():
                return self.xp.asarray(values, dtype=xp_dtype)
        return self.xp.asarray(values, dtype=xp_dtype, device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: Any):
        return self.xp.zeros(shape, dtype=dtype, device=self.device)

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend on this backend's device."""
        return _array_library(x) == self.name and _same_device(_device_of(x), self.device)

    def activate(self) -> contextlib.AbstractContextManager:
        """Context in which kernels run on this backend's device (CuPy's current device)."""
        if self.name == "cupy":
            return self.device
        return contextlib.nullcontext()


def float_dtype_name(dtype: Any) -> str:
    """"float32" or "float64" for any spelling of those dtypes; None means float32."""
    if dtype is None:
        return "float32"
    name = _dtype_to_name(dtype)
    if name not in FLOAT_DTYPES:
        raise DTypeError(f"dtype: expected one of {FLOAT_DTYPES}, received {dtype!r}")
    return name


def _dtype_to_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        return dtype
    try:
        return np.dtype(dtype).name  # numpy dtypes and scalar types
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]  # torch.float32, array_api_strict.float32


# -- which library / device does an array belong to ------------------------------------
def _array_library(x: Any) -> str | None:
    import array_api_compat as compat

    if compat.is_numpy_array(x):
        return "numpy"
    if compat.is_torch_array(x):
        return "torch"
    if compat.is_cupy_array(x):
        return "cupy"
    mod = type(x).__module__
    if mod.startswith("array_api_strict"):
        return "array_api_strict"
    return None


def _device_of(x: Any) -> Any:
    import array_api_compat as compat

    return compat.device(x)


def _same_device(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return str(a) == str(b)


def describe_array(x: Any) -> str:
    """A short human description of what was received: library, device, dtype, shape."""
    lib = _array_library(x)
    if lib is None:
        return f"an object of type {type(x).__module__}.{type(x).__qualname__}"
    return f"a {lib} array on device {_device_of(x)!s} (dtype {_dtype_to_name(x.dtype)}, shape {tuple(x.shape)})"


# -- constructing backends -------------------------------------------------------------
def _numpy_backend(device: Any) -> Backend:
    import array_api_compat.numpy as xp

    if device not in (None, "cpu"):
        raise ConfigError(f"device: the numpy backend has only device 'cpu', received {device!r}")
    return Backend("numpy", xp, "cpu")


def _strict_backend(device: Any) -> Backend:
    import array_api_strict as xp

    if device is None:
        dev = xp.asarray(0.0).device
    elif isinstance(device, xp.Device):
        dev = device
    else:
        try:
            dev = xp.Device(str(device))
        except ValueError as err:
            raise ConfigError(f"device: expected an array_api_strict device name such as 'CPU_DEVICE' or 'device1', received {device!r}") from err
    return Backend("array_api_strict", xp, dev)


def _torch_backend(device: Any) -> Backend:
    try:
        import torch
    except ImportError as err:
        raise BackendError("backend 'torch' needs PyTorch: pip install 'seqnet[torch]' (torch==2.13.0, a CPU wheel)") from err
    import array_api_compat.torch as xp

    from .threads import apply_to_torch

    apply_to_torch()
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device: expected a torch device such as 'cpu' or 'cuda:1', received {device!r}") from err
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected a torch device that holds data, 'cpu' or 'cuda[:N]', received {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device: torch device {dev} requested but torch.cuda.is_available() is False")
    return Backend("torch", xp, dev)


def _cupy_backend(device: Any) -> Backend:
    try:
        import cupy
    except ImportError as err:
        raise BackendError(
            "backend 'cupy' needs CuPy, which is not installed: pip install 'seqnet[cuda12]' "
            "(cupy-cuda12x) or 'seqnet[cuda13]' (cupy-cuda13x), matching your CUDA driver"
        ) from err
    runtime = cupy.cuda.runtime

    def version(fn: Callable[[], int]) -> str:
        try:
            v = int(fn())
        except Exception:  # noqa: BLE001 - only used inside an error message
            return "unknown"
        return f"{v // 1000}.{(v % 1000) // 10}" if v else "none"

    try:
        count = runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError, a RuntimeError subclass
        raise BackendError(
            f"backend 'cupy': CuPy {cupy.__version__} is installed but no usable CUDA device was found ({err}); "
            f"CUDA driver version {version(runtime.driverGetVersion)}, CuPy's CUDA runtime version "
            f"{version(runtime.runtimeGetVersion)}. Install an NVIDIA driver that supports this runtime, "
            "or use use_backend('numpy')."
        ) from err
    if count == 0:
        raise BackendError("backend 'cupy': CUDA reports 0 devices; use use_backend('numpy') on this machine")
    index = 0 if device is None else getattr(device, "id", device)
    if not isinstance(index, int) or not 0 <= index < count:
        raise ConfigError(f"device: expected a CUDA device index in 0..{count - 1}, received {device!r}")
    import array_api_compat.cupy as xp

    return Backend("cupy", xp, cupy.cuda.Device(index))


_FACTORIES = {
    "numpy": _numpy_backend,
    "array_api_strict": _strict_backend,
    "torch": _torch_backend,
    "cupy": _cupy_backend,
}


def make_backend(name: str | Backend, device: Any = None) -> Backend:
    """Build the backend called ``name`` on ``device`` (checks availability now)."""
    if isinstance(name, Backend):
        return name if device is None else make_backend(name.name, device)
    if not isinstance(name, str) or name not in _FACTORIES:         # a list would be unhashable
        raise ConfigError(f"backend: expected one of {BACKEND_NAMES}, received {name!r}")
    return _FACTORIES[name](device)


_current: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("seqnet_backend", default=None)


def get_backend() -> Backend:
    """The current backend (numpy on the CPU unless changed)."""
    current = _current.get()
    if current is None:
        current = make_backend("numpy")
        _current.set(current)
    return current


def use_backend(name: str | Backend, device: Any = None) -> Backend:
    """Make ``name`` (on ``device``) the current backend for layers built from now on."""
    backend = make_backend(name, device)
    _current.set(backend)
    return backend


@contextlib.contextmanager
def backend(name: str | Backend, device: Any = None) -> Iterator[Backend]:
    """``with seqnet.backend("torch"): ...`` — the previous backend is restored on exit."""
    token = _current.set(make_backend(name, device))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
