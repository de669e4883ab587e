"""numpy overrides of the time loop (``scan_forward`` / ``scan_backward``) for speed on the CPU.

The portable reference (:mod:`seqnet.layers.time_loop`) allocates fresh arrays at every
step. These overrides compute the same math with numpy ufuncs writing into buffers that are
allocated once per call (``out=``), keep gate activations in the input-projection buffer
itself, and overwrite them with the gate gradients during backward — fewer passes over
memory, no per-step allocation, and a smaller tape. They cover RNN (tanh, relu), LSTM and
GRU (reset_after=True) without ``lengths``; anything else falls back to the reference.
tests/test_fast_paths.py holds them to the reference.

Shapes: T steps, B batch, H hidden, G gates; ``xproj`` (T, B, G*H) is owned by the caller's
layer call and is overwritten.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import time_loop


@dataclass
class BufferTape:
    """Tape of a fast scan: the activation buffer (gradients after backward) and per-step states."""

    cell: Any
    gates: np.ndarray           # (T, B, G*H) gate activations; overwritten with d_xproj by backward
    hs: np.ndarray              # (T, B, H) hidden state after each step
    h0: np.ndarray              # (B, H)
    extra: dict                 # cell-specific per-step arrays: "c", "tanh_c" (LSTM), "hn" (GRU)
    c0: np.ndarray | None
    reverse: bool

    def _prev(self, seq: np.ndarray, first: np.ndarray, t: int) -> np.ndarray:
        """seq's state before step t, in processing order (``first`` before the first step)."""
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
    forward_in_time = reverse == backward
    return range(steps) if forward_in_time else range(steps - 1, -1, -1)


def _sigmoid_(z: np.ndarray) -> None:
    """In place: z <- 0.5 * tanh(0.5 z) + 0.5."""
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5


# -- forward ------------------------------------------------------------------------------
def _lstm_forward(xproj, state0, w_hh, keep_tape, reverse):
    steps, batch, width = xproj.shape
    hidden = width // 4
    h, c = state0
    # sigmoid(z) = 0.5 tanh(z / 2) + 0.5: halving the i, f, o columns of xproj (once, for all
    # steps) and of a copy of W_hh lets one tanh cover all four gates of a step.
    xproj[..., :3 * hidden] *= 0.5
    w_half = w_hh.copy()
    w_half[:, :3 * hidden] *= 0.5
    hs = np.empty((steps, batch, hidden), xproj.dtype)
    if keep_tape:
        cs, tanh_cs = np.empty_like(hs), np.empty_like(hs)
    else:                                   # inference: two rotating buffers suffice
        cs, tanh_cs = np.empty((2, batch, hidden), xproj.dtype), np.empty((1, batch, hidden), xproj.dtype)
    hh = np.empty((batch, width), xproj.dtype)
    ig = np.empty((batch, hidden), xproj.dtype)
    for k, t in enumerate(_order(steps, reverse)):
        z = xproj[t]
        np.matmul(h, w_half, out=hh)
        z += hh
        np.tanh(z, out=z)                                              # tanh(z/2) for i, f, o; tanh(z) for g
        ifo = z[:, :3 * hidden]
        ifo *= 0.5
        ifo += 0.5                                                     # i, f, o = sigmoid(z)
        i, f, o, g = z[:, :hidden], z[:, hidden:2 * hidden], z[:, 2 * hidden:3 * hidden], z[:, 3 * hidden:]
        c_new = cs[t] if keep_tape else cs[k % 2]
        tanh_c = tanh_cs[t] if keep_tape else tanh_cs[0]
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=ig)
        c_new += ig                                                    # c' = f c + i g
        np.tanh(c_new, out=tanh_c)
        np.multiply(o, tanh_c, out=hs[t])                              # h' = o tanh(c')
        h, c = hs[t], c_new
    return hs, (h, c.copy()), {"c": cs, "tanh_c": tanh_cs}


def _gru_forward(xproj, state0, w_hh, b_hh, keep_tape, reverse):
    steps, batch, width = xproj.shape
    hidden = width // 3
    (h,) = state0
    hs = np.empty((steps, batch, hidden), xproj.dtype)
    hns = np.empty_like(hs) if keep_tape else np.empty((1, batch, hidden), xproj.dtype)
    hh = np.empty((batch, width), xproj.dtype)
    tmp = np.empty((batch, hidden), xproj.dtype)
    for t in _order(steps, reverse):
        z = xproj[t]
        np.matmul(h, w_hh, out=hh)
        if b_hh is not None:
            hh += b_hh
        rz = z[:, :2 * hidden]
        rz += hh[:, :2 * hidden]
        _sigmoid_(rz)
        r, u = z[:, :hidden], z[:, hidden:2 * hidden]                  # reset, update
        hn = hns[t] if keep_tape else hns[0]
        hn[...] = hh[:, 2 * hidden:]                                   # W_hn h + b_hn
        n = z[:, 2 * hidden:]
        np.multiply(r, hn, out=tmp)
        n += tmp
        np.tanh(n, out=n)                                              # n = tanh(x_n + r * hn)
        np.subtract(h, n, out=tmp)
        tmp *= u
        np.add(n, tmp, out=hs[t])                                      # h' = n + u (h - n)
        h = hs[t]
    return hs, (h,), {"hn": hns}


