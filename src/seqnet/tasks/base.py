"""What a task supplies to the trainer: data, loss and gradients, evaluation, checkpointed state.

The trainer (:class:`seqnet.training.Trainer`) owns the loop: schedule, gradient
accumulation, clipping, the optimizer, the NaN stop, metrics and checkpoint cadence. It
knows nothing about what is being learned; a :class:`Task` does:

- ``create(config, run_dir, ...)`` for a new run: read the data, fit what must be fitted
  (a vocabulary), keep in ``run_dir`` what the run needs later (the encoded data), build the
  model; ``rebuild(config, setup, ...)`` rebuilds it from ``setup()`` (weights are loaded by
  the caller), with the run's data when ``run_dir`` is given, without it for inference;
- ``train_batches(k)``: the next optimizer step's data as (at most) ``k`` micro-batches,
  each a :class:`MicroBatch` that says how many loss terms its mean loss averages
  (``weight``: tokens, texts, tags); ``loss_and_grads(batch, grad_scale)`` adds that
  micro-batch's gradients (times ``grad_scale``) to the model's and returns its mean loss as
  a 0-d device array (nats). The trainer passes ``grad_scale = weight / total``, with
  ``total`` the weights of all the step's micro-batches (of all processes when several
  train together), so the summed gradient is that of the mean loss of the whole batch
  however unevenly it was cut;
- ``shard(rank, size)``: from then on ``train_batches`` serves only the share of process
  ``rank`` of ``size`` of each global batch (data-parallel training); shares are disjoint
  and together make the whole batch. Arrays of the state whose names start with a key of
  ``sharded_state`` are this share's part, joined along that axis (in rank order) in a
  checkpoint; ``load_state_dict`` receives them joined and keeps its own part;
- ``evaluate()``: validation metrics (JSON numbers); ``report(step)``: text to show at
  ``report_every`` steps (a language model's sample, with its heading), or None;
- ``state_dict()`` / ``load_state_dict()``: what a resumed run needs to continue exactly
  (data position, carried state, random generators), as JSON plus named host arrays.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..config import Settings
from ..errors import SeqnetWarning
from ..layers import Layer


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch of an optimizer step: the task's ``data`` and ``weight``, the number of
    loss terms its mean loss averages (the denominator of that mean: tokens, texts, tags, or
    the sum of class weights for a class-weighted loss)."""

    data: Any
    weight: float


def share_bounds(count: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of process ``rank``'s share of ``count`` items cut into ``size`` contiguous
    shares as even as can be (the first ``count % size`` get one more), as numpy's array_split."""
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def split_evenly(items: np.ndarray, count: int) -> list[np.ndarray]:
    """``items`` cut into ``count`` contiguous parts as even as can be, empty parts left out."""
    return [part for part in np.array_split(items, count) if len(part)]


UNKNOWN_WARNING = 0.05    # eval warns when more of the predicted tokens than this are <UNK>


def warn_if_mostly_unknown(unknown: int, scored: int, what: str = "corpus") -> None:
    """A SeqnetWarning when more than :data:`UNKNOWN_WARNING` of the ``scored`` predicted tokens
    are <UNK> (``unknown`` of them): the scores then say how well <UNK> itself is predicted."""
    if scored and unknown > UNKNOWN_WARNING * scored:
        warnings.warn(f"{unknown:,} of the {scored:,} predicted tokens ({unknown / scored:.1%}) are unknown to "
                      f"the model's vocabulary (<UNK>: words beyond --max-words, or tokens the training data "
                      f"lacks); the bits per token of this {what} partly measure how well <UNK> itself is "
                      "predicted", SeqnetWarning, stacklevel=3)


class Task:
    """Base class of training tasks; see the module docstring for the protocol."""

    kind: ClassVar[str]                      # the registry key, stored in run directories
    Config: ClassVar[type[Settings]]         # the task's settings
    model: Layer
    config: Settings
    report_every: int | None = None
    tokens_per_step: int = 0                 # for throughput figures
    loss_unit: str = "bits per token"        # what the mean loss of loss_and_grads averages over, in bits
    sharded_state: ClassVar[dict[str, int]] = {}   # state array name prefix -> axis of the processes' parts
    rank, size = 0, 1                        # this process's share of each batch (see shard)

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

    def shard(self, rank: int, size: int) -> None:
        """Serve only process ``rank``'s share (of ``size``) of every later batch."""
        self.rank, self.size = int(rank), int(size)

    def train_batches(self, count: int) -> list[MicroBatch]:
        raise NotImplementedError

    def loss_and_grads(self, batch: MicroBatch, grad_scale: float):
        raise NotImplementedError

    def evaluate(self) -> dict:
        return {}

    def report(self, step: int) -> str | None:
        return None

    def state_dict(self) -> tuple[dict, dict]:
        return {}, {}

    def load_state_dict(self, state: dict, arrays: dict) -> None:
        pass
