"""``python -m seqnet train | sample | eval`` as a user runs them: files written, stdout kept
machine-readable under --json, determinism, and every foreseeable mistake answered with exit
code 2 and one clear line on stderr (never a traceback)."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clitools import TINY, assert_usage_error, command, env, seqnet, write_corpus

SUMMARY_KEYS = {"steps", "train_bits_per_token", "val_bits_per_token", "tokens_per_s"}


def split_samples(stdout: str) -> list[str]:
    parts = re.split(r"^--- sample \d+ ---\n", stdout, flags=re.MULTILINE)
    return [p[:-1] if p.endswith("\n") else p for p in parts[1:]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run trained with --json: (run_dir, corpus, CompletedProcess)."""
    base = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(base / "corpus.txt")
    run_dir = base / "run"
    result = seqnet("train", "--corpus", corpus, "--out", run_dir, "--json", *TINY)
    assert result.returncode == 0, result.stderr
    return run_dir, corpus, result


# --------------------------------------------------------------------------- train


def test_train_writes_the_run_directory(trained):
    run_dir, _, _ = trained
    for name in ("config.json", "latest.json", "metrics.jsonl", "tokens.bin"):
        assert (run_dir / name).is_file(), name
    pytest.importorskip("matplotlib")
    assert (run_dir / "loss.png").stat().st_size > 0


def test_train_config_and_pointer(trained):
    run_dir, corpus, _ = trained
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"]["kind"] == "lm" and config["task"]["hidden"] == 16 and config["task"]["corpus"] == str(corpus)
    assert config["trainer"]["steps"] == 12
    pointer = json.loads((run_dir / "latest.json").read_text())
    assert pointer["step"] == 12 and (run_dir / pointer["checkpoint"] / "meta.json").is_file()


def test_metrics_are_json_lines_with_eval_records(trained):
    run_dir, _, _ = trained
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12]
    for record in evals:
        assert math.isfinite(record["train_bits_per_token"]) and record["val_bits_per_token"] > 0
    assert records[-1]["event"] == "summary"


def test_json_stdout_holds_only_json(trained):
    _, _, result = trained
    lines = result.stdout.splitlines()
    records = [json.loads(line) for line in lines]           # any other text on stdout fails here
    assert [r["event"] for r in records] == ["eval", "eval", "summary"]
    summary = records[-1]
    assert SUMMARY_KEYS <= set(summary)
    assert summary["steps"] == 12 and summary["tokens_per_s"] > 0
    assert "sample at step 6" in result.stderr                 # logs and samples went to stderr


# --------------------------------------------------------------------------- sample and eval


