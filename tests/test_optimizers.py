"""Optimizers, gradient clipping and lr schedules against torch.optim / torch.nn.utils and closed forms."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import assert_close
from seqnet.backend import make_backend, to_numpy
from seqnet.errors import BackendMismatchError, ConfigError, DTypeError, ShapeError
from seqnet.training.clipping import clip_grad_norm, clip_grad_value
from seqnet.kernels.optimizers import adam_update
from seqnet.training.optimizers import make_optimizer
from seqnet.training.schedules import constant, cosine, make_schedule, step_decay, warmup

SHAPES = {"rnn.weight_ih_l0": (4, 3), "rnn.bias_ih_l0": (4,), "fc.weight": (2, 2, 3)}
N_STEPS = 5

# (optimizer name, keyword arguments shared by seqnet and torch.optim)
CASES = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.1, weight_decay=0.05)),
    ("sgd", dict(lr=0.1, momentum=0.5, weight_decay=0.05)),
    ("adagrad", dict(lr=0.1)),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05)),
    ("rmsprop", dict(lr=0.01)),
    ("rmsprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop", dict(lr=0.01, centered=True)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.05)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items() if k != "lr") for name, kw in CASES]


def _host_data(seed=0):
    """Host float64 parameters and N_STEPS gradients of varied scale (0.01 .. 10)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1) for k, s in SHAPES.items()} for _ in range(N_STEPS)]
    return params, grads


def _on(backend, host, dtype="float32"):
    return {k: backend.asarray(v, dtype) for k, v in host.items()}


def _torch_optimizer(torch, name, tensors, kwargs):
    classes = {
        "sgd": torch.optim.SGD,
        "adagrad": torch.optim.Adagrad,
        "rmsprop": torch.optim.RMSprop,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
    }
    return classes[name](tensors, foreach=False, **kwargs)


# -- against torch.optim ---------------------------------------------------------------------
def _compare_with_torch(backend, dtype, name, kwargs, tol, lrs=None):
    """Feed the same gradients to seqnet and torch.optim; parameters must agree after every step."""
    torch = pytest.importorskip("torch")
    host_params, host_grads = _host_data()
    params = _on(backend, host_params, dtype)
    opt = make_optimizer(name, params, **kwargs)
    tparams = {k: torch.tensor(v, dtype=getattr(torch, dtype), requires_grad=True) for k, v in host_params.items()}
    topt = _torch_optimizer(torch, name, list(tparams.values()), kwargs)
    for step, host_g in enumerate(host_grads):
        if lrs is not None:
            opt.lr = lrs[step]
            topt.param_groups[0]["lr"] = lrs[step]
        opt.step(params, _on(backend, host_g, dtype))
        for k, tp in tparams.items():
            tp.grad = torch.tensor(host_g[k], dtype=getattr(torch, dtype))
        topt.step()
        for k, tp in tparams.items():
            assert_close(backend, params[k], tp.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{k} after step {step + 1}")


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_matches_torch_float32(xb, name, kwargs):
    _compare_with_torch(xb, "float32", name, kwargs, tol=1e-6)


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_matches_torch_float64(xb64, name, kwargs):
    _compare_with_torch(xb64, "float64", name, kwargs, tol=1e-12)


@pytest.mark.parametrize("name, kwargs", [CASES[1], CASES[11]], ids=[CASE_IDS[1], CASE_IDS[11]])
def test_scheduled_lr_matches_torch(xb, name, kwargs):
    schedule = make_schedule("cosine", kwargs["lr"], total_steps=N_STEPS, warmup_steps=2)
    _compare_with_torch(xb, "float32", name, kwargs, tol=1e-6, lrs=[schedule(k) for k in range(N_STEPS)])


# -- closed forms (no torch needed) ------------------------------------------------------------
def _first_steps(backend, name, kwargs, n_steps):
    host_params, host_grads = _host_data()
    params = _on(backend, host_params)
    opt = make_optimizer(name, params, **kwargs)
    for g in host_grads[:n_steps]:
        opt.step(params, _on(backend, g))
    return opt, params, host_params, host_grads


def test_sgd_is_p_minus_lr_g(xb):
    _, params, p, g = _first_steps(xb, "sgd", dict(lr=0.1), 2)
    for k in SHAPES:
        assert_close(xb, params[k], p[k] - 0.1 * g[0][k] - 0.1 * g[1][k])


def test_sgd_momentum_closed_form(xb):
    _, params, p, g = _first_steps(xb, "sgd", dict(lr=0.1, momentum=0.9), 2)
    for k in SHAPES:
        assert_close(xb, params[k], p[k] - 0.1 * g[0][k] - 0.1 * (0.9 * g[0][k] + g[1][k]))


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        # first Adam/AdamW step: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps) ~ lr * sign(g)
        ("adam", dict(lr=0.01), lambda p, g: p - 0.01 * g / (np.abs(g) + 1e-8)),
        ("adamw", dict(lr=0.01, weight_decay=0.1), lambda p, g: p * (1 - 0.001) - 0.01 * g / (np.abs(g) + 1e-8)),
        ("adagrad", dict(lr=0.1), lambda p, g: p - 0.1 * g / (np.abs(g) + 1e-10)),
        ("rmsprop", dict(lr=0.01, alpha=0.99), lambda p, g: p - 0.01 * g / (0.1 * np.abs(g) + 1e-8)),
    ],
    ids=["adam", "adamw", "adagrad", "rmsprop"],
)
def test_first_step_closed_form(xb, name, kwargs, expected):
    _, params, p, g = _first_steps(xb, name, kwargs, 1)
    for k in SHAPES:
        assert_close(xb, params[k], expected(p[k], g[0][k]))
    if name.startswith("adam"):
        for k in SHAPES:
            np.testing.assert_allclose(to_numpy(params[k]), p[k] * (1 - 0.001 * (name == "adamw")) - 0.01 * np.sign(g[0][k]), atol=1e-5)


