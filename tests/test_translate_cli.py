"""``seqnet train --task translate``, ``seqnet translate``, ``seqnet eval --data`` and
``seqnet sample --beam`` as a user runs them, and every bad input the translation commands
foresee: exit code 2, one ``seqnet <command>: error: ...`` line, never a traceback."""
from __future__ import annotations

import json
import random

import pytest

from test_cli import assert_usage_error, seqnet, write_corpus

WORDS = "one two three four five six".split()
TINY = ["--hidden", "16", "--embed", "8", "--batch", "8", "--steps", "40", "--eval-every", "20",
        "--checkpoint-every", "20", "--sample-every", "20", "--eval-size", "10", "--lr", "0.01", "--no-progress"]


def write_pairs(path, count=60, seed=0):
    """Word sequences and their reversal, as TSV."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
        lines.append(" ".join(words) + "\t" + " ".join(reversed(words)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny translation run (trained with --json) and a tiny language-model run."""
    base = tmp_path_factory.mktemp("translate")
    train, valid = write_pairs(base / "train.tsv"), write_pairs(base / "valid.tsv", 12, seed=1)
    run_dir = base / "run"
    result = seqnet("train", "--task", "translate", "--data", train, "--valid", valid, "--tokenizer", "word",
                    "--attention", "bahdanau", "--out", run_dir, "--json", *TINY)
    assert result.returncode == 0, result.stderr
    corpus = write_corpus(base / "corpus.txt", lines=20)
    lm_dir = base / "lm"
    lm = seqnet("train", "--corpus", corpus, "--out", lm_dir, "--hidden", "8", "--embed", "4", "--batch", "2",
                "--seq-len", "8", "--steps", "4", "--sample-length", "0", "--no-progress")
    assert lm.returncode == 0, lm.stderr
    return {"base": base, "run": run_dir, "train": train, "valid": valid, "result": result, "lm": lm_dir}


def test_train_translate_writes_a_run_with_metrics(runs):
    records = [json.loads(line) for line in runs["result"].stdout.splitlines()]
    assert [r["event"] for r in records] == ["eval", "eval", "summary"]
    for record in records[:2]:
        assert record["val_bits_per_token"] > 0 and 0 <= record["val_exact_match"] <= 1
        assert 0 <= record["val_token_accuracy"] <= 1
    config = json.loads((runs["run"] / "config.json").read_text())
    assert config["task"]["kind"] == "translate" and config["task"]["attention"] == "bahdanau"
    assert "->" in runs["result"].stderr                            # translations shown at --sample-every


def test_resume_continues_the_run(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["run"], copy)
    result = seqnet("train", "--resume", "--out", copy, "--steps", "44", "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["steps"] == 44


def test_translate_texts_files_json_and_n_best(runs, tmp_path):
    plain = seqnet("translate", runs["run"], "one two", "three")
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == 2
    best = seqnet("translate", runs["run"], "one two", "--beam", "3", "--n-best", "2", "--scores")
    lines = best.stdout.splitlines()
    assert best.returncode == 0 and len(lines) == 2
    scores = [float(line.split("\t")[0]) for line in lines]
    assert scores[0] >= scores[1] and all(s <= 0 for s in scores)
    inputs = tmp_path / "in.txt"
    inputs.write_text("one\n\ntwo\u2028three\n", encoding="utf-8")     # U+2028 ends no line
    from_file = seqnet("translate", runs["run"], "--input", inputs, "--json", "--attention")
    assert from_file.returncode == 0, from_file.stderr
    records = [json.loads(line) for line in from_file.stdout.split("\n")[:-1]]
    assert [r["source"] for r in records] == ["one", "", "two\u2028three"]  # a blank line keeps its place
    assert records[1]["outputs"] == [] and records[1]["attention"] == []
    weights = records[2]["attention"][0]
    assert len(weights[0]) == 2 and all(abs(sum(row) - 1) < 1e-5 for row in weights)
    lines = seqnet("translate", runs["run"], "--input", inputs).stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""          # one output line per input line
    after = seqnet("translate", runs["run"], "one", "--beam", "2", "two three", "--", "-x")
    assert after.returncode == 0, after.stderr
    assert len(after.stdout.splitlines()) == 3                             # TEXT after options, and after --


def test_eval_data_reports_translation_metrics(runs):
    result = seqnet("eval", runs["run"], "--data", runs["valid"], "--json", "--beam", "2")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["pairs"] == 12
    assert {"exact_match", "token_accuracy", "char_error_rate", "bleu"} <= set(record)
    text = seqnet("eval", runs["run"], "--data", runs["valid"])
    assert text.returncode == 0 and "exact match" in text.stdout and "BLEU" in text.stdout


def test_sample_beam_on_a_language_model(runs):
    result = seqnet("sample", runs["lm"], "--prime", "the ", "--length", "10", "--beam", "3", "--num", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--- sample") == 2
    greedy = seqnet("sample", runs["lm"], "--prime", "the ", "--length", "10", "--greedy")
    one = seqnet("sample", runs["lm"], "--prime", "the ", "--length", "10", "--beam", "1")
    assert greedy.stdout == one.stdout


# --------------------------------------------------------------------------- bad input


def test_bad_data_files_name_file_and_line(runs, tmp_path):
    no_tab = tmp_path / "no_tab.tsv"
    no_tab.write_text("one\ttwo\nthree four\n", encoding="utf-8")
    result = seqnet("train", "--task", "translate", "--data", no_tab, "--out", tmp_path / "a", *TINY)
    assert_usage_error(result, f"{no_tab}:2: expected one pair as source<TAB>target, found no tab")
    empty = tmp_path / "empty.tsv"
    empty.write_text("one\ttwo\n\tfour\n", encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "translate", "--data", empty, "--out", tmp_path / "b", *TINY),
                       f"{empty}:2: empty source")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"source": "a", "target": "b"}\n{"source": "a"}\n', encoding="utf-8")
    assert_usage_error(seqnet("train", "--task", "translate", "--data", bad_json, "--out", tmp_path / "c", *TINY),
                       f"{bad_json}:2: expected an object")


