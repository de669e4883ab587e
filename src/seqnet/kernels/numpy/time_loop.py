"""numpy overrides of the reference time loop (:mod:`seqnet.kernels.time_loop`), per cell.

Same math as the reference and :mod:`seqnet.cells`, arranged for numpy:

- Feature-major: inside the loop every per-step array is (features, B), not (B, features),
  so each gate is a contiguous block of rows and ufuncs run on contiguous memory, and the
  per-step matmuls are ``W_hh^T (G*H, H) @ h (H, B)`` and ``W_hh (H, G*H) @ dz (G*H, B)``,
  which OpenBLAS runs 1.3-2x faster at these shapes than the batch-major products. Inputs
  and outputs stay batch-major (T, B, features); each step transposes its own slice while it
  is in cache, instead of whole-sequence transposes.
- Buffers are allocated once per call and written with ``out=``; gate activations are
  overwritten by gate gradients during backward, so the tape holds them only once.
- LSTM: the i, f, o rows of the pre-activation are halved, so one tanh covers all four
  gates (sigmoid(z) = (tanh(z/2) + 1) / 2).
- RNN is the exception: with one gate there is nothing to split, and batch-major steps need
  no transposes, so each step runs in place in its block of the output hs (the whole tape).

Each pair ``<cell>_forward`` / ``<cell>_backward`` has the reference's arguments and
results; :mod:`seqnet.kernels` registers them for the cells and cases they cover (no
``lengths``; GRU only with reset_after=True) and tests/test_fast_paths.py holds them to the
reference. Shapes: T steps, B batch, H hidden, G gates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def transposed_weight(p) -> np.ndarray:
    """C-contiguous W_hh^T (G*H, H), made once per UnitParams (kept in ``p.prepared``): once per
    forward call in training, once per stepper in token-by-token generation."""
    w_t = p.prepared.get("weight_hh_T")
    if w_t is None:
        w_t = p.prepared["weight_hh_T"] = np.array(p.weight_hh.T, order="C")
    return w_t


@dataclass
class BufferTape:
    """What a fast forward scan leaves for backward."""

    cell: object
    gates: np.ndarray | None          # (T, G*H, B) activations, overwritten by d_xproj (T, B, G*H); None for the RNN
    hs: np.ndarray                    # (T, B, H) hidden state after each step (the layer's output)
    h0: np.ndarray                    # (B, H)
    reverse: bool
    extra: dict = field(default_factory=dict)   # "c" (T, H, B) and "c0" (H, B) (LSTM); "hn" (T, H, B) (GRU)

    def prev(self, seq: np.ndarray, first: np.ndarray, t: int) -> np.ndarray:
        """``seq``'s value before step t in processing order (``first`` before the first step)."""
        if self.reverse:
            return first if t == seq.shape[0] - 1 else seq[t + 1]
        return first if t == 0 else seq[t - 1]

    def h_prev_product(self, d: np.ndarray, xp=None) -> np.ndarray:
        """sum over t of h_prev[t]^T @ d[t]: d (T, B, K) -> (H, K), read from ``hs`` in place
        (steps 1.. of the scan take the previous output; the first takes h0)."""
        steps, _, width = d.shape
        hidden = self.hs.shape[-1]
        first = steps - 1 if self.reverse else 0
        product = self.h0.T @ d[first]
        if steps > 1:
            inner_h, inner_d = (self.hs[1:], d[:-1]) if self.reverse else (self.hs[:-1], d[1:])
            product += inner_h.reshape(-1, hidden).T @ inner_d.reshape(-1, width)
        return product


def _order(steps: int, reverse: bool, backward: bool = False) -> range:
    return range(steps) if reverse == backward else range(steps - 1, -1, -1)


def _buffers(xproj: np.ndarray, rows: int, keep_tape: bool):
    """The gate buffer ((T, rows, B), or one step's worth for inference) and the output hs (T, B, H)."""
    steps, batch, width = xproj.shape
    gates = np.empty((steps if keep_tape else 1, width, batch), xproj.dtype)
    hs = np.empty((steps, batch, rows), xproj.dtype)
    return gates, hs


