"""Optimizers over dicts of parameters, with PyTorch's update rules.

    opt = Adam(model.params, lr=1e-3)
    for step in range(steps):
        opt.lr = schedule(step)                  # a Python float; schedules set it each step
        model.zero_grad()
        ...                                      # forward + backprop add to model.param_grads
        opt.step(model.params, model.param_grads)

``model.params`` is a live view of the model's parameters: ``step(params, grads)`` assigns
each updated array to ``params[name]``, which replaces the model's parameter. A parameter
array itself is never written in place (optimizer state arrays may be, by an override).

Each update rule is a reference kernel written against ``xp``
(:mod:`seqnet.kernels.optimizers`, e.g. ``adam_update(p, g, m, v, *, lr, beta1, beta2, eps,
step, weight_decay, xp) -> (p, m, v)``); ``step`` runs it through
:func:`seqnet.kernels.kernel`, which picks a backend's override of it where there is one.
Hyper-parameters, the step count and the bias corrections are Python numbers: a step never
reads a value back from the device.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
import math
import numbers
from typing import Any, Callable, ClassVar

from .. import kernels
from ..backend import Backend, check_array, get_backend, make_backend, to_numpy
from ..backend.registry import _array_library, _device_of, describe_array
from ..errors import BackendMismatchError, ConfigError, DTypeError, ShapeError
from ..kernels.optimizers import adagrad_update, adam_update, adamw_update, rmsprop_update, sgd_update

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "make_optimizer",
]


# -- validation ----------------------------------------------------------------------------
def _real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a Python float, or ConfigError unless it is a finite real number in the interval."""
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high or math.isinf(high) else ']'}"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        value = float(value)
        ok = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        raise ConfigError(f"{name}: expected a real number in {interval}, received {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected True or False, received {value!r}")
    return value


def _lr(value: Any) -> float:
    return _real("lr", value, 0.0, math.inf, open_low=True, open_high=True)


def _betas(value: Any) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"betas: expected a pair (beta1, beta2) of numbers in [0, 1), received {value!r}")
    return (_real("betas[0]", value[0], 0.0, 1.0, open_high=True), _real("betas[1]", value[1], 0.0, 1.0, open_high=True))


def _resolve_backend(params: dict[str, Any], backend: Backend | None) -> Backend:
    """The backend of ``params``: ``backend``, else the current one if it owns them, else theirs."""
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"params: expected a non-empty dict of name -> array, received {params!r}")
    first = next(iter(params.values()))
    if backend is None:
        backend = get_backend()
        library = _array_library(first)
        if not backend.owns(first) and library is not None:
            backend = make_backend(library, _device_of(first))
    for name, p in params.items():
        check_array(backend, p, f"params[{name!r}]")
        if not backend.xp.isdtype(p.dtype, "real floating"):
            raise DTypeError(f"params[{name!r}]: expected a floating-point array, received dtype {backend.dtype_name(p.dtype)}")
    return backend


