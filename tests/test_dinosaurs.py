"""scripts/dinosaurs.py, shortened: trains on ../shared/data/dinos.txt where it lies (beside the
project; never copied into it) and reports sampled names and how many are new."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DINOS = ROOT.parent / "shared" / "data" / "dinos.txt"


@pytest.mark.skipif(not DINOS.is_file(), reason=f"{DINOS} is absent: the Dinosaur Island names file is not "
                                                "beside the project on this machine")
@pytest.mark.parametrize("matplotlib", ["installed", "missing"])
def test_dinosaur_script_short_run(tmp_path, matplotlib):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if matplotlib == "installed":
        pytest.importorskip("matplotlib")
    else:                           # a matplotlib that cannot be imported shadows any installed one
        (tmp_path / "hide" / "matplotlib").mkdir(parents=True)
        (tmp_path / "hide" / "matplotlib" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = str(tmp_path / "hide")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "dinosaurs.py"), "--steps", "40", "--samples", "8",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    drawn = [str(tmp_path / "out" / "names.png"), str(tmp_path / "out" / "run" / "loss.png")]
    assert summary["pictures"] == (drawn if matplotlib == "installed" else [])
    assert all(Path(path).is_file() == (matplotlib == "installed") for path in drawn)
    assert ("matplotlib is not installed" in result.stderr) == (matplotlib == "missing")
    known = {line.strip() for line in DINOS.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert summary["names_in_file"] == len(known) and summary["data"] == str(DINOS)
    assert 1 <= summary["sampled"] <= 8 and summary["sampled"] == len(summary["names"])
    assert summary["new"] == sum(name not in known for name in summary["names"])
    assert all(name and "\n" not in name for name in summary["names"])
    assert not list(ROOT.glob("**/dinos.txt")), "the names file must not be copied into the project"


def test_dinosaur_script_names_a_missing_file(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "dinosaurs.py"), "--data", str(tmp_path / "no.txt"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no.txt does not exist" in result.stderr and "Traceback" not in result.stderr


def test_the_script_replaces_only_a_run_no_process_is_writing(tmp_path):
    from seqnet.training.run_dir import RunDirectory

    script = [sys.executable, str(ROOT / "scripts" / "dinosaurs.py"), "--data", str(tmp_path / "names.txt"), "--steps",
              "2", "--samples", "2", "--out", str(tmp_path / "out")]
    (tmp_path / "names.txt").write_text("".join(f"name{k}\n" for k in range(400)), encoding="utf-8")
    run = tmp_path / "out" / "run"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("precious")
    refused = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"dinosaurs.py: error: --out: {run} holds files that are not a seqnet run (notes.txt); choose another "
        "directory (nothing was changed)"], refused.stderr
    assert (run / "notes.txt").read_text() == "precious"
    (run / "notes.txt").unlink()
    held = RunDirectory.claim(run)                                # another process writing this run
    try:
        busy = subprocess.run(script, capture_output=True, text=True, timeout=120)
    finally:
        held.release()
    assert busy.returncode == 2 and "is being written by" in busy.stderr and "Traceback" not in busy.stderr
    assert (run / ".seqnet-run").exists()
    again = subprocess.run(script, capture_output=True, text=True, timeout=120)        # now free: replaced
    assert again.returncode == 0, again.stderr
    for bad in (["--steps", "0"], ["--samples", "0"], ["--seed", "-1"]):
        result = subprocess.run(script + bad, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and f"argument {bad[0]}: expected an integer >= " in result.stderr
