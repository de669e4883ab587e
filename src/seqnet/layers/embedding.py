"""Embedding lookup: ids (T, B) -> vectors (T, B, E)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import check_array
from ..errors import DTypeError, ShapeError, check_positive_int
from .base import Layer

# One-hot chunks of at most this many elements bound the reference backward's memory.
_ONE_HOT_CHUNK = 1 << 22


def embedding_backward(ids, d_out, vocab_size: int, *, xp):
    """dL/dW (V, E) of a lookup ``W[ids]``: rows of ``d_out`` (N, E) summed per id (N,).

    Portable reference: a one-hot (chunk, V) matmul, so repeated ids add up exactly;
    backends override it with a scatter-add (see ``seqnet.backend.fast``).
    """
    n, width = ids.shape[0], d_out.shape[-1]
    vocab = xp.arange(vocab_size, dtype=ids.dtype, device=ids.device)
    chunk = max(1, _ONE_HOT_CHUNK // vocab_size)
    grad = xp.zeros((vocab_size, width), dtype=d_out.dtype, device=d_out.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)              # array_api_strict rejects out-of-bounds slice stops
        one_hot = xp.astype(ids[start:stop, None] == vocab, d_out.dtype)   # (chunk, V)
        grad = grad + xp.matmul(xp.matrix_transpose(one_hot), d_out[start:stop, ...])
    return grad


class Embedding(Layer):
    """A learned table ``weight`` (V, E), initialised N(0, 1) as torch.nn.Embedding."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        self.num_embeddings = check_positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        rng = np.random.default_rng(seed)
        self._init_params({"weight": rng.standard_normal((self.num_embeddings, self.embedding_dim))})

    def check_ids(self, ids, name: str = "ids"):
        """ids must be an integer array of this backend with values in [0, V)."""
        ids = check_array(self.backend, ids, name)
        if "int" not in self.backend.dtype_name(ids.dtype):
            raise DTypeError(f"{name}: expected an integer array of token ids, received dtype {self.backend.dtype_name(ids.dtype)}")
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
        out = xp.reshape(xp.take(self.params["weight"], flat, axis=0), tuple(ids.shape) + (self.embedding_dim,))

        def backprop(d_out):
            d_flat = xp.reshape(d_out, (-1, self.embedding_dim))
            kernel = self.backend.kernel("embedding_backward", embedding_backward)
            self.param_grads["weight"] = self.param_grads["weight"] + kernel(flat, d_flat, self.num_embeddings, xp=xp)

        return out, backprop