# -- forward ------------------------------------------------------------------------------
def lstm_gates_forward(z, c, c_new, scratch) -> None:
    """An LSTM step's gates from their pre-activations z (4H, B) (rows i, f, o, g), in place,
    and c_new = f c + i g; scratch (H, B). sigmoid(x) = (tanh(x/2) + 1) / 2, so one tanh
    covers all four gates."""
    hidden = c.shape[0]
    z[:3 * hidden] *= 0.5
    np.tanh(z, out=z)
    ifo = z[:3 * hidden]
    ifo *= 0.5
    ifo += 0.5                                                     # i, f, o = sigmoid(.), g = tanh(.)
    np.multiply(z[hidden:2 * hidden], c, out=c_new)
    np.multiply(z[:hidden], z[3 * hidden:], out=scratch)
    c_new += scratch                                               # c' = f c + i g


def _lstm_forward(xproj, h, c, p, keep_tape, reverse):
    """xproj: (T, B, 4H); h, c: (H, B). Returns hs (T, B, H), final (h, c) (H, B), gates, extra."""
    steps, batch, width = xproj.shape
    hidden = width // 4
    w_t = transposed_weight(p)                                 # (4H, H)
    gates, hs = _buffers(xproj, hidden, keep_tape)
    cs = np.empty((steps, hidden, batch), xproj.dtype) if keep_tape else np.empty((2, hidden, batch), xproj.dtype)
    tanh_c = np.empty((hidden, batch), xproj.dtype)   # recomputed by backward rather than kept
    h_bufs = np.empty((2, hidden, batch), xproj.dtype)
    hh = np.empty((width, batch), xproj.dtype)
    ig = np.empty((hidden, batch), xproj.dtype)
    for k, t in enumerate(_order(steps, reverse)):
        z = gates[t] if keep_tape else gates[0]
        np.matmul(w_t, h, out=hh)
        np.add(xproj[t].T, hh, out=z)
        c_new = cs[t] if keep_tape else cs[k % 2]
        lstm_gates_forward(z, c, c_new, ig)
        np.tanh(c_new, out=tanh_c)
        h = h_bufs[k % 2]
        np.multiply(z[2 * hidden:3 * hidden], tanh_c, out=h)           # h' = o tanh(c')
        hs[t] = h.T
        c = c_new
    return hs, (h, c), gates, {"c": cs}


def _gru_forward(xproj, h, p, keep_tape, reverse):
    """xproj: (T, B, 3H) input projections (b_ih included); h: (H, B)."""
    steps, batch, width = xproj.shape
    hidden = width // 3
    w_t = transposed_weight(p)                 # (3H, H)
    bias = None if p.bias_hh is None else p.bias_hh[:, None]
    gates, hs = _buffers(xproj, hidden, keep_tape)
    hns = np.empty((steps if keep_tape else 1, hidden, batch), xproj.dtype)
    h_bufs = np.empty((2, hidden, batch), xproj.dtype)
    hh = np.empty((width, batch), xproj.dtype)
    tmp = np.empty((hidden, batch), xproj.dtype)
    for k, t in enumerate(_order(steps, reverse)):
        z = gates[t] if keep_tape else gates[0]
        np.matmul(w_t, h, out=hh)
        if bias is not None:
            hh += bias
        z[...] = xproj[t].T
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
        h = h_bufs[k % 2]
        np.add(n, tmp, out=h)                                          # h' = n + u (h - n)
        hs[t] = h.T
    return hs, (h,), gates, {"hn": hns}


def _rnn_forward(xproj, h, w, relu, reverse):
    """Batch-major (one gate, nothing to split): xproj (T, B, H); h (B, H); w = W_hh (H, H).
    Each step is computed in place in its output block hs[t], so the tape needs nothing beyond hs."""
    hs = np.empty_like(xproj)
    for t in _order(xproj.shape[0], reverse):
        z = hs[t]
        np.matmul(h, w, out=z)
        z += xproj[t]
        if relu:
            np.maximum(z, 0, out=z)
        else:
            np.tanh(z, out=z)
        h = z
    return hs, (h.copy(),)


