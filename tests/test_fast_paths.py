"""Backend fast paths agree with the portable reference they override; op counts stay in budget."""
import copy

import numpy as np
import pytest

import seqnet
from seqnet import kernels
from seqnet.backend import to_numpy
from seqnet.cells import GRUCell, LSTMCell, RNNCell
from seqnet.kernels import numpy as numpy_kernels
from seqnet.kernels.counting import ops_per_step

CASES = [
    (seqnet.LSTM, {}),
    (seqnet.LSTM, {"layer_norm": True}),
    (seqnet.GRU, {}),
    (seqnet.GRU, {"reset_after": False}),
    (seqnet.RNN, {"nonlinearity": "tanh"}),
    (seqnet.RNN, {"nonlinearity": "relu"}),
]


def without_overrides(layer):
    """``layer`` on a copy of its backend with every override removed: the portable reference."""
    layer.backend = copy.copy(layer.backend)
    layer.backend.fast_paths = False
    return layer


def run(layer, x, hx, d_out, d_hn, lengths=None):
    (out, h_n), backprop = layer.forward(x, hx, lengths)
    dx, dhx = backprop(d_out, d_hn)
    flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    return [out, *flat(h_n), dx, *flat(dhx)], layer.grads


@pytest.mark.parametrize("cls,kwargs", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_override_matches_reference(xb, cls, kwargs, dtype, tol, lengths):
    if dtype == "float64" and xb.device is not None and "no_float64" in str(xb.device):
        pytest.skip("float64 on the no_float64 device")
    scaled = kwargs.get("layer_norm", False)
    if scaled:
        # LN over 3 units is ill-conditioned: rounding errors scale with each array's largest entry,
        # and the float32 reference is itself ~1e-4 of it from float64 (tests/test_cuda_kernels.py
        # holds CuPy's fused LN kernels to the reference's own accuracy).
        tol = {"float64": 1e-11, "float32": 1e-3}[dtype]

    def close(a, b, name=""):
        a, b = to_numpy(a), to_numpy(b)
        atol = tol * max(1.0, float(np.max(np.abs(b)))) if scaled else tol
        np.testing.assert_allclose(a, b, rtol=0 if scaled else tol, atol=atol, err_msg=name)
    layer = cls(4, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=7, **kwargs)
    reference = without_overrides(cls(4, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=7, **kwargs))
    rng = np.random.default_rng(1)
    shape_h = (4, 3, 3)
    x = xb.asarray(rng.standard_normal((5, 3, 4)), dtype)
    hx = xb.asarray(rng.standard_normal(shape_h), dtype)
    d_out = xb.asarray(rng.standard_normal((5, 3, 6)), dtype)
    d_hn = xb.asarray(rng.standard_normal(shape_h), dtype)
    if cls is seqnet.LSTM:
        hx, d_hn = (hx, hx * 0.5), (d_hn, d_hn * 2.0)
    weights_before = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    got, got_grads = run(layer, x, hx, d_out, d_hn, lengths)
    want, want_grads = run(reference, x, hx, d_out, d_hn, lengths)
    if kwargs.get("layer_norm") and dtype == "float32":
        tol = 2e-3       # a layer norm over 3 or 12 units divides float32 rounding by a small deviation
    for name, value in layer.state_dict().items():     # kernels scale copies, never the weights
        np.testing.assert_array_equal(to_numpy(value), weights_before[name], err_msg=name)
    for a, b in zip(got, want):
        assert xb.owns(a)
        close(a, b)
    for name in want_grads:
        close(got_grads[name], want_grads[name], name)


@pytest.mark.parametrize("cls,kwargs", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_override_matches_reference_at_batch_1_with_zero_states(xb64, cls, kwargs):
    """One row (a transpose is then contiguous: buffers must still be copies) and hx, d_h_n
    None (the layer hands one zeros array to every state): the kernels must not write into them."""
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=3, **kwargs)
    reference = without_overrides(cls(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=3, **kwargs))
    rng = np.random.default_rng(2)
    x = xb64.asarray(rng.standard_normal((6, 1, 3)), "float64")
    d_out = xb64.asarray(rng.standard_normal((6, 1, 8)), "float64")
    d_hn_host = rng.standard_normal((4, 1, 4))
    d_hn = xb64.asarray(d_hn_host, "float64")
    if cls is seqnet.LSTM:
        d_hn = (d_hn, d_hn)
    for upstream in (None, d_hn):
        got, got_grads = run(layer, x, None, d_out, upstream)
        want, want_grads = run(reference, x, None, d_out, upstream)
        for a, b in zip(got, want):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-11, atol=1e-12)
        for name in want_grads:
            np.testing.assert_allclose(to_numpy(got_grads[name]), to_numpy(want_grads[name]), rtol=1e-11,
                                       atol=1e-12, err_msg=name)
        layer.zero_grad()
        reference.zero_grad()
    np.testing.assert_array_equal(to_numpy(d_hn[0] if isinstance(d_hn, tuple) else d_hn), d_hn_host)


def test_numpy_registers_its_overrides_and_others_use_the_reference(xb):
    if xb.name == "cupy":
        pytest.skip("CuPy runs fused kernels for every cell and with masks: tests/test_cuda_kernels.py")
    scan = kernels.scan_kernels(xb, LSTMCell(), masked=False)
    if xb.name == "numpy":
        assert scan is numpy_kernels.SCAN_KERNELS["lstm"]
    else:
        assert scan is kernels.REFERENCE_SCAN
    assert kernels.scan_kernels(xb, LSTMCell(), masked=True) is kernels.REFERENCE_SCAN       # no masks in the fused loop
    assert kernels.scan_kernels(xb, GRUCell(reset_after=False), masked=False) is kernels.REFERENCE_SCAN


