"""What the classify, tag and generate tasks share: data files in, length-bucketed batches out.

Each task reads its training file (``--data``) and a validation file (``--valid``, or a
held-out ``--val-fraction`` of the training examples drawn with the seed), fits what must
be fitted (vocabulary, label set) on the training examples only, keeps its own copy of the
examples in the run directory (``examples.jsonl``: a resumed run reads that, never the
original files, and only warns when they changed), and encodes every example once into
host arrays. Training batches are index sets drawn by a
:class:`seqnet.data.BucketBatcher` (sequences of similar length together, batch order
shuffled, reproducible from the seed); with k micro-batches a batch is split into k index
groups, each weighted by its number of loss terms (:meth:`SequenceTask.loss_weight`). With
several processes (:meth:`Task.shard`) process r of n takes every n-th example of each
batch from the r-th on (a share of every length, so the processes finish together); a
share may be empty when a batch has fewer examples than processes. A checkpoint holds the batcher's position and the dropout generator, so a resumed
run continues with exactly the batches and masks it would have had.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..backend import backend as backend_context
from ..backend import to_numpy
from ..config import FRACTION, POSITIVE_INT, PROBABILITY, WITHOUT_VALID_FILE, Settings, option
from ..data.buckets import BucketBatcher, pad_batch
from ..data.lines import split_lines
from ..errors import ConfigError, DataFileError, SeqnetWarning
from ..files import atomic_writer
from ..layers import RECURRENT_LAYERS
from ..random_state import rng_from_json, rng_to_json
from .base import MicroBatch, Task, split_evenly

MAX_WARNINGS = 5
MIN_VALID_EXAMPLES = 20   # a validation set smaller than this is warned about: its scores are mostly noise


@dataclass
class SequenceDataConfig(Settings):
    """Settings every labelled-data task has (its own class adds the rest)."""

    TASK: ClassVar[str] = ""
    data: str | None = option(None, "training data file (classify, tag, generate)", path=True)
    valid: str | None = option(None, "validation data file (default: hold out --val-fraction of --data)",
                                path=True)
    val_fraction: float = option(0.1, "share of --data held out for validation when no --valid is given",
                                 kind=FRACTION, only_with=WITHOUT_VALID_FILE)
    cell: str = option("lstm", "recurrent cell", choices=lambda: tuple(RECURRENT_LAYERS))
    embed: int = option(64, "embedding size", kind=POSITIVE_INT)
    hidden: int = option(128, "hidden units per layer (and direction)", kind=POSITIVE_INT)
    layers: int = option(1, "stacked recurrent layers", kind=POSITIVE_INT)
    dropout: float = option(0.0, "dropout probability", kind=PROBABILITY)
    batch: int = option(32, "sequences per step", kind=POSITIVE_INT)
    bucket_batches: int = option(50, "batches per length bucket (sorted within a bucket, buckets shuffled)",
                                 kind=POSITIVE_INT)

    def validate(self):
        super().validate()
        if self.data is None:
            raise ConfigError(f"--data: --task {self.TASK} needs a training data file")
        return self


def warn(messages: list[str], what: str = "") -> None:
    """Data warnings as SeqnetWarnings: the first few, then how many more there were."""
    for message in messages[:MAX_WARNINGS]:
        warnings.warn(message, SeqnetWarning, stacklevel=2)
    if len(messages) > MAX_WARNINGS:
        warnings.warn(f"... and {len(messages) - MAX_WARNINGS} more {what}".rstrip(), SeqnetWarning, stacklevel=2)


EXAMPLES_FILE = "examples.jsonl"


def keep_examples(run_dir: Path, train: list, valid: list) -> None:
    """The run's own copy of its training and validation examples as read (one JSON object a line)."""
    with atomic_writer(Path(run_dir) / EXAMPLES_FILE, "w") as f:
        for split, examples in (("train", train), ("valid", valid)):
            for example in examples:
                f.write(json.dumps({"split": split, **dataclasses.asdict(example)}, ensure_ascii=False) + "\n")


