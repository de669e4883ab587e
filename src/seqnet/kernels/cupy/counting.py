"""Launches per timestep of the fused time loop: counted, not estimated.

The driver reaches the device only through :class:`~seqnet.kernels.cupy.ops.Ops`, which counts
every GEMM and kernel launch; the per-step figure is the difference between scans of 8 and 4
steps, so one-off work (stacking masks, the sums of the layer-norm parameters) is left out,
as in :func:`seqnet.kernels.counting.ops_per_step`. With the host build (``HostOps``) this runs
on any machine; on a GPU ``CupyOps`` gives the same counts (one cuBLAS call may itself be
more than one kernel: split-K GEMMs add a reduction).
"""
from __future__ import annotations

import numpy as np

from ..time_loop import UnitParams
from .driver import FusedScan


def launches_per_step(cell, ops, *, masked: bool = False, batch: int = 2, hidden: int = 3) -> tuple[float, float]:
    """(forward, backward) launches per step of the fused scans of ``cell`` on ``ops``."""
    scan = FusedScan(lambda dtype: ops)
    rng = np.random.default_rng(0)
    width = cell.num_gates * hidden
    sizes = {"gates": width, "hidden": hidden}

    def run(steps: int) -> tuple[int, int]:
        p = UnitParams(weight_ih=None, weight_hh=ops.asarray(rng.standard_normal((hidden, width))),
                       bias_hh=None if cell.fold_hidden_bias else ops.asarray(rng.standard_normal(width)),
                       extra={k: ops.asarray(rng.standard_normal(sizes[s.size])) for k, s in cell.extra_params.items()})
        xproj = ops.asarray(rng.standard_normal((steps, batch, width)))
        state0 = tuple(ops.asarray(np.zeros((batch, hidden))) for _ in cell.state_names)
        masks = None
        if masked:
            lengths = np.array([steps] + [max(1, steps // 2)] * (batch - 1))
            mask = ops.asarray((np.arange(steps)[:, None] < lengths[None, :])[:, :, None])
            masks = [mask[t] for t in range(steps)]
        d_hs = ops.asarray(rng.standard_normal((steps, batch, hidden)))
        before = ops.total_launches
        _, final, tape = scan.forward(cell, xproj, state0, p, masks, False, xp=None)
        forward = ops.total_launches - before
        before = ops.total_launches
        scan.backward(cell, tape, d_hs, final, p, masks, xp=None)
        return forward, ops.total_launches - before

    (f4, b4), (f8, b8) = run(4), run(8)
    return (f8 - f4) / 4, (b8 - b4) / 4