def _feature_major(state):
    """Fresh (H, B) copies: the kernels update them in place, and with B = 1 a transpose is
    already contiguous, so np.ascontiguousarray would hand back a view of the caller's array."""
    return [np.array(s.T, order="C") for s in state]


def _batch_major(state):
    return tuple(np.ascontiguousarray(s.T) for s in state)


def lstm_forward(cell, xproj, state0, p, masks, reverse, *, xp, keep_tape=True):
    h, c = _feature_major(state0)
    hs, final, gates, extra = _lstm_forward(xproj, h, c, p, keep_tape, reverse)
    extra["c0"] = c
    return hs, _batch_major(final), (BufferTape(cell, gates, hs, state0[0], reverse, extra) if keep_tape else None)


def gru_forward(cell, xproj, state0, p, masks, reverse, *, xp, keep_tape=True):
    (h,) = _feature_major(state0)
    hs, final, gates, extra = _gru_forward(xproj, h, p, keep_tape, reverse)
    return hs, _batch_major(final), (BufferTape(cell, gates, hs, state0[0], reverse, extra) if keep_tape else None)


def rnn_forward(cell, xproj, state0, p, masks, reverse, *, xp, keep_tape=True):
    hs, final = _rnn_forward(xproj, state0[0], p.weight_hh, cell.nonlinearity == "relu", reverse)
    return hs, final, (BufferTape(cell, None, hs, state0[0], reverse) if keep_tape else None)


# -- backward -----------------------------------------------------------------------------
def lstm_gates_backward(a, dh, dc, c_prev, tanh_c, dz, d_post, scratch) -> None:
    """dz (4H, B) = dL/d(gate pre-activations) of an LSTM step, feature-major, from the gates
    ``a`` (i, f, o, g after their nonlinearities), dh, the cell state's whole gradient dc,
    c_prev and the tanh that multiplied o; d_post (3H, B) and scratch (H, B) are buffers."""
    hidden = dc.shape[0]
    ifo, i, g = a[:3 * hidden], a[:hidden], a[3 * hidden:]
    np.multiply(dc, g, out=d_post[:hidden])                       # dL/di
    np.multiply(dc, c_prev, out=d_post[hidden:2 * hidden])        # dL/df
    np.multiply(dh, tanh_c, out=d_post[2 * hidden:])              # dL/do
    np.multiply(g, g, out=scratch)
    np.subtract(1, scratch, out=scratch)
    scratch *= dc
    np.multiply(scratch, i, out=dz[3 * hidden:])                  # d g_pre = dc i (1 - g^2)
    dz_ifo = dz[:3 * hidden]
    np.subtract(1, ifo, out=dz_ifo)
    dz_ifo *= ifo
    dz_ifo *= d_post                                              # d (i, f, o)_pre = dL/d(.) s (1 - s)


def _lstm_backward(tape: BufferTape, d_hs, dh, dc, w_hh):
    gates, cs, c0 = tape.gates, tape.extra["c"], tape.extra["c0"]
    steps, width, batch = gates.shape
    hidden = width // 4
    d_xproj = gates.reshape(steps, batch, width)     # each step's block is reused, batch-major
    dz = np.empty((width, batch), gates.dtype)                   # this step's d_xproj, feature-major
    dc_prev = np.empty_like(dc)
    t1, tanh_c = np.empty_like(dc), np.empty_like(dc)
    d_post = np.empty((3 * hidden, batch), gates.dtype)          # dL/d(i, f, o) after the sigmoid
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t].T
        a = gates[t]
        f, o = a[hidden:2 * hidden], a[2 * hidden:3 * hidden]
        c_prev = tape.prev(cs, c0, t)
        np.tanh(cs[t], out=tanh_c)
        np.multiply(tanh_c, tanh_c, out=t1)
        np.subtract(1, t1, out=t1)
        t1 *= o
        t1 *= dh
        dc += t1                                          # dc = dc' + dh o (1 - tanh(c)^2)
        np.multiply(dc, f, out=dc_prev)                   # dL/dc_prev = dc f
        lstm_gates_backward(a, dh, dc, c_prev, tanh_c, dz, d_post, t1)
        np.matmul(w_hh, dz, out=dh)                       # dL/dh_prev = W_hh dz
        d_xproj[t] = dz.T                                 # overwrites a: its block now holds dz batch-major
        dc, dc_prev = dc_prev, dc
    return (dh, dc), d_xproj


