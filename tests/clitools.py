"""Running the command line as a user does (``python -m seqnet ...`` in a subprocess), for the tests."""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
# A run of a few hundred milliseconds: 12 steps, evaluations, samples and checkpoints every 6.
TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--seq-len", "16", "--steps", "12", "--eval-every", "6",
        "--sample-every", "6", "--checkpoint-every", "6", "--sample-length", "20", "--no-progress"]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=SRC, PYTHONWARNINGS="ignore")


def command(*args) -> list[str]:
    return [sys.executable, "-m", "seqnet", *map(str, args)]


def seqnet(*args, cwd=None, timeout=120, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, env=env(), cwd=cwd, timeout=timeout,
                          stdin=stdin)


def start(*args, cwd=None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) -> subprocess.Popen:
    """The command in the background (the caller waits for it or kills it)."""
    return subprocess.Popen(command(*args), stdout=stdout, stderr=stderr, text=True, env=env(), cwd=cwd)


def write_corpus(path: Path, lines: int = 80, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = "the quick brown fox jumps over the lazy dog and the cat sat on the mat".split()
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(10)) for _ in range(lines)) + "\n",
                    encoding="utf-8")
    return path


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one ``error:`` line naming every fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a directory) read-only for this user, root included (chattr +i as root)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root and chattr +i is not available: cannot make a directory read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
