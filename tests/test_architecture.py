"""The layout seqnet is built on: composite layers, live parameter views, one dispatcher for
kernels, token-id checks, single-use backprop closures, the trainer running a task, the
registries the command line reads, and which package may import which."""
from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqnet
from conftest import assert_close
from seqnet import kernels, to_numpy
from seqnet.cells import LSTMCell
from seqnet.errors import ConfigError, ShapeError, TapeConsumedError
from seqnet.layers import Embedding, Linear, Recurrent
from seqnet.models import LanguageModel

SRC = Path(__file__).resolve().parents[1] / "src" / "seqnet"
V, E, H = 7, 4, 5


def _ids(backend, values):
    return backend.asarray(np.asarray(values, dtype=np.int64), "int64")


def _batch(seed=0, steps=4, batch=3):
    ids = np.random.default_rng(seed).integers(0, V, (steps + 1, batch))
    return ids[:-1], ids[1:]


# -- kernel selection -----------------------------------------------------------------------
class DoubledInputLSTMCell(LSTMCell):
    """An LSTM whose gates see twice the input projection: z = 2 xproj + h W_hh. Same class
    family, different math: it must not run the plain LSTM's fused kernels."""

    def forward_step(self, xproj, state, p, *, xp):
        return super().forward_step(2 * xproj, state, p, xp=xp)

    def backward_step(self, d_state, cache, p, *, xp):
        d_prev, d_z, _, d_extra = super().backward_step(d_state, cache, p, xp=xp)
        return d_prev, 2 * d_z, d_z, d_extra


def test_a_subclass_with_other_math_runs_the_reference_not_the_parent_kernel(xb64):
    """Oracle: doubling xproj = x W_ih + b_ih + b_hh is a plain LSTM with W_ih, b_ih, b_hh doubled."""
    cell = DoubledInputLSTMCell()
    assert cell.kernel_key() is None and LSTMCell().kernel_key() == "lstm"
    assert kernels.scan_kernels(xb64, cell, masked=False) is kernels.REFERENCE_SCAN
    odd = Recurrent(cell, 3, H, num_layers=2, dtype="float64", seed=1)
    plain = seqnet.LSTM(3, H, num_layers=2, dtype="float64")
    state = {k: to_numpy(v) for k, v in odd.state_dict().items()}
    plain.load_state_dict({k: (2 * v if k.endswith("_l0") and not k.startswith("weight_hh") else
                               2 * v if k.endswith("_l1") and not k.startswith("weight_hh") else v)
                           for k, v in state.items()})
    x = xb64.asarray(np.random.default_rng(2).standard_normal((4, 2, 3)), "float64")
    (out, (h_n, c_n)), back = odd.forward(x)
    (want, (want_h, want_c)), want_back = plain.forward(x)
    assert_close(xb64, out, want, rtol=1e-12, atol=1e-12)
    assert_close(xb64, c_n, want_c, rtol=1e-12, atol=1e-12)
    d_out = xb64.asarray(np.random.default_rng(3).standard_normal((4, 2, H)), "float64")
    dx, _ = back(d_out, None)
    want_dx, _ = want_back(d_out, None)
    assert_close(xb64, dx, want_dx, rtol=1e-12, atol=1e-12)


def test_dispatch_gives_numpy_its_fused_loops_and_everyone_else_the_reference(xb):
    from seqnet.cells import GRUCell, LayerNormLSTMCell, RNNCell

    for cell in (LSTMCell(), GRUCell(), RNNCell("relu"), LayerNormLSTMCell()):
        chosen = kernels.scan_kernels(xb, cell, masked=False)
        assert chosen.is_reference == (xb.name != "numpy"), (xb.name, cell.name)
    assert kernels.kernel(xb, "adam_update").__module__.endswith("numpy.optimizers") == (xb.name == "numpy")


# -- composite layers and live views ----------------------------------------------------------
def test_the_documented_optimizer_pattern_trains_a_language_model(xb64):
    """opt = Adam(model.params); opt.step(model.params, model.param_grads) must change the
    model itself, exactly as the update rule says: first Adam step moves each entry by lr * sign(g)."""
    from seqnet.training import Adam, clip_grad_norm

    model = LanguageModel(V, E, H, 2, "gru", dtype="float64", seed=0)
    inputs, targets = _batch()
    before = {k: to_numpy(v) for k, v in model.params.items()}
    opt = Adam(model.params, lr=0.01)
    model.zero_grad()
    model.loss_and_grads(_ids(xb64, inputs), _ids(xb64, targets))
    norm = clip_grad_norm(model.param_grads, 0.05, xp=xb64.xp)
    clipped = {k: to_numpy(g) for k, g in model.param_grads.items()}
    total = math.sqrt(sum(float(np.sum(g * g)) for g in clipped.values()))
    assert float(to_numpy(norm)) > 0.05 and total == pytest.approx(0.05, rel=1e-5)   # the model's grads were clipped
    opt.step(model.params, model.param_grads)
    for name, value in model.params.items():
        g = clipped[name]
        expected = before[name] - 0.01 * g / (np.abs(g) + 1e-8)      # Adam's first step: lr * g / (|g| + eps)
        np.testing.assert_allclose(to_numpy(value), expected, rtol=1e-9, atol=1e-12, err_msg=name)


