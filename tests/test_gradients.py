"""Hand-written BPTT against float64 central finite differences.

Oracle: L(theta) = sum(out * R) + sum(h_n * S) (+ sum(c_n * U) for LSTM), with fixed random
R, S, U, so both upstream gradients (d_out and d_h_n / d_c_n) are exercised. For every
parameter (public PyTorch layout, through load_state_dict), the input x and the initial
state(s), a seeded random subset of entries is perturbed by +-EPS and the loss is evaluated
on the host; the analytic gradient comes from ``layer.forward`` + ``backprop``.

The full matrix (cell x layers x direction x lengths) runs on numpy; every other backend
checks every cell once with bidirectional layers and variable lengths. GRU(reset_after=False)
(Cho et al.; no torch module) is also checked against a numpy transcription of its equations.
"""
from __future__ import annotations

import numpy as np
import pytest

import seqnet
from seqnet import to_numpy
from oracles import central_differences, recurrent_matrix

EPS = 1e-6
TOL = 1e-6
T, B, I, H = 4, 3, 3, 2
LENGTHS = [2, T, T - 1]  # [T, 2, T-1] shuffled: enforce_sorted=False semantics

CELLS = {
    "rnn_tanh": lambda **kw: seqnet.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: seqnet.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: seqnet.LSTM(**kw),
    "gru": lambda **kw: seqnet.GRU(reset_after=True, **kw),
    "gru_cho": lambda **kw: seqnet.GRU(reset_after=False, **kw),
    "lstm_ln": lambda **kw: seqnet.LSTM(layer_norm=True, **kw),
}

# (relative error, what was checked): quoted by test_zz_report_largest_error.
ERRORS: list[tuple[float, str]] = []


