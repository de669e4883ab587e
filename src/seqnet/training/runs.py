"""Run directories: start a run, resume one, or load its trained model for inference.

A run's truth is its latest intact checkpoint: the config stored there, the task's setup
(vocabulary) and state, the trainer's state. ``config.json`` beside it is a copy for people
to read; editing it changes nothing (resuming says so). The encoded data the run trains on
is the run's own ``tokens.bin``: resuming never reads the original corpus again.

With several processes (``distributed``, see :mod:`.distributed`) rank 0 holds the run
directory and creates (or loads) the run; the other ranks rebuild the same task from what
rank 0 wrote there, so the run directory must be on a filesystem every process sees. A step
that fails on any rank fails on every rank, reported once by rank 0.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..backend import make_backend
from ..config import flag_of
from ..errors import (BackendError, CheckpointError, ConfigError, CorpusError, DistributedError,
                      SeqnetWarning)
from ..tasks import TASKS, LanguageModelConfig, Task
from .checkpoint import Checkpoint, check_run_records, load_checkpoint
from .config import TrainerConfig
from .distributed import make_world
from .run_dir import RunDirectory
from .trainer import Trainer


def configs_of(checkpoint: Checkpoint) -> tuple[type[Task], Any, TrainerConfig]:
    """(task class, task config, trainer config) that a checkpoint was written with; a setting
    that is missing, unknown or out of range is a CheckpointError naming meta.json and the field."""
    config = checkpoint.config
    meta = checkpoint.path / "meta.json"
    if checkpoint.format_version == 1:                 # one flat language-model config
        task_names = {f.name for f in fields(LanguageModelConfig)}
        trainer_names = {f.name for f in fields(TrainerConfig)}
        task_config = _settings(LanguageModelConfig, {k: v for k, v in config.items() if k in task_names},
                                meta, "config", strict=False)
        trainer = {k: v for k, v in config.items() if k in trainer_names}
        # Version 1 used min(warmup, steps // 2) with its only default, 50: that is the automatic warm-up now.
        if trainer.get("warmup") == 50:
            trainer["warmup"] = None
        elif isinstance(trainer.get("warmup"), int) and isinstance(trainer.get("steps"), int):
            trainer["warmup"] = min(trainer["warmup"], trainer["steps"] // 2)
        return TASKS["lm"], task_config, _settings(TrainerConfig, trainer, meta, "config", strict=False)
    check_run_records(checkpoint)
    task_json = dict(config["task"])
    kind = task_json.pop("kind", None)
    if not isinstance(kind, str) or kind not in TASKS:
        raise CheckpointError(f"{meta}: field config.task.kind: expected one of {', '.join(sorted(TASKS))}, "
                              f"received {kind!r} (edited or damaged)")
    if checkpoint.task.get("kind") != kind:
        raise CheckpointError(f"{meta}: field task.kind: expected {kind!r} (config.task.kind), received "
                              f"{checkpoint.task.get('kind')!r} (edited or damaged)")
    task_cls = TASKS[kind]
    return (task_cls, _settings(task_cls.Config, task_json, meta, "config.task"),
            _settings(TrainerConfig, config.get("trainer"), meta, "config.trainer"))


def _settings(cls, data: Any, meta: Path, where: str, strict: bool = True):
    """``cls`` (a Settings class) from the record ``where`` of ``meta``: every field present
    (``strict``: a checkpoint records all of them), no unknown one, each of its kind."""
    def damaged(field: str, text: str) -> CheckpointError:
        return CheckpointError(f"{meta}: field {where}{field}: {text} (edited or damaged)")

    if not isinstance(data, dict):
        raise damaged("", f"expected an object, received {type(data).__name__}")
    declared = {f.name: f for f in fields(cls)}
    for name in sorted(set(data) - set(declared)):
        raise damaged(f".{name}", f"unknown setting; known ones are {', '.join(sorted(declared))}")
    for name, f in declared.items():
        if name not in data:
            if strict:
                raise damaged(f".{name}", "missing (a checkpoint records every setting)")
        elif f.default is not None and not _same_type(data[name], f.default):
            raise damaged(f".{name}", f"expected a value like {f.default!r}, received {json.dumps(data[name])[:60]}")
    try:
        return cls.from_json(data, where)
    except ConfigError as err:                          # its message names the flag of the setting
        flag, _, rest = str(err).partition(":")
        by_flag = {flag_of(f): name for name, f in declared.items()}
        if flag in by_flag:
            raise damaged(f".{by_flag[flag]}", rest.strip()) from None
        raise damaged("", str(err)) from None
    except (TypeError, ValueError) as err:
        raise damaged("", f"{type(err).__name__}: {err}") from None


def _same_type(value: Any, default: Any) -> bool:
    """Whether ``value`` read from JSON has the type of a setting whose default is ``default``."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))      # the kind of the setting says which numbers
    return isinstance(value, type(default))


