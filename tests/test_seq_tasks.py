"""The classify, tag and generate tasks through the library's run functions: each learns a tiny
synthetic task, a run stopped and resumed ends bit-for-bit where an uninterrupted one ends,
a trained run loads for inference, and the data problems the issue lists are reported."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from seqnet.errors import ConfigError, DataFileError, SeqnetWarning
from seqnet.tasks import TASKS
from seqnet.training.checkpoint import load_checkpoint
from seqnet.training.config import TrainerConfig
from seqnet.training.runs import load_task, new_run, resume_run


def write_classify(path, count=160, seed=0):
    """Label = the letter that the text repeats most ('a', 'b' or 'c'), hidden among noise letters."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(count):
            label = rng.choice("abc")
            text = "".join(label if rng.random() < 0.6 else rng.choice("xyz") for _ in range(rng.randint(4, 12)))
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return path


def write_conll(path, count=120, seed=0):
    """Numbers are B-NUM (I-NUM for a following number), words O."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        prev_num = False
        for _ in range(rng.randint(2, 7)):
            if rng.random() < 0.4:
                lines.append(f"{rng.randint(0, 9)}\t{'I' if prev_num else 'B'}-NUM")
                prev_num = True
            else:
                lines.append(f"{rng.choice(['the', 'cat', 'sat', 'on'])}\tO")
                prev_num = False
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_generate(path, count=120, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(count):
            word = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5)))
            kind = rng.choice(["upper", "lower"])
            f.write(json.dumps({"condition": kind, "text": word.upper() if kind == "upper" else word}) + "\n")
    return path


def trainer_config(steps, checkpoint_every_=None, **kw):
    return TrainerConfig(steps=steps, lr=0.02, eval_every=steps, checkpoint_every=checkpoint_every_ or steps,
                         log_every=5, warmup=0, **kw).validate()


def train(kind, run_dir, steps=60, **task_kw):
    config = TASKS[kind].Config(**task_kw).validate()
    trainer = new_run(kind, config, trainer_config(steps), run_dir, progress=False, log=lambda text: None)
    return trainer.run()


def test_classifier_learns_and_predicts(tmp_path):
    data = write_classify(tmp_path / "train.jsonl")
    valid = write_classify(tmp_path / "valid.jsonl", 60, seed=1)
    summary = train("classify", tmp_path / "run", 80, data=str(data), valid=str(valid), hidden=16, embed=8,
                    batch=16, pooling="mean")
    assert summary["val_accuracy"] >= 0.85, summary
    task = load_task(tmp_path / "run")
    report = task.evaluate_file(valid)
    assert report["accuracy"] == pytest.approx(summary["val_accuracy"])
    assert report["majority_baseline"]["accuracy"] < 0.5
    records = list(task.predict_file(valid))
    assert len(records) == 60 and set(records[0]) == {"text", "label", "probabilities"}
    assert sum(records[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "run" / "confusion.png").stat().st_size > 0


def test_tagger_with_crf_learns_entities(tmp_path):
    data = write_conll(tmp_path / "train.conll")
    summary = train("tag", tmp_path / "run", 60, data=str(data), hidden=8, embed=8, batch=16, crf=True)
    assert summary["val_entity_f1"] >= 0.9, summary
    task = load_task(tmp_path / "run")
    records = list(task.predict_file(data))
    assert records[0]["tokens"] and len(records[0]["tokens"]) == len(records[0]["tags"])


def test_generator_follows_its_condition(tmp_path):
    data = write_generate(tmp_path / "train.jsonl")
    summary = train("generate", tmp_path / "run", 120, data=str(data), hidden=16, embed=8, batch=16,
                    sample_length=0)
    assert summary["val_bits_per_token"] < 3.0, summary          # uniform over the 12 letters + end: 3.7
    task = load_task(tmp_path / "run")
    upper = task.generate(["upper"] * 20, seed=0)
    lower = task.generate(["lower"] * 20, seed=0)
    assert sum(t.isupper() for t in upper) >= 16 and sum(t.islower() for t in lower) >= 16, (upper, lower)
    with pytest.raises(ConfigError, match="^conditions: expected a list of condition names, received a str; wrap one "
                                          "name in a list$"):
        task.generate("upper")                          # not the conditions 'u', 'p', 'p', 'e', 'r'
    assert len(task.generate(["upper"], seed=0)) == 1


@pytest.mark.parametrize("kind, writer, extra", [
    ("classify", write_classify, {"dropout": 0.3, "pooling": "attention"}),
    ("tag", write_conll, {"dropout": 0.3, "crf": True}),
    ("generate", write_generate, {"dropout": 0.3, "sample_length": 0}),
])
def test_resumed_runs_end_where_uninterrupted_runs_end(tmp_path, kind, writer, extra):
    data = writer(tmp_path / "train.data")
    config = TASKS[kind].Config(data=str(data), hidden=8, embed=4, batch=8, bucket_batches=2, **extra).validate()
    quiet = dict(progress=False, log=lambda text: None)
    new_run(kind, config, trainer_config(8, accumulate=2), tmp_path / "whole", **quiet).run()
    first = new_run(kind, config, trainer_config(8, accumulate=2, checkpoint_every_=5), tmp_path / "split", **quiet)
    batches = first.task.train_batches

    def killed_after_step_5(count):                            # the run dies during step 6
        if first.step == 5:
            raise KeyboardInterrupt
        return batches(count)

    first.task.train_batches = killed_after_step_5
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert load_checkpoint(tmp_path / "split").step == 5
    resume_run(tmp_path / "split", **quiet).run()
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "split")
    assert a.step == b.step == 8
    for name, weight in a.weights.items():
        assert np.array_equal(weight, b.weights[name]), name


def test_data_problems_are_reported(tmp_path, capsys):
    data = write_classify(tmp_path / "train.jsonl")
    bad_valid = tmp_path / "valid.jsonl"
    bad_valid.write_text('{"text": "aaa", "label": "a"}\n{"text": "qqq", "label": "q"}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"valid.jsonl:2: label 'q' never seen in training"):
        train("classify", tmp_path / "r1", 2, data=str(data), valid=str(bad_valid), hidden=4, embed=4)

    gen = write_generate(tmp_path / "gen.jsonl")
    gen_valid = tmp_path / "gen_valid.jsonl"
    gen_valid.write_text('{"condition": "title", "text": "Abc"}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"gen_valid.jsonl:1: condition 'title' never seen in training"):
        train("generate", tmp_path / "r2", 2, data=str(gen), valid=str(gen_valid), hidden=4, embed=4)

    conll = write_conll(tmp_path / "train.conll")
    odd = tmp_path / "valid.conll"
    odd.write_text("the\tO\n7\tI-NUM\n\nParis\tB-LOC\n", encoding="utf-8")
    with pytest.warns(SeqnetWarning) as caught:
        summary = train("tag", tmp_path / "r3", 2, data=str(conll), valid=str(odd), hidden=4, embed=4)
    err = "\n".join(str(w.message) for w in caught)
    assert "valid.conll:2: I-NUM follows O; scored as the start of a NUM entity" in err
    assert "valid.conll:4: tag 'B-LOC' never seen in training" in err
    assert summary["val_entity_f1"] is not None


@pytest.mark.parametrize("kind, writer, extra", [("classify", write_classify, {}), ("tag", write_conll, {}),
                                                 ("generate", write_generate, {})])
def test_a_resumed_run_reads_its_own_copy_of_the_data(tmp_path, kind, writer, extra):
    """Resume needs no --data file (the run keeps its examples); a changed one is a warning."""
    data = writer(tmp_path / "train.data")
    config = TASKS[kind].Config(data=str(data), hidden=4, embed=4, batch=8, **extra).validate()
    quiet = dict(progress=False, log=lambda text: None)
    with new_run(kind, config, trainer_config(4), tmp_path / "run", **quiet) as trainer:
        trainer.run()
        before = repr(trainer.task.train)
    data.unlink()
    with resume_run(tmp_path / "run", **quiet) as resumed:                          # the file is gone: fine
        assert repr(resumed.task.train) == before
    writer(data, seed=5)
    with pytest.warns(SeqnetWarning, match=r"train.data: changed since this run read it"):
        resume_run(tmp_path / "run", **quiet).close()
    assert load_task(tmp_path / "run").predict_file is not None                     # inference needs no data
