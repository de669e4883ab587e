"""Shared pieces of the test oracles: central differences and the recurrent test matrix."""
from __future__ import annotations

import numpy as np
import pytest

EPS = 1e-6


def central_differences(f, array: np.ndarray, entries=None, eps: float = EPS) -> np.ndarray:
    """(f(a + eps e_i) - f(a - eps e_i)) / 2 eps at ``entries`` of ``array`` (all when None), 0 elsewhere.

    ``array`` is perturbed in place and restored; ``f`` maps it to a Python float.
    """
    grad = np.zeros_like(array)
    indices = list(np.ndindex(array.shape)) if entries is None else entries
    for idx in indices:
        saved = array[idx]
        array[idx] = saved + eps
        up = f(array)
        array[idx] = saved - eps
        down = f(array)
        array[idx] = saved
        grad[idx] = (up - down) / (2 * eps)
    return grad


def recurrent_matrix(cells) -> list:
    """pytest params (cell, num_layers, bidirectional, lengths) over 1-2 layers, both directions, with/without lengths."""
    return [
        pytest.param(cell, layers, bidir, lengths,
                     id=f"{cell}-L{layers}-{'bi' if bidir else 'uni'}-{'lengths' if lengths else 'full'}")
        for cell in cells for layers in (1, 2) for bidir in (False, True) for lengths in (False, True)
    ]
