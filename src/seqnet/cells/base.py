"""What every recurrent cell supplies to the shared time loop.

A cell is the math of one timestep and nothing else. The time loop
(:mod:`seqnet.kernels.time_loop`) owns direction and variable lengths; the recurrent layer
(:mod:`seqnet.layers.recurrent`) owns stacking and the weight-gradient matmuls. Shapes, for
batch B, hidden size H and G gates:

- ``raw``: (N, G*H), the input projection ``x @ W_ih`` of N = T*B rows, computed for all
  timesteps in one matmul before the loop; :meth:`Cell.project_input` turns it into
- ``xproj``: (B, G*H) per step, what ``forward_step`` adds to the recurrent path;
- ``state``: a tuple of (B, H) arrays, ``(h,)`` or ``(h, c)``;
- ``p``: the :class:`~seqnet.kernels.time_loop.UnitParams` of the layer and direction:
  ``p.weight_hh`` (H, G*H) in seqnet's internal layout (transposed, gates in the cell's
  internal order), ``p.bias_hh`` (G*H,) or None, ``p.extra`` the cell's own parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


def sigmoid(z, *, xp):
    """Logistic function written with tanh: never overflows, one transcendental call."""
    return 0.5 * xp.tanh(0.5 * z) + 0.5


@dataclass(frozen=True)
class CellParam:
    """A parameter a cell owns beyond W_ih, W_hh, b_ih, b_hh: one per layer and direction.

    ``size`` is "gates" (G*H,) or "hidden" (H,); ``init`` its constant initial value.
    Parameters of size "gates" hold G gate blocks and are reordered between PyTorch's gate
    order and the cell's internal one, like the biases.
    """

    size: str
    init: float


class Cell:
    """Base class: per-step forward and backward math of one recurrent cell."""

    name: str = "cell"
    num_gates: int = 1
    state_names: tuple[str, ...] = ("h",)
    # Gate order of PyTorch's weights, and the internal order used here
    # (chosen so that gates sharing a nonlinearity are contiguous).
    torch_gate_order: tuple[str, ...] = ("a",)
    internal_gate_order: tuple[str, ...] = ("a",)
    # True when b_hh only ever adds to xproj, so it is added with b_ih before the loop.
    fold_hidden_bias: bool = True
    # The cell's own parameters by stem name; the layer names them f"{stem}_l{k}[_reverse]".
    extra_params: ClassVar[dict[str, CellParam]] = {}
    # Name of the fused kernels that compute exactly this class's math (seqnet.kernels).
    kernel: ClassVar[str | None] = None

    @property
    def gate_permutation(self) -> list[int]:
        """internal gate k is PyTorch gate ``gate_permutation[k]``."""
        return [self.torch_gate_order.index(g) for g in self.internal_gate_order]

    def kernel_key(self) -> str | None:
        """The fused kernels for this cell, or None for the reference time loop.

        Read from the cell's own class only, never inherited: a subclass that changes the
        math runs the reference until it declares (and tests) kernels of its own.
        """
        return vars(type(self)).get("kernel")

    # -- the input projection, once for all timesteps ---------------------------------
    def project_input(self, raw, p, *, xp) -> tuple[Any, Any]:
        """raw (N, G*H) -> (xproj (N, G*H), cache). Row by row, so a table of per-token rows
        can be projected once and looked up. Default: add ``p.input_bias``."""
        return (raw if p.input_bias is None else raw + p.input_bias), None

    def project_input_backward(self, d_xproj, cache, p, *, xp) -> tuple[Any, dict]:
        """d_xproj (N, G*H) -> (d_raw (N, G*H), {stem: gradient}) for the parameters used by
        :meth:`project_input`: b_ih, and b_hh when it is folded in."""
        if p.bias_ih is None:
            return d_xproj, {}
        d_bias = xp.sum(d_xproj, axis=0)
        return d_xproj, ({"bias_ih": d_bias, "bias_hh": d_bias} if self.fold_hidden_bias else {"bias_ih": d_bias})

    # -- one step ---------------------------------------------------------------------
    def forward_step(self, xproj, state: tuple, p, *, xp) -> tuple[tuple, Any]:
        """One step: returns (new_state, cache for backward_step)."""
        raise NotImplementedError

    def backward_step(self, d_state: tuple, cache: Any, p, *, xp) -> tuple[tuple, Any, Any, dict | None]:
        """Given dL/d(new_state) returns (dL/d(old_state), d_xproj (B, G*H), d_hproj (B, G*H), d_extra).

        ``d_hproj`` is the gradient w.r.t. the recurrent projection ``h_prev @ W_hh``; cells
        where it equals ``d_xproj`` return the same object. ``d_extra`` maps stems of the
        cell's own parameters to this step's gradient (the time loop sums them), or is None.
        """
        raise NotImplementedError

    # -- after the loop -----------------------------------------------------------------
    def recurrent_grads(self, tape, d_hproj, d_extra, p, *, xp) -> dict:
        """{stem: gradient} of the parameters used inside the loop, from all steps at once.

        ``tape`` follows :class:`seqnet.kernels.time_loop.Tape`; d_hproj: (T, B, G*H), or a
        tuple of (T, B, K) column blocks that concatenate to it. weight_hh's gradient is
        ``tape.h_prev_product(d_hproj)``; b_hh's (unless folded into the input projection)
        is the sum of d_hproj; ``d_extra`` is passed through.
        """
        blocks = d_hproj if isinstance(d_hproj, tuple) else (d_hproj,)
        grads = {"weight_hh": _concat([tape.h_prev_product(b, xp) for b in blocks], xp)}
        if p.bias_hh is not None and not self.fold_hidden_bias:
            grads["bias_hh"] = _concat([xp.sum(b, axis=(0, 1)) for b in blocks], xp)
        if d_extra:
            grads.update(d_extra)
        return grads


def _concat(parts: list, xp):
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)
