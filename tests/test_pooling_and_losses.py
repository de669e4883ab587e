"""Sequence pooling and the classification losses against PyTorch and finite differences.

Pooling: a bidirectional seqnet LSTM and torch.nn.LSTM with the same weights run a padded
batch (torch through pack_padded_sequence(enforce_sorted=False)); each pooling of the
outputs (last state of each direction = torch's h_n; mean and max over valid steps;
additive attention, written out in torch with the same weights) and the gradients of a
random linear function of it w.r.t. the input and every LSTM and attention parameter must
agree (float32, every backend). Every pooling is also checked alone against float64
central differences. Losses: class-weighted softmax cross-entropy against
torch.nn.CrossEntropyLoss(weight=, ignore_index=), sigmoid binary cross-entropy against
torch.nn.BCEWithLogitsLoss, values and gradients, huge logits included.
"""
from __future__ import annotations

import numpy as np
import pytest

import seqnet
from conftest import assert_close
from oracles import central_differences
from seqnet import to_numpy
from seqnet.errors import ConfigError, ShapeError
from seqnet.layers import POOLINGS, SequencePooling, sigmoid_binary_cross_entropy, softmax_cross_entropy

T, B, I, H, A = 5, 3, 4, 3, 4
LENGTHS = [3, T, 1]


def _torch():
    return pytest.importorskip("torch")


def _torch_pool(torch, mode, out, h_n, lengths, attention):
    mask = (torch.arange(T)[:, None] < torch.tensor(lengths)[None, :])[..., None]      # (T, B, 1)
    if mode == "last":
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)
    if mode == "mean":
        return out.sum(0) / torch.tensor(lengths, dtype=out.dtype)[:, None]
    if mode == "max":
        return torch.where(mask, out, torch.tensor(-float("inf"), dtype=out.dtype)).max(0).values
    w, b, v = attention
    e = torch.tanh(out @ w.T + b) @ v.T                                                   # (T, B, 1)
    alpha = torch.softmax(torch.where(mask, e, torch.tensor(-float("inf"), dtype=out.dtype)), dim=0)
    return (alpha * out).sum(0)


