"""What every recurrent cell supplies to the shared time loop.

A cell is the math of one timestep and nothing else. The time loop
(:mod:`seqnet.layers.time_loop`) owns stacking, direction, variable lengths and the
weight-gradient matmuls. Shapes, for batch B, hidden size H and G gates:

- ``xproj``: (B, G*H), the input projection ``x_t @ W_ih + bias`` of this step,
  computed for all timesteps in one matmul before the loop;
- ``state``: a tuple of (B, H) arrays, ``(h,)`` or ``(h, c)``;
- ``w_hh``: (H, G*H), the recurrent weights in seqnet's internal layout
  (transposed, gates in the cell's internal order);
- ``b_hh``: (G*H,) or None; added inside the step only by cells whose
  ``fold_hidden_bias`` is False (the others get it folded into ``xproj``).
"""
from __future__ import annotations

from typing import Any


def sigmoid(z, *, xp):
    """Logistic function written with tanh: never overflows, one transcendental call."""
    return 0.5 * xp.tanh(0.5 * z) + 0.5


class Cell:
    """Base class: per-step forward and backward math of one recurrent cell."""

    name: str = "cell"
    num_gates: int = 1
    state_names: tuple[str, ...] = ("h",)
    # Gate order of PyTorch's weights, and the internal order used here
    # (chosen so that gates sharing a nonlinearity are contiguous).
    torch_gate_order: tuple[str, ...] = ("a",)
    internal_gate_order: tuple[str, ...] = ("a",)
    # True when b_hh only ever adds to xproj, so the loop can pre-add it once.
    fold_hidden_bias: bool = True

    @property
    def gate_permutation(self) -> list[int]:
        """internal gate k is PyTorch gate ``gate_permutation[k]``."""
        return [self.torch_gate_order.index(g) for g in self.internal_gate_order]

    def forward_step(self, xproj, state: tuple, w_hh, b_hh, *, xp) -> tuple[tuple, Any]:
        """One step: returns (new_state, cache for backward_step)."""
        raise NotImplementedError

    def backward_step(self, d_state: tuple, cache: Any, w_hh, *, xp) -> tuple[tuple, Any, Any]:
        """Given dL/d(new_state) returns (dL/d(old_state), d_xproj (B, G*H), d_hproj (B, G*H)).

        ``d_hproj`` is the gradient w.r.t. the recurrent pre-activation
        ``h_prev @ w_hh (+ b_hh)``; cells where it equals ``d_xproj`` return the same object.
        """
        raise NotImplementedError

    def hidden_weight_grad(self, tape: Any, d_hproj, *, xp):
        """dL/dW_hh (H, G*H) from all steps at once; ``d_hproj`` (T, B, G*H).

        ``tape`` is what the forward scan recorded: ``tape.h_prev_product(d, xp)`` is
        sum_t h_prev[t]^T d[t], and the reference tape's ``caches`` hold each step's cache."""
        return tape.h_prev_product(d_hproj, xp)
