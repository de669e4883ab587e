"""The linear-chain CRF against brute force and finite differences.

log Z and the Viterbi path are checked against enumeration of all K^L tag paths of every
row (tiny K and T, rows of different lengths); the gold path score against its definition
summed by hand; every gradient of the loss (emissions, transitions, start and end scores)
against float64 central differences. All through the backend fixtures.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import assert_close
from oracles import central_differences
from seqnet import to_numpy
from seqnet.errors import ConfigError, ShapeError, TapeConsumedError
from seqnet.layers import LinearChainCRF

K, T = 3, 4
LENGTHS = [4, 2, 1, 3]


def _dtype(backend) -> str:
    return "float32" if "no_float64" in str(backend.device) else "float64"


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    emissions = rng.standard_normal((T, len(LENGTHS), K))
    tags = rng.integers(0, K, (T, len(LENGTHS)))
    return emissions, tags


def _path_score(params, emissions, path, b):
    trans, start, end = params["transitions"], params["start_transitions"], params["end_transitions"]
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, b, y] for t, y in enumerate(path))
    return score + sum(trans[path[t - 1], path[t]] for t in range(1, len(path)))


def _enumerate(params, emissions):
    """Per row: (log Z, best path, best score) by enumerating all K^L paths."""
    out = []
    for b, n in enumerate(LENGTHS):
        paths = list(itertools.product(range(K), repeat=n))
        scores = np.array([_path_score(params, emissions, p, b) for p in paths])
        best = int(np.argmax(scores))
        out.append((np.logaddexp.reduce(scores), list(paths[best]), scores[best]))
    return out


def test_log_partition_viterbi_and_score_against_enumeration(xb):
    dtype = _dtype(xb)
    crf = LinearChainCRF(K, dtype=dtype, seed=3)
    rng = np.random.default_rng(5)          # larger transitions than the init, so paths differ
    crf.load_state_dict({"transitions": rng.standard_normal((K, K)), "start_transitions": rng.standard_normal(K),
                         "end_transitions": rng.standard_normal(K)})
    params = {k: to_numpy(v).astype(np.float64) for k, v in crf.state_dict().items()}
    emissions, tags = _problem()
    emissions = emissions.astype(dtype).astype(np.float64)
    expected = _enumerate(params, emissions)
    e = xb.asarray(emissions, dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(xb, crf.log_partition(e, LENGTHS), [z for z, _, _ in expected], rtol=tol, atol=tol)
    paths, scores = crf.decode(e, LENGTHS)
    assert [p.tolist() for p in paths] == [p for _, p, _ in expected]
    np.testing.assert_allclose(scores, [s for _, _, s in expected], rtol=tol, atol=tol)
    gold = [_path_score(params, emissions, tags[:n, b], b) for b, n in enumerate(LENGTHS)]
    assert_close(xb, crf.score(e, xb.asarray(tags, "int64"), LENGTHS), gold, rtol=tol, atol=tol)


def test_loss_is_the_mean_negative_log_likelihood_per_token(xb):
    dtype = _dtype(xb)
    crf = LinearChainCRF(K, dtype=dtype, seed=1)
    params = {k: to_numpy(v).astype(np.float64) for k, v in crf.state_dict().items()}
    emissions, tags = _problem(1)
    emissions = emissions.astype(dtype).astype(np.float64)
    expected = _enumerate(params, emissions)
    nll = sum(z - _path_score(params, emissions, tags[:n, b], b) for (z, _, _), (b, n) in zip(expected, enumerate(LENGTHS)))
    loss, _ = crf.forward(xb.asarray(emissions, dtype), xb.asarray(tags, "int64"), LENGTHS)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(xb, loss, nll / sum(LENGTHS), rtol=tol, atol=tol)


def test_gradients_against_finite_differences(xb64):
    crf = LinearChainCRF(K, dtype="float64", seed=2)
    params = {k: to_numpy(v) for k, v in crf.state_dict().items()}
    emissions, tags = _problem(2)
    dev_tags = xb64.asarray(tags, "int64")
    loss, backprop = crf.forward(xb64.asarray(emissions, "float64"), dev_tags, LENGTHS)
    d_emissions = backprop(0.7)
    grads = {k: to_numpy(v) for k, v in crf.grads.items()}

    def loss_of(name):
        def f(value):
            crf.load_state_dict(dict(params, **{name: value}) if name != "emissions" else params)
            e = value if name == "emissions" else emissions
            return 0.7 * float(to_numpy(crf.forward(xb64.asarray(e, "float64"), dev_tags, LENGTHS)[0]))
        return f

    numeric = central_differences(loss_of("emissions"), emissions.copy())
    assert_close(xb64, d_emissions, numeric, rtol=1e-6, atol=1e-8)
    for t, n in itertools.product(range(T), range(len(LENGTHS))):
        if t >= LENGTHS[n]:
            assert np.all(to_numpy(d_emissions)[t, n] == 0)          # padded steps get nothing
    for name in params:
        np.testing.assert_allclose(grads[name], central_differences(loss_of(name), params[name].copy()),
                                   rtol=1e-6, atol=1e-8, err_msg=name)


def test_padded_steps_are_not_read(xb):
    dtype = _dtype(xb)
    crf = LinearChainCRF(K, dtype=dtype, seed=0)
    emissions, tags = _problem(3)
    other = emissions.copy()
    other[2:, 1] = 100.0                                  # row 1 has length 2
    tags_other = tags.copy()
    tags_other[2:, 1] = 99                                # invalid ids at padded steps are fine
    a = crf.forward(xb.asarray(emissions, dtype), xb.asarray(tags, "int64"), LENGTHS)[0]
    b = crf.forward(xb.asarray(other, dtype), xb.asarray(tags_other, "int64"), LENGTHS)[0]
    assert_close(xb, a, b, rtol=1e-6, atol=1e-6)
    assert crf.decode(xb.asarray(emissions, dtype), LENGTHS)[0][1].tolist() == \
        crf.decode(xb.asarray(other, dtype), LENGTHS)[0][1].tolist()


def test_misuse_is_refused_with_clear_messages():
    crf = LinearChainCRF(K, dtype="float64")
    emissions, tags = _problem()
    e = np.asarray(emissions)
    with pytest.raises(ShapeError, match=r"emissions: expected \(T, B, 3\)"):
        crf.log_partition(np.zeros((T, 2, 4)))
    with pytest.raises(ConfigError, match=r"tags: expected tag ids in \[0, 3\) \(num_tags is 3\)"):
        crf.forward(e, np.full((T, 4), 5), LENGTHS)
    with pytest.raises(ShapeError, match=r"tags: expected shape \(4, 4\)"):
        crf.forward(e, tags[:2], LENGTHS)
    with pytest.raises(ConfigError, match=r"lengths: every length must lie in 1..4"):
        crf.log_partition(e, [5, 1, 1, 1])
    _, backprop = crf.forward(e, tags, LENGTHS)
    backprop()
    with pytest.raises(TapeConsumedError):
        backprop()


def test_backprop_checks_d_loss_before_consuming_the_tape(xb):
    crf = LinearChainCRF(K, dtype=_dtype(xb))
    emissions, tags = _problem()
    loss, backprop = crf.forward(xb.asarray(emissions, _dtype(xb)), xb.asarray(tags, "int64"), LENGTHS)
    for bad in ("x", xb.asarray(np.ones(2), _dtype(xb)), None):
        with pytest.raises(ConfigError, match=rf"^d_loss: expected a number or a 0-d {_dtype(xb)} array on "):
            backprop(bad)
    d_emissions = backprop(xb.asarray(2.0, _dtype(xb)))
    assert tuple(d_emissions.shape) == emissions.shape
    with pytest.raises(TapeConsumedError):
        backprop(1.0)