def _gru_backward(tape: BufferTape, d_hs, dh, w_hh):
    gates, hs, hns = tape.gates, tape.hs, tape.extra["hn"]
    steps, width, batch = gates.shape
    hidden = width // 3
    d_xproj = gates.reshape(steps, batch, width)     # each step's block is reused, batch-major
    d_hn = hns.reshape(steps, batch, hidden)         # likewise: hn's block becomes d hn = dn r
    dhp, scratch = np.empty((width, batch), gates.dtype), np.empty((width, batch), gates.dtype)
    dn, du, dr, tmp, direct = (np.empty_like(dh) for _ in range(5))
    for t in _order(steps, tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t].T
        a = gates[t]
        r, u, n = a[:hidden], a[hidden:2 * hidden], a[2 * hidden:]
        h_prev, hn = tape.prev(hs, tape.h0, t).T, hns[t]
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
        np.multiply(dn, r, out=dhp[2 * hidden:])          # d hn = dn r
        dhp[:hidden], dhp[hidden:2 * hidden] = dr, du
        scratch[:hidden], scratch[hidden:2 * hidden], scratch[2 * hidden:] = dr, du, dn
        d_xproj[t], d_hn[t] = scratch.T, dhp[2 * hidden:].T   # overwrite a and hn, no longer needed
        np.matmul(w_hh, dhp, out=dh)
        dh += direct
    # d_hproj equals d_xproj but for the n block: returned as column blocks, not a (T, B, 3H) copy.
    return dh, d_xproj, (d_xproj[..., :2 * hidden], d_hn)


def _rnn_backward(tape: BufferTape, d_hs, dh, p):
    """Batch-major, as the forward: dh (B, H)."""
    hs, relu = tape.hs, tape.cell.nonlinearity == "relu"
    w_t = transposed_weight(p)                                         # (H, H): dh_prev = da @ W^T
    d_xproj = np.empty_like(hs)
    for t in _order(hs.shape[0], tape.reverse, backward=True):
        if d_hs is not None:
            dh += d_hs[t]
        da, h = d_xproj[t], hs[t]
        if relu:
            np.multiply(dh, h > 0, out=da)                             # relu' = [h > 0]
        else:
            np.multiply(h, h, out=da)
            np.subtract(1, da, out=da)
            da *= dh                                                   # tanh' = 1 - h^2
        np.matmul(da, w_t, out=dh)
    return dh, d_xproj


def lstm_backward(cell, tape, d_hs, d_final, p, masks, *, xp):
    dh, dc = _feature_major(d_final)                  # fresh (H, B) buffers, updated in place
    (dh, dc), d_xproj = _lstm_backward(tape, d_hs, dh, dc, p.weight_hh)
    return _batch_major((dh, dc)), d_xproj, d_xproj, None


def gru_backward(cell, tape, d_hs, d_final, p, masks, *, xp):
    (dh,) = _feature_major(d_final)
    dh, d_xproj, d_hproj = _gru_backward(tape, d_hs, dh, p.weight_hh)
    return _batch_major((dh,)), d_xproj, d_hproj, None


def rnn_backward(cell, tape, d_hs, d_final, p, masks, *, xp):
    dh, d_xproj = _rnn_backward(tape, d_hs, np.array(d_final[0]), p)   # a fresh (B, H), updated in place
    return (dh,), d_xproj, d_xproj, None
