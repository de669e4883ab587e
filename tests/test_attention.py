"""Attention against independent oracles.

Every score type (bahdanau, dot, general), with padded sources: gradients of the query, the
encoder outputs and every parameter against float64 central differences of
L = sum(out * R) + sum(weights * Q) (so both outputs' gradients are exercised), for one
step and for several steps at once; the weights sum to 1 over each source's valid positions
and are exactly 0 on its padding; and the whole computation against PyTorch autograd
written from the equations (masked_fill with -inf, F.softmax, torch.tanh), outputs and
gradients.
"""
from __future__ import annotations

import numpy as np
import pytest

import seqnet
from conftest import assert_close
from oracles import central_differences
from seqnet import to_numpy
from seqnet.errors import ConfigError, ShapeError
from seqnet.layers.attention import Attention

S, B, HQ, HK, A, T = 5, 3, 3, 4, 2, 2
LENGTHS = np.array([3, 5, 1])
KINDS = ["bahdanau", "dot", "general"]


def _sizes(kind):
    return (HK, HK) if kind == "dot" else (HQ, HK)


def _inputs(kind, steps, seed=0):
    hq, hk = _sizes(kind)
    rng = np.random.default_rng(seed)
    q_shape = (B, hq) if steps is None else (steps, B, hq)
    values = rng.standard_normal((S, B, hk))
    query = rng.standard_normal(q_shape)
    out_shape = q_shape[:-1] + (hq,)
    weights_shape = q_shape[:-1] + (S,)
    return values, query, rng.standard_normal(out_shape), rng.standard_normal(weights_shape)


def _run(layer, backend, values, query, lengths):
    memory, memory_back = layer.memory(backend.asarray(values, "float64"), lengths)
    (out, weights), back = layer.forward(backend.asarray(query, "float64"), memory)
    return out, weights, back, memory_back


@pytest.mark.parametrize("steps", [None, T], ids=["one-step", "all-steps"])
@pytest.mark.parametrize("kind", KINDS)
def test_attention_gradients_finite_differences(xb64, kind, steps):
    hq, hk = _sizes(kind)
    layer = Attention(kind, hq, hk, hidden_size=A, dtype="float64", seed=1)
    values, query, R, Q = _inputs(kind, steps)

    def loss(values=values, query=query):
        out, weights, _, _ = _run(layer, xb64, values, query, LENGTHS)
        return float(np.sum(to_numpy(out) * R) + np.sum(to_numpy(weights) * Q))

    layer.zero_grad()
    out, weights, back, memory_back = _run(layer, xb64, values, query, LENGTHS)
    d_query, d_memory = back(xb64.asarray(R, "float64"), xb64.asarray(Q, "float64"))
    d_values = memory_back(d_memory)
    assert xb64.owns(d_query) and xb64.owns(d_values)
    grads = {k: to_numpy(v) for k, v in layer.grads.items()}
    params = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    expected_params = {"bahdanau": {"linear_out.weight", "linear_query.weight", "linear_query.bias",
                                    "linear_memory.weight", "v.weight"},
                       "dot": {"linear_out.weight"}, "general": {"linear_out.weight", "linear_in.weight"}}[kind]
    assert set(params) == expected_params

    small = xb64.name != "numpy"
    rng = np.random.default_rng(2)

    def entries(shape, count=6):
        flat = rng.choice(int(np.prod(shape)), size=min(count, int(np.prod(shape))), replace=False)
        return [np.unravel_index(i, shape) for i in flat]

    checks = {"query": (to_numpy(d_query), central_differences(lambda a: loss(query=a), query.copy(),
                                                               entries(query.shape) if small else None))}
    checks["values"] = (to_numpy(d_values), central_differences(lambda a: loss(values=a), values.copy(),
                                                                entries(values.shape) if small else None))
    for name, value in params.items():
        def f(a, name=name):
            layer.load_state_dict(dict(params, **{name: a}))
            return loss()
        checks[name] = (grads[name], central_differences(f, value.copy(), entries(value.shape, 4) if small else None))
    layer.load_state_dict(params)
    for name, (analytic, numeric) in checks.items():
        mask = numeric != 0 if small else np.ones(numeric.shape, bool)
        np.testing.assert_allclose(analytic[mask], numeric[mask], rtol=1e-6, atol=1e-8, err_msg=name)
    # padded source positions get no gradient; valid ones do
    d_values_host = to_numpy(d_values)
    assert np.all(d_values_host[3:, 0] == 0) and np.all(d_values_host[1:, 2] == 0)
    assert np.all(np.any(d_values_host[:3, 0] != 0, axis=-1))


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_are_exactly_zero_on_padding(xb, kind):
    hq, hk = _sizes(kind)
    layer = Attention(kind, hq, hk, seed=3)
    values, query, _, _ = _inputs(kind, T, seed=4)
    memory, _ = layer.memory(xb.asarray(100 * values, "float32"), LENGTHS)     # large scores: no overflow either
    out, weights = layer(xb.asarray(query, "float32"), memory)
    assert xb.owns(out) and xb.owns(weights)
    w = to_numpy(weights)                                                       # (T, B, S)
    assert w.shape == (T, B, S) and w.dtype == np.float32
    valid = np.arange(S)[None, :] < LENGTHS[:, None]                           # (B, S)
    assert np.all(w[:, ~valid] == 0.0)
    assert np.all(np.isfinite(to_numpy(out)))
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(w[:, 2, 0], 1.0)                               # a source of length 1


