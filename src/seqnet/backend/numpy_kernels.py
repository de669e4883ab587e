"""numpy overrides of the time loop (``scan_forward`` / ``scan_backward``) for speed on the CPU.

Same math as :mod:`seqnet.layers.time_loop` and :mod:`seqnet.cells`, arranged for numpy:

- Feature-major: inside the loop every per-step array is (features, B), not (B, features),
  so each gate is a contiguous block of rows and ufuncs run on contiguous memory, and the
  per-step matmuls are ``W_hh^T (G*H, H) @ h (H, B)`` and ``W_hh (H, G*H) @ dz (G*H, B)``,
  which OpenBLAS runs 1.3-2x faster at these shapes than the batch-major products.
- Buffers are allocated once per call and written with ``out=``; gate activations are
  overwritten by gate gradients during backward, so the tape holds them only once.
- LSTM: the i, f, o columns are pre-scaled by 1/2, so one tanh covers all four gates
  (sigmoid(z) = (tanh(z/2) + 1) / 2).

They cover RNN (tanh, relu), LSTM and GRU (reset_after=True) without ``lengths``; anything
else falls back to the reference. tests/test_fast_paths.py holds them to the reference.
Shapes: T steps, B batch, H hidden, G gates.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import time_loop


_prepared: dict[tuple[int, str], tuple[weakref.ref, np.ndarray]] = {}


def _prepared_weight(w_hh: np.ndarray, kind: str, halve_rows: int = 0) -> np.ndarray:
    """C-contiguous W_hh^T (G*H, H), its first ``halve_rows`` rows halved, cached per weight array.

    Token-by-token generation calls the scan once per token; re-deriving this every call would
    copy the whole matrix per token. Parameters are never modified in place (optimizers and
    load_state_dict assign new arrays), so an array that is still alive still holds the same values.
    """
    key = (id(w_hh), kind)
    hit = _prepared.get(key)
    if hit is not None and hit[0]() is w_hh:
        return hit[1]
    prepared = np.array(w_hh.T, order="C")
    if halve_rows:
        prepared[:halve_rows] *= 0.5
    if len(_prepared) > 64:
        _prepared.clear()
    _prepared[key] = (weakref.ref(w_hh), prepared)
    return prepared


def _feature_major(a: np.ndarray) -> np.ndarray:
    """(T, B, F) -> contiguous (T, F, B)."""
    return np.ascontiguousarray(np.swapaxes(a, 1, 2))


def _batch_major(a: np.ndarray) -> np.ndarray:
    """(T, F, B) -> contiguous (T, B, F)."""
    return np.ascontiguousarray(np.swapaxes(a, 1, 2))


@dataclass
class BufferTape:
    """What a fast forward scan leaves for backward, all feature-major (T, features, B)."""

    cell: object
    gates: np.ndarray                 # (T, G*H, B) activations; overwritten with gradients by backward
    hs_t: np.ndarray                  # (T, H, B) hidden state after each step
    hs: np.ndarray                    # (T, B, H) the same, batch-major (the layer's output)
    h0: np.ndarray                    # (B, H)
    reverse: bool
    extra: dict = field(default_factory=dict)   # "c", "tanh_c", "c0" (LSTM); "hn" (GRU): (T, H, B)

    def prev(self, seq: np.ndarray, first: np.ndarray, t: int) -> np.ndarray:
        """``seq``'s value before step t in processing order (``first`` before the first step)."""
        if self.reverse:
            return first if t == seq.shape[0] - 1 else seq[t + 1]
        return first if t == 0 else seq[t - 1]

    def stacked_h_prev(self, xp) -> np.ndarray:
        """(T, B, H): the hidden state fed into each step."""
        h0 = self.h0[None, ...]
        if self.reverse:
            return np.concatenate([self.hs[1:], h0], axis=0)
        return np.concatenate([h0, self.hs[:-1]], axis=0)


def _order(steps: int, reverse: bool, backward: bool = False) -> range:
    return range(steps) if reverse == backward else range(steps - 1, -1, -1)


# -- forward ------------------------------------------------------------------------------
def _lstm_forward(gates, h, c, w_hh, keep_tape, reverse):
    """gates: (T, 4H, B) input projections, turned into activations in place; h, c: (H, B)."""
    steps, width, batch = gates.shape
    hidden = width // 4
    gates[:, :3 * hidden] *= 0.5                    # sigmoid(z) = (tanh(z/2) + 1) / 2 for i, f, o
    w_half = _prepared_weight(w_hh, "lstm", halve_rows=3 * hidden)   # (4H, H)
    hs = np.empty((steps, hidden, batch), gates.dtype)
    rotating = 1 if keep_tape else 0                # inference keeps only two c's and one tanh(c)
    cs = np.empty_like(hs) if keep_tape else np.empty((2, hidden, batch), gates.dtype)
    tanh_cs = np.empty_like(hs) if keep_tape else np.empty((1, hidden, batch), gates.dtype)
    hh = np.empty((width, batch), gates.dtype)
    ig = np.empty((hidden, batch), gates.dtype)
    for k, t in enumerate(_order(steps, reverse)):
        z = gates[t]
        np.matmul(w_half, h, out=hh)
        z += hh
        np.tanh(z, out=z)
        ifo = z[:3 * hidden]
        ifo *= 0.5
        ifo += 0.5                                                     # i, f, o = sigmoid(.), g = tanh(.)
        i, f, o, g = z[:hidden], z[hidden:2 * hidden], z[2 * hidden:3 * hidden], z[3 * hidden:]
        c_new = cs[t] if rotating else cs[k % 2]
        tanh_c = tanh_cs[t] if rotating else tanh_cs[0]
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=ig)
        c_new += ig                                                    # c' = f c + i g
        np.tanh(c_new, out=tanh_c)
        np.multiply(o, tanh_c, out=hs[t])                              # h' = o tanh(c')
        h, c = hs[t], c_new
    return hs, (h, c), {"c": cs, "tanh_c": tanh_cs}