def test_state_lives_on_the_params_backend(xb):
    opt, params, _, _ = _first_steps(xb, "rmsprop", dict(lr=0.01, momentum=0.9, centered=True), 2)
    for k, state in opt.state.items():
        assert set(state) == {"square_avg", "momentum_buffer", "grad_avg"}
        for a in state.values():
            assert xb.owns(a) and a.dtype == params[k].dtype and tuple(a.shape) == SHAPES[k]
    assert isinstance(opt.step_count, int) and opt.step_count == 2
    assert isinstance(opt.lr, float)


def test_step_runs_the_kernel_that_dispatch_selects(xb, monkeypatch):
    from seqnet import kernels

    calls, selected = [], kernels.kernel

    def spy(*args, **kwargs):
        calls.append(kwargs["step"])
        return adam_update(*args, **kwargs)

    monkeypatch.setattr(kernels, "kernel", lambda backend, name: spy if name == "adam_update" else selected(backend, name))
    _first_steps(xb, "adam", dict(lr=0.01), 2)
    assert calls == [1, 1, 1, 2, 2, 2]


# -- checkpoint state ------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_state_dict_round_trip(xb, name, kwargs):
    host_params, host_grads = _host_data()
    params_a = _on(xb, host_params)
    opt_a = make_optimizer(name, params_a, **kwargs)
    for g in host_grads[:2]:
        opt_a.step(params_a, _on(xb, g))
    json_state, arrays = opt_a.state_dict()
    json_state = json.loads(json.dumps(json_state))  # must survive JSON
    assert all(type(a) is np.ndarray for a in arrays.values())

    params_b = dict(params_a)
    opt_b = make_optimizer(name, params_b, lr=0.5)  # default hyper-parameters: loading restores them
    opt_b.load_state_dict(json_state, arrays, xb)
    assert opt_b.lr == opt_a.lr and opt_b.hyperparams == opt_a.hyperparams and opt_b.step_count == 2
    for g in host_grads[2:]:
        opt_a.step(params_a, _on(xb, g))
        opt_b.step(params_b, _on(xb, g))
        for k in SHAPES:
            assert_close(xb, params_b[k], params_a[k], rtol=0, atol=0)


def test_state_moves_between_backends(xb):
    host_params, host_grads = _host_data()
    cpu = make_backend("numpy")
    params_np = _on(cpu, host_params)
    opt_np = make_optimizer("adam", params_np, lr=0.01)
    for g in host_grads[:2]:
        opt_np.step(params_np, _on(cpu, g))
    params = {k: xb.asarray(to_numpy(v), "float32") for k, v in params_np.items()}
    opt = make_optimizer("adam", params, lr=0.01)
    opt.load_state_dict(*opt_np.state_dict(), xb)
    assert all(xb.owns(a) for state in opt.state.values() for a in state.values())
    for g in host_grads[2:]:
        opt_np.step(params_np, _on(cpu, g))
        opt.step(params, _on(xb, g))
    for k in SHAPES:
        assert_close(xb, params[k], params_np[k])


