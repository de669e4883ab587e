"""The training loop: any task, one model, an optimizer, evaluation, checkpoints.

:class:`Trainer` knows nothing about what is learned (see :mod:`seqnet.tasks`). One step:

    lr = schedule(step - phase_start); model.zero_grad()
    for each of the k micro-batches: task.loss_and_grads(batch, grad_scale=1/k)
    reduce_gradients(grads)                  # all gradients, between backward and clipping
    clip by value, clip by global norm; optimizer.step(params, grads)

Losses stay on the device and are read back every ``log_every`` steps (and at every
evaluation and checkpoint), where a NaN or infinite loss stops the run. Every figure it
reports is in bits per token. A run killed at any moment resumes from the last checkpoint
and follows the same trajectory as an uninterrupted run: the checkpoint holds the weights,
the optimizer state and the task's state (data position, carried state, random generators).
SIGINT or SIGTERM makes the run finish its step, write a checkpoint and stop
(:class:`TrainingInterrupted`); a second one stops it at once.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..backend import to_numpy
from ..errors import NonFiniteLossError
from ..tasks import Task
from .checkpoint import has_checkpoint, save_checkpoint
from .clipping import clip_grad_norm, clip_grad_value
from .config import TrainerConfig
from .optimizers import make_optimizer
from .output import Progress, write_line
from .run_dir import RunDirectory
from .schedules import make_schedule

LOG2 = math.log(2)


class TrainingInterrupted(Exception):
    """A signal stopped training after a checkpoint of ``step`` was written."""

    def __init__(self, step: int, signum: int, run_dir: Path):
        super().__init__(f"interrupted at step {step}")
        self.step, self.signum, self.run_dir = step, signum, run_dir


class Trainer:
    """Trains ``task.model`` on ``task``'s data under ``config``; writes the run directory ``run``.

    ``run`` is a :class:`~seqnet.training.run_dir.RunDirectory` this process holds, or a path
    (then nothing is locked: the caller promises to be the only writer).
    """

    def __init__(self, task: Task, config: TrainerConfig, run: RunDirectory | str | Path, *,
                 log: Callable[[str], None] | None = None, json_lines: bool = False, progress: bool = True):
        self.task, self.config = task, config.validate()
        task.check_trainer_config(self.config)
        self.model = task.model
        self.directory = run if isinstance(run, RunDirectory) else RunDirectory(run)
        self.run_dir = self.directory.path
        self.json_lines, self.progress = json_lines, progress
        self.log = log or (lambda text: write_line(sys.stderr if json_lines else sys.stdout, text))
        self.optimizer = make_optimizer(config.optimizer, self.model.params, config.lr)
        self.step = 0
        self.history: list[tuple[int, float]] = []          # (step, training loss in bits per token)
        self.phases: list[dict] = []
        self._stop: int | None = None

    # -- one step -------------------------------------------------------------------------
    def reduce_gradients(self, grads) -> None:
        """The one place where the gradients of all parameters are complete, before clipping
        and the update (``grads``: the model's live ``param_grads``). One process: nothing to
        do; data-parallel training sums them across processes here."""

    def train_step(self):
        """One optimizer step over ``config.accumulate`` micro-batches; returns the mean loss
        (nats per token, a 0-d device array)."""
        cfg, model, xp = self.config, self.model, self.model.backend.xp
        self.optimizer.lr = self.schedule(self.step - cfg.phase_start)
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
        """The learning rate of each step of the current phase (0 = the phase's first)."""
        cfg = self.config
        key = (cfg.schedule, cfg.lr, cfg.phase_steps, cfg.warmup_steps)
        if getattr(self, "_schedule_key", None) != key:
            self._schedule_key = key
            self._schedule = make_schedule(cfg.schedule, cfg.lr, cfg.phase_steps, warmup_steps=cfg.warmup_steps)
        return self._schedule

    def new_phase(self, changes: dict) -> None:
        """Start a fresh schedule at the current step with ``changes`` to the phase settings
        (:attr:`TrainerConfig.PHASE_SETTINGS`); recorded in the run's phases."""
        cfg = self.config
        refused = sorted(set(changes) - set(cfg.PHASE_SETTINGS))
        if refused:
            raise ValueError(f"a new phase cannot change {refused}")
        for name, value in changes.items():
            setattr(cfg, name, value)
        cfg.phase_start = self.step
        cfg.validate()
        self.phases.append({"start_step": self.step, **{k: getattr(cfg, k) for k in cfg.PHASE_SETTINGS}})

    @property
    def finished(self) -> bool:
        return self.step >= self.config.steps

    # -- checkpoints ----------------------------------------------------------------------
    def save(self) -> None:
        opt_json, opt_arrays = self.optimizer.state_dict()
        task_json, task_arrays = self.task.state_dict()
        steps, bits = (zip(*self.history) if self.history else ((), ()))
        save_checkpoint(
            self.run_dir, step=self.step,
            config={"task": {"kind": self.task.kind, **self.task.config.to_json()}, "trainer": self.config.to_json()},
            task={"kind": self.task.kind, "setup": self.task.setup(), "state": task_json},
            trainer={"optimizer": opt_json, "phases": self.phases},
            weights={k: to_numpy(v) for k, v in self.model.state_dict().items()},
            optimizer_arrays=opt_arrays, task_arrays=task_arrays,
            trainer_arrays={"history_step": np.asarray(steps, dtype=np.int64),
                            "history_bits": np.asarray(bits, dtype=np.float64)},
        )

    def restore(self, checkpoint) -> "Trainer":
        """Continue from ``checkpoint`` (see :func:`seqnet.training.checkpoint.load_checkpoint`)."""
        self.model.load_state_dict(checkpoint.weights)
        self.optimizer = make_optimizer(self.config.optimizer, self.model.params, self.config.lr)
        self.optimizer.load_state_dict(checkpoint.trainer["optimizer"], checkpoint.optimizer_arrays, self.model.backend)
        self.task.load_state_dict(checkpoint.task["state"], checkpoint.task_arrays)
        self.step = checkpoint.step
        arrays = checkpoint.trainer_arrays or {}
        if "history_step" in arrays:
            self.history = [(int(s), float(b)) for s, b in zip(arrays["history_step"], arrays["history_bits"])]
        else:                                             # format 1 kept nats, in JSON
            self.history = [(int(s), float(v) / LOG2) for s, v in checkpoint.trainer.get("history_nats", [])]
        self.phases = list(checkpoint.trainer.get("phases", []))
        return self

    # -- the loop -------------------------------------------------------------------------
    def _check_losses(self, pending: list) -> float:
        """Read back the losses of the last few steps; stop on the first NaN or inf."""
        values = [float(v) / LOG2 for v in to_numpy(self.model.backend.xp.stack([loss for _, loss in pending]))]
        for (step, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise NonFiniteLossError(self._nan_message(step, value))
            self.history.append((step, value))
        pending.clear()
        return values[-1]

    def _nan_message(self, step: int, value: float) -> str:
        cfg = self.config
        if not has_checkpoint(self.run_dir):
            return (f"loss became {value} at step {step}, before the first checkpoint (due at step "
                    f"{cfg.checkpoint_every}); nothing was kept. Start again with a lower --lr (this run's: {cfg.lr:g}), "
                    "or with --clip")
        last = json.loads((self.run_dir / "latest.json").read_text()).get("step")
        return (f"loss became {value} at step {step}; stopping. The checkpoint of step {last} in {self.run_dir} is "
                f"intact: continue from it with a lower learning rate as a new phase, e.g. seqnet train --out "
                f"{self.run_dir} --resume --new-phase --lr {cfg.lr / 10:g}")

    def emit(self, record: dict) -> None:
        self.directory.append_metrics(record)
        if self.json_lines:
            write_line(sys.stdout, json.dumps(record))

    def _handle_signal(self, signum, frame) -> None:
        if self._stop is not None:                      # the second one: stop now
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        self._stop = signum

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._handle_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(self) -> dict:
        """Train up to ``config.steps``; returns the summary record (also written to metrics.jsonl).

        The run directory is held (locked) while this runs and released when it returns or
        raises; a second call takes it again."""
        self.directory.acquire()
        try:
            return self._run()
        finally:
            self.directory.release()

    def _run(self) -> dict:
        cfg, task = self.config, self.task
        self.directory.rollback_metrics(self.step)
        self.log(f"run directory: {self.run_dir}  |  {task.describe()}, backend {self.model.backend.name}")
        pending: list = []
        last_bits = self.history[-1][1] if self.history else None
        metrics, started, start_step, tok_s = {}, time.perf_counter(), self.step, 0.0
        progress = Progress(cfg.steps, self.step, enabled=self.progress, unit=task.loss_unit)
        train_key = "train_" + task.loss_unit.replace(" ", "_")

        def due(every: int | None) -> bool:
            return bool(every) and self.step % every == 0

        previous, self._stop = self._install_signals(), None
        try:
            while self.step < cfg.steps:
                pending.append((self.step, self.train_step()))
                last = self.step == cfg.steps
                stopping = self._stop is not None
                boundary = last or stopping or due(cfg.checkpoint_every) or due(cfg.eval_every) or due(task.report_every)
                if due(cfg.log_every) or boundary:
                    last_bits = self._check_losses(pending)
                    tok_s = (self.step - start_step) * task.tokens_per_step / max(time.perf_counter() - started, 1e-9)
                progress.update(self.step, last_bits if not pending else None, tok_s, force=boundary)
                if due(cfg.eval_every) or last:
                    metrics = task.evaluate()
                    self.emit({"event": "eval", "step": self.step, train_key: last_bits, **metrics,
                               "tokens_per_s": tok_s, "lr": self.optimizer.lr})
                if due(task.report_every) and not last and not stopping:
                    text = task.report(self.step)
                    if text is not None:
                        progress.clear()
                        self.log(text)
                if due(cfg.checkpoint_every) or last or stopping:
                    self.save()
                if stopping:
                    self.emit({"event": "interrupted", "step": self.step})
                    raise TrainingInterrupted(self.step, self._stop, self.run_dir)
        finally:
            progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        elapsed = time.perf_counter() - started
        summary = {"event": "summary", "steps": self.step, train_key: last_bits, **metrics,
                   "tokens_per_s": (self.step - start_step) * task.tokens_per_step / max(elapsed, 1e-9),
                   "seconds": elapsed, "run_dir": str(self.run_dir)}
        self.emit(summary)
        write_loss_plot(self.run_dir, self.history)
        return summary

    def close(self) -> None:
        """Release the run directory (its lock) before or without :meth:`run`."""
        self.directory.release()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_loss_plot(run_dir: Path, history: list, max_points: int = 2000) -> Path | None:
    """loss.png of the training loss (every point kept in the checkpoints; at most ``max_points``
    drawn); skipped when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    steps, bits = (np.asarray(a) for a in zip(*history))
    if len(steps) > max_points:
        pick = np.linspace(0, len(steps) - 1, max_points).astype(int)
        steps, bits = steps[pick], bits[pick]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, bits)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (bits per token)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / "loss.png"
    from ..files import atomic_writer

    with atomic_writer(path) as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path
