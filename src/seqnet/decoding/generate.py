"""Generating a fixed number of tokens from any model that can be stepped one token at a time.

A model offers :class:`TokenSteps` (:mod:`.search`): ``start(prefix)`` runs a (T, N) block
of host token ids and returns the next-token logits (N, V) on the host with the model's
state; ``step(ids, state)`` feeds one token per row. The loop knows nothing else about the
model; it is the loop of :func:`seqnet.decoding.sample_search`. :class:`DeviceTokenSteps` is
the same with scores and ids left on the model's device, for :func:`sample_tokens_on_device`:
no host round trip per token.
"""
from __future__ import annotations

import numpy as np

from typing import Any, Protocol

from .. import kernels
from ..backend import to_numpy
from ..random_state import check_seed
from .sampling import check_sampling
from .search import TokenSteps, _sample_loop, check_count

__all__ = ["DeviceTokenSteps", "TokenSteps", "check_count", "check_seed", "sample_tokens", "sample_tokens_on_device"]


class DeviceTokenSteps(Protocol):
    """TokenSteps whose scores and ids stay on ``backend``'s device. Scores exclude ``bias``
    ((V,) or None), which the sampling kernel adds."""

    backend: Any
    bias: Any

    def start(self, prefix: np.ndarray) -> tuple[Any, Any]:
        """prefix (T, N) host ids -> (scores (N, V) on the device, state after the prefix)."""

    def step(self, ids: Any, state: Any) -> tuple[Any, Any]:
        """ids (N,) int64 on the device -> (scores (N, V) on the device, new state)."""


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
                              min_len=0, keep_attention=False, scored=False)
    return tokens


def sample_tokens_on_device(steps: DeviceTokenSteps, prefix: np.ndarray, length: int, *, rng: np.random.Generator,
                            temperature: float = 1.0, greedy: bool = False, eos_id: int | None = None,
                            banned_id: int | None = None) -> np.ndarray:
    """:func:`sample_tokens` without top-k / top-p, on the model's device: (L, N) host ids.

    The same tokens as sample_tokens for the same ``rng``: the Gumbel noise is drawn on the
    host in the same blocks and copied to the device once per block; the choice is the
    ``next_tokens`` kernel (:mod:`seqnet.kernels.sampling`, fused on CuPy), and its ids feed
    the next step where they are. The host sees the ids once per block of tokens; with
    ``eos_id`` it checks for finished rows then, and cuts the result where sample_tokens stops.
    """
    check_sampling(temperature, None, None)
    temperature = 1.0 if temperature is None else temperature
    length = check_count("length", length, low=0)
    backend = steps.backend
    choose = kernels.kernel(backend, "next_tokens")
    noise_dtype = "float64" if backend.supports_float64 else "float32"     # float32: a near tie may differ
    scores, state = steps.start(prefix)
    count, vocab = scores.shape
    block = min(length, 256)
    done: list[np.ndarray] = []
    finished = np.zeros(count, dtype=bool)
    for start in range(0, length, block or 1):
        noise = None if greedy else backend.asarray(rng.gumbel(size=(block, count, vocab)), noise_dtype)
        ids = []
        for k in range(min(block, length - start)):
            token = choose(scores, None if noise is None else noise[k, ...], bias=steps.bias,
                           temperature=temperature, banned_id=banned_id, xp=backend.xp)
            ids.append(token)
            if start + k + 1 < length:
                scores, state = steps.step(token, state)                       # fed back on the device
        done.append(to_numpy(backend.xp.stack(ids)))                          # one transfer per block
        if eos_id is not None:
            for k, row in enumerate(done[-1]):
                finished |= row == eos_id
                if finished.all():
                    return np.concatenate(done)[:start + k + 1].astype(np.int64)
    return np.concatenate(done).astype(np.int64) if done else np.empty((0, count), dtype=np.int64)
