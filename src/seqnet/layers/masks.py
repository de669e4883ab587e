"""Valid lengths of a padded batch and the masks made from them.

A batch of B sequences padded to T steps comes with ``lengths`` (B,) host integers in
1..T; step t of row b is valid when t < lengths[b] (padding is at the end, as with
``pack_padded_sequence``). Lengths stay on the host: masks are built there and copied once.
"""
from __future__ import annotations

import numpy as np

from ..backend.registry import _array_library
from ..backend import to_numpy
from ..errors import ConfigError, DTypeError, ShapeError


def check_lengths(lengths, batch: int, steps: int | None) -> np.ndarray:
    """``lengths`` (None: every row full) as a host int64 array (B,) with values in 1..T
    (``steps`` None: any length >= 1, for a sequence whose length is not known yet)."""
    if lengths is None:
        if steps is None:
            raise ConfigError("lengths: expected one length per row")
        return np.full(batch, steps, dtype=np.int64)
    try:
        host = to_numpy(lengths) if _array_library(lengths) is not None else np.asarray(lengths)
    except (TypeError, ValueError) as err:
        raise DTypeError(f"lengths: expected a sequence of ints, received {type(lengths).__name__}") from err
    if host.dtype.kind not in "iu":
        raise DTypeError(f"lengths: expected integers, received dtype {host.dtype}")
    if host.shape != (batch,):
        raise ShapeError(f"lengths: expected one length per batch row, shape ({batch},), received shape {host.shape}")
    bad = [int(v) for v in host if not 1 <= v <= (steps or v)]
    if bad:
        allowed = f"lie in 1..{steps} (T)" if steps else "be >= 1"
        raise ConfigError(f"lengths: every length must {allowed}, received {bad}")
    return host.astype(np.int64)


def step_mask(backend, lengths: np.ndarray, steps: int):
    """(T, B) bool array on ``backend``: True where t < lengths[b]."""
    return backend.asarray(np.arange(steps)[:, None] < lengths[None, :], "bool")


def boundary_masks(backend, lengths: np.ndarray, steps: int):
    """((T, B) bool, True at each row's last valid step t = L_b - 1; (T, B) bool, True at t = 0)."""
    t = np.arange(steps)[:, None]
    return (backend.asarray(t == lengths[None, :] - 1, "bool"),
            backend.asarray(np.repeat(t == 0, lengths.shape[0], axis=1), "bool"))
