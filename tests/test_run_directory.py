"""A run directory never loses work and never lies, tried as a user would: two writers, runs
inside their corpus, resume from anywhere, refused resumes that change nothing, crashes,
damaged checkpoints, Ctrl-C, closed pipes, read-only places, and a one-line message for
every mistake. Everything runs ``python -m seqnet`` in a subprocess."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clitools import TINY, assert_usage_error, command, env, read_only, seqnet, start, write_corpus
from seqnet.training.checkpoint import load_checkpoint

if not hasattr(signal, "SIGKILL"):
    pytest.skip("needs POSIX signals", allow_module_level=True)

# Steps of a few ms, so that a run is still going when the test acts on it.
DRAWS = importlib.util.find_spec("matplotlib") is not None     # loss.png needs the plot extra
SLOW = ["--hidden", "64", "--embed", "16", "--batch", "8", "--seq-len", "32", "--sample-length", "0",
        "--eval-every", "1000", "--log-every", "1", "--no-progress"]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def snapshot(run_dir: Path) -> dict:
    """Every file's bytes and mtime below run_dir (but the lock, which names its latest holder)."""
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".seqnet-run"}


def wait_for(predicate, process=None, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "c.txt", lines=200)


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    """A finished tiny run (checkpoints at steps 6 and 12)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = seqnet("train", "--corpus", corpus, "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    return out


# -- one writer -----------------------------------------------------------------------------------
def test_a_second_writer_is_refused_with_the_holder_and_a_killed_holder_leaves_no_lock(corpus, tmp_path):
    out = tmp_path / "run"
    first = start("train", "--corpus", corpus, "--out", out, "--steps", 100000, "--checkpoint-every", 20, *SLOW)
    try:
        wait_for(lambda: (out / "latest.json").exists(), first)
        second = seqnet("train", "--corpus", corpus, "--out", out, "--resume")
        assert_usage_error(second, f"{out} is being written by seqnet (pid {first.pid}", "choose another --out")
        third = seqnet("train", "--corpus", corpus, "--out", out, *TINY)
        assert_usage_error(third, "already holds a run")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    step = load_checkpoint(out).step
    resumed = seqnet("train", "--out", out, "--resume", "--steps", step + 3, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr                 # the dead holder's lock went with it


def test_runs_started_together_without_out_pick_different_directories(corpus, tmp_path):
    runs = [start("train", "--corpus", corpus, *TINY, "--json", cwd=tmp_path, stdout=subprocess.PIPE) for _ in range(3)]
    outs = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        outs.append(json.loads(stdout.splitlines()[-1])["run_dir"])
    assert sorted(outs) == ["runs/default", "runs/default-2", "runs/default-3"]
    for out in outs:
        assert [r["step"] for r in records(tmp_path / out) if r["event"] == "eval"] == [6, 12]


# -- where the data comes from ----------------------------------------------------------------------
def test_a_run_inside_its_corpus_directory_is_not_read_as_corpus(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_corpus(data / "a.txt", lines=60)
    first = seqnet("train", "--corpus", data, "--out", data / "run1", *TINY, "--json")
    assert first.returncode == 0, first.stderr
    tokens = json.loads((data / "run1" / "tokens.bin.json").read_text())["count"]
    assert tokens == len((data / "a.txt").read_text())
    resumed = seqnet("train", "--out", data / "run1", "--resume", "--steps", 14, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    second = seqnet("train", "--corpus", data, "--out", data / "run2", *TINY, "--json")
    assert second.returncode == 0, second.stderr               # run1 (checkpoints, tokens.bin) is no corpus
    assert json.loads((data / "run2" / "tokens.bin.json").read_text())["count"] == tokens
    assert_usage_error(seqnet("train", "--corpus", data / "run1", "--out", tmp_path / "x", *TINY),
                       "is a seqnet run directory, not a corpus")


def test_resume_from_another_directory_without_the_corpus_and_a_changed_corpus_is_said(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", lines=100)
    out = tmp_path / "run"
    assert seqnet("train", "--corpus", corpus.name, "--out", out, *TINY, cwd=tmp_path).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    corpus.write_text(corpus.read_text() + "more text\n")
    changed = seqnet("train", "--out", out, "--resume", "--steps", 14, "--no-progress", cwd=elsewhere)
    assert changed.returncode == 0, changed.stderr
    assert "warning: the corpus has changed since this run encoded it" in changed.stderr
    corpus.unlink()
    gone = seqnet("train", "--out", out, "--resume", "--steps", 16, "--no-progress", cwd=elsewhere)
    assert gone.returncode == 0 and "warning" not in gone.stderr, gone.stderr
    assert load_checkpoint(out).step == 16


def test_a_refused_resume_changes_nothing(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    before = snapshot(run)
    for flags in (["--hidden", "256"], ["--lr", "0.003", "--cell", "gru"], ["--corpus", "elsewhere.txt"],
                  ["--steps", "5"], ["--task", "lm", "--embed", "9"]):
        result = seqnet("train", "--out", run, "--resume", *flags)
        assert_usage_error(result)
        assert "Traceback" not in result.stderr
    assert "--hidden 256 (the run's: 16)" in seqnet("train", "--out", run, "--resume", "--hidden", "256").stderr
    assert snapshot(run) == before


# -- crashes and damage -------------------------------------------------------------------------------
def test_records_after_the_checkpoint_are_rolled_back_and_the_loss_history_is_kept_whole(corpus, tmp_path):
    out = tmp_path / "run"
    steps = ["--steps", 2100, "--checkpoint-every", 2100, "--hidden", "4", "--embed", "2", "--batch", "2",
             "--seq-len", "4", "--log-every", "1", "--eval-every", "700", "--eval-batches", "1", "--sample-length", "0"]
    result = seqnet("train", "--corpus", corpus, "--out", out, *steps, "--no-progress", timeout=300)
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(out)
    assert list(checkpoint.trainer_arrays["history_step"]) == list(range(2100))      # all of it, not the last 2000
    with open(out / "metrics.jsonl", "a") as f:      # what a crash after step 2100 would have left behind
        f.write(json.dumps({"event": "eval", "step": 2200, "train_bits_per_token": 1.0}) + "\n")
        f.write(json.dumps({"event": "summary", "steps": 2300}) + "\n")
    assert seqnet("train", "--out", out, "--resume", "--steps", 2110, "--no-progress").returncode == 0
    evals = [r["step"] for r in records(out) if r["event"] == "eval"]
    assert evals == [700, 1400, 2100, 2110]


def test_a_damaged_newest_checkpoint_falls_back_for_sample_eval_and_resume(finished, corpus, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    newest = run / json.loads((run / "latest.json").read_text())["checkpoint"]
    (newest / "meta.json").write_text("{ not json")
    for args in (("sample", run, "--length", 5, "--seed", 1), ("eval", run, "--corpus", corpus, "--json"),
                 ("train", "--out", run, "--resume", "--steps", 14, "--no-progress")):
        result = seqnet(*args)
        assert result.returncode == 0, result.stderr
        assert "warning: the newest checkpoint" in result.stderr and "step-00000006" in result.stderr, result.stderr
    assert load_checkpoint(run).step == 14
    assert [r["step"] for r in records(run) if r["event"] == "eval"] == [6, 12, 14]   # 12 retrained once


def test_sampling_does_not_need_the_optimizer_state(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    for step_dir in (run / "checkpoints").iterdir():
        for optimizer in step_dir.glob("optimizer.*"):
            optimizer.unlink()
    result = seqnet("sample", run, "--length", 5, "--seed", 1)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_and_resume_ends_where_an_uninterrupted_run_ends(corpus, tmp_path, signum, code):
    args = ["--corpus", corpus, "--steps", 80, "--checkpoint-every", 25, "--dropout", "0.1", *SLOW]
    whole = seqnet("train", *args, "--out", tmp_path / "whole", timeout=300)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "run"
    run = start("train", *args, "--out", out)
    wait_for(lambda: (out / "latest.json").exists(), run)        # step 25: training is under way
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted at step" in stderr
    stopped = load_checkpoint(out).step
    assert 25 < stopped < 80, stopped                             # written at the interrupt, not at a period
    resumed = seqnet("train", "--out", out, "--resume", "--no-progress", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(out)
    for name, weight in a.weights.items():
        np.testing.assert_array_equal(weight, b.weights[name], err_msg=name)


def test_a_second_interrupt_stops_at_once_and_leaves_a_loadable_run(corpus, tmp_path):
    out = tmp_path / "run"
    run = start("train", "--corpus", corpus, "--out", out, "--steps", 100000, "--checkpoint-every", 10, *SLOW)
    wait_for(lambda: (out / "latest.json").exists(), run)
    run.send_signal(signal.SIGINT)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 130 and "Traceback" not in stderr, stderr
    assert load_checkpoint(out).step >= 10


# -- output ---------------------------------------------------------------------------------------------
def test_a_closed_output_pipe_neither_kills_training_nor_prints_a_traceback(corpus, tmp_path):
    out = tmp_path / "run"
    pipeline = subprocess.run(f"{' '.join(command('train', '--corpus', corpus, '--out', out, *TINY, '--json'))} "
                              f"2>{tmp_path / 'err'} | head -1", shell=True, capture_output=True, text=True, env=env(),
                              timeout=120)
    assert json.loads(pipeline.stdout)["event"] == "eval"
    assert "Traceback" not in (tmp_path / "err").read_text() and "BrokenPipe" not in (tmp_path / "err").read_text()
    assert load_checkpoint(out).step == 12
    sampled = subprocess.run(f"{' '.join(command('sample', out, '--num', 50, '--length', 200))} 2>{tmp_path / 'e2'} "
                             "| head -1", shell=True, capture_output=True, text=True, env=env(), timeout=120)
    assert sampled.stdout == "--- sample 1 ---\n"
    assert (tmp_path / "e2").read_text() == ""


def test_off_a_terminal_progress_is_plain_lines(corpus, tmp_path):
    result = seqnet("train", "--corpus", corpus, "--out", tmp_path / "run", *TINY[:-1], "--json")
    assert result.returncode == 0
    assert "\r" not in result.stderr
    assert "step 12/12: train" in result.stderr and "bits per token" in result.stderr


def test_every_figure_is_bits_per_token(finished):
    for record in records(finished):
        assert "train_loss" not in record
        if record["event"] in ("eval", "summary"):
            assert record["train_bits_per_token"] > 0 and record["val_bits_per_token"] > 0


def test_help_shows_defaults_and_version():
    help_text = seqnet("train", "--help").stdout
    for fragment in ("--hidden HIDDEN", "(default: 256", "(default: 0.003)", "(default: lstm", "--new-phase"):
        assert fragment in help_text, fragment
    assert seqnet("--version").stdout.strip().startswith("seqnet ")


# -- finished runs and phases ------------------------------------------------------------------------------
def test_resuming_a_finished_run_says_so_and_writes_nothing(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    before = snapshot(run)
    result = seqnet("train", "--out", run, "--resume", "--json")
    assert result.returncode == 0 and result.stdout == ""
    assert "is finished at step 12" in result.stderr and "--new-phase" in result.stderr and "nan" not in result.stderr
    assert snapshot(run) == before


def test_a_new_phase_starts_a_fresh_schedule_and_is_recorded(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    result = seqnet("train", "--out", run, "--resume", "--new-phase", "--steps", 20, "--lr", "0.01", "--warmup", "4",
                    "--eval-every", "1", "--no-progress", "--json")
    assert result.returncode == 0, result.stderr
    lrs = {r["step"]: r["lr"] for r in records(run) if r["event"] == "eval" and r["step"] > 12}
    # The lr a step used is reported after it: steps 13-16 warm up to 0.01 (linear, lr/4 ... lr), then cosine decay.
    np.testing.assert_allclose([lrs[13], lrs[14], lrs[15], lrs[16], lrs[17]], [0.0025, 0.005, 0.0075, 0.01, 0.01])
    assert lrs[18] < 0.01 and lrs[20] < lrs[18]
    checkpoint = load_checkpoint(run)
    assert checkpoint.config["trainer"]["phase_start"] == 12 and checkpoint.config["trainer"]["lr"] == 0.01
    assert checkpoint.trainer["phases"][0]["start_step"] == 12
    assert_usage_error(seqnet("train", "--out", run, "--resume", "--new-phase", "--lr", "0.1"), "--new-phase: needs --steps")
    assert_usage_error(seqnet("train", "--out", run, "--resume", "--new-phase", "--steps", 30, "--hidden", "32"),
                       "a new phase may change only", "--hidden 32")
    assert_usage_error(seqnet("train", "--corpus", "x", "--new-phase"), "--new-phase: only with --resume")


# -- messages -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, fragments", [
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--clip-value", "-1"], ["--clip-value", "-1.0"]),
    (["--clip", "nan"], ["--clip", "nan"]),
    (["--clip-value", "nan"], ["--clip-value", "nan"]),
    (["--lr", "0"], ["--lr: expected a finite number > 0"]),
    (["--dropout", "1.5"], ["--dropout: expected a probability"]),
    (["--tie-weights"], ["--tie-weights: needs --embed equal to --hidden"]),
    (["--warmup", "12"], ["--warmup: expected fewer steps than --steps"]),
    (["--backend", "torch", "--device", "meta"], ["device", "meta"]),
    (["--accumulate", "3"], ["--accumulate: expected a divisor of --batch 4"]),
    (["--layer-norm", "--cell", "gru"], ["--layer-norm"]),
])
def test_bad_training_flags_are_one_line_each_and_leave_nothing(corpus, tmp_path, flags, fragments):
    out = tmp_path / "run"
    if "torch" in flags:
        pytest.importorskip("torch")
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", out, *TINY, *flags), *fragments)
    assert not out.exists()


def test_out_naming_a_file_and_read_only_places(corpus, tmp_path, finished):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", a_file, *TINY), "is a file")
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        assert_usage_error(seqnet("train", "--corpus", corpus, "--out", locked / "run", *TINY), "cannot create")
        assert_usage_error(seqnet("train", "--corpus", corpus, "--out", locked, *TINY), "is not writable")
    run = shutil.copytree(finished, tmp_path / "run")
    with read_only(run):
        started = time.monotonic()
        result = seqnet("train", "--out", run, "--resume", "--steps", 5000, "--no-progress")
        assert_usage_error(result, "is not writable")
        assert time.monotonic() - started < 30                      # refused before training, not after
    assert load_checkpoint(run).step == 12


def test_a_failed_start_removes_what_it_made(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 5)
    out = tmp_path / "new" / "run"
    assert_usage_error(seqnet("train", "--corpus", short, "--out", out, *TINY, "--seq-len", "64"), "seq_len")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("task, data", [
    ("classify", "".join(json.dumps({"text": f"t{k}", "label": "ab"[k % 2]}) + "\n" for k in range(8))),
    ("translate", "".join(f"s{k}\tt{k}\n" for k in range(8))),
], ids=["classify", "translate"])
def test_a_failed_task_start_removes_its_examples_and_the_directory_can_be_used_again(tmp_path, task, data):
    path = tmp_path / "data.txt"
    path.write_text(data)
    out = tmp_path / "run"
    few = ["--hidden", "8", "--embed", "8", "--steps", "4", "--no-progress"]
    # --batch larger than the training set: refused after the task kept its examples in the run
    assert_usage_error(seqnet("train", "--task", task, "--data", path, "--out", out, *few, "--batch", "64"), "--batch")
    assert not out.exists()
    out.mkdir()
    assert_usage_error(seqnet("train", "--task", task, "--data", path, "--out", out, *few, "--batch", "64"), "--batch")
    assert list(out.iterdir()) == []
    again = seqnet("train", "--task", task, "--data", path, "--out", out, *few, "--batch", "2")
    assert again.returncode == 0, again.stderr


def encoding_run(tmp_path):
    """A run started on a corpus large enough to catch it encoding; returns (process, run directory)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k in range(60):
        write_corpus(corpus / f"{k}.txt", lines=3000, seed=k)
    out = tmp_path / "run"
    run = start("train", "--corpus", corpus, "--out", out, *TINY)
    try:
        wait_for(lambda: any(p.name.endswith(".tmp") for p in out.glob(".tokens.bin*")), run, timeout=120)
    except BaseException:
        run.kill()
        raise
    return run, out