def test_parameter_views_are_live_and_fixed(xb):
    model = LanguageModel(V, E, H, 1, "rnn", seed=0)
    params = model.params
    new = xb.asarray(np.zeros((V, E)), "float32")
    params["embedding.weight"] = new
    assert model.embedding.weight.value is new and model.params["embedding.weight"] is new
    with pytest.raises(KeyError, match="not a parameter"):
        params["embedding.extra"] = new
    with pytest.raises(TypeError):
        del params["embedding.weight"]


def test_tied_weights_are_one_parameter():
    model = LanguageModel(V, H, H, 1, "lstm", tie_weights=True, seed=0)
    assert model.decoder.parameter("weight") is model.embedding.weight
    assert "decoder.weight" not in model.state_dict() and "decoder.weight" not in model.params
    untied = LanguageModel(V, H, H, 1, "lstm", seed=0)
    assert model.num_parameters() == untied.num_parameters() - V * H


def test_state_dict_names_are_dotted_and_load_is_atomic(xb):
    model = LanguageModel(V, E, H, 2, "lstm", seed=0)
    state = {k: to_numpy(v) for k, v in model.state_dict().items()}
    assert {"embedding.weight", "rnn.weight_ih_l0", "rnn.bias_hh_l1", "decoder.weight", "decoder.bias"} <= set(state)
    changed = {k: v + 1.0 for k, v in state.items()}
    changed["rnn.weight_hh_l1"] = np.zeros((3, 3))
    with pytest.raises(ShapeError, match=r"rnn\.weight_hh_l1: expected \(20, 5\)"):
        model.load_state_dict(changed)
    for name, value in model.state_dict().items():            # nothing was replaced, the embedding included
        np.testing.assert_array_equal(to_numpy(value), state[name], err_msg=name)
    with pytest.raises(ConfigError, match=r"missing \['decoder.bias'\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "decoder.bias"})


def test_to_moves_every_child():
    model = LanguageModel(V, E, H, 1, "gru", seed=0)
    ids = np.array([[1, 2], [3, 4]])
    want = to_numpy(model(model.device_ids(ids))[0])
    model.to("array_api_strict", "device1")
    assert all(layer.backend.name == "array_api_strict" for layer in model.layers())
    np.testing.assert_allclose(to_numpy(model(model.device_ids(ids))[0]), want, rtol=1e-6, atol=1e-6)


# -- backprop closures ------------------------------------------------------------------------
def test_second_backprop_is_refused_before_any_gradient_moves(xb):
    model = LanguageModel(V, E, H, 1, "lstm", seed=0)
    inputs, _ = _batch()
    (logits, _), backprop = model.forward(_ids(xb, inputs))
    d_logits = xb.asarray(np.ones(tuple(logits.shape)), "float32")
    with pytest.raises(ShapeError, match="d_logits"):
        backprop(xb.asarray(np.ones((2, 2)), "float32"))           # a bad call leaves the tape usable
    backprop(d_logits)
    once = {k: to_numpy(g) for k, g in model.param_grads.items()}
    with pytest.raises(TapeConsumedError, match="already called"):
        backprop(d_logits)
    for name, grad in model.param_grads.items():
        np.testing.assert_array_equal(to_numpy(grad), once[name], err_msg=name)


@pytest.mark.parametrize("make", [lambda: Linear(3, 2), lambda: Embedding(5, 3)], ids=["linear", "embedding"])
def test_layer_backprops_run_once(xb, make):
    layer = make()
    x = xb.asarray(np.ones((2, 3)), "float32") if isinstance(layer, Linear) else _ids(xb, [[1, 4]])
    y, backprop = layer.forward(x)
    upstream = xb.asarray(np.ones(tuple(y.shape)), "float32")
    backprop(upstream)
    with pytest.raises(TapeConsumedError):
        backprop(upstream)


# -- token ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, V])
def test_token_ids_out_of_range_are_named(xb, bad):
    model = LanguageModel(V, E, H, 1, "gru", seed=0)
    good = np.array([[1, 2], [3, 4]])
    wrong = good.copy()
    wrong[1, 0] = bad
    with pytest.raises(ConfigError, match=rf"ids: expected token ids in \[0, {V}\).*received values in"):
        model(_ids(xb, wrong))
    with pytest.raises(ConfigError, match=r"targets: expected token ids in \[0, 7\)"):
        model.loss_and_grads(_ids(xb, good), _ids(xb, wrong))
    with pytest.raises(ConfigError, match=r"ids: expected token ids"):
        Embedding(V, E)(_ids(xb, wrong))
    with pytest.raises(ConfigError, match=r"x: expected token ids in \[0, 7\)"):
        seqnet.GRU(E, H)(_ids(xb, wrong), input_table=xb.asarray(np.zeros((V, 3 * H)), "float32"))


def test_cross_entropy_targets_out_of_range(xb):
    from seqnet.layers import softmax_cross_entropy

    logits = xb.asarray(np.zeros((2, 3)), "float32")
    with pytest.raises(ConfigError, match=r"targets: expected class ids in \[0, 3\)"):
        softmax_cross_entropy(logits, _ids(xb, [0, 3]), xp=xb.xp)
    mask = xb.asarray(np.array([True, False]), "bool")
    loss, _ = softmax_cross_entropy(logits, _ids(xb, [0, -100]), mask, xp=xb.xp)   # padded targets are not read
    assert_close(xb, loss, math.log(3), rtol=1e-6, atol=1e-6)


# -- the trainer runs a task --------------------------------------------------------------------
def _corpus(path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    path.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(60)), encoding="utf-8")
    return path


