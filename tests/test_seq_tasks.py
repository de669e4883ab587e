"""The classify, tag and generate tasks through the library's run functions: each learns a tiny
synthetic task, a run stopped and resumed ends bit-for-bit where an uninterrupted one ends,
a trained run loads for inference, and the data problems the issue lists are reported. Every
task (translate and the language model too) warns when its validation split is too small."""
from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest

from seqnet.errors import ConfigError, DataFileError, SeqnetWarning
from seqnet.tasks import TASKS, labeled
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
    assert len(records) == 60 and set(records[0]) == {"where", "text", "label", "probabilities"}
    assert [r["where"] for r in records[:2]] == [f"{valid}:1", f"{valid}:2"]
    assert sum(records[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # the validation loss is in the training loss's unit: bits per text, -log2 p(true label) on average
    gold = [json.loads(line)["label"] for line in valid.read_text(encoding="utf-8").splitlines()]
    bits = -np.mean([np.log2(r["probabilities"][label]) for r, label in zip(records, gold)])
    assert summary["val_bits_per_text"] == pytest.approx(bits, abs=1e-4) and "train_bits_per_text" in summary
    assert report["bits_per_text"] == pytest.approx(bits, abs=1e-4)
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
    assert f"validation: the scores rest on only 2 sentences (--valid {odd}; fewer than 20)" in err
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


# -- validation splits too small to trust ---------------------------------------------------------------------
def _create(kind, run_dir, **task_kw):
    """The task as a new run builds it (no training), and the validation warnings it gave."""
    run_dir.mkdir()
    config = TASKS[kind].Config(**task_kw).validate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = TASKS[kind].create(config, run_dir, backend="numpy", device=None, dtype="float32", seed=0)
    return task, [str(w.message) for w in caught
                  if issubclass(w.category, SeqnetWarning) and str(w.message).startswith("validation:")]


@pytest.mark.parametrize("kind, writer, what", [("classify", write_classify, "texts"),
                                                ("tag", write_conll, "sentences"),
                                                ("generate", write_generate, "texts")])
def test_a_small_held_out_split_is_warned_about(tmp_path, kind, writer, what):
    data = writer(tmp_path / "train.data", 60)
    task, said = _create(kind, tmp_path / "small", data=str(data), val_fraction=0.05, hidden=4, embed=4, batch=2)
    assert len(task.valid) == 3                                             # round(0.05 * 60)
    assert said == [f"validation: the scores rest on only 3 {what} (--val-fraction 0.05 of --data {data}; "
                    f"fewer than {labeled.MIN_VALID_EXAMPLES}); use a larger --val-fraction or a --valid file"]
    task, said = _create(kind, tmp_path / "enough", data=str(data), val_fraction=0.4, hidden=4, embed=4, batch=2)
    assert len(task.valid) == 24 and said == []
    task, said = _create(kind, tmp_path / "none", data=str(data), val_fraction=0.0, hidden=4, embed=4, batch=2)
    assert len(task.valid) == 0 and said == []                              # no validation asked for: nothing to say
    valid = writer(tmp_path / "valid.data", 5, seed=1)
    task, said = _create(kind, tmp_path / "file", data=str(data), valid=str(valid), hidden=4, embed=4, batch=2)
    assert len(task.valid) == 5
    assert said == [f"validation: the scores rest on only 5 {what} (--valid {valid}; fewer than 20); "
                    "use a larger --valid file"]
    one = writer(tmp_path / "one.data", 1, seed=1)
    _, said = _create(kind, tmp_path / "one", data=str(data), valid=str(one), hidden=4, embed=4, batch=2)
    assert said == [f"validation: the scores rest on only 1 {what[:-1]} (--valid {one}; fewer than 20); "
                    "use a larger --valid file"]
    config = TASKS[kind].Config(data=str(data), val_fraction=0.05, hidden=4, embed=4, batch=2).validate()
    with pytest.warns(SeqnetWarning, match=r"^validation: the scores rest on only 3 "):   # as a run sees it
        new_run(kind, config, trainer_config(1), tmp_path / "run", progress=False, log=lambda text: None).close()


def test_a_small_held_out_translation_split_is_warned_about(tmp_path):
    from test_translate_cli import write_pairs

    data = write_pairs(tmp_path / "pairs.tsv", 60)
    task, said = _create("translate", tmp_path / "small", data=str(data), val_fraction=0.25, tokenizer="word",
                         hidden=8, embed=4, batch=2)
    assert len(task.valid) == 15
    assert said == [f"validation: the scores rest on only 15 pairs (--val-fraction 0.25 of --data {data}; "
                    "fewer than 20); use a larger --val-fraction or a --valid file"]
    task, said = _create("translate", tmp_path / "enough", data=str(data), val_fraction=0.4, tokenizer="word",
                         hidden=8, embed=4, batch=2)
    assert len(task.valid) == 24 and said == []


def test_a_language_model_validation_tail_of_under_two_windows_is_warned_about(tmp_path):
    from seqnet.tasks.language_model import MIN_VALID_WINDOWS, evaluate_ids

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\n" * 400, encoding="utf-8")            # 9,200 characters
    common = dict(corpus=str(corpus), hidden=4, embed=4, batch=4, seq_len=64, sample_length=0)
    # 2% -> 184 tokens: 4 streams of 46, so 45 predictions each, one window of 64
    task, said = _create("lm", tmp_path / "one", val_fraction=0.02, **common)
    tail = task.val_ids.shape[0]
    assert 150 < tail < 250
    scored = evaluate_ids(task.model, task.val_ids, 4, 64)[1]              # what evaluation really predicts
    assert scored == 4 * (tail // 4 - 1)
    assert said == [f"validation: the held-out tail (--val-fraction 0.02 of {task.train_ids.shape[0] + tail:,} corpus "
                    f"tokens) is {tail} tokens, 1 evaluation window of --batch 4 x --seq-len 64; the validation "
                    f"scores rest on only {scored} predicted tokens; use a larger --val-fraction or a larger corpus"]
    task, said = _create("lm", tmp_path / "none", val_fraction=0.0005, **common)     # 4 tokens: 1 per stream
    assert task.val_ids.shape[0] < 8 and task.evaluate() == {"val_bits_per_token": None}
    assert len(said) == 1 and "fewer than 2 per stream of --batch 4: no validation scores will be reported" in said[0]
    task, said = _create("lm", tmp_path / "enough", val_fraction=0.1, **common)      # 920 tokens: 4 windows
    assert MIN_VALID_WINDOWS == 2 and task.val_ids.shape[0] // 4 - 1 > 2 * 64 and said == []
    _, said = _create("lm", tmp_path / "off", val_fraction=0.0, **common)
    assert said == []


def test_new_run_refuses_an_unknown_kind_and_another_task_s_config(tmp_path):
    config = TASKS["classify"].Config(data="unused.tsv")
    with pytest.raises(ConfigError, match=r"^kind: expected one of .*lm.*, received 'lmx'$"):
        new_run("lmx", config, TrainerConfig(), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^task_config: expected a \w+ for kind 'lm', received ClassifyConfig$"):
        new_run("lm", config, TrainerConfig(), tmp_path / "run")
    assert not (tmp_path / "run").exists()                           # refused before the run directory is made


def test_generator_eval_counts_unknown_tokens(tmp_path):
    data = write_generate(tmp_path / "train.jsonl")
    train("generate", tmp_path / "run", 2, data=str(data), hidden=4, embed=4, sample_length=0)
    task = load_task(tmp_path / "run")
    known = tmp_path / "known.jsonl"
    known.write_text('{"condition": "lower", "text": "abc"}\n', encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert task.evaluate_file(known)["unknown_tokens"] == 0
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"condition": "lower", "text": "xyz"}\n{"condition": "upper", "text": "AB"}\n', encoding="utf-8")
    with pytest.warns(SeqnetWarning, match=r"^3 of the 7 predicted tokens \(42\.9%\) are unknown .* the bits per "
                                           r"token of this file"):
        report = task.evaluate_file(odd)
    assert report["unknown_tokens"] == 3 and report["tokens"] == 7          # x, y, z of "xyz" + end, "AB" + end


def test_multi_label_and_class_weighted_losses_say_their_unit(tmp_path):
    rng = random.Random(0)
    multi = tmp_path / "multi.jsonl"
    with open(multi, "w", encoding="utf-8") as f:
        for _ in range(60):
            text = "".join(rng.choice("abc") for _ in range(4))
            f.write(json.dumps({"text": text, "labels": sorted({c for c in text if c != "c"})}) + "\n")
    summary = train("classify", tmp_path / "m", 3, data=str(multi), valid=str(multi), hidden=4, embed=4)
    records = list(load_task(tmp_path / "m").predict_file(multi))
    gold = [set(json.loads(line)["labels"]) for line in multi.read_text(encoding="utf-8").splitlines()]
    bits = -np.mean([np.log2(p if name in labels else 1 - p) for r, labels in zip(records, gold)
                     for name, p in r["probabilities"].items()])       # binary cross-entropy per (text, label)
    assert summary["val_bits_per_label"] == pytest.approx(bits, abs=1e-4) and "train_bits_per_label" in summary
    weighted = train("classify", tmp_path / "w", 2, data=str(write_classify(tmp_path / "c.jsonl")), hidden=4, embed=4,
                     class_weights="balanced")
    assert "val_weighted_bits_per_text" in weighted and "train_weighted_bits_per_text" in weighted
