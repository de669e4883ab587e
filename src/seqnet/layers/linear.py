"""Affine map y = x W^T + b over the last axis (torch.nn.Linear's convention and init)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import check_positive_int
from .base import Layer


class Linear(Layer):
    """x (..., in_features) -> (..., out_features). Internally ``weight`` is stored (in, out)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        params = {"weight": rng.uniform(-bound, bound, (self.out_features, self.in_features))}
        if bias:
            params["bias"] = rng.uniform(-bound, bound, self.out_features)
        self._init_params(params)

    def _to_internal(self, name, value):
        return self.backend.xp.matrix_transpose(value) if name == "weight" else value

    _to_public = _to_internal

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x, weight=None):
        """Returns (y, backprop(dy) -> dx). ``weight`` (in, out) overrides the own one (tied weights);
        backprop then returns (dx, d_weight) instead of accumulating it."""
        xp = self.backend.xp
        w = self.params["weight"] if weight is None else weight
        flat = xp.reshape(x, (-1, self.in_features))
        y = xp.matmul(flat, w)
        if "bias" in self.params:
            y = y + self.params["bias"]
        y = xp.reshape(y, tuple(x.shape[:-1]) + (self.out_features,))

        def backprop(dy):
            d_flat = xp.reshape(dy, (-1, self.out_features))
            d_w = xp.matmul(xp.matrix_transpose(flat), d_flat)
            if "bias" in self.params:
                self.param_grads["bias"] = self.param_grads["bias"] + xp.sum(d_flat, axis=0)
            dx = xp.reshape(xp.matmul(d_flat, xp.matrix_transpose(w)), tuple(x.shape))
            if weight is not None:
                return dx, d_w
            self.param_grads["weight"] = self.param_grads["weight"] + d_w
            return dx

        return y, backprop
