"""Affine map y = x W^T + b over the last axis (torch.nn.Linear's convention, layout and init)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import check_array
from ..errors import ShapeError, check_positive_int
from ..random_state import check_seed
from .base import BackpropOnce, Layer, Parameter


class Linear(Layer):
    """x (..., in_features) -> (..., out_features). ``weight`` (out, in) and ``bias`` (out,), stored as PyTorch does.

    ``weight=`` a Parameter of shape (out, in) owned by another layer ties the two: one
    parameter, updated once, whose gradient both layers add to (a language model's decoder
    sharing its embedding table).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None,
                 seed: int | None = None, weight: Parameter | None = None):
        super().__init__(dtype)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        rng = np.random.default_rng(check_seed(seed))
        bound = 1.0 / math.sqrt(self.in_features)
        drawn = rng.uniform(-bound, bound, (self.out_features, self.in_features))  # drawn even when tied: same bias
        params = {} if weight is not None else {"weight": drawn}
        self.has_bias = bool(bias)
        if bias:
            params["bias"] = rng.uniform(-bound, bound, self.out_features)
        if weight is not None and tuple(weight.value.shape) != (self.out_features, self.in_features):
            raise ShapeError(f"weight: expected a shared parameter of shape ({self.out_features}, {self.in_features}) "
                             f"(out_features, in_features), received {tuple(weight.value.shape)}")
        self._init_params(params, shared=None if weight is None else {"weight": weight})

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x):
        """x (..., in) -> (y (..., out), backprop(dy) -> dx), accumulating the weight and bias gradients."""
        xp = self.backend.xp
        x = check_array(self.backend, x, "x", dtype=self.dtype_name)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"x: expected last dimension {self.in_features} (in_features), received shape {tuple(x.shape)}")
        weight, bias = self._params["weight"], self._params.get("bias")
        flat = xp.reshape(x, (-1, self.in_features))
        y = xp.matmul(flat, xp.matrix_transpose(weight.value))
        if bias is not None:
            y = y + bias.value
        out_shape = tuple(x.shape[:-1]) + (self.out_features,)
        y = xp.reshape(y, out_shape)
        guard = BackpropOnce("Linear backprop")

        def backprop(dy):
            dy = guard.accept(self.backend, dy, "dy", out_shape, self.dtype_name, of="y")
            d_flat = xp.reshape(dy, (-1, self.out_features))
            weight.grad = weight.grad + xp.matmul(xp.matrix_transpose(d_flat), flat)       # (out, in)
            if bias is not None:
                bias.grad = bias.grad + xp.sum(d_flat, axis=0)
            return xp.reshape(xp.matmul(d_flat, weight.value), tuple(x.shape))

        return y, backprop
