"""Pooling a padded sequence of vectors into one vector per row, over its valid steps only.

hs (T, B, D) -> pooled (B, D), with ``lengths`` (B,) (None: all T steps valid). Modes:

- ``last``: the final state of each direction: forward half (the first D / num_directions
  features) at t = L_b - 1, backward half at t = 0. For a recurrent layer's output this is
  the top layer's h_n, as PyTorch returns it for a packed sequence.
- ``mean``: sum_{t<L} h_t / L.
- ``max``: elementwise max over t < L (the gradient goes to the maximising step; ties share it).
- ``attention``: additive attention pooling (Bahdanau et al. 2015; Yang et al. 2016):

      u_t = tanh(W h_t + b)   (A,),   e_t = v . u_t,   a = softmax over valid t of e,   pooled = sum_t a_t h_t

  with ``proj`` = Linear(D, A) (W, b) and ``score`` = Linear(A, 1, bias=False) (v).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import check_array
from ..errors import ConfigError, ShapeError, check_positive_int
from ..random_state import check_seed
from .base import BackpropOnce, Layer
from .linear import Linear
from .masks import boundary_masks, check_lengths, check_steps_and_rows, step_mask

POOLINGS = ("last", "mean", "max", "attention")


class SequencePooling(Layer):
    """One vector per row from (T, B, D) states; see the module docstring. Only ``attention`` has parameters."""

    def __init__(self, mode: str, input_size: int, num_directions: int = 1, attention_size: int = 64,
                 dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        if mode not in POOLINGS:
            raise ConfigError(f"pooling: expected one of {POOLINGS}, received {mode!r}")
        if isinstance(num_directions, bool) or num_directions not in (1, 2):
            raise ConfigError(f"num_directions: expected 1 or 2, received {num_directions!r}")
        self.mode, self.num_directions = mode, num_directions
        self.input_size = check_positive_int("input_size", input_size)
        if self.input_size % num_directions:
            raise ConfigError(f"input_size: expected a multiple of num_directions {num_directions}, "
                              f"received {input_size}")
        self._init_params({})
        if mode == "attention":
            size = check_positive_int("attention_size", attention_size)
            seed = check_seed(seed)
            seeds = seed.spawn(2) if isinstance(seed, np.random.SeedSequence) else \
                (seed, None if seed is None else seed + 1)
            self.proj = self.add("proj", Linear(self.input_size, size, dtype=dtype, seed=seeds[0]))
            self.score = self.add("score", Linear(size, 1, bias=False, dtype=dtype, seed=seeds[1]))
        else:
            check_seed(seed)

    def __call__(self, hs, lengths=None):
        return self.forward(hs, lengths)[0]

    def forward(self, hs, lengths=None):
        """hs (T, B, D), lengths (B,) -> (pooled (B, D), backprop(d_pooled) -> d_hs (T, B, D))."""
        xp = self.backend.xp
        hs = check_array(self.backend, hs, "hs", ndim=3, dtype=self.dtype_name)
        if hs.shape[-1] != self.input_size:
            raise ShapeError(f"hs: expected feature size (last dim) {self.input_size}, received shape {tuple(hs.shape)}")
        check_steps_and_rows("hs", tuple(hs.shape), f" (T, B, {self.input_size})")
        steps, batch = hs.shape[0], hs.shape[1]
        host_lengths = check_lengths(lengths, batch, steps)
        mask = step_mask(self.backend, host_lengths, steps)[..., None]                # (T, B, 1)
        if self.mode == "attention":
            return self._attention(hs, mask)
        if self.mode == "max":
            masked = xp.where(mask, hs, -xp.inf)
            pooled = xp.max(masked, axis=0)
            hits = xp.astype(masked == pooled, hs.dtype)
            weights = hits / xp.sum(hits, axis=0)
        else:
            weights = self._time_weights(host_lengths, mask, hs)
            pooled = xp.sum(weights * hs, axis=0)
        guard = BackpropOnce("SequencePooling backprop")

        def backprop(d_pooled):
            guard.check()
            d_pooled = self._check_grad(d_pooled, (batch, self.input_size))
            guard.consume()
            return weights * d_pooled

        return pooled, backprop

    def _time_weights(self, host_lengths, mask, hs):
        """(T, B, D or 1) weights w with pooled = sum_t w_t * h_t, for ``last`` and ``mean``."""
        xp = self.backend.xp
        if self.mode == "mean":
            return xp.astype(mask, hs.dtype) / self.backend.asarray(host_lengths[None, :, None], self.dtype_name)
        last, first = (xp.astype(m[..., None], hs.dtype) for m in boundary_masks(self.backend, host_lengths, hs.shape[0]))
        if self.num_directions == 1:
            return last
        half = self.input_size // 2
        shape = (hs.shape[0], hs.shape[1], half)
        return xp.concat([xp.broadcast_to(last, shape), xp.broadcast_to(first, shape)], axis=-1)

    def _check_grad(self, d_pooled, shape):
        d_pooled = check_array(self.backend, d_pooled, "d_pooled", ndim=2, dtype=self.dtype_name)
        if tuple(d_pooled.shape) != shape:
            raise ShapeError(f"d_pooled: expected the shape of pooled {shape}, received {tuple(d_pooled.shape)}")
        return d_pooled

    def _attention(self, hs, mask):
        xp = self.backend.xp
        batch = hs.shape[1]
        z, proj_back = self.proj.forward(hs)
        u = xp.tanh(z)                                                               # (T, B, A)
        e, score_back = self.score.forward(u)                                        # (T, B, 1)
        e = xp.where(mask, e, -xp.inf)
        p = xp.exp(e - xp.max(e, axis=0, keepdims=True))
        alpha = p / xp.sum(p, axis=0, keepdims=True)                                 # (T, B, 1), 0 at padded steps
        pooled = xp.sum(alpha * hs, axis=0)
        guard = BackpropOnce("SequencePooling backprop")

        def backprop(d_pooled):
            guard.check()
            d_pooled = self._check_grad(d_pooled, (batch, self.input_size))
            guard.consume()
            d_alpha = xp.sum(hs * d_pooled, axis=-1, keepdims=True)                  # (T, B, 1)
            d_e = alpha * (d_alpha - xp.sum(alpha * d_alpha, axis=0, keepdims=True))  # softmax backward
            d_u = score_back(d_e)
            return alpha * d_pooled + proj_back(d_u * (1.0 - u * u))

        return pooled, backprop
