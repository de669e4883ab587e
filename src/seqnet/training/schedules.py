"""Learning-rate schedules: small callables ``schedule(step) -> lr`` (a Python float).

``step`` counts optimizer steps already taken (0 for the first update), so the training
loop reads ``opt.lr = schedule(opt.step_count)`` before ``opt.step(...)``. With that
convention ``schedule(k)`` equals the lr a PyTorch scheduler gives after ``k`` calls of
``scheduler.step()`` (StepLR, CosineAnnealingLR for k <= T_max).

    constant(lr)(k)                  = lr
    step_decay(lr, n, gamma)(k)      = lr * gamma ** (k // n)
    cosine(lr, T, min_lr)(k)         = min_lr + (lr - min_lr) * (1 + cos(pi * k / T)) / 2   for k <= T,
                                       min_lr afterwards
    warmup(s, W)(k)                  = s(0) * (k + 1) / W   for k < W   (lr/W, 2 lr/W, ..., s(0))
                                       s(k - W)             for k >= W  (s starts after the warm-up)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError

__all__ = ["SCHEDULES", "Constant", "Cosine", "StepDecay", "Warmup", "constant", "cosine", "make_schedule", "step_decay",
           "warmup"]

Schedule = Callable[[int], float]


def _real(name: str, value: Any, *, low: float, open_low: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        value = float(value)
        ok = value > low if open_low else value >= low
    if not ok:
        raise ConfigError(f"{name}: expected a finite number {'>' if open_low else '>='} {low}, received {value!r}")
    return value


def _int(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name}: expected an int >= {low}, received {value!r}")
    return int(value)


def _step(step: Any) -> int:
    return _int("step", step, low=0)


@dataclass(frozen=True)
class Constant:
    lr: float

    def __call__(self, step: int) -> float:
        _step(step)
        return self.lr


@dataclass(frozen=True)
class StepDecay:
    lr: float
    step_size: int
    gamma: float

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (_step(step) // self.step_size)


@dataclass(frozen=True)
class Cosine:
    lr: float
    total_steps: int
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        step = min(_step(step), self.total_steps)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * step / self.total_steps))


@dataclass(frozen=True)
class Warmup:
    schedule: Schedule
    warmup_steps: int

    def __call__(self, step: int) -> float:
        step = _step(step)
        if step < self.warmup_steps:
            return self.schedule(0) * (step + 1) / self.warmup_steps
        return self.schedule(step - self.warmup_steps)


def constant(lr: float) -> Constant:
    """lr at every step."""
    return Constant(_real("lr", lr, low=0.0, open_low=True))


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> StepDecay:
    """lr * gamma ** (step // step_size), as torch.optim.lr_scheduler.StepLR."""
    return StepDecay(_real("lr", lr, low=0.0, open_low=True), _int("step_size", step_size, low=1), _real("gamma", gamma, low=0.0, open_low=True))


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Cosine:
    """Half a cosine from lr (step 0) to min_lr (step total_steps), then min_lr; CosineAnnealingLR's closed form."""
    lr = _real("lr", lr, low=0.0, open_low=True)
    min_lr = _real("min_lr", min_lr, low=0.0, open_low=False)
    if min_lr > lr:
        raise ConfigError(f"min_lr: expected a value <= lr={lr}, received {min_lr!r}")
    return Cosine(lr, _int("total_steps", total_steps, low=1), min_lr)


def warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    """Linear warm-up over ``warmup_steps`` steps to ``schedule(0)``, then ``schedule`` shifted by ``warmup_steps``.

    Step k < W gets schedule(0) * (k + 1) / W: the first update uses lr/W and update W
    (k = W - 1) the full schedule(0). ``warmup_steps == 0`` returns ``schedule`` itself.
    """
    if not callable(schedule):
        raise ConfigError(f"schedule: expected a callable step -> lr, received {schedule!r}")
    warmup_steps = _int("warmup_steps", warmup_steps, low=0)
    return Warmup(schedule, warmup_steps) if warmup_steps else schedule


_OPTIONS = {"constant": (), "step": ("step_size", "gamma"), "cosine": ("min_lr",)}
SCHEDULES = tuple(_OPTIONS)            # the names make_schedule takes


def make_schedule(name: str, lr: float, total_steps: int, warmup_steps: int = 0, **kwargs: Any) -> Schedule:
    """The schedule called ``name`` ("constant", "step", "cosine") for a run of ``total_steps`` updates.

    ``total_steps`` includes the ``warmup_steps``: a cosine schedule decays over the
    ``total_steps - warmup_steps`` updates after the warm-up and reaches ``min_lr`` at step
    ``total_steps``, just after the last update (CosineAnnealingLR's convention).

    Options: "step" takes ``step_size`` (default: a third of the updates after warm-up, at
    least 1) and ``gamma`` (default 0.1); "cosine" takes ``min_lr`` (default 0).
    """
    if name not in _OPTIONS:
        raise ConfigError(f"schedule: expected one of {tuple(_OPTIONS)}, received {name!r}")
    unknown = sorted(set(kwargs) - set(_OPTIONS[name]))
    if unknown:
        raise ConfigError(f"schedule {name!r}: unknown options {unknown}; expected some of {list(_OPTIONS[name])}")
    total_steps = _int("total_steps", total_steps, low=1)
    warmup_steps = _int("warmup_steps", warmup_steps, low=0)
    if warmup_steps >= total_steps:
        raise ConfigError(f"warmup_steps: expected fewer than total_steps={total_steps}, received {warmup_steps!r}")
    if name == "constant":
        base = constant(lr)
    elif name == "step":
        # Default: decay at one and two thirds of the post-warm-up run.
        kwargs.setdefault("step_size", max(1, (total_steps - warmup_steps) // 3))
        base = step_decay(lr, **kwargs)
    else:
        base = cosine(lr, total_steps - warmup_steps, **kwargs)
    return warmup(base, warmup_steps)
