"""SequenceClassifier, SequenceTagger and ConditionalGenerator against float64 finite differences.

For each model (token-id and feature inputs, every pooling, CRF or softmax tagging, condition
ids or feature conditions, with and without the condition at every step), the gradients that
``loss_and_grads`` adds are compared with central differences of ``loss`` on a seeded subset
of every parameter's entries (all of them for small parameters), and the gradient w.r.t.
feature inputs where the model returns one. Greedy generation is checked against an
independent roll-out that re-runs the whole model on the growing prefix at every step.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from oracles import central_differences
from seqnet import to_numpy
from seqnet.errors import ConfigError, ShapeError
from seqnet.models import ConditionalGenerator, SequenceClassifier, SequenceTagger

T, B, V = 4, 3, 6
LENGTHS = [4, 2, 3]
ENTRIES = 6


def _rel_error(a, n):
    return float(np.linalg.norm(a - n) / max(1e-8, np.linalg.norm(a) + np.linalg.norm(n)))


def _check_param_grads(model, loss_value, seed=0):
    """Every parameter's accumulated gradient against central differences of ``loss_value()``."""
    grads = {k: to_numpy(v) for k, v in model.grads.items()}
    params = {k: to_numpy(v) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)
    for name, value in params.items():
        indices = list(np.ndindex(value.shape))
        if len(indices) > ENTRIES:
            indices = [indices[i] for i in rng.choice(len(indices), ENTRIES, replace=False)]

        def f(perturbed, name=name):
            model.load_state_dict(dict(params, **{name: perturbed}))
            return loss_value()

        numeric = central_differences(f, value.copy(), indices)
        picked = tuple(np.array(indices).T)
        assert _rel_error(grads[name][picked], numeric[picked]) < 1e-6, name
    model.load_state_dict(params)


def _ids(backend, rng, shape, high):
    return backend.asarray(rng.integers(0, high, shape), "int64")


CLASSIFIERS = [
    pytest.param(dict(cell="lstm", bidirectional=True, pooling="attention", class_weights=[0.5, 2.0, 1.0]), id="lstm-bi-attention-weighted"),
    pytest.param(dict(cell="gru", bidirectional=True, pooling="last", num_layers=2), id="gru-bi-last-2layers"),
    pytest.param(dict(cell="rnn", pooling="max"), id="rnn-max"),
    pytest.param(dict(cell="lstm", pooling="mean", multi_label=True), id="lstm-mean-multilabel"),
]


@pytest.mark.parametrize("kwargs", CLASSIFIERS)
def test_classifier_gradients(xb64, kwargs):
    rng = np.random.default_rng(1)
    model = SequenceClassifier(3, vocab_size=V, embed_size=3, hidden_size=2, attention_size=2, dtype="float64",
                               seed=2, **kwargs)
    x = _ids(xb64, rng, (T, B), V)
    if kwargs.get("multi_label"):
        targets = xb64.asarray((rng.random((B, 3)) > 0.5).astype(np.float64), "float64")
    else:
        targets = _ids(xb64, rng, (B,), 3)
    model.loss_and_grads(x, targets, LENGTHS, grad_scale=0.5)
    _check_param_grads(model, lambda: 0.5 * float(to_numpy(model.loss(x, targets, LENGTHS))))


def test_classifier_feature_input_gradient(xb64):
    rng = np.random.default_rng(3)
    model = SequenceClassifier(2, input_size=3, hidden_size=2, pooling="attention", attention_size=2,
                               bidirectional=True, dtype="float64", seed=4)
    feats = rng.standard_normal((T, B, 3))
    targets = _ids(xb64, rng, (B,), 2)
    logits, backprop = model.forward(xb64.asarray(feats, "float64"), LENGTHS)
    upstream = rng.standard_normal((B, 2))
    d_x = backprop(xb64.asarray(upstream, "float64"))
    numeric = central_differences(
        lambda f: float(np.sum(to_numpy(model(xb64.asarray(f, "float64"), LENGTHS)) * upstream)), feats.copy())
    assert_close(xb64, d_x, numeric, rtol=1e-6, atol=1e-8)
    model.zero_grad()
    model.loss_and_grads(xb64.asarray(feats, "float64"), targets, LENGTHS)
    _check_param_grads(model, lambda: float(to_numpy(model.loss(xb64.asarray(feats, "float64"), targets, LENGTHS))))


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_tagger_gradients(xb64, crf):
    rng = np.random.default_rng(5)
    model = SequenceTagger(3, vocab_size=V, embed_size=3, hidden_size=2, crf=crf, dtype="float64", seed=6)
    x = _ids(xb64, rng, (T, B), V)
    tags = _ids(xb64, rng, (T, B), 3)
    model.loss_and_grads(x, tags, LENGTHS)
    _check_param_grads(model, lambda: float(to_numpy(model.loss(x, tags, LENGTHS))))