def test_a_kill_during_corpus_encoding_leaves_a_temporary_the_next_start_removes(tmp_path):
    run, out = encoding_run(tmp_path)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert any(p.name.endswith(".tmp") for p in out.glob(".tokens.bin*"))
    again = seqnet("train", "--corpus", tmp_path / "corpus" / "0.txt", "--out", out, *TINY)
    assert again.returncode == 0, again.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_files_of_a_run_have_consistent_modes(finished):
    mask = os.umask(0)
    os.umask(mask)
    for path in finished.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o777 if path.is_dir() else 0o666) & ~mask, (path, oct(mode))


def test_resume_before_the_first_checkpoint_says_what_happened(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".seqnet-run").write_text("{}")                    # a run killed before its first checkpoint
    assert_usage_error(seqnet("train", "--out", out, "--resume"), "holds no checkpoint yet", "without --resume")


def test_sample_and_eval_messages(finished, corpus, tmp_path):
    assert_usage_error(seqnet("sample", finished, "--seed", "-1"), "seed: expected an integer >= 0")
    assert_usage_error(seqnet("sample", finished, "--device", "1"), "device", "numpy backend has only device 'cpu'")
    for batch in (0, -4):
        assert_usage_error(seqnet("eval", finished, "--corpus", corpus, "--batch", batch), "--batch")
    assert_usage_error(seqnet("eval", finished, "--corpus", corpus, "--batch", 100000),
                       "--batch: expected at most", "received 100000")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("déjà vu".encode("latin-1") * 10)
    result = seqnet("eval", finished, "--corpus", latin)
    assert_usage_error(result, "UTF-8", "tokenizer reads UTF-8 text only")
    assert "use --tokenizer byte" not in result.stderr