def test_too_long_sides_say_how_to_raise_the_limit(runs, tmp_path):
    result = seqnet("train", "--task", "translate", "--data", runs["train"], "--tokenizer", "word",
                    "--max-source-len", "2", "--out", tmp_path / "a", *TINY)
    assert_usage_error(result, "tokens, more than --max-source-len 2; raise --max-source-len")


@pytest.mark.parametrize("args,fragment", [
    (["--beam", "0"], "seqnet translate: error: --beam: expected a positive integer, received 0"),
    (["--beam", "2", "--n-best", "3"], "--n-best: expected at most --beam 2 outputs per source, received 3"),
    (["--min-len", "-1"], "--min-len: expected an integer >= 0, received -1"),
    (["--attention"], "--attention: the weights are printed only with --json"),
    (["--max-len-a", "0", "--max-len-b", "0"], "--max-len-a, --max-len-b: both 0 allow no output token"),
    (["--max-len-a", "inf"], "--max-len-a: expected a finite number >= 0, received inf"),
    (["--beam", "2", "--alpha", "0.5"], "--alpha: the exponent of a length penalty; add --length-penalty avg or wu"),
    (["--bogus"], "seqnet translate: error: unrecognized arguments: --bogus"),
    (["", "two"], "TEXT: expected non-empty sources, received '' (argument 2)"),
])
def test_bad_search_flags(runs, args, fragment):
    assert_usage_error(seqnet("translate", runs["run"], "one", *args), fragment)


def test_unknown_attention_type(runs, tmp_path):
    result = seqnet("train", "--task", "translate", "--data", runs["train"], "--attention", "luong",
                    "--out", tmp_path / "a", *TINY)
    assert_usage_error(result, "--attention", "luong", "bahdanau")


def test_data_of_one_task_given_to_the_other(runs, tmp_path):
    assert_usage_error(seqnet("train", "--data", runs["train"], "--out", tmp_path / "a", "--steps", "2"),
                       "--task lm: does not take --data (settings of --task classify, generate, tag, translate)")
    assert_usage_error(seqnet("train", "--task", "translate", "--corpus", runs["train"], "--out", tmp_path / "b"),
                       "--task translate: does not take --corpus (settings of --task lm)")
    assert_usage_error(seqnet("train", "--task", "translate", "--out", tmp_path / "c", "--steps", "2"),
                       "--data: --task translate needs a parallel data file")
    text = write_corpus(tmp_path / "plain.txt", lines=5)
    assert_usage_error(seqnet("train", "--task", "translate", "--data", text, "--out", tmp_path / "d", *TINY),
                       f"{text}:1: expected one pair as source<TAB>target, found no tab (plain text? a language "
                       "model reads it: --task lm --corpus FILE)")


