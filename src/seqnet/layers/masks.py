"""Valid lengths of a padded batch and the masks made from them.

A batch of B sequences padded to T steps comes with ``lengths`` (B,) integers in 1..T;
step t of row b is valid when t < lengths[b] (padding is at the end, as with
``pack_padded_sequence``). Lengths are read to the host (from any backend's array, a numpy
array or a list) by :func:`check_lengths`, everywhere lengths enter: masks are built there
and copied once. A loss's ``mask`` (True where a target counts) is checked by :func:`check_mask`.
"""
from __future__ import annotations

import numpy as np

from ..backend.registry import _array_library
from ..backend import check_array, to_numpy
from ..errors import ConfigError, DTypeError, ShapeError


def check_lengths(lengths, batch: int, steps: int | None, *, name: str = "lengths", steps_name: str = "T") -> np.ndarray:
    """``lengths`` (None: every row full) as a host int64 array (B,) with values in 1..T
    (``steps`` None: any length >= 1, for a sequence whose length is not known yet). Any
    backend's array (copied to the host), a numpy array or a list; errors name ``name`` and
    call the step count ``steps_name`` (S for a source)."""
    if lengths is None:
        if steps is None:
            raise ConfigError(f"{name}: expected one length per row")
        return np.full(batch, steps, dtype=np.int64)
    try:
        host = to_numpy(lengths) if _array_library(lengths) is not None else np.asarray(lengths)
    except (TypeError, ValueError) as err:
        raise DTypeError(f"{name}: expected a sequence of ints, received {type(lengths).__name__}") from err
    if host.dtype.kind not in "iu":
        raise DTypeError(f"{name}: expected integers, received dtype {host.dtype}")
    if host.shape != (batch,):
        raise ShapeError(f"{name}: expected one length per batch row, shape ({batch},), received shape {host.shape}")
    bad = [int(v) for v in host if not 1 <= v <= (steps or v)]
    if bad:
        allowed = f"lie in 1..{steps} ({steps_name})" if steps else "be >= 1"
        raise ConfigError(f"{name}: every length must {allowed}, received {bad}")
    return host.astype(np.int64)


def check_steps_and_rows(name: str, shape: tuple, what: str = "") -> None:
    """ShapeError naming ``name`` unless a time-major batch of ``shape`` (T, B, ...) has at least
    one step and one row (``what``: how the shape reads, e.g. " (T, B) token ids")."""
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise ShapeError(f"{name}: expected at least one timestep and one batch row{what}, received shape {tuple(shape)}")


def check_mask(backend, mask, shape: tuple, name: str = "mask", of: str = "the targets"):
    """``mask`` (None: every position counts) must be a bool array of ``backend`` with ``shape``
    (that of ``of``): True where a position counts, False at padding."""
    if mask is None:
        return None
    mask = check_array(backend, mask, name, dtype="bool")
    if tuple(mask.shape) != tuple(shape):
        raise ShapeError(f"{name}: expected a bool array of the shape of {of} {tuple(shape)}, "
                         f"received shape {tuple(mask.shape)}")
    return mask


def step_mask(backend, lengths: np.ndarray, steps: int):
    """(T, B) bool array on ``backend``: True where t < lengths[b]."""
    return backend.asarray(np.arange(steps)[:, None] < lengths[None, :], "bool")


def boundary_masks(backend, lengths: np.ndarray, steps: int):
    """((T, B) bool, True at each row's last valid step t = L_b - 1; (T, B) bool, True at t = 0)."""
    t = np.arange(steps)[:, None]
    return (backend.asarray(t == lengths[None, :] - 1, "bool"),
            backend.asarray(np.repeat(t == 0, lengths.shape[0], axis=1), "bool"))
