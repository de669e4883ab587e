"""Counting array operations: a stand-in for GPU kernel launches, measurable on any machine.

On a GPU every array operation in the time loop is (at least) one kernel launch, and at
small batch sizes launch latency, not arithmetic, sets the speed. :func:`counting_backend`
wraps a backend so that every namespace call (``xp.matmul``, ``xp.tanh``, ...) and every
arithmetic operator on its arrays (``a * b``, ``1 - a``, ...) adds one to a counter.
Pure views are free, as on CuPy: slicing, ``matrix_transpose``, ``permute_dims``.
Counts are deterministic, so tests can hold them to a budget.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

from ..backend.registry import Backend

FREE_FUNCTIONS = frozenset({"matrix_transpose", "permute_dims", "asarray"})
_OPERATORS = ("add", "sub", "mul", "truediv", "pow", "matmul", "neg", "pos", "abs", "lt", "le", "gt", "ge",
              "eq", "ne", "and", "or", "invert")


@dataclass
class OpCounter:
    count: int = 0
    by_name: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.count += 1
        self.by_name[name] = self.by_name.get(name, 0) + 1

    def reset(self) -> None:
        self.count = 0
        self.by_name.clear()


def _unwrap(value: Any) -> Any:
    if isinstance(value, CountedArray):
        return value._array
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(value: Any, counter: OpCounter) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v, counter) for v in value)
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type):
        return CountedArray(value, counter)
    return value


class CountedArray:
    """An array whose arithmetic operators are counted; everything else passes through."""

    __slots__ = ("_array", "_counter")
    __array_priority__ = 1000

    def __init__(self, array: Any, counter: OpCounter):
        self._array, self._counter = array, counter

    shape = property(lambda self: self._array.shape)
    ndim = property(lambda self: self._array.ndim)
    dtype = property(lambda self: self._array.dtype)
    device = property(lambda self: self._array.device)
    mT = property(lambda self: CountedArray(self._array.mT, self._counter))

    def __getitem__(self, key):            # a view: free
        return CountedArray(self._array[_unwrap(key)], self._counter)

    def __len__(self):
        return len(self._array)

    def __repr__(self):
        return f"CountedArray({self._array!r})"


def _make_operator(name: str, reflected: bool = False):
    dunder = f"__{'r' if reflected else ''}{name}__"

    def op(self, *args):
        self._counter.add(dunder)
        return _wrap(getattr(self._array, dunder)(*(_unwrap(a) for a in args)), self._counter)

    op.__name__ = dunder
    return op


for _name in _OPERATORS:
    setattr(CountedArray, f"__{_name}__", _make_operator(_name))
    if _name in ("add", "sub", "mul", "truediv", "pow", "matmul", "and", "or"):
        setattr(CountedArray, f"__r{_name}__", _make_operator(_name, reflected=True))


class CountingNamespace(types.SimpleNamespace):
    """Wraps an array namespace: calls are counted (except free views) and arrays stay wrapped."""

    def __init__(self, xp: Any, counter: OpCounter):
        super().__init__()
        object.__setattr__(self, "_xp", xp)
        object.__setattr__(self, "_counter", counter)

    def __getattr__(self, name: str):
        target = getattr(self._xp, name)
        if not callable(target) or isinstance(target, type):
            return target
        counter = self._counter

        def call(*args, **kwargs):
            if name not in FREE_FUNCTIONS:
                counter.add(name)
            result = target(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
            return _wrap(result, counter)

        return call


def counting_backend(backend: Backend) -> tuple[Backend, OpCounter]:
    """A copy of ``backend`` (no fast-path overrides) whose ``xp`` counts operations."""
    counter = OpCounter()
    return Backend(backend.name, CountingNamespace(backend.xp, counter), backend.device, fast_paths=False), counter


def unwrap(value: Any) -> Any:
    """The plain array inside a CountedArray (or tuples of them)."""
    return _unwrap(value)


def wrap(value: Any, counter: OpCounter) -> Any:
    return _wrap(value, counter)


def ops_per_step(cell, *, masked: bool = False, batch: int = 2, hidden: int = 3) -> tuple[float, float]:
    """Array operations per timestep of the portable time loop for ``cell``: (forward, backward).

    Measured as the difference between scans of 8 and 4 steps, so one-off work (stacking
    the outputs) is not counted. ``masked`` runs with variable lengths.
    """
    import numpy as np

    from ..backend.registry import make_backend
    from .time_loop import UnitParams, scan_backward, scan_forward

    backend, counter = counting_backend(make_backend("numpy"))
    xp = backend.xp
    rng = np.random.default_rng(0)
    width = cell.num_gates * hidden
    sizes = {"gates": width, "hidden": hidden}

    def run(steps: int) -> tuple[int, int]:
        xproj = wrap(rng.standard_normal((steps, batch, width)), counter)
        p = UnitParams(
            weight_ih=None, weight_hh=wrap(rng.standard_normal((hidden, width)), counter),
            bias_hh=None if cell.fold_hidden_bias else wrap(rng.standard_normal(width), counter),
            extra={k: wrap(rng.standard_normal(sizes[spec.size]), counter) for k, spec in cell.extra_params.items()})
        state0 = tuple(wrap(np.zeros((batch, hidden)), counter) for _ in cell.state_names)
        masks = None
        if masked:
            lengths = np.array([steps] + [max(1, steps // 2)] * (batch - 1))
            masks = [wrap((t < lengths)[:, None], counter) for t in range(steps)]
        d_hs = wrap(rng.standard_normal((steps, batch, hidden)), counter)
        counter.reset()
        _, final, tape = scan_forward(cell, xproj, state0, p, masks, False, xp=xp)
        forward = counter.count
        counter.reset()
        scan_backward(cell, tape, d_hs, final, p, masks, xp=xp)
        return forward, counter.count

    (f4, b4), (f8, b8) = run(4), run(8)
    return (f8 - f4) / 4, (b8 - b4) / 4
