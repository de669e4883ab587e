"""Bad input is refused with an error that says what was expected and what was received.

Some asserts use the built-in base classes (ValueError, TypeError, RuntimeError) on purpose:
seqnet's errors subclass them, so callers' existing ``except ValueError`` keeps working.
"""
from __future__ import annotations

import numpy as np
import pytest

import seqnet
from seqnet.errors import BackendError, BackendMismatchError, ConfigError, DTypeError, SeqnetError, ShapeError

T, B, I, H = 4, 3, 3, 2


def _x(shape=(T, B, I), dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


@pytest.fixture
def rnn():
    with seqnet.backend("numpy"):
        return seqnet.RNN(I, H, seed=0)


@pytest.fixture
def lstm():
    with seqnet.backend("numpy"):
        return seqnet.LSTM(I, H, num_layers=2, seed=0)


# -- x ---------------------------------------------------------------------------------------
def test_x_wrong_rank(rnn):
    with pytest.raises(ShapeError, match=r"x: expected a 3-D array, received shape \(3, 3\)"):
        rnn(_x((B, I)))
    with pytest.raises(ValueError, match=r"3-D.*\(1, 4, 3, 3\)"):
        rnn(_x((1, T, B, I)))


def test_x_wrong_feature_size(rnn):
    with pytest.raises(ShapeError, match=r"feature size \(last dim\) 3, received shape \(4, 3, 5\)"):
        rnn(_x((T, B, 5)))


def test_input_table_checks(lstm):
    with seqnet.backend("numpy"):
        ids, table = np.zeros((T, B), dtype=np.int64), _x((5, 4 * H))
        with pytest.raises(ShapeError, match=r"input_table: expected shape \(V, 8\) .*received \(5, 3\)"):
            lstm(ids, input_table=_x((5, 3)))
        with pytest.raises(DTypeError, match="x: expected integer token ids .*received dtype float32"):
            lstm(_x((T, B)), input_table=table)
        with pytest.raises(ShapeError, match=r"x: expected a 2-D array, received shape \(4, 3, 1\)"):
            lstm(ids[..., None], input_table=table)
        with pytest.raises(ConfigError, match="input_table: needs a unidirectional layer"):
            seqnet.GRU(I, H, bidirectional=True, seed=0)(ids, input_table=_x((5, 3 * H)))


def test_x_empty(rnn):
    with pytest.raises(ShapeError, match=r"at least one timestep"):
        rnn(_x((0, B, I)))


def test_integer_x_is_a_dtype_error_mentioning_int(rnn):
    with pytest.raises(DTypeError, match=r"expected dtype float32, received an integer int64"):
        rnn(np.ones((T, B, I), dtype=np.int64))
    with pytest.raises(TypeError, match=r"int32"):
        rnn(np.ones((T, B, I), dtype=np.int32))


def test_float64_x_to_float32_layer(rnn):
    with pytest.raises(DTypeError, match=r"x: expected dtype float32, received a float64 array"):
        rnn(_x(dtype=np.float64))


def test_float32_x_to_float64_layer():
    gru = seqnet.GRU(I, H, dtype="float64", seed=0)
    with pytest.raises(TypeError, match=r"expected dtype float64, received a float32"):
        gru(_x())


def test_not_an_array(rnn):
    with pytest.raises(BackendMismatchError, match=r"x: expected a numpy array.*builtins.list"):
        rnn(_x().tolist())


# -- hx ----------------------------------------------------------------------------------------
def test_hx_wrong_shape(rnn):
    with pytest.raises(ShapeError, match=r"hx: expected shape \(1, 3, 2\) \(D\*num_layers, B, H\), received \(2, 3, 2\)"):
        rnn(_x(), np.zeros((2, B, H), np.float32))
    with pytest.raises(ValueError, match=r"hx: expected a 3-D array, received shape \(3, 2\)"):
        rnn(_x(), np.zeros((B, H), np.float32))


def test_hx_wrong_dtype(rnn):
    with pytest.raises(DTypeError, match=r"hx: expected dtype float32, received a float64"):
        rnn(_x(), np.zeros((1, B, H)))


def test_lstm_hx_not_a_tuple(lstm):
    with pytest.raises(ShapeError, match=r"hx: expected a tuple of 2 arrays \(h and c\), received a ndarray"):
        lstm(_x(), np.zeros((2, B, H), np.float32))
    with pytest.raises(ValueError, match=r"tuple of 2 arrays.*received a tuple of 1"):
        lstm(_x(), (np.zeros((2, B, H), np.float32),))


def test_gru_hx_given_as_a_tuple_says_the_state_is_one_array():
    gru = seqnet.GRU(I, H, num_layers=2, seed=0)
    with pytest.raises(ShapeError, match=r"hx: expected one \(D\*num_layers, B, H\) array .* received a tuple of 1"):
        gru(_x(), (np.zeros((2, B, H), np.float32),))


def test_lstm_c0_wrong_shape_names_the_element(lstm):
    with pytest.raises(ShapeError, match=r"hx\[1\]: expected shape \(2, 3, 2\)"):
        lstm(_x(), (np.zeros((2, B, H), np.float32), np.zeros((1, B, H), np.float32)))


# -- lengths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, T + 1])
def test_lengths_out_of_range(rnn, bad):
    lengths = [T, bad, 1]
    with pytest.raises(ConfigError, match=rf"lengths: every length must lie in 1\.\.{T} \(T\), received \[{bad}\]"):
        rnn(_x(), lengths=lengths)


def test_lengths_wrong_count(rnn):
    with pytest.raises(ShapeError, match=r"lengths: expected one length per batch row, shape \(3,\), received shape \(2,\)"):
        rnn(_x(), lengths=[T, T])
    with pytest.raises(ValueError, match=r"received shape \(4,\)"):
        rnn(_x(), lengths=np.array([1, 2, 3, 4]))


def test_float_lengths(rnn):
    with pytest.raises(DTypeError, match=r"lengths: expected integers, received dtype float64"):
        rnn(_x(), lengths=[2.0, 3.0, 4.0])
    with pytest.raises(TypeError, match=r"lengths: expected integers"):
        rnn(_x(), lengths=np.array([2, 3, 4], dtype=np.float32))


# -- arrays from another backend or device -------------------------------------------------------
def test_numpy_array_to_torch_layer():
    pytest.importorskip("torch")
    with seqnet.backend("torch"):
        gru = seqnet.GRU(I, H, seed=0)
    with pytest.raises(BackendMismatchError, match=r"x: expected a torch array on device cpu, received a numpy array") as info:
        gru(_x())
    assert "seqnet never copies silently" in str(info.value)
    with pytest.raises(TypeError, match=r"torch.*numpy"):  # BackendMismatchError is also a TypeError
        gru(seqnet.get_backend().asarray(_x(), "float32"))


def test_strict_device1_array_to_default_device_strict_layer():
    pytest.importorskip("array_api_strict")
    with seqnet.backend("array_api_strict") as default_device:
        lstm = seqnet.LSTM(I, H, seed=0)
    with seqnet.backend("array_api_strict", "device1") as device1:
        x = device1.asarray(_x(), "float32")
    with pytest.raises(BackendMismatchError, match=r"CPU_DEVICE.*device1") as info:
        lstm(x)
    assert "array_api_strict" in str(info.value)
    assert isinstance(info.value, BackendError) and isinstance(info.value, RuntimeError)
    # the same layer accepts arrays from its own device
    lstm(default_device.asarray(_x(), "float32"))


def test_hx_from_another_backend():
    pytest.importorskip("array_api_strict")
    with seqnet.backend("array_api_strict", "device1") as device1:
        rnn = seqnet.RNN(I, H, seed=0)
        x = device1.asarray(_x(), "float32")
    with pytest.raises(BackendMismatchError, match=r"hx: expected a array_api_strict array .*received a numpy array"):
        rnn(x, np.zeros((1, B, H), np.float32))


# -- constructor arguments -----------------------------------------------------------------------
def test_unknown_backend():
    with pytest.raises(ConfigError, match=r"backend: expected one of .*received 'tensorflow'"):
        seqnet.use_backend("tensorflow")
    assert seqnet.get_backend().name == "numpy"


def test_unknown_device():
    with pytest.raises(ValueError, match=r"device: the numpy backend has only device 'cpu', received 'cuda'"):
        seqnet.use_backend("numpy", "cuda")


def test_unknown_nonlinearity():
    with pytest.raises(ConfigError, match=r"nonlinearity: expected one of \('tanh', 'relu'\), received 'gelu'"):
        seqnet.RNN(I, H, nonlinearity="gelu")


@pytest.mark.parametrize("dtype", ["float16", np.float16, "int32"])
def test_unsupported_dtype(dtype):
    with pytest.raises(DTypeError, match=r"dtype: expected one of \('float32', 'float64'\), received"):
        seqnet.LSTM(I, H, dtype=dtype)
    with pytest.raises(TypeError, match=r"float16|int32"):
        seqnet.GRU(I, H, dtype=dtype)


def test_unknown_init():
    with pytest.raises(ConfigError, match=r"init: expected one of \('uniform', 'orthogonal'\), received 'xavier'"):
        seqnet.GRU(I, H, init="xavier")


@pytest.mark.parametrize("hidden_size", [0, -3, 2.5, True])
def test_non_positive_hidden_size(hidden_size):
    with pytest.raises(ConfigError, match=rf"hidden_size: expected a positive integer, received {hidden_size!r}"):
        seqnet.RNN(I, hidden_size)


@pytest.mark.parametrize("name", ["input_size", "num_layers"])
def test_non_positive_other_sizes(name):
    kw = {"input_size": I, "hidden_size": H, name: 0}
    with pytest.raises(ValueError, match=rf"{name}: expected a positive integer, received 0"):
        seqnet.LSTM(**kw)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, "0.5"])