def test_load_state_dict_rejects_mismatches(xb):
    params = _on(xb, _host_data()[0])
    opt = make_optimizer("adam", params, lr=0.01)
    json_state, arrays = opt.state_dict()
    fresh = make_optimizer("sgd", params, lr=0.1)
    with pytest.raises(ConfigError, match="optimizer 'sgd'.*received 'adam'"):
        fresh.load_state_dict(json_state, arrays, xb)
    missing = {k: v for k, v in arrays.items() if k != "fc.weight.exp_avg"}
    with pytest.raises(ConfigError, match="fc.weight.exp_avg"):
        opt.load_state_dict(json_state, missing, xb)
    with pytest.raises(ShapeError, match=r"rnn.bias_ih_l0.exp_avg.*expected shape \(4,\)"):
        opt.load_state_dict(json_state, {**arrays, "rnn.bias_ih_l0.exp_avg": np.zeros(5, np.float32)}, xb)
    with pytest.raises(ConfigError, match="params"):
        opt.load_state_dict({**json_state, "params": ["fc.weight"]}, arrays, xb)
    assert opt.step_count == 0  # failed loads change nothing


def test_a_state_whose_lr_a_schedule_set_to_zero_loads_by_backend_name(xb):
    params = _on(xb, _host_data()[0])
    opt = make_optimizer("adam", params, lr=0.01)
    opt.lr = 0.0                                   # a cosine schedule's last step
    again = make_optimizer("adam", params, lr=0.5)
    again.load_state_dict(*opt.state_dict(), backend=xb.name if xb.name == "numpy" else xb)
    assert again.lr == 0.0
    with pytest.raises(ConfigError, match=r"^backend: expected one of .* received 'nope'$"):
        again.load_state_dict(*opt.state_dict(), backend="nope")


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("sgd", dict(lr=0.0), r"lr: expected a real number in \(0.0, inf\), received 0.0"),
        ("sgd", dict(lr=-1e-3), "lr: .*received -0.001"),
        ("adam", dict(lr=float("nan")), "lr: .*received nan"),
        ("adam", dict(lr="0.1"), "lr: .*received '0.1'"),
        ("sgd", dict(lr=0.1, momentum=-0.5), "momentum: .*received -0.5"),
        ("sgd", dict(lr=0.1, nesterov=True), "nesterov: .*momentum > 0"),
        ("sgd", dict(lr=0.1, weight_decay=-1), "weight_decay: .*received -1"),
        ("adagrad", dict(lr=0.1, lr_decay=-0.1), "lr_decay: .*received -0.1"),
        ("adagrad", dict(lr=0.1, eps=-1e-10), "eps: .*received -1e-10"),
        ("rmsprop", dict(lr=0.1, alpha=1.5), r"alpha: .*\[0.0, 1.0\], received 1.5"),
        ("rmsprop", dict(lr=0.1, centered=1), "centered: expected True or False, received 1"),
        ("adam", dict(lr=0.1, betas=(1.0, 0.999)), r"betas\[0\]: .*received 1.0"),
        ("adam", dict(lr=0.1, betas=0.9), r"betas: expected a pair .*received 0.9"),
        ("adamw", dict(lr=0.1, weight_decay=-0.01), "weight_decay: .*received -0.01"),
        ("sgd", dict(lr=0.1, momentum=math.inf), r"momentum: expected a real number in \[0.0, inf\), received inf"),
        ("adam", dict(lr=0.1, eps=math.inf), "eps: .*received inf"),
        ("adam", dict(lr=math.inf), "lr: .*received inf"),
        ("adam", dict(lr=0.1, momentum=0.9), r"unknown options \['momentum'\]"),
        ("lbfgs", dict(lr=0.1), r"optimizer: expected one of \('sgd', 'adagrad', 'rmsprop', 'adam', 'adamw'\), received 'lbfgs'"),
    ],
)
def test_bad_hyperparameters(xb, name, kwargs, message):
    params = _on(xb, _host_data()[0])
    with pytest.raises(ConfigError, match=message):
        make_optimizer(name, params, **kwargs)