@pytest.mark.parametrize("mode", POOLINGS)
def test_pooling_over_packed_lstm_outputs_matches_torch(xb, mode):
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    rng = np.random.default_rng(0)
    lstm = seqnet.LSTM(I, H, bidirectional=True, seed=1)
    pool = SequencePooling(mode, 2 * H, num_directions=2, attention_size=A, seed=2)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    x[np.arange(T)[:, None] >= np.asarray(LENGTHS)[None, :]] = 0.0
    upstream = rng.standard_normal((B, 2 * H)).astype(np.float32)

    (out, _), lstm_back = lstm.forward(xb.asarray(x, "float32"), None, LENGTHS)
    pooled, pool_back = pool.forward(out, LENGTHS)
    dx, _ = lstm_back(pool_back(xb.asarray(upstream, "float32")), None)

    module = torch.nn.LSTM(I, H, bidirectional=True)
    module.load_state_dict({k: torch.tensor(to_numpy(v)) for k, v in lstm.state_dict().items()})
    tx = torch.tensor(x, requires_grad=True)
    packed = pack_padded_sequence(tx, torch.tensor(LENGTHS), enforce_sorted=False)
    t_out, (t_h, _) = module(packed)
    t_out, _ = pad_packed_sequence(t_out, total_length=T)
    attention = None
    if mode == "attention":
        state = {k: torch.tensor(to_numpy(v), requires_grad=True) for k, v in pool.state_dict().items()}
        attention = (state["proj.weight"], state["proj.bias"], state["score.weight"])
    t_pooled = _torch_pool(torch, mode, t_out, t_h, LENGTHS, attention)
    (t_pooled * torch.tensor(upstream)).sum().backward()

    tol = dict(rtol=1e-5, atol=1e-5)
    assert_close(xb, pooled, t_pooled.detach().numpy(), **tol)
    assert_close(xb, dx, tx.grad.numpy(), **tol)
    for name, grad in lstm.grads.items():
        assert_close(xb, grad, dict(module.named_parameters())[name].grad.numpy(), err_msg=name, **tol)
    if attention is not None:
        for name, tensor in zip(("proj.weight", "proj.bias", "score.weight"), attention):
            assert_close(xb, pool.grads[name], tensor.grad.numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("mode", POOLINGS)
@pytest.mark.parametrize("directions", [1, 2])
def test_pooling_gradients_against_finite_differences(xb64, mode, directions):
    rng = np.random.default_rng(3)
    size = 2 * directions
    pool = SequencePooling(mode, size, num_directions=directions, attention_size=3, dtype="float64", seed=4)
    hs = rng.standard_normal((T, B, size))
    upstream = rng.standard_normal((B, size))
    pooled, backprop = pool.forward(xb64.asarray(hs, "float64"), LENGTHS)
    d_hs = backprop(xb64.asarray(upstream, "float64"))
    grads = {k: to_numpy(v) for k, v in pool.grads.items()}
    params = {k: to_numpy(v) for k, v in pool.state_dict().items()}

    def loss_of(name):
        def f(value):
            pool.load_state_dict(dict(params, **{name: value}) if name != "hs" else params)
            inp = value if name == "hs" else hs
            return float(np.sum(to_numpy(pool(xb64.asarray(inp, "float64"), LENGTHS)) * upstream))
        return f

    assert_close(xb64, d_hs, central_differences(loss_of("hs"), hs.copy()), rtol=1e-6, atol=1e-8)
    padded = np.arange(T)[:, None] >= np.asarray(LENGTHS)[None, :]
    assert np.all(to_numpy(d_hs)[padded] == 0)                       # padded steps are not pooled
    for name in params:
        np.testing.assert_allclose(grads[name], central_differences(loss_of(name), params[name].copy()),
                                   rtol=1e-6, atol=1e-8, err_msg=name)


def test_pooling_refuses_misuse():
    with pytest.raises(ConfigError, match="pooling: expected one of"):
        SequencePooling("median", 4)
    with pytest.raises(ConfigError, match="input_size: expected a multiple of num_directions 2"):
        SequencePooling("last", 3, num_directions=2)
    pool = SequencePooling("mean", 4)
    with pytest.raises(ShapeError, match=r"hs: expected feature size \(last dim\) 4"):
        pool(np.zeros((2, 1, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"lengths: every length must lie in 1..2"):
        pool(np.zeros((2, 2, 4), dtype=np.float32), [0, 2])
    for mode in ("max", "mean", "last"):
        with pytest.raises(ShapeError, match=r"^hs: expected at least one timestep and one batch row \(T, B, 4\), "
                                             r"received shape \(0, 2, 4\)$"):
            SequencePooling(mode, 4)(np.zeros((0, 2, 4), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"^num_directions: expected 1 or 2, received True$"):
        SequencePooling("last", 4, num_directions=True)
    with pytest.raises(ConfigError, match=r"^seed: expected an integer >= 0"):
        SequencePooling("mean", 4, seed="a")
    spawned = SequencePooling("attention", 4, attention_size=3, seed=np.random.SeedSequence(1))
    assert tuple(spawned.params["proj.weight"].shape) == (3, 4)


# --------------------------------------------------------------------------- losses

def _dtype(backend) -> str:
    return "float32" if "no_float64" in str(backend.device) else "float64"


@pytest.mark.parametrize("masked", [False, True])
def test_weighted_cross_entropy_matches_torch(xb, masked):
    torch = _torch()
    dtype = _dtype(xb)
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 3, 5)) * 3
    logits[0, 0, 2] = 200.0                                          # huge logit: still finite
    targets = rng.integers(0, 5, (4, 3))
    weights = rng.uniform(0.2, 3.0, 5)
    mask = rng.random((4, 3)) > 0.3 if masked else None
    dev_mask = None if mask is None else xb.asarray(mask, "bool")
    loss, backprop = softmax_cross_entropy(xb.asarray(logits, dtype), xb.asarray(targets, "int64"), dev_mask,
                                           xp=xb.xp, class_weights=xb.asarray(weights, dtype))
    grad = backprop(2.0)

    t_logits = torch.tensor(logits, requires_grad=True)
    t_targets = torch.tensor(np.where(mask, targets, -100) if masked else targets)
    t_loss = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=-100)(
        t_logits.reshape(-1, 5), t_targets.reshape(-1))
    (2.0 * t_loss).backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(xb, loss, t_loss.detach().numpy(), rtol=tol, atol=tol)
    assert_close(xb, grad, t_logits.grad.numpy(), rtol=tol, atol=tol)


def test_binary_cross_entropy_matches_torch(xb):
    torch = _torch()
    dtype = _dtype(xb)
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((4, 6)) * 4
    logits[0, :2] = [300.0, -300.0]                                  # no overflow either way
    targets = (rng.random((4, 6)) > 0.5).astype(np.float64)
    loss, backprop = sigmoid_binary_cross_entropy(xb.asarray(logits, dtype), xb.asarray(targets, dtype), xp=xb.xp)
    grad = backprop(0.5)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.BCEWithLogitsLoss()(t_logits, torch.tensor(targets))
    (0.5 * t_loss).backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(xb, loss, t_loss.detach().numpy(), rtol=tol, atol=tol)
    assert_close(xb, grad, t_logits.grad.numpy(), rtol=tol, atol=tol)


def test_loss_shapes_are_checked():
    xp = seqnet.get_backend().xp
    with pytest.raises(ShapeError, match=r"class_weights: expected shape \(5,\)"):
        softmax_cross_entropy(np.zeros((2, 5)), np.zeros(2, dtype=np.int64), xp=xp, class_weights=np.ones(4))
    with pytest.raises(ShapeError, match="targets: expected the shape of the logits"):
        sigmoid_binary_cross_entropy(np.zeros((2, 5)), np.zeros((2, 4)), xp=xp)


def test_cross_entropy_checks_its_targets_mask_and_weights():
    from seqnet.errors import DTypeError

    xp = seqnet.get_backend().xp
    logits, targets = np.zeros((3, 2, 4)), np.zeros((3, 2), dtype=np.int64)
    for mask in (np.ones(2, bool), np.ones((3, 2)), np.ones((3, 2), np.int64)):    # broadcast, float, int
        with pytest.raises(ShapeError, match=r"^mask: expected a bool array of the targets' shape \(3, 2\)"):
            softmax_cross_entropy(logits, targets, mask, xp=xp)
    with pytest.raises(DTypeError, match=r"^targets: expected integer class ids, received"):
        softmax_cross_entropy(logits, targets.astype(float), xp=xp)
    with pytest.raises(ConfigError, match=r"^class_weights: expected weights >= 0"):
        softmax_cross_entropy(logits, targets, xp=xp, class_weights=np.array([1.0, -1.0, 1.0, 1.0]))
    none = np.zeros((3, 2), bool)
    loss, backprop = softmax_cross_entropy(logits, targets, none, xp=xp, class_weights=np.ones(4))
    assert float(loss) == 0.0 and not np.any(backprop())                    # every position masked: 0, no NaN
