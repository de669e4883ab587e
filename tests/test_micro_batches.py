"""The micro-batch contract: every task's micro-batches say how many loss terms they hold, and the
trainer scales each one's mean-loss gradient by its share of them, so k micro-batches (cut
unevenly, in texts or in tokens) train exactly as the whole batch does, for every task. The
oracle is one micro-batch per step; float64, to 1e-10."""
from __future__ import annotations

import numpy as np
import pytest

from seqnet import to_numpy
from seqnet.tasks import TASKS, MicroBatch
from seqnet.tasks.base import share_bounds
from seqnet.training import TrainerConfig, new_run
from test_architecture import _corpus
from test_seq_tasks import write_classify, write_conll, write_generate
from test_translate_cli import write_pairs

STEPS = 3


def task_config(kind: str, tmp_path, **extra):
    """A small float64 run of each task; batch sizes that k = 3 cannot cut evenly where the task allows."""
    if kind == "lm":
        config = dict(corpus=str(_corpus(tmp_path / "c.txt")), hidden=6, embed=4, batch=6, seq_len=5, sample_length=0)
    elif kind == "translate":
        config = dict(data=str(write_pairs(tmp_path / "pairs.tsv", 40)), tokenizer="word", hidden=8, embed=4, batch=6,
                      eval_size=4, sample_every=1000)
    else:
        writer = {"classify": write_classify, "tag": write_conll, "generate": write_generate}[kind]
        config = dict(data=str(writer(tmp_path / f"{kind}.data", 60)), hidden=6, embed=4, batch=7, bucket_batches=2)
        if kind == "generate":
            config["sample_length"] = 0
    return TASKS[kind].Config(**{**config, **extra}).validate()


def trained(kind, tmp_path, name, accumulate, uniform=False, **extra):
    """Parameters after STEPS steps with ``accumulate`` micro-batches; ``uniform``: every micro-batch
    weighted alike (what a trainer that ignores the weights would do)."""
    trainer = new_run(kind, task_config(kind, tmp_path, **extra),
                      TrainerConfig(steps=STEPS, accumulate=accumulate, dtype="float64", lr=0.02, warmup=0,
                                    eval_every=100, checkpoint_every=100),
                      tmp_path / name, progress=False, log=lambda text: None)
    if uniform:
        batches = trainer.task.train_batches
        trainer.task.train_batches = lambda k: [MicroBatch(b.data, 1.0) for b in batches(k)]
    for _ in range(STEPS):
        trainer.train_step()
    trainer.close()
    return {k: to_numpy(v) for k, v in trainer.model.params.items()}


def max_difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


CASES = [("lm", {}), ("classify", {}), ("classify", {"class_weights": "balanced"}), ("tag", {}),
         ("tag", {"crf": True}), ("generate", {}), ("translate", {})]


@pytest.mark.parametrize("kind, extra", CASES, ids=[f"{k}{'-' + '-'.join(e) if e else ''}" for k, e in CASES])
def test_micro_batches_train_as_the_whole_batch(tmp_path, kind, extra):
    whole = trained(kind, tmp_path, "whole", 1, **extra)
    parts = trained(kind, tmp_path, "parts", 3 if kind != "lm" else 2, **extra)
    assert max_difference(parts, whole) < 1e-10
    if kind != "lm":                # unequal micro-batches: weighing them alike is measurably wrong
        assert max_difference(trained(kind, tmp_path, "uniform", 3, uniform=True, **extra), whole) > 1e-6


def test_weights_are_the_denominators_of_the_mean_losses(tmp_path):
    """What each task's weight counts: streams x steps, texts (class weights), tokens, target tokens."""
    cases = {"lm": lambda task, b: b.data[0].size,
             "classify": lambda task, b: len(b.data),
             "tag": lambda task, b: sum(len(task.train[k]) for k in b.data),
             "generate": lambda task, b: sum(len(task.train[k]) for k in b.data),
             "translate": lambda task, b: int(b.data[4].sum())}
    for kind, expected in cases.items():
        (tmp_path / kind).mkdir()
        trainer = new_run(kind, task_config(kind, tmp_path / kind), TrainerConfig(steps=2), tmp_path / kind / "run",
                          progress=False, log=lambda text: None)
        for batch in trainer.task.train_batches(3 if kind != "lm" else 2):
            assert batch.weight == expected(trainer.task, batch), kind
        trainer.close()


@pytest.mark.parametrize("count, size", [(7, 3), (6, 3), (2, 3), (5, 1)])
def test_shares_cut_like_array_split(count, size):
    bounds = [share_bounds(count, rank, size) for rank in range(size)]
    assert [stop - start for start, stop in bounds] == [len(p) for p in np.array_split(np.arange(count), size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))
