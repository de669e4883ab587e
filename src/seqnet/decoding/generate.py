"""Generating token sequences from any model that can be stepped one token at a time.

A model offers :class:`TokenSteps`: ``start(prefix)`` runs a (T, N) block of host token ids
and returns the next-token logits (N, V) on the host with the model's state; ``step(ids,
state)`` feeds one token per row. The loop below knows nothing else about the model.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from .sampling import check_sampling, gumbel_blocks, sample_next


class TokenSteps(Protocol):
    def start(self, prefix: np.ndarray) -> tuple[np.ndarray, Any]:
        """prefix (T, N) host ids -> (logits (N, V) host float, state after the prefix)."""

    def step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """ids (N,) host ids -> (logits (N, V) host float, new state)."""


def check_count(name: str, value, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{name}: expected {kind}, received {value!r}")
    return int(value)


def check_seed(seed) -> int | None:
    """A sampling seed: None (fresh randomness) or an integer >= 0."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ConfigError(f"seed: expected an integer >= 0 (or none), received {seed!r}")
    return seed


def sample_tokens(steps: TokenSteps, prefix: np.ndarray, length: int, *, rng: np.random.Generator,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  greedy: bool = False, eos_id: int | None = None, banned_id: int | None = None) -> np.ndarray:
    """Sample up to ``length`` tokens after ``prefix`` (T, N), one column per sample: (L, N) host ids.

    Every row continues until ``length`` tokens; with ``eos_id`` generation ends early once
    every row has produced it (rows that finished keep being sampled; callers cut at the end
    token). ``banned_id`` (<UNK>) is never produced. Unfiltered sampling draws its Gumbel noise
    in blocks: the same stream as one draw per token.
    """
    check_sampling(temperature, top_k, top_p)
    length = check_count("length", length, low=0)
    logits, state = steps.start(prefix)                                    # (N, V) on the host
    count = logits.shape[0]
    sampled = np.empty((length, count), dtype=np.int64)
    finished = np.zeros(count, dtype=bool)
    plain = not greedy and top_k is None and top_p is None
    noise = gumbel_blocks(rng, logits.shape, min(length, 256)) if plain and length else None
    for k in range(length):
        if banned_id is not None:
            logits[:, banned_id] = -np.inf
        sampled[k] = token = sample_next(logits, rng, temperature=temperature, top_k=top_k, top_p=top_p,
                                         greedy=greedy, gumbel=None if noise is None else next(noise))
        if eos_id is not None:
            finished |= token == eos_id
            if finished.all():
                return sampled[:k + 1]
        if k + 1 < length:
            logits, state = steps.step(token, state)                      # feed it back
    return sampled
