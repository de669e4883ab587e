"""LSTM cell (Hochreiter & Schmidhuber; PyTorch's formulation, no peepholes).

    i, f, o = sigmoid(.)   g = tanh(.)      of  x W_ih + b_ih + h W_hh + b_hh
    c' = f * c + i * g
    h' = o * tanh(c')

PyTorch orders the gates i, f, g, o; internally they are i, f, o, g so that one
sigmoid covers the contiguous block of the first 3H columns.
"""
from __future__ import annotations

from .base import Cell, sigmoid


class LSTMCell(Cell):
    name = "lstm"
    num_gates = 4
    state_names = ("h", "c")
    torch_gate_order = ("i", "f", "g", "o")
    internal_gate_order = ("i", "f", "o", "g")
    kernel = "lstm"

    def forward_step(self, xproj, state, p, *, xp):
        h, c = state
        hidden = h.shape[-1]
        z = xproj + xp.matmul(h, p.weight_hh)          # (B, 4H)
        ifo = sigmoid(z[:, : 3 * hidden], xp=xp)       # (B, 3H): i | f | o
        g = xp.tanh(z[:, 3 * hidden :])                # (B, H)
        i, f, o = ifo[:, :hidden], ifo[:, hidden : 2 * hidden], ifo[:, 2 * hidden :]
        c_new = f * c + i * g
        tanh_c = xp.tanh(c_new)
        h_new = o * tanh_c
        return (h_new, c_new), (c, ifo, g, tanh_c)

    def backward_step(self, d_state, cache, p, *, xp):
        dh, dc_next = d_state
        c, ifo, g, tanh_c = cache
        hidden = c.shape[-1]
        i, f, o = ifo[:, :hidden], ifo[:, hidden : 2 * hidden], ifo[:, 2 * hidden :]
        dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
        d_ifo = xp.concat([dc * g, dc * c, dh * tanh_c], axis=1)   # dL/d(i, f, o)
        d_z = xp.concat([d_ifo * ifo * (1 - ifo),                   # sigmoid' = s (1 - s)
                         dc * i * (1 - g * g)], axis=1)             # tanh' = 1 - tanh^2
        dh_prev = xp.matmul(d_z, xp.matrix_transpose(p.weight_hh))
        return (dh_prev, dc * f), d_z, d_z, None
