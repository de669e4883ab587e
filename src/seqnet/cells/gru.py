"""GRU cell, in both published forms (gate order r, z, n as in PyTorch).

reset_after=True (PyTorch, cuDNN; Keras' default) — the reset gate scales the
recurrent projection *after* the matmul:

    r, z = sigmoid(x W_i{r,z} + b_i{r,z} + h W_h{r,z} + b_h{r,z})
    n    = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h'   = (1 - z) * n + z * h

reset_after=False (Cho et al. 2014) — the reset gate scales h *before* the matmul:

    n    = tanh(x W_in + b_in + (r * h) W_hn + b_hn)
"""
from __future__ import annotations

from .base import Cell, sigmoid


class GRUCell(Cell):
    name = "gru"
    num_gates = 3
    torch_gate_order = ("r", "z", "n")
    internal_gate_order = ("r", "z", "n")
    kernel = "gru"

    def __init__(self, reset_after: bool = True):
        self.reset_after = bool(reset_after)
        # b_hn sits inside r * (...) when resetting after the matmul: it cannot be pre-added.
        self.fold_hidden_bias = not self.reset_after

    def forward_step(self, xproj, state, p, *, xp):
        (h,) = state
        hidden = h.shape[-1]
        w_hh, b_hh = p.weight_hh, p.bias_hh
        if self.reset_after:
            hproj = xp.matmul(h, w_hh)                             # (B, 3H)
            if b_hh is not None:
                hproj = hproj + b_hh
            rz = sigmoid(xproj[:, : 2 * hidden] + hproj[:, : 2 * hidden], xp=xp)
            r = rz[:, :hidden]
            hn = hproj[:, 2 * hidden :]
            n = xp.tanh(xproj[:, 2 * hidden :] + r * hn)
        else:
            rz = sigmoid(xproj[:, : 2 * hidden] + xp.matmul(h, w_hh[:, : 2 * hidden]), xp=xp)
            hn = rz[:, :hidden] * h                                # r * h, the input of W_hn
            n = xp.tanh(xproj[:, 2 * hidden :] + xp.matmul(hn, w_hh[:, 2 * hidden :]))
        z = rz[:, hidden:]
        h_new = n + z * (h - n)                                    # (1 - z) n + z h
        return (h_new,), (h, rz, n, hn)

    def backward_step(self, d_state, cache, p, *, xp):
        (dh,) = d_state
        w_hh = p.weight_hh
        h, rz, n, hn = cache
        hidden = h.shape[-1]
        r, z = rz[:, :hidden], rz[:, hidden:]
        dn = (dh - dh * z) * (1 - n * n)                          # through tanh
        if self.reset_after:
            d_rz = xp.concat([dn * hn, dh * (h - n)], axis=1) * rz * (1 - rz)
            d_xproj = xp.concat([d_rz, dn], axis=1)
            d_hproj = xp.concat([d_rz, dn * r], axis=1)
            dh_prev = dh * z + xp.matmul(d_hproj, xp.matrix_transpose(w_hh))
        else:
            d_rh = xp.matmul(dn, xp.matrix_transpose(w_hh[:, 2 * hidden :]))   # dL/d(r * h)
            d_rz = xp.concat([d_rh * h, dh * (h - n)], axis=1) * rz * (1 - rz)
            d_xproj = xp.concat([d_rz, dn], axis=1)
            d_hproj = d_xproj
            dh_prev = dh * z + d_rh * r + xp.matmul(d_rz, xp.matrix_transpose(w_hh[:, : 2 * hidden]))
        return (dh_prev,), d_xproj, d_hproj, None

    def recurrent_grads(self, tape, d_hproj, d_extra, p, *, xp):
        if self.reset_after:
            return super().recurrent_grads(tape, d_hproj, d_extra, p, xp=xp)
        # Columns of W_hn multiply r * h, not h: read r * h from the reference tape's caches.
        hidden = d_hproj.shape[-1] // 3
        rh = xp.reshape(xp.stack([cache[3] for cache in tape.caches]), (-1, hidden))
        grads = super().recurrent_grads(tape, d_hproj[..., : 2 * hidden], d_extra, p, xp=xp)
        grads["weight_hh"] = xp.concat([
            grads["weight_hh"],
            xp.matmul(xp.matrix_transpose(rh), xp.reshape(d_hproj[..., 2 * hidden :], (-1, hidden))),
        ], axis=1)
        return grads