def test_dropout_out_of_range(dropout):
    with pytest.raises(ConfigError, match=r"dropout: expected a probability in \[0, 1\), received"):
        seqnet.LSTM(I, H, num_layers=2, dropout=dropout)


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True])
def test_bad_seed_names_the_seed(seed):
    with pytest.raises(ConfigError, match=rf"^seed: expected an integer >= 0 \(or None\), received {seed!r}$"):
        seqnet.LSTM(I, H, seed=seed)


@pytest.mark.parametrize("name", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("value", ["no", "False", 1, None])
def test_flags_must_be_bools(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}: expected True or False, received {value!r}$"):
        seqnet.GRU(I, H, **{name: value})


def test_bad_forget_bias_and_layer_norm():
    with pytest.raises(ConfigError, match=r"^forget_bias: expected a finite number \(or None\), received 'x'$"):
        seqnet.LSTM(I, H, forget_bias="x")
    with pytest.raises(ConfigError, match=r"^forget_bias: expected a finite number \(or None\), received nan$"):
        seqnet.LSTM(I, H, forget_bias=float("nan"))
    with pytest.raises(ConfigError, match=r"^layer_norm: expected True or False, received 'yes'$"):
        seqnet.LSTM(I, H, layer_norm="yes")


def test_dropout_on_one_layer_warns_but_models_do_not():
    import warnings

    from seqnet.errors import SeqnetWarning
    from seqnet.models import LanguageModel

    with pytest.warns(SeqnetWarning, match=r"^dropout: acts between stacked layers, so with num_layers=1"):
        seqnet.LSTM(I, H, num_layers=1, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seqnet.LSTM(I, H, num_layers=2, dropout=0.5)
        LanguageModel(7, 4, 4, num_layers=1, dropout=0.5)       # its own dropout: embedding and output


# -- state dicts ---------------------------------------------------------------------------------
def test_state_dict_missing_key(lstm):
    state = lstm.state_dict()
    del state["bias_hh_l1"]
    with pytest.raises(ConfigError, match=r"missing \['bias_hh_l1'\], unexpected \[\]"):
        lstm.load_state_dict(state)


def test_state_dict_extra_key(lstm):
    state = lstm.state_dict()
    state["weight_ih_l2"] = np.zeros((4 * H, H))
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['weight_ih_l2'\]"):
        lstm.load_state_dict(state)


def test_state_dict_wrong_shape(lstm):
    state = lstm.state_dict()
    state["weight_hh_l0"] = np.zeros((4 * H, H + 1), np.float32)
    state["bias_ih_l1"] = np.zeros((3 * H,), np.float32)
    with pytest.raises(ShapeError, match=r"weight_hh_l0: expected \(8, 2\), received \(8, 3\); bias_ih_l1: expected \(8,\), received \(6,\)"):
        lstm.load_state_dict(state)


def test_state_dict_integer_arrays(rnn):
    state = {k: np.zeros(v.shape, np.int64) for k, v in rnn.state_dict().items()}
    with pytest.raises(ConfigError, match=r"expected floating-point arrays.*weight_ih_l0: int64"):
        rnn.load_state_dict(state)


def test_failed_load_leaves_parameters_unchanged(lstm):
    before = {k: v.copy() for k, v in lstm.state_dict().items()}
    state = {k: np.zeros_like(v) for k, v in before.items()}
    state["weight_hh_l0"] = np.zeros((1, 1), np.float32)
    with pytest.raises(SeqnetError):
        lstm.load_state_dict(state)
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# -- backprop ------------------------------------------------------------------------------------
def test_d_out_wrong_shape(lstm):
    (out, _), backprop = lstm.forward(_x())
    with pytest.raises(ShapeError, match=r"d_out: expected the shape of out \(4, 3, 2\), received \(4, 3, 3\)"):
        backprop(np.ones((T, B, H + 1), np.float32), None)


def test_d_out_wrong_dtype_and_d_h_n_wrong_shape():
    gru = seqnet.GRU(I, H, bidirectional=True, seed=0)
    (out, h_n), backprop = gru.forward(_x())
    with pytest.raises(DTypeError, match=r"d_out: expected dtype float32, received a float64"):
        backprop(np.ones(out.shape), None)
    with pytest.raises(ShapeError, match=r"d_h_n: expected shape \(2, 3, 2\)"):
        backprop(None, np.ones((1, B, H), np.float32))


def test_bool_x_is_described_as_a_bool_array(rnn):
    with pytest.raises(DTypeError, match=r"^x: expected dtype float32, received a bool array$"):
        rnn(np.ones((T, B, I), dtype=bool))
