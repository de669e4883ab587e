"""scripts/dates.py: the formats write what the issue's examples say, test dates never occur
in training, and a tiny run goes end to end (data, training, greedy and beam scores, heat map)."""
from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dates.py"


@pytest.fixture(scope="module")
def dates():
    spec = importlib.util.spec_from_file_location("dates_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_formats_include_the_examples(dates):
    written = {f(dt.date(1979, 5, 3)) for f in dates.FORMATS}
    assert {"3rd of May 1979", "05/03/79", "Thursday, May 3, 1979", "1979 May 3", "3.5.1979"} <= written
    assert len(written) == len(dates.FORMATS)                     # no two formats write the same text
    assert [dates.ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_held_out_dates_never_occur_in_training(dates, tmp_path):
    files = dates.build_data(tmp_path, 2000, 300, 50, seed=1)
    targets = {name: {line.split("\t")[1] for line in path.read_text().splitlines()} for name, path in files.items()}
    assert len(targets["test"]) == 300 and len(targets["valid"]) == 50
    assert not targets["test"] & targets["train"] and not targets["valid"] & targets["train"]


def test_a_tiny_run_end_to_end(dates, tmp_path):
    report = dates.main(["--out", str(tmp_path), "--steps", "20", "--train-pairs", "400", "--hidden", "16",
                         "--embed", "8", "--batch", "16", "--test-dates", "40", "--beam", "2",
                         "--skip-no-attention"])
    entry = report["attention=general"]
    assert 0 <= entry["greedy"]["exact_match"] <= 1 and 0 <= entry["beam2"]["exact_match"] <= 1
    if entry["heat_map"] is not None:
        assert Path(entry["heat_map"]).stat().st_size > 0