def _rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / (||a|| + ||n||) over the checked entries (0 when both are exactly 0)."""
    diff = np.linalg.norm(analytic - numeric)
    return float(diff / max(1e-8, np.linalg.norm(analytic) + np.linalg.norm(numeric)))


def _split(state):
    return state if isinstance(state, tuple) else (state,)


class Problem:
    """One layer plus fixed inputs, upstream weights and a host loss."""

    def __init__(self, backend, cell, num_layers, bidirectional, lengths, batch_first=False, dropout=0.0, seed=0):
        self.backend = backend
        self.layer = CELLS[cell](input_size=I, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional,
                                 batch_first=batch_first, dropout=dropout, dtype="float64", seed=seed)
        self.is_lstm = cell.startswith("lstm")
        if cell == "lstm_ln":     # gains 1 and LN biases 0 would hide a gain or bias used in the wrong place
            gen = np.random.default_rng(seed + 50)
            self.layer.load_state_dict({k: (1.0 if k.startswith("ln_weight") else 0.0) + 0.3 * gen.standard_normal(v.shape)
                                        if k.startswith("ln_") else to_numpy(v) for k, v in self.layer.state_dict().items()})
        self.lengths = LENGTHS if lengths else None
        self.dropout_seed = 1234 if dropout else None
        rng = np.random.default_rng(seed + 100)
        n_state = (2 if bidirectional else 1) * num_layers
        x_shape = (B, T, I) if batch_first else (T, B, I)
        out_shape = (B, T, H * (2 if bidirectional else 1)) if batch_first else (T, B, H * (2 if bidirectional else 1))
        self.x = rng.standard_normal(x_shape)
        self.states = [0.5 * rng.standard_normal((n_state, B, H)) for _ in range(2 if self.is_lstm else 1)]
        self.R = rng.standard_normal(out_shape)
        self.S = [rng.standard_normal((n_state, B, H)) for _ in self.states]
        self.rng = rng

    def _dev(self, host):
        return self.backend.asarray(host, "float64")

    def _hx(self, states):
        dev = [self._dev(s) for s in states]
        return tuple(dev) if self.is_lstm else dev[0]

    def _forward(self, x, states):
        if self.dropout_seed is not None:
            # Same dropout masks in every evaluation: the masks come from the layer's host RNG.
            self.layer.dropout_rng = np.random.default_rng(self.dropout_seed)
        return self.layer.forward(self._dev(x), self._hx(states), self.lengths)

    def loss(self, x=None, states=None):
        (out, state), _ = self._forward(self.x if x is None else x, self.states if states is None else states)
        total = float(np.sum(to_numpy(out) * self.R))
        for s, w in zip(_split(state), self.S):
            total += float(np.sum(to_numpy(s) * w))
        return total

    def analytic(self):
        self.layer.zero_grad()
        (out, state), backprop = self._forward(self.x, self.states)
        d_state = self._hx(self.S)
        dx, dhx = backprop(self._dev(self.R), d_state)
        assert self.backend.owns(dx)
        grads = {k: to_numpy(v) for k, v in self.layer.grads.items()}
        return to_numpy(dx), [to_numpy(d) for d in _split(dhx)], grads

    def _sample(self, size, count):
        return self.rng.choice(size, size=min(count, size), replace=False)

    def numeric_entries(self, host, idx, evaluate):
        """Central differences of ``evaluate()`` w.r.t. host.flat[idx] (host is modified and restored)."""
        numeric = np.empty(len(idx))
        flat = host.reshape(-1)
        for j, i in enumerate(idx):
            orig = flat[i]
            flat[i] = orig + EPS
            plus = evaluate()
            flat[i] = orig - EPS
            minus = evaluate()
            flat[i] = orig
            numeric[j] = (plus - minus) / (2 * EPS)
        return numeric


def check_gradients(problem: Problem, label: str, entries: int) -> float:
    """Compare every analytic gradient with finite differences on ``entries`` random entries each."""
    dx, dstates, grads = problem.analytic()
    results = {}

    idx = problem._sample(problem.x.size, entries)
    results["x"] = (dx.reshape(-1)[idx], problem.numeric_entries(problem.x, idx, problem.loss))
    for name, state, dstate in zip(("h0", "c0"), problem.states, dstates):
        idx = problem._sample(state.size, entries)
        results[name] = (dstate.reshape(-1)[idx], problem.numeric_entries(state, idx, problem.loss))

    layer = problem.layer
    host_params = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    assert set(grads) == set(host_params)

    def loss_with_params():
        layer.load_state_dict(host_params)
        return problem.loss()

    for name, value in host_params.items():
        assert grads[name].shape == value.shape, name
        idx = problem._sample(value.size, entries)
        results[name] = (grads[name].reshape(-1)[idx], problem.numeric_entries(value, idx, loss_with_params))
    layer.load_state_dict(host_params)

    errors = {name: _rel_error(a, n) for name, (a, n) in results.items()}
    worst = max(errors, key=errors.get)
    ERRORS.append((errors[worst], f"{label} [{worst}]"))
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, f"{label}: relative error above {TOL}: {bad}"
    # A vacuous check (every sampled gradient zero) would prove nothing.
    assert any(np.any(a != 0) for a, _ in results.values())
    return errors[worst]


FULL_MATRIX = recurrent_matrix(CELLS)


@pytest.mark.parametrize("cell, num_layers, bidirectional, lengths", FULL_MATRIX)
def test_gradients_full_matrix_numpy(cell, num_layers, bidirectional, lengths):
    with seqnet.backend("numpy") as backend:
        problem = Problem(backend, cell, num_layers, bidirectional, lengths)
        check_gradients(problem, f"numpy {cell} L{num_layers} bi={bidirectional} lengths={lengths}", entries=12)


@pytest.mark.parametrize("cell", list(CELLS))
def test_gradients_every_backend(xb64, cell):
    """Every cell on every float64 backend: bidirectional, variable lengths (2 layers but on strict)."""
    if xb64.name == "array_api_strict":
        # ~20x slower than numpy: one layer and 3 entries per array keep it to ~1 s a cell
        # (2-layer stacks on strict are checked against PyTorch in test_torch_agreement).
        num_layers, entries = 1, 3
    else:
        num_layers, entries = 2, (5 if xb64.name == "torch" else 12)  # eager torch: ~7x numpy per op
    problem = Problem(xb64, cell, num_layers, True, True, seed=1)
    check_gradients(problem, f"{xb64.name}@{xb64.device} {cell} L{num_layers} bi lengths", entries=entries)


def test_gradients_batch_first(xb64):
    entries = {"array_api_strict": 2, "torch": 4}.get(xb64.name, 12)
    problem = Problem(xb64, "lstm", 1, True, True, batch_first=True, seed=2)
    check_gradients(problem, f"{xb64.name}@{xb64.device} lstm batch_first", entries=entries)


def test_gradients_relu_has_both_signs():
    """The relu check is meaningful only if some units are active and some are not."""
    with seqnet.backend("numpy"):
        problem = Problem(seqnet.get_backend(), "rnn_relu", 2, True, True)
        (out, h_n), _ = problem._forward(problem.x, problem.states)
        values = to_numpy(out)
        assert np.any(values > 0) and np.any(values == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_with_dropout_between_layers(cell):
    """dropout=0.5 in forward(): backward is exact for the mask that forward drew."""
    with seqnet.backend("numpy") as backend:
        problem = Problem(backend, cell, 2, True, True, dropout=0.5, seed=3)
        check_gradients(problem, f"numpy {cell} L2 dropout=0.5", entries=12)


def test_gradients_without_bias_and_partial_upstream():
    """bias=False, and backprop with d_h_n=None / LSTM (dh, None) upstream tuples."""
    with seqnet.backend("numpy") as backend:
        lstm = seqnet.LSTM(I, H, num_layers=2, bias=False, dtype="float64", seed=4)
        assert set(lstm.state_dict()) == {"weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"}
        rng = np.random.default_rng(5)
        x = rng.standard_normal((T, B, I))
        S = rng.standard_normal((2, B, H))

        def loss(x_host):
            _, (h_n, _) = lstm(backend.asarray(x_host, "float64"), lengths=LENGTHS)
            return float(np.sum(to_numpy(h_n) * S))

        (_, _), backprop = lstm.forward(backend.asarray(x, "float64"), lengths=LENGTHS)
        dx, (dh0, dc0) = backprop(None, (backend.asarray(S, "float64"), None))
        numeric = central_differences(loss, x, eps=EPS)
        err = _rel_error(to_numpy(dx).reshape(-1), numeric.reshape(-1))
        ERRORS.append((err, "numpy lstm bias=False d_out=None dc_n=None [x]"))
        assert err < TOL
        assert dh0.shape == (2, B, H) and dc0.shape == (2, B, H)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _gru_reference(params, x, h0, reset_after, sfx):
    """GRU over time written from the equations, PyTorch weight layout (gates r, z, n)."""
    w_ir, w_iz, w_in = np.split(params["weight_ih" + sfx], 3)
    w_hr, w_hz, w_hn = np.split(params["weight_hh" + sfx], 3)
    b_ir, b_iz, b_in = np.split(params["bias_ih" + sfx], 3)
    b_hr, b_hz, b_hn = np.split(params["bias_hh" + sfx], 3)
    h, hs = h0, []
    for x_t in x:
        r = _sigmoid(x_t @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
        z = _sigmoid(x_t @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
        if reset_after:   # PyTorch / cuDNN
            n = np.tanh(x_t @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
        else:             # Cho et al. 2014
            n = np.tanh(x_t @ w_in.T + b_in + (r * h) @ w_hn.T + b_hn)
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs), h


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_forward_matches_the_equations(xb64, reset_after):
    """One step and a short bidirectional sequence against a numpy transcription of the equations."""
    gru = seqnet.GRU(I, H, bidirectional=True, reset_after=reset_after, dtype="float64", seed=6)
    params = {k: to_numpy(v) for k, v in gru.state_dict().items()}
    rng = np.random.default_rng(7)
    for steps in (1, T):
        x = rng.standard_normal((steps, B, I))
        h0 = rng.standard_normal((2, B, H))
        out, h_n = gru(xb64.asarray(x, "float64"), xb64.asarray(h0, "float64"))
        fwd, h_fwd = _gru_reference(params, x, h0[0], reset_after, "_l0")
        bwd, h_bwd = _gru_reference(params, x[::-1], h0[1], reset_after, "_l0_reverse")
        expected_out = np.concatenate([fwd, bwd[::-1]], axis=-1)
        assert xb64.owns(out) and xb64.owns(h_n)
        np.testing.assert_allclose(to_numpy(out), expected_out, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(to_numpy(h_n), np.stack([h_fwd, h_bwd]), rtol=1e-12, atol=1e-12)
    if not reset_after:
        # The two forms really differ (else this test could not tell them apart).
        other, _ = _gru_reference(params, x, h0[0], True, "_l0")
        assert np.max(np.abs(other - fwd)) > 1e-3


def test_zz_report_largest_error(capsys):
    """Quote the largest relative error of every gradient check above (shown without -s)."""
    if not ERRORS:
        pytest.skip("no gradient check ran in this session")
    worst, label = max(ERRORS)
    with capsys.disabled():
        print(f"\nlargest gradient-check relative error: {worst:.3e} ({label}; {len(ERRORS)} checks)")
    assert worst < TOL