def test_sample_is_deterministic_and_keeps_the_prime(trained):
    run_dir, _, _ = trained
    args = ("sample", run_dir, "--prime", "the ", "--num", 2, "--seed", 1, "--length", 30)
    first, second = seqnet(*args), seqnet(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    samples = split_samples(first.stdout)
    assert len(samples) == 2
    assert all(s.startswith("the ") for s in samples)


def test_sample_is_the_same_on_array_api_strict(trained):
    run_dir, _, _ = trained
    args = ("sample", run_dir, "--prime", "the c", "--seed", 3, "--length", 25)
    numpy_run = seqnet(*args)
    strict_run = seqnet(*args, "--backend", "array_api_strict")
    assert numpy_run.returncode == 0 and strict_run.returncode == 0, strict_run.stderr
    assert strict_run.stdout == numpy_run.stdout


def test_eval_reports_bits_and_perplexity(trained):
    run_dir, corpus, _ = trained
    result = seqnet("eval", run_dir, "--corpus", corpus, "--json", "--batch", 4, "--seq-len", 16)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    # 4 streams of len // 4 characters each; every character after a stream's first is predicted
    length = len(corpus.read_text())
    assert record["bits_per_token"] > 0 and record["corpus_tokens"] == length
    assert record["tokens"] == 4 * (length // 4 - 1)
    assert math.isclose(record["perplexity"], 2 ** record["bits_per_token"], rel_tol=1e-9)


def test_eval_of_a_short_text_uses_fewer_streams(trained, tmp_path):
    run_dir, _, _ = trained
    short = tmp_path / "short.txt"
    short.write_text("the cat sat", encoding="utf-8")                       # 11 characters: 5 streams of 2
    record = json.loads(seqnet("eval", run_dir, "--corpus", short, "--json").stdout)
    assert record["streams"] == 5 and record["tokens"] == 5
    one = tmp_path / "one.txt"
    one.write_text("t", encoding="utf-8")
    assert_usage_error(seqnet("eval", run_dir, "--corpus", one), "holds 1 token; expected at least 2")


def test_products_survive_closed_and_full_outputs(trained):
    run_dir, _, _ = trained
    closed = subprocess.run(command("sample", run_dir, "--length", "20", "--seed", "1"), stderr=subprocess.PIPE,
                            text=True, env=env(), timeout=120, preexec_fn=lambda: os.close(1))       # >&-
    assert closed.returncode == 0 and "Traceback" not in closed.stderr, closed.stderr
    no_stdin = subprocess.run(command("sample", run_dir, "--length", "5"), capture_output=True, text=True, env=env(),
                              timeout=120, preexec_fn=lambda: os.close(0))
    assert no_stdin.returncode == 0 and no_stdin.stdout.strip(), no_stdin.stderr
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            result = subprocess.run(command("sample", run_dir, "--length", "20"), stdout=full,
                                    stderr=subprocess.PIPE, text=True, env=env(), timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "seqnet sample: error: standard output: cannot be written (No space left on device)" in result.stderr


def test_resume_may_move_the_run_to_another_backend(trained, tmp_path):
    pytest.importorskip("torch")
    run_dir, _, _ = trained
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    result = seqnet("train", "--out", moved, "--resume", "--steps", "14", "--backend", "torch", "--no-progress")
    assert result.returncode == 0, result.stderr
    meta = json.loads((moved / "config.json").read_text())
    assert meta["trainer"]["backend"] == "torch"
    again = seqnet("train", "--out", moved, "--resume", "--steps", "16", "--no-progress")
    assert again.returncode == 0, again.stderr                              # the run stays on torch
    assert json.loads((moved / "config.json").read_text())["trainer"]["backend"] == "torch"


# --------------------------------------------------------------------------- mistakes


def test_empty_corpus_name(tmp_path):
    assert_usage_error(seqnet("train", "--corpus", "", "--out", tmp_path / "run", *TINY),
                       "corpus: expected an existing file, directory, glob pattern", "received an empty string")


def test_flags_the_run_would_ignore(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    assert_usage_error(seqnet("train", "--corpus", corpus, "--max-words", "50", "--out", tmp_path / "a", *TINY),
                       "--max-words: applies only with --tokenizer word; this run has --tokenizer char")
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", tmp_path / "b", *TINY, "--sample-length", "0"),
                       "--sample-every: applies only with --sample-length above 0")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    plain = TINY[:TINY.index("--sample-every")] + TINY[TINY.index("--checkpoint-every"):TINY.index("--sample-length")]
    silent = seqnet("train", "--corpus", corpus, "--out", tmp_path / "c", *plain, "--sample-length", "0")
    assert silent.returncode == 0, silent.stderr
    assert silent.stdout.rstrip("\n").endswith(f"(sample again: seqnet sample {tmp_path / 'c'})")   # no sample
    short = seqnet("train", "--corpus", corpus, "--out", tmp_path / "d", *plain, "--sample-length", "7")
    assert short.returncode == 0, short.stderr
    sample = seqnet("sample", tmp_path / "d", "--length", "7", "--seed", "0", "--temperature", "0.8").stdout
    assert sample.strip() and short.stdout.endswith("(sample again: seqnet sample " + str(tmp_path / "d") + ")\n\n"
                                                      + sample)             # 7 characters after training


def test_missing_corpus(tmp_path):
    result = seqnet("train", "--corpus", tmp_path / "nope.txt", "--out", tmp_path / "run", *TINY)
    assert_usage_error(result, "nope.txt", "does not exist")
    assert not (tmp_path / "run" / "latest.json").exists()


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_usage_error(seqnet("train", "--corpus", tmp_path / "empty.txt", "--out", tmp_path / "run", *TINY), "empty")


def test_non_utf8_corpus_suggests_byte_tokenizer_which_works(tmp_path):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes(("café au lait, déjà vu\n" * 60).encode("latin-1"))
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", tmp_path / "a", *TINY), "--tokenizer byte")
    result = seqnet("train", "--corpus", corpus, "--out", tmp_path / "b", "--tokenizer", "byte", "--json", *TINY)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["steps"] == 12


def test_seq_len_too_long_for_the_data(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("abcdefghij" * 5, encoding="utf-8")
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", tmp_path / "run", *TINY, "--seq-len", "64"),
                       "seq_len")


def test_existing_out_without_resume_changes_nothing(trained):
    run_dir, corpus, _ = trained
    before = (run_dir / "latest.json").read_text()
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", run_dir, *TINY), "--resume")
    assert (run_dir / "latest.json").read_text() == before


def test_resume_refuses_changed_settings(trained):
    """Flags that would be ignored on --resume are an error naming them; the run is untouched."""
    run_dir, corpus, _ = trained
    before = (run_dir / "latest.json").read_text()
    result = seqnet("train", "--corpus", corpus, "--out", run_dir, "--resume", *TINY, "--lr", "0.5", "--cell", "gru")
    assert_usage_error(result, "--lr 0.5 (the run's: 0.003)", "--cell gru (the run's: lstm)", "only --steps")
    assert (run_dir / "latest.json").read_text() == before


@pytest.mark.parametrize("exists", [False, True])
def test_resume_without_a_checkpoint(tmp_path, exists):
    corpus = write_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    if exists:
        out.mkdir()
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", out, "--resume", *TINY),
                       "not a seqnet run directory" if exists else "does not exist")
    assert list(out.iterdir()) == [] if exists else not out.exists()          # nothing written there


def test_sampling_a_truncated_checkpoint_falls_back_to_the_previous_one(trained, tmp_path):
    """The newest checkpoint damaged: sample uses the one before, with a warning naming the damage;
    both damaged: an error naming the file."""
    run_dir, _, _ = trained
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    newest = copy / json.loads((copy / "latest.json").read_text())["checkpoint"]
    for step_dir in (newest, *(d for d in (copy / "checkpoints").iterdir() if d != newest)):
        weights = next(p for p in step_dir.iterdir() if p.name.startswith("weights."))
        weights.write_bytes(weights.read_bytes()[:100])
        result = seqnet("sample", copy, "--length", 5, "--seed", 0)
        if step_dir == newest:
            assert result.returncode == 0, result.stderr
            assert "seqnet sample: warning: the newest checkpoint" in result.stderr and newest.name in result.stderr
            assert "step-00000006" in result.stderr and "Traceback" not in result.stderr
        else:
            assert_usage_error(result, "truncated or corrupt", weights.name)


def test_sampling_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_usage_error(seqnet("sample", tmp_path, "--length", 5), "not a seqnet run directory")
    assert_usage_error(seqnet("sample", tmp_path / "missing", "--length", 5), "not a seqnet run directory")


def test_bad_number_is_a_usage_error(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", tmp_path / "run", *TINY, "--batch", "0"),
                       "--batch")


# --------------------------------------------------------------------------- NaN loss

# Plain SGD at lr 1e6 (even 1e30) without clipping does not reach NaN here: the cells saturate
# and the stable cross-entropy stays finite. So the NaN is injected at a chosen step.
NAN_AT = 8


def _nan_trainer(corpus, out):
    from seqnet.tasks import LanguageModelConfig
    from seqnet.training import TrainerConfig, new_run

    task = LanguageModelConfig(corpus=str(corpus), hidden=16, embed=8, batch=4, seq_len=16, sample_every=100,
                               sample_length=0)
    trainer = TrainerConfig(steps=12, eval_every=5, checkpoint_every=5, log_every=1)
    return new_run("lm", task, trainer, out, progress=False, log=lambda text: None)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from seqnet.errors import NonFiniteLossError
    from seqnet.training import load_model
    from seqnet.training.checkpoint import load_checkpoint

    corpus = write_corpus(tmp_path / "c.txt")
    trainer = _nan_trainer(corpus, tmp_path / "run")
    real = trainer.model.loss_and_grads

    def poisoned(*args, **kwargs):
        loss, state = real(*args, **kwargs)
        return (loss * float("nan") if trainer.step == NAN_AT else loss), state

    monkeypatch.setattr(trainer.model, "loss_and_grads", poisoned)
    with pytest.raises(NonFiniteLossError, match=f"at step {NAN_AT}"):
        trainer.run()
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 5
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.step == 5
    assert all(np.all(np.isfinite(w)) for w in checkpoint.weights.values())
    assert load_model(tmp_path / "run").generate("the", 5, seed=0)[0].startswith("the")


def test_nan_loss_exits_2_from_the_command_line(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    script = (
        "import sys\n"
        "from seqnet.models import LanguageModel\n"
        "real = LanguageModel.loss_and_grads\n"
        "calls = []\n"
        "def poisoned(self, *a, **k):\n"
        "    calls.append(1)\n"
        "    loss, state = real(self, *a, **k)\n"
        f"    return (loss * float('nan') if len(calls) == {NAN_AT + 1} else loss), state\n"
        "LanguageModel.loss_and_grads = poisoned\n"
        "from seqnet.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["train", "--corpus", str(corpus), "--out", str(out), *TINY, "--checkpoint-every", "5", "--log-every", "1"]
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                            env=env(), timeout=120)
    assert_usage_error(result, f"step {NAN_AT}", "--resume")
    assert json.loads((out / "latest.json").read_text())["step"] == 5
    sample = seqnet("sample", out, "--prime", "the", "--length", 5, "--seed", 0)
    assert sample.returncode == 0 and sample.stdout.startswith("the"), sample.stderr


# --------------------------------------------------------------------------- the filesystem


def one_error_line(result: subprocess.CompletedProcess, command: str, code: int) -> str:
    """The one ``seqnet <command>: error: ...`` line of ``result`` (warnings aside), exit ``code``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and ": warning: " not in line]
    assert len(lines) == 1 and lines[0].startswith(f"seqnet {command}: error: "), result.stderr
    return lines[0]


def test_a_file_name_too_long_is_one_line_naming_the_argument(trained, tmp_path):
    run_dir, corpus, _ = trained
    long = "x" * 300
    cases = [(("train", "--out", long, "--corpus", corpus, *TINY), "train", "--out: "),
             (("train", "--out", long, "--resume"), "train", "--out: "),
             (("train", "--corpus", long, "--out", tmp_path / "run", *TINY), "train", "--corpus: "),
             (("sample", long), "sample", "DIR: "),
             (("eval", run_dir, "--corpus", long), "eval", "--corpus: ")]
    for args, name, argument in cases:
        line = one_error_line(seqnet(*args, cwd=tmp_path), name, 1)
        assert argument + "x" * 50 in line and "(300 characters): File name too long" in line, line
        if name == "train":
            assert ("nothing was changed" if "--resume" in args else "nothing was kept") in line, line
    assert not (tmp_path / "run").exists()


def _failing_checkpoints(monkeypatch, failure, at_call: int, commit_first: bool = False):
    """save_checkpoint raises ``failure`` at its ``at_call``-th call (after committing, if asked)."""
    import seqnet.training.trainer as trainer_module

    real, calls = trainer_module.save_checkpoint, []

    def save(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            if commit_first:
                real(*args, **kwargs)
            raise failure
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)


def _main(*args) -> int:
    from seqnet.cli.main import main

    return main([str(a) for a in args])


@pytest.mark.parametrize("at_call", [1, 2], ids=["first checkpoint", "second checkpoint"])
def test_a_full_disk_is_one_line_saying_what_was_kept(tmp_path, monkeypatch, capsys, at_call):
    import errno

    corpus = write_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    _failing_checkpoints(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), at_call)
    assert _main("train", "--corpus", corpus, "--out", out, *TINY) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"seqnet train: error: --out: {out}: No space left on device; "), line
    if at_call == 1:
        assert "nothing was kept" in line and not out.exists(), line
    else:
        assert f"the checkpoints already written in {out} are intact" in line and "--resume" in line, line
        from seqnet.training.checkpoint import load_checkpoint

        assert load_checkpoint(out).step == 6


def test_a_directory_made_unwritable_mid_run_names_the_path(tmp_path, monkeypatch, capsys):
    import errno

    corpus = write_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    denied = str(out / "checkpoints" / ".step-00000012.tmp")
    _failing_checkpoints(monkeypatch, PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied), 2)
    assert _main("train", "--corpus", corpus, "--out", out, *TINY) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"seqnet train: error: --out: {denied}: Permission denied; the checkpoints already written" in err, err


# --------------------------------------------------------------------------- one line each


def test_argparse_mistakes_are_one_line_with_a_hint(tmp_path):
    for args, fragment in ((("--steps", "nan"), "argument --steps: invalid int value: 'nan'"),
                           (("--bogus",), "unrecognized arguments: --bogus"),
                           (("--cell", "foo"), "argument --cell: invalid choice: 'foo'")):
        line = one_error_line(seqnet("train", *args, cwd=tmp_path), "train", 2)
        assert fragment in line and line.endswith("(seqnet train --help lists the flags)"), line
    assert "usage:" not in seqnet("sample", cwd=tmp_path).stderr


def test_help_version_and_the_train_summary_to_a_full_disk_are_reported(trained, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    _, corpus, _ = trained
    for args, name in ((("--help",), None), (("--version",), None), (("train", "--help"), "train"),
                       (("train", "--corpus", corpus, "--out", tmp_path / "run", *TINY), "train"),
                       (("train", "--corpus", corpus, "--out", tmp_path / "json", "--json", *TINY), "train")):
        with open("/dev/full", "w") as full:
            result = subprocess.run(command(*args), stdout=full, stderr=subprocess.PIPE, text=True, env=env(),
                                    timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        assert f"{'seqnet' if name is None else 'seqnet ' + name}: error: standard output: cannot be written (No " \
               "space left on device)" in result.stderr, result.stderr
    assert "the run itself is complete" in result.stderr
    from seqnet.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run").step == 12


def test_smaller_messages_name_flags_and_show_paths_readably(trained, tmp_path):
    run_dir, corpus, _ = trained
    assert one_error_line(seqnet("train", "--out", run_dir, "--resume", "--device", "0"), "train", 2).startswith(
        "seqnet train: error: --device: ")
    line = one_error_line(seqnet("train", "--out", run_dir, "--resume", "--steps", "20", "--warmup", "3"), "train", 2)
    assert "--warmup 3 (the run's: the default)" in line and "None" not in line, line
    assert "which exists but is not a regular file" in one_error_line(
        seqnet("train", "--corpus", "/dev/null", "--out", tmp_path / "a", *TINY), "train", 2)
    assert not (tmp_path / "a").exists()
    if Path("/proc/self/status").is_file():            # size 0 on stat, text when read
        proc = seqnet("train", "--corpus", "/proc/self/status", "--out", tmp_path / "p", *TINY, "--seq-len", "4",
                      "--batch", "2")
        assert proc.returncode == 0, proc.stderr
    assert "DIR: expected a run directory, received an empty string" in one_error_line(seqnet("sample", ""),
                                                                                        "sample", 2)
    memory = one_error_line(seqnet("sample", run_dir, "--length", 10 ** 15), "sample", 1)
    assert "out of memory; try a smaller --length or --num" in memory and "--hidden" not in memory, memory
    if sys.platform.startswith("linux"):                 # a file name that is not UTF-8
        other = tmp_path / "other"
        other.mkdir()
        (other / os.fsdecode(b"bad\xffname")).write_text("x")
        line = one_error_line(seqnet("train", "--corpus", corpus, "--out", other, *TINY), "train", 2)
        assert "bad\\xffname" in line and "udcff" not in line, line


def test_suggested_commands_are_shell_quoted(trained, tmp_path):
    _, corpus, _ = trained
    out = tmp_path / "dir with space"
    result = seqnet("train", "--corpus", corpus, "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    assert f"(sample again: seqnet sample '{out}')" in result.stdout, result.stdout
    done = seqnet("train", "--out", out, "--resume")
    assert f"seqnet train --out '{out}' --resume --steps N" in done.stderr, done.stderr
