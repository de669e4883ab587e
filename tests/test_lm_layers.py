"""The language model's building blocks and the whole model, against independent oracles.

Embedding, Linear and softmax cross-entropy: numpy transcriptions of their definitions and
float64 central finite differences (repeated ids in the embedding batch, the tied-weight
path of Linear, masked and huge logits in the loss). LanguageModel: every parameter gradient
of ``loss_and_grads`` against finite differences of ``loss`` (lstm, gru, rnn, tied once),
an LSTM model against torch (nn.Embedding + nn.LSTM + nn.Linear + F.cross_entropy), and the
state carried between calls against one run over the concatenated sequence.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from oracles import central_differences
import seqnet
from seqnet import to_numpy
from seqnet.kernels.embedding import embedding_backward
from seqnet.layers import Embedding, Linear, softmax_cross_entropy
from seqnet.models import LanguageModel
from seqnet.models import language_model

EPS = 1e-6
TOL = 1e-6


def _log_softmax(z: np.ndarray) -> np.ndarray:
    return z - np.logaddexp.reduce(z, axis=-1, keepdims=True)


def _ids(backend, values):
    return backend.asarray(np.asarray(values, dtype=np.int64), "int64")


# --------------------------------------------------------------------------- Embedding

REPEATED_IDS = [[1, 1], [3, 1]]   # id 1 three times, id 3 once, ids 0, 2, 4 never


def test_embedding_forward_and_backward_with_repeated_ids(xb64):
    rng = np.random.default_rng(0)
    layer = Embedding(5, 3, dtype="float64", seed=1)
    table = to_numpy(layer.state_dict()["weight"])
    ids = np.asarray(REPEATED_IDS)
    upstream = rng.standard_normal((2, 2, 3))

    out, backprop = layer.forward(_ids(xb64, ids))
    assert_close(xb64, out, table[ids], rtol=0, atol=0)
    backprop(xb64.asarray(upstream, "float64"))
    analytic = layer.grads["weight"]        # before load_state_dict below resets the gradients

    def loss(weight):
        layer.load_state_dict({"weight": weight})
        return float(np.sum(to_numpy(layer(_ids(xb64, ids))) * upstream))

    numeric = central_differences(loss, table.copy())
    assert_close(xb64, analytic, numeric, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(numeric[[0, 2, 4]], 0.0)      # unseen ids get nothing
    np.testing.assert_allclose(to_numpy(analytic)[1], upstream[0, 0] + upstream[0, 1] + upstream[1, 1], atol=1e-12)


def test_embedding_backward_reference_matches_add_at(xb64):
    rng = np.random.default_rng(1)
    ids = np.asarray([2, 0, 2, 2, 5, 0, 6, 2], dtype=np.int64)
    d_out = rng.standard_normal((ids.shape[0], 4))
    expected = np.zeros((7, 4))
    np.add.at(expected, ids, d_out)
    grad = embedding_backward(_ids(xb64, ids), xb64.asarray(d_out, "float64"), 7, xp=xb64.xp)
    assert_close(xb64, grad, expected, rtol=1e-12, atol=1e-12)


def test_embedding_backward_reference_chunks(xb64, monkeypatch):
    """The one-hot chunks (several, the last one partial) add up to the same table."""
    import seqnet.kernels.embedding as embedding_module

    monkeypatch.setattr(embedding_module, "ONE_HOT_CHUNK", 3 * 7)   # chunks of 3 ids for V = 7
    ids = np.asarray([2, 0, 2, 2, 5, 0, 6, 2], dtype=np.int64)
    d_out = np.random.default_rng(2).standard_normal((ids.shape[0], 4))
    expected = np.zeros((7, 4))
    np.add.at(expected, ids, d_out)
    grad = embedding_module.embedding_backward(_ids(xb64, ids), xb64.asarray(d_out, "float64"), 7, xp=xb64.xp)
    assert_close(xb64, grad, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- Linear


def test_linear_forward_and_backward(xb64):
    rng = np.random.default_rng(3)
    layer = Linear(4, 3, dtype="float64", seed=2)
    public = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    assert public["weight"].shape == (3, 4)                     # torch's (out, in)
    x = rng.standard_normal((2, 5, 4))
    upstream = rng.standard_normal((2, 5, 3))

    y, backprop = layer.forward(xb64.asarray(x, "float64"))
    assert_close(xb64, y, x @ public["weight"].T + public["bias"], rtol=1e-12, atol=1e-12)
    dx = backprop(xb64.asarray(upstream, "float64"))
    grads = layer.grads                     # before load_state_dict below resets the gradients

    def loss_of(name):
        def f(value):
            state = dict(public, **{name: value}) if name != "x" else public
            layer.load_state_dict(state)
            inp = value if name == "x" else x
            return float(np.sum(to_numpy(layer(xb64.asarray(inp, "float64"))) * upstream))
        return f

    assert_close(xb64, dx, central_differences(loss_of("x"), x.copy()), rtol=TOL, atol=TOL)
    assert_close(xb64, grads["weight"], central_differences(loss_of("weight"), public["weight"].copy()), rtol=TOL, atol=TOL)
    assert_close(xb64, grads["bias"], central_differences(loss_of("bias"), public["bias"].copy()), rtol=TOL, atol=TOL)


def test_tied_linear_layers_share_one_parameter_and_add_their_gradients(xb64):
    """Linear(weight=<another layer's Parameter>) computes with that array, and both layers'
    backprops add into its one gradient: d/dW sum((x1 W^T) U1) + sum((x2 W^T) U2) = U1^T x1 + U2^T x2."""
    rng = np.random.default_rng(4)
    first = Linear(4, 3, dtype="float64", seed=2)
    second = Linear(4, 3, dtype="float64", seed=5, weight=first.parameter("weight"))
    assert second.parameter("weight") is first.parameter("weight")
    w = to_numpy(first.state_dict()["weight"])
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((2, 4))
    u1, u2 = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    y2, back2 = second.forward(xb64.asarray(x2, "float64"))
    assert_close(xb64, y2, x2 @ w.T + to_numpy(second.state_dict()["bias"]), rtol=1e-12, atol=1e-12)
    _, back1 = first.forward(xb64.asarray(x1, "float64"))
    back1(xb64.asarray(u1, "float64"))
    dx2 = back2(xb64.asarray(u2, "float64"))
    assert_close(xb64, first.grads["weight"], u1.T @ x1 + u2.T @ x2, rtol=1e-12, atol=1e-12)
    assert_close(xb64, dx2, u2 @ w, rtol=1e-12, atol=1e-12)
    assert set(second.state_dict()) == {"weight", "bias"}


# --------------------------------------------------------------------------- loss


def _ce_oracle(logits: np.ndarray, targets: np.ndarray, mask=None) -> float:
    logp = np.take_along_axis(_log_softmax(logits), targets[..., None], axis=-1)[..., 0]
    if mask is None:
        return float(-logp.mean())
    return float(-(logp * mask).sum() / mask.sum())


def test_cross_entropy_value_and_gradient(xb64):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((3, 2, 5))
    targets = rng.integers(0, 5, (3, 2))
    loss, backprop = softmax_cross_entropy(xb64.asarray(logits, "float64"), _ids(xb64, targets), xp=xb64.xp)
    assert_close(xb64, loss, _ce_oracle(logits, targets), rtol=1e-12, atol=1e-12)
    assert tuple(loss.shape) == ()

    def f(z):
        value, _ = softmax_cross_entropy(xb64.asarray(z, "float64"), _ids(xb64, targets), xp=xb64.xp)
        return float(to_numpy(value))

    assert_close(xb64, backprop(), central_differences(f, logits.copy()), rtol=TOL, atol=TOL)
    assert_close(xb64, backprop(2.5), 2.5 * central_differences(f, logits.copy()), rtol=TOL, atol=TOL)


def test_cross_entropy_is_stable_for_huge_logits(xb64):
    logits = np.asarray([[1000.0, 0.0, -1000.0, 999.0], [-1000.0, -1000.0, -999.0, -1002.0]])
    targets = np.asarray([3, 0])
    loss, backprop = softmax_cross_entropy(xb64.asarray(logits, "float64"), _ids(xb64, targets), xp=xb64.xp)
    expected = _ce_oracle(logits, targets)
    assert np.isfinite(expected)
    assert_close(xb64, loss, expected, rtol=1e-12, atol=1e-12)
    grad = to_numpy(backprop())
    assert np.all(np.isfinite(grad))
    softmax = np.exp(_log_softmax(logits))
    np.testing.assert_allclose(grad, (softmax - np.eye(4)[targets]) / 2, atol=1e-12)


def test_cross_entropy_mask_ignores_padding(xb64):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((4, 2, 5))
    targets = rng.integers(0, 5, (4, 2))
    mask = np.asarray([[True, True], [True, False], [True, False], [False, False]])
    device_mask = xb64.asarray(mask, "bool")
    loss, backprop = softmax_cross_entropy(xb64.asarray(logits, "float64"), _ids(xb64, targets), device_mask,
                                           xp=xb64.xp)
    assert_close(xb64, loss, _ce_oracle(logits, targets, mask), rtol=1e-12, atol=1e-12)   # mean over 4 tokens

    def f(z):
        value, _ = softmax_cross_entropy(xb64.asarray(z, "float64"), _ids(xb64, targets), device_mask, xp=xb64.xp)
        return float(to_numpy(value))

    grad = backprop()
    assert_close(xb64, grad, central_differences(f, logits.copy()), rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(to_numpy(grad)[~mask], 0.0)
    garbage = logits.copy()
    garbage[~mask] = 1e4                                   # padded positions may hold anything
    assert abs(f(garbage) - _ce_oracle(logits, targets, mask)) < 1e-12


# --------------------------------------------------------------------------- LanguageModel

V, E, H, T, B = 6, 3, 3, 4, 2
MODEL_CASES = [("lstm", False), ("gru", False), ("rnn", False), ("lstm", True)]


@pytest.fixture(params=["looked-up", "multiplied"])
def input_projection(request, monkeypatch):
    """Both ways of computing layer 0's input projection: looked up in the input table
    E @ W_ih (V, G*H) (the embedding layer is then never run), or embedding lookup then matmul."""
    if request.param == "looked-up":
        monkeypatch.setattr(language_model, "INPUT_TABLE_MIN_EMBED", 1)

        def refuse(self, ids):
            raise AssertionError("the input-table path must not run the embedding layer")
        monkeypatch.setattr(Embedding, "forward", refuse)
    else:
        monkeypatch.setattr(language_model, "INPUT_TABLE_MIN_EMBED", 10 ** 9)
    return request.param


def _batch(seed=7, steps=T):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (steps + 1, B))
    return ids[:-1], ids[1:]


@pytest.mark.parametrize("cell,tie", MODEL_CASES, ids=[f"{c}{'-tied' if t else ''}" for c, t in MODEL_CASES])
def test_language_model_gradients_by_finite_differences(xb64, cell, tie, input_projection):
    embed = H if tie else E
    model = LanguageModel(V, embed, H, num_layers=1, cell=cell, dropout=0.0, tie_weights=tie, dtype="float64", seed=3)
    inputs, targets = _batch()
    inp, tgt = _ids(xb64, inputs), _ids(xb64, targets)
    loss, _ = model.loss_and_grads(inp, tgt)
    assert_close(xb64, loss, model.loss(inp, tgt)[0], rtol=1e-12, atol=1e-12)
    analytic = {k: to_numpy(v) for k, v in model.param_grads.items()}
    params = {k: to_numpy(v) for k, v in model.params.items()}
    assert set(analytic) == set(params)
    if tie:
        assert "decoder.weight" not in params

    rng = np.random.default_rng(8)
    for name, value in params.items():
        flat = list(np.ndindex(value.shape))
        entries = [flat[i] for i in rng.choice(len(flat), size=min(6, len(flat)), replace=False)]

        def f(perturbed, name=name):
            model.params[name] = xb64.asarray(perturbed, "float64")
            return float(to_numpy(model.loss(inp, tgt)[0]))

        numeric = central_differences(f, value.copy(), entries)
        model.params[name] = xb64.asarray(value, "float64")
        picked = tuple(np.asarray(entries).T)
        np.testing.assert_allclose(analytic[name][picked], numeric[picked], rtol=1e-5, atol=1e-8, err_msg=name)
        assert xb64.owns(model.param_grads[name])


def test_lstm_language_model_agrees_with_torch(xb64, input_projection):
    torch = pytest.importorskip("torch")
    model = LanguageModel(V, E, H, num_layers=2, cell="lstm", dtype="float64", seed=4)
    state = {k: torch.tensor(to_numpy(v)) for k, v in model.state_dict().items()}
    emb = torch.nn.Embedding(V, E).double()
    rnn = torch.nn.LSTM(E, H, num_layers=2).double()
    dec = torch.nn.Linear(H, V).double()
    for prefix, module in (("embedding", emb), ("rnn", rnn), ("decoder", dec)):
        module.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(prefix + ".")})

    inputs, targets = _batch(seed=9, steps=5)
    out, (h_n, c_n) = rnn(emb(torch.tensor(inputs)))
    logits = dec(out)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(targets).reshape(-1))
    expected.backward()

    loss, (my_h, my_c) = model.loss_and_grads(_ids(xb64, inputs), _ids(xb64, targets))
    assert_close(xb64, loss, expected.item(), rtol=1e-10, atol=1e-10)
    assert_close(xb64, my_h, h_n.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert_close(xb64, my_c, c_n.detach().numpy(), rtol=1e-10, atol=1e-10)
    for prefix, module in (("embedding", emb), ("rnn", rnn), ("decoder", dec)):
        mine = getattr(model, prefix).grads
        theirs = dict(module.named_parameters())
        assert set(mine) == set(theirs), prefix
        for name, param in theirs.items():
            assert_close(xb64, mine[name], param.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=f"{prefix}.{name}")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_looked_up_projection_in_float32_matches_the_plain_path(xb, cell, monkeypatch):
    """float32 on every backend (no_float64 included, where a float64 leak would raise): the
    looked-up layer-0 projection gives the loss and gradients of embedding-then-matmul."""
    model = LanguageModel(V, E, H, num_layers=2, cell=cell, dtype="float32", seed=6)
    inp, tgt = (_ids(xb, a) for a in _batch(seed=12, steps=5))
    results = []
    for threshold in (10 ** 9, 1):                       # plain, then looked up
        monkeypatch.setattr(language_model, "INPUT_TABLE_MIN_EMBED", threshold)
        model.zero_grad()
        loss, _ = model.loss_and_grads(inp, tgt)
        results.append((to_numpy(loss), {k: to_numpy(v) for k, v in model.param_grads.items()}))
        assert all(xb.owns(g) for g in model.param_grads.values())
    (plain_loss, plain), (looked_loss, looked) = results
    np.testing.assert_allclose(looked_loss, plain_loss, rtol=1e-6)
    for name in plain:
        np.testing.assert_allclose(looked[name], plain[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_input_table_matches_the_layer_input(xb64, batch_first, layer_norm):
    """Recurrent(input_table=E @ W) fed ids, W = weight_ih_l0 in the layer's internal layout
    (I, G*H), equals the plain layer fed E[ids]; its dx is the gradient S w.r.t. the table
    (V, G*H), from which the caller gets dE = S W^T and dW = E^T S: those equal the plain
    layer's per-token input gradients and its weight_ih_l0 gradient. With layer_norm the
    cell's input transform (a layer norm per row) runs on the table's rows."""
    from seqnet.layers import GRU, LSTM

    rng = np.random.default_rng(11)
    layer = (LSTM(3, 4, num_layers=2, batch_first=batch_first, dtype="float64", seed=2, layer_norm=True)
             if layer_norm else GRU(3, 4, num_layers=2, batch_first=batch_first, dtype="float64", seed=2))
    emb, ids = rng.standard_normal((6, 3)), rng.integers(0, 6, (5, 2))
    d_out = rng.standard_normal((5, 2, 4))
    w_ih = to_numpy(layer.params["weight_ih_l0"])                       # (I, G*H), internal layout
    table = emb @ w_ih

    (out, h_n), back = layer.forward(xb64.asarray(emb[ids], "float64"))
    dx, _ = back(xb64.asarray(d_out, "float64"))
    plain = {k: to_numpy(v) for k, v in layer.param_grads.items()}
    layer.zero_grad()
    (out_t, h_n_t), back_t = layer.forward(_ids(xb64, ids), input_table=xb64.asarray(table, "float64"))
    d_table, _ = back_t(xb64.asarray(d_out, "float64"))
    assert tuple(d_table.shape) == table.shape
    h_n, h_n_t = (h_n, h_n_t) if layer_norm else ((h_n,), (h_n_t,))
    assert_close(xb64, out_t, to_numpy(out), rtol=1e-12, atol=1e-12)
    for a, b in zip(h_n_t, h_n):
        assert_close(xb64, a, to_numpy(b), rtol=1e-12, atol=1e-12)
    per_token = np.zeros_like(emb)
    np.add.at(per_token, ids.reshape(-1), to_numpy(dx).reshape(-1, 3))      # dx has the layout of the input
    np.testing.assert_allclose(to_numpy(d_table) @ w_ih.T, per_token, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(emb.T @ to_numpy(d_table), plain["weight_ih_l0"], rtol=1e-10, atol=1e-12)
    for name, grad in layer.param_grads.items():
        if name == "weight_ih_l0":                                      # the caller's to compute
            np.testing.assert_array_equal(to_numpy(grad), 0.0)
        else:
            assert_close(xb64, grad, plain[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_continues_the_sequence(xb64, cell):
    model = LanguageModel(V, E, H, num_layers=2, cell=cell, dtype="float64", seed=5)
    inputs, targets = _batch(seed=10, steps=6)
    first, second = slice(0, 3), slice(3, 6)
    full_logits, full_final = model(_ids(xb64, inputs))
    full_logits = to_numpy(full_logits)

    loss1, state = model.loss_and_grads(_ids(xb64, inputs[first]), _ids(xb64, targets[first]))
    loss2, final = model.loss_and_grads(_ids(xb64, inputs[second]), _ids(xb64, targets[second]), state)
    assert_close(xb64, loss1, _ce_oracle(full_logits[first], targets[first]), rtol=1e-12, atol=1e-12)
    assert_close(xb64, loss2, _ce_oracle(full_logits[second], targets[second]), rtol=1e-12, atol=1e-12)
    logits2, _ = model(_ids(xb64, inputs[second]), state)
    assert_close(xb64, logits2, full_logits[second], rtol=1e-12, atol=1e-12)
    for mine, whole in zip(final if isinstance(final, tuple) else (final,),
                           full_final if isinstance(full_final, tuple) else (full_final,)):
        assert_close(xb64, mine, whole, rtol=1e-12, atol=1e-12)
    # without the state the second half is a different computation
    fresh, _ = model.loss(_ids(xb64, inputs[second]), _ids(xb64, targets[second]))
    assert abs(float(to_numpy(fresh)) - float(to_numpy(loss2))) > 1e-9


# --------------------------------------------------------------------------- misuse


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8", "int32"])
def test_every_integer_dtype_of_token_ids_gives_the_int64_result(xb, dtype, input_projection):
    model = LanguageModel(V, embed_size=E, hidden_size=H, seed=0)
    ids, targets = _batch()
    expected, _ = model(_ids(xb, ids))
    assert_close(xb, model(xb.asarray(ids.astype(dtype), dtype))[0], expected, rtol=1e-6, atol=1e-6)
    loss, _ = model.loss(xb.asarray(ids.astype(dtype), dtype), xb.asarray(targets.astype(dtype), dtype))
    assert_close(xb, loss, model.loss(_ids(xb, ids), _ids(xb, targets))[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype, vocab, top", [("int8", 200, 127), ("uint8", 300, 255), ("int16", 40000, 32767)])
def test_ids_of_a_small_dtype_are_range_checked_against_a_vocabulary_it_cannot_hold(xb, dtype, vocab, top):
    """A vocabulary larger than the dtype's maximum: every id of the dtype is valid (compared as int64)."""
    from seqnet.errors import ConfigError
    from seqnet.layers import Embedding

    with seqnet.backend(xb.name, xb.device):
        table = Embedding(vocab, 2, seed=0)
    ids = np.array([0, 1, top])
    assert_close(xb, table(xb.asarray(ids.astype(dtype), dtype)), table(_ids(xb, ids)), rtol=0, atol=0)
    if dtype != "uint8":
        with pytest.raises(ConfigError, match=rf"^ids: expected token ids in \[0, {vocab}\) .* received values in "
                                              r"\[-1, 1\]$"):
            table(xb.asarray(np.array([-1, 1]).astype(dtype), dtype))


def test_loss_mask_is_checked_and_masked_targets_are_not_read(xb):
    from seqnet.errors import BackendMismatchError, ConfigError, DTypeError, ShapeError

    model = LanguageModel(7, embed_size=4, hidden_size=4, seed=0)
    ids = _ids(xb, [[1, 2], [3, 4], [5, 6]])
    refused = [(xb.asarray(np.ones(2, bool)), ShapeError, r"^mask: expected a bool array of the shape of targets "
                r"\(3, 2\), received shape \(2,\)$"),
               (xb.asarray(np.ones((2, 2), bool)), ShapeError, r"received shape \(2, 2\)$"),
               (_ids(xb, np.ones((3, 2))), DTypeError, r"^mask: expected dtype bool, received an integer int64 array$"),
               ([[True, True]] * 3, BackendMismatchError, r"^mask: expected a .* array")]
    if xb.name != "numpy":
        refused.append((np.ones((3, 2), bool), BackendMismatchError, r"^mask: expected a .* array"))
    for mask, error, message in refused:
        for call in (model.loss_and_grads, model.loss):
            with pytest.raises(error, match=message):
                call(ids, ids, mask=mask)
    mask = np.ones((3, 2), bool)
    mask[0, 0] = mask[2, 1] = False
    padded = np.array([[-100, 2], [3, 4], [5, 99]])
    loss, _ = model.loss(ids, _ids(xb, padded), mask=xb.asarray(mask))
    logits = to_numpy(model(ids)[0]).astype(np.float64)
    expected = _ce_oracle(logits, np.where(mask, padded, 0), mask)
    assert abs(float(to_numpy(loss)) - expected) < 1e-5
    assert abs(float(to_numpy(model.loss_and_grads(ids, _ids(xb, padded), mask=xb.asarray(mask))[0])) - expected) < 1e-5
    with pytest.raises(ConfigError, match=r"^targets: expected token ids in \[0, 7\) \(the vocabulary size is 7\), "
                                          r"received values in \[2, 9\] where mask is True$"):
        model.loss(ids, _ids(xb, np.where(padded == 3, 9, padded)), mask=xb.asarray(mask))


def test_empty_token_batches_are_reported_in_the_callers_shape():
    from seqnet.errors import ShapeError

    model = LanguageModel(7, embed_size=4, hidden_size=4, seed=0)
    for shape in ((3, 0), (0, 2)):
        message = rf"^ids: expected at least one timestep and one batch row \(T, B\) of token ids, received shape " \
                  rf"\({shape[0]}, {shape[1]}\)$"
        with pytest.raises(ShapeError, match=message):
            model(np.zeros(shape, np.int64))


def test_cross_entropy_backprop_checks_its_upstream_gradient(xb):
    from seqnet.errors import ConfigError

    loss, backprop = softmax_cross_entropy(xb.asarray(np.zeros((2, 3)), "float32"), _ids(xb, [0, 1]), xp=xb.xp)
    for bad in ("x", xb.asarray(np.ones(2), "float32"), True):
        with pytest.raises(ConfigError, match=r"^d_loss: expected a number or a 0-d float32 array"):
            backprop(bad)
    assert_close(xb, backprop(2.0), (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 1]]) * 2.0 / 2, atol=1e-6)