def test_tagger_predictions_have_each_rows_length(xb):
    rng = np.random.default_rng(7)
    for crf in (False, True):
        model = SequenceTagger(3, vocab_size=V, embed_size=3, hidden_size=2, crf=crf, seed=1)
        paths = model.predict(_ids(xb, rng, (T, B), V), LENGTHS)
        assert [len(p) for p in paths] == LENGTHS and all(((p >= 0) & (p < 3)).all() for p in paths)


GENERATORS = [
    pytest.param(dict(num_conditions=3, cell="lstm", condition_input=True, num_layers=2), id="ids-lstm-input-2layers"),
    pytest.param(dict(num_conditions=3, cell="gru", condition_input=False), id="ids-gru"),
    pytest.param(dict(condition_size=2, cell="rnn", condition_input=True), id="features-rnn-input"),
]


@pytest.mark.parametrize("kwargs", GENERATORS)
def test_generator_gradients(xb64, kwargs):
    rng = np.random.default_rng(8)
    model = ConditionalGenerator(V, condition_embed=2, embed_size=3, hidden_size=2, dtype="float64", seed=9, **kwargs)
    inputs, targets = _ids(xb64, rng, (T, B), V), _ids(xb64, rng, (T, B), V)
    mask = xb64.asarray(np.arange(T)[:, None] < np.asarray(LENGTHS)[None, :], "bool")
    if "condition_size" in kwargs:
        host_cond = rng.standard_normal((B, 2))
        cond = xb64.asarray(host_cond, "float64")
    else:
        cond = _ids(xb64, rng, (B,), 3)
    model.loss_and_grads(inputs, targets, cond, mask)
    _check_param_grads(model, lambda: float(to_numpy(model.loss(inputs, targets, cond, mask))))
    if "condition_size" in kwargs:                      # the gradient w.r.t. feature conditions
        (logits, _), backprop = model.forward(inputs, cond)
        upstream = rng.standard_normal(tuple(logits.shape))
        d_cond = backprop(xb64.asarray(upstream, "float64"))
        numeric = central_differences(
            lambda c: float(np.sum(to_numpy(model(inputs, xb64.asarray(c, "float64"))[0]) * upstream)),
            host_cond.copy())
        assert_close(xb64, d_cond, numeric, rtol=1e-6, atol=1e-8)


def test_greedy_generation_matches_a_full_rerun_at_every_step(xb):
    model = ConditionalGenerator(V, num_conditions=3, embed_size=4, hidden_size=5, num_layers=2, seed=3)
    rng = np.random.default_rng(0)
    model.load_state_dict({k: 2 * rng.standard_normal(tuple(v.shape)) for k, v in model.state_dict().items()})
    conds = [0, 1, 2, 1]
    got = model.generate(conds, max_length=6, greedy=True)
    for n, cond in enumerate(conds):
        prefix = [model.end_id]
        while len(prefix) <= 6:
            logits, _ = model(model.device_ids(np.asarray(prefix)[:, None]), model.device_condition([cond]))
            token = int(np.argmax(to_numpy(logits)[-1, 0]))
            if token == model.end_id:
                break
            prefix.append(token)
        assert got[n].tolist() == prefix[1:7], n


