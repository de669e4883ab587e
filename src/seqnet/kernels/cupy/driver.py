"""The fused time loop of every cell, written against :class:`~seqnet.kernels.cupy.ops.Ops`.

Overrides of :func:`seqnet.kernels.time_loop.scan_forward` / ``scan_backward`` with the same
arguments and results. Per step only two kinds of call reach the device: ``ops.gemm`` (the
recurrent product, into a buffer allocated before the loop) and ``ops.launch`` (one fused
kernel of cuda/scan.cu). Launches per step, forward / backward:

    LSTM, GRU (reset_after=True), RNN   2 / 2     (GEMM + kernel)
    GRU (reset_after=False, Cho)        4 / 4     (its reset gate multiplies h before W_hn)
    layer-normalised LSTM               2 / 2     (a block per row reduces in shared memory)

Masks for variable lengths are a (T, B) bool array read by the same kernels. Nothing in the
loop reads device memory on the host, allocates, or slices arrays: kernels take base
pointers and step indices. Shapes: T steps, B batch, H hidden, G gates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import ScanKernels

ELEMENTWISE_BLOCK = 256
MAX_GRID = 65535


def elementwise_launch(units: int) -> tuple[int, int]:
    """(grid, block) for a kernel with one thread per unit (grid-stride beyond MAX_GRID blocks)."""
    return min(MAX_GRID, -(-units // ELEMENTWISE_BLOCK)), ELEMENTWISE_BLOCK


def row_block(width: int) -> int:
    """Threads of a block that reduces one row of ``width`` values: a power of two in [32, 256]."""
    block = 32
    while block < width and block < 256:
        block *= 2
    return block


def _order(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def _prev(t: int, steps: int, reverse: bool) -> int:
    """The step processed before t in the forward scan, or -1 (the initial state)."""
    if reverse:
        return t + 1 if t + 1 < steps else -1
    return t - 1


@dataclass(eq=False)
class FusedTape:
    """What a fused forward scan leaves for its backward scan (see :class:`~seqnet.kernels.time_loop.Tape`).

    hs: (T, B, H) hidden state after each step (the layer output); h0: (B, H); ``buffers``:
    the cell's own, by name (gates, cs, c0, hn, rh, a_hat, stats)."""

    reverse: bool
    hs: Any
    h0: Any
    mask: Any
    buffers: dict = field(default_factory=dict)

    def h_prev_product(self, d, xp):
        """sum over t of h_prev[t]^T @ d[t]: d (T, B, K) -> (H, K), with h_prev read from hs in
        place (each step takes the state the one before it left; the first takes h0)."""
        steps, hidden, width = d.shape[0], self.hs.shape[-1], d.shape[-1]
        first = steps - 1 if self.reverse else 0
        product = xp.matmul(xp.matrix_transpose(self.h0), d[first, ...])
        if steps > 1:
            inner_h, inner_d = (self.hs[1:, ...], d[:-1, ...]) if self.reverse else (self.hs[:-1, ...], d[1:, ...])
            product = product + xp.matmul(xp.matrix_transpose(xp.reshape(inner_h, (-1, hidden))),
                                          xp.reshape(inner_d, (-1, width)))
        return product

    @property
    def caches(self) -> list:
        """The reference scan's per-step caches of Cho's GRU, (h_prev, rz, n, r * h_prev), as
        views of this tape: what :meth:`seqnet.cells.GRUCell.recurrent_grads` reads for W_hn."""
        gates, rh = self.buffers["gates"], self.buffers["rh"]
        steps, hidden = gates.shape[0], self.hs.shape[-1]
        views = []
        for t in range(steps):
            prev = _prev(t, steps, self.reverse)
            h_prev = self.h0 if prev < 0 else self.hs[prev, ...]
            views.append((h_prev, gates[t, :, :2 * hidden], gates[t, :, 2 * hidden:], rh[t, ...]))
        return views