def _gru_forward(gates, h, w_hh, b_hh, keep_tape, reverse):
    """gates: (T, 3H, B) input projections (b_ih included), turned into r, u, n in place."""
    steps, width, batch = gates.shape
    hidden = width // 3
    w_t = _prepared_weight(w_hh, "plain")             # (3H, H)
    bias = None if b_hh is None else b_hh[:, None]
    hs = np.empty((steps, hidden, batch), gates.dtype)
    hns = np.empty_like(hs) if keep_tape else np.empty((1, hidden, batch), gates.dtype)
    hh = np.empty((width, batch), gates.dtype)
    tmp = np.empty((hidden, batch), gates.dtype)
    for t in _order(steps, reverse):
        z = gates[t]
        np.matmul(w_t, h, out=hh)
        if bias is not None:
            hh += bias
        ru = z[:2 * hidden]
        ru += hh[:2 * hidden]
        ru *= 0.5
        np.tanh(ru, out=ru)
        ru *= 0.5
        ru += 0.5                                                      # r, u = sigmoid(.)
        r, u, n = z[:hidden], z[hidden:2 * hidden], z[2 * hidden:]
        hn = hns[t] if keep_tape else hns[0]
        hn[...] = hh[2 * hidden:]                                      # W_hn h + b_hn
        np.multiply(r, hn, out=tmp)
        n += tmp
        np.tanh(n, out=n)                                              # n = tanh(x_n + r hn)
        np.subtract(h, n, out=tmp)
        tmp *= u
        np.add(n, tmp, out=hs[t])                                      # h' = n + u (h - n)
        h = hs[t]
    return hs, (h,), {"hn": hns}


def _rnn_forward(gates, h, w_hh, relu, reverse):
    steps, hidden, batch = gates.shape
    w_t = _prepared_weight(w_hh, "plain")
    hs = np.empty_like(gates)
    hh = np.empty((hidden, batch), gates.dtype)
    for t in _order(steps, reverse):
        z = gates[t]
        np.matmul(w_t, h, out=hh)
        z += hh
        if relu:
            np.maximum(z, 0, out=hs[t])
        else:
            np.tanh(z, out=hs[t])
        h = hs[t]
    return hs, (h,), {}


def _supported(cell) -> bool:
    return isinstance(cell, (LSTMCell, RNNCell)) or (isinstance(cell, GRUCell) and cell.reset_after)


def scan_forward(cell, xproj, state0, w_hh, b_hh, masks, reverse, *, xp, keep_tape=True):
    """Override of :func:`seqnet.layers.time_loop.scan_forward` (same arguments and results)."""
    if masks is not None or not _supported(cell):
        return time_loop.scan_forward(cell, xproj, state0, w_hh, b_hh, masks, reverse, xp=xp, keep_tape=keep_tape)
    gates = _feature_major(xproj)
    state_t = [np.ascontiguousarray(s.T) for s in state0]
    if isinstance(cell, LSTMCell):
        hs_t, final_t, extra = _lstm_forward(gates, *state_t, w_hh, keep_tape, reverse)
        extra["c0"] = state_t[1]
    elif isinstance(cell, GRUCell):
        hs_t, final_t, extra = _gru_forward(gates, state_t[0], w_hh, b_hh, keep_tape, reverse)
    else:
        hs_t, final_t, extra = _rnn_forward(gates, state_t[0], w_hh, cell.nonlinearity == "relu", reverse)
    hs = _batch_major(hs_t)
    final = tuple(np.ascontiguousarray(s.T) for s in final_t)
    tape = BufferTape(cell, gates, hs_t, hs, state0[0], reverse, extra) if keep_tape else None
    return hs, final, tape