def kept_examples(run_dir: Path, example_type) -> tuple[list, list]:
    """(training, validation) examples from the run directory's copy (see :func:`keep_examples`)."""
    path = Path(run_dir) / EXAMPLES_FILE
    try:
        lines = split_lines(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataFileError(f"{path}: cannot read the run's copy of its examples ({err.strerror}); the run directory "
                            "is incomplete") from err
    tuples = {f.name for f in dataclasses.fields(example_type) if str(f.type).startswith("tuple")}
    splits: dict[str, list] = {"train": [], "valid": []}
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            split = record.pop("split")
            splits[split].append(example_type(**{k: tuple(v) if k in tuples else v for k, v in record.items()}))
        except (ValueError, KeyError, TypeError) as err:
            raise DataFileError(f"{path}:{number}: not an example written by this run ({err})") from err
    return splits["train"], splits["valid"]


def data_fingerprint(config: SequenceDataConfig) -> dict:
    """sha256 of the --data and --valid files (of every file below a directory, with its name)."""
    def digest(spec):
        if spec is None:
            return None
        root = Path(spec)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        h = hashlib.sha256()
        for path in files:
            h.update(str(path.relative_to(root) if root.is_dir() else path.name).encode() + b"\0")
            h.update(path.read_bytes())
        return h.hexdigest()
    return {"data": digest(config.data), "valid": digest(config.valid)}


def warn_if_data_changed(config: SequenceDataConfig, setup: dict) -> None:
    """Say so when --data or --valid, where they still exist, changed since the run read them
    (the run goes on with its own copy of the examples)."""
    recorded = setup.get("data_fingerprint") or {}
    for key in ("data", "valid"):
        spec = getattr(config, key)
        if spec is None or recorded.get(key) is None or not Path(spec).exists():
            continue
        try:
            now = data_fingerprint(dataclasses.replace(config, **{("valid" if key == "data" else "data"): None}))[key]
        except OSError:
            continue
        if now != recorded[key]:
            warnings.warn(f"{spec}: changed since this run read it (--{key}); the run goes on with its own copy of "
                          f"the examples, {EXAMPLES_FILE}", SeqnetWarning, stacklevel=3)


def held_out(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(training, validation) examples: a seeded random ``fraction`` is held out (at least one
    example when fraction > 0 and there are two or more)."""
    if fraction == 0 or len(examples) < 2:
        return examples, []
    order = np.random.default_rng([seed, 7]).permutation(len(examples))
    count = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    valid = set(order[:count].tolist())
    return [e for k, e in enumerate(examples) if k not in valid], [e for k, e in enumerate(examples) if k in valid]


def warn_if_small_validation(config, valid_count: int, what: str = "examples") -> None:
    """A SeqnetWarning when the validation set holds fewer than :data:`MIN_VALID_EXAMPLES` (but
    some) ``what``: the scores reported on it rest on too few to tell models apart. ``config``
    has ``valid`` (a file or None) and ``val_fraction`` (the held-out share of ``data``)."""
    if not 0 < valid_count < MIN_VALID_EXAMPLES:
        return
    if config.valid is None:
        source = f"--val-fraction {config.val_fraction} of --data {config.data}"
        advice = "use a larger --val-fraction or a --valid file"
    else:
        source = f"--valid {config.valid}"
        advice = "use a larger --valid file"
    what = what[:-1] if valid_count == 1 and what.endswith("s") else what
    warnings.warn(f"validation: the scores rest on only {valid_count} {what} ({source}; fewer than "
                  f"{MIN_VALID_EXAMPLES}); {advice}", SeqnetWarning, stacklevel=3)


def eval_batches(lengths: list[int], batch: int) -> list[np.ndarray]:
    """Index batches over all examples, sorted by length so padding stays small (deterministic)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[k:k + batch] for k in range(0, len(order), batch)]


class SequenceTask(Task):
    """The batching and checkpointed state of classify / tag / generate; see the module docstring.

    Subclasses set ``self.train`` (encoded training examples, each with ``len()``) and
    implement ``batch_loss(examples, grad_scale)``.
    """

    train: list
    run_dir: Path | None = None
    loss_unit = "bits per token"
    Example: ClassVar[type]                  # the record its reader gives (kept in examples.jsonl)
    noun: ClassVar[str] = "examples"         # what its examples are called in messages
    _setup: dict

    # -- building (create reads and fits; these are the same for every labelled task) ----
    @classmethod
    def build_model(cls, config, setup: dict, backend, device, dtype, seed):
        """The task's model (:meth:`new_model`) on ``backend`` and ``device``."""
        with backend_context(backend, device):
            return cls.new_model(config, setup, dtype, seed)

    @staticmethod
    def new_model(config, setup: dict, dtype: str, seed: int):
        """The task's model, from its settings and setup (its fitted vocabularies), on the current backend."""
        raise NotImplementedError

    @staticmethod
    def read(path) -> list:
        """The examples of a data file (with their labels)."""
        raise NotImplementedError

    @classmethod
    def split(cls, config, examples: list, seed: int) -> tuple[list, list]:
        """(training, validation) examples: --valid's, or a held-out --val-fraction of --data."""
        if config.valid is None:
            return held_out(examples, config.val_fraction, seed)
        return examples, cls.read(config.valid)

    @classmethod
    def finish_create(cls, config, setup: dict, train: list, valid: list, run_dir, **build):
        """The end of ``create``: the data's fingerprint, the run's own copy of the examples,
        the task with its model (``build``: backend, device, dtype, seed) and its batches."""
        setup["data_fingerprint"] = data_fingerprint(config)
        keep_examples(run_dir, train, valid)
        task = cls.from_examples(config, setup, train, valid, run_dir=run_dir, **build)
        warn_if_small_validation(config, len(valid), cls.noun)            # once the examples are known good
        return task

    @classmethod
    def rebuild(cls, config, setup, *, backend, device, dtype, seed, run_dir=None):
        if run_dir is None:
            return cls(config, setup, cls.build_model(config, setup, backend, device, dtype, seed))
        warn_if_data_changed(config, setup)
        train, valid = kept_examples(run_dir, cls.Example)
        return cls.from_examples(config, setup, train, valid, backend=backend, device=device, dtype=dtype, seed=seed,
                                 run_dir=run_dir)

    @classmethod
    def from_examples(cls, config, setup, train, valid, *, backend, device, dtype, seed, run_dir):
        task = cls(config, setup, cls.build_model(config, setup, backend, device, dtype, seed), run_dir)
        task.encode_examples(train, valid)
        task._start_batches(seed)
        return task

    def encode_examples(self, train: list, valid: list) -> None:
        """Encode every example once (``self.encode``) into ``self.train`` and ``self.valid``."""
        self.train = [self.encode(e) for e in train]
        self.valid = [self.encode(e) for e in valid]

    def setup(self) -> dict:
        return self._setup

    def check_trainer_config(self, config) -> None:
        """Refuse trainer settings this task cannot honour (called by the trainer before it starts)."""
        if config.accumulate > self.config.batch:
            raise ConfigError(f"--accumulate: expected at most --batch {self.config.batch} micro-batches, "
                              f"received {config.accumulate}")

    def _start_batches(self, seed: int) -> None:
        if self.config.batch > len(self.train):
            raise ConfigError(f"--batch: expected at most the {len(self.train)} training examples, received "
                              f"{self.config.batch}")
        lengths = [len(e) for e in self.train]
        self.batcher = BucketBatcher(lengths, self.config.batch, seed=seed, bucket_batches=self.config.bucket_batches)
        self.tokens_per_step = int(round(self.config.batch * float(np.mean(lengths))))

    def device_ids(self, host) -> Any:
        return self.model.backend.asarray(np.asarray(host, dtype=np.int64), "int64")

    def padded(self, sequences) -> tuple[Any, np.ndarray]:
        ids, lengths = pad_batch(sequences)
        return self.device_ids(ids), lengths

    def train_batches(self, count: int) -> list[MicroBatch]:
        """This process's share of the next batch as (at most) ``count`` micro-batches."""
        if count > self.config.batch:
            raise ConfigError(f"--accumulate: expected at most --batch {self.config.batch} micro-batches, "
                              f"received {count}")
        mine = self.batcher.next_batch()[self.rank::self.size]
        return [MicroBatch(part, self.loss_weight([self.train[k] for k in part])) for part in split_evenly(mine, count)]

    def loss_and_grads(self, batch: MicroBatch, grad_scale: float):
        return self.batch_loss([self.train[k] for k in batch.data], grad_scale)

    def batch_loss(self, examples: list, grad_scale: float | None):
        """Mean loss of ``examples`` (0-d device array); adds gradients unless ``grad_scale`` is None."""
        raise NotImplementedError

    def mean_loss(self, examples: list) -> float:
        """Example-weighted mean loss over ``examples`` (no gradients)."""
        total, count = 0.0, 0
        for idx in eval_batches([len(e) for e in examples], self.config.batch):
            part = [examples[k] for k in idx]
            total += float(to_numpy(self.batch_loss(part, None))) * self.loss_weight(part)
            count += self.loss_weight(part)
        return total / max(count, 1)

    def mean_bits(self, examples: list) -> dict:
        """The mean loss over ``examples`` in the unit the training loss is reported in:
        ``{"bits_per_text": ...}`` or ``{"bits_per_token": ...}`` (see ``loss_unit``)."""
        return {self.loss_unit.replace(" ", "_"): self.mean_loss(examples) / math.log(2)}

    def loss_weight(self, examples: list) -> float:
        """The number of loss terms a batch's mean loss averages (examples; tokens for
        token-level losses; weighted where the loss is)."""
        return len(examples)

    def state_dict(self) -> tuple[dict, dict]:
        return {"data": self.batcher.state_dict(), "rng": rng_to_json(self.model.dropout_rng)}, {}

    def load_state_dict(self, state: dict, arrays: dict) -> None:
        self.batcher.load_state_dict(state["data"])
        self.model.dropout_rng.bit_generator.state = rng_from_json(state["rng"]).bit_generator.state