def test_models_refuse_misuse():
    with pytest.raises(ConfigError, match="vocab_size, input_size: give exactly one"):
        SequenceClassifier(2)
    with pytest.raises(ConfigError, match="class_weights: expected 2 finite weights > 0"):
        SequenceClassifier(2, vocab_size=4, class_weights=[1.0, -1.0])
    with pytest.raises(ConfigError, match="class_weights: only for multi-class"):
        SequenceClassifier(2, vocab_size=4, multi_label=True, class_weights=[1.0, 1.0])
    with pytest.raises(ConfigError, match="cell: expected one of"):
        SequenceTagger(2, vocab_size=4, cell="transformer")
    with pytest.raises(ConfigError, match="num_conditions, condition_size: give exactly one"):
        ConditionalGenerator(4)
    model = SequenceClassifier(2, vocab_size=4, hidden_size=2)
    with pytest.raises(ConfigError, match=r"targets: expected class ids in \[0, 2\) \(num_classes is 2\)"):
        model.loss_and_grads(np.zeros((3, 2), dtype=np.int64), np.array([0, 2]))
    with pytest.raises(ShapeError, match=r"targets: expected one class id per row, shape \(2,\)"):
        model.loss_and_grads(np.zeros((3, 2), dtype=np.int64), np.array([0]))
    tagger = SequenceTagger(2, vocab_size=4, hidden_size=2)
    with pytest.raises(ShapeError, match=r"tags: expected shape \(3, 2\)"):
        tagger.loss_and_grads(np.zeros((3, 2), dtype=np.int64), np.zeros((2, 2), dtype=np.int64))
    gen = ConditionalGenerator(5, num_conditions=2, hidden_size=2)
    with pytest.raises(ConfigError, match=r"condition: expected condition ids in \[0, 2\) \(num_conditions is 2\)"):
        gen.generate([3])
    for cond in ("1", "upper"):                               # not the condition id 1, not a raw ValueError
        with pytest.raises(ConfigError, match=r"^cond: expected host condition ids \(N,\), received a str$"):
            gen.generate(cond)
    with pytest.raises(ConfigError, match=r"^cond: expected host condition ids \(N,\) of integer dtype, received "
                                          r"dtype float64$"):
        gen.generate([1.7])                                   # not truncated to condition 1
    features = ConditionalGenerator(5, condition_size=3, hidden_size=2)
    with pytest.raises(ConfigError, match=r"^cond: expected host feature rows \(N, 3\) of numeric dtype, received "
                                          r"dtype <U1$"):
        features.generate(["a", "b", "c"])
    assert len(features.generate([[0.0, 1.0, 2.0]], max_length=2)) == 1


@pytest.mark.parametrize("bad", [2.0, -1.0, float("nan"), 0.5])
def test_multi_label_targets_other_than_0_and_1_are_refused(xb, bad):
    model = SequenceClassifier(3, vocab_size=V, hidden_size=2, multi_label=True, seed=0)
    targets = np.zeros((B, 3))
    targets[1, 2] = bad
    x = _ids(xb, np.random.default_rng(0), (T, B), V)
    for call in (model.loss_and_grads, model.loss):
        with pytest.raises(ConfigError, match=rf"^targets: expected 0/1 labels \(multi_label\), received other values "
                                              rf"such as \[{bad}\]$"):
            call(x, xb.asarray(targets, "float32"))


@pytest.mark.parametrize("model", ["classifier", "tagger"])
def test_a_wrong_upstream_gradient_leaves_the_tape_for_a_corrected_call(xb, model):
    rng = np.random.default_rng(0)
    x = _ids(xb, rng, (T, B), V)
    if model == "classifier":
        layer, name, shape = SequenceClassifier(3, vocab_size=V, hidden_size=2, seed=0), "d_logits", (B, 3)
    else:
        layer, name, shape = SequenceTagger(3, vocab_size=V, hidden_size=2, seed=0), "d_emissions", (T, B, 3)
    out, backprop = layer.forward(x)
    with pytest.raises(ShapeError, match=rf"^{name}: expected the shape of the (logits|emissions) "
                                         rf"\({', '.join(map(str, shape))},?\), received \(2, 5\)$"):
        backprop(xb.asarray(np.ones((2, 5)), "float32"))
    assert backprop(xb.asarray(np.ones(shape), "float32")) is None
    assert float(np.abs(to_numpy(layer.grads["head.bias"])).sum()) > 0


def test_empty_inputs_and_conditions_are_named_in_the_callers_terms():
    tagger = SequenceTagger(2, vocab_size=4, hidden_size=2)
    with pytest.raises(ShapeError, match=r"^x: expected at least one timestep and one batch row \(T, B\) of token "
                                         r"ids, received shape \(3, 0\)$"):
        tagger(np.zeros((3, 0), dtype=np.int64))
    gen = ConditionalGenerator(5, num_conditions=2, hidden_size=2)
    with pytest.raises(ConfigError, match=r"^cond: expected host condition ids \(N,\) with at least one condition, "
                                          r"received an empty list \(shape \(0,\)\)$"):
        gen.generate([])
    tags = np.full((3, 2), 2)
    with pytest.raises(ConfigError, match=r"^tags: expected tag ids in \[0, 2\) \(num_tags is 2\), received values "
                                          r"in \[2, 2\]$"):
        tagger.loss_and_grads(np.zeros((3, 2), dtype=np.int64), tags)


def test_generator_mask_is_checked_and_masked_targets_are_not_read(xb):
    gen = ConditionalGenerator(5, num_conditions=2, hidden_size=2, seed=0)
    ids, cond = _ids(xb, np.random.default_rng(0), (T, B), 5), _ids(xb, np.random.default_rng(1), (B,), 2)
    with pytest.raises(ShapeError, match=r"^mask: expected a bool array of the shape of targets \(4, 3\), received "
                                         r"shape \(3,\)$"):
        gen.loss_and_grads(ids, ids, cond, xb.asarray(np.ones(B, bool)))
    mask = np.ones((T, B), bool)
    mask[-1, :] = False
    padded = np.where(mask, to_numpy(ids), -100)
    full = float(to_numpy(gen.loss(ids, ids, cond, xb.asarray(mask))))
    masked = float(to_numpy(gen.loss(ids, xb.asarray(padded, "int64"), cond, xb.asarray(mask))))
    assert abs(masked - full) < 1e-6


