"""The translation task under the generic trainer: micro-batches add up to the whole batch's
gradient, and a run stopped at a checkpoint and resumed ends bit for bit where an
uninterrupted run ends (dropout on, so the saved random state matters)."""
from __future__ import annotations

import numpy as np

from seqnet import to_numpy
from seqnet.tasks import TranslateConfig
from seqnet.training.checkpoint import load_checkpoint
from seqnet.training.config import TrainerConfig
from seqnet.training.runs import new_run, resume_run
from test_translate_cli import write_pairs


def _config(data, **kw):
    kw = {"dropout": 0.2, **kw}
    return TranslateConfig(data=str(data), tokenizer="word", hidden=8, embed=4, batch=6, eval_size=4,
                           sample_every=1000, **kw)


def test_micro_batches_add_up_to_the_whole_batch(tmp_path):
    """accumulate=3 over pairs of different target lengths: each micro-batch is weighted by its
    share of the target tokens, so the summed gradient is the whole batch's mean-token gradient."""
    words = "one two three four five six".split()
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{' '.join(words[:1 + k % 6])}\t{' '.join(words[:1 + (k * 5) % 6])}\n" for k in range(40)))
    trainer = new_run("translate", _config(data, dropout=0.0), TrainerConfig(steps=2), tmp_path / "a", progress=False)
    task, model = trainer.task, trainer.model
    state = task.batcher.state_dict()
    model.zero_grad()
    (whole,) = task.train_batches(1)
    assert whole.weight == int(whole.data[4].sum())                      # the target tokens
    loss = task.loss_and_grads(whole, 1.0)
    want = {k: to_numpy(v) for k, v in model.param_grads.items()}
    task.batcher.load_state_dict(state)
    model.zero_grad()
    parts = task.train_batches(3)
    assert len({p.weight for p in parts}) > 1 and sum(p.weight for p in parts) == whole.weight
    total = sum(float(to_numpy(task.loss_and_grads(p, p.weight / whole.weight))) * p.weight / whole.weight
                for p in parts)
    for name, grad in model.param_grads.items():
        np.testing.assert_allclose(to_numpy(grad), want[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert abs(total - float(to_numpy(loss))) < 1e-5


def test_resumed_run_matches_the_uninterrupted_one(tmp_path):
    data = write_pairs(tmp_path / "pairs.tsv", 50)
    trainer = TrainerConfig(steps=12, checkpoint_every=6, eval_every=6, lr=0.01, seed=2)
    new_run("translate", _config(data), trainer, tmp_path / "whole", progress=False).run()
    stopped = new_run("translate", _config(data), trainer, tmp_path / "half", progress=False)
    for _ in range(6):                  # the same run, stopped after its first checkpoint
        stopped.train_step()
    stopped.save()
    stopped.close()                     # as a stopped process would
    resume_run(tmp_path / "half", progress=False).run()
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "half")
    assert a.step == b.step == 12
    for name, weight in a.weights.items():
        assert np.array_equal(weight, b.weights[name]), name