def _rnn_forward(xproj, state0, w_hh, relu, reverse):
    steps, batch, hidden = xproj.shape
    (h,) = state0
    hs = np.empty_like(xproj)
    hh = np.empty((batch, hidden), xproj.dtype)
    for t in _order(steps, reverse):
        z = xproj[t]
        np.matmul(h, w_hh, out=hh)
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
    if isinstance(cell, LSTMCell):
        hs, final, extra = _lstm_forward(xproj, state0, w_hh, keep_tape, reverse)
    elif isinstance(cell, GRUCell):
        hs, final, extra = _gru_forward(xproj, state0, w_hh, b_hh, keep_tape, reverse)
    else:
        hs, final, extra = _rnn_forward(xproj, state0, w_hh, cell.nonlinearity == "relu", reverse)
    c0 = state0[1] if len(state0) > 1 else None
    tape = BufferTape(cell, xproj, hs, state0[0], extra, c0, reverse) if keep_tape else None
    return hs, final, tape


# -- backward -----------------------------------------------------------------------------
def _lstm_backward(tape: BufferTape, d_hs, d_final, w_hh):
    gates, cs, tanh_cs = tape.gates, tape.extra["c"], tape.extra["tanh_c"]
    steps, batch, width = gates.shape
    hidden = width // 4
    dh, dc = d_final[0].copy(), d_final[1].copy()
    dc_prev = np.empty_like(dc)
    t1 = np.empty_like(dc)
    d_post = np.empty((batch, 3 * hidden), gates.dtype)          # dL/d(i, f, o) after the sigmoid
    one_minus = np.empty_like(d_post)
    w_t = w_hh.T
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t]
        a = gates[t]
        ifo, i, f, g = a[:, :3 * hidden], a[:, :hidden], a[:, hidden:2 * hidden], a[:, 3 * hidden:]
        o = a[:, 2 * hidden:3 * hidden]
        c_prev, tanh_c = tape._prev(cs, tape.c0, t), tanh_cs[t]
        np.multiply(tanh_c, tanh_c, out=t1)
        np.subtract(1, t1, out=t1)
        t1 *= o
        t1 *= dh
        dc += t1                                          # dc = dc' + dh o (1 - tanh(c)^2)
        np.multiply(dc, f, out=dc_prev)                   # dL/dc_prev = dc f
        np.multiply(dc, g, out=d_post[:, :hidden])        # dL/di
        np.multiply(dc, c_prev, out=d_post[:, hidden:2 * hidden])   # dL/df
        np.multiply(dh, tanh_c, out=d_post[:, 2 * hidden:])         # dL/do
        np.multiply(g, g, out=t1)
        np.subtract(1, t1, out=t1)
        t1 *= dc
        np.multiply(t1, i, out=g)                         # d g_pre = dc i (1 - g^2)
        np.subtract(1, ifo, out=one_minus)
        ifo *= one_minus
        ifo *= d_post                                     # d (i, f, o)_pre = dL/d(.) s (1 - s)
        np.matmul(a, w_t, out=dh)                         # dL/dh_prev = dz W_hh^T
        dc, dc_prev = dc_prev, dc
    return (dh, dc), gates, gates


def _gru_backward(tape: BufferTape, d_hs, d_final, w_hh):
    gates, hs, hns = tape.gates, tape.hs, tape.extra["hn"]
    steps, batch, width = gates.shape
    hidden = width // 3
    d_hproj = np.empty_like(gates)
    dh = d_final[0].copy()
    dn, du, dr, tmp, direct = (np.empty_like(dh) for _ in range(5))
    w_t = w_hh.T
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t]
        a = gates[t]
        r, u, n = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:]
        h_prev, hn = tape._prev(hs, tape.h0, t), hns[t]
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
        np.multiply(dn, r, out=dhp[:, 2 * hidden:])       # d hn = dn r
        dhp[:, :hidden], dhp[:, hidden:2 * hidden] = dr, du
        r[...], u[...], n[...] = dr, du, dn               # the gates buffer now holds d_xproj
        np.matmul(dhp, w_t, out=dh)
        dh += direct
    return (dh,), gates, d_hproj


def _rnn_backward(tape: BufferTape, d_hs, d_final, w_hh):
    gates, hs = tape.gates, tape.hs
    relu = tape.cell.nonlinearity == "relu"
    dh = d_final[0].copy()
    w_t = w_hh.T
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
        np.matmul(da, w_t, out=dh)
    return (dh,), gates, gates


def scan_backward(cell, tape, d_hs, d_final, w_hh, masks, *, xp):
    """Override of :func:`seqnet.layers.time_loop.scan_backward` (same arguments and results)."""
    if not isinstance(tape, BufferTape):
        return time_loop.scan_backward(cell, tape, d_hs, d_final, w_hh, masks, xp=xp)
    if isinstance(cell, LSTMCell):
        return _lstm_backward(tape, d_hs, d_final, w_hh)
    if isinstance(cell, GRUCell):
        return _gru_backward(tape, d_hs, d_final, w_hh)
    return _rnn_backward(tape, d_hs, d_final, w_hh)