def _train(tmp_path, name, accumulate, steps=4):
    from seqnet.tasks import LanguageModelConfig
    from seqnet.training import TrainerConfig, new_run

    task = LanguageModelConfig(corpus=str(_corpus(tmp_path / "c.txt")), hidden=6, embed=4, batch=4, seq_len=6,
                               sample_length=0)
    trainer = new_run("lm", task, TrainerConfig(steps=steps, accumulate=accumulate, dtype="float64", warmup=1,
                                                eval_every=100, checkpoint_every=100),
                      tmp_path / name, progress=False, log=lambda text: None)
    trainer.run()
    return trainer


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    """2 or 4 micro-batches of the 4 streams, each with its own carried state and gradients
    added at 1/k, give the parameters of one batch of 4 (float64, to rounding)."""
    whole = _train(tmp_path, "whole", 1)
    for k in (2, 4):
        parts = _train(tmp_path, f"acc{k}", k)
        for name, value in whole.model.params.items():
            np.testing.assert_allclose(to_numpy(parts.model.params[name]), to_numpy(value), rtol=1e-11, atol=1e-13,
                                       err_msg=f"{name} accumulate={k}")
        assert [s for s, _ in parts.history] == [s for s, _ in whole.history]
        np.testing.assert_allclose([v for _, v in parts.history], [v for _, v in whole.history], rtol=1e-11)


def test_accumulate_must_divide_the_batch(tmp_path):
    with pytest.raises(ConfigError, match=r"--accumulate: expected a divisor of --batch 4, received 3"):
        _train(tmp_path, "bad", 3)


def test_the_trainer_knows_nothing_of_language_models():
    source = (SRC / "training" / "trainer.py").read_text()
    for word in ("tokenizer", "LanguageModel", "carry", "bits_per", "corpus", "sample"):
        assert word not in source.replace("samples", ""), word


# -- public names and registries ----------------------------------------------------------------
def test_public_subpackages_and_exports():
    out = subprocess.run([sys.executable, "-c", "import seqnet; from seqnet.training import Adam, cosine, "
                          "clip_grad_norm, Trainer; print(seqnet.models.LanguageModel.__name__, "
                          "seqnet.training.SGD.__name__, seqnet.tasks.TASKS['lm'].__name__)"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(SRC.parent)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["LanguageModel", "SGD", "LanguageModelTask"]


def test_the_command_line_reads_its_choices_from_the_registries(monkeypatch):
    from seqnet.backend import BACKEND_NAMES
    from seqnet.cli.main import build_parser
    from seqnet.data.tokenizers import KINDS
    from seqnet.layers import RECURRENT_LAYERS
    from seqnet.training import OPTIMIZERS, SCHEDULES

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    choices = {action.dest: tuple(action.choices) for action in train._actions if action.choices}
    assert choices["cell"] == tuple(RECURRENT_LAYERS) and choices["optimizer"] == tuple(OPTIMIZERS)
    assert choices["schedule"] == SCHEDULES and choices["backend"] == BACKEND_NAMES
    assert choices["tokenizer"] == KINDS
    monkeypatch.setitem(RECURRENT_LAYERS, "mygru", seqnet.GRU)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "mygru" in next(a.choices for a in train._actions if a.dest == "cell")


# -- which package may import which ----------------------------------------------------------------
# Lower packages never import higher ones (the CLI is the top).
LAYERS = ["errors", "config", "files", "array_files", "random_state", "backend", "cells", "kernels", "layers", "decoding", "data",
          "models", "metrics", "tasks", "training", "cli"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:       # relative: resolve against the package
            parts = path.relative_to(SRC).parts[:-1]
            base = list(parts[:len(parts) - node.level + 1])
            target = (base + (node.module.split(".") if node.module else []))
            found.add(target[0] if target else (node.names[0].name if node.names else ""))
            if not node.module and not base:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqnet."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("seqnet."))
    return found


@pytest.mark.parametrize("package", LAYERS[:-1])
def test_no_package_imports_a_higher_one(package):
    rank = {name: k for k, name in enumerate(LAYERS)}
    files = [SRC / f"{package}.py"] if (SRC / f"{package}.py").exists() else sorted((SRC / package).rglob("*.py"))
    assert files
    for path in files:
        upward = {name for name in _imports(path) if rank.get(name, -1) > rank[package]}
        assert not upward, f"{path.relative_to(SRC)} imports {sorted(upward)}, above {package}"
