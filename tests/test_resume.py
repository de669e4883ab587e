"""A run killed with SIGKILL and resumed with --resume ends exactly where an uninterrupted run
with the same seed ends: same weights, same loss and validation trajectory. Dropout is on, so
the saved RNG state matters too. Everything runs through the ``python -m seqnet`` CLI."""
from __future__ import annotations

import json
import signal
import os
import time
from pathlib import Path

import numpy as np
import pytest

import clitools
from clitools import seqnet
from seqnet.training.checkpoint import load_checkpoint

if not hasattr(signal, "SIGKILL"):
    pytest.skip("needs SIGKILL (POSIX)", allow_module_level=True)

STEPS = 40
# Sized so that one step takes a few ms: the run is still going when the first checkpoint lands.
CONFIG = ["--hidden", "96", "--embed", "16", "--batch", "8", "--seq-len", "48", "--dropout", "0.2",
          "--checkpoint-every", "5", "--eval-every", "10", "--sample-every", "10", "--sample-length", "20",
          "--log-every", "3", "--seed", "3", "--no-progress"]


def write_corpus(path: Path) -> Path:
    return clitools.write_corpus(path, lines=300, seed=1)


def eval_records(run_dir: Path) -> dict[int, tuple]:
    """step -> (train_bits_per_token, val_bits_per_token) of the eval records; no step twice (the
    records a killed run wrote after its last checkpoint are rolled back on resume)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["event"] == "eval"]
    assert len(steps) == len(set(steps)), steps
    return {r["step"]: (r["train_bits_per_token"], r["val_bits_per_token"]) for r in records if r["event"] == "eval"}


def assert_same_run(a: Path, b: Path) -> None:
    ckpt_a, ckpt_b = load_checkpoint(a), load_checkpoint(b)
    assert ckpt_a.step == ckpt_b.step
    assert set(ckpt_a.weights) == set(ckpt_b.weights)
    for name, weight in ckpt_a.weights.items():
        assert np.array_equal(weight, ckpt_b.weights[name]), name
    for name, array in ckpt_a.optimizer_arrays.items():
        assert np.array_equal(array, ckpt_b.optimizer_arrays[name]), name
    for name, array in ckpt_a.task_arrays.items():                  # the carried state
        assert np.array_equal(array, ckpt_b.task_arrays[name]), name
    assert ckpt_a.task["state"] == ckpt_b.task["state"]             # data position, dropout RNG
    for name in ("history_step", "history_bits"):                   # the per-step loss trajectory
        assert np.array_equal(ckpt_a.trainer_arrays[name], ckpt_b.trainer_arrays[name]), name
    assert eval_records(a) == eval_records(b)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("resume") / "corpus.txt")


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    result = seqnet("train", "--corpus", corpus, "--out", out, "--steps", STEPS, *CONFIG)
    assert result.returncode == 0, result.stderr
    return out


def test_killed_and_resumed_run_matches_uninterrupted_run(corpus, uninterrupted, tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = clitools.start("train", "--corpus", corpus, "--out", out, "--steps", STEPS, *CONFIG, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while not (out / "latest.json").exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, (
        f"the run ended (code {process.returncode}) before it could be killed: "
        f"{(tmp_path / 'stderr.txt').read_text()[-2000:]}")
    killed_at = load_checkpoint(out).step
    assert 0 < killed_at < STEPS

    result = seqnet("train", "--out", out, "--resume", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(out).step == STEPS
    assert_same_run(uninterrupted, out)


def test_resume_of_a_finished_run_continues_to_more_steps(uninterrupted, tmp_path):
    import shutil

    out = shutil.copytree(uninterrupted, tmp_path / "run")
    before = eval_records(out)
    result = seqnet("train", "--out", out, "--resume", "--steps", STEPS + 10, "--no-progress", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["steps"] == STEPS + 10
    ckpt = load_checkpoint(out)
    assert ckpt.step == STEPS + 10
    assert ckpt.config["trainer"]["steps"] == STEPS + 10
    assert ckpt.trainer_arrays["history_step"][-1] == STEPS + 9
    after = eval_records(out)
    assert {k: v for k, v in after.items() if k <= STEPS} == before and STEPS + 10 in after
    assert any(not np.array_equal(w, load_checkpoint(uninterrupted).weights[k]) for k, w in ckpt.weights.items())


def test_resume_takes_steps_and_refuses_any_other_setting_that_differs(tmp_path, capsys):
    """--resume --steps N applies N; a flag equal to the run's own value is accepted, and one
    that differs is refused by name, even when it is the flag's default value."""
    from seqnet.cli import main as cli

    corpus = write_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    tiny = ["--hidden", "8", "--embed", "4", "--batch", "2", "--seq-len", "8", "--eval-every", "6",
            "--checkpoint-every", "6", "--sample-length", "0", "--no-progress", "--json"]
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(out), "--steps", "12", *tiny]) == 0
    assert load_checkpoint(out).step == 12
    assert cli.main(["train", "--out", str(out), "--resume", "--steps", "14", "--hidden", "8", "--no-progress",
                     "--json"]) == 0
    assert load_checkpoint(out).step == 14
    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress", "--json"]) == 0   # keeps the run's 14
    assert load_checkpoint(out).step == 14
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--steps", "20", "--hidden", "256", "--no-progress"]) == 2
    assert "--hidden 256 (the run's: 8)" in capsys.readouterr().err           # 256 is --hidden's default
    assert load_checkpoint(out).step == 14
