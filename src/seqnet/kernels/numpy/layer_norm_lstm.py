"""numpy override of the reference time loop for the layer-normalised LSTM
(:class:`seqnet.cells.LayerNormLSTMCell`; its docstring has the equations).

Arranged like the LSTM kernel of :mod:`.time_loop`: feature-major per-step arrays
((features, B), so each layer norm reduces over axis 0 of a contiguous block), buffers
allocated once per call and written with ``out=``, one tanh for all four gates. The tape
keeps the gate activations, the normalised recurrent projections a_hat (T, 4H, B), the
cell states and their normalised form c_hat, and the two per-column inverse deviations;
tanh(LN(c)) is recomputed in backward. Backward overwrites the gate block with d_xproj
and the a_hat block with d_hproj, so neither gradient needs a buffer of its own.
"""
from __future__ import annotations

import numpy as np

from ...cells.layer_norm_lstm import LN_EPS
from .time_loop import (BufferTape, _batch_major, _feature_major, _order, lstm_gates_backward, lstm_gates_forward,
                        transposed_weight)


def _normalise(a: np.ndarray, out: np.ndarray, inv: np.ndarray, row: np.ndarray) -> None:
    """out = (a - mean) * inv over axis 0 of a (F, B); inv (B,) = 1 / sqrt(var + eps); row: (B,) scratch."""
    np.mean(a, axis=0, out=row)
    np.subtract(a, row, out=out)
    np.multiply(out, out, out=a)                       # a is scratch from here on
    np.mean(a, axis=0, out=inv)
    inv += LN_EPS
    np.sqrt(inv, out=inv)
    np.divide(1.0, inv, out=inv)
    out *= inv


def _normalise_backward(d_hat: np.ndarray, a_hat: np.ndarray, inv: np.ndarray, out: np.ndarray,
                        scratch: np.ndarray, row: np.ndarray) -> None:
    """out = inv * (d - mean(d) - a_hat * mean(d * a_hat)) over axis 0; d_hat is left intact."""
    np.multiply(d_hat, a_hat, out=scratch)
    np.mean(scratch, axis=0, out=row)
    np.multiply(a_hat, row, out=out)
    np.mean(d_hat, axis=0, out=row)
    out += row
    np.subtract(d_hat, out, out=out)
    out *= inv


def lstm_ln_forward(cell, xproj, state0, p, masks, reverse, *, xp, keep_tape=True):
    """Override of :func:`seqnet.kernels.time_loop.scan_forward` for the layer-norm LSTM."""
    h, c = _feature_major(state0)
    steps, batch, width = xproj.shape
    hidden = width // 4
    dtype = xproj.dtype
    e = p.extra
    g_hh, b_hh = e["ln_weight_hh"][:, None], e["ln_bias_hh"][:, None]
    g_c, b_c = e["ln_weight_c"][:, None], e["ln_bias_c"][:, None]
    w_t = transposed_weight(p)                                      # (4H, H)
    kept = steps if keep_tape else 1
    gates = np.empty((kept, width, batch), dtype)
    a_hat = np.empty((kept, width, batch), dtype)
    c_hat = np.empty((kept, hidden, batch), dtype)
    a_inv, c_inv = np.empty((kept, batch), dtype), np.empty((kept, batch), dtype)
    cs = np.empty((steps if keep_tape else 2, hidden, batch), dtype)
    hs = np.empty((steps, batch, hidden), dtype)
    hh, ig = np.empty((width, batch), dtype), np.empty((hidden, batch), dtype)
    tanh_c, h_bufs, row = np.empty((hidden, batch), dtype), np.empty((2, hidden, batch), dtype), np.empty(batch, dtype)
    c0 = c
    for k, t in enumerate(_order(steps, reverse)):
        s = t if keep_tape else 0
        z, a = gates[s], a_hat[s]
        np.matmul(w_t, h, out=hh)
        _normalise(hh, a, a_inv[s], row)                           # a_hat = LN(h W_hh) before its gain
        np.multiply(a, g_hh, out=z)
        z += b_hh
        z += xproj[t].T
        c_new = cs[t] if keep_tape else cs[k % 2]
        lstm_gates_forward(z, c, c_new, ig)                         # gates, c' = f c + i g
        np.copyto(tanh_c, c_new)
        _normalise(tanh_c, c_hat[s], c_inv[s], row)                # c_hat = LN(c') before its gain
        np.multiply(c_hat[s], g_c, out=tanh_c)
        tanh_c += b_c
        np.tanh(tanh_c, out=tanh_c)
        h = h_bufs[k % 2]
        np.multiply(z[2 * hidden:3 * hidden], tanh_c, out=h)        # h' = o tanh(LN(c'))
        hs[t] = h.T
        c = c_new
    tape = None
    if keep_tape:
        tape = BufferTape(cell, gates, hs, state0[0], reverse,
                          {"c": cs, "c0": c0, "a_hat": a_hat, "a_inv": a_inv, "c_hat": c_hat, "c_inv": c_inv})
    return hs, _batch_major((h, c)), tape


