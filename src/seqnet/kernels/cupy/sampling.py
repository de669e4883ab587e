"""CuPy override of :func:`seqnet.kernels.sampling.next_tokens`: one launch of cuda/sample.cu's
``sample_tokens`` (output bias, temperature, banned id, Gumbel noise and argmax fused, a block
per row)."""
from __future__ import annotations

from .driver import MAX_GRID, row_block


def make_next_tokens(ops_for):
    """next_tokens on the device of ``ops_for(dtype name)``."""

    def next_tokens(scores, noise, *, bias=None, temperature: float = 1.0, banned_id: int | None = None, xp):
        ops = ops_for(str(scores.dtype))
        scores = ops.contiguous(scores)
        rows, vocab = scores.shape
        out = ops.empty((rows,), "int64")
        ops.launch("sample_tokens", min(rows, MAX_GRID), row_block(vocab), scores,
                   None if bias is None else ops.contiguous(bias), None if noise is None else ops.contiguous(noise),
                   out, float(temperature) if noise is not None else 1.0, int(bias is not None),
                   int(noise is not None), 0, -1 if banned_id is None else int(banned_id), 0, rows, vocab)
        return out

    return next_tokens