class FusedScan:
    """Forward and backward fused scans on the device of ``ops_for(dtype name)``."""

    def __init__(self, ops_for):
        self.ops_for = ops_for

    # -- shared set-up ---------------------------------------------------------------------
    def _start(self, xproj, state0, masks):
        ops = self.ops_for(str(xproj.dtype))
        mask = None if masks is None else ops.contiguous(ops.stack(masks))          # (T, B, 1) bool
        return ops, ops.contiguous(xproj), [ops.contiguous(s) for s in state0], mask

    # -- forward ---------------------------------------------------------------------------
    def forward(self, cell, xproj, state0, p, masks, reverse, *, xp, keep_tape=True):
        ops, xproj, state0, mask = self._start(xproj, state0, masks)
        steps, batch, width = xproj.shape
        hidden = state0[0].shape[-1]
        hs = ops.empty((steps, batch, hidden))
        tape = FusedTape(bool(reverse), hs, state0[0], mask)
        run = {"lstm": self._lstm_forward, "lstm_ln": self._lstm_forward, "gru": self._gru_forward,
               "rnn": self._rnn_forward}[cell.kernel_key()]
        final = run(ops, cell, xproj, state0, p, tape, keep_tape)
        return hs, final, (tape if keep_tape else None)

    def _lstm_forward(self, ops, cell, xproj, state0, p, tape, keep_tape):
        steps, batch, width = xproj.shape
        hidden = width // 4
        (h0, c0), hs, mask = state0, tape.hs, tape.mask
        layer_norm = cell.kernel_key() == "lstm_ln"
        kept = steps if keep_tape else 1
        cs = ops.empty((steps if keep_tape else 2, batch, hidden))      # inference: two c buffers in turn
        gates = ops.empty((kept, batch, width))
        hh = ops.empty((batch, width))
        hh_m, h0_m, hs_m, w_m = (ops.matrix(m) for m in (hh, h0, ops.reshape(hs, (steps * batch, hidden)), p.weight_hh))
        if layer_norm:
            a_hat, stats = ops.empty((kept, batch, width)), ops.empty((kept, batch, 3))
            ln = [ops.contiguous(p.extra[k]) for k in ("ln_weight_hh", "ln_bias_hh", "ln_weight_c", "ln_bias_c")]
            grid, block = min(batch, MAX_GRID), row_block(width)
            tape.buffers.update(a_hat=a_hat, stats=stats, ln=ln)
        else:
            grid, block = elementwise_launch(batch * hidden)
        masked = int(mask is not None)
        for k, t in enumerate(_order(steps, tape.reverse)):
            prev = _prev(t, steps, tape.reverse)
            tc, tc_prev = (t, prev) if keep_tape else (k % 2, -1 if k == 0 else (k - 1) % 2)
            tg = t if keep_tape else 0
            ops.gemm(hh_m, 0, h0_m if prev < 0 else hs_m, max(prev, 0) * batch, w_m, batch)
            if layer_norm:
                ops.launch("lstm_ln_forward", grid, block, xproj, hh, h0, c0, hs, cs, gates, a_hat, stats, *ln,
                           mask, t, prev, tc, tc_prev, tg, masked, batch, hidden)
            else:
                ops.launch("lstm_forward", grid, block, xproj, hh, h0, c0, hs, cs, gates, mask,
                           t, prev, tc, tc_prev, tg, masked, batch, hidden)
        tape.buffers.update(gates=gates, cs=cs, c0=c0)
        return hs[t, ...], cs[tc, ...]

    def _gru_forward(self, ops, cell, xproj, state0, p, tape, keep_tape):
        steps, batch, width = xproj.shape
        hidden = width // 3
        (h0,), hs, mask = state0, tape.hs, tape.mask
        kept = steps if keep_tape else 1
        gates = ops.empty((kept, batch, width))
        side = ops.empty((kept, batch, hidden))            # reset_after: W_hn h + b_hn; Cho: r * h
        h0_m, hs_m = ops.matrix(h0), ops.matrix(ops.reshape(hs, (steps * batch, hidden)))
        grid, block = elementwise_launch(batch * hidden)
        masked = int(mask is not None)
        if cell.reset_after:
            hh = ops.empty((batch, width))
            hh_m, w_m = ops.matrix(hh), ops.matrix(p.weight_hh)
            bias = None if p.bias_hh is None else ops.contiguous(p.bias_hh)
        else:
            w_rz, w_n = ops.matrix(p.weight_hh[:, :2 * hidden]), ops.matrix(p.weight_hh[:, 2 * hidden:])
            hrz, hn = ops.empty((batch, 2 * hidden)), ops.empty((batch, hidden))
            hrz_m, hn_m, side_m = ops.matrix(hrz), ops.matrix(hn), ops.matrix(ops.reshape(side, (kept * batch, hidden)))
        for t in _order(steps, tape.reverse):
            prev = _prev(t, steps, tape.reverse)
            tg = t if keep_tape else 0
            h_src, h_row = (h0_m, 0) if prev < 0 else (hs_m, prev * batch)
            if cell.reset_after:
                ops.gemm(hh_m, 0, h_src, h_row, w_m, batch)
                ops.launch("gru_forward", grid, block, xproj, hh, bias, h0, hs, gates, side, mask,
                           t, prev, tg, int(bias is not None), masked, batch, hidden)
            else:
                ops.gemm(hrz_m, 0, h_src, h_row, w_rz, batch)
                ops.launch("gru_cho_reset", grid, block, xproj, hrz, h0, hs, gates, side, t, prev, tg, batch, hidden)
                ops.gemm(hn_m, 0, side_m, tg * batch, w_n, batch)
                ops.launch("gru_cho_forward", grid, block, xproj, hn, h0, hs, gates, mask,
                           t, prev, tg, masked, batch, hidden)
        tape.buffers.update(gates=gates, **({"hn": side} if cell.reset_after else {"rh": side}))
        return (hs[t, ...],)

    def _rnn_forward(self, ops, cell, xproj, state0, p, tape, keep_tape):
        steps, batch, hidden = xproj.shape
        (h0,), hs, mask = state0, tape.hs, tape.mask
        h0_m, hs_m, w_m = ops.matrix(h0), ops.matrix(ops.reshape(hs, (steps * batch, hidden))), ops.matrix(p.weight_hh)
        grid, block = elementwise_launch(batch * hidden)
        relu, masked = int(cell.nonlinearity == "relu"), int(mask is not None)
        for t in _order(steps, tape.reverse):
            prev = _prev(t, steps, tape.reverse)
            ops.gemm(hs_m, t * batch, h0_m if prev < 0 else hs_m, max(prev, 0) * batch, w_m, batch)
            ops.launch("rnn_forward", grid, block, xproj, h0, hs, mask, t, prev, relu, masked, batch, hidden)
        return (hs[t, ...],)

    # -- backward --------------------------------------------------------------------------
    def backward(self, cell, tape, d_hs, d_final, p, masks, *, xp):
        ops = self.ops_for(str(tape.hs.dtype))
        d_hs = None if d_hs is None else ops.contiguous(d_hs)
        d_state = [ops.copy(d) for d in d_final]                # updated in place, step by step
        run = {"lstm": self._lstm_backward, "lstm_ln": self._lstm_backward, "gru": self._gru_backward,
               "rnn": self._rnn_backward}[cell.kernel_key()]
        d_xproj, d_hproj, d_extra = run(ops, cell, tape, d_hs, d_state, p)
        return tuple(d_state), d_xproj, d_hproj, d_extra

    def _backward_order(self, tape):
        steps = tape.hs.shape[0]
        for t in reversed(_order(steps, tape.reverse)):
            yield t, _prev(t, steps, tape.reverse)

    def _lstm_backward(self, ops, cell, tape, d_hs, d_state, p):
        gates, cs, c0 = tape.buffers["gates"], tape.buffers["cs"], tape.buffers["c0"]
        steps, batch, width = gates.shape
        hidden = width // 4
        dh, dc = d_state
        has_d_hs, masked = int(d_hs is not None), int(tape.mask is not None)
        if cell.kernel_key() == "lstm_ln":
            return self._lstm_ln_backward(ops, tape, d_hs, dh, dc, p)
        dh_m, w_m = ops.matrix(dh), ops.matrix(p.weight_hh)
        dz_m = ops.matrix(ops.reshape(gates, (steps * batch, width)))   # gates become d_xproj, step by step
        grid, block = elementwise_launch(batch * hidden)
        for t, prev in self._backward_order(tape):
            ops.launch("lstm_backward", grid, block, gates, cs, c0, d_hs, dh, dc, tape.mask,
                       t, prev, has_d_hs, masked, batch, hidden)
            ops.gemm(dh_m, 0, dz_m, t * batch, w_m, batch, transpose_b=True, accumulate=True)
        return gates, gates, None

    def _lstm_ln_backward(self, ops, tape, d_hs, dh, dc, p):
        b = tape.buffers
        gates, a_hat = b["gates"], b["a_hat"]
        steps, batch, width = gates.shape
        hidden = width // 4
        ln_weight_hh, _, ln_weight_c, ln_bias_c = b["ln"]
        d_a = ops.empty((steps, batch, width))                  # dL/d(h_prev W_hh): d_hproj
        d_lnc, d_lnc_c_hat = ops.empty((steps, batch, hidden)), ops.empty((steps, batch, hidden))
        dh_m, d_a_m, w_m = ops.matrix(dh), ops.matrix(ops.reshape(d_a, (steps * batch, width))), ops.matrix(p.weight_hh)
        has_d_hs, masked = int(d_hs is not None), int(tape.mask is not None)
        grid, block = min(batch, MAX_GRID), row_block(width)
        for t, prev in self._backward_order(tape):
            ops.launch("lstm_ln_backward", grid, block, gates, a_hat, b["stats"], b["cs"], b["c0"], d_hs, dh, dc,
                       d_a, d_lnc, d_lnc_c_hat, ln_weight_hh, ln_weight_c, ln_bias_c, tape.mask,
                       t, prev, has_d_hs, masked, batch, hidden)
            ops.gemm(dh_m, 0, d_a_m, t * batch, w_m, batch, transpose_b=True, accumulate=True)
        # The cell's own parameters: sums over every step and row, once (a_hat now holds dz * a_hat).
        d_extra = {"ln_weight_hh": ops.sum_rows(a_hat), "ln_bias_hh": ops.sum_rows(gates),
                   "ln_weight_c": ops.sum_rows(d_lnc_c_hat), "ln_bias_c": ops.sum_rows(d_lnc)}
        return gates, d_a, d_extra

    def _gru_backward(self, ops, cell, tape, d_hs, d_state, p):
        gates = tape.buffers["gates"]
        steps, batch, width = gates.shape
        hidden = width // 3
        (dh,) = d_state
        has_d_hs, masked = int(d_hs is not None), int(tape.mask is not None)
        grid, block = elementwise_launch(batch * hidden)
        if cell.reset_after:
            hn, dhp = tape.buffers["hn"], ops.empty((batch, width))
            dh_m, dhp_m, w_m = ops.matrix(dh), ops.matrix(dhp), ops.matrix(p.weight_hh)
            for t, prev in self._backward_order(tape):
                ops.launch("gru_backward", grid, block, gates, hn, tape.hs, tape.h0, d_hs, dh, dhp, tape.mask,
                           t, prev, has_d_hs, masked, batch, hidden)
                ops.gemm(dh_m, 0, dhp_m, 0, w_m, batch, transpose_b=True, accumulate=True)
            # gates now hold d_xproj, hn holds dn * r: d_hproj is d_xproj but for its n block.
            return gates, (gates[..., :2 * hidden], hn), None
        d_xproj = ops.empty((steps, batch, width))             # Cho: the tape's gates stay for W_hn's gradient
        rows = ops.reshape(d_xproj, (steps * batch, width))
        d_rz_m, d_n_m = ops.matrix(rows[:, :2 * hidden]), ops.matrix(rows[:, 2 * hidden:])
        w_rz, w_n = ops.matrix(p.weight_hh[:, :2 * hidden]), ops.matrix(p.weight_hh[:, 2 * hidden:])
        d_rh = ops.empty((batch, hidden))
        d_rh_m, dh_m = ops.matrix(d_rh), ops.matrix(dh)
        for t, prev in self._backward_order(tape):
            ops.launch("gru_cho_backward", grid, block, gates, tape.hs, tape.h0, d_hs, dh, d_xproj, tape.mask,
                       t, prev, has_d_hs, masked, batch, hidden)
            ops.gemm(d_rh_m, 0, d_n_m, t * batch, w_n, batch, transpose_b=True)
            ops.launch("gru_cho_backward_reset", grid, block, gates, tape.hs, tape.h0, d_rh, dh, d_xproj,
                       t, prev, batch, hidden)
            ops.gemm(dh_m, 0, d_rz_m, t * batch, w_rz, batch, transpose_b=True, accumulate=True)
        return d_xproj, d_xproj, None

    def _rnn_backward(self, ops, cell, tape, d_hs, d_state, p):
        steps, batch, hidden = tape.hs.shape
        (dh,) = d_state
        d_xproj = ops.empty((steps, batch, hidden))
        dh_m, w_m = ops.matrix(dh), ops.matrix(p.weight_hh)
        da_m = ops.matrix(ops.reshape(d_xproj, (steps * batch, hidden)))
        grid, block = elementwise_launch(batch * hidden)
        relu, has_d_hs, masked = int(cell.nonlinearity == "relu"), int(d_hs is not None), int(tape.mask is not None)
        for t, _ in self._backward_order(tape):
            ops.launch("rnn_backward", grid, block, tape.hs, d_hs, dh, d_xproj, tape.mask,
                       t, relu, has_d_hs, masked, batch, hidden)
            ops.gemm(dh_m, 0, da_m, t * batch, w_m, batch, transpose_b=True, accumulate=True)
        return d_xproj, d_xproj, None


CELL_KEYS = ("lstm", "lstm_ln", "gru", "rnn")      # Cell.kernel_key() values the fused scans compute


def scan_kernels(ops_for) -> dict[str, ScanKernels]:
    """The override table of an override module: every cell, both GRU variants, with masks."""
    scan = FusedScan(ops_for)
    return {key: ScanKernels(scan.forward, scan.backward, masks=True) for key in CELL_KEYS}
