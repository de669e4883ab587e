"""What every layer with parameters shares: parameters, gradients, backend moves, state dicts.

``params`` and ``param_grads`` hold arrays in the layer's *internal* layout, which is
what optimizers update. ``state_dict()`` and ``grads`` show the *public* layout (PyTorch's
names and shapes); subclasses convert in ``_to_public`` / ``_to_internal``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import Backend, get_backend, make_backend, to_numpy
from ..backend.registry import float_dtype_name
from ..errors import ConfigError, ShapeError


class Layer:
    """Base class of layers that own parameters."""

    def __init__(self, dtype: Any = None):
        self.backend: Backend = get_backend()
        self.dtype_name = float_dtype_name(dtype)
        self.dtype = self.backend.float_dtype(self.dtype_name)
        self.params: dict[str, Any] = {}
        self.param_grads: dict[str, Any] = {}

    # -- parameters -------------------------------------------------------------------
    def _init_params(self, host_params: dict[str, np.ndarray]) -> None:
        """Install host (public-layout) arrays as parameters on this layer's backend."""
        xp = self.backend.xp
        self.params = {}
        for name, value in host_params.items():
            internal = self._to_internal(name, self.backend.asarray(value, self.dtype_name))
            # A row-major copy, not a transposed view: the layout matches what optimizer steps
            # produce, so BLAS rounds the same whether a parameter was just built, loaded or updated
            # (a resumed run then follows the uninterrupted one bit for bit).
            self.params[name] = xp.reshape(xp.reshape(internal, (-1,)), tuple(internal.shape))
        self.zero_grad()

    def zero_grad(self) -> None:
        """Reset every parameter gradient to zero."""
        self.param_grads = {k: self.backend.xp.zeros_like(v) for k, v in self.params.items()}

    @property
    def grads(self) -> dict[str, Any]:
        """Accumulated gradients, with the keys and shapes of :meth:`state_dict`."""
        return {k: self._to_public(k, g) for k, g in self.param_grads.items()}

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    # -- public layout ----------------------------------------------------------------
    def _to_public(self, name: str, value):
        return value

    def _to_internal(self, name: str, value):
        return value

    def _public_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(self._to_public(k, v).shape) for k, v in self.params.items()}

    def state_dict(self) -> dict[str, Any]:
        """Parameters in the public layout, as arrays of this layer's backend."""
        return {k: self._to_public(k, v) for k, v in self.params.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load parameters from numpy or any backend's arrays; wrong or missing names and shapes are rejected."""
        expected = self._public_shapes()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise ConfigError(
                f"state_dict: keys do not match {type(self).__name__}: missing {missing}, unexpected {unexpected}; "
                f"expected exactly {list(expected)}"
            )
        host = {k: to_numpy(state[k]) for k in expected}
        wrong = [f"{k}: expected {expected[k]}, received {tuple(v.shape)}" for k, v in host.items() if tuple(v.shape) != expected[k]]
        if wrong:
            raise ShapeError("state_dict: wrong shapes: " + "; ".join(wrong))
        not_float = [f"{k}: {v.dtype}" for k, v in host.items() if v.dtype.kind != "f"]
        if not_float:
            raise ConfigError("state_dict: expected floating-point arrays, received " + "; ".join(not_float))
        self._init_params(host)

    # -- backends ---------------------------------------------------------------------
    def to(self, name: str | Backend, device: Any = None) -> "Layer":
        """Move parameters and gradients to another backend/device (in place; returns self)."""
        target = make_backend(name, device)
        self.params = {k: target.asarray(to_numpy(v), self.dtype_name) for k, v in self.params.items()}
        self.param_grads = {k: target.asarray(to_numpy(v), self.dtype_name) for k, v in self.param_grads.items()}
        self.backend = target
        self.dtype = target.float_dtype(self.dtype_name)
        return self
