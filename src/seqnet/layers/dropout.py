"""Inverted dropout with masks drawn on the host, so every backend drops the same units for a seed."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def check_dropout(p: float, name: str = "dropout") -> float:
    if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
        raise ConfigError(f"{name}: expected a probability in [0, 1), received {p!r}")
    return float(p)


def stack_dropout(p: float, num_layers) -> float:
    """The ``dropout`` a model hands its recurrent stack of ``num_layers``: ``p`` between stacked
    layers, 0 for one layer (the model drops its own inputs and outputs; a one-layer stack has
    nothing between layers, and a recurrent layer warns when given dropout it cannot use)."""
    p = check_dropout(p)
    return p if isinstance(num_layers, int) and num_layers > 1 else 0.0


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, backend, dtype_name: str):
    """A (shape) array of 0 and 1/(1-p): multiply activations by it, and their gradients too."""
    keep = rng.random(shape) >= p
    return backend.asarray(keep / (1.0 - p), dtype_name)


def _unchanged(d):
    return d


def dropout(x, p: float, rng: np.random.Generator, backend, dtype_name: str):
    """Inverted dropout of ``x``: returns (x * mask, backward) with backward(d) = d * mask, the
    mask (0 or 1/(1-p)) drawn now from ``rng``. With p == 0 nothing is drawn: (x, identity)."""
    if not p:
        return x, _unchanged
    mask = dropout_mask(rng, tuple(x.shape), p, backend, dtype_name)
    return x * mask, lambda d: d * mask
