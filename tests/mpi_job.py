"""The jobs that tests/test_distributed.py launches under mpiexec: ``python mpi_job.py MODE DATA OUT``.

Each trains small float64 runs through the library (new_run + Trainer.run, the same code as
``seqnet train``) and rank 0 saves the parameters to OUT; :func:`train` with
``distributed="off"`` is the tests' one-process oracle. Modes:

- ``equivalence``: a language model and a classifier, as they should train; then two broken
  trainers that must not match the oracle: one that skips the gradient allreduce and one
  that scales each micro-batch by its share of this rank's loss terms instead of the job's;
- ``uneven``: a classifier whose batches are sometimes smaller than the number of ranks, so
  a rank's share is empty at some steps (it must still take part in every collective);
- ``raise``: rank 1 raises in its third step;
- ``diverge``: rank 1's parameters are changed before the first checkpoint.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seqnet import to_numpy  # noqa: E402
from seqnet.errors import DistributedError  # noqa: E402
from seqnet.tasks import TASKS  # noqa: E402
from seqnet.training import TrainerConfig, new_run  # noqa: E402
from seqnet.training import distributed  # noqa: E402

BATCH = 6          # divisible by 2 and by 3 ranks
STEPS = 4


def write_data(directory: Path) -> Path:
    """The data every job reads (written by the test before it launches the job)."""
    from clitools import write_corpus
    from test_seq_tasks import write_classify

    directory.mkdir(parents=True, exist_ok=True)
    write_corpus(directory / "corpus.txt", 60)
    write_classify(directory / "texts.jsonl", 60)
    write_classify(directory / "uneven.jsonl", 38, seed=3)        # 6 batches of 6 and one of 2 per epoch
    write_classify(directory / "valid.jsonl", 10, seed=4)
    return directory


def task_config(kind: str, data: Path, **extra):
    if kind == "lm":
        config = dict(corpus=str(data / "corpus.txt"), hidden=6, embed=4, batch=BATCH, seq_len=5, sample_length=0,
                      eval_batches=2)
    else:
        config = dict(data=str(data / "texts.jsonl"), valid=str(data / "valid.jsonl"), hidden=6, embed=4,
                      batch=BATCH, bucket_batches=2)
    return TASKS[kind].Config(**{**config, **extra}).validate()


def train(kind: str, data: Path, run_dir: Path, *, distributed_="auto", steps=STEPS, checkpoint_every=None,
          on_batches=None, config=None) -> tuple[dict, DistributedError | None]:
    """(host parameters after ``steps`` steps, the DistributedError that stopped the run or None);
    SGD without clipping, so that a wrong gradient scale shows in the parameters (Adam would
    undo most of it). ``on_batches(trainer, batches)`` sees this rank's micro-batches of every step."""
    trainer_config = TrainerConfig(steps=steps, optimizer="sgd", lr=0.5, clip=0.0, warmup=0, dtype="float64",
                                   eval_every=steps, checkpoint_every=checkpoint_every or steps, log_every=1)
    trainer = new_run(kind, config or task_config(kind, data), trainer_config, run_dir, progress=False,
                      log=lambda text: None, distributed=distributed_)
    if on_batches is not None:
        batches = trainer.task.train_batches

        def train_batches(count):
            mine = batches(count)
            on_batches(trainer, mine)
            return mine
        trainer.task.train_batches = train_batches
    error = None
    try:
        trainer.run()
    except DistributedError as err:     # every rank raises it at the same step
        error = err
    finally:
        trainer.close()
    return {name: to_numpy(value) for name, value in trainer.model.params.items()}, error


def uneven_config(data: Path):
    """A classifier on 38 texts in batches of 6 from buckets of one batch: every epoch's seventh
    batch holds 2 texts, so with 3 ranks one rank's share of it is empty."""
    return TASKS["classify"].Config(data=str(data / "uneven.jsonl"), valid=str(data / "valid.jsonl"), hidden=6,
                                    embed=4, batch=BATCH, bucket_batches=1).validate()


def save(out: Path, name: str, params: dict, world) -> None:
    if world.is_root:
        np.savez(out / f"{name}.npz", **params)


def equivalence(data: Path, out: Path) -> None:
    world = distributed.mpi_world()
    for kind in ("lm", "classify"):
        params, _ = train(kind, data, out / f"run-{kind}")
        save(out, kind, params, world)

    reduce = distributed.GradientReducer.__call__
    distributed.GradientReducer.__call__ = lambda self, grads, loss: loss          # no allreduce
    try:
        params, error = train("lm", data, out / "run-no-allreduce")
    finally:
        distributed.GradientReducer.__call__ = reduce
    save(out, "lm-no-allreduce", params, world)
    if world.is_root:
        (out / "no-allreduce.txt").write_text(str(error))

    totals = distributed.MPIWorld.step_totals
    distributed.MPIWorld.step_totals = lambda self, weight, votes: (weight, votes)   # this rank's loss terms only
    try:
        params, _ = train("lm", data, out / "run-local-scale")
    finally:
        distributed.MPIWorld.step_totals = totals
    save(out, "lm-local-scale", params, world)


def uneven(data: Path, out: Path) -> None:
    world = distributed.mpi_world()
    shares = []

    def record(trainer, batches):
        shares.append(sum(len(batch.data) for batch in batches))
    params, _ = train("classify", data, out / "run", steps=8, on_batches=record, config=uneven_config(data))
    save(out, "uneven", params, world)
    everyone = world.allgather_json(shares)
    if world.is_root:
        (out / "shares.json").write_text(json.dumps(everyone))


def fail_in_third_step(data: Path, out: Path) -> None:
    def raise_on_rank_1(trainer, batches):
        if trainer.world.rank == 1 and trainer.step == 2:
            raise RuntimeError("injected failure")
    train("lm", data, out / "run", steps=50, on_batches=raise_on_rank_1)


def diverge(data: Path, out: Path) -> None:
    def nudge_rank_1(trainer, batches):
        if trainer.world.rank == 1 and trainer.step == 1:
            name = next(iter(trainer.model.params))
            trainer.model.params[name] = trainer.model.params[name] + 1e-9
    _, error = train("lm", data, out / "run", steps=6, checkpoint_every=2, on_batches=nudge_rank_1)
    if error is not None and not distributed.is_reported_elsewhere(error):
        print(f"stopped: {error}", file=sys.stderr, flush=True)
    sys.exit(3 if error is not None else 0)


if __name__ == "__main__":
    mode, data_dir, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"equivalence": equivalence, "uneven": uneven, "raise": fail_in_third_step, "diverge": diverge}[mode](
        data_dir, out_dir)