# -- the optimizer base class ------------------------------------------------------------------
class Optimizer:
    """Shared machinery: state per parameter, the step loop, and checkpoint state.

    Subclasses name their ``update`` reference function and its state arrays (``slot_order``:
    their positional order in its signature and return tuple, and their checkpoint names),
    which of those they use (:meth:`_slots`), how hyper-parameters are validated
    (:meth:`_validate`) and which keyword arguments the update receives (:meth:`_update_kwargs`).
    """

    name: ClassVar[str]
    update: ClassVar[Callable]
    slot_order: ClassVar[tuple[str, ...]]

    def __init__(self, params: dict[str, Any], lr: float, hyperparams: dict[str, Any], backend: Backend | None = None):
        self.backend = _resolve_backend(params, backend)
        self.lr = _lr(lr)
        self.hyperparams = self._validate(hyperparams)
        self.step_count = 0
        self._meta = {k: (tuple(p.shape), self.backend.dtype_name(p.dtype)) for k, p in params.items()}
        self._known: dict[str, tuple] = {}         # name -> (type, dtype, device) of arrays already checked
        self.state = {k: {s: self.backend.xp.zeros_like(p) for s in self._slots(self.hyperparams)} for k, p in params.items()}

    @property
    def lr(self) -> float:
        """The learning rate of the next step; schedules set it before each step (README:
        ``opt.lr = schedule(step)``). Built with a rate > 0; set to any finite rate >= 0 (a
        schedule may end at 0)."""
        return self._lr

    @lr.setter
    def lr(self, value: Any) -> None:
        self._lr = _real("lr", value, 0.0, math.inf, open_high=True)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {"lr": self.lr, **self.hyperparams}.items())
        return f"{type(self).__name__}({args}; {len(self.state)} parameters, step {self.step_count})"

    # -- subclass hooks ------------------------------------------------------------------
    def _validate(self, hyperparams: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _slots(self, hyperparams: dict[str, Any]) -> tuple[str, ...]:
        return self.slot_order

    def _update_kwargs(self) -> dict[str, Any]:
        return dict(self.hyperparams, lr=self.lr)

    # -- stepping ------------------------------------------------------------------------
    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """Update every parameter from its gradient; ``params[name]`` is replaced by the new array."""
        if params.keys() != self.state.keys() or not self.state.keys() <= grads.keys():
            raise ConfigError(
                f"params/grads: expected the parameter names this optimizer was built with {sorted(self.state)}, "
                f"received params {sorted(params)} and grads {sorted(grads)}"
            )
        self._check_like_params(params, grads)
        self.step_count += 1
        update = kernels.kernel(self.backend, self.update.__name__)
        kwargs = self._update_kwargs()
        xp = self.backend.xp
        with self.backend.activate():
            for name, state in self.state.items():
                old_state = [state.get(s) for s in self.slot_order]  # positional, None where unused
                p, *new_state = update(params[name], grads[name], *old_state, **kwargs, xp=xp)
                params[name] = p
                self.state[name] = {s: a for s, a in zip(self.slot_order, new_state) if s in state}

    def _check_like_params(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """ShapeError / DTypeError naming the first parameter or gradient whose shape or dtype is not
        the one recorded when this optimizer was built (so nothing broadcasts or casts quietly).
        Reads shapes and dtypes only: no device work, no transfer. An array of the (type, dtype,
        device) already accepted for its parameter passes on its shape alone (the per-step cost)."""
        known = self._known
        for name, (shape, dtype_name) in self._meta.items():
            for kind, array, like in (("params", params[name], "as when this optimizer was built"),
                                      ("grads", grads[name], "like its parameter")):
                signature = (type(array), getattr(array, "dtype", None), getattr(array, "device", None))
                if known.get(name) == signature and tuple(array.shape) == shape:
                    continue
                got_shape, got_dtype = getattr(array, "shape", None), getattr(array, "dtype", None)
                if got_shape is None or got_dtype is None:
                    raise ShapeError(f"{kind}[{name!r}]: expected an array of shape {shape} {like}, received "
                                     f"{type(array).__name__}")
                if not self.backend.owns(array):
                    raise BackendMismatchError(
                        f"{kind}[{name!r}]: expected a {self.backend.name} array on device {self.backend.device!s} "
                        f"(this optimizer's), received {describe_array(array)}; build the optimizer after moving "
                        f"the model, or move its state: opt.load_state_dict(*opt.state_dict(), backend=...)")
                if tuple(got_shape) != shape:
                    raise ShapeError(f"{kind}[{name!r}]: expected shape {shape} {like}, received {tuple(got_shape)}")
                got = self.backend.dtype_name(got_dtype)
                if got != dtype_name:
                    raise DTypeError(f"{kind}[{name!r}]: expected dtype {dtype_name} {like}, received {got}")
                known[name] = signature

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(json_state, arrays)``: JSON-ready settings and host numpy state arrays named "<param>.<slot>"."""
        json_state = {
            "optimizer": self.name,
            "lr": self.lr,
            "hyperparams": dict(self.hyperparams),
            "step": self.step_count,
            "params": list(self.state),
        }
        arrays = {f"{k}.{s}": to_numpy(a) for k, state in self.state.items() for s, a in state.items()}
        return json_state, arrays

    def load_state_dict(self, json_state: dict[str, Any], arrays: dict[str, Any], backend: Backend | None = None) -> None:
        """Restore what :meth:`state_dict` returned (hyper-parameters, lr, step, state) onto ``backend``
        (a Backend or a backend name, as ``use_backend`` takes; default: the optimizer's own).

        Nothing changes unless everything checks out: optimizer name, parameter names,
        hyper-parameters, and every state array present with its parameter's shape.
        """
        backend = self.backend if backend is None else make_backend(backend)
        if not isinstance(json_state, dict) or json_state.get("optimizer") != self.name:
            got = json_state.get("optimizer") if isinstance(json_state, dict) else json_state
            raise ConfigError(f"json_state: expected the state of optimizer {self.name!r}, received {got!r}")
        names = json_state.get("params")
        if not isinstance(names, list) or set(names) != set(self.state):
            raise ConfigError(f"json_state['params']: expected the parameter names {sorted(self.state)}, received {names!r}")
        step = json_state.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"json_state['step']: expected an int >= 0, received {step!r}")
        lr = _real("lr", json_state.get("lr"), 0.0, math.inf)     # a schedule may have ended at 0
        hyperparams = self._validate(dict(json_state.get("hyperparams") or {}))
        state = {}
        for k, (shape, dtype_name) in self._meta.items():
            state[k] = {}
            for s in self._slots(hyperparams):
                key = f"{k}.{s}"
                if key not in arrays:
                    raise ConfigError(f"arrays: expected state array {key!r}, missing (received {sorted(arrays)})")
                host = to_numpy(arrays[key])
                if tuple(host.shape) != shape:
                    raise ShapeError(f"arrays[{key!r}]: expected shape {shape}, received {tuple(host.shape)}")
                state[k][s] = backend.asarray(host, dtype_name)
        self.backend, self.lr, self.hyperparams, self.step_count, self.state = backend, lr, hyperparams, step, state
        self._known = {}                           # arrays of the new backend are checked in full again


# -- the optimizers ----------------------------------------------------------------------------
class SGD(Optimizer):
    """torch.optim.SGD (dampening 0): plain, with momentum, Nesterov momentum and L2 weight decay."""

    name = "sgd"
    update = staticmethod(sgd_update)
    slot_order = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.0, *, backend=None):
        super().__init__(params, lr, dict(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay), backend)

    def _validate(self, hp):
        out = dict(
            momentum=_real("momentum", hp.get("momentum"), 0.0),
            nesterov=_flag("nesterov", hp.get("nesterov")),
            weight_decay=_real("weight_decay", hp.get("weight_decay"), 0.0),
        )
        if out["nesterov"] and out["momentum"] <= 0.0:
            raise ConfigError(f"nesterov: Nesterov momentum needs momentum > 0, received momentum={out['momentum']!r}")
        return out

    def _slots(self, hp):
        return self.slot_order if hp["momentum"] else ()


class Adagrad(Optimizer):
    """torch.optim.Adagrad with initial_accumulator_value 0."""

    name = "adagrad"
    update = staticmethod(adagrad_update)
    slot_order = ("state_sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, *, backend=None):
        super().__init__(params, lr, dict(lr_decay=lr_decay, weight_decay=weight_decay, eps=eps), backend)

    def _validate(self, hp):
        return dict(
            lr_decay=_real("lr_decay", hp.get("lr_decay"), 0.0),
            weight_decay=_real("weight_decay", hp.get("weight_decay"), 0.0),
            eps=_real("eps", hp.get("eps"), 0.0),
        )

    def _update_kwargs(self):
        return dict(self.hyperparams, lr=self.lr, step=self.step_count)


class RMSprop(Optimizer):
    """torch.optim.RMSprop: plain, with momentum, centered, with L2 weight decay."""

    name = "rmsprop"
    update = staticmethod(rmsprop_update)
    slot_order = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *, backend=None):
        hp = dict(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered)
        super().__init__(params, lr, hp, backend)

    def _validate(self, hp):
        return dict(
            alpha=_real("alpha", hp.get("alpha"), 0.0, 1.0),
            eps=_real("eps", hp.get("eps"), 0.0),
            weight_decay=_real("weight_decay", hp.get("weight_decay"), 0.0),
            momentum=_real("momentum", hp.get("momentum"), 0.0),
            centered=_flag("centered", hp.get("centered")),
        )

    def _slots(self, hp):
        used = {"square_avg": True, "momentum_buffer": hp["momentum"] > 0.0, "grad_avg": hp["centered"]}
        return tuple(s for s in self.slot_order if used[s])


class Adam(Optimizer):
    """torch.optim.Adam (weight decay as L2 added to the gradient; no amsgrad)."""

    name = "adam"
    update = staticmethod(adam_update)
    slot_order = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, backend=None):
        super().__init__(params, lr, dict(betas=betas, eps=eps, weight_decay=weight_decay), backend)

    def _validate(self, hp):
        return dict(
            betas=_betas(hp.get("betas")),
            eps=_real("eps", hp.get("eps"), 0.0),
            weight_decay=_real("weight_decay", hp.get("weight_decay"), 0.0),
        )

    def _update_kwargs(self):
        hp = self.hyperparams
        beta1, beta2 = hp["betas"]
        return dict(lr=self.lr, beta1=beta1, beta2=beta2, eps=hp["eps"], step=self.step_count, weight_decay=hp["weight_decay"])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2)."""

    name = "adamw"
    update = staticmethod(adamw_update)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *, backend=None):
        super().__init__(params, lr, betas, eps, weight_decay, backend=backend)


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)}


def make_optimizer(name: str, params: dict[str, Any], lr: float, **kwargs: Any) -> Optimizer:
    """The optimizer called ``name`` ("sgd", "adagrad", "rmsprop", "adam", "adamw") over ``params``."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer: expected one of {tuple(OPTIMIZERS)}, received {name!r}")
    cls = OPTIMIZERS[name]
    accepted = [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "params", "lr")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"optimizer {name!r}: unknown options {unknown}; expected some of {accepted}")
    return cls(params, lr, **kwargs)
