"""Reference kernel of the next-token choice on the device: Gumbel-max or argmax over scores."""
from __future__ import annotations


def next_tokens(scores, noise, *, bias=None, temperature: float = 1.0, banned_id: int | None = None, xp):
    """One token id per row: (N,) int64 on the scores' device.

    scores: (N, V) logits without the output bias; bias: (V,) or None; noise: (N, V)
    Gumbel(0, 1) draws, float64 where the device has it, or None for the argmax (greedy;
    ``temperature`` then ignored). The same choice as :func:`seqnet.decoding.sample_next` on
    the host: argmax(float64(scores + bias) / temperature + noise), ``banned_id`` never
    chosen; in float32 on a device without float64.
    """
    z = scores if bias is None else scores + bias
    if noise is not None:                     # greedy stays in the scores' dtype (float32 devices)
        z = xp.astype(z, noise.dtype)
        if temperature != 1.0:
            z = z / temperature
        z = z + noise
    if banned_id is not None:
        ids = xp.arange(z.shape[-1], device=z.device)
        z = xp.where(ids == banned_id, -xp.inf, z)
    return xp.astype(xp.argmax(z, axis=-1), xp.int64)