def lstm_ln_backward(cell, tape, d_hs, d_final, p, masks, *, xp):
    """Override of :func:`seqnet.kernels.time_loop.scan_backward` for the layer-norm LSTM."""
    dh, dc = _feature_major(d_final)                               # fresh (H, B) buffers, updated in place
    gates, x = tape.gates, tape.extra
    cs, c0, a_hat, a_inv, c_hat, c_inv = (x[k] for k in ("c", "c0", "a_hat", "a_inv", "c_hat", "c_inv"))
    steps, width, batch = gates.shape
    hidden = width // 4
    dtype = gates.dtype
    e = p.extra
    g_hh, g_c, b_c = e["ln_weight_hh"][:, None], e["ln_weight_c"][:, None], e["ln_bias_c"][:, None]
    d_xproj = gates.reshape(steps, batch, width)                   # each step's block is reused, batch-major
    d_hproj = a_hat.reshape(steps, batch, width)                   # likewise for a_hat
    d_ghh, d_gc, d_bc = np.zeros(width, dtype), np.zeros(hidden, dtype), np.zeros(hidden, dtype)
    dz, d_a, wide, wide2 = (np.empty((width, batch), dtype) for _ in range(4))
    t_c, d_lc, narrow, dc_ln = (np.empty((hidden, batch), dtype) for _ in range(4))
    dc_prev, row = np.empty_like(dc), np.empty(batch, dtype)
    d_post = np.empty((3 * hidden, batch), dtype)
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t].T
        z, a = gates[t], a_hat[t]
        f, o = z[hidden:2 * hidden], z[2 * hidden:3 * hidden]
        c_prev = tape.prev(cs, c0, t)
        np.multiply(c_hat[t], g_c, out=t_c)
        t_c += b_c
        np.tanh(t_c, out=t_c)                                      # tanh(LN(c')), recomputed
        np.multiply(t_c, t_c, out=d_lc)
        np.subtract(1, d_lc, out=d_lc)
        d_lc *= o
        d_lc *= dh                                                  # dL/d LN(c') = dh o (1 - tanh^2)
        np.multiply(d_lc, c_hat[t], out=narrow)
        d_gc += narrow.sum(axis=1)
        d_bc += d_lc.sum(axis=1)
        d_lc *= g_c                                                 # dL/d c_hat
        _normalise_backward(d_lc, c_hat[t], c_inv[t], dc_ln, narrow, row)
        dc += dc_ln                                                 # dc = dc' + LN's backward
        np.multiply(dc, f, out=dc_prev)
        lstm_gates_backward(z, dh, dc, c_prev, t_c, dz, d_post, narrow)
        np.multiply(dz, a, out=wide)
        d_ghh += wide.sum(axis=1)
        np.multiply(dz, g_hh, out=wide)                             # dL/d a_hat
        _normalise_backward(wide, a, a_inv[t], d_a, wide2, row)     # d_hproj = dL/d(h W_hh)
        np.matmul(p.weight_hh, d_a, out=dh)                         # dL/dh_prev = W_hh d_a
        d_xproj[t] = dz.T                                           # overwrites the gates: dz batch-major
        d_hproj[t] = d_a.T                                          # overwrites a_hat: d_hproj batch-major
        dc, dc_prev = dc_prev, dc
    d_extra = {"ln_weight_hh": d_ghh, "ln_bias_hh": d_xproj.sum(axis=(0, 1)), "ln_weight_c": d_gc, "ln_bias_c": d_bc}
    return _batch_major((dh, dc)), d_xproj, d_hproj, d_extra