def test_attention_misuse():
    with pytest.raises(ConfigError, match=r"attention: expected one of none, bahdanau, dot, general, received 'luong'"):
        Attention("luong", 3, 3)
    with pytest.raises(ConfigError, match="'dot' scores need query_size == memory_size, received 3 and 4"):
        Attention("dot", 3, 4)
    layer = Attention("general", 3, 4, dtype="float64")
    with seqnet.backend("numpy") as backend:
        memory, _ = layer.memory(backend.asarray(np.zeros((S, B, 4)), "float64"))
        with pytest.raises(ShapeError, match=r"query: expected \(B, 3\) or \(T, B, 3\) with B = 3"):
            layer(backend.asarray(np.zeros((2, 3)), "float64"), memory)
        with pytest.raises(ConfigError, match=r"lengths: every length must lie in 1..5"):
            layer.memory(backend.asarray(np.zeros((S, B, 4)), "float64"), np.array([0, 5, 5]))
        for empty in ((0, B, 4), (S, 0, 4)):
            with pytest.raises(ShapeError, match=r"^values: expected at least one timestep and one batch row "
                                                 r"\(S, B, 4\), received shape"):
                layer.memory(backend.asarray(np.zeros(empty), "float64"))
        for other in (Attention("general", 5, 4, dtype="float64"), Attention("bahdanau", 3, 4, hidden_size=7,
                                                                              dtype="float64")):
            with pytest.raises(ShapeError, match=r"^memory: expected the memory of a '(general|bahdanau)' attention"):
                other(backend.asarray(np.zeros((B, other.query_size)), "float64"), memory)
    for size in ("hidden_size", "out_size"):
        with pytest.raises(ConfigError, match=rf"^{size}: expected a positive integer, received 0"):
            Attention("bahdanau", 3, 4, **{size: 0})


