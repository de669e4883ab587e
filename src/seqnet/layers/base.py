"""What every layer shares: parameters, child layers, gradients, backend moves, state dicts.

A :class:`Layer` owns :class:`Parameter` objects (an array and its accumulated gradient)
and child layers; models are layers made of layers. Everything that walks parameters walks
the tree, with dotted names (``rnn.weight_ih_l0``); a parameter shared by two layers (tied
weights) is one Parameter object, listed once under the first name that reaches it.

``params`` and ``param_grads`` are live views in the *internal* layout, which is what
optimizers update: ``opt.step(model.params, model.param_grads)`` writes the new arrays into
the model's parameters. ``state_dict()`` and ``grads`` show the *public* layout (PyTorch's
names and shapes); layers convert in ``_to_public`` / ``_to_internal``.
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from ..backend import Backend, get_backend, make_backend, to_numpy
from ..backend.registry import describe_array, float_dtype_name
from ..errors import BackendMismatchError, ConfigError, DTypeError, ShapeError, TapeConsumedError


class Parameter:
    """One trainable array (``value``, in its layer's internal layout) and its accumulated ``grad``."""

    __slots__ = ("value", "grad")

    def __init__(self, value, grad=None):
        self.value, self.grad = value, grad

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.value.shape)})"


def _check_like(value, like, name: str) -> None:
    """``value`` must be an array of ``like``'s library, device, shape and dtype (what replaces a
    parameter or its gradient keeps the model whole); otherwise an error naming ``name``."""
    if type(value) is not type(like) or getattr(value, "device", None) != getattr(like, "device", None):
        raise BackendMismatchError(f"{name}: expected {describe_array(like)}, received {describe_array(value)}")
    if tuple(value.shape) != tuple(like.shape):
        raise ShapeError(f"{name}: expected shape {tuple(like.shape)}, received {tuple(value.shape)}")
    if value.dtype != like.dtype:
        raise DTypeError(f"{name}: expected dtype {float_dtype_name(like.dtype)}, received {describe_array(value)}")


class ParameterView(MutableMapping):
    """A live mapping ``name -> array`` over a layer tree's parameters (``field`` "value" or "grad").

    Reading returns the current array; assigning replaces it in the parameter itself, so what
    an optimizer or a clipping function writes here is the model's. Names are fixed: new
    keys and deletions are refused.
    """

    def __init__(self, named: dict[str, Parameter], field: str):
        self._named, self._field = named, field

    def __getitem__(self, name: str):
        return getattr(self._named[name], self._field)

    def __setitem__(self, name: str, value) -> None:
        if name not in self._named:
            raise KeyError(f"{name!r}: not a parameter of this layer (expected one of {list(self._named)})")
        _check_like(value, self._named[name].value, f"{'param_grads' if self._field == 'grad' else 'params'}[{name!r}]")
        setattr(self._named[name], self._field, value)

    def __delitem__(self, name: str) -> None:
        raise TypeError("parameters cannot be deleted from a layer")

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __len__(self) -> int:
        return len(self._named)

    def __repr__(self) -> str:
        return f"ParameterView({self._field}: {list(self._named)})"


class BackpropOnce:
    """Guard of one backprop closure: it may run once per forward pass, and a second call is
    refused before anything is touched (the tape is consumed, as with PyTorch's backward)."""

    __slots__ = ("name", "used")

    def __init__(self, name: str = "backprop"):
        self.name, self.used = name, False

    def check(self) -> None:
        if self.used:
            raise TapeConsumedError(f"{self.name}: already called for this forward pass; run forward() again")

    def consume(self) -> None:
        """Call once the arguments are checked, before the first gradient is touched."""
        self.check()
        self.used = True

    def check_grad(self, backend, upstream, name: str, shape: tuple, dtype, of: str):
        """Check one upstream gradient (``name``: an array of ``backend`` with ``dtype`` and the
        ``shape`` of ``of``) without consuming the tape; returns it. For a closure of several."""
        from ..backend import check_array

        self.check()
        upstream = check_array(backend, upstream, name, dtype=dtype)
        if tuple(upstream.shape) != tuple(shape):
            raise ShapeError(f"{name}: expected the shape of {of} {tuple(shape)}, received {tuple(upstream.shape)}")
        return upstream

    def accept(self, backend, upstream, name: str, shape: tuple, dtype, of: str):
        """Check a backprop closure's one upstream gradient (see :meth:`check_grad`), then consume
        the tape; returns it."""
        upstream = self.check_grad(backend, upstream, name, shape, dtype, of)
        self.consume()
        return upstream


