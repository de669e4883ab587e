"""The layer-normalised LSTM against an independent PyTorch oracle.

PyTorch has no layer-norm LSTM, so the oracle is written here from Ba et al.'s equations
with torch.nn.functional.layer_norm and autograd, in PyTorch's gate order (i, f, g, o),
with variable lengths as masks (state frozen and output zero after a row's length). It is
loaded with seqnet's state_dict (gains and LN biases randomised first, so that a gain
confused with 1 or a bias with 0 would show), run forward, and the same upstream
gradients are pushed back through both: outputs, final states, dx, dh0, dc0 and every
parameter gradient must agree. Finite differences of the cell are in test_gradients.py.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import seqnet  # noqa: E402
from conftest import assert_close  # noqa: E402
from oracles import recurrent_matrix  # noqa: E402
from seqnet import to_numpy  # noqa: E402

T, B, I, H = 5, 3, 4, 3
LENGTHS = [3, T, 1]
TOLERANCE = {"float64": 1e-10, "float32": 2e-4}     # float32: LN over 3 units divides rounding by a small std


class TorchLayerNormLSTM(torch.nn.Module):
    """Ba et al.'s LN-LSTM, step by step with torch autograd; parameters named as seqnet's state_dict."""

    def __init__(self, state: dict, num_layers: int, bidirectional: bool, dtype):
        super().__init__()
        self.num_layers, self.directions = num_layers, 2 if bidirectional else 1
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in state.items()})

    def _unit(self, x, h, c, sfx, mask):
        p = self.params
        hidden = h.shape[-1]
        outs = []
        for t in range(x.shape[0]):
            z = (F.layer_norm(x[t] @ p["weight_ih" + sfx].T, (4 * hidden,), p["ln_weight_ih" + sfx], p["ln_bias_ih" + sfx])
                 + F.layer_norm(h @ p["weight_hh" + sfx].T, (4 * hidden,), p["ln_weight_hh" + sfx], p["ln_bias_hh" + sfx])
                 + p["bias_ih" + sfx] + p["bias_hh" + sfx])
            i, f, g, o = z.chunk(4, dim=-1)                                        # PyTorch's gate order
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(F.layer_norm(c_new, (hidden,), p["ln_weight_c" + sfx], p["ln_bias_c" + sfx]))
            m = mask[t]
            h, c = torch.where(m, h_new, h), torch.where(m, c_new, c)
            outs.append(torch.where(m, h_new, torch.zeros_like(h_new)))
        return torch.stack(outs), h, c

    def forward(self, x, h0, c0, lengths):
        steps, batch = x.shape[0], x.shape[1]
        valid = torch.arange(steps)[:, None] < torch.tensor(lengths if lengths is not None else [steps] * batch)[None]
        mask = valid[:, :, None]
        h_n, c_n, layer_input = [], [], x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.directions):
                k = layer * self.directions + d
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                if d == 0:
                    out, h, c = self._unit(layer_input, h0[k], c0[k], sfx, mask)
                else:   # reverse: each row runs backwards from its own last valid step
                    idx = torch.tensor([[(int(n) - 1 - t) if t < n else t for n in (lengths or [steps] * batch)]
                                        for t in range(steps)])
                    rev = torch.gather(layer_input, 0, idx[:, :, None].expand(-1, -1, layer_input.shape[-1]))
                    out, h, c = self._unit(rev, h0[k], c0[k], sfx, mask)
                    out = torch.gather(out, 0, idx[:, :, None].expand(-1, -1, out.shape[-1]))
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outs, dim=-1)
        return layer_input, torch.stack(h_n), torch.stack(c_n)


def check_agreement(backend, num_layers, bidirectional, lengths, dtype_name="float64", seed=0):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional)
    layer = seqnet.LSTM(I, H, layer_norm=True, dtype=dtype_name, seed=seed, **kw)
    rng = np.random.default_rng(seed + 11)
    state = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    for k in state:
        if k.startswith("ln_"):
            state[k] = (1.0 if "weight" in k else 0.0) + 0.3 * rng.standard_normal(state[k].shape)
    layer.load_state_dict(state)
    torch_dtype = getattr(torch, dtype_name)
    module = TorchLayerNormLSTM(state, num_layers, bidirectional, torch_dtype)
    n = (2 if bidirectional else 1)
    host = {"x": rng.standard_normal((T, B, I)), "h0": 0.5 * rng.standard_normal((n * num_layers, B, H)),
            "c0": 0.5 * rng.standard_normal((n * num_layers, B, H)), "d_out": rng.standard_normal((T, B, n * H)),
            "dh": rng.standard_normal((n * num_layers, B, H)), "dc": rng.standard_normal((n * num_layers, B, H))}
    dev = lambda a: backend.asarray(a, dtype_name)  # noqa: E731
    (out, (h_n, c_n)), backprop = layer.forward(dev(host["x"]), (dev(host["h0"]), dev(host["c0"])), lengths)
    dx, (dh0, dc0) = backprop(dev(host["d_out"]), (dev(host["dh"]), dev(host["dc"])))

    t = {k: torch.tensor(v, dtype=torch_dtype, requires_grad=k in ("x", "h0", "c0")) for k, v in host.items()}
    t_out, t_h, t_c = module(t["x"], t["h0"], t["c0"], lengths)
    ((t_out * t["d_out"]).sum() + (t_h * t["dh"]).sum() + (t_c * t["dc"]).sum()).backward()

    tol = TOLERANCE[dtype_name]
    pairs = [("out", out, t_out), ("h_n", h_n, t_h), ("c_n", c_n, t_c), ("dx", dx, t["x"].grad),
             ("dh0", dh0, t["h0"].grad), ("dc0", dc0, t["c0"].grad)]
    pairs += [(f"grad {k}", g, module.params[k].grad) for k, g in layer.grads.items()]
    assert {k for k, _ in module.params.items()} == set(layer.grads)
    for name, mine, theirs in pairs:
        assert_close(backend, mine, theirs.detach().numpy(), rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("cell, num_layers, bidirectional, lengths", recurrent_matrix(["lstm_ln"]))
def test_float64_full_matrix_numpy(cell, num_layers, bidirectional, lengths):
    with seqnet.backend("numpy") as backend:
        check_agreement(backend, num_layers, bidirectional, LENGTHS if lengths else None)


def test_float64_every_backend(xb64):
    check_agreement(xb64, 2, True, LENGTHS)


@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_float32_every_backend(xb, lengths):
    check_agreement(xb, 1, False, lengths, dtype_name="float32")


def test_layer_norm_changes_the_lstm():
    """The layer-norm cell is not the plain LSTM under another name (same weights, other outputs)."""
    plain = seqnet.LSTM(I, H, seed=3)
    normed = seqnet.LSTM(I, H, seed=3, layer_norm=True)
    common = {k: v for k, v in normed.state_dict().items() if not k.startswith("ln_")}
    plain.load_state_dict(common)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    assert np.max(np.abs(to_numpy(plain(x)[0]) - to_numpy(normed(x)[0]))) > 1e-2