def test_generator_refuses_bad_end_and_banned_ids_and_seeds():
    for end_id, message in ((2.7, r"end_id: expected an integer >= 0, received 2\.7"),
                            ("a", r"end_id: expected an integer >= 0, received 'a'"),
                            (5, r"end_id: expected an id in \[0, 5\), received 5")):
        with pytest.raises(ConfigError, match=rf"^{message}$"):
            ConditionalGenerator(5, num_conditions=2, hidden_size=2, end_id=end_id)
    gen = ConditionalGenerator(5, num_conditions=2, hidden_size=2, seed=0)
    with pytest.raises(ConfigError, match=r"^banned_id: expected an integer >= 0, received -1$"):
        gen.generate([0] * 4, 5, banned_id=-1)                 # not the last id (the end id): nothing would end
    for banned in (5, 4):
        with pytest.raises(ConfigError, match=rf"^banned_id: expected an id in \[0, 5\) other than end_id = 4 "
                                              rf"\(with it banned no sample ends\), received {banned}$"):
            gen.generate([0] * 4, 5, banned_id=banned)
    for seed in ("x", -1):
        with pytest.raises(ConfigError, match=rf"^seed: expected an integer >= 0 \(or None\), received {seed!r}$"):
            gen.generate([0], seed=seed)
    with pytest.raises(ConfigError, match=r"^seed: expected an integer >= 0 \(or None\), received 'a'$"):
        ConditionalGenerator(5, num_conditions=2, seed="a")


@pytest.mark.parametrize("kw", [{"temperature": 0.5}, {"top_k": 2}, {"top_p": 0.5}, {"seed": 1}])
def test_generator_greedy_refuses_sampling_controls(kw):
    (name, value), = kw.items()
    gen = ConditionalGenerator(5, num_conditions=2, hidden_size=2, seed=0)
    with pytest.raises(ConfigError, match=rf"^{name}: a sampling control; greedy does not sample \(drop it or "
                                          rf"greedy\); received {name}={value!r}$"):
        gen.generate([0], greedy=True, **kw)
    with pytest.raises(ConfigError, match=r"^greedy: expected True or False, received 'no'$"):
        gen.generate([0], greedy="no")


def test_generator_refuses_non_finite_condition_features():
    gen = ConditionalGenerator(5, condition_size=2, hidden_size=2, seed=0)
    for bad in (np.nan, np.inf):
        with pytest.raises(ConfigError, match=r"^cond: expected finite feature values, received 1 NaN or infinite "
                                              r"ones$"):
            gen.generate(np.array([[bad, 1.0]]))


def test_classifier_class_weights_threshold_and_grad_scale_are_checked():
    with pytest.raises(ConfigError, match=r"^class_weights: expected 2 finite weights > 0 \(one per class\), "
                                          r"received the str 'balanced' \(the command line's --class-weights"):
        SequenceClassifier(2, vocab_size=4, class_weights="balanced")
    with pytest.raises(ConfigError, match=r"^class_weights: expected 2 finite weights > 0 \(one per class\), "
                                          r"received \[1, 'a'\]$"):
        SequenceClassifier(2, vocab_size=4, class_weights=[1, "a"])
    x = np.zeros((3, 2), dtype=np.int64)
    labels = SequenceClassifier(2, vocab_size=4, hidden_size=2, multi_label=True, seed=0)
    for threshold in ("a", 2, 0, 1.0, np.nan, True):
        with pytest.raises(ConfigError, match=r"^threshold: expected a number in \(0, 1\), received "):
            labels.predict(x, threshold=threshold)
    assert labels.predict(x, threshold=0.3).shape == (2, 2)
    single = SequenceClassifier(2, vocab_size=4, hidden_size=2, seed=0)
    with pytest.raises(ConfigError, match=r"^threshold: only for multi_label models"):
        single.predict(x, threshold=0.3)
    for scale in ("a", np.nan, np.inf):
        with pytest.raises(ConfigError, match=r"^grad_scale: expected a finite number, received "):
            single.loss_and_grads(x, np.array([0, 1]), grad_scale=scale)
    assert all(np.all(np.asarray(g) == 0) for g in single.grads.values())     # refused before any gradient
