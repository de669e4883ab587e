"""Backend selection, cross-backend agreement, CuPy error paths, dtypes, initialisation, dropout."""
from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import seqnet
from conftest import assert_close
from seqnet import to_numpy
from seqnet.errors import BackendError, BackendMismatchError, ConfigError, DTypeError, SeqnetWarning

T, B, I, H = 4, 3, 3, 4
SRC = str(Path(__file__).resolve().parents[1] / "src")

LAYERS = {
    "rnn": lambda **kw: seqnet.RNN(I, H, **kw),
    "lstm": lambda **kw: seqnet.LSTM(I, H, **kw),
    "gru": lambda **kw: seqnet.GRU(I, H, **kw),
}


@pytest.fixture
def restore_backend():
    """use_backend changes the current backend for good: put the previous one back afterwards."""
    previous = seqnet.get_backend()
    yield previous
    seqnet.use_backend(previous)


def _x(shape=(T, B, I), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _first(state):
    return state[0] if isinstance(state, tuple) else state


# -- choosing a backend ------------------------------------------------------------------
def test_fresh_import_defaults_to_numpy_and_does_not_import_cupy():
    code = (
        "import sys, seqnet; b = seqnet.get_backend(); "
        "print(b.name, b.device, 'cupy' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "cpu", "False"]


def test_use_backend_sets_and_get_backend_reads(restore_backend):
    chosen = seqnet.use_backend("array_api_strict", "device1")
    assert seqnet.get_backend() is chosen
    assert (chosen.name, str(chosen.device)) == ("array_api_strict", "array_api_strict.Device('device1')")
    seqnet.use_backend("numpy")
    assert seqnet.get_backend().name == "numpy"


@pytest.mark.parametrize("name", [["numpy"], None, 3])
def test_use_backend_refuses_a_name_that_is_not_a_str(restore_backend, name):
    with pytest.raises(ConfigError, match=rf"^backend: expected one of .*, received {re.escape(repr(name))}$"):
        seqnet.use_backend(name)


def test_device_ids_refuse_floats_and_ids_beyond_int64(xb):
    from seqnet.models import ConditionalGenerator, LanguageModel

    for model in (LanguageModel(5, 4, 4, seed=0), ConditionalGenerator(5, num_conditions=2, hidden_size=2, seed=0)):
        with pytest.raises(DTypeError, match=r"^ids: expected host integer ids, received dtype float64$"):
            model.device_ids(np.array([1.7]))                           # not silently id 1
        with pytest.raises(ConfigError, match=r"^ids: expected ids below 2\*\*63 \(int64\), received "
                                              r"18446744073709551615$"):
            model.device_ids(np.array([np.iinfo(np.uint64).max]))       # not silently -1
        assert to_numpy(model.device_ids(np.array([1, 4], dtype=np.uint8))).tolist() == [1, 4]


def test_backend_context_manager_restores_previous_even_on_exception():
    before = seqnet.get_backend()
    with seqnet.backend("array_api_strict") as inner:
        assert seqnet.get_backend() is inner and inner.name == "array_api_strict"
        with seqnet.backend("numpy"):
            assert seqnet.get_backend().name == "numpy"
        assert seqnet.get_backend() is inner
    assert seqnet.get_backend() is before
    with pytest.raises(ZeroDivisionError):
        with seqnet.backend("array_api_strict", "device1"):
            1 / 0
    assert seqnet.get_backend() is before


def test_unknown_backend_name_is_a_config_error_naming_it():
    before = seqnet.get_backend()
    with pytest.raises(ConfigError, match=r"backend: expected one of .*'numpy'.*received 'jaxx'"):
        seqnet.use_backend("jaxx")
    with pytest.raises(ConfigError, match=r"'jaxx'"):
        with seqnet.backend("jaxx"):
            pass
    assert seqnet.get_backend() is before


def test_layer_keeps_its_backend_after_switching():
    with seqnet.backend("array_api_strict", "device1") as strict:
        lstm = seqnet.LSTM(I, H, seed=0)
    assert seqnet.get_backend().name == "numpy"
    assert lstm.backend is strict
    out, (h_n, c_n) = lstm(strict.asarray(_x(), "float32"))
    for arr in (out, h_n, c_n):
        assert strict.owns(arr)
    with pytest.raises(BackendMismatchError):
        lstm(_x().astype(np.float32))


def test_layer_to_numpy_and_back(xb):
    gru = seqnet.GRU(I, H, num_layers=2, seed=0)
    x = _x()
    (out, h_n), backprop = gru.forward(xb.asarray(x, "float32"))
    backprop(xb.asarray(np.ones(out.shape), "float32"), None)
    grads = {k: to_numpy(v) for k, v in gru.grads.items()}
    assert gru.to("numpy") is gru
    assert gru.backend.name == "numpy"
    for k, v in gru.state_dict().items():
        assert isinstance(v, np.ndarray) and v.dtype == np.float32, k
        np.testing.assert_array_equal(to_numpy(gru.grads[k]), grads[k], err_msg=k)
    out_np, _ = gru(x.astype(np.float32))
    np.testing.assert_allclose(out_np, to_numpy(out), rtol=1e-5, atol=1e-6)
    gru.to(xb.name, xb.device)
    assert gru.backend.name == xb.name
    out_back, h_back = gru(xb.asarray(x, "float32"))
    assert_close(xb, out_back, out, rtol=0, atol=0)
    assert_close(xb, h_back, h_n, rtol=0, atol=0)
    for k, g in gru.grads.items():
        assert_close(xb, g, grads[k], rtol=0, atol=0)


# -- every backend agrees with numpy -------------------------------------------------------
@pytest.mark.parametrize("kind", list(LAYERS))
def test_same_seed_same_weights_and_outputs_as_numpy(xb, kind):
    kw = dict(num_layers=2, bidirectional=True, seed=11)
    layer = LAYERS[kind](**kw)
    with seqnet.backend("numpy"):
        reference = LAYERS[kind](**kw)
    mine, ref = layer.state_dict(), reference.state_dict()
    assert list(mine) == list(ref)
    for k in ref:
        assert xb.owns(mine[k]), k
        np.testing.assert_array_equal(to_numpy(mine[k]), ref[k], err_msg=k)
    x = _x()
    lengths = [T, 2, T - 1]
    out, state = layer(xb.asarray(x, "float32"), lengths=lengths)
    ref_out, ref_state = reference(x.astype(np.float32), lengths=lengths)
    assert_close(xb, out, ref_out, rtol=1e-5, atol=1e-6)
    assert_close(xb, _first(state), _first(ref_state), rtol=1e-5, atol=1e-6)


def test_to_numpy_on_every_backend(xb):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    arr = xb.asarray(host, "float32")
    assert xb.owns(arr)
    back = to_numpy(arr)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    back[0, 0] = 100.0  # a copy: the backend array is untouched
    assert to_numpy(arr)[0, 0] == 0.0


def test_float32_default_and_float64_on_request(xb):
    lstm = seqnet.LSTM(I, H, seed=0)
    out, (h_n, c_n) = lstm(xb.asarray(_x(), "float32"))
    for arr in (out, h_n, c_n):
        assert xb.dtype_name(arr.dtype) == "float32"
    for v in lstm.state_dict().values():
        assert xb.dtype_name(v.dtype) == "float32"


def test_float64_on_request(xb64):
    for dtype in ("float64", np.float64, xb64.xp.float64):
        gru = seqnet.GRU(I, H, dtype=dtype, seed=0)
        out, h_n = gru(xb64.asarray(_x(), "float64"))
        assert xb64.dtype_name(out.dtype) == "float64"
        assert xb64.dtype_name(h_n.dtype) == "float64"
        assert xb64.owns(out)


# -- CuPy ----------------------------------------------------------------------------------
def test_cupy_not_installed_gives_install_advice(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(BackendError, match=r"pip install") as info:
        seqnet.use_backend("cupy")
    assert "cupy-cuda12x" in str(info.value)
    assert seqnet.get_backend().name == "numpy"


def _fake_cupy(get_device_count):
    runtime = types.SimpleNamespace(
        getDeviceCount=get_device_count,
        driverGetVersion=lambda: 0,
        runtimeGetVersion=lambda: 12080,
    )
    return types.SimpleNamespace(__version__="14.2.0", cuda=types.SimpleNamespace(runtime=runtime),
                                 is_available=lambda: False)


def test_cupy_without_driver_names_driver_and_runtime_versions(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(no_driver))
    with pytest.raises(BackendError, match=r"(?i)driver version") as info:
        with seqnet.backend("cupy"):
            pass
    message = str(info.value)
    assert "cudaErrorInsufficientDriver" in message
    assert "CUDA driver version none" in message
    assert "runtime version 12.8" in message
    assert "14.2.0" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_cupy_with_zero_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(BackendError, match=r"0 devices"):
        seqnet.use_backend("cupy")


def _cupy_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    import cupy

    return bool(cupy.is_available())


@pytest.mark.skipif(not _cupy_available(), reason="needs a CUDA device (cupy.is_available() is False)")
@pytest.mark.parametrize("kind", list(LAYERS))
def test_cupy_layer_matches_numpy(kind):
    import cupy

    kw = dict(num_layers=2, bidirectional=True, dtype="float64", seed=3)
    with seqnet.backend("numpy"):
        reference = LAYERS[kind](**kw)
    with seqnet.backend("cupy") as gpu:
        layer = LAYERS[kind](**kw)
    x = _x()
    (out, state), backprop = layer.forward(gpu.asarray(x, "float64"), lengths=[T, 1, 2])
    assert isinstance(out, cupy.ndarray) and gpu.owns(out)
    dx, _ = backprop(gpu.asarray(np.ones(out.shape), "float64"), None)
    (ref_out, _), ref_backprop = reference.forward(x, lengths=[T, 1, 2])
    ref_dx, _ = ref_backprop(np.ones(ref_out.shape), None)
    assert_close(gpu, out, ref_out, rtol=1e-10, atol=1e-12)
    assert_close(gpu, dx, ref_dx, rtol=1e-10, atol=1e-12)
    for k, g in layer.grads.items():
        assert_close(gpu, g, reference.grads[k], rtol=1e-10, atol=1e-12, err_msg=k)


# -- initialisation ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(LAYERS))
def test_default_init_is_uniform_within_one_over_sqrt_hidden(kind):
    hidden = 16
    layer = {"rnn": seqnet.RNN, "lstm": seqnet.LSTM, "gru": seqnet.GRU}[kind](5, hidden, num_layers=2, seed=0)
    bound = 1 / math.sqrt(hidden)
    for k, v in layer.state_dict().items():
        v = to_numpy(v)
        assert np.all(np.abs(v) <= bound), k
        assert np.max(np.abs(v)) > 0.5 * bound, k  # really spread over the interval, not tiny


@pytest.mark.parametrize("kind, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_orthogonal_init_gives_orthogonal_hidden_blocks(kind, gates):
    hidden = 6
    layer = {"rnn": seqnet.RNN, "lstm": seqnet.LSTM, "gru": seqnet.GRU}[kind](
        4, hidden, num_layers=2, bidirectional=True, init="orthogonal", dtype="float64", seed=0)
    blocks = 0
    for k, v in layer.state_dict().items():
        if not k.startswith("weight_hh"):
            continue
        w = to_numpy(v)
        assert w.shape == (gates * hidden, hidden)
        for g in range(gates):
            q = w[g * hidden:(g + 1) * hidden]
            np.testing.assert_allclose(q.T @ q, np.eye(hidden), atol=1e-12, err_msg=f"{k} block {g}")
            blocks += 1
    assert blocks == 4 * gates


def test_forget_bias_sets_the_f_block_in_pytorch_order():
    hidden = 3
    lstm = seqnet.LSTM(2, hidden, num_layers=2, bidirectional=True, forget_bias=1.0, seed=0)
    state = {k: to_numpy(v) for k, v in lstm.state_dict().items()}
    bias_keys = [k for k in state if k.startswith("bias")]
    assert len(bias_keys) == 8
    for k in bias_keys:
        f_block = state[k][hidden:2 * hidden]  # PyTorch order i, f, g, o
        np.testing.assert_array_equal(f_block, 1.0 if k.startswith("bias_ih") else 0.0, err_msg=k)
        others = np.concatenate([state[k][:hidden], state[k][2 * hidden:]])
        assert np.all(np.abs(others) <= 1 / math.sqrt(hidden)) and not np.all(others == 0), k


# -- dropout -------------------------------------------------------------------------------
def test_inference_is_deterministic_and_training_dropout_changes_two_layers():
    lstm = seqnet.LSTM(I, H, num_layers=2, dropout=0.5, seed=0)
    x = _x().astype(np.float32)
    out1, _ = lstm(x)
    out2, _ = lstm(x)
    np.testing.assert_array_equal(out1, out2)
    (train_out, _), _ = lstm.forward(x)
    assert not np.allclose(train_out, out1)
    (train_again, _), _ = lstm.forward(x)
    assert not np.array_equal(train_again, train_out)  # a fresh mask per call


def test_dropout_has_no_effect_on_a_single_layer():
    with pytest.warns(SeqnetWarning, match=r"^dropout: acts between stacked layers, so with num_layers=1 "
                                          r"dropout=0\.5 does nothing"):
        gru = seqnet.GRU(I, H, num_layers=1, dropout=0.5, seed=0)
    x = _x().astype(np.float32)
    out, h_n = gru(x)
    (train_out, train_h), _ = gru.forward(x)
    np.testing.assert_array_equal(train_out, out)
    np.testing.assert_array_equal(train_h, h_n)


def test_dropout_same_seed_same_mask_on_every_backend(xb):
    kw = dict(num_layers=2, dropout=0.5, seed=9)
    lstm = seqnet.LSTM(I, H, **kw)
    with seqnet.backend("numpy"):
        reference = seqnet.LSTM(I, H, **kw)
    x = _x()
    (out, (h_n, c_n)), backprop = lstm.forward(xb.asarray(x, "float32"))
    (ref_out, _), _ = reference.forward(x.astype(np.float32))
    assert_close(xb, out, ref_out, rtol=1e-5, atol=1e-6)
    d_out = xb.asarray(np.ones(out.shape), "float32")
    dx, (dh0, dc0) = backprop(d_out, (None, xb.asarray(np.ones(c_n.shape), "float32")))
    assert tuple(dx.shape) == (T, B, I) and tuple(dh0.shape) == tuple(dc0.shape) == (2, B, H)
    assert xb.owns(dx) and xb.owns(dh0) and xb.owns(dc0)
    for k, g in lstm.grads.items():
        g = to_numpy(g)
        assert g.shape == to_numpy(lstm.state_dict()[k]).shape and np.all(np.isfinite(g)), k
        assert np.any(g != 0), k


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_set_num_threads_refuses_a_bad_count(threads):
    with pytest.raises(seqnet.errors.ConfigError, match=rf"threads: expected a positive integer, received {threads!r}"):
        seqnet.set_num_threads(threads)


def test_to_numpy_refuses_what_is_no_array():
    from seqnet.errors import ConfigError

    for value in (None, "abc", {"a": 1}):
        with pytest.raises(ConfigError, match=rf"^x: expected an array .* received {type(value).__name__}$"):
            seqnet.to_numpy(value)
    assert seqnet.to_numpy([1, 2]).tolist() == [1, 2] and seqnet.to_numpy(3.0) == 3.0


def test_a_language_model_refuses_a_tokenizer_that_is_none_of_seqnets():
    from seqnet.errors import ConfigError
    from seqnet.models import LanguageModel

    with pytest.raises(ConfigError, match=r"^tokenizer: expected a seqnet tokenizer .* received str 'char'$"):
        LanguageModel(3, tokenizer="char")


def test_what_replaces_a_parameter_or_its_gradient_must_match_it(xb):
    from seqnet.errors import BackendMismatchError, DTypeError, ShapeError

    with seqnet.backend(xb.name, xb.device):
        layer = seqnet.GRU(3, 4, seed=0)
    name = "bias_ih_l0"
    good = layer.params[name]
    for view in (layer.params, layer.param_grads):
        for value, error, message in ((xb.asarray(np.zeros(5), "float32"), ShapeError, r"expected shape \(12,\)"),
                                      (xb.asarray(np.zeros((1, 12)), "float32"), ShapeError, r"received \(1, 12\)"),
                                      ([0.0] * 12, BackendMismatchError, r"received"),
                                      (xb.asarray(np.zeros(12), "int32"), DTypeError, r"expected dtype float32")):
            with pytest.raises(error, match=rf"^(params|param_grads)\['{name}'\]: .*{message}"):
                view[name] = value
    layer.params[name] = xb.asarray(np.ones(12), "float32")
    assert float(np.sum(seqnet.to_numpy(layer.params[name]))) == 12 and good is not layer.params[name]
    if xb.name != "numpy":
        with pytest.raises(BackendMismatchError):
            layer.params[name] = np.zeros(12, np.float32)
