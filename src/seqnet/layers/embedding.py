"""Embedding lookup: ids (...) -> vectors (..., E)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from ..backend import check_array
from ..errors import ConfigError, DTypeError, ShapeError, check_positive_int
from ..random_state import check_seed
from .base import BackpropOnce, Layer
from .masks import check_steps_and_rows


def check_token_ids(backend, ids, name: str, vocab_size: int, *, ndim: int | None = None, mask=None,
                    what: str = "token ids", size: str = "the vocabulary size"):
    """``ids`` must be an integer array of ``backend`` with values in [0, vocab_size); returned
    with an index dtype every backend takes (int8, int16, uint8 ... become int64).

    ``ndim`` 2 is a time-major batch (T, B): it needs one step and one row. ``mask`` (a
    checked bool array of ids' shape): only ids where it is True are range-checked.
    ``what`` names the ids ("class ids") and ``size`` their bound ("num_classes") in errors.
    The range check reads one boolean back from the device (one synchronisation per call).
    """
    ids = check_array(backend, ids, name, ndim=ndim)
    dtype = backend.dtype_name(ids.dtype)
    if "int" not in dtype:
        raise DTypeError(f"{name}: expected an integer array of {what}, received dtype {dtype}")
    if ndim == 2:
        check_steps_and_rows(name, tuple(ids.shape), f" (T, B) of {what}")
    xp = backend.xp
    if dtype not in ("int32", "int64"):     # compared as int64: vocab_size may not fit int8, uint8 ...
        ids = xp.astype(ids, xp.int64)
    bad = (ids < 0) | (ids >= vocab_size)
    if mask is not None:
        bad = bad & mask
    if bool(xp.any(bad)):
        read = ids if mask is None else xp.where(mask, ids, xp.max(ids))        # masked ids do not lower the minimum
        low = int(xp.min(read))
        high = int(xp.max(ids if mask is None else xp.where(mask, ids, xp.min(ids))))
        where = "" if mask is None else " where mask is True"
        raise ConfigError(f"{name}: expected {what} in [0, {vocab_size}) ({size} is {vocab_size}), "
                          f"received values in [{low}, {high}]{where}")
    return ids


class Embedding(Layer):
    """A learned table ``weight`` (V, E), initialised N(0, 1) as torch.nn.Embedding."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        self.num_embeddings = check_positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        rng = np.random.default_rng(check_seed(seed))
        self._init_params({"weight": rng.standard_normal((self.num_embeddings, self.embedding_dim))})

    @property
    def weight(self):
        """The table's Parameter (share it to tie another layer's weight to it)."""
        return self._params["weight"]

    def check_ids(self, ids, name: str = "ids"):
        """ids must be an integer array of this backend, at least 1-D, with values in [0, V)."""
        ids = check_token_ids(self.backend, ids, name, self.num_embeddings)
        if ids.ndim < 1:
            raise ShapeError(f"{name}: expected at least 1-D token ids, received shape {tuple(ids.shape)}")
        return ids

    def __call__(self, ids):
        """ids (...) -> (..., E)."""
        return self.forward(ids)[0]

    def forward(self, ids):
        """Returns (vectors (..., E), backprop(d_vectors) -> None, accumulating ``weight``'s gradient)."""
        xp = self.backend.xp
        ids = self.check_ids(ids)
        flat = xp.reshape(ids, (-1,))
        weight = self.weight
        out_shape = tuple(ids.shape) + (self.embedding_dim,)
        out = xp.reshape(xp.take(weight.value, flat, axis=0), out_shape)
        guard = BackpropOnce("Embedding backprop")

        def backprop(d_out):
            d_out = guard.accept(self.backend, d_out, "d_out", out_shape, self.dtype_name, of="the output")
            d_flat = xp.reshape(d_out, (-1, self.embedding_dim))
            sums = kernels.kernel(self.backend, "embedding_backward")(flat, d_flat, self.num_embeddings, xp=xp)
            weight.grad = weight.grad + sums

        return out, backprop
