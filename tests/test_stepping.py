"""The stepping forward with a tape (Recurrent.steps) against the whole-sequence scan.

A decoder with input feeding runs its recurrent stack one step at a time and walks back one
step at a time. Stepping a whole sequence must compute what ``Recurrent.forward`` and its
backprop compute (themselves held to PyTorch and finite differences elsewhere): outputs,
final state, input gradient, initial-state gradient and every parameter gradient, for every
cell (layer-norm LSTM included), one and two layers, with and without lengths. Dropout
between layers, which the stepped run draws per step, is checked by finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest

import seqnet
from conftest import assert_close
from oracles import central_differences
from seqnet import to_numpy
from seqnet.errors import ConfigError, ShapeError

T, B, I, H = 4, 3, 3, 2
LENGTHS = [2, T, 3]

CELLS = {
    "rnn_tanh": lambda **kw: seqnet.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: seqnet.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: seqnet.LSTM(**kw),
    "lstm_ln": lambda **kw: seqnet.LSTM(layer_norm=True, **kw),
    "gru": lambda **kw: seqnet.GRU(reset_after=True, **kw),
    "gru_cho": lambda **kw: seqnet.GRU(reset_after=False, **kw),
}


def _split(state):
    return state if isinstance(state, tuple) else (state,)


def _problem(backend, cell, layers, seed=0):
    layer = CELLS[cell](input_size=I, hidden_size=H, num_layers=layers, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 10)
    n_state = 2 if cell.startswith("lstm") else 1
    host = dict(x=rng.standard_normal((T, B, I)), hx=[0.5 * rng.standard_normal((layers, B, H)) for _ in range(n_state)],
                d_out=rng.standard_normal((T, B, H)), d_h_n=[rng.standard_normal((layers, B, H)) for _ in range(n_state)])
    return layer, host


def _dev(backend, host):
    return backend.asarray(host, "float64")


def _state(backend, parts):
    dev = tuple(_dev(backend, p) for p in parts)
    return dev if len(dev) > 1 else dev[0]


def _scan(layer, backend, host, lengths):
    layer.zero_grad()
    (out, h_n), backprop = layer.forward(_dev(backend, host["x"]), _state(backend, host["hx"]), lengths)
    dx, dhx = backprop(_dev(backend, host["d_out"]), _state(backend, host["d_h_n"]))
    return out, h_n, dx, dhx, {k: to_numpy(v) for k, v in layer.grads.items()}


def _stepped(layer, backend, host, lengths):
    xp = backend.xp
    layer.zero_grad()
    run = layer.steps(B, _state(backend, host["hx"]), lengths)
    x = _dev(backend, host["x"])
    outs = [run.step(x[t, ...]) for t in range(T)]
    h_n = run.h_n
    d_out = _dev(backend, host["d_out"])
    run.begin_backward(_state(backend, host["d_h_n"]))
    dxs = [run.backstep(d_out[t, ...]) for t in range(T - 1, -1, -1)]
    dhx = run.end_backward()
    return xp.stack(outs), h_n, xp.stack(dxs[::-1]), dhx, {k: to_numpy(v) for k, v in layer.grads.items()}


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_stepping_equals_the_scan_numpy(cell, layers, lengths):
    """numpy: the scan is the fused kernel where one exists, the reference loop elsewhere."""
    with seqnet.backend("numpy") as backend:
        _check_equal(backend, cell, layers, lengths)


@pytest.mark.parametrize("cell", list(CELLS))
def test_stepping_equals_the_scan_every_backend(xb64, cell):
    if xb64.name == "numpy":
        pytest.skip("the whole numpy matrix runs above")
    _check_equal(xb64, cell, 2, LENGTHS)


def _check_equal(backend, cell, layers, lengths):
    layer, host = _problem(backend, cell, layers)
    want = _scan(layer, backend, host, lengths)
    got = _stepped(layer, backend, host, lengths)
    for name, a, b in zip(("out", "h_n", "dx", "dhx"), got[:4], want[:4]):
        for part_a, part_b in zip(_split(a), _split(b)):
            assert_close(backend, part_a, part_b, rtol=1e-12, atol=1e-12, err_msg=name)
    assert set(got[4]) == set(want[4])
    for name in want[4]:
        np.testing.assert_allclose(got[4][name], want[4][name], rtol=1e-11, atol=1e-12, err_msg=name)
    assert any(np.any(g != 0) for g in got[4].values())
    if lengths is not None:                               # padded outputs are exactly zero
        assert np.any(to_numpy(got[0])[:2, 0, ...] != 0) and np.all(to_numpy(got[0])[2:, 0, ...] == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru_cho"])
def test_stepped_dropout_between_layers_finite_differences(cell):
    """The stepped run's own per-step dropout masks: backward is exact for the masks it drew."""
    with seqnet.backend("numpy") as backend:
        layer = CELLS[cell](input_size=I, hidden_size=H, num_layers=2, dropout=0.5, dtype="float64", seed=3)
        rng = np.random.default_rng(4)
        x, weights = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))

        def run_forward(x_host):
            layer.dropout_rng = np.random.default_rng(99)          # the same masks every time
            run = layer.steps(B, None, LENGTHS)
            outs = [run.step(backend.asarray(x_host[t], "float64")) for t in range(T)]
            return run, outs

        def loss(x_host):
            _, outs = run_forward(x_host)
            return float(sum(np.sum(to_numpy(o) * weights[t]) for t, o in enumerate(outs)))

        run, _ = run_forward(x)
        run.begin_backward()
        dxs = [to_numpy(run.backstep(backend.asarray(weights[t], "float64"))) for t in range(T - 1, -1, -1)]
        run.end_backward()
        analytic = np.stack(dxs[::-1])
        numeric = central_differences(loss, x.copy())
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
        assert np.any(analytic != 0)

        params = {k: to_numpy(v) for k, v in layer.state_dict().items()}
        grads = {k: to_numpy(v) for k, v in layer.grads.items()}

        def loss_of(name):
            def f(value):
                layer.load_state_dict(dict(params, **{name: value}))
                return loss(x)
            return f

        for name in ("weight_ih_l1", "weight_hh_l0"):
            numeric = central_differences(loss_of(name), params[name].copy())
            np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_stepping_misuse_is_refused():
    with seqnet.backend("numpy") as backend:
        layer = seqnet.LSTM(I, H, dtype="float64", seed=0)
        with pytest.raises(ConfigError, match="unidirectional"):
            seqnet.LSTM(I, H, bidirectional=True).steps(B)
        run = layer.steps(B)
        with pytest.raises(ShapeError, match=r"x: expected shape \(3, 3\)"):
            run.step(backend.asarray(np.zeros((B, I + 1)), "float64"))
        with pytest.raises(ConfigError, match="begin_backward"):
            run.backstep(backend.asarray(np.zeros((B, H)), "float64"))
        with pytest.raises(ConfigError, match="no step was run"):
            run.begin_backward()
        run = layer.steps(B)
        run.step(backend.asarray(np.zeros((B, I)), "float64"))
        run.begin_backward()
        with pytest.raises(ConfigError, match="walk back all 1 steps"):
            run.end_backward()
        with pytest.raises(ConfigError, match="backward has begun"):
            run.step(backend.asarray(np.zeros((B, I)), "float64"))
        run.backstep(backend.asarray(np.zeros((B, H)), "float64"))
        with pytest.raises(ConfigError, match="already walked"):
            run.backstep(backend.asarray(np.zeros((B, H)), "float64"))
        run.end_backward()
        with pytest.raises(RuntimeError, match="already called"):
            run.begin_backward()