@contextlib.contextmanager
def _as_damage(checkpoint: Checkpoint, passing: tuple = (CorpusError,)):
    """What goes wrong while a checkpoint's records are taken up (the task rebuilt from its
    setup, its state, the optimizer's) is damage of that checkpoint: a CheckpointError naming
    its meta.json, so that the newest intact checkpoint is used instead. A missing backend, a
    failed process and ``passing`` (while the task is rebuilt: a damaged token file) are not."""
    try:
        yield
    except CheckpointError as err:
        if str(checkpoint.path) in str(err):
            raise
        raise CheckpointError(f"{checkpoint.path / 'meta.json'}: {err} (edited or damaged)") from err
    except (BackendError, DistributedError, *passing):
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        raise CheckpointError(f"{checkpoint.path / 'meta.json'}: its records do not describe a usable "
                              f"{checkpoint.task.get('kind')} run ({type(err).__name__}: {err}); edited or "
                              "damaged") from err


def _held(run: RunDirectory | str | Path | None, *, new: bool) -> RunDirectory:
    if isinstance(run, RunDirectory):
        return run
    if run is None and new:
        return RunDirectory.claim_default()
    return RunDirectory.claim(run) if new else RunDirectory.open_for_resume(run)


def new_run(kind: str, task_config, trainer_config: TrainerConfig, run: RunDirectory | str | Path | None,
            *, distributed="auto", **trainer_options) -> Trainer:
    """A trainer for a fresh run of task ``kind`` (data read and model built now) in ``run``: a
    RunDirectory this process holds, a path to claim, or None (the first free runs/default[-N]).
    If the setup fails, what it created is removed."""
    if not isinstance(kind, str) or kind not in TASKS:
        raise ConfigError(f"kind: expected one of {', '.join(TASKS)}, received {kind!r}")
    if not isinstance(task_config, TASKS[kind].Config):
        raise ConfigError(f"task_config: expected a {TASKS[kind].Config.__name__} for kind {kind!r}, received "
                          f"{type(task_config).__name__}")
    world = make_world(distributed)
    task_config.validate()
    trainer_config.validate()
    if world.size > 1:
        return _new_job_run(world, kind, task_config, trainer_config, run, trainer_options)
    run = _held(run, new=True)
    try:
        task = TASKS[kind].create(task_config, run.path, **_build_options(trainer_config, world))
        return Trainer(task, trainer_config, run, distributed=world, **trainer_options)
    except BaseException:
        run.abandon()
        raise


def _build_options(trainer_config: TrainerConfig, world) -> dict:
    return dict(backend=trainer_config.backend, device=world.device_for(trainer_config.backend, trainer_config.device),
                dtype=trainer_config.dtype, seed=trainer_config.seed)


def _root_first(world, act):
    """Rank 0 runs ``act()`` -> (its result, a JSON record for the others); every rank gets the
    record. If rank 0 failed, it raises its error and the others one it reports."""
    result = record = error = None
    if world.is_root:
        try:
            result, record = act()
        except BaseException as err:            # noqa: BLE001 - the others must hear of it first
            error = err
    record = world.bcast_json(None if error is not None else record)
    if error is not None:
        raise error
    if record is None:
        raise world.everywhere(DistributedError("rank 0 could not start the run (its message says why)"))
    return result, record


def _new_job_run(world, kind, task_config, trainer_config, run, trainer_options) -> Trainer:
    """new_run with several processes: rank 0 claims the directory and creates the task (its
    encoded data lands there), the others rebuild it from rank 0's setup."""
    build = _build_options(trainer_config, world)

    def create():
        held = _held(run, new=True)
        try:
            task = TASKS[kind].create(task_config, held.path, **build)
        except BaseException:
            held.abandon()
            raise
        return (held, task), {"run_dir": str(held.path.absolute()), "task": task_config.to_json(),
                              "setup": task.setup()}

    created, record = _root_first(world, create)
    held, task = created if created is not None else (None, None)
    try:
        error = None
        try:
            if not world.is_root:
                task_cls = TASKS[kind]
                with world.quiet():
                    task = task_cls.rebuild(task_cls.Config.from_json(record["task"], "rank 0's settings"),
                                            record["setup"], run_dir=Path(record["run_dir"]), **build)
        except BaseException as err:            # noqa: BLE001 - every rank learns of it (agree)
            error = err
        world.agree(error)
        return Trainer(task, trainer_config, held if world.is_root else record["run_dir"], distributed=world,
                       **trainer_options)
    except BaseException:
        if held is not None:
            held.abandon()
        raise


