"""Layer-normalised LSTM cell (Ba, Kiros & Hinton 2016, "Layer Normalization", eq. 20-22).

    z  = LN(x W_ih; g_ih, beta_ih) + LN(h W_hh; g_hh, beta_hh) + b_ih + b_hh      (B, 4H)
    i, f, o = sigmoid(z_i, z_f, z_o)    g = tanh(z_g)
    c' = f * c + i * g
    h' = o * tanh(LN(c'; g_c, beta_c))

LN(a; g, beta) = g * (a - mean(a)) / sqrt(var(a) + eps) + beta over the last axis: the whole
4H pre-activation vector of each path (as in the paper), and the H cells. The input path's
LN does not depend on the state, so it runs once for all timesteps in :meth:`project_input`.
Gains start at 1 and LN biases at 0. PyTorch-style names, per layer and direction:
``ln_weight_ih_l0``, ``ln_bias_ih_l0``, ``ln_weight_hh_l0``, ``ln_bias_hh_l0`` (4H, PyTorch's
gate order i, f, g, o like the biases) and ``ln_weight_c_l0``, ``ln_bias_c_l0`` (H).
"""
from __future__ import annotations

from .base import CellParam, sigmoid
from .lstm import LSTMCell

LN_EPS = 1e-5      # torch.nn.LayerNorm's default


def layer_norm(a, *, xp, eps: float = LN_EPS):
    """(a - mean) / sqrt(var + eps) over the last axis; returns (a_hat, 1 / sqrt(var + eps) (..., 1))."""
    centred = a - xp.mean(a, axis=-1, keepdims=True)
    inv_std = 1.0 / xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + eps)
    return centred * inv_std, inv_std


def layer_norm_backward(d_hat, a_hat, inv_std, *, xp):
    """dL/da from dL/d(a_hat): inv_std * (d - mean(d) - a_hat * mean(d * a_hat)) over the last axis."""
    return inv_std * (d_hat - xp.mean(d_hat, axis=-1, keepdims=True)
                      - a_hat * xp.mean(d_hat * a_hat, axis=-1, keepdims=True))


class LayerNormLSTMCell(LSTMCell):
    name = "lstm_ln"
    kernel = "lstm_ln"
    extra_params = {
        "ln_weight_ih": CellParam("gates", 1.0), "ln_bias_ih": CellParam("gates", 0.0),
        "ln_weight_hh": CellParam("gates", 1.0), "ln_bias_hh": CellParam("gates", 0.0),
        "ln_weight_c": CellParam("hidden", 1.0), "ln_bias_c": CellParam("hidden", 0.0),
    }

    def project_input(self, raw, p, *, xp):
        a_hat, inv_std = layer_norm(raw, xp=xp)
        xproj = a_hat * p.extra["ln_weight_ih"] + p.extra["ln_bias_ih"]
        return (xproj if p.input_bias is None else xproj + p.input_bias), (a_hat, inv_std)

    def project_input_backward(self, d_xproj, cache, p, *, xp):
        a_hat, inv_std = cache
        _, grads = super().project_input_backward(d_xproj, None, p, xp=xp)
        grads["ln_weight_ih"] = xp.sum(d_xproj * a_hat, axis=0)
        grads["ln_bias_ih"] = xp.sum(d_xproj, axis=0)
        return layer_norm_backward(d_xproj * p.extra["ln_weight_ih"], a_hat, inv_std, xp=xp), grads

    def forward_step(self, xproj, state, p, *, xp):
        h, c = state
        hidden = h.shape[-1]
        e = p.extra
        a_hat, a_inv = layer_norm(xp.matmul(h, p.weight_hh), xp=xp)          # (B, 4H)
        z = xproj + a_hat * e["ln_weight_hh"] + e["ln_bias_hh"]
        ifo = sigmoid(z[:, : 3 * hidden], xp=xp)                               # i | f | o
        g = xp.tanh(z[:, 3 * hidden :])
        i, f, o = ifo[:, :hidden], ifo[:, hidden : 2 * hidden], ifo[:, 2 * hidden :]
        c_new = f * c + i * g
        c_hat, c_inv = layer_norm(c_new, xp=xp)
        tanh_c = xp.tanh(c_hat * e["ln_weight_c"] + e["ln_bias_c"])
        return (o * tanh_c, c_new), (c, ifo, g, tanh_c, a_hat, a_inv, c_hat, c_inv)

    def backward_step(self, d_state, cache, p, *, xp):
        dh, dc_next = d_state
        c, ifo, g, tanh_c, a_hat, a_inv, c_hat, c_inv = cache
        hidden = c.shape[-1]
        e = p.extra
        i, f, o = ifo[:, :hidden], ifo[:, hidden : 2 * hidden], ifo[:, 2 * hidden :]
        d_lnc = dh * o * (1 - tanh_c * tanh_c)                                  # dL/d LN(c')
        dc = dc_next + layer_norm_backward(d_lnc * e["ln_weight_c"], c_hat, c_inv, xp=xp)
        d_ifo = xp.concat([dc * g, dc * c, dh * tanh_c], axis=1)
        d_z = xp.concat([d_ifo * ifo * (1 - ifo), dc * i * (1 - g * g)], axis=1)
        d_a = layer_norm_backward(d_z * e["ln_weight_hh"], a_hat, a_inv, xp=xp)  # dL/d(h W_hh)
        dh_prev = xp.matmul(d_a, xp.matrix_transpose(p.weight_hh))
        d_extra = {"ln_weight_hh": xp.sum(d_z * a_hat, axis=0), "ln_bias_hh": xp.sum(d_z, axis=0),
                   "ln_weight_c": xp.sum(d_lnc * c_hat, axis=0), "ln_bias_c": xp.sum(d_lnc, axis=0)}
        return (dh_prev, dc * f), d_z, d_a, d_extra