class Layer:
    """Base class of layers: own parameters, child layers, and everything that walks them."""

    def __init__(self, dtype: Any = None):
        self.backend: Backend = get_backend()
        self.dtype_name = float_dtype_name(dtype)
        self.dtype = self.backend.float_dtype(self.dtype_name)
        self._params: dict[str, Parameter] = {}
        self._children: dict[str, Layer] = {}

    # -- building ---------------------------------------------------------------------
    def add(self, name: str, child: "Layer") -> "Layer":
        """Register ``child`` under ``name`` (its parameters become ``name.<key>``); returns it."""
        if not isinstance(child, Layer):
            raise ConfigError(f"{name}: expected a seqnet Layer, received {type(child).__name__}")
        if child.backend.name != self.backend.name or str(child.backend.device) != str(self.backend.device):
            raise ConfigError(f"{name}: the child layer lives on {child.backend}, this layer on {self.backend}")
        self._children[name] = child
        return child

    def _init_params(self, host_params: dict[str, np.ndarray], shared: dict[str, Parameter] | None = None) -> None:
        """Create this layer's parameters from host (public-layout) arrays; ``shared`` adds
        Parameters owned by another layer (tied weights) under local names."""
        self._params = {name: Parameter(self._install(name, value)) for name, value in host_params.items()}
        self._params.update(shared or {})
        for param in self._params.values():
            param.grad = self.backend.xp.zeros_like(param.value)

    def _install(self, name: str, host: np.ndarray):
        """A host public-layout array as this layer's internal, row-major backend array."""
        xp = self.backend.xp
        internal = self._to_internal(name, self.backend.asarray(host, self.dtype_name))
        # A row-major copy, not a transposed view: the layout matches what optimizer steps
        # produce, so BLAS rounds the same whether a parameter was just built, loaded or updated
        # (a resumed run then follows the uninterrupted one bit for bit).
        return xp.reshape(xp.reshape(internal, (-1,)), tuple(internal.shape))

    def parameter(self, name: str) -> Parameter:
        """This layer's own parameter ``name`` (local name, as in its state dict)."""
        if name not in self._params:
            raise KeyError(f"{name!r}: not a parameter of {type(self).__name__} (it has {list(self._params)})")
        return self._params[name]

    # -- walking the tree ---------------------------------------------------------------
    def _walk(self, prefix: str = "", seen: set | None = None) -> Iterator[tuple[str, "Layer", str, Parameter]]:
        """(dotted name, owning layer, local name, Parameter) for every parameter, each once."""
        seen = set() if seen is None else seen
        for key, param in self._params.items():
            if id(param) not in seen:
                seen.add(id(param))
                yield prefix + key, self, key, param
        for name, child in self._children.items():
            yield from child._walk(f"{prefix}{name}.", seen)

    def layers(self) -> Iterator["Layer"]:
        """This layer and every layer below it."""
        yield self
        for child in self._children.values():
            yield from child.layers()

    def named_parameters(self) -> dict[str, Parameter]:
        return {name: param for name, _, _, param in self._walk()}

    @property
    def params(self) -> ParameterView:
        """Live view {name: array} in internal layout: what optimizers read and replace."""
        return ParameterView(self.named_parameters(), "value")

    @property
    def param_grads(self) -> ParameterView:
        """Live view {name: accumulated gradient} in internal layout (what clipping rescales)."""
        return ParameterView(self.named_parameters(), "grad")

    def zero_grad(self) -> None:
        """Reset every parameter gradient to zero."""
        zeros_like = self.backend.xp.zeros_like
        for param in self.named_parameters().values():
            param.grad = zeros_like(param.value)

    @property
    def grads(self) -> dict[str, Any]:
        """Accumulated gradients, with the keys and shapes of :meth:`state_dict`."""
        return {name: owner._to_public(key, param.grad) for name, owner, key, param in self._walk()}

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(p.value.shape)) for p in self.named_parameters().values()))

    # -- public layout ----------------------------------------------------------------
    def _to_public(self, name: str, value):
        return value

    def _to_internal(self, name: str, value):
        return value

    def _public_shape(self, name: str, internal_shape: tuple[int, ...]) -> tuple[int, ...]:
        return internal_shape

    def state_dict(self) -> dict[str, Any]:
        """Parameters in the public layout, as arrays of this layer's backend."""
        return {name: owner._to_public(key, param.value) for name, owner, key, param in self._walk()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load parameters from numpy or any backend's arrays.

        Atomic: names, shapes and dtypes of the whole tree are checked first, and nothing
        changes unless every one is right. Gradients are reset to zero.
        """
        entries = list(self._walk())
        expected = {name: owner._public_shape(key, tuple(param.value.shape)) for name, owner, key, param in entries}
        if not isinstance(state, dict):
            raise ConfigError(f"state_dict: expected a dict of name -> array, received {type(state).__name__}")
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
        installed = [(param, owner._install(key, host[name])) for name, owner, key, param in entries]
        zeros_like = self.backend.xp.zeros_like
        for param, value in installed:
            param.value, param.grad = value, zeros_like(value)

    # -- backends ---------------------------------------------------------------------
    def to(self, name: str | Backend, device: Any = None) -> "Layer":
        """Move parameters and gradients of the whole tree to another backend/device (in place; returns self)."""
        target = make_backend(name, device)
        for _, owner, _, param in list(self._walk()):
            param.value = target.asarray(to_numpy(param.value), owner.dtype_name)
            param.grad = target.asarray(to_numpy(param.grad), owner.dtype_name)
        for layer in self.layers():
            layer.backend, layer.dtype = target, target.float_dtype(layer.dtype_name)
        return self
