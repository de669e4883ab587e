"""Kill training at random moments, resume each time, and check nothing was lost or repeated.

    python scripts/fault_injection.py            # ~30 s on 2 cores: 30 interruptions
    python scripts/fault_injection.py --full     # 150 interruptions, ~3 minutes
    python scripts/fault_injection.py --json out.json

On a small generated corpus of many files, one run trains uninterrupted (the reference).
Then, round after round, a run of the same settings is started and, five times, at a
random moment drawn over the first half of a run's life (so some land in the tokenizer
fit and corpus encoding and some in checkpoint writes), gets SIGKILL or SIGINT and is
started again: with ``--resume`` once a checkpoint exists, else from scratch; then it may
finish. Its final weights, optimizer state, carried state, RNG state and loss history must
equal the reference's bit for bit, and its metrics.jsonl must hold each evaluation exactly
once, at the reference's steps. Every restart must also find the directory clean: no temporary of a
killed writer left once a run is under way. The script prints a JSON summary (kills by
signal and by what the run was doing, mismatches) and exits 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))
from _examples import nonnegative_int, positive_int  # noqa: E402

from seqnet.training.checkpoint import load_checkpoint  # noqa: E402

SETTINGS = ["--hidden", "128", "--embed", "32", "--batch", "8", "--seq-len", "32", "--dropout", "0.1", "--layers", "2",
            "--checkpoint-every", "4", "--eval-every", "6", "--sample-every", "10", "--sample-length", "10",
            "--log-every", "1", "--seed", "5", "--no-progress"]


PER_ROUND = 5         # interruptions of one run before it is let finish and compared


def make_corpus(directory: Path, files: int, lines: int) -> Path:
    rng = random.Random(0)
    words = ("the quick brown fox jumps over the lazy dog while a cat sat on the mat and sang of old kings "
             "under seven bright stars").split()
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        (directory / f"part-{k:03d}.txt").write_text(
            "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) for _ in range(lines)) + "\n")
    return directory


def seqnet(*args) -> list[str]:
    return [sys.executable, "-m", "seqnet", *map(str, args)]


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONWARNINGS="ignore")


def what_it_was_doing(out: Path) -> str:
    """Read off the directory right after a kill."""
    if not (out / "tokens.bin.json").exists():
        return "setup and corpus encoding"
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir() and any(p.name.startswith(".tmp-") for p in checkpoints.iterdir()):
        return "a checkpoint write"
    if any(p.name.endswith(".tmp") for p in out.iterdir()):
        return "a file write"
    return "training"


def leftovers(out: Path) -> list[str]:
    found = [p.name for p in out.iterdir() if p.name.endswith(".tmp")] if out.is_dir() else []
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        found += [p.name for p in checkpoints.iterdir() if p.name.startswith(".tmp-")]
    return found


def compare(reference: Path, candidate: Path) -> list[str]:
    a, b = load_checkpoint(reference), load_checkpoint(candidate)
    problems = []
    if a.step != b.step:
        problems.append(f"step {b.step} != {a.step}")
    for group in ("weights", "optimizer_arrays", "task_arrays", "trainer_arrays"):
        mine, theirs = getattr(b, group), getattr(a, group)
        if set(mine) != set(theirs):
            problems.append(f"{group}: names differ")
            continue
        problems += [f"{group}[{k}] differs" for k in theirs if not np.array_equal(theirs[k], mine[k])]
    if a.task["state"] != b.task["state"]:
        problems.append("task state (data position, RNG) differs")
    evals = [[r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if r["event"] == "eval"] for run in (reference, candidate)]
    if evals[0] != evals[1]:
        problems.append(f"metrics.jsonl evaluations at {evals[1]}, expected {evals[0]} (once each)")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=positive_int, default=30)
    p.add_argument("--full", action="store_true", help="150 interruptions and a longer run")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--json", help="also write the summary here")
    args = p.parse_args(argv)
    kills, steps, files = (150, 120, 60) if args.full else (args.kills, 60, 40)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = make_corpus(tmp / "corpus", files, 4000)
        train = ["--corpus", corpus, "--steps", steps, *SETTINGS]
        started = time.monotonic()
        reference = subprocess.run(seqnet("train", *train, "--out", tmp / "reference"), env=environment(),
                                   capture_output=True, text=True)
        if reference.returncode:
            print(reference.stderr, file=sys.stderr)
            return 1
        span = time.monotonic() - started                 # how long one whole run takes
        by_signal, by_phase, problems, starts, rounds = {"SIGKILL": 0, "SIGINT": 0}, {}, [], 0, 0
        while sum(by_signal.values()) < kills:
            rounds += 1
            out = tmp / f"run-{rounds}"
            budget = min(PER_ROUND, kills - sum(by_signal.values()))
            while True:
                resume = (out / "latest.json").exists()
                cmd = seqnet("train", "--out", out, "--resume", "--no-progress") if resume else \
                    seqnet("train", *train, "--out", out)
                process = subprocess.Popen(cmd, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           text=True)
                starts += 1
                if budget:
                    time.sleep(rng.uniform(0.0, span * 0.5))
                    if process.poll() is None:
                        name = rng.choice(["SIGKILL", "SIGINT"])
                        process.send_signal(getattr(signal, name))
                        _, stderr = process.communicate(timeout=120)
                        budget -= 1
                        by_signal[name] += 1
                        phase = what_it_was_doing(out) if name == "SIGKILL" else "any (SIGINT: checkpoint, then stop)"
                        by_phase[phase] = by_phase.get(phase, 0) + 1
                        if "Traceback" in stderr:
                            problems.append(f"traceback after {name}: {stderr[-500:]}")
                        continue
                _, stderr = process.communicate(timeout=600)
                if process.returncode != 0:
                    problems.append(f"a start ended with {process.returncode}: {stderr[-500:]}")
                    break
                left = leftovers(out)
                if left:
                    problems.append(f"temporaries left after a completed start: {left}")
                if load_checkpoint(out).step == steps:
                    problems += [f"round {rounds}: {p}" for p in compare(tmp / "reference", out)]
                    break
        summary = {"kills": sum(by_signal.values()), "by_signal": by_signal, "by_activity": by_phase,
                   "rounds": rounds, "starts": starts, "steps": steps, "mismatches": len(problems),
                   "problems": problems[:20], "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