# -- backward -----------------------------------------------------------------------------
def _lstm_backward(tape: BufferTape, d_hs, dh, dc, w_hh):
    gates, cs, tanh_cs, c0 = tape.gates, tape.extra["c"], tape.extra["tanh_c"], tape.extra["c0"]
    steps, width, batch = gates.shape
    hidden = width // 4
    dc_prev = np.empty_like(dc)
    t1 = np.empty_like(dc)
    d_post = np.empty((3 * hidden, batch), gates.dtype)          # dL/d(i, f, o) after the sigmoid
    one_minus = np.empty_like(d_post)
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t]
        a = gates[t]
        ifo, i, f, o, g = a[:3 * hidden], a[:hidden], a[hidden:2 * hidden], a[2 * hidden:3 * hidden], a[3 * hidden:]
        c_prev, tanh_c = tape.prev(cs, c0, t), tanh_cs[t]
        np.multiply(tanh_c, tanh_c, out=t1)
        np.subtract(1, t1, out=t1)
        t1 *= o
        t1 *= dh
        dc += t1                                          # dc = dc' + dh o (1 - tanh(c)^2)
        np.multiply(dc, f, out=dc_prev)                   # dL/dc_prev = dc f
        np.multiply(dc, g, out=d_post[:hidden])           # dL/di
        np.multiply(dc, c_prev, out=d_post[hidden:2 * hidden])   # dL/df
        np.multiply(dh, tanh_c, out=d_post[2 * hidden:])         # dL/do
        np.multiply(g, g, out=t1)
        np.subtract(1, t1, out=t1)
        t1 *= dc
        np.multiply(t1, i, out=g)                         # d g_pre = dc i (1 - g^2)
        np.subtract(1, ifo, out=one_minus)
        ifo *= one_minus
        ifo *= d_post                                     # d (i, f, o)_pre = dL/d(.) s (1 - s)
        np.matmul(w_hh, a, out=dh)                        # dL/dh_prev = W_hh dz
        dc, dc_prev = dc_prev, dc
    return (dh, dc), gates


def _gru_backward(tape: BufferTape, d_hs, dh, w_hh):
    gates, hs, hns = tape.gates, tape.hs_t, tape.extra["hn"]
    steps, width, batch = gates.shape
    hidden = width // 3
    d_hproj = np.empty_like(gates)
    h0 = np.ascontiguousarray(tape.h0.T)
    dn, du, dr, tmp, direct = (np.empty_like(dh) for _ in range(5))
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t]
        a = gates[t]
        r, u, n = a[:hidden], a[hidden:2 * hidden], a[2 * hidden:]
        h_prev, hn = tape.prev(hs, h0, t), hns[t]
        np.multiply(dh, u, out=direct)                    # dL/dh_prev, direct path: dh u
        np.multiply(n, n, out=dn)
        np.subtract(1, dn, out=dn)
        np.subtract(1, u, out=du)
        dn *= du
        dn *= dh                                          # d n_pre = dh (1 - u)(1 - n^2)
        du *= u
        np.subtract(h_prev, n, out=tmp)
        du *= tmp
        du *= dh                                          # d u_pre = dh (h - n) u (1 - u)
        np.subtract(1, r, out=dr)
        dr *= r
        dr *= hn
        dr *= dn                                          # d r_pre = dn hn r (1 - r)
        dhp = d_hproj[t]
        np.multiply(dn, r, out=dhp[2 * hidden:])          # d hn = dn r
        dhp[:hidden], dhp[hidden:2 * hidden] = dr, du
        r[...], u[...], n[...] = dr, du, dn               # the gates buffer now holds d_xproj
        np.matmul(w_hh, dhp, out=dh)
        dh += direct
    return (dh,), gates, d_hproj


def _rnn_backward(tape: BufferTape, d_hs, dh, w_hh):
    gates, hs = tape.gates, tape.hs_t
    relu = tape.cell.nonlinearity == "relu"
    for t in _order(gates.shape[0], tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t]
        da = gates[t]
        if relu:
            np.multiply(dh, hs[t] > 0, out=da)            # relu' = [h > 0]
        else:
            np.multiply(hs[t], hs[t], out=da)
            np.subtract(1, da, out=da)
            da *= dh                                      # tanh' = 1 - h^2
        np.matmul(w_hh, da, out=dh)
    return (dh,), gates


def scan_backward(cell, tape, d_hs, d_final, w_hh, masks, *, xp):
    """Override of :func:`seqnet.layers.time_loop.scan_backward` (same arguments and results)."""
    if not isinstance(tape, BufferTape):
        return time_loop.scan_backward(cell, tape, d_hs, d_final, w_hh, masks, xp=xp)
    d_hs_t = None if d_hs is None else _feature_major(d_hs)
    d_state = [np.ascontiguousarray(d.T) for d in d_final]     # fresh (H, B) buffers, updated in place
    if isinstance(cell, LSTMCell):
        d_state0, d_gates = _lstm_backward(tape, d_hs_t, *d_state, w_hh)
        d_hgates = d_gates
    elif isinstance(cell, GRUCell):
        d_state0, d_gates, d_hgates = _gru_backward(tape, d_hs_t, d_state[0], w_hh)
    else:
        d_state0, d_gates = _rnn_backward(tape, d_hs_t, d_state[0], w_hh)
        d_hgates = d_gates
    d_xproj = _batch_major(d_gates)
    d_hproj = d_xproj if d_hgates is d_gates else _batch_major(d_hgates)
    return tuple(np.ascontiguousarray(d.T) for d in d_state0), d_xproj, d_hproj
