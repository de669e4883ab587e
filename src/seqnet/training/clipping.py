"""Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_, without host syncs.

Both take a flat dict of gradients (``model.param_grads``) and write the clipped arrays
back into it. The clipping factor is computed on the device: no ``float()`` of a device
array, so a training step on a GPU never waits for the norm. ``clip_grad_norm`` returns
the total norm as a 0-d device array; the caller decides when (if ever) to read it.
The array namespace is the gradients' own (``xp``, optional, must be theirs): every gradient
is a floating-point array of one library and device.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from ..backend.registry import _array_library, _device_of, _dtype_to_name, _same_device, describe_array
from ..errors import BackendMismatchError, ConfigError, DTypeError

__all__ = ["clip_grad_norm", "clip_grad_value"]

# Added to the norm before dividing, as in PyTorch, so all-zero gradients give no 0/0.
NORM_EPS = 1e-6


def _positive(name: str, value: Any, *, allow_zero: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        value = float(value)
        ok = value >= 0.0 if allow_zero else value > 0.0
    if not ok:
        raise ConfigError(f"{name}: expected a real number {'>=' if allow_zero else '>'} 0, received {value!r}")
    return value


def _namespace(grads: Any, xp: Any):
    """The array namespace of ``grads`` (a non-empty dict of floating-point arrays of one library
    and device); ``xp``, when given, must be that library's. Reads types and dtypes only."""
    import array_api_compat

    if not isinstance(grads, Mapping) or not grads:
        raise ConfigError(f"grads: expected a non-empty dict of name -> array, received {grads!r}")
    first_name, first = next(iter(grads.items()))
    library = _array_library(first)
    if library is None:
        raise ConfigError(f"grads[{first_name!r}]: expected an array, received {type(first).__name__}")
    device = _device_of(first)
    namespace = array_api_compat.array_namespace(first)
    if not namespace.isdtype(first.dtype, "real floating"):
        raise DTypeError(f"grads[{first_name!r}]: expected a floating-point gradient, received dtype "
                         f"{_dtype_to_name(first.dtype)}")
    like = (type(first), first.dtype, getattr(first, "device", None))
    for name, g in grads.items():
        if (type(g), getattr(g, "dtype", None), getattr(g, "device", None)) == like:
            continue                                 # as the first: checked (the common, per-step case)
        if _array_library(g) != library or not _same_device(_device_of(g), device):
            raise BackendMismatchError(f"grads[{name!r}]: expected a {library} array on device {device!s} like "
                                       f"grads[{first_name!r}], received {describe_array(g)}")
        if not namespace.isdtype(g.dtype, "real floating"):
            raise DTypeError(f"grads[{name!r}]: expected a floating-point gradient, received dtype "
                             f"{_dtype_to_name(g.dtype)}")
    given = getattr(xp, "__name__", None)
    if xp is not None and xp is not namespace and given not in (library, f"array_api_compat.{library}"):
        raise BackendMismatchError(f"xp: expected the namespace of the gradients ({library}; or leave xp out), "
                                   f"received {given or type(xp).__name__}")
    return namespace


def clip_grad_norm(grads: dict[str, Any], max_norm: float, *, xp=None) -> Any:
    """Rescale all gradients together so that their joint 2-norm is at most ``max_norm``.

    norm = sqrt(sum_i ||g_i||^2);  g_i <- g_i * min(max_norm / (norm + 1e-6), 1).
    Returns ``norm`` (0-d array, before clipping) on the gradients' device.
    """
    max_norm = _positive("max_norm", max_norm, allow_zero=False)
    xp = _namespace(grads, xp)
    # PyTorch's form: the norm of the per-tensor norms (also sums mixed float32/float64 correctly).
    norms = [xp.linalg.vector_norm(g) for g in grads.values()]
    total_sq = norms[0] * norms[0]
    for n in norms[1:]:
        total_sq = total_sq + n * n
    total_norm = xp.asarray(xp.sqrt(total_sq))  # asarray: numpy hands back a scalar, not a 0-d array
    scale = xp.minimum(max_norm / (total_norm + NORM_EPS), 1.0)
    for name, g in grads.items():
        grads[name] = g * xp.astype(scale, g.dtype, copy=False)
    return total_norm


def clip_grad_value(grads: dict[str, Any], clip_value: float, *, xp=None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value]."""
    clip_value = _positive("clip_value", clip_value, allow_zero=True)
    xp = _namespace(grads, xp)
    for name, g in grads.items():
        grads[name] = xp.clip(g, min=-clip_value, max=clip_value)
