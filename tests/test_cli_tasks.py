"""``python -m seqnet`` for the classify, tag and generate tasks as a user runs them: train,
resume, eval, predict, sample --condition; every misuse answered with exit code 2 and one
line ``seqnet <cmd>: error: ...`` naming what was wrong (never a traceback)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_seq_tasks import write_classify, write_conll, write_generate

SRC = str(Path(__file__).resolve().parents[1] / "src")
SMALL = ["--hidden", "8", "--embed", "4", "--batch", "16", "--steps", "6", "--eval-every", "3",
         "--checkpoint-every", "3", "--no-progress"]


def seqnet(*args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "seqnet", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_usage_error(result, command: str, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(f"seqnet {command}: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tasks")
    files = {"classify": write_classify(base / "c.jsonl"), "tag": write_conll(base / "t.conll"),
             "generate": write_generate(base / "g.jsonl")}
    out = {"base": base, "files": files}
    for kind, extra in (("classify", ["--pooling", "attention"]), ("tag", ["--crf"]),
                        ("generate", ["--sample-every", "3", "--sample-length", "5"])):
        result = seqnet("train", "--task", kind, "--data", files[kind], "--out", base / kind, "--json", *SMALL, *extra)
        assert result.returncode == 0, result.stderr
        out[kind] = (base / kind, result)
    lm = seqnet("train", "--corpus", files["classify"], "--out", base / "lm", "--hidden", "8", "--embed", "4",
                "--batch", "2", "--seq-len", "8", "--steps", "2", "--sample-length", "0", "--no-progress")
    assert lm.returncode == 0, lm.stderr
    out["lm"] = base / "lm"
    return out


@pytest.mark.parametrize("kind, keys", [("classify", {"val_accuracy", "val_macro_f1"}),
                                        ("tag", {"val_token_accuracy", "val_entity_f1"}),
                                        ("generate", {"val_bits_per_token"})])
def test_train_writes_a_run_directory_and_json_lines(runs, kind, keys):
    run_dir, result = runs[kind]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["event"] for r in records] == ["eval", "eval", "summary"]
    assert keys <= set(records[-1]) and records[-1]["steps"] == 6
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"]["kind"] == kind and config["task"]["hidden"] == 8
    if kind == "classify":
        pytest.importorskip("matplotlib")
        assert (run_dir / "confusion.png").stat().st_size > 0


def test_resume_continues_a_classify_run(runs, tmp_path):
    data = runs["files"]["classify"]
    first = seqnet("train", "--task", "classify", "--data", data, "--out", tmp_path / "r", *SMALL)
    assert first.returncode == 0, first.stderr
    again = seqnet("train", "--out", tmp_path / "r", "--resume", "--steps", "9", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "trained 9 steps" in again.stdout


def test_eval_predict_and_sample(runs):
    files = runs["files"]
    report = json.loads(seqnet("eval", runs["classify"][0], "--data", files["classify"], "--json").stdout)
    assert 0 <= report["accuracy"] <= 1 and set(report["per_class"]) == {"a", "b", "c"}
    text = seqnet("eval", runs["tag"][0], "--data", files["tag"])
    assert text.returncode == 0 and "entities (conlleval)" in text.stdout and "NUM" in text.stdout
    gen = json.loads(seqnet("eval", runs["generate"][0], "--data", files["generate"], "--json").stdout)
    assert gen["bits_per_token"] > 0 and gen["texts"] == 120

    predicted = seqnet("predict", runs["classify"][0], "--data", files["classify"])
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == 160 and records[0]["label"] in {"a", "b", "c"}
    tagged = [json.loads(line) for line in seqnet("predict", runs["tag"][0], "--data", files["tag"]).stdout.splitlines()]
    assert len(tagged) == 120 and all(len(r["tokens"]) == len(r["tags"]) for r in tagged)

    sampled = seqnet("sample", runs["generate"][0], "--condition", "upper", "--num", "4", "--seed", "1")
    assert sampled.returncode == 0 and len(sampled.stdout.splitlines()) == 4
    assert sampled.stdout == seqnet("sample", runs["generate"][0], "--condition", "upper", "--num", "4",
                                    "--seed", "1").stdout


def test_train_misuse(runs, tmp_path):
    files = runs["files"]
    assert_usage_error(seqnet("train", "--task", "classify"), "train", "--data: --task classify needs a training data file")
    assert_usage_error(seqnet("train", "--task", "tag", "--data", tmp_path / "missing.conll"), "train",
                       "missing.conll: no such file or directory")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b" "label": "y"}\n', encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", bad), "train", "bad.jsonl:2: malformed JSON")
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text('{"text": "zzz", "label": "z"}\n', encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", files["classify"], "--valid", unseen, *SMALL,
                              "--out", tmp_path / "x"), "train", "unseen.jsonl:1: label 'z' never seen in training")
    assert_usage_error(seqnet("train", "--task", "lm", "--data", files["classify"]), "train",
                       "--task lm: does not take --data")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", files["classify"], "--seq-len", "5"), "train",
                       "--task classify: does not take --seq-len")
    columns = tmp_path / "cols.conll"
    columns.write_text("EU NNP B-ORG\nrejects O\n", encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "tag", "--data", columns), "train",
                       "cols.conll:2: expected 3 columns (as on line 1), received 2")
    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps({"text": f"t{i}", "label": "only"}) + "\n" for i in range(6)), encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", single, "--out", tmp_path / "s"), "train",
                       "every example has the label 'only'; a classifier needs at least 2 classes")
    one_tag = tmp_path / "one_tag.conll"
    one_tag.write_text("".join(f"w{i}\tO\n\n" for i in range(6)), encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "tag", "--data", one_tag, "--out", tmp_path / "t"), "train",
                       "every token has the tag 'O'; a tagger needs at least 2 tags")
    empty_labels = tmp_path / "empty_labels.jsonl"
    empty_labels.write_text("".join(json.dumps({"text": f"t{i}", "labels": []}) + "\n" for i in range(6)),
                            encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", empty_labels, "--out", tmp_path / "e"), "train",
                       "empty_labels.jsonl: every example has an empty 'labels' list")
    multi = tmp_path / "multi.jsonl"
    multi.write_text("".join(json.dumps({"text": f"t{i}", "labels": ["a", "b"][: i % 3]}) + "\n" for i in range(9)),
                     encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", multi, "--class-weights", "balanced",
                              "--out", tmp_path / "m"), "train", "--class-weights balanced:", "multi-label")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", files["classify"], "--batch", "100000",
                              "--out", tmp_path / "b"), "train", "--batch: expected at most the", "received 100000")


def test_eval_predict_sample_misuse(runs):
    files, lm = runs["files"], runs["lm"]
    classify, tag, generate = runs["classify"][0], runs["tag"][0], runs["generate"][0]
    assert_usage_error(seqnet("eval", classify), "eval", "--data:", "give the labelled file")
    assert_usage_error(seqnet("eval", classify, "--corpus", files["classify"]), "eval", "--corpus: for language models")
    assert_usage_error(seqnet("eval", tag, "--data", files["tag"], "--plot", "x.png"), "eval",
                       "--plot: the confusion matrix is for classify runs")
    assert_usage_error(seqnet("eval", lm, "--data", files["classify"]), "eval", "--data: for classify, tag, generate and translate")
    assert_usage_error(seqnet("eval", lm), "eval", "--corpus:", "holds a language model")
    assert_usage_error(seqnet("predict", lm, "--data", files["classify"]), "predict", "holds a lm model")
    ragged = runs["base"] / "ragged.conll"
    ragged.write_text("the\tO\ncat sat\tO\tX\n", encoding="utf-8")
    assert_usage_error(seqnet("predict", tag, "--data", ragged), "predict", "ragged.conll:2: expected 2 columns")
    assert_usage_error(seqnet("predict", generate, "--data", files["classify"]), "predict",
                       "c.jsonl:1: missing the 'condition' field")
    assert_usage_error(seqnet("sample", classify), "sample", "holds a classify model")
    assert_usage_error(seqnet("sample", lm, "--condition", "upper"), "sample", "--condition: only for conditional")
    assert_usage_error(seqnet("sample", generate), "sample", "--condition:", "lower, upper")
    assert_usage_error(seqnet("sample", generate, "--condition", "title"), "sample",
                       "--condition: 'title' never seen in training")
    assert_usage_error(seqnet("sample", generate, "--condition", "upper", "--prime", "A"), "sample", "--prime:")
    assert_usage_error(seqnet("sample", generate, "--condition", "upper", "--temperature", "0"), "sample",
                       "--temperature: expected a finite number > 0, received 0.0")


def test_flags_a_labelled_run_would_ignore(runs, tmp_path):
    files = runs["files"]
    classify, tag, generate = runs["classify"][0], runs["tag"][0], runs["generate"][0]
    assert_usage_error(seqnet("predict", classify, "--data", files["classify"], "--temperature", "0.5"), "predict",
                       "--temperature: for generate runs, which sample", "holds a classify model")
    assert_usage_error(seqnet("predict", generate, "--data", files["generate"], "--seed", "-3"), "predict",
                       "--seed: expected an integer >= 0, received -3")
    assert_usage_error(seqnet("eval", tag, "--data", files["tag"], "--batch", "4"), "eval",
                       "--batch: for language and translation models", "holds a tag model")
    assert_usage_error(seqnet("eval", classify, "--data", files["classify"], "--beam", "3"), "eval",
                       "--beam: a search flag, for translation models")
    assert_usage_error(seqnet("sample", generate, "--condition", "upper", "--greedy", "--seed", "1"), "sample",
                       "--seed: a sampling control; --greedy does not sample")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", files["classify"], "--attention-size", "8",
                              "--out", tmp_path / "a", *SMALL), "train", "--attention-size: applies only with --pooling "
                                                                        "attention; this run has --pooling last")
    assert_usage_error(seqnet("train", "--task", "tag", "--data", files["tag"], "--valid", files["tag"],
                              "--val-fraction", "0.2", "--out", tmp_path / "b", *SMALL), "train",
                       "--val-fraction: applies only with no --valid file")
    assert_usage_error(seqnet("train", "--task", "classify", "--data", ""), "train",
                       "data file: expected a JSON lines or TSV file", "received an empty path")


@pytest.mark.parametrize("name, fragment", [
    ("picture.jpg", "--plot: expected a .png file name, received"),
    ("missing/picture.png", "--plot: the directory"),
])
def test_eval_plot_path_is_checked_before_scoring(runs, name, fragment):
    classify, data = runs["classify"][0], runs["files"]["classify"]
    path = runs["base"] / name
    assert_usage_error(seqnet("eval", classify, "--data", data, "--plot", path), "eval", fragment)
    assert not path.exists()


def test_eval_plot_writes_the_confusion_matrix(runs):
    pytest.importorskip("matplotlib")
    path = runs["base"] / "confusion-eval.png"
    result = seqnet("eval", runs["classify"][0], "--data", runs["files"]["classify"], "--plot", path)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_resume_refuses_flags_of_other_tasks_by_name(runs, tmp_path):
    cases = [("classify", ["--crf"], ["--crf", "--task tag"]),
             ("classify", ["--attention", "dot", "--max-source-len", "3", "--corpus", "foo", "--seq-len", "9"],
              ["--attention", "--max-source-len", "--corpus", "--seq-len"]),
             ("tag", ["--pooling", "max", "--bidirectional"], ["--pooling", "--bidirectional"]),
             ("lm", ["--crf"], ["--crf"]), ("lm", ["--pooling", "mean", "--attention", "bahdanau"],
                                           ["--pooling", "--attention"]), ("lm", ["--data", "foo"], ["--data"])]
    for kind, flags, fragments in cases:
        run_dir = runs[kind] if kind == "lm" else runs[kind][0]
        before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
        result = seqnet("train", "--out", run_dir, "--resume", "--steps", "32", *flags)
        assert_usage_error(result, "train", f"holds a --task {kind} run, which does not take", *fragments)
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


def test_resume_takes_the_same_data_file_by_another_name(runs, tmp_path):
    import shutil

    copy = shutil.copytree(runs["classify"][0], tmp_path / "copy")
    data = Path(runs["files"]["classify"])
    relative = os.path.relpath(data, tmp_path)
    result = subprocess.run([sys.executable, "-m", "seqnet", "train", "--out", "copy", "--resume", "--steps", "9",
                             "--data", relative, "--no-progress"], capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=SRC, PYTHONWARNINGS="ignore"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "trained 9 steps" in result.stdout and copy.exists()


def test_sample_of_a_generator_refuses_the_beam_search_flags(runs):
    run_dir = runs["generate"][0]
    for flags in (["--length-penalty", "avg"], ["--alpha", "3"], ["--block-ngram", "2"], ["--beam", "2"]):
        assert_usage_error(seqnet("sample", run_dir, "--condition", "x", *flags), "sample", flags[0],
                           "conditional generator", f"drop {flags[0]}")


def test_a_run_trained_from_a_pipe_refuses_data_on_resume(runs, tmp_path):
    """--data <(...) is /dev/fd/N: a later pipe of that name holds other data, so it is never the run's."""
    data = runs["files"]["classify"]
    script = (f'"{sys.executable}" -m seqnet train --task classify --data <(cat "{data}") --out "{tmp_path}/p" '
              + " ".join(SMALL) + f' && "{sys.executable}" -m seqnet train --out "{tmp_path}/p" --resume --steps 9 '
              f'--data <(cat "{data}")')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=180,
                            env=dict(os.environ, PYTHONPATH=SRC, PYTHONWARNINGS="ignore"))
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().split("\n")[-1]
    assert last.startswith("seqnet train: error: ") and "Traceback" not in result.stderr
    assert "the run read a pipe, /dev/fd/" in last and "resume needs no --data" in last