def test_eval_counts_unknown_tokens_and_warns_when_they_are_many(finished, tmp_path):
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("ΑΒΓΔ ΕΖΗΘ " * 40 + "the cat sat on the mat\n" * 2)
    result = seqnet("eval", finished, "--corpus", foreign, "--json", "--batch", 2)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expected = sum(1 for ch in foreign.read_text()[1:] if ch in "ΑΒΓΔΕΖΗΘ")   # one stream after another
    assert report["unknown_tokens"] >= expected - 2 and report["unknown_tokens"] <= expected
    assert "warning:" in result.stderr and "unknown to the model's vocabulary" in result.stderr


def test_an_edited_config_json_is_said_to_be_a_copy(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["trainer"]["lr"] = 1.0
    (run / "config.json").write_text(json.dumps(config))
    result = seqnet("train", "--out", run, "--resume", "--steps", 13, "--no-progress")
    assert result.returncode == 0 and "config.json differs from the settings in the checkpoint" in result.stderr
    assert load_checkpoint(run).config["trainer"]["lr"] == 0.003


def test_threads_limit_torch_too():
    script = ("import seqnet; seqnet.set_num_threads(1); seqnet.use_backend('torch'); import torch; "
              "print(torch.get_num_threads())")
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env())
    assert result.stdout.strip() == "1", result.stderr


