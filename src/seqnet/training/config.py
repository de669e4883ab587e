"""The trainer's settings: optimisation, schedule, cadence and where the model computes.

Whatever the task, these are the knobs of the loop; a task adds its own (data, model sizes)
in its config class (:mod:`seqnet.tasks`). The defaults are those of the preset that
``seqnet train`` runs with no arguments.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..backend import BACKEND_NAMES
from ..config import NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, Settings, option
from ..errors import ConfigError


def _optimizers() -> tuple:
    from .optimizers import OPTIMIZERS

    return tuple(OPTIMIZERS)


def _schedules() -> tuple:
    from .schedules import SCHEDULES

    return SCHEDULES


DEFAULT_WARMUP = 50


@dataclass
class TrainerConfig(Settings):
    steps: int = option(1600, "optimizer steps", kind=POSITIVE_INT)
    lr: float = option(3e-3, "peak learning rate", kind=POSITIVE_FLOAT)
    optimizer: str = option("adam", "update rule", choices=_optimizers)
    clip: float = option(1.0, "maximum global gradient norm (0: off)", kind=NONNEGATIVE_FLOAT)
    clip_value: float = option(0.0, "element-wise gradient clip (0: off)", kind=NONNEGATIVE_FLOAT)
    schedule: str = option("cosine", "learning-rate schedule after the warm-up", choices=_schedules)
    warmup: int | None = option(None, "linear warm-up steps, fewer than --steps (default: 50, or half of --steps "
                                      "if that is less)", kind=NONNEGATIVE_INT)
    accumulate: int = option(1, "micro-batches per optimizer step (gradient accumulation; lm and translate: a "
                                "divisor of --batch; classify, tag, generate: at most --batch, split as evenly as can be)",
                             kind=POSITIVE_INT)
    eval_every: int = option(400, "steps between evaluations", kind=POSITIVE_INT)
    checkpoint_every: int = option(400, "steps between checkpoints", kind=POSITIVE_INT)
    log_every: int = option(10, "steps between loss read-backs (host synchronisations)", kind=POSITIVE_INT)
    backend: str = option("numpy", "array library", choices=BACKEND_NAMES)
    device: str | int | None = option(None, "backend device: 0 or 1 for cupy, 'cuda:1' for torch")
    dtype: str = option("float32", "floating-point type of parameters and activations", choices=("float32", "float64"))
    seed: int = option(0, "seed of the initial weights, dropout and sampling", kind=NONNEGATIVE_INT)
    phase_start: int = option(0, "the step at which the current schedule began (a new phase restarts it)",
                              kind=NONNEGATIVE_INT, cli=False)

    # What a new phase of a resumed run may change (a fresh schedule from the current step).
    PHASE_SETTINGS = ("steps", "lr", "schedule", "warmup", "clip", "clip_value", "eval_every", "checkpoint_every",
                      "log_every")
    # What any resumed run may change: where it computes (checkpoints hold host arrays).
    PLACEMENT_SETTINGS = ("backend", "device")

    @property
    def phase_steps(self) -> int:
        """Optimizer steps of the current phase (the whole run unless a new phase began)."""
        return self.steps - self.phase_start

    @property
    def warmup_steps(self) -> int:
        """--warmup, or when it is automatic (None) 50 steps, at most half of the phase."""
        return min(DEFAULT_WARMUP, self.phase_steps // 2) if self.warmup is None else self.warmup

    def validate(self) -> "TrainerConfig":
        super().validate()
        if self.phase_start >= self.steps:
            raise ConfigError(f"--steps: expected more than {self.phase_start} (the step this phase starts at), "
                              f"received {self.steps}")
        if self.warmup is not None and self.warmup >= self.phase_steps:
            what = "--steps" if not self.phase_start else f"the phase's {self.phase_steps} steps"
            raise ConfigError(f"--warmup: expected fewer steps than {what} ({self.phase_steps}), received {self.warmup}")
        return self