def test_commands_refuse_the_other_kind_of_run(runs):
    assert_usage_error(seqnet("translate", runs["lm"], "one"),
                       f"seqnet translate: error: {runs['lm']}: holds a lm model; seqnet translate needs a "
                       "translation model")
    assert_usage_error(seqnet("sample", runs["run"]), "holds a translate model; seqnet sample needs a language model")
    assert_usage_error(seqnet("eval", runs["run"], "--corpus", runs["train"]),
                       "--corpus: a translation model is evaluated on parallel pairs: --data FILE")
    assert_usage_error(seqnet("eval", runs["lm"], "--data", runs["train"]),
                       "--data: for classify, tag, generate and translate runs", "holds a language model")
    assert_usage_error(seqnet("sample", runs["lm"], "--beam", "0"), "--beam: expected a positive integer, received 0")
    assert_usage_error(seqnet("sample", runs["lm"], "--beam", "2", "--temperature", "0.5"),
                       "--temperature: beam search does not sample")
    assert_usage_error(seqnet("sample", runs["lm"], "--block-ngram", "2"), "--block-ngram: applies to beam search only")


def test_flags_that_would_do_nothing_are_refused(runs):
    assert_usage_error(seqnet("eval", runs["lm"], "--corpus", runs["train"], "--beam", "2"),
                       "--beam: a search flag, for translation models", "holds a lm model")
    assert_usage_error(seqnet("eval", runs["run"], "--data", runs["valid"], "--seq-len", "8"),
                       "--seq-len: for language models", "holds a translate model")
    assert_usage_error(seqnet("sample", runs["lm"], "--beam", "2", "--alpha", "0.7"),
                       "--alpha: the exponent of a length penalty; add --length-penalty avg or wu")
    assert_usage_error(seqnet("sample", runs["lm"], "--greedy", "--temperature", "0.5"),
                       "--temperature: a sampling control; --greedy does not sample")
    assert_usage_error(seqnet("sample", runs["lm"], "--greedy", "--num", "3"),
                       "--num: --greedy gives one text", "received 3")
    assert_usage_error(seqnet("sample", runs["lm"], "--temperature", "inf"),
                       "--temperature: expected a finite number > 0, received inf")
    assert_usage_error(seqnet("sample", runs["lm"], "--length", "0"), "--length: expected a positive integer, received 0")
    assert_usage_error(seqnet("sample", runs["lm"], "--top-k", "0"), "--top-k: expected a positive integer, received 0")
    assert_usage_error(seqnet("sample", runs["lm"], "--seed", "-3"), "--seed: expected an integer >= 0, received -3")
    assert_usage_error(seqnet("sample", runs["lm"], "extra"), "seqnet sample: error: unrecognized arguments: extra")
    assert_usage_error(seqnet("sample", runs["lm"], "--threads", "0"), "--threads: expected a positive integer")
    assert_usage_error(seqnet("train", "--task", "translate", "--data", runs["train"], "--attention", "none",
                              "--no-input-feed", "--out", runs["base"] / "never"),
                       "--no-input-feed: applies only with an --attention other than none")
    assert not (runs["base"] / "never").exists()


def test_error_output_is_one_line(runs):
    result = seqnet("translate", runs["run"], "one", "--beam", "0")
    assert result.stderr.strip().count("\n") == 0


def test_search_flags_that_would_do_nothing_are_refused(runs):
    assert_usage_error(seqnet("eval", runs["run"], "--data", runs["valid"], "--n-best", "2", "--beam", "2"),
                       "--n-best: seqnet eval scores the best output", "drop --n-best 2")
    assert_usage_error(seqnet("eval", runs["run"], "--data", runs["valid"], "--plot", runs["base"] / "x.png"),
                       "--plot:", "translation model")
    assert not (runs["base"] / "x.png").exists()
    assert_usage_error(seqnet("translate", runs["run"], "--scores", "--json", "one"), "--scores:", "drop --scores")


def test_min_len_errors_speak_of_the_flags(runs):
    result = seqnet("translate", runs["run"], "--min-len", "50", "one")
    assert_usage_error(result, "seqnet translate: error: --min-len: 50 is above the maximum output length",
                       "lower --min-len or raise --max-len-a / --max-len-b")
    assert "min_len" not in result.stderr and "max_len_a" not in result.stderr


def test_resume_of_a_translation_run_refuses_other_tasks_flags(runs):
    result = seqnet("train", "--out", runs["run"], "--resume", "--steps", "60", "--crf", "--pooling", "mean",
                    "--condition-embed", "3")
    assert_usage_error(result, "holds a --task translate run, which does not take --condition-embed, --crf, --pooling",
                       "nothing was changed")


def test_a_tab_in_an_input_line_is_translated_with_a_warning(runs, tmp_path):
    inputs = tmp_path / "pairs.tsv"
    inputs.write_text("one\ttwo\nthree\n", encoding="utf-8")
    result = seqnet("translate", runs["run"], "--input", inputs)
    assert result.returncode == 0 and len(result.stdout.split("\n")) == 3, result.stderr
    assert "seqnet translate: warning: --input: line 1 of" in result.stderr and "seqnet eval DIR --data" in result.stderr
