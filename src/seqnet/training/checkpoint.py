"""Crash-safe checkpoints: numpy arrays in safetensors (or .npz) files, everything else in JSON.

Layout of a run directory::

    run_dir/
      config.json                  the config, for humans (rewritten atomically)
      latest.json                  {"checkpoint": "checkpoints/step-00001000", ...}
      checkpoints/
        step-00000500/             meta.json, weights.<ext>, optimizer.<ext>, task.<ext>
        step-00001000/

``meta.json`` (format version 2) holds the step, the run's config, the task's record
(``kind``, the ``setup`` that rebuilds its model, its progress ``state``) and the trainer's
(optimizer settings and step count, loss history); the array files hold the weights (public
layout), the optimizer's state arrays and the task's (the carried recurrent state).
Version-1 checkpoints (language models only, written before tasks existed) are read and
presented in the same form.

A step directory is written in full under a temporary name, fsynced and renamed into place;
only then is ``latest.json`` replaced atomically. That replacement is the commit point: a
crash at any moment leaves ``latest.json`` naming a complete, checksummed checkpoint.

Nothing here unpickles: arrays come from safetensors or from ``np.load(allow_pickle=False)``,
the rest from JSON, so loading a checkpoint cannot run code. Host side only: callers convert
backend arrays to numpy before saving. The run directory has one writer (see run_dir.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from seqnet.errors import CheckpointError, ConfigError, SeqnetWarning
from seqnet import array_files
from seqnet.array_files import ARRAY_SUFFIXES, decode_arrays, encode_arrays, load_arrays, save_arrays
from seqnet.files import atomic_write_bytes, fsync_dir, is_run_directory, umask_mode
from seqnet.random_state import rng_from_json, rng_to_json

__all__ = [
    "Checkpoint",
    "atomic_write_bytes",
    "atomic_write_json",
    "has_checkpoint",
    "load_arrays",
    "load_checkpoint",
    "rng_from_json",
    "rng_to_json",
    "save_arrays",
    "save_checkpoint",
]

FORMAT = "seqnet-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
POINTER_FORMAT = "seqnet-run"

_STEP_DIR = re.compile(r"step-(\d{8,})")
_TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Checkpoint:
    """Everything :func:`save_checkpoint` wrote, read back and verified.

    ``format_version`` 1 means ``config`` is the flat language-model config of that version;
    ``optimizer_arrays`` and ``trainer_arrays`` are None when they were not asked for.
    """

    step: int
    config: dict
    task: dict                      # {"kind", "setup", "state"}
    trainer: dict                   # {"optimizer": ..., "history": [[step, loss], ...]}
    weights: dict[str, np.ndarray]
    optimizer_arrays: dict[str, np.ndarray] | None
    task_arrays: dict[str, np.ndarray]
    path: Path
    format_version: int = FORMAT_VERSION
    trainer_arrays: dict[str, np.ndarray] | None = None


# --------------------------------------------------------------------------- atomic files


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _json_default(value: Any) -> Any:
    # numpy scalars convert exactly; arrays belong in the array files, not in JSON
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__module__}.{type(value).__name__} is not JSON-serializable")


def _check_keys(obj: Any, where: str) -> None:
    """Refuse non-string dict keys: JSON would silently turn ``{1: x}`` into ``{"1": x}``."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"{where}: dict key {key!r} is a {type(key).__name__}, expected str "
                    "(JSON keys are strings and would not round-trip)"
                )
            _check_keys(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_keys(value, f"{where}[{i}]")


def _dumps(obj: Any, path: Path) -> bytes:
    _check_keys(obj, str(path))
    try:
        text = json.dumps(obj, indent=2, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot write {path}: {exc}") from exc
    return (text + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as JSON. Tuples come back as lists; dict keys must be str."""
    path = Path(path)
    atomic_write_bytes(path, _dumps(obj, path))


def _read_json(path: Path, what: str) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what}: {path} does not exist") from exc
    except OSError as exc:
        raise CheckpointError(f"{what}: cannot read {path}: {exc}") from exc
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what}: {path} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what}: {path} holds a JSON {type(obj).__name__}, expected an object")
    return obj


# --------------------------------------------------------------------------- checkpoints


def _step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _stage(checkpoints_dir: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` into a fresh temporary directory next to the step dirs, fsynced."""
    staging = Path(tempfile.mkdtemp(dir=checkpoints_dir, prefix=f"{_TEMP_PREFIX}{name}-"))
    try:
        os.chmod(staging, umask_mode(directory=True))      # mkdtemp creates 0700
        for file_name, data in files.items():
            _write_synced(staging / file_name, data)
        fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _write_pointer(run_dir: Path, step_dir: Path, step: int) -> None:
    pointer = {
        "format": POINTER_FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint": step_dir.relative_to(run_dir).as_posix(),
        "step": step,
    }
    atomic_write_json(run_dir / "latest.json", pointer)


def _read_pointer(run_dir: Path) -> Path:
    """The step directory that ``run_dir/latest.json`` names (checked to lie inside run_dir)."""
    path = run_dir / "latest.json"
    pointer = _read_json(path, "not a seqnet run directory")
    if pointer.get("format") != POINTER_FORMAT:
        raise CheckpointError(
            f"not a seqnet run directory: {path} has format {pointer.get('format')!r}, "
            f"expected {POINTER_FORMAT!r}"
        )
    if pointer.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has format_version {pointer.get('format_version')!r}; this seqnet reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    relative = pointer.get("checkpoint")
    parts = PurePosixPath(relative).parts if isinstance(relative, str) else ()
    if len(parts) != 2 or parts[0] != "checkpoints" or parts[1] in ("..", "."):
        raise CheckpointError(
            f"{path}: 'checkpoint' is {relative!r}, expected 'checkpoints/<step directory>'"
        )
    return run_dir / parts[0] / parts[1]


def _prune(checkpoints_dir: Path, keep: int, protected: Path) -> None:
    """Delete the step dirs older than the newest ``keep`` intact ones (``protected``, just
    written, counts as intact and is never deleted) and staging leftovers. A damaged step dir
    takes no place among the kept: it goes once ``keep`` intact ones are newer than it."""
    kept, doomed = 0, []
    for entry in _step_dirs(checkpoints_dir):           # newest first
        if kept >= keep:
            doomed.append(entry)
        elif entry.name == protected.name or _intact(entry):
            kept += 1
    doomed += [e for e in checkpoints_dir.iterdir() if e.name.startswith(_TEMP_PREFIX)]
    for entry in doomed:
        if entry.name != protected.name:
            shutil.rmtree(entry, ignore_errors=True)
            _VERIFIED.pop(entry, None)


# Step directories this process found intact, with the identity of their meta.json then: a
# step directory is never changed in place once committed, so pruning need not read it again.
_VERIFIED: dict[Path, tuple] = {}


def _identity(step_dir: Path) -> tuple | None:
    try:
        stat = (step_dir / "meta.json").stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _intact(step_dir: Path) -> bool:
    """Whether ``step_dir`` holds a complete checkpoint that loads (every file, every checksum)."""
    identity = _identity(step_dir)
    if identity is not None and _VERIFIED.get(step_dir) == identity:
        return True
    try:
        _load_step_dir(step_dir, optimizer=True)
    except CheckpointError:
        return False
    return True


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    config: dict,
    task: dict,
    trainer: dict,
    weights: dict[str, np.ndarray],
    optimizer_arrays: dict[str, np.ndarray],
    task_arrays: dict[str, np.ndarray],
    trainer_arrays: dict[str, np.ndarray] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint to ``run_dir/checkpoints/step-{step:08d}/`` and commit it.

    The commit point is the atomic replacement of ``run_dir/latest.json``. Afterwards step
    directories older than the newest ``keep`` are deleted. Returns the step directory.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ConfigError(f"step must be a non-negative int, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"keep must be an int >= 1, got {keep!r}")
    step = int(step)
    run_dir = Path(run_dir)
    checkpoints_dir = run_dir / "checkpoints"
    step_dir = checkpoints_dir / _step_dir_name(step)
    try:
        _check_finite(step_dir, weights)
    except CheckpointError as err:              # never commit what no reader would accept
        raise CheckpointError(f"not written: {err}") from None
    checkpoints_dir.mkdir(parents=True, exist_ok=True)

    files: dict[str, bytes] = {}
    manifest: dict[str, dict] = {}
    roles = [("weights", weights), ("optimizer", optimizer_arrays), ("task", task_arrays)]
    if trainer_arrays is not None:
        roles.append(("trainer", trainer_arrays))
    for role, arrays in roles:
        name = role + array_files.suffix()
        data = encode_arrays(arrays, step_dir / name)
        files[name] = data
        manifest[role] = {
            "file": name,
            "names": list(arrays),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config,
        "task": task,
        "trainer": trainer,
        "arrays": manifest,
    }
    files["meta.json"] = _dumps(meta, step_dir / "meta.json")

    atomic_write_json(run_dir / "config.json", config)
    staged = _stage(checkpoints_dir, step_dir.name, files)
    if step_dir.exists():
        # Re-saving a step (a resumed run): latest.json may name step_dir, so it must not
        # vanish while named. Commit a second staged copy first; _prune removes it later.
        _write_pointer(run_dir, _stage(checkpoints_dir, step_dir.name, files), step)
        shutil.rmtree(step_dir)
    os.rename(staged, step_dir)
    fsync_dir(checkpoints_dir)
    _write_pointer(run_dir, step_dir, step)
    _remember_intact(step_dir)
    _prune(checkpoints_dir, keep, protected=step_dir)
    return step_dir


def _remember_intact(step_dir: Path) -> None:
    identity = _identity(step_dir)
    if identity is not None:
        _VERIFIED[step_dir] = identity


def _read_verified(step_dir: Path, entry: Any, role: str) -> dict[str, np.ndarray]:
    """Read one array file, check its size and sha256 against the manifest, then parse it."""
    meta_path = step_dir / "meta.json"
    if not isinstance(entry, dict) or not {"file", "bytes", "sha256"} <= entry.keys():
        raise CheckpointError(f"{meta_path}: manifest entry {role!r} is missing or malformed: {entry!r}")
    name = entry["file"]
    if not isinstance(name, str) or Path(name).name != name or Path(name).suffix not in ARRAY_SUFFIXES:
        raise CheckpointError(f"{meta_path}: array file name {name!r} is not a plain .safetensors/.npz name")
    path = step_dir / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint file {name} in {step_dir} cannot be read: {exc}") from exc
    if len(data) != entry["bytes"]:
        raise CheckpointError(
            f"checkpoint file {name} is truncated or corrupt (size {len(data)} bytes, "
            f"expected {entry['bytes']}): {path}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"checkpoint file {name} is truncated or corrupt (sha256 mismatch: "
            f"expected {entry['sha256']}, found {digest}): {path}"
        )
    arrays = decode_arrays(data, path)
    names = entry.get("names", list(arrays))
    if sorted(names) != sorted(arrays):
        raise CheckpointError(f"checkpoint file {name} holds arrays {sorted(arrays)}, expected {sorted(names)} "
                              f"(field arrays.{role}.names of {meta_path})")
    return {key: arrays[key] for key in names}


def load_checkpoint(path: str | os.PathLike, *, optimizer: bool = True, fallback: bool = True,
                    use: Callable[[Checkpoint], Any] | None = None) -> Any:
    """Load and verify the checkpoint of a run directory (via latest.json) or a step directory.

    ``optimizer=False`` neither reads nor checks the optimizer's and trainer's arrays
    (sampling and evaluation need only the weights). When the checkpoint latest.json names is
    damaged and ``fallback``, the newest intact one of the run is loaded instead, with a
    :class:`~seqnet.errors.SeqnetWarning` naming the damaged one.

    ``use``: what to make of the checkpoint (a task, a trainer); its result is returned instead
    of the checkpoint, and a CheckpointError it raises counts as damage of that checkpoint, so
    a meta.json that verifies but does not describe a usable run falls back the same way.
    """
    path = Path(path)
    use = use or (lambda checkpoint: checkpoint)
    if not path.is_dir():
        raise CheckpointError(f"not a seqnet run directory: {path} does not exist or is not a directory")
    if not (path / "latest.json").exists():
        if (path / "meta.json").exists():
            return use(_load_step_dir(path, optimizer))
        if fallback and _step_dirs(path / "checkpoints"):
            return _newest_intact(path, None, f"{path / 'latest.json'} is missing", optimizer, use)
        if is_run_directory(path):
            raise CheckpointError(f"{path} holds no checkpoint yet: the run stopped before its first one was "
                                  "written; start it again (without --resume)")
        raise CheckpointError(
            f"not a seqnet run directory: {path} has no latest.json (nor meta.json of a step directory)"
        )
    try:
        return use(_load_step_dir(_read_pointer(path), optimizer))
    except CheckpointError as damaged:
        if not fallback:
            raise
        try:
            return _newest_intact(path, _pointer_target(path), f"the newest checkpoint of {path} is damaged "
                                                               f"({damaged})", optimizer, use)
        except CheckpointError:
            older = len(_step_dirs(path / "checkpoints")) > 1
            said = "no older checkpoint of the run is intact either" if older else "the run has no older checkpoint"
            raise CheckpointError(f"{damaged}; {said}") from None


def _newest_intact(path: Path, skip: Path | None, why: str, optimizer: bool, use: Callable) -> Any:
    """The newest step directory of ``path`` that loads (but ``skip``), with a warning saying ``why``."""
    for step_dir in _step_dirs(path / "checkpoints"):
        if step_dir == skip:
            continue
        try:
            checkpoint = _load_step_dir(step_dir, optimizer)
            result = use(checkpoint)
        except CheckpointError:
            continue
        warnings.warn(f"{why}; using the newest intact checkpoint, {step_dir.name} (step {checkpoint.step})",
                      SeqnetWarning, stacklevel=3)
        return result
    raise CheckpointError(f"{why}, and no other checkpoint of {path} is intact")


def _pointer_target(run_dir: Path) -> Path | None:
    try:
        return _read_pointer(run_dir)
    except CheckpointError:
        return None


def _step_dirs(checkpoints_dir: Path) -> list[Path]:
    """The step directories of a run, newest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [(int(m.group(1)), entry) for entry in checkpoints_dir.iterdir()
             if entry.is_dir() and (m := _STEP_DIR.fullmatch(entry.name))]
    return [entry for _, entry in sorted(found, reverse=True)]


# --------------------------------------------------------------------------- meta.json checks

_MISSING = object()


def _field(meta: dict, dotted: str) -> Any:
    value = meta
    for key in dotted.split("."):
        value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
    return value


def _expect(meta_path: Path, meta: dict, dotted: str, expected: str, ok: Callable[[Any], bool],
            optional: bool = False) -> None:
    """CheckpointError naming ``meta_path`` and the field ``dotted`` unless ``ok(value)``."""
    value = _field(meta, dotted)
    if value is _MISSING and optional:
        return
    if value is _MISSING:
        raise CheckpointError(f"{meta_path}: field {dotted} is missing; expected {expected} (edited or damaged)")
    if not ok(value):
        raise CheckpointError(f"{meta_path}: field {dotted}: expected {expected}, received {_short(value)} "
                              "(edited or damaged)")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _check_manifest(meta_path: Path, meta: dict, roles: tuple[str, ...], optional: tuple[str, ...]) -> None:
    _expect(meta_path, meta, "arrays", "an object naming the array files", _is_object)
    for role in roles + optional:
        is_optional = role in optional
        _expect(meta_path, meta, f"arrays.{role}", "an object (file, names, bytes, sha256)", _is_object, is_optional)
        if _field(meta, f"arrays.{role}") is _MISSING:
            continue
        _expect(meta_path, meta, f"arrays.{role}.file", "a plain .safetensors/.npz file name",
                lambda name: isinstance(name, str) and Path(name).name == name and Path(name).suffix in ARRAY_SUFFIXES)
        _expect(meta_path, meta, f"arrays.{role}.names", "a list of array names", _is_names)
        _expect(meta_path, meta, f"arrays.{role}.bytes", "a size in bytes (an integer >= 0)", _is_int)
        _expect(meta_path, meta, f"arrays.{role}.sha256", "a hex sha256 digest",
                lambda digest: isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) is not None)


def _check_meta(meta_path: Path, meta: dict, version: int) -> None:
    """The structure every reader of a checkpoint relies on (what each setting and record
    holds is checked where it is interpreted: configs, tasks, optimizers)."""
    _expect(meta_path, meta, "step", "an integer >= 0", _is_int)
    _expect(meta_path, meta, "config", "an object (the run's settings)", _is_object)
    _check_manifest(meta_path, meta, ("weights", "optimizer") + (("task",) if version == 2 else ()),
                    ("trainer",) if version == 2 else ())
    if version == 1:
        for key in ("tokenizer", "optimizer_state", "rng_state", "data_state"):
            _expect(meta_path, meta, key, "an object", _is_object)
        return
    for key in ("task", "trainer"):
        _expect(meta_path, meta, key, "an object", _is_object)
    _check_records(meta_path, meta, required=False)


# What a run's checkpoint holds beyond what any checkpoint does (save_checkpoint takes any records).
RUN_RECORDS = (("config.task", "an object (the task's settings)", _is_object),
               ("config.trainer", "an object (the trainer's settings)", _is_object),
               ("task.kind", "a task name", lambda kind: isinstance(kind, str)),
               ("task.setup", "an object (what rebuilds the task's model)", _is_object),
               ("task.state", "an object (the task's progress)", _is_object),
               ("trainer.optimizer", "an object (the optimizer's settings and step)", _is_object))


def _check_records(meta_path: Path, meta: dict, required: bool) -> None:
    for key, expected, ok in RUN_RECORDS:
        _expect(meta_path, meta, key, expected, ok, optional=not required)
    _expect(meta_path, meta, "trainer.optimizer.hyperparams", "an object", _is_object, optional=True)
    _expect(meta_path, meta, "trainer.phases", "a list of objects",
            lambda phases: isinstance(phases, list) and all(map(_is_object, phases)), optional=True)
    _expect(meta_path, meta, "trainer.dropout_rngs", "a list of generator states",
            lambda rngs: isinstance(rngs, list) and all(map(_is_object, rngs)), optional=True)


def check_run_records(checkpoint: Checkpoint) -> None:
    """CheckpointError naming the meta.json and the field unless ``checkpoint`` (format 2) holds
    every record of a training run (:data:`RUN_RECORDS`)."""
    meta = {"config": checkpoint.config, "task": checkpoint.task, "trainer": checkpoint.trainer}
    _check_records(checkpoint.path / "meta.json", meta, required=True)


def _check_finite(step_dir: Path, weights: dict[str, np.ndarray]) -> None:
    for name, array in weights.items():
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise CheckpointError(f"{step_dir}: weights {name!r} hold {bad} NaN or infinite values of {array.size}: "
                                  "the parameters of a diverged run, not usable")


def _load_step_dir(step_dir: Path, optimizer: bool) -> Checkpoint:
    meta_path = step_dir / "meta.json"
    identity = _identity(step_dir)
    meta = _read_json(meta_path, "not a seqnet checkpoint")
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"not a seqnet checkpoint: {meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{meta_path} has format_version {version!r}; this seqnet reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    _check_meta(meta_path, meta, version)
    named = _STEP_DIR.fullmatch(step_dir.name)
    if named and meta["step"] != int(named.group(1)):
        raise CheckpointError(f"{meta_path} says step {meta['step']!r}, but it lies in {step_dir.name}: edited or "
                              "damaged")
    manifest = meta["arrays"]
    weights = _read_verified(step_dir, manifest.get("weights"), "weights")
    _check_finite(step_dir, weights)
    optimizer_arrays = _read_verified(step_dir, manifest.get("optimizer"), "optimizer") if optimizer else None
    if version == 1:
        return _from_version_1(meta, step_dir, weights, optimizer_arrays, optimizer)
    trainer_arrays = None
    if optimizer:
        trainer_arrays = _read_verified(step_dir, manifest["trainer"], "trainer") if "trainer" in manifest else {}
    checkpoint = Checkpoint(
        step=meta["step"], config=meta["config"], task=meta["task"], trainer=meta["trainer"], weights=weights,
        optimizer_arrays=optimizer_arrays, task_arrays=_read_verified(step_dir, manifest.get("task"), "task"),
        path=step_dir, format_version=2, trainer_arrays=trainer_arrays,
    )
    if optimizer and identity is not None and identity == _identity(step_dir):
        _VERIFIED[step_dir] = identity
    return checkpoint


_V1_CARRY_PREFIX = "carry/"   # version 1 kept the carried state in the optimizer's array file


def _from_version_1(meta: dict, step_dir: Path, weights, optimizer_arrays, read_optimizer: bool) -> Checkpoint:
    """A version-1 (language model) checkpoint in version 2's form."""
    if not read_optimizer:      # the carried state lives in the optimizer's file: read it, unless asked not to
        carry = {}
    else:
        carry = {k: v for k, v in optimizer_arrays.items() if k.startswith(_V1_CARRY_PREFIX)}
        # Version 1 kept the output layer's weight as (in, out) and its optimizer state so; now (out, in).
        optimizer_arrays = {k: (np.ascontiguousarray(v.T) if k.startswith("decoder.weight.") else v)
                            for k, v in optimizer_arrays.items() if not k.startswith(_V1_CARRY_PREFIX)}
    extra = meta.get("extra") or {}
    return Checkpoint(
        step=meta["step"], config=meta["config"],
        task={"kind": "lm", "setup": {"tokenizer": meta["tokenizer"]},
              "state": {"data": meta["data_state"], "rng": meta["rng_state"]}},
        trainer={"optimizer": meta["optimizer_state"], "history_nats": extra.get("history", [])},
        weights=weights, optimizer_arrays=optimizer_arrays, task_arrays=carry, path=step_dir, format_version=1,
    )


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` has committed a checkpoint: its latest.json, or any step directory.

    Deliberately not "a loadable checkpoint": a damaged one (or a lost latest.json) must make
    the caller's :func:`load_checkpoint` fall back or fail loudly, never make it start a
    fresh run over the old one.
    """
    run_dir = Path(run_dir)
    return (run_dir / "latest.json").is_file() or bool(_step_dirs(run_dir / "checkpoints"))


def newest_checkpoint_step(run_dir: str | os.PathLike) -> int | None:
    """The step of the checkpoint that ``run_dir/latest.json`` names, if that one is intact
    (else of the newest intact one); None when there is none."""
    run_dir = Path(run_dir)
    target = _pointer_target(run_dir)
    for step_dir in ([target] if target is not None else []) + _step_dirs(run_dir / "checkpoints"):
        if _intact(step_dir):
            return int(_STEP_DIR.fullmatch(step_dir.name).group(1)) if _STEP_DIR.fullmatch(step_dir.name) else None
    return None


DIVERGED_SUFFIX = ".diverged"


def set_aside_diverged(run_dir: str | os.PathLike, first_bad_step: int) -> Path | None:
    """The checkpoint latest.json names, when its step is ``first_bad_step`` or later (its
    parameters gave a NaN or infinite loss), is renamed ``step-N.diverged`` (kept, read by
    nothing) and latest.json made to name the newest intact checkpoint before it (removed when
    there is none). Returns the renamed directory, or None when nothing was set aside."""
    run_dir = Path(run_dir)
    target = _pointer_target(run_dir)
    named = _STEP_DIR.fullmatch(target.name) if target is not None else None
    if named is None or int(named.group(1)) < first_bad_step or not target.is_dir():
        return None
    aside = target.with_name(target.name + DIVERGED_SUFFIX)
    for n in range(2, 10_000):                  # a step that diverged before is kept too: .diverged-2, ...
        if not os.path.lexists(aside):
            break
        aside = target.with_name(f"{target.name}{DIVERGED_SUFFIX}-{n}")
    earlier = [d for d in _step_dirs(run_dir / "checkpoints") if int(d.name[5:]) < first_bad_step and _intact(d)]
    if earlier:
        _write_pointer(run_dir, earlier[0], int(earlier[0].name[5:]))
    else:
        (run_dir / "latest.json").unlink()
    os.rename(target, aside)
    _VERIFIED.pop(target, None)
    fsync_dir(target.parent)
    return aside
