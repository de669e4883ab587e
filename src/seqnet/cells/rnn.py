"""Elman RNN cell:  h' = act(x W_ih + b_ih + h W_hh + b_hh),  act = tanh or relu."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Cell

NONLINEARITIES = ("tanh", "relu")


class RNNCell(Cell):
    name = "rnn"
    num_gates = 1
    kernel = "rnn"

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in NONLINEARITIES:
            raise ConfigError(f"nonlinearity: expected one of {NONLINEARITIES}, received {nonlinearity!r}")
        self.nonlinearity = nonlinearity

    def forward_step(self, xproj, state, p, *, xp):
        (h,) = state
        a = xproj + xp.matmul(h, p.weight_hh)
        h_new = xp.tanh(a) if self.nonlinearity == "tanh" else xp.maximum(a, 0)
        return (h_new,), h_new

    def backward_step(self, d_state, cache, p, *, xp):
        (dh,) = d_state
        h_new = cache
        if self.nonlinearity == "tanh":
            da = dh * (1 - h_new * h_new)          # tanh' = 1 - tanh^2
        else:
            da = xp.where(h_new > 0, dh, 0.0)      # relu' = [a > 0] = [h' > 0]
        dh_prev = xp.matmul(da, xp.matrix_transpose(p.weight_hh))
        return (dh_prev,), da, da, None