@pytest.mark.parametrize("kind", KINDS)
def test_backprop_misuse_is_refused_before_the_tape_is_consumed(xb, kind):
    from seqnet.errors import DTypeError
    from seqnet.layers import MemoryGrad

    hq, hk = _sizes(kind)
    layer = Attention(kind, hq, hk, hidden_size=A, seed=1)
    values, query, R, Q = _inputs(kind, None)
    memory, memory_back = layer.memory(xb.asarray(values, "float32"), xb.asarray(LENGTHS, "int64"))   # device lengths
    with pytest.raises(ConfigError, match=r"^memory: expected a seqnet.layers.Memory \(from Attention.memory"):
        layer(xb.asarray(query, "float32"), memory.values)
    (out, weights), back = layer.forward(xb.asarray(query, "float32"), memory)
    with pytest.raises(ShapeError, match=r"^d_weights: expected the shape of the weights \(3, 5\), received \(3, 2\)$"):
        back(xb.asarray(R, "float32"), xb.asarray(Q[:, :2], "float32"))
    if xb.supports_float64:
        with pytest.raises(DTypeError, match=r"^d_weights: expected dtype float32, received a float64 array$"):
            back(xb.asarray(R, "float32"), xb.asarray(Q, "float64"))
    d_query, d_memory = back(xb.asarray(R, "float32"), xb.asarray(Q, "float32"))
    assert xb.owns(d_query) and isinstance(d_memory, MemoryGrad)
    with pytest.raises(ConfigError, match=r"^d_memory: expected a seqnet.layers.MemoryGrad .*received a "):
        memory_back(d_memory.values)
    with pytest.raises(ShapeError, match=r"^d_memory.values: expected the shape of the memory's values \(3, 5, 4\)"):
        memory_back(MemoryGrad(d_memory.values[:, :2, :], d_memory.keys))
    d_values = memory_back(d_memory)
    assert tuple(d_values.shape) == values.shape


# --------------------------------------------------------------------------- PyTorch


def _torch_attention(torch, kind, params, values, query, lengths):
    """The module docstring's equations in torch, (S, B, Hk) values and (T, B, Hq) queries."""
    F = torch.nn.functional
    k = values.transpose(0, 1)                                                   # (B, S, Hk)
    q = query.transpose(0, 1)                                                    # (B, T, Hq)
    if kind == "dot":
        scores = q @ k.transpose(1, 2)
    elif kind == "general":
        scores = q @ (k @ params["linear_in.weight"].T).transpose(1, 2)
    else:
        wq = F.linear(q, params["linear_query.weight"], params["linear_query.bias"])
        uk = k @ params["linear_memory.weight"].T
        scores = (torch.tanh(wq[:, :, None, :] + uk[:, None, :, :]) @ params["v.weight"].T)[..., 0]
    pad = torch.arange(k.shape[1])[None, :] >= torch.as_tensor(lengths)[:, None]
    weights = F.softmax(scores.masked_fill(pad[:, None, :], float("-inf")), dim=-1)
    context = weights @ k
    out = torch.tanh(torch.cat([context, q], dim=-1) @ params["linear_out.weight"].T)
    return out.transpose(0, 1), weights.transpose(0, 1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", KINDS)
def test_attention_agrees_with_torch(xb, kind, dtype):
    torch = pytest.importorskip("torch")
    if dtype == "float64" and xb.name == "array_api_strict" and "no_float64" in str(xb.device):
        pytest.skip("no float64 on this device")
    hq, hk = _sizes(kind)
    layer = Attention(kind, hq, hk, hidden_size=A, dtype=dtype, seed=5)
    values, query, R, Q = _inputs(kind, T, seed=6)
    host = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    t_params = {k: torch.tensor(v, requires_grad=True) for k, v in host.items()}
    t_values = torch.tensor(values.astype(dtype), requires_grad=True)
    t_query = torch.tensor(query.astype(dtype), requires_grad=True)
    t_out, t_weights = _torch_attention(torch, kind, t_params, t_values, t_query, LENGTHS)
    ((t_out * torch.tensor(R.astype(dtype))).sum() + (t_weights * torch.tensor(Q.astype(dtype))).sum()).backward()

    memory, memory_back = layer.memory(xb.asarray(values, dtype), LENGTHS)
    (out, weights), back = layer.forward(xb.asarray(query, dtype), memory)
    d_query, d_memory = back(xb.asarray(R, dtype), xb.asarray(Q, dtype))
    d_values = memory_back(d_memory)
    tol = 1e-12 if dtype == "float64" else 2e-5
    for name, ours, theirs in [("out", out, t_out), ("weights", weights, t_weights), ("d_query", d_query, t_query.grad),
                               ("d_values", d_values, t_values.grad)]:
        assert_close(xb, ours, theirs.detach().numpy(), rtol=tol, atol=tol, err_msg=name)
    for name, grad in layer.grads.items():
        assert_close(xb, grad, t_params[name].grad.numpy(), rtol=tol, atol=tol, err_msg=name)
