"""The one time loop shared by every cell, layer, direction and length pattern.

``scan_forward`` runs a cell over the precomputed input projections of one layer and
direction; ``scan_backward`` runs backpropagation through time over the tape it left.
Variable lengths are a per-step boolean mask (B, 1): where it is False the state is
carried unchanged and no gradient reaches the gates, so the final state is the state
at each row's last valid step, and a reverse scan starts at each row's own last step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..cells.base import Cell


@dataclass
class Tape:
    """What scan_backward needs from scan_forward: per-step caches and previous hidden states."""

    caches: list
    h_prev: list          # h_prev[t]: hidden state fed into step t, (B, H)
    reverse: bool

    def h_prev_product(self, d, xp):
        """sum over t of h_prev[t]^T @ d[t]: d (T, B, K) -> (H, K) (the hidden weight's gradient)."""
        h_prev = xp.stack(self.h_prev)
        hidden, width = h_prev.shape[-1], d.shape[-1]
        return xp.matmul(xp.matrix_transpose(xp.reshape(h_prev, (-1, hidden))), xp.reshape(d, (-1, width)))


def prepare_weight(w_hh):
    """W_hh in the form ``scan_forward`` takes, for many scans with the same weights (generation).

    The reference needs nothing prepared; backends override this to precompute derived forms."""
    return w_hh


def scan_forward(cell: Cell, xproj, state0: tuple, w_hh, b_hh, masks: Sequence | None, reverse: bool, *, xp,
                 keep_tape: bool = True):
    """Run ``cell`` over time.

    xproj: (T, B, G*H); state0: tuple of (B, H); masks: None or T arrays of (B, 1) bool.
    Returns ``hs`` (T, B, H) in time order (the carried state, not yet zeroed at
    padded steps), the final state tuple, and the :class:`Tape` (empty unless ``keep_tape``).
    """
    steps = xproj.shape[0]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    hs: list[Any] = [None] * steps
    caches: list[Any] = [None] * steps
    h_prev: list[Any] = [None] * steps
    state = state0
    for t in order:
        new_state, cache = cell.forward_step(xproj[t, ...], state, w_hh, b_hh, xp=xp)
        if masks is not None:
            new_state = tuple(xp.where(masks[t], new, old) for new, old in zip(new_state, state))
        if keep_tape:
            caches[t], h_prev[t] = cache, state[0]
        hs[t] = new_state[0]
        state = new_state
    return xp.stack(hs), state, Tape(caches, h_prev, reverse)


def scan_backward(cell: Cell, tape: Tape, d_hs, d_final: tuple, w_hh, masks: Sequence | None, *, xp):
    """Backpropagation through time for one layer and direction.

    d_hs: None or (T, B, H), gradient w.r.t. the hidden state emitted at each step
    (already zero at padded steps); d_final: tuple of (B, H), gradient w.r.t. the final state.
    Returns (d_state0 tuple, d_xproj (T, B, G*H), d_hproj (T, B, G*H)). ``d_hproj`` is
    ``d_xproj`` itself where the two are equal; an override may also return it as a tuple of
    column blocks that concatenate to it (see :func:`hidden_param_grads`).
    """
    steps = len(tape.caches)
    order = range(steps) if tape.reverse else range(steps - 1, -1, -1)
    d_x: list[Any] = [None] * steps
    d_h: list[Any] = [None] * steps
    d_state = d_final
    for t in order:
        if d_hs is not None:
            d_state = (d_state[0] + d_hs[t, ...],) + d_state[1:]
        if masks is None:
            d_state, d_x[t], d_h[t] = cell.backward_step(d_state, tape.caches[t], w_hh, xp=xp)
        else:
            d_in = tuple(xp.where(masks[t], d, 0.0) for d in d_state)
            d_prev, d_x[t], d_h[t] = cell.backward_step(d_in, tape.caches[t], w_hh, xp=xp)
            d_state = tuple(xp.where(masks[t], dp, d) for dp, d in zip(d_prev, d_state))
    d_xproj = xp.stack(d_x)
    d_hproj = d_xproj if d_h[0] is d_x[0] else xp.stack(d_h)
    return d_state, d_xproj, d_hproj


def hidden_param_grads(cell: Cell, tape, d_hproj, *, xp, bias: bool):
    """dL/dW_hh (H, G*H) and dL/db_hh (G*H,) (None without ``bias``) from scan_backward's ``d_hproj``.

    d_hproj: (T, B, G*H), or a tuple of (T, B, K) column blocks (only for cells that keep
    the base ``hidden_weight_grad``, where W_hh multiplies h_prev directly).
    """
    if not isinstance(d_hproj, tuple):
        d_w = cell.hidden_weight_grad(tape, d_hproj, xp=xp)
        return d_w, (xp.sum(d_hproj, axis=(0, 1)) if bias else None)
    d_w = xp.concat([tape.h_prev_product(block, xp) for block in d_hproj], axis=1)
    return d_w, (xp.concat([xp.sum(block, axis=(0, 1)) for block in d_hproj]) if bias else None)