def test_bad_params_and_grads(xb):
    with pytest.raises(ConfigError, match="params: expected a non-empty dict"):
        make_optimizer("sgd", {}, lr=0.1)
    with pytest.raises(DTypeError, match="floating-point"):
        make_optimizer("sgd", {"ids": xb.asarray(np.arange(3), "int64")}, lr=0.1)
    params = _on(xb, _host_data()[0])
    opt = make_optimizer("sgd", params, lr=0.1)
    grads = {k: xb.xp.zeros_like(v) for k, v in params.items() if k != "fc.weight"}
    with pytest.raises(ConfigError, match="params/grads: expected the parameter names"):
        opt.step(params, grads)


def _other_backend(xb):
    """A backend that is not ``xb``'s: numpy for every other backend, strict's device1 for numpy."""
    return make_backend("array_api_strict", "device1") if xb.name == "numpy" else make_backend("numpy")


@pytest.mark.parametrize("moved", ["params", "one grad"])
def test_arrays_of_another_backend_are_refused_before_any_update(xb, moved):
    """A model moved after its optimizer was built, or one gradient from elsewhere: one line
    naming the array and both backends, not the array library's own error."""
    params = _on(xb, _host_data()[0])
    opt = make_optimizer("adam", params, lr=0.1)
    before = {k: to_numpy(v) for k, v in params.items()}
    other = _other_backend(xb)
    grads = {k: xb.xp.ones_like(v) for k, v in params.items()}
    if moved == "params":
        params = {k: other.asarray(to_numpy(v), "float32") for k, v in params.items()}
        grads = {k: other.asarray(to_numpy(v), "float32") for k, v in grads.items()}
        kind = "params"
    else:
        grads["fc.weight"] = other.asarray(np.ones(SHAPES["fc.weight"]), "float32")
        kind = "grads"
    name = "rnn.weight_ih_l0" if moved == "params" else "fc.weight"
    with pytest.raises(BackendMismatchError, match=rf"^{kind}\['{name}'\]: expected a {xb.name} array on device "
                                                   rf".*\(this optimizer's\), received a {other.name} array .*; build "
                                                   r"the optimizer after moving the model"):
        opt.step(params, grads)
    assert opt.step_count == 0
    if moved != "params":
        assert all(np.array_equal(to_numpy(params[k]), before[k]) for k in params)


@pytest.mark.parametrize("lr", [-5.0, float("nan"), float("inf"), "0.1", None, True])
def test_setting_a_bad_lr_is_refused(xb, lr):
    opt = make_optimizer("adam", _on(xb, _host_data()[0]), lr=0.1)
    with pytest.raises(ConfigError, match=rf"^lr: expected a real number in \[0.0, inf\), received {lr!r}$"):
        opt.lr = lr
    assert opt.lr == 0.1
    opt.lr = np.float32(0.5)                   # a schedule's value: numbers of any kind, 0 included
    assert opt.lr == 0.5 and type(opt.lr) is float
    opt.lr = 0
    assert opt.lr == 0.0


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_gradient_unlike_its_parameter_is_refused_before_any_update(xb, name):
    """A transposed or broadcastable gradient, or one of another dtype, names the parameter;
    no parameter, state or step count changes."""
    host = {"embed.weight": np.arange(40.0).reshape(10, 4) / 40, "fc.bias": np.ones(4)}
    params = _on(xb, host)
    opt = make_optimizer(name, params, lr=0.1)
    good = {k: xb.xp.ones_like(v) for k, v in params.items()}
    cases = [
        ({"embed.weight": xb.asarray(np.ones((4, 10)), "float32")}, ShapeError,
         r"^grads\['embed.weight'\]: expected shape \(10, 4\) like its parameter, received \(4, 10\)$"),
        ({"embed.weight": xb.asarray(np.ones(4), "float32")}, ShapeError,            # would broadcast
         r"^grads\['embed.weight'\]: expected shape \(10, 4\) like its parameter, received \(4,\)$"),
        ({"fc.bias": xb.asarray(np.ones((1, 4)), "float32")}, ShapeError,
         r"^grads\['fc.bias'\]: expected shape \(4,\) like its parameter, received \(1, 4\)$"),
        ({"fc.bias": [1.0, 1.0, 1.0, 1.0]}, ShapeError,
         r"^grads\['fc.bias'\]: expected an array of shape \(4,\) like its parameter, received list$"),
    ]
    if xb.supports_float64:
        cases.append(({"fc.bias": xb.asarray(np.ones(4), "float64")}, DTypeError,
                      r"^grads\['fc.bias'\]: expected dtype float32 like its parameter, received float64$"))
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            opt.step(params, {**good, **bad})
    with pytest.raises(ShapeError, match=r"^params\['fc.bias'\]: expected shape \(4,\) as when this optimizer was "
                                         r"built, received \(5,\)$"):
        opt.step({**params, "fc.bias": xb.asarray(np.ones(5), "float32")}, good)
    assert opt.step_count == 0
    for k, v in host.items():
        np.testing.assert_array_equal(to_numpy(params[k]), v.astype(np.float32))
    opt.step(params, good)                                              # and a matching gradient steps
    assert opt.step_count == 1
    assert not np.array_equal(to_numpy(params["fc.bias"]), np.ones(4, dtype=np.float32))


