"""Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_, without host syncs.

Both take a flat dict of gradients (``model.param_grads``) and write the clipped arrays
back into it. The clipping factor is computed on the device: no ``float()`` of a device
array, so a training step on a GPU never waits for the norm. ``clip_grad_norm`` returns
the total norm as a 0-d device array; the caller decides when (if ever) to read it.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

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


def _nonempty(grads: Any) -> None:
    if not isinstance(grads, Mapping) or not grads:
        raise ConfigError(f"grads: expected a non-empty dict of name -> array, received {grads!r}")


def clip_grad_norm(grads: dict[str, Any], max_norm: float, *, xp) -> Any:
    """Rescale all gradients together so that their joint 2-norm is at most ``max_norm``.

    norm = sqrt(sum_i ||g_i||^2);  g_i <- g_i * min(max_norm / (norm + 1e-6), 1).
    Returns ``norm`` (0-d array, before clipping) on the gradients' device.
    """
    max_norm = _positive("max_norm", max_norm, allow_zero=False)
    _nonempty(grads)
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


def clip_grad_value(grads: dict[str, Any], clip_value: float, *, xp) -> None:
    """Clamp every gradient element into [-clip_value, clip_value]."""
    clip_value = _positive("clip_value", clip_value, allow_zero=True)
    _nonempty(grads)
    for name, g in grads.items():
        grads[name] = xp.clip(g, min=-clip_value, max=clip_value)
