"""numpy override of :func:`seqnet.kernels.embedding.embedding_backward`."""
from __future__ import annotations

import numpy as np

from .. import embedding


def _grouping_is_cheaper(rows: int, vocab_size: int, width: int) -> bool:
    """A one-hot (N, V) product costs N*V*K multiply-adds at BLAS speed; grouping the rows by id
    costs about 15 us per distinct id plus a pass over d_out (constants measured on the
    project's 2-core machine). Grouping wins for wide rows, e.g. the per-token sums of a
    language model's looked-up input projections (V, G*H)."""
    return min(rows, vocab_size) * 15e-6 + rows * width * 1e-9 < rows * vocab_size * width * 4e-11


def embedding_backward(ids, d_out, vocab_size: int, *, xp):
    """For wide rows, the rows of ``d_out`` (N, K) are grouped by id with one stable sort and
    summed group by group, a pass over memory instead of the reference's (N, V) one-hot
    product; narrow rows keep the reference."""
    if not _grouping_is_cheaper(ids.shape[0], vocab_size, d_out.shape[-1]):
        return embedding.embedding_backward(ids, d_out, vocab_size, xp=xp)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.diff(sorted_ids, prepend=sorted_ids[:1] - 1))
    stops = np.append(starts[1:], ids.shape[0])
    grad = np.zeros((vocab_size, d_out.shape[-1]), d_out.dtype)
    for start, stop in zip(starts.tolist(), stops.tolist()):
        np.sum(d_out[order[start:stop]], axis=0, out=grad[sorted_ids[start]])
    return grad