# -- clipping --------------------------------------------------------------------------------
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clips", "no-clip"])
def test_clip_grad_norm_matches_torch(xb, max_norm):
    torch = pytest.importorskip("torch")
    host = _host_data()[1][0]
    grads = _on(xb, host)
    norm = clip_grad_norm(grads, max_norm, xp=xb.xp)
    tensors = [torch.zeros(s, requires_grad=True) for s in SHAPES.values()]
    for t, k in zip(tensors, SHAPES):
        t.grad = torch.tensor(host[k], dtype=torch.float32)
    tnorm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert tuple(norm.shape) == () and not isinstance(norm, np.generic)
    assert_close(xb, norm, tnorm.numpy())
    for t, k in zip(tensors, SHAPES):
        assert_close(xb, grads[k], t.grad.numpy(), err_msg=k)


def test_clip_grad_norm_closed_form(xb):
    host = _host_data()[1][1]
    grads = _on(xb, host)
    norm = clip_grad_norm(grads, 1.0, xp=xb.xp)
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float32).astype(np.float64) ** 2)) for g in host.values()))
    assert_close(xb, norm, np.asarray(expected))
    for k, g in host.items():
        assert_close(xb, grads[k], g * (1.0 / (expected + 1e-6)))
    assert float(np.sqrt(sum(np.sum(to_numpy(g) ** 2) for g in grads.values()))) <= 1.0 + 1e-6


def test_clip_grad_norm_of_zero_grads_stays_zero(xb):
    grads = {k: xb.zeros(s, xb.xp.float32) for k, s in SHAPES.items()}
    norm = clip_grad_norm(grads, 1.0, xp=xb.xp)
    assert_close(xb, norm, np.asarray(0.0))
    for k, s in SHAPES.items():
        assert_close(xb, grads[k], np.zeros(s), rtol=0, atol=0)


def test_clip_grad_value_matches_torch_and_closed_form(xb):
    host = _host_data()[1][2]
    grads = _on(xb, host)
    clip_grad_value(grads, 0.3, xp=xb.xp)
    for k, g in host.items():
        assert_close(xb, grads[k], np.clip(g, -0.3, 0.3))
    torch = pytest.importorskip("torch")
    tensors = [torch.zeros(s, requires_grad=True) for s in SHAPES.values()]
    for t, k in zip(tensors, SHAPES):
        t.grad = torch.tensor(host[k], dtype=torch.float32)
    torch.nn.utils.clip_grad_value_(tensors, 0.3)
    for t, k in zip(tensors, SHAPES):
        assert_close(xb, grads[k], t.grad.numpy(), rtol=0, atol=0)


def test_clipping_rejects_bad_values(xb):
    grads = _on(xb, _host_data()[1][0])
    with pytest.raises(ConfigError, match="max_norm: expected a real number > 0, received 0"):
        clip_grad_norm(grads, 0, xp=xb.xp)
    with pytest.raises(ConfigError, match="clip_value: expected a real number >= 0, received -1"):
        clip_grad_value(grads, -1, xp=xb.xp)
    with pytest.raises(ConfigError, match="grads: expected a non-empty dict"):
        clip_grad_norm({}, 1.0, xp=xb.xp)