def test_a_lost_latest_json_falls_back_and_no_new_run_starts_over_checkpoints(finished, corpus, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / "latest.json").unlink()
    for args in (("sample", run, "--length", 5, "--seed", 1), ("eval", run, "--corpus", corpus, "--json")):
        result = seqnet(*args)
        assert result.returncode == 0, result.stderr
        assert "latest.json is missing; using the newest intact checkpoint, step-00000012" in result.stderr
    before = snapshot(run)
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", run, *TINY), "already holds a run", "--resume")
    assert snapshot(run) == before
    resumed = seqnet("train", "--out", run, "--resume", "--steps", 14, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run).step == 14


def test_out_refuses_a_directory_of_other_files_and_touches_nothing(corpus, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.jsonl").write_text("mine\n")
    (mine / "tokens.bin").write_text("precious\n")
    for extra in ([], ["--seq-len", "100000"]):
        assert_usage_error(seqnet("train", "--corpus", corpus, "--out", mine, *TINY, *extra),
                           "already holds files that are not a seqnet run (metrics.jsonl, tokens.bin)")
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.jsonl", "tokens.bin"]
    assert (mine / "tokens.bin").read_text() == "precious\n"
    assert_usage_error(seqnet("train", "--corpus", corpus, "--out", "", *TINY), "--out: expected a directory path")
    (tmp_path / "runs" / "default").mkdir(parents=True)
    (tmp_path / "runs" / "default" / "notes").write_text("mine")
    result = seqnet("train", "--corpus", corpus, *TINY, "--json", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout.splitlines()[-1])["run_dir"] == "runs/default-2"


def test_an_edited_step_or_an_unknown_pointer_version_is_damage(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    meta = run / "checkpoints" / "step-00000012" / "meta.json"
    meta.write_text(meta.read_text().replace('"step": 12', '"step": 5', 1))
    result = seqnet("sample", run, "--length", 5, "--seed", 1)
    assert result.returncode == 0 and "says step 5, but it lies in step-00000012" in result.stderr
    pointer = json.loads((run / "latest.json").read_text())
    (run / "latest.json").write_text(json.dumps({**pointer, "format_version": 7}))
    assert "format_version 7" in seqnet("sample", run, "--length", 5).stderr


# -- divergence, damaged files beside the checkpoints, the end of a run ---------------------------
DIVERGE = ["--hidden", "16", "--embed", "8", "--steps", "20", "--seq-len", "16", "--batch", "4", "--no-progress",
           "--sample-length", "0", "--clip", "0", "--log-every", "1", "--warmup", "0", "--optimizer", "sgd"]


def test_a_diverging_run_keeps_only_checkpoints_that_give_a_finite_loss_and_says_a_command_that_works(corpus,
                                                                                                      tmp_path):
    out = tmp_path / "my run"                                            # the printed command quotes it
    result = seqnet("train", "--corpus", corpus, *DIVERGE, "--out", out, "--lr", "1e37", "--checkpoint-every", 1)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "warning" not in result.stderr, result.stderr                 # numpy's overflow warnings
    error = result.stderr.strip().splitlines()[-1]
    assert "loss became" in error and "--steps 20" in error, error
    suggested = shlex.split(error.split("e.g. seqnet ", 1)[1])
    lr = float(suggested[suggested.index("--lr") + 1])
    assert lr <= 1e36, error
    for step_dir in (out / "checkpoints").glob("step-*"):                 # every one loads: finite weights
        if step_dir.name.endswith(".diverged"):
            continue
        for weight in load_checkpoint(step_dir).weights.values():
            assert np.isfinite(weight).all(), step_dir
    resumed = seqnet(*suggested)                                          # as printed, after "seqnet"
    assert "needs --steps" not in resumed.stderr and "Traceback" not in resumed.stderr, resumed.stderr
    assert resumed.returncode == 0 or "loss became" in resumed.stderr.strip().splitlines()[-1], resumed.stderr


def test_a_step_that_diverges_again_keeps_what_was_set_aside_before(finished, tmp_path):
    from seqnet.training.checkpoint import set_aside_diverged

    run = shutil.copytree(finished, tmp_path / "run")
    step = load_checkpoint(run).step
    earlier = run / "checkpoints" / f"step-{step:08d}.diverged"
    earlier.mkdir()
    (earlier / "weights.safetensors").write_bytes(b"the first divergence")
    aside = set_aside_diverged(run, step)
    assert aside.name == f"step-{step:08d}.diverged-2" and (aside / "meta.json").is_file()
    assert (earlier / "weights.safetensors").read_bytes() == b"the first divergence"
    assert load_checkpoint(run).step < step


def test_a_nan_before_the_first_checkpoint_names_the_step_it_was_due(corpus, tmp_path):
    result = seqnet("train", "--corpus", corpus, *DIVERGE, "--out", tmp_path / "run", "--lr", "1e308")
    assert result.returncode == 2 and "due at step 20" in result.stderr, result.stderr
    assert "warning" not in result.stderr and not (tmp_path / "run").exists(), result.stderr


def test_json_records_never_hold_nan():
    from seqnet.training.output import json_text

    assert json.loads(json_text({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": [None, 1.5]}


def test_lines_of_metrics_that_are_not_records_are_kept_and_a_directory_there_is_one_line(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"\xff\xfe\nmy note about this run\n")
    result = seqnet("train", "--out", run, "--resume", "--steps", 14, "--no-progress")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "metrics.jsonl" in result.stderr and "kept" in result.stderr, result.stderr
    data = (run / "metrics.jsonl").read_bytes()
    assert b"\xff\xfe\n" in data and b"my note about this run\n" in data
    other = shutil.copytree(finished, tmp_path / "other")
    (other / "metrics.jsonl").unlink()
    (other / "metrics.jsonl").mkdir()
    result = seqnet("train", "--out", other, "--resume", "--steps", 14, "--no-progress")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "metrics.jsonl" in result.stderr and "directory" in result.stderr, result.stderr


def test_a_damaged_token_file_or_sidecar_is_named(finished, tmp_path):
    def resume(run):
        result = seqnet("train", "--out", run, "--resume", "--steps", 14, "--no-progress")
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        return result.stderr

    run = shutil.copytree(finished, tmp_path / "count")
    sidecar = json.loads((run / "tokens.bin.json").read_text())
    (run / "tokens.bin.json").write_text(json.dumps({**sidecar, "count": "x"}))
    assert "tokens.bin.json" in (said := resume(run)) and "'count'" in said, said
    run = shutil.copytree(finished, tmp_path / "range")
    (run / "tokens.bin").write_bytes(b"\xff" * (run / "tokens.bin").stat().st_size)
    assert "tokens.bin'" in (said := resume(run)) and "65535" in said, said
    run = shutil.copytree(finished, tmp_path / "flip")
    data = bytearray((run / "tokens.bin").read_bytes())
    data[0], data[2] = data[2], data[0] + 1 if data[0] == data[2] else data[0]     # in range, but not as written
    (run / "tokens.bin").write_bytes(bytes(data))
    assert "tokens.bin'" in (said := resume(run)) and "sha256" in said, said


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    target = tmp_path / "target"
    target.write_text("precious\n")
    (run / ".seqnet-run").unlink(missing_ok=True)
    (run / ".seqnet-run").symlink_to(target)
    result = seqnet("train", "--out", run, "--resume", "--steps", 14, "--no-progress")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "symbolic link" in result.stderr and ".seqnet-run" in result.stderr, result.stderr
    assert target.read_text() == "precious\n"


def test_when_every_checkpoint_is_damaged_the_error_says_so(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    steps = sorted((run / "checkpoints").glob("step-*"))
    assert len(steps) > 1
    for weights in run.glob("checkpoints/step-*/weights.*"):
        weights.write_bytes(weights.read_bytes()[:-10])
    result = seqnet("sample", run, "--length", 5)
    assert_usage_error(result, steps[-1].name, "no older checkpoint of the run is intact either")


def test_pruning_keeps_two_intact_checkpoints_past_a_damaged_higher_one(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    stray = shutil.copytree(run / "checkpoints" / "step-00000012", run / "checkpoints" / "step-00000099")
    for weights in stray.glob("weights.*"):
        weights.write_bytes(weights.read_bytes()[:-10])
    result = seqnet("train", "--out", run, "--resume", "--steps", 18, "--no-progress")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "step-00000018" in names and "step-00000012" in names, names
    load_checkpoint(run / "checkpoints" / "step-00000012")


@pytest.mark.skipif(not DRAWS, reason="loss.png needs matplotlib (the plot extra)")
def test_a_finished_run_stopped_before_its_loss_picture_draws_it_on_resume(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / "loss.png").unlink()
    result = seqnet("train", "--out", run, "--resume", "--no-progress")
    assert result.returncode == 0 and "nothing to do" in result.stderr, result.stderr
    assert (run / "loss.png").stat().st_size > 0
    assert [r["event"] for r in records(run)].count("summary") == 1


def test_a_finished_run_stopped_before_its_summary_writes_it_on_resume(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    kept = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"summary"' not in line]
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in kept))
    (run / "loss.png").unlink(missing_ok=True)
    result = seqnet("train", "--out", run, "--resume", "--steps", 12, "--no-progress")   # the original --steps
    assert result.returncode == 0 and "nothing to do" in result.stderr, result.stderr
    summaries = [r for r in records(run) if r["event"] == "summary"]
    assert [r["steps"] for r in summaries] == [12] and "val_bits_per_token" in json.dumps(summaries[0])
    assert (run / "loss.png").exists() == DRAWS
    again = seqnet("train", "--out", run, "--resume", "--no-progress")
    assert again.returncode == 0 and [r["steps"] for r in records(run) if r["event"] == "summary"] == [12]


def test_a_signal_during_the_last_step_ends_the_run_with_its_summary(corpus, tmp_path):
    from seqnet.tasks import LanguageModelConfig
    from seqnet.training import TrainerConfig, new_run
    from seqnet.training.trainer import Trainer

    task = LanguageModelConfig(corpus=str(corpus), hidden=8, embed=4, batch=2, seq_len=8, sample_length=0)
    trainer = new_run("lm", task, TrainerConfig(steps=4, checkpoint_every=2, eval_every=2), tmp_path / "run",
                      progress=False, log=lambda text: None)
    step = Trainer.train_step

    def train_step(self):
        loss = step(self)
        if self.step == self.config.steps:
            self._stop = signal.SIGTERM                  # as the handler does, during the last step
        return loss

    trainer.train_step = train_step.__get__(trainer)
    summary = trainer.run()
    assert summary["steps"] == 4 and (tmp_path / "run" / "loss.png").exists() == DRAWS
    assert [r["event"] for r in records(tmp_path / "run")][-1] == "summary"


# -- what an interruption keeps ------------------------------------------------------------------------
def test_an_interrupt_before_the_first_checkpoint_says_nothing_was_kept(tmp_path):
    run, out = encoding_run(tmp_path)
    run.send_signal(signal.SIGINT)                               # during the corpus encoding
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130 and "Traceback" not in stderr, stderr
    assert "nothing was kept" in stderr and "start it again" in stderr and "intact" not in stderr, stderr
    assert not out.exists()


@pytest.mark.parametrize("committed", [False, True], ids=["before the commit", "after the commit"])
def test_a_second_interrupt_during_the_first_checkpoint_keeps_what_was_committed(corpus, tmp_path, monkeypatch,
                                                                                   capsys, committed):
    """The second Ctrl-C arrives while the first checkpoint is written (in-process: save_checkpoint
    raises KeyboardInterrupt before or after committing it); the cleanup runs with SIGINT ignored."""
    import seqnet.training.run_dir as run_dir_module
    import seqnet.training.trainer as trainer_module
    from seqnet.cli.main import main

    real_save, real_abandon, seen = trainer_module.save_checkpoint, run_dir_module.RunDirectory.abandon, []

    def save(*args, **kwargs):
        if committed:
            real_save(*args, **kwargs)
        raise KeyboardInterrupt

    def abandon(self):
        seen.append(signal.getsignal(signal.SIGINT))
        real_abandon(self)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    monkeypatch.setattr(run_dir_module.RunDirectory, "abandon", abandon)
    out = tmp_path / "run"
    assert main(["train", "--corpus", str(corpus), "--out", str(out), *TINY]) == 130
    err = capsys.readouterr().err
    assert seen == [signal.SIG_IGN]
    if committed:
        assert f"the checkpoints already written in {out} are intact" in err, err
        assert load_checkpoint(out).step == 6
    else:
        assert "nothing was kept" in err and "intact" not in err, err
        assert not out.exists()


def test_resume_corpus_is_compared_as_a_file_from_any_directory(corpus, tmp_path):
    place = tmp_path / "tester_a"
    place.mkdir()
    shutil.copy(corpus, place / "corpus2.txt")
    started = seqnet("train", "--corpus", "corpus2.txt", "--out", "w", *TINY, cwd=place)
    assert started.returncode == 0, started.stderr
    assert json.loads((place / "w" / "config.json").read_text())["task"]["corpus"] == str(place / "corpus2.txt")
    same = seqnet("train", "--out", "tester_a/w", "--resume", "--steps", "14", "--corpus", "tester_a/corpus2.txt",
                  "--no-progress", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    shutil.copy(corpus, tmp_path / "other.txt")
    assert_usage_error(seqnet("train", "--out", place / "w", "--resume", "--steps", "16", "--corpus",
                              tmp_path / "other.txt"), "drop --corpus", "other.txt")


def test_a_run_that_stored_its_corpus_relative_resumes_with_that_corpus_from_elsewhere(corpus, tmp_path):
    """Runs written before corpus paths were stored absolute: the files its tokens.bin came from decide."""
    place = tmp_path / "a"
    place.mkdir()
    shutil.copy(corpus, place / "c.txt")
    script = ("import sys, seqnet.cli.options as o\n"
              "o.stored_path = lambda value: value\n"                 # the old behaviour: as typed
              "from seqnet.cli.main import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    old = subprocess.run([sys.executable, "-c", script, "train", "--corpus", "c.txt", "--out", "w", *TINY],
                         capture_output=True, text=True, env=env(), cwd=place, timeout=120)
    assert old.returncode == 0, old.stderr
    assert json.loads((place / "w" / "config.json").read_text())["task"]["corpus"] == "c.txt"
    same = seqnet("train", "--out", "a/w", "--resume", "--steps", "14", "--corpus", "a/c.txt", "--no-progress",
                  cwd=tmp_path)
    assert same.returncode == 0, same.stderr
