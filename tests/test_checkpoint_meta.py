"""A checkpoint's meta.json edited by hand or damaged, field by field: loading it for sampling
or for --resume never ends in a traceback. Either the field does not matter there (the
checkpoint loads as it is), or it is damage: a warning naming the damaged checkpoint and the
newest intact one used instead, or, when none is intact, one CheckpointError naming the file
and the field. In process (load_task, resume_run) to keep hundreds of cases fast; a few cases
through the command line."""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from clitools import seqnet, write_corpus
from seqnet.array_files import decode_arrays, encode_arrays
from seqnet.errors import CheckpointError, SeqnetError, SeqnetWarning
from seqnet.tasks import LanguageModelConfig
from seqnet.training import TrainerConfig, new_run
from seqnet.training.checkpoint import save_checkpoint
from seqnet.training.runs import load_task, resume_run

NEWEST, OLDER = "step-00000012", "step-00000006"
DELETE = object()
BAD_VALUES = ("x", -1, None, [], DELETE)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny run with checkpoints at steps 6 and 12."""
    base = tmp_path_factory.mktemp("meta")
    corpus = write_corpus(base / "c.txt", lines=120)
    task = LanguageModelConfig(corpus=str(corpus), hidden=8, embed=4, batch=2, seq_len=8, sample_length=0,
                               eval_batches=2)
    trainer = new_run("lm", task, TrainerConfig(steps=12, checkpoint_every=6, eval_every=6), base / "run",
                      progress=False, log=lambda text: None)
    trainer.run()
    return base / "run"


def fields_of(value, prefix=""):
    """Every dotted path of the JSON objects in ``value`` (lists are leaves)."""
    for key, item in value.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(item, dict):
            yield from fields_of(item, path + ".")


def edited(meta: dict, path: str, value) -> dict:
    meta = json.loads(json.dumps(meta))
    *parents, last = path.split(".")
    holder = meta
    for key in parents:
        holder = holder[key]
    if value is DELETE:
        del holder[last]
    else:
        holder[last] = value
    return meta


def outcome(act, what: str):
    """'as is' (step 12 used), 'fallback' (step 6, with a warning naming step 12) or the error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            step = act()
        except SeqnetError as err:
            assert "\n" not in str(err) and "meta.json" in str(err), (what, err)
            return "error"
    said = " ".join(str(w.message) for w in caught if issubclass(w.category, SeqnetWarning))
    if step == 6:
        assert NEWEST in said and OLDER in said, (what, said)
        return "fallback"
    assert step == 12, (what, step)
    return "as is"


def sample_step(run_dir: Path) -> int:
    """Load the run for sampling; the step of the checkpoint used (6 when it says it fell back)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_task(run_dir)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return 6 if any(f"intact checkpoint, {OLDER}" in str(w.message) for w in caught) else 12


def resume_step(run_dir: Path) -> int:
    trainer = resume_run(run_dir, progress=False, log=lambda text: None)
    trainer.close()
    return trainer.step


# Fields that do not matter to the use being tried (a value there is taken as it is).
IGNORED_BY_SAMPLING = ("task.state", "trainer", "arrays.optimizer", "arrays.trainer", "config.task.corpus")
MUST_FALL_BACK = ("config.task.cell", "config.task.layer_norm", "config.task.hidden", "config.trainer.steps",
                  "config.task.batch", "task.setup", "task.state", "task.state.data", "trainer",
                  "arrays.weights.names", "trainer.optimizer.hyperparams")


def test_every_field_edited_is_used_as_is_or_falls_back_or_is_one_line(run, tmp_path):
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    meta_path = copy / "checkpoints" / NEWEST / "meta.json"
    original = json.loads(meta_path.read_text())
    results = {}
    for path in fields_of(original):
        for value in BAD_VALUES:
            meta_path.write_text(json.dumps(edited(original, path, value)))
            what = f"{path}={'deleted' if value is DELETE else json.dumps(value)}"
            results[what, "sample"] = outcome(lambda: sample_step(copy), what + " (sample)")
            results[what, "resume"] = outcome(lambda: resume_step(copy), what + " (resume)")
    meta_path.write_text(json.dumps(original))
    for path in MUST_FALL_BACK:
        for use in ("sample", "resume"):
            if use == "sample" and path.startswith(IGNORED_BY_SAMPLING):
                continue
            for value in ("x", DELETE):
                what = f"{path}={'deleted' if value is DELETE else json.dumps(value)}"
                assert (what, use) in results, (what, use)                      # the field exists in meta.json
                assert results[what, use] == "fallback", (what, use, results[what, use])


def test_with_no_intact_checkpoint_the_error_names_the_file_and_the_field(run, tmp_path):
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    shutil.rmtree(copy / "checkpoints" / OLDER)
    meta_path = copy / "checkpoints" / NEWEST / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["task"]["hidden"] = "x"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"meta\.json: field config\.task\.hidden: expected .*, "
                                              r"received \"x\""):
        load_task(copy)


def test_non_finite_weights_are_never_written_and_never_used(run, tmp_path):
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    step_dir = copy / "checkpoints" / NEWEST
    meta = json.loads((step_dir / "meta.json").read_text())
    entry = meta["arrays"]["weights"]
    weights = decode_arrays((step_dir / entry["file"]).read_bytes(), step_dir / entry["file"])
    name = sorted(weights)[0]
    weights[name] = np.full_like(weights[name], np.nan)
    data = encode_arrays(weights, step_dir / entry["file"])     # a consistent file: only the values are bad
    (step_dir / entry["file"]).write_bytes(data)
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (step_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(SeqnetWarning, match="NaN or infinite"):
        assert sample_step(copy) == 6
    with pytest.raises(CheckpointError, match="not written.*NaN or infinite"):
        save_checkpoint(tmp_path / "other", step=1, config={}, task={}, trainer={}, weights=weights,
                        optimizer_arrays={}, task_arrays={})
    assert not (tmp_path / "other" / "latest.json").exists()


@pytest.mark.parametrize("path, value", [("config.task.hidden", "x"), ("task.setup", None),
                                         ("config.trainer.steps", None), ("config.task.cell", DELETE)])
def test_the_command_line_warns_and_uses_the_older_checkpoint(run, tmp_path, path, value):
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    meta_path = copy / "checkpoints" / NEWEST / "meta.json"
    meta_path.write_text(json.dumps(edited(json.loads(meta_path.read_text()), path, value)))
    for args in (("sample", copy, "--length", 5), ("train", "--out", copy, "--resume", "--steps", 14,
                                                   "--no-progress")):
        result = seqnet(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert f"field {path}" in result.stderr and OLDER in result.stderr, result.stderr
        assert "--hidden" not in result.stderr
