"""The reference time loop shared by every cell, layer, direction and length pattern.

``scan_forward`` runs a cell over the input projections of one layer and direction;
``scan_backward`` runs backpropagation through time over the tape it left. Variable
lengths are a per-step boolean mask (B, 1): where it is False the state is carried
unchanged and no gradient reaches the gates, so the final state is the state at each row's
last valid step, and a reverse scan starts at each row's own last step.

:func:`step_forward` / :func:`step_backward` are the loop body (one cell step and its
masking), shared by the scans and by :class:`SteppedScan`, the same loop driven one step
at a time by a caller whose next input depends on the previous output (a decoder with
input feeding); it leaves the same :class:`StepTape`.

Shapes: T steps, B batch rows, H hidden units, G gates (``cell.num_gates``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


@dataclass(eq=False)
class UnitParams:
    """The parameters of one layer and direction, in the internal layout the cells read.

    weight_ih: (I, G*H); weight_hh: (H, G*H); bias_ih, bias_hh: (G*H,) or None;
    ``extra``: the cell's own parameters (:attr:`seqnet.cells.Cell.extra_params`), by stem
    name; ``input_bias``: what the default input projection adds, b_ih + b_hh for cells whose
    ``fold_hidden_bias`` is True, else b_ih. ``prepared`` is scratch space where a kernel keeps
    forms it derives from these weights (a transposed copy), made once per UnitParams: per
    forward call in training, once per stepper in generation.
    """

    weight_ih: Any
    weight_hh: Any
    bias_ih: Any = None
    bias_hh: Any = None
    extra: dict = field(default_factory=dict)
    input_bias: Any = None
    prepared: dict = field(default_factory=dict)


class Tape(Protocol):
    """What every forward scan leaves for its backward scan and for :meth:`Cell.recurrent_grads`.

    ``h_prev_product(d, xp)`` is sum_t h_prev[t]^T @ d[t] for d (T, B, K), an (H, K) array,
    where h_prev[t] is the hidden state fed into step t (time order, whatever the direction):
    the gradient of any weight that multiplies h_prev directly, W_hh above all. A tape may
    hold anything else its own backward scan needs; cells that read more than this
    (Cho's GRU reads ``caches``) only run on the reference tape, :class:`StepTape`.
    """

    reverse: bool

    def h_prev_product(self, d, xp): ...


@dataclass
class StepTape:
    """The reference scan's tape: each step's cache and the hidden state fed into it."""

    caches: list
    h_prev: list          # h_prev[t]: hidden state fed into step t, (B, H)
    reverse: bool

    def h_prev_product(self, d, xp):
        """sum over t of h_prev[t]^T @ d[t]: d (T, B, K) -> (H, K)."""
        h_prev = xp.stack(self.h_prev)
        hidden, width = h_prev.shape[-1], d.shape[-1]
        return xp.matmul(xp.matrix_transpose(xp.reshape(h_prev, (-1, hidden))), xp.reshape(d, (-1, width)))


def step_forward(cell, xproj_t, state: tuple, p: UnitParams, mask_t=None, *, xp):
    """One step of the time loop: ``cell.forward_step``, then rows whose ``mask_t`` (B, 1) is
    False keep their state. Returns (new_state, cache). Shared by the scans below and by
    :class:`SteppedScan`, so the loop body exists once."""
    new_state, cache = cell.forward_step(xproj_t, state, p, xp=xp)
    if mask_t is not None:
        new_state = tuple(xp.where(mask_t, new, old) for new, old in zip(new_state, state))
    return new_state, cache


def step_backward(cell, cache, d_state: tuple, p: UnitParams, mask_t=None, *, xp):
    """The backward of :func:`step_forward`: d_state is dL/d(new_state) -> (dL/d(state),
    d_xproj_t, d_hproj_t, d_extra_t). Masked rows pass their gradient through unchanged and
    send none into the gates."""
    d_in = d_state if mask_t is None else tuple(xp.where(mask_t, d, 0.0) for d in d_state)
    d_prev, d_x, d_h, d_step = cell.backward_step(d_in, cache, p, xp=xp)
    if mask_t is not None:
        d_prev = tuple(xp.where(mask_t, dp, d) for dp, d in zip(d_prev, d_state))
    return d_prev, d_x, d_h, d_step


def _add_extra(total, step):
    if step is None:
        return total
    return step if total is None else {k: total[k] + v for k, v in step.items()}


def scan_forward(cell, xproj, state0: tuple, p: UnitParams, masks: Sequence | None, reverse: bool, *, xp,
                 keep_tape: bool = True):
    """Run ``cell`` over time.

    xproj: (T, B, G*H), the input projections after :meth:`Cell.project_input`; state0:
    tuple of (B, H); masks: None or T arrays of (B, 1) bool. Returns ``hs`` (T, B, H) in time
    order (the carried state, not yet zeroed at padded steps), the final state tuple, and the
    tape (None unless ``keep_tape``).
    """
    steps = xproj.shape[0]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    hs: list[Any] = [None] * steps
    caches: list[Any] = [None] * steps
    h_prev: list[Any] = [None] * steps
    state = state0
    for t in order:
        new_state, cache = step_forward(cell, xproj[t, ...], state, p, None if masks is None else masks[t], xp=xp)
        if keep_tape:
            caches[t], h_prev[t] = cache, state[0]
        hs[t] = new_state[0]
        state = new_state
    return xp.stack(hs), state, (StepTape(caches, h_prev, reverse) if keep_tape else None)


def scan_backward(cell, tape: StepTape, d_hs, d_final: tuple, p: UnitParams, masks: Sequence | None, *, xp):
    """Backpropagation through time for one layer and direction.

    d_hs: None or (T, B, H), gradient w.r.t. the hidden state emitted at each step
    (already zero at padded steps); d_final: tuple of (B, H), gradient w.r.t. the final state.
    Returns (d_state0 tuple, d_xproj (T, B, G*H), d_hproj, d_extra). ``d_hproj`` (T, B, G*H)
    is the gradient w.r.t. the recurrent projection ``h_prev @ W_hh``; it is ``d_xproj``
    itself where the two are equal, and an override may return it as a tuple of column blocks
    that concatenate to it. ``d_extra`` sums the per-step gradients of the cell's own
    parameters that its ``backward_step`` returns (None when it returns none).
    """
    steps = len(tape.caches)
    order = range(steps) if tape.reverse else range(steps - 1, -1, -1)
    d_x: list[Any] = [None] * steps
    d_h: list[Any] = [None] * steps
    d_extra = None
    d_state = d_final
    for t in order:
        if d_hs is not None:
            d_state = (d_state[0] + d_hs[t, ...],) + d_state[1:]
        d_state, d_x[t], d_h[t], d_step = step_backward(cell, tape.caches[t], d_state, p,
                                                        None if masks is None else masks[t], xp=xp)
        d_extra = _add_extra(d_extra, d_step)
    d_xproj = xp.stack(d_x)
    d_hproj = d_xproj if d_h[0] is d_x[0] else xp.stack(d_h)
    return d_state, d_xproj, d_hproj, d_extra


class SteppedScan:
    """The reference scan of one layer (forward in time) driven one step at a time by its caller.

    For recurrences whose next input depends on the previous output (a decoder with input
    feeding): ``forward(xproj_t, mask_t)`` runs :func:`step_forward` and records the step on
    a :class:`StepTape`; backward walks the recorded steps latest first,
    ``backward(d_h_t, mask_t) -> d_xproj_t`` with :func:`step_backward`, after
    ``begin_backward(d_final)``; ``end_backward()`` returns d_state0 and the stacked
    ``d_hproj``, so :meth:`Cell.recurrent_grads` takes the weight gradients from all steps at
    once, as after :func:`scan_backward`.
    Stepping a whole sequence computes exactly what the reference scan computes.
    """

    def __init__(self, cell, p: UnitParams, state0: tuple, *, xp):
        self.cell, self.p, self.xp = cell, p, xp
        self.state = state0
        self.tape = StepTape([], [], reverse=False)
        self._d_state: tuple | None = None
        self._d_h: list = []
        self._d_extra = None
        self._walked = 0

    @property
    def steps(self) -> int:
        return len(self.tape.caches)

    def forward(self, xproj_t, mask_t=None):
        """xproj_t (B, G*H) -> the new hidden state (B, H) (carried, not zeroed, where masked)."""
        new_state, cache = step_forward(self.cell, xproj_t, self.state, self.p, mask_t, xp=self.xp)
        self.tape.caches.append(cache)
        self.tape.h_prev.append(self.state[0])
        self.state = new_state
        return new_state[0]

    def begin_backward(self, d_final: tuple) -> None:
        """d_final: tuple of (B, H), the gradient w.r.t. the state after the last step."""
        self._d_state = d_final

    def backward(self, d_h_t, mask_t=None):
        """The latest step not yet walked: d_h_t (B, H) (its output's gradient) -> d_xproj_t (B, G*H)."""
        t = self.steps - 1 - self._walked
        d_state = (self._d_state[0] + d_h_t,) + self._d_state[1:]
        self._d_state, d_x, d_h, d_step = step_backward(self.cell, self.tape.caches[t], d_state, self.p, mask_t,
                                                        xp=self.xp)
        self._d_h.append(d_h)
        self._d_extra = _add_extra(self._d_extra, d_step)
        self._walked += 1
        return d_x

    def end_backward(self):
        """(d_state0, d_hproj (T, B, G*H) in time order, d_extra), once every step was walked."""
        return self._d_state, self.xp.stack(self._d_h[::-1]), self._d_extra
