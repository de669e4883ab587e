"""numpy overrides of the time loop (``scan_forward`` / ``scan_backward``) for speed on the CPU.

Same math as :mod:`seqnet.layers.time_loop` and :mod:`seqnet.cells`, arranged for numpy:

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

They cover RNN (tanh, relu), LSTM and GRU (reset_after=True) without ``lengths``; anything
else falls back to the reference. tests/test_fast_paths.py holds them to the reference.
Shapes: T steps, B batch, H hidden, G gates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import embedding, time_loop


class PreparedWeight:
    """W_hh with the transposed copy the feature-major kernels multiply by, made once for the
    many one-step scans of token-by-token generation (by :func:`prepare_weight`)."""

    def __init__(self, w_hh: np.ndarray):
        self.w_hh = w_hh
        self.transposed: np.ndarray | None = None


def prepare_weight(w_hh):
    """Override of :func:`seqnet.layers.time_loop.prepare_weight`."""
    return PreparedWeight(w_hh)


def _plain(w_hh):
    return w_hh.w_hh if isinstance(w_hh, PreparedWeight) else w_hh


def _transposed_weight(w_hh) -> np.ndarray:
    """C-contiguous W_hh^T (G*H, H): a fresh copy (cheap next to a scan of many steps) unless
    ``w_hh`` is a PreparedWeight, which keeps it."""
    if not isinstance(w_hh, PreparedWeight):
        return np.array(w_hh.T, order="C")
    if w_hh.transposed is None:
        w_hh.transposed = np.array(w_hh.w_hh.T, order="C")
    return w_hh.transposed


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
def _lstm_forward(xproj, h, c, w_hh, keep_tape, reverse):
    """xproj: (T, B, 4H); h, c: (H, B). Returns hs (T, B, H), final (h, c) (H, B), gates, extra."""
    steps, batch, width = xproj.shape
    hidden = width // 4
    w_t = _transposed_weight(w_hh)                             # (4H, H)
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
        z[:3 * hidden] *= 0.5                          # sigmoid(x) = (tanh(x/2) + 1) / 2 for i, f, o
        np.tanh(z, out=z)
        ifo = z[:3 * hidden]
        ifo *= 0.5
        ifo += 0.5                                                     # i, f, o = sigmoid(.), g = tanh(.)
        i, f, o, g = z[:hidden], z[hidden:2 * hidden], z[2 * hidden:3 * hidden], z[3 * hidden:]
        c_new = cs[t] if keep_tape else cs[k % 2]
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=ig)
        c_new += ig                                                    # c' = f c + i g
        np.tanh(c_new, out=tanh_c)
        h = h_bufs[k % 2]
        np.multiply(o, tanh_c, out=h)                                  # h' = o tanh(c')
        hs[t] = h.T
        c = c_new
    return hs, (h, c), gates, {"c": cs}


def _gru_forward(xproj, h, w_hh, b_hh, keep_tape, reverse):
    """xproj: (T, B, 3H) input projections (b_ih included); h: (H, B)."""
    steps, batch, width = xproj.shape
    hidden = width // 3
    w_t = _transposed_weight(w_hh)             # (3H, H)
    bias = None if b_hh is None else b_hh[:, None]
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


def _rnn_forward(xproj, h, w_hh, relu, reverse):
    """Batch-major (one gate, nothing to split): xproj (T, B, H); h (B, H). Each step is
    computed in place in its output block hs[t], so the tape needs nothing beyond hs."""
    w = _plain(w_hh)                                                   # (H, H): z = h @ W
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


def _supported(cell) -> bool:
    return isinstance(cell, (LSTMCell, RNNCell)) or (isinstance(cell, GRUCell) and cell.reset_after)


def scan_forward(cell, xproj, state0, w_hh, b_hh, masks, reverse, *, xp, keep_tape=True):
    """Override of :func:`seqnet.layers.time_loop.scan_forward` (same arguments and results)."""
    if masks is not None or not _supported(cell):
        return time_loop.scan_forward(cell, xproj, state0, _plain(w_hh), b_hh, masks, reverse, xp=xp,
                                      keep_tape=keep_tape)
    if isinstance(cell, RNNCell):
        hs, final = _rnn_forward(xproj, state0[0], w_hh, cell.nonlinearity == "relu", reverse)
        return hs, final, (BufferTape(cell, None, hs, state0[0], reverse) if keep_tape else None)
    state_t = [np.ascontiguousarray(s.T) for s in state0]
    if isinstance(cell, LSTMCell):
        hs, final_t, gates, extra = _lstm_forward(xproj, *state_t, w_hh, keep_tape, reverse)
        extra["c0"] = state_t[1]
    else:
        hs, final_t, gates, extra = _gru_forward(xproj, state_t[0], w_hh, b_hh, keep_tape, reverse)
    final = tuple(np.ascontiguousarray(s.T) for s in final_t)
    tape = BufferTape(cell, gates, hs, state0[0], reverse, extra) if keep_tape else None
    return hs, final, tape


# -- backward -----------------------------------------------------------------------------
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
        ifo, i, f, o, g = a[:3 * hidden], a[:hidden], a[hidden:2 * hidden], a[2 * hidden:3 * hidden], a[3 * hidden:]
        c_prev = tape.prev(cs, c0, t)
        np.tanh(cs[t], out=tanh_c)
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
        np.multiply(t1, i, out=dz[3 * hidden:])           # d g_pre = dc i (1 - g^2)
        dz_ifo = dz[:3 * hidden]
        np.subtract(1, ifo, out=dz_ifo)
        dz_ifo *= ifo
        dz_ifo *= d_post                                  # d (i, f, o)_pre = dL/d(.) s (1 - s)
        np.matmul(w_hh, dz, out=dh)                       # dL/dh_prev = W_hh dz
        d_xproj[t] = dz.T                                 # overwrites a: its block now holds dz batch-major
        dc, dc_prev = dc_prev, dc
    return (dh, dc), d_xproj, d_xproj


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
    return (dh,), d_xproj, (d_xproj[..., :2 * hidden], d_hn)


def _rnn_backward(tape: BufferTape, d_hs, dh, w_hh):
    """Batch-major, as the forward: dh (B, H)."""
    hs, relu = tape.hs, tape.cell.nonlinearity == "relu"
    w_t = np.ascontiguousarray(w_hh.T)                                 # (H, H): dh_prev = da @ W^T
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
    return (dh,), d_xproj, d_xproj


def scan_backward(cell, tape, d_hs, d_final, w_hh, masks, *, xp):
    """Override of :func:`seqnet.layers.time_loop.scan_backward` (same arguments and results)."""
    if not isinstance(tape, BufferTape):
        return time_loop.scan_backward(cell, tape, d_hs, d_final, w_hh, masks, xp=xp)
    if isinstance(cell, RNNCell):
        return _rnn_backward(tape, d_hs, np.array(d_final[0]), w_hh)   # a fresh (B, H), updated in place
    d_state = [np.ascontiguousarray(d.T) for d in d_final]     # fresh (H, B) buffers, updated in place
    if isinstance(cell, LSTMCell):
        d_state0, d_xproj, d_hproj = _lstm_backward(tape, d_hs, *d_state, w_hh)
    else:
        d_state0, d_xproj, d_hproj = _gru_backward(tape, d_hs, d_state[0], w_hh)
    return tuple(np.ascontiguousarray(d.T) for d in d_state0), d_xproj, d_hproj


# -- embedding -----------------------------------------------------------------------------
def _grouping_is_cheaper(rows: int, vocab_size: int, width: int) -> bool:
    """A one-hot (N, V) product costs N*V*K multiply-adds at BLAS speed; grouping the rows by id
    costs about 15 us per distinct id plus a pass over d_out (constants measured on the
    project's 2-core machine). Grouping wins for wide rows, e.g. d xproj of a language model."""
    return min(rows, vocab_size) * 15e-6 + rows * width * 1e-9 < rows * vocab_size * width * 4e-11


def embedding_backward(ids, d_out, vocab_size: int, *, xp):
    """Override of :func:`seqnet.layers.embedding.embedding_backward`: for wide rows, the rows
    of ``d_out`` (N, K) are grouped by id with one stable sort and summed group by group, a
    pass over memory instead of the reference's (N, V) one-hot product."""
    if not _grouping_is_cheaper(ids.shape[0], vocab_size, d_out.shape[-1]):
        return embedding.embedding_backward(ids, d_out, vocab_size, xp=xp)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.diff(sorted_ids, prepend=sorted_ids[:1] - 1))
    stops = np.append(starts[1:], ids.shape[0])
    grad = np.zeros((vocab_size, d_out.shape[-1]), d_out.dtype)
    for start, stop in zip(starts.tolist(), stops.tolist()):
        np.sum(d_out[order[start:stop]], axis=0, out=grad[sorted_ids[start]])
    return grad


# -- optimizer ------------------------------------------------------------------------------
def adam_update(p, g, m, v, *, lr, beta1, beta2, eps, step, weight_decay, xp):
    """Override of :func:`seqnet.training.optimizers.adam_update`: the moments are updated in
    place and one scratch buffer serves every pass, instead of a fresh array per operation
    (for large parameters each fresh array costs page faults). ``p`` itself is not modified:
    the new parameter is a new array."""
    if weight_decay:
        g = g + weight_decay * p
    scratch = np.multiply(g, 1.0 - beta1)
    m *= beta1
    m += scratch                                     # m = b1 m + (1 - b1) g
    np.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    v *= beta2
    v += scratch                                     # v = b2 v + (1 - b2) g^2
    bias_correction2_sqrt = (1.0 - beta2 ** step) ** 0.5
    step_size = lr * bias_correction2_sqrt / (1.0 - beta1 ** step)
    np.sqrt(v, out=scratch)
    scratch += eps * bias_correction2_sqrt
    np.divide(m, scratch, out=scratch)
    scratch *= step_size
    return np.subtract(p, scratch, out=scratch), m, v