@pytest.mark.parametrize("cell", [LSTMCell(), GRUCell(), RNNCell("tanh"), RNNCell("relu")], ids=lambda c: c.name)
def test_numpy_override_is_really_taken(monkeypatch, cell):
    """The agreement test above would pass vacuously if the override always fell back."""
    calls = []
    real = numpy_kernels.time_loop._order

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(numpy_kernels.time_loop, "_order", spy)
    with seqnet.backend("numpy"):
        cls = {"lstm": seqnet.LSTM, "gru": seqnet.GRU, "rnn": seqnet.RNN}[cell.name]
        kwargs = {"nonlinearity": cell.nonlinearity} if cell.name == "rnn" else {}
        layer = cls(2, 3, seed=0, **kwargs)
        (out, _), backprop = layer.forward(np.ones((4, 1, 2), np.float32))
        backprop(out, None)
    assert len(calls) == 2           # one forward scan, one backward scan


def test_backprop_may_run_once(xb):
    layer = seqnet.LSTM(2, 3, seed=0)
    (out, _), backprop = layer.forward(xb.asarray(np.ones((3, 1, 2)), "float32"))
    backprop(out, None)
    with pytest.raises(RuntimeError, match="already called"):
        backprop(out, None)


# Per-step array operations of the portable time loop: on a GPU each is a kernel launch.
@pytest.mark.parametrize("cell,forward_budget,backward_budget", [
    (LSTMCell(), 15, 25),
    (GRUCell(reset_after=True), 15, 25),
    (GRUCell(reset_after=False), 15, 25),
    (RNNCell("tanh"), 4, 6),
    (RNNCell("relu"), 4, 6),
], ids=["lstm", "gru", "gru_cho", "rnn_tanh", "rnn_relu"])
def test_ops_per_step_within_budget(cell, forward_budget, backward_budget):
    forward, backward = ops_per_step(cell)
    assert forward == int(forward) and backward == int(backward)     # deterministic, whole numbers
    assert forward <= forward_budget, forward
    assert backward <= backward_budget, backward


def test_op_counter_counts_what_it_should():
    """Closed form: RNN tanh forward = matmul + add + tanh = 3 per step."""
    assert ops_per_step(RNNCell("tanh"))[0] == 3
    masked_forward, _ = ops_per_step(RNNCell("tanh"), masked=True)
    assert masked_forward == 4          # + one where() that keeps padded rows' state


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_token_stepper_equals_full_forward(xb, cell):
    """generate()'s one-token steps (fused embedding x W_ih table, per-layer stepper) equal
    re-running the whole sequence through forward() and taking the last logits."""
    import string

    from seqnet.data import CharTokenizer
    from seqnet.models import LanguageModel

    tokenizer = CharTokenizer.fit(string.ascii_lowercase)
    model = LanguageModel(tokenizer.vocab_size, 6, 5, 2, cell, seed=2, tokenizer=tokenizer)
    texts = model.generate("abc", 8, greedy=True, num_samples=2)
    rows = [list(tokenizer.encode("abc")) for _ in range(2)]
    for _ in range(8):
        ids = xb.asarray(np.array(rows).T, "int64")
        logits, _ = model(ids)
        for row, token in zip(rows, np.argmax(to_numpy(logits)[-1], axis=-1)):
            row.append(int(token))
    assert texts == [tokenizer.decode(np.array(row)) for row in rows]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_override_matches_reference(xb64, weight_decay):
    from seqnet.kernels import optimizers

    update = kernels.kernel(xb64, "adam_update")
    rng = np.random.default_rng(0)
    p, m, v = (xb64.asarray(rng.standard_normal((3, 4)), "float64") for _ in range(3))
    v = v * v
    kwargs = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay, xp=xb64.xp)
    for step in (1, 2, 3):
        g = xb64.asarray(rng.standard_normal((3, 4)), "float64")
        want = optimizers.adam_update(p, g, m, v, step=step, **kwargs)
        p_before = to_numpy(p)
        got = update(p, g, xb64.xp.asarray(m, copy=True), xb64.xp.asarray(v, copy=True), step=step, **kwargs)
        np.testing.assert_array_equal(to_numpy(p), p_before)        # the old parameter is untouched
        for a, b in zip(got, want):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-14, atol=1e-15)
        p, m, v = want


@pytest.mark.parametrize("grouping", [True, False])
def test_embedding_backward_override_matches_reference(xb64, grouping, monkeypatch):
    """Per-id row sums, both ways the numpy override computes them: repeated ids, ids never
    seen, ids in any order, a single row."""
    from seqnet.kernels.embedding import embedding_backward

    monkeypatch.setattr(numpy_kernels.embedding, "_grouping_is_cheaper", lambda *shape: grouping)
    kernel = kernels.kernel(xb64, "embedding_backward")
    rng = np.random.default_rng(3)
    for ids in ([4, 0, 4, 4, 9, 0, 2, 4, 9], [7], list(range(10))[::-1]):
        host = np.asarray(ids, dtype=np.int64)
        d_out = rng.standard_normal((host.shape[0], 5))
        ids_dev, d_dev = xb64.asarray(host, "int64"), xb64.asarray(d_out, "float64")
        got, want = kernel(ids_dev, d_dev, 10, xp=xb64.xp), embedding_backward(ids_dev, d_dev, 10, xp=xb64.xp)
        assert xb64.owns(got)
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-13, atol=1e-14)
