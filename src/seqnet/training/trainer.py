"""The training loop: any task, one model, an optimizer, evaluation, checkpoints.

:class:`Trainer` knows nothing about what is learned (see :mod:`seqnet.tasks`). One step:

    lr = schedule(step); model.zero_grad()
    for each of the k micro-batches: task.loss_and_grads(batch, grad_scale=1/k)
    reduce_gradients(grads)                  # all gradients, between backward and clipping
    clip by value, clip by global norm; optimizer.step(params, grads)

Losses stay on the device and are read back every ``log_every`` steps (and at every
evaluation and checkpoint), where a NaN or infinite loss stops the run. A run killed at any
moment resumes from the last checkpoint and follows the same trajectory as an
uninterrupted run: the checkpoint holds the weights, the optimizer state and the task's
state (data position, carried state, random generators).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..backend import to_numpy
from ..errors import NonFiniteLossError
from ..tasks import Task
from .checkpoint import save_checkpoint
from .clipping import clip_grad_norm, clip_grad_value
from .config import TrainerConfig
from .optimizers import make_optimizer
from .schedules import make_schedule


class Trainer:
    """Trains ``task.model`` on ``task``'s data under ``config``; writes ``run_dir``."""

    def __init__(self, task: Task, config: TrainerConfig, run_dir: str | Path, *,
                 log: Callable[[str], None] | None = None, json_lines: bool = False, progress: bool = True):
        self.task, self.config = task, config.validate()
        self.model = task.model
        self.run_dir = Path(run_dir)
        self.json_lines, self.progress = json_lines, progress
        self.log = log or (lambda text: print(text, file=sys.stderr if json_lines else sys.stdout, flush=True))
        self.optimizer = make_optimizer(config.optimizer, self.model.params, config.lr)
        self.step = 0
        self.history: list[tuple[int, float]] = []

    # -- one step -------------------------------------------------------------------------
    def reduce_gradients(self, grads) -> None:
        """The one place where the gradients of all parameters are complete, before clipping
        and the update (``grads``: the model's live ``param_grads``). One process: nothing to
        do; data-parallel training sums them across processes here."""

    def train_step(self):
        """One optimizer step over ``config.accumulate`` micro-batches; returns the mean loss (0-d device array)."""
        cfg, model, xp = self.config, self.model, self.model.backend.xp
        self.optimizer.lr = self.schedule(self.step)
        model.zero_grad()
        batches = self.task.train_batches(cfg.accumulate)
        loss = None
        for batch in batches:
            part = self.task.loss_and_grads(batch, 1.0 / len(batches))
            loss = part if loss is None else loss + part
        grads = model.param_grads
        self.reduce_gradients(grads)
        if cfg.clip_value > 0:
            clip_grad_value(grads, cfg.clip_value, xp=xp)
        if cfg.clip > 0:
            clip_grad_norm(grads, cfg.clip, xp=xp)
        self.optimizer.step(model.params, grads)
        self.step += 1
        return loss if len(batches) == 1 else loss / len(batches)

    @property
    def schedule(self):
        cfg = self.config
        key = (cfg.schedule, cfg.lr, cfg.steps, cfg.warmup_steps)
        if getattr(self, "_schedule_key", None) != key:
            self._schedule_key = key
            self._schedule = make_schedule(cfg.schedule, cfg.lr, cfg.steps, warmup_steps=cfg.warmup_steps)
        return self._schedule

    # -- checkpoints ----------------------------------------------------------------------
    def save(self) -> None:
        opt_json, opt_arrays = self.optimizer.state_dict()
        task_json, task_arrays = self.task.state_dict()
        save_checkpoint(
            self.run_dir, step=self.step,
            config={"task": {"kind": self.task.kind, **self.task.config.to_json()}, "trainer": self.config.to_json()},
            task={"kind": self.task.kind, "setup": self.task.setup(), "state": task_json},
            trainer={"optimizer": opt_json, "history": self.history[-2000:]},
            weights={k: to_numpy(v) for k, v in self.model.state_dict().items()},
            optimizer_arrays=opt_arrays, task_arrays=task_arrays,
        )

    def restore(self, checkpoint) -> "Trainer":
        """Continue from ``checkpoint`` (see :func:`seqnet.training.checkpoint.load_checkpoint`)."""
        self.model.load_state_dict(checkpoint.weights)
        self.optimizer = make_optimizer(self.config.optimizer, self.model.params, self.config.lr)
        self.optimizer.load_state_dict(checkpoint.trainer["optimizer"], checkpoint.optimizer_arrays, self.model.backend)
        self.task.load_state_dict(checkpoint.task["state"], checkpoint.task_arrays)
        self.step = checkpoint.step
        self.history = [tuple(p) for p in checkpoint.trainer.get("history", [])]
        return self

    # -- the loop -------------------------------------------------------------------------
    def _check_losses(self, pending: list) -> float:
        """Read back the losses of the last few steps; stop on the first NaN or inf."""
        values = [float(v) for v in to_numpy(self.model.backend.xp.stack([loss for _, loss in pending]))]
        for (step, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss became {value} at step {step}; stopping. The last good checkpoint in {self.run_dir} "
                    f"is intact (resume with --resume after lowering --lr or setting --clip)")
            self.history.append((step, value))
        pending.clear()
        return values[-1]

    def emit(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.json_lines:
            print(json.dumps(record), flush=True)

    def run(self) -> dict:
        from tqdm import tqdm

        cfg, task = self.config, self.task
        self.log(f"run directory: {self.run_dir}  |  {task.describe()}, backend {self.model.backend.name}")
        pending: list = []
        last_loss, metrics, started, start_step = float("nan"), {}, time.perf_counter(), self.step
        tok_s = 0.0
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True, unit="step")

        def due(every: int | None) -> bool:
            return bool(every) and self.step % every == 0

        try:
            while self.step < cfg.steps:
                pending.append((self.step, self.train_step()))
                bar.update(1)
                last = self.step == cfg.steps
                boundary = last or due(cfg.checkpoint_every) or due(cfg.eval_every) or due(task.report_every)
                if due(cfg.log_every) or boundary:
                    last_loss = self._check_losses(pending)
                    elapsed = time.perf_counter() - started
                    tok_s = (self.step - start_step) * task.tokens_per_step / max(elapsed, 1e-9)
                    bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tok_s:,.0f}")
                if due(cfg.eval_every) or last:
                    metrics = task.evaluate()
                    self.emit({"event": "eval", "step": self.step, "train_loss": last_loss, **metrics,
                               "tokens_per_s": tok_s, "lr": self.optimizer.lr})
                if due(task.report_every) and not last:
                    text = task.report(self.step)
                    if text is not None:
                        bar.clear()
                        self.log(text)
                if due(cfg.checkpoint_every) or last:
                    self.save()
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
        summary = {"event": "summary", "steps": self.step, "train_loss": last_loss, **metrics,
                   "tokens_per_s": (self.step - start_step) * task.tokens_per_step / max(elapsed, 1e-9),
                   "seconds": elapsed, "run_dir": str(self.run_dir)}
        self.emit(summary)
        write_loss_plot(self.run_dir, self.history)
        return summary


def write_loss_plot(run_dir: Path, history: list) -> Path | None:
    """loss.png of the training loss; skipped when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    steps, losses = zip(*history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, np.asarray(losses) / math.log(2))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (bits per token)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