def resume_run(run: RunDirectory | str | Path, *, distributed="auto", backend: str | None = None, device: Any = None,
               **trainer_options) -> Trainer:
    """A trainer that continues the run in ``run`` from its latest intact checkpoint. Nothing in
    the run directory changes until :meth:`Trainer.run`. With several processes, any number of
    them continues a run written by any number. ``backend`` / ``device`` move the run to
    another array library or device (checkpoints hold host arrays; the later ones record the
    move); a device alone keeps the run's backend."""
    world = make_world(distributed)
    moved = {k: v for k, v in (("backend", backend), ("device", device)) if v is not None}
    if backend is not None:
        moved.setdefault("device", None)
    if world.size > 1:
        return _resume_job_run(world, run, trainer_options, moved)
    replace(TrainerConfig(), **moved).validate()
    run = _held(run, new=False)

    def use(checkpoint: Checkpoint) -> Trainer:
        task_cls, task_config, trainer_config = configs_of(checkpoint)
        if moved:                                       # the caller's placement: its errors are not damage
            trainer_config = replace(trainer_config, **moved).validate()
            options = _build_options(trainer_config, world)
            make_backend(options["backend"], options["device"])
        with _as_damage(checkpoint):
            trainer_config = replace(trainer_config, **moved).validate()
            task = task_cls.rebuild(task_config, checkpoint.task["setup"], run_dir=run.path,
                                    **_build_options(trainer_config, world))
        with _as_damage(checkpoint, passing=()):        # the checkpoint's state, for the run's own data
            trainer = Trainer(task, trainer_config, run, distributed=world, **trainer_options).restore(checkpoint)
        _warn_if_config_json_edited(run.path, checkpoint)
        return trainer

    try:
        return load_checkpoint(run.path, use=use)
    except BaseException:
        run.release()
        raise


def _resume_job_run(world, run, trainer_options, moved: dict) -> Trainer:
    """resume_run with several processes: rank 0 takes the directory; every rank reads the checkpoint."""
    def take():
        held = _held(run, new=False)
        return held, str(held.path.absolute())

    held, record = _root_first(world, take)
    path = Path(record)
    try:
        error = task = None
        try:
            with world.quiet():
                checkpoint = load_checkpoint(path)
                task_cls, task_config, trainer_config = configs_of(checkpoint)
                trainer_config = replace(trainer_config, **moved).validate()
                if world.is_root:
                    _warn_if_config_json_edited(path, checkpoint)
                task = task_cls.rebuild(task_config, checkpoint.task["setup"], run_dir=path,
                                        **_build_options(trainer_config, world))
        except BaseException as err:            # noqa: BLE001 - every rank learns of it (agree)
            error = err
        world.agree(error)
        trainer = Trainer(task, trainer_config, held if world.is_root else path, distributed=world,
                          **trainer_options)
        return trainer.restore(checkpoint)
    except BaseException:
        if held is not None:
            held.release()
        raise


def _warn_if_config_json_edited(run_dir: Path, checkpoint: Checkpoint) -> None:
    try:
        copy = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if checkpoint.format_version == 2 and copy != checkpoint.config:
        warnings.warn(f"{run_dir / 'config.json'} differs from the settings in the checkpoint; it is a copy for "
                      "reading and the checkpoint's settings apply (change --steps on --resume, or start a new "
                      "phase with --new-phase)", SeqnetWarning, stacklevel=3)


def load_task(run_dir: str | Path, backend: str | None = None, device: Any = None) -> Task:
    """The trained task of a run directory for inference (weights loaded; no data, no optimizer),
    on ``backend`` and ``device`` (default: the run's own; a device alone keeps the run's backend)."""
    def use(checkpoint: Checkpoint) -> Task:
        task_cls, task_config, trainer_config = configs_of(checkpoint)
        on, where = (trainer_config.backend, trainer_config.device if device is None else device) \
            if backend is None else (backend, device)
        if backend is not None or device is not None:   # the caller's placement: its errors are not damage
            make_backend(on, where)
        with _as_damage(checkpoint):
            task = task_cls.rebuild(task_config, checkpoint.task["setup"], backend=on, device=where,
                                    dtype=trainer_config.dtype, seed=trainer_config.seed)
            task.model.load_state_dict(checkpoint.weights)
        return task

    return load_checkpoint(run_dir, optimizer=False, use=use)


def load_model(run_dir: str | Path, backend: str | None = None, device: Any = None):
    """The trained model of a run directory (a language model comes with its tokenizer)."""
    return load_task(run_dir, backend, device).model
