"""What a task supplies to the trainer: data, loss and gradients, evaluation, checkpointed state.

The trainer (:class:`seqnet.training.Trainer`) owns the loop: schedule, gradient
accumulation, clipping, the optimizer, the NaN stop, metrics and checkpoint cadence. It
knows nothing about what is being learned; a :class:`Task` does:

- ``create(config, run_dir, ...)`` for a new run: read the data, fit what must be fitted
  (a vocabulary), keep in ``run_dir`` what the run needs later (the encoded data), build the
  model; ``rebuild(config, setup, ...)`` rebuilds it from ``setup()`` (weights are loaded by
  the caller), with the run's data when ``run_dir`` is given, without it for inference;
- ``train_batches(k)``: the next optimizer step's data as ``k`` micro-batches;
  ``loss_and_grads(batch, grad_scale)`` adds that micro-batch's gradients (times
  ``grad_scale``) to the model's and returns its mean loss as a 0-d device array (nats);
- ``evaluate()``: validation metrics (JSON numbers); ``report(step)``: text to show at
  ``report_every`` steps (a language model's sample, with its heading), or None;
- ``state_dict()`` / ``load_state_dict()``: what a resumed run needs to continue exactly
  (data position, carried state, random generators), as JSON plus named host arrays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..config import Settings
from ..layers import Layer


class Task:
    """Base class of training tasks; see the module docstring for the protocol."""

    kind: ClassVar[str]                      # the registry key, stored in run directories
    Config: ClassVar[type[Settings]]         # the task's settings
    model: Layer
    config: Settings
    report_every: int | None = None
    tokens_per_step: int = 0                 # for throughput figures
    loss_unit: str = "bits per token"        # what the mean loss of loss_and_grads averages over, in bits

    @classmethod
    def create(cls, config: Settings, run_dir: Path, *, backend: str, device: Any, dtype: str, seed: int) -> "Task":
        raise NotImplementedError

    @classmethod
    def rebuild(cls, config: Settings, setup: dict, *, backend: str, device: Any, dtype: str, seed: int,
                run_dir: Path | None = None) -> "Task":
        raise NotImplementedError

    def setup(self) -> dict:
        """JSON that, with the config, rebuilds the model (its vocabulary, ...)."""
        raise NotImplementedError

    def check_trainer_config(self, config) -> None:
        """Refuse trainer settings this task cannot honour (called before training starts)."""

    def describe(self) -> str:
        """One line on the model and data, for the start of a run."""
        return f"{type(self.model).__name__}, {self.model.num_parameters():,} parameters"

    def train_batches(self, count: int) -> list:
        raise NotImplementedError

    def loss_and_grads(self, batch, grad_scale: float):
        raise NotImplementedError

    def evaluate(self) -> dict:
        return {}

    def report(self, step: int) -> str | None:
        return None

    def state_dict(self) -> tuple[dict, dict]:
        return {}, {}

    def load_state_dict(self, state: dict, arrays: dict) -> None:
        pass
