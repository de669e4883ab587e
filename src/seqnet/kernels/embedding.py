"""Reference kernel of the embedding gradient: rows of d_out summed per token id."""
from __future__ import annotations

# One-hot chunks of at most this many elements bound the reference's memory.
ONE_HOT_CHUNK = 1 << 22


def embedding_backward(ids, d_out, vocab_size: int, *, xp):
    """dL/dW (V, K) of a lookup ``W[ids]``: rows of ``d_out`` (N, K) summed per id, ids (N,).

    Portable reference: a one-hot (chunk, V) matmul, so repeated ids add up exactly (a
    scatter-add through ``array_api_extra.at`` drops repeats on numpy and torch).
    """
    n, width = ids.shape[0], d_out.shape[-1]
    vocab = xp.arange(vocab_size, dtype=ids.dtype, device=ids.device)
    chunk = max(1, ONE_HOT_CHUNK // vocab_size)
    grad = xp.zeros((vocab_size, width), dtype=d_out.dtype, device=d_out.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)              # array_api_strict rejects out-of-bounds slice stops
        one_hot = xp.astype(ids[start:stop, None] == vocab, d_out.dtype)   # (chunk, V)
        grad = grad + xp.matmul(xp.matrix_transpose(one_hot), d_out[start:stop, ...])
    return grad
