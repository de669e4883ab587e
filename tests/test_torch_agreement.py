"""seqnet against torch.nn.RNN / LSTM / GRU: outputs, final states and every gradient.

The torch module is loaded from seqnet's state_dict (and, once, the other way round), run
with the same h0 (c0) and, with ``lengths``, through pack_padded_sequence(enforce_sorted=False)
/ pad_packed_sequence(total_length=T). The same random upstream gradients are pushed back
through both; dx, dh0 (dc0) and every parameter gradient must agree.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import seqnet  # noqa: E402
from conftest import assert_close  # noqa: E402
from oracles import recurrent_matrix  # noqa: E402
from seqnet import to_numpy  # noqa: E402

T, B, I, H = 5, 3, 4, 3
LENGTHS = [3, T, 1]

CELLS = {
    "rnn_tanh": (lambda **kw: seqnet.RNN(nonlinearity="tanh", **kw), lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw)),
    "rnn_relu": (lambda **kw: seqnet.RNN(nonlinearity="relu", **kw), lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw)),
    "lstm": (lambda **kw: seqnet.LSTM(**kw), lambda **kw: torch.nn.LSTM(**kw)),
    "gru": (lambda **kw: seqnet.GRU(**kw), lambda **kw: torch.nn.GRU(**kw)),
}

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
# dtype -> (largest absolute disagreement, where): quoted by test_zz_report_largest_disagreement.
WORST: dict[str, tuple[float, str]] = {}


def _record(dtype_name, label, actual, expected):
    diff = float(np.max(np.abs(to_numpy(actual) - np.asarray(expected)))) if np.size(expected) else 0.0
    if diff > WORST.get(dtype_name, (-1.0, ""))[0]:
        WORST[dtype_name] = (diff, label)


def _compare(backend, dtype_name, label, actual, expected):
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else expected
    _record(dtype_name, label, actual, expected)
    tol = TOLERANCE[dtype_name]
    assert_close(backend, actual, expected, rtol=tol, atol=tol, err_msg=label)


def _torch_run(module, x, states, lengths, batch_first):
    """torch forward, with packing when lengths are given; out padded back to T steps."""
    hx = tuple(states) if len(states) == 2 else states[0]
    if lengths is None:
        out, h = module(x, hx)
    else:
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out, h = module(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return out, (h if isinstance(h, tuple) else (h,))


def check_agreement(backend, cell, num_layers, bidirectional, lengths, batch_first=False, dtype_name="float64", seed=0):
    make_seqnet, make_torch = CELLS[cell]
    label = f"{backend.name}@{backend.device} {dtype_name} {cell} L{num_layers} bi={bidirectional} lengths={lengths is not None}"
    kw = dict(input_size=I, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    layer = make_seqnet(dtype=dtype_name, seed=seed, **kw)
    torch_dtype = getattr(torch, dtype_name)
    module = make_torch(dtype=torch_dtype, **kw)
    module.load_state_dict({k: torch.from_numpy(to_numpy(v)) for k, v in layer.state_dict().items()})

    rng = np.random.default_rng(seed + 7)
    n_dir = 2 if bidirectional else 1
    x_shape = (B, T, I) if batch_first else (T, B, I)
    out_shape = x_shape[:2] + (n_dir * H,)
    n_state = 2 if cell == "lstm" else 1
    host = {
        "x": rng.standard_normal(x_shape),
        "states": [0.5 * rng.standard_normal((n_dir * num_layers, B, H)) for _ in range(n_state)],
        "d_out": rng.standard_normal(out_shape),
        "d_states": [rng.standard_normal((n_dir * num_layers, B, H)) for _ in range(n_state)],
    }

    # seqnet
    dev = lambda a: backend.asarray(a, dtype_name)  # noqa: E731
    hx = tuple(dev(s) for s in host["states"]) if n_state == 2 else dev(host["states"][0])
    d_hn = tuple(dev(s) for s in host["d_states"]) if n_state == 2 else dev(host["d_states"][0])
    (out, h_n), backprop = layer.forward(dev(host["x"]), hx, lengths)
    dx, dhx = backprop(dev(host["d_out"]), d_hn)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    dhx = dhx if isinstance(dhx, tuple) else (dhx,)

    # torch
    tx = torch.tensor(host["x"], dtype=torch_dtype, requires_grad=True)
    tstates = [torch.tensor(s, dtype=torch_dtype, requires_grad=True) for s in host["states"]]
    t_out, t_h = _torch_run(module, tx, tstates, lengths, batch_first)
    loss = (t_out * torch.tensor(host["d_out"], dtype=torch_dtype)).sum()
    for s, d in zip(t_h, host["d_states"]):
        loss = loss + (s * torch.tensor(d, dtype=torch_dtype)).sum()
    loss.backward()

    _compare(backend, dtype_name, label + " out", out, t_out)
    for name, mine, theirs in zip(("h_n", "c_n"), h_n, t_h):
        _compare(backend, dtype_name, f"{label} {name}", mine, theirs)
    _compare(backend, dtype_name, label + " dx", dx, tx.grad)
    for name, mine, theirs in zip(("dh0", "dc0"), dhx, tstates):
        _compare(backend, dtype_name, f"{label} {name}", mine, theirs.grad)
    grads = layer.grads
    assert set(grads) == {k for k, _ in module.named_parameters()}
    for k, g in grads.items():
        _compare(backend, dtype_name, f"{label} grad {k}", g, module.get_parameter(k).grad)


MATRIX = recurrent_matrix(CELLS)


@pytest.mark.parametrize("cell, num_layers, bidirectional, lengths", MATRIX)
def test_float64_full_matrix_numpy(cell, num_layers, bidirectional, lengths):
    with seqnet.backend("numpy") as backend:
        check_agreement(backend, cell, num_layers, bidirectional, LENGTHS if lengths else None)


@pytest.mark.parametrize("cell", list(CELLS))
def test_float64_every_backend(xb64, cell):
    """Every cell on every float64 backend, in the hardest configuration: 2 layers, bidirectional, lengths."""
    check_agreement(xb64, cell, 2, True, LENGTHS, seed=1)


@pytest.mark.parametrize("cell", list(CELLS))
def test_float32_every_backend(xb, cell):
    """float32 (the default dtype), including array_api_strict's no_float64 device."""
    check_agreement(xb, cell, 2, True, LENGTHS, dtype_name="float32", seed=2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batch_first(xb64, cell):
    check_agreement(xb64, cell, 2, True, LENGTHS, batch_first=True, seed=3)


@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_state_dict_loads_into_seqnet(xb64, cell):
    """torch -> seqnet: a torch module's weights (torch's own init) give torch's outputs in seqnet."""
    make_seqnet, make_torch = CELLS[cell]
    torch.manual_seed(0)
    kw = dict(input_size=I, hidden_size=H, num_layers=2, bidirectional=True)
    module = make_torch(dtype=torch.float64, **kw)
    layer = make_seqnet(dtype="float64", seed=123, **kw)
    layer.load_state_dict(module.state_dict())
    for k, v in layer.state_dict().items():
        assert xb64.owns(v), k
        np.testing.assert_array_equal(to_numpy(v), module.get_parameter(k).detach().numpy(), err_msg=k)
    x = np.random.default_rng(4).standard_normal((T, B, I))
    out, _ = layer(xb64.asarray(x, "float64"), lengths=LENGTHS)
    t_out, _ = _torch_run(module, torch.from_numpy(x), [torch.zeros(4, B, H, dtype=torch.float64)] * (2 if cell == "lstm" else 1),
                          LENGTHS, False)
    _compare(xb64, "float64", f"{xb64.name} torch->seqnet {cell} out", out, t_out)


def test_forget_bias_matches_torch_gate_order():
    """forget_bias lands on torch's f-gate: with f = sigmoid(30 + ...) ~ 1, torch carries a large c0 over."""
    with seqnet.backend("numpy"):
        layer = seqnet.LSTM(I, H, dtype="float64", seed=5, forget_bias=30.0)
        module = torch.nn.LSTM(I, H, dtype=torch.float64)
        module.load_state_dict({k: torch.from_numpy(to_numpy(v)) for k, v in layer.state_dict().items()})
        c0 = 100.0 * np.random.default_rng(6).standard_normal((1, B, H))
        x = np.random.default_rng(7).standard_normal((1, B, I))
        _, (_, c_n) = module(torch.from_numpy(x), (torch.zeros(1, B, H, dtype=torch.float64), torch.from_numpy(c0)))
        # c' = f c0 + i g with |i g| < 1: only f ~ 1 keeps c' within 1 of a c0 of size ~100.
        assert np.max(np.abs(c_n.detach().numpy() - c0)) < 1.0
        _, (_, c_seq) = layer(x, (np.zeros((1, B, H)), c0))
        np.testing.assert_allclose(to_numpy(c_seq), c_n.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_zz_report_largest_disagreement(capsys):
    if not WORST:
        pytest.skip("no agreement check ran in this session")
    with capsys.disabled():
        for dtype_name in sorted(WORST):
            diff, label = WORST[dtype_name]
            print(f"\nlargest PyTorch disagreement ({dtype_name}, max abs): {diff:.3e} ({label})")
    for dtype_name, (diff, _) in WORST.items():
        assert diff <= TOLERANCE[dtype_name] * 10
