"""The training loop: any task, one model, an optimizer, evaluation, checkpoints.

:class:`Trainer` knows nothing about what is learned (see :mod:`seqnet.tasks`). One step:

    lr = schedule(step - phase_start); model.zero_grad()
    micro-batches = task.train_batches(k); total = their weights (loss terms), all processes'
    for each micro-batch: task.loss_and_grads(batch, grad_scale=batch.weight / total)
    reduce_gradients(grads, loss)            # all gradients, between backward and clipping
    clip by value, clip by global norm; optimizer.step(params, grads)

Scaling each micro-batch's mean-loss gradient by its share of the loss terms makes the sum
the gradient of the mean loss of the whole batch, however unevenly it was cut. With
several processes (:mod:`.distributed`, ``distributed=``) each trains on its share of every
batch, ``reduce_gradients`` sums the gradients of all of them, and every process then clips
and steps identically; only rank 0 prints and writes.

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
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..backend import to_numpy
from ..errors import DistributedError, NonFiniteLossError
from ..files import atomic_writer
from ..random_state import rng_from_json, rng_to_json
from ..tasks import Task
from .checkpoint import newest_checkpoint_step, save_checkpoint, set_aside_diverged
from .clipping import clip_grad_norm, clip_grad_value
from .config import TrainerConfig
from .distributed import make_world
from .optimizers import make_optimizer
from .output import Progress, json_text, write_line
from .run_dir import RunDirectory, RunFollower
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
    (then nothing is locked: the caller promises to be the only writer). ``distributed``:
    "auto" (data-parallel over MPI when an MPI launcher started several processes), "mpi",
    "off", or a world of :mod:`.distributed`. With several processes every one of them builds
    its Trainer at the same point (best through :func:`~seqnet.training.new_run` and
    :func:`~seqnet.training.resume_run`); rank 0 holds ``run`` and the others only read it.
    """

    def __init__(self, task: Task, config: TrainerConfig, run: RunDirectory | str | Path, *,
                 log: Callable[[str], None] | None = None, json_lines: bool = False, progress: bool = True,
                 distributed="auto"):
        self.world = world = make_world(distributed)
        error = None
        try:
            self.task, self.config = task, config.validate()
            if world.size > 1:
                task.shard(world.rank, world.size)
            task.check_trainer_config(self.config)
            self.model = task.model
            if world.is_root:
                self.directory = run if isinstance(run, RunDirectory) else RunDirectory(run)
            else:                                       # rank 0 writes; this rank reads, prints nothing
                self.directory = RunFollower(run.path if isinstance(run, RunDirectory) else run)
                log, json_lines, progress = (lambda text: None), False, False
            self.run_dir = self.directory.path
            self.json_lines, self.progress = json_lines, progress
            self.log = log or (lambda text: write_line(sys.stderr if json_lines else sys.stdout, text))
            self.optimizer = make_optimizer(config.optimizer, self.model.params, config.lr)
            self.step = 0
            self.history: list[tuple[int, float]] = []          # (step, training loss in bits per token)
            self.phases: list[dict] = []
            self._stop: int | None = None
            self._votes = (0, 0)                                # the job's (SIGINT, SIGTERM) votes this step
            self._decorrelate_dropout()
        except BaseException as err:                    # noqa: BLE001 - every rank learns of it (agree)
            error = err
        world.agree(error)
        self.reducer = world.gradient_reducer(self.model)

    def _decorrelate_dropout(self, saved: list | None = None) -> None:
        """Each process draws its own dropout masks: rank r's generator is rank 0's jumped r
        times (2^127 draws each), or the one it had when the checkpoint was written by as
        many processes (``saved``)."""
        rng = getattr(self.model, "dropout_rng", None)
        if rng is None or self.world.size == 1:
            return
        if isinstance(saved, list) and len(saved) == self.world.size:
            rng.bit_generator.state = rng_from_json(saved[self.world.rank]).bit_generator.state
        elif self.world.rank:
            rng.bit_generator.state = rng.bit_generator.jumped(self.world.rank).state

    # -- one step -------------------------------------------------------------------------
    def reduce_gradients(self, grads, loss):
        """The one place where the gradients of all parameters are complete, before clipping
        and the update (``grads``: the model's live ``param_grads``; ``loss``: this process's
        part of the step's loss). One process: nothing to do; data-parallel training sums
        both over all processes here. Returns the loss of the whole step."""
        return loss if self.reducer is None else self.reducer(grads, loss)

    def train_step(self):
        """One optimizer step over ``config.accumulate`` micro-batches; returns the mean loss
        (nats per token, a 0-d device array)."""
        cfg, model, xp = self.config, self.model, self.model.backend.xp
        self.optimizer.lr = self.schedule(self.step - cfg.phase_start)
        model.zero_grad()
        batches = self.task.train_batches(cfg.accumulate)
        votes = (int(self._stop == signal.SIGINT), int(self._stop == signal.SIGTERM))
        total, self._votes = self.world.step_totals(float(sum(batch.weight for batch in batches)), votes)
        if not total > 0:
            raise DistributedError(f"step {self.step}: the batch holds no loss terms on any process")
        loss = None
        for batch in batches:
            share = batch.weight / total
            part = self.task.loss_and_grads(batch, share) * share
            loss = part if loss is None else loss + part
        if loss is None:                            # this process's share of the batch is empty
            loss = model.backend.zeros((), model.dtype)
        grads = model.param_grads
        loss = self.reduce_gradients(grads, loss)
        if cfg.clip_value > 0:
            clip_grad_value(grads, cfg.clip_value, xp=xp)
        if cfg.clip > 0:
            clip_grad_norm(grads, cfg.clip, xp=xp)
        self.optimizer.step(model.params, grads)
        self.step += 1
        return loss

    def _stopping(self) -> int | None:
        """The signal that stops the run after this step: this process's own, or with several
        the one the processes voted for (so that all stop after the same step)."""
        if self.world.size == 1:
            return self._stop
        sigint, sigterm = self._votes
        return signal.SIGTERM if sigterm else signal.SIGINT if sigint else None

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
        """Write a checkpoint of the whole job (with several processes: a collective call;
        the parameters are compared across processes first, and rank 0 writes)."""
        world = self.world
        world.check_same_parameters(self.model.params, self.step)
        self._check_parameters()
        task_json, task_arrays = self.task.state_dict()
        task_arrays = self._join_shards(task_arrays)
        rng = getattr(self.model, "dropout_rng", None)
        rngs = world.allgather_json(rng_to_json(rng)) if world.size > 1 and rng is not None else None
        if not world.is_root:
            return
        opt_json, opt_arrays = self.optimizer.state_dict()
        steps, bits = (zip(*self.history) if self.history else ((), ()))
        trainer = {"optimizer": opt_json, "phases": self.phases}
        if rngs is not None:
            trainer["dropout_rngs"] = rngs
        save_checkpoint(
            self.run_dir, step=self.step,
            config={"task": {"kind": self.task.kind, **self.task.config.to_json()}, "trainer": self.config.to_json()},
            task={"kind": self.task.kind, "setup": self.task.setup(), "state": task_json},
            trainer=trainer,
            weights={k: to_numpy(v) for k, v in self.model.state_dict().items()},
            optimizer_arrays=opt_arrays, task_arrays=task_arrays,
            trainer_arrays={"history_step": np.asarray(steps, dtype=np.int64),
                            "history_bits": np.asarray(bits, dtype=np.float64)},
        )

    def _join_shards(self, arrays: dict) -> dict:
        """The task's state arrays of all processes: each process's part of a sharded array
        (``task.sharded_state``) joined in rank order, on rank 0."""
        if self.world.size == 1:
            return arrays
        def axis_of(name):
            return next((axis for prefix, axis in self.task.sharded_state.items() if name.startswith(prefix)), None)
        sharded = sorted(name for name in arrays if axis_of(name) is not None)
        names = self.world.allgather_json(sharded)
        if any(other != sharded for other in names):
            raise self.world.everywhere(DistributedError(
                f"step {self.step}: the processes hold different task state arrays ({names}); cannot write a "
                "checkpoint of the job"))
        return {**arrays, **{name: self.world.gather_along(arrays[name], axis_of(name)) for name in sharded}}

    def restore(self, checkpoint) -> "Trainer":
        """Continue from ``checkpoint`` (see :func:`seqnet.training.checkpoint.load_checkpoint`);
        with several processes every one calls this, and a checkpoint of any number of them
        serves."""
        error = None
        try:
            self.model.load_state_dict(checkpoint.weights)
            self.optimizer = make_optimizer(self.config.optimizer, self.model.params, self.config.lr)
            self.optimizer.load_state_dict(checkpoint.trainer["optimizer"], checkpoint.optimizer_arrays,
                                           self.model.backend)
            self.task.load_state_dict(checkpoint.task["state"], checkpoint.task_arrays)
            self.step = checkpoint.step
            arrays = checkpoint.trainer_arrays or {}
            if "history_step" in arrays:
                self.history = [(int(s), float(b)) for s, b in zip(arrays["history_step"], arrays["history_bits"])]
            else:                                             # format 1 kept nats, in JSON
                self.history = [(int(s), float(v) / LOG2) for s, v in checkpoint.trainer.get("history_nats", [])]
            self.phases = list(checkpoint.trainer.get("phases", []))
            self._decorrelate_dropout(checkpoint.trainer.get("dropout_rngs"))
        except BaseException as err:                    # noqa: BLE001 - every rank learns of it (agree)
            error = err
        self.world.agree(error)
        return self

    def _synchronise(self) -> None:
        """Start from rank 0's step, settings, parameters and optimizer state on every process."""
        world = self.world
        if world.size == 1:
            return
        root = world.bcast_json({"step": self.step, "config": self.config.to_json(), "phases": self.phases})
        error = None
        if root["step"] != self.step:
            error = DistributedError(f"rank {world.rank} is at step {self.step} but rank 0 at step {root['step']}: "
                                     f"they read different checkpoints of {self.run_dir}; every process must see "
                                     "the run directory on one shared filesystem")
        world.agree(error)
        if not world.is_root:
            self.config, self.phases = TrainerConfig.from_json(root["config"]), root["phases"]
        backend, params = self.model.backend, self.model.params
        values = world.broadcast_arrays({name: to_numpy(value) for name, value in params.items()})
        opt_json, opt_arrays = self.optimizer.state_dict()
        opt_json, opt_arrays = world.bcast_json(opt_json), world.broadcast_arrays(opt_arrays)
        if not world.is_root:
            for name, value in values.items():
                params[name] = backend.asarray(value, self.model.dtype_name)
            self.optimizer = make_optimizer(self.config.optimizer, self.model.params, self.config.lr)
            self.optimizer.load_state_dict(opt_json, opt_arrays, backend)

    def _write_processes(self) -> None:
        """processes.json: each rank's pid, host and local rank (a launcher names a dead process by its pid)."""
        processes = getattr(self.world, "processes", None)
        if processes is None or not self.world.is_root:
            return
        with atomic_writer(self.run_dir / "processes.json", "w") as f:
            f.write(json.dumps({"ranks": processes}, indent=1) + "\n")

    # -- the loop -------------------------------------------------------------------------
    def _check_losses(self, pending: list) -> float:
        """Read back the losses of the last few steps; stop on the first NaN or inf."""
        values = [float(v) / LOG2 for v in to_numpy(self.model.backend.xp.stack([loss for _, loss in pending]))]
        for (step, _), value in zip(pending, values):
            if not math.isfinite(value):
                what = f"loss became {value} at step {step}"
                # the loss of step s is that of the parameters after s updates: a checkpoint of
                # step s or later holds parameters that diverged, and must not be resumed from
                aside = set_aside_diverged(self.run_dir, step) if self.world.is_root else None
                if aside is not None and newest_checkpoint_step(self.run_dir) is not None:
                    what += f" (with the parameters checkpointed then, now set aside as {aside})"
                raise self.world.everywhere(NonFiniteLossError(self._nan_message(what)))
            self.history.append((step, value))
        pending.clear()
        return values[-1]

    def _check_parameters(self) -> None:
        """Stop before a checkpoint of NaN or infinite parameters is written (an update can
        overflow while the loss it was computed from was finite); every process checks its own
        copy, and they are the same."""
        xp = self.model.backend.xp
        for name, value in self.model.params.items():
            if not bool(xp.all(xp.isfinite(value))):
                raise self.world.everywhere(NonFiniteLossError(self._nan_message(
                    f"the parameters became NaN or infinite at step {self.step} ({name}, among others perhaps); "
                    "no checkpoint of them was written")))

    def _nan_message(self, what: str) -> str:
        cfg = self.config
        last = newest_checkpoint_step(self.run_dir)
        if last is None:
            due = min(cfg.checkpoint_every, cfg.steps)
            when = (f"before the first checkpoint (due at step {due})" if self.step < due else
                    "and no checkpoint of this run gives a finite loss")
            return (f"{what}, {when}; nothing was kept. Start again with a lower --lr (this run's: {cfg.lr:g}), "
                    "or with --clip")
        lower = min(cfg.lr, self.optimizer.lr) / 10
        warmup = " --warmup 0" if cfg.warmup is not None and cfg.warmup >= cfg.steps - last else ""
        return (f"{what}; stopping. The checkpoint of step {last} in {self.run_dir} is intact: continue from it "
                f"with a lower learning rate as a new phase, e.g. seqnet train --out {shlex.quote(str(self.run_dir))} --resume "
                f"--new-phase --steps {cfg.steps} --lr {lower:.1g}{warmup}")

    def emit(self, record: dict) -> None:
        self.directory.append_metrics(record)
        if self.json_lines:
            write_line(sys.stdout, json_text(record))

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
        raises; a second call takes it again. With several processes: an exception on one of
        them ends the whole job (MPI_Abort) with a message naming its rank, except those that
        every process raises at the same step (a non-finite loss, an interruption, parameters
        that differ across processes)."""
        self.directory.acquire()
        try:
            with self.world.ending_on_error((NonFiniteLossError, TrainingInterrupted, DistributedError)):
                self._synchronise()
                # An overflow shows as a non-finite loss or parameters, which stop the run with
                # their own message: numpy's warnings about it would only repeat that, worse.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    return self._run()
        finally:
            self.directory.release()

    def _run(self) -> dict:
        cfg, task = self.config, self.task
        self.directory.rollback_metrics(self.step)
        self.log(f"run directory: {self.run_dir}  |  {task.describe()}, backend {self.model.backend.name}")
        if self.reducer is not None:
            self.log(self.world.describe(self.reducer))
            self._write_processes()
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
                signum = self._stopping()
                stopping = signum is not None
                boundary = last or stopping or due(cfg.checkpoint_every) or due(cfg.eval_every) or due(task.report_every)
                if due(cfg.log_every) or boundary:
                    last_bits = self._check_losses(pending)
                    tok_s = (self.step - start_step) * task.tokens_per_step / max(time.perf_counter() - started, 1e-9)
                progress.update(self.step, last_bits if not pending else None, tok_s, force=boundary)
                if due(cfg.eval_every) or last:
                    metrics = self.world.bcast_json(task.evaluate() if self.world.is_root else None)
                    self.emit({"event": "eval", "step": self.step, train_key: last_bits, **metrics,
                               "tokens_per_s": tok_s, "lr": self.optimizer.lr})
                if due(task.report_every) and not last and not stopping and self.world.is_root:
                    text = task.report(self.step)
                    if text is not None:
                        progress.clear()
                        self.log(text)
                if due(cfg.checkpoint_every) or last or stopping:
                    self.save()
                if stopping and not last:           # at the last step the run just ends, summary and all
                    self.emit({"event": "interrupted", "step": self.step})
                    raise TrainingInterrupted(self.step, signum, self.run_dir)
        finally:
            progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        elapsed = time.perf_counter() - started
        summary = {"event": "summary", "steps": self.step, train_key: last_bits, **metrics,
                   "tokens_per_s": (self.step - start_step) * task.tokens_per_step / max(elapsed, 1e-9),
                   "seconds": elapsed, "run_dir": str(self.run_dir)}
        self.emit(summary)
        if self.world.is_root:
            write_loss_plot(self.run_dir, self.history, self.task.loss_unit)
        return summary

    def complete(self) -> dict | None:
        """For a finished run (:attr:`finished`) that has no summary record of its last step (it
        was stopped after its last checkpoint, before the summary): write the summary, from the
        evaluation record of that step (or a fresh evaluation), and loss.png. Returns the summary,
        or None when the run had one already (or this process does not write)."""
        if not self.finished or not self.world.is_root:
            return None
        self.directory.acquire()
        self.directory.rollback_metrics(self.step)
        records = [r for r in self.directory.read_metrics() if isinstance(r, dict)]
        if any(r.get("event") == "summary" and r.get("steps") == self.step for r in records):
            if not (Path(self.run_dir) / "loss.png").exists():     # stopped between the summary and the plot
                write_loss_plot(self.run_dir, self.history, self.task.loss_unit)
            return None
        train_key = "train_" + self.task.loss_unit.replace(" ", "_")
        evals = [r for r in records if r.get("event") == "eval" and r.get("step") == self.step]
        if evals:
            metrics = {k: v for k, v in evals[-1].items() if k not in ("event", "step", train_key, "tokens_per_s", "lr")}
            tok_s = evals[-1].get("tokens_per_s")
        else:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                metrics, tok_s = self.task.evaluate(), None
        summary = {"event": "summary", "steps": self.step,
                   train_key: self.history[-1][1] if self.history else None, **metrics,
                   "tokens_per_s": tok_s, "seconds": None, "run_dir": str(self.run_dir)}
        self.emit(summary)
        write_loss_plot(self.run_dir, self.history, self.task.loss_unit)
        return summary

    def close(self) -> None:
        """Release the run directory (its lock) before or without :meth:`run`."""
        self.directory.release()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_loss_plot(run_dir: Path, history: list, unit: str = "bits per token", max_points: int = 2000) -> Path | None:
    """loss.png of the training loss in ``unit`` (every point kept in the checkpoints; at most
    ``max_points`` drawn); skipped when matplotlib (the ``plot`` extra) is missing."""
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
    ax.set_ylabel(f"training loss ({unit})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / "loss.png"
    with atomic_writer(path) as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path