def test_clipping_takes_the_gradients_namespace_and_refuses_a_mix(xb):
    host = _host_data()[1][0]
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float32).astype(np.float64) ** 2)) for g in host.values()))
    for xp in ({}, {"xp": None}, {"xp": xb.xp}):               # xp is optional: the gradients' own
        grads = _on(xb, host)
        assert float(to_numpy(clip_grad_norm(grads, 1.0, **xp))) == pytest.approx(expected, rel=1e-5)
        assert xb.owns(grads["fc.weight"])
    other = _other_backend(xb)
    with pytest.raises(BackendMismatchError, match=rf"^xp: expected the namespace of the gradients \("
                                                   rf"{'array_api_strict' if xb.name == 'strict' else xb.name}"):
        clip_grad_norm(_on(xb, host), 1.0, xp=other.xp)
    mixed = _on(xb, host)
    mixed["fc.weight"] = other.asarray(host["fc.weight"], "float32")
    for clip in (lambda g: clip_grad_norm(g, 1.0), lambda g: clip_grad_value(g, 1.0)):
        with pytest.raises(BackendMismatchError, match=r"^grads\['fc.weight'\]: expected a .* like "
                                                       r"grads\['rnn.weight_ih_l0'\], received a "):
            clip(mixed)
    with pytest.raises(DTypeError, match=r"^grads\['ids'\]: expected a floating-point gradient, received dtype "
                                         r"int64$"):
        clip_grad_norm({"ids": xb.asarray(np.arange(3), "int64")}, 1.0)
    with pytest.raises(ConfigError, match=r"^grads\['g'\]: expected an array, received list$"):
        clip_grad_norm({"g": [1.0]}, 1.0)


# -- schedules -------------------------------------------------------------------------------
def test_schedules_closed_forms():
    assert [constant(0.1)(k) for k in (0, 7, 1000)] == [0.1, 0.1, 0.1]
    assert [step_decay(1.0, 3, 0.5)(k) for k in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    c = cosine(1.0, 10, min_lr=0.1)
    for k in range(12):
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * min(k, 10) / 10)) / 2
        assert c(k) == pytest.approx(expected, rel=1e-15)
    assert c(0) == 1.0 and c(5) == pytest.approx(0.55) and c(10) == c(100) == pytest.approx(0.1)
    w = warmup(constant(0.8), 4)
    assert [w(k) for k in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert warmup(c, 0) is c


def test_make_schedule():
    s = make_schedule("cosine", 1.0, total_steps=10, warmup_steps=4, min_lr=0.0)
    assert [s(k) for k in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert [s(k) for k in range(4, 11)] == pytest.approx([(1 + math.cos(math.pi * j / 6)) / 2 for j in range(7)])
    s = make_schedule("step", 0.1, total_steps=100, step_size=10, gamma=0.5)
    assert s(9) == pytest.approx(0.1) and s(10) == pytest.approx(0.05) and s(25) == pytest.approx(0.025)
    s = make_schedule("step", 1.0, total_steps=32, warmup_steps=2)  # default step_size: 30 // 3 = 10
    assert [s(k) for k in (2, 11, 12, 21, 22, 31)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert make_schedule("constant", 0.3, total_steps=5)(4) == 0.3
    assert make_schedule("constant", 0.3, total_steps=5, warmup_steps=2)(0) == pytest.approx(0.15)


def test_schedules_match_torch():
    torch = pytest.importorskip("torch")
    cases = [
        (step_decay(0.1, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
        (cosine(0.1, 20, min_lr=0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.01)),
    ]
    for schedule, make in cases:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = make(opt)
        for k in range(21):
            assert schedule(k) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), (schedule, k)
            opt.step()
            scheduler.step()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: constant(0), r"lr: expected a finite number > 0.0, received 0"),
        (lambda: step_decay(0.1, 0, 0.5), "step_size: expected an int >= 1, received 0"),
        (lambda: step_decay(0.1, 2, -0.5), "gamma: .*received -0.5"),
        (lambda: cosine(0.1, 10, min_lr=0.2), "min_lr: expected a value <= lr=0.1, received 0.2"),
        (lambda: cosine(0.1, 2.5), "total_steps: expected an int >= 1, received 2.5"),
        (lambda: warmup(constant(0.1), -1), "warmup_steps: expected an int >= 0, received -1"),
        (lambda: make_schedule("linear", 0.1, 10), r"schedule: expected one of \('constant', 'step', 'cosine'\), received 'linear'"),
        (lambda: make_schedule("step", 0.1, 10, step_size=0), "step_size: expected an int >= 1, received 0"),
        (lambda: make_schedule("cosine", 0.1, 10, gamma=0.5), r"unknown options \['gamma'\]"),
        (lambda: make_schedule("cosine", 0.1, 10, warmup_steps=10), "warmup_steps: expected fewer than total_steps=10, received 10"),
        (lambda: constant(0.1)(-1), "step: expected an int >= 0, received -1"),
    ],
)
def test_bad_schedules(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
