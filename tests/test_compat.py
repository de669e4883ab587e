"""Run directories written by earlier versions of seqnet keep working.

``tests/data/run-v1`` was written by the version-1 checkpoint format (a flat language-model
config, the tokenizer and carried state in the checkpoint's own fields): a 2-layer char
LSTM trained for 6 steps on ``run-v1-corpus.txt``. Oracle: PyTorch modules loaded straight
from the checkpoint's weight file (read with safetensors, not with seqnet) give the
cross-entropy that seqnet's loaded model gives.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clitools import seqnet
from seqnet import to_numpy

DATA = Path(__file__).resolve().parent / "data"
RUN_V1 = DATA / "run-v1"

def _torch_nats(text_ids: np.ndarray) -> float:
    torch = pytest.importorskip("torch")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    pointer = json.loads((RUN_V1 / "latest.json").read_text())
    weights = safetensors_numpy.load_file(str(RUN_V1 / pointer["checkpoint"] / "weights.safetensors"))
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()}
    vocab, embed = w["embedding.weight"].shape
    hidden = w["rnn.weight_hh_l0"].shape[1]
    rnn = torch.nn.LSTM(embed, hidden, num_layers=2).double()
    rnn.load_state_dict({k[4:]: v for k, v in w.items() if k.startswith("rnn.")})
    with torch.no_grad():
        x = torch.from_numpy(text_ids[:-1, None])
        out, _ = rnn(torch.nn.functional.embedding(x, w["embedding.weight"]))
        logits = out @ w["decoder.weight"].T + w["decoder.bias"]
        return float(torch.nn.functional.cross_entropy(logits[:, 0], torch.from_numpy(text_ids[1:])))


def test_a_version_1_run_directory_loads_on_every_backend_and_scores_as_pytorch_does(xb):
    from seqnet.training import load_model

    model = load_model(RUN_V1, xb.name, xb.device)
    text = (DATA / "run-v1-corpus.txt").read_text()[:300]
    ids = model.tokenizer.encode(text)
    loss, _ = model.loss(model.device_ids(ids[:-1, None]), model.device_ids(ids[1:, None]))
    assert xb.owns(loss)
    np.testing.assert_allclose(float(to_numpy(loss)), _torch_nats(ids), rtol=1e-5)


def test_a_version_1_run_directory_samples_evaluates_and_resumes(tmp_path):
    run = shutil.copytree(RUN_V1, tmp_path / "run")
    shutil.copy(DATA / "run-v1-corpus.txt", tmp_path / "corpus.txt")       # the run's corpus, by its relative name
    sample = seqnet("sample", run, "--prime", "the ", "--length", 20, "--seed", 1)
    assert sample.returncode == 0 and sample.stdout.startswith("the "), sample.stderr
    evaluated = seqnet("eval", run, "--corpus", tmp_path / "corpus.txt", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["bits_per_token"] > 0
    resumed = seqnet("train", "--out", run, "--resume", "--steps", 9, "--no-progress", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["steps"] == 9
    pointer = json.loads((run / "latest.json").read_text())
    meta = json.loads((run / pointer["checkpoint"] / "meta.json").read_text())
    assert meta["format_version"] == 2 and meta["config"]["task"]["layers"] == 2