def test_refused_backward_calls_leave_the_run_usable(xb):
    from seqnet.errors import TapeConsumedError

    layer = seqnet.LSTM(I, H, seed=0)
    run = layer.steps(B, training=True)
    with pytest.raises(ConfigError, match=r"^begin_backward: no step was run; call step\(x\) first$"):
        run.begin_backward()
    run.step(xb.asarray(np.ones((B, I)), "float32"))
    with pytest.raises(ShapeError, match=r"^d_h_n\[0\]: expected shape \(1, 3, 2\)"):
        run.begin_backward((xb.asarray(np.ones((1, 2, H)), "float32"), None))
    run.begin_backward()                                  # neither refusal consumed the run
    run.backstep(xb.asarray(np.ones((B, H)), "float32"))
    run.end_backward()
    for call in (run.end_backward, lambda: run.backstep(xb.asarray(np.ones((B, H)), "float32"))):
        with pytest.raises(TapeConsumedError, match=r"^RecurrentSteps end_backward: already called"):
            call()
    with pytest.raises(ConfigError, match="backward has begun"):
        run.step(xb.asarray(np.ones((B, I)), "float32"))


def test_steps_take_a_bool_training_flag():
    from seqnet.errors import ConfigError

    layer = seqnet.LSTM(3, 4, num_layers=2, dropout=0.5, seed=0)
    for value in ("no", None, 1):
        with pytest.raises(ConfigError, match=rf"^training: expected True or False, received {value!r}$"):
            layer.steps(2, training=value)
