"""Generating a fixed number of tokens from any model that can be stepped one token at a time.

A model offers :class:`TokenSteps` (:mod:`.search`): ``start(prefix)`` runs a (T, N) block
of host token ids and returns the next-token logits (N, V) on the host with the model's
state; ``step(ids, state)`` feeds one token per row. The loop knows nothing else about the
model; it is the loop of :func:`seqnet.decoding.sample_search`.
"""
from __future__ import annotations

import numpy as np

from .search import TokenSteps, _sample_loop, check_count

__all__ = ["TokenSteps", "check_count", "sample_tokens"]


def sample_tokens(steps: TokenSteps, prefix: np.ndarray, length: int, *, rng: np.random.Generator,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  greedy: bool = False, eos_id: int | None = None, banned_id: int | None = None) -> np.ndarray:
    """Sample up to ``length`` tokens after ``prefix`` (T, N), one column per sample: (L, N) host ids.

    Every row continues until ``length`` tokens; with ``eos_id`` generation ends early once
    every row has produced it (rows that finished keep being sampled; callers cut at the end
    token). ``banned_id`` (<UNK>) is never produced. Unfiltered sampling draws its Gumbel noise
    in blocks: the same stream as one draw per token.
    """
    length = check_count("length", length, low=0)
    if length == 0:
        return np.zeros((0, prefix.shape[1]), dtype=np.int64)
    tokens, *_ = _sample_loop(steps, prefix, length, rng=rng, greedy=greedy, temperature=temperature, top_k=top_k,
                              top_p=top_p, eos_id=eos_id, banned_ids=() if banned_id is None else (banned_id,),
                              min_len=0, keep_attention=False)
    return tokens
