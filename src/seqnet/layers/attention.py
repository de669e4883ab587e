"""Global attention over a memory of encoder outputs (Luong, Pham & Manning 2015), with
Bahdanau et al.'s additive score as one of its scores.

For a query q (the decoder's output at a step) and the memory's keys k_s = values h_s (the
encoder's outputs at source positions s):

    score(q, k_s) = q^T k_s                   "dot"       (query and memory sizes equal)
                    q^T W_a k_s               "general"
                    v^T tanh(W_q q + U k_s)   "bahdanau"  (additive; W_q has a bias)
    a_s = softmax over the valid s of score   (padded positions score the dtype's most
                                               negative number: their weight is exactly 0)
    c   = sum_s a_s h_s                        the context vector
    out = tanh(W_c [c; q])                     the attentional output (Luong's h~)

What depends only on the source is computed once per source by :meth:`Attention.memory`:
``U k`` (bahdanau) and ``W_a k`` (general), so each decoder step costs one product with the
memory for the scores and one for the context. Shapes are batch-major inside (B, T, S),
time-major outside like the recurrent layers: queries (T, B, Hq) or one step (B, Hq);
the memory from encoder outputs (S, B, Hk).

Gradients: ``backprop(d_out, d_weights=None)`` returns the query's gradient and the
gradient w.r.t. the memory arrays (a :class:`MemoryGrad`); a decoder sums those over its
steps and hands the sum to the memory's own backprop once, which returns the gradient
w.r.t. the encoder outputs and adds that of U / W_a.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import check_array, describe_array
from ..errors import ConfigError, ShapeError, check_positive_int
from ..random_state import seed_sequence
from .base import BackpropOnce, Layer
from .linear import Linear
from .masks import check_lengths, check_steps_and_rows

ATTENTION_TYPES = ("none", "bahdanau", "dot", "general")


def check_attention_type(kind: str, name: str = "attention") -> str:
    if kind not in ATTENTION_TYPES:
        raise ConfigError(f"{name}: expected one of {', '.join(ATTENTION_TYPES)}, received {kind!r}")
    return kind


@dataclass
class Memory:
    """What the decoder attends to, for B sources of up to S positions.

    values: (B, S, Hk) the encoder outputs; keys: (B, S, K) their source-only projection
    (``U k`` for bahdanau, ``W_a k`` for general; None for dot, which scores the values);
    mask: (B, 1, S) bool, False at padding (None when no row is padded).
    """

    values: Any
    keys: Any
    mask: Any

    @property
    def score_keys(self):
        return self.values if self.keys is None else self.keys

    def take(self, rows, xp) -> "Memory":
        """The memory of sources ``rows`` (a device int array), in that order: beams re-indexed."""
        pick = lambda a: None if a is None else xp.take(a, rows, axis=0)  # noqa: E731
        return Memory(pick(self.values), pick(self.keys), pick(self.mask))


@dataclass
class MemoryGrad:
    """The gradient w.r.t. a :class:`Memory`'s values (B, S, Hk) and keys (or None); summable."""

    values: Any
    keys: Any = None

    def __add__(self, other: "MemoryGrad") -> "MemoryGrad":
        keys = self.keys if other.keys is None else (other.keys if self.keys is None else self.keys + other.keys)
        return MemoryGrad(self.values + other.values, keys)


class Attention(Layer):
    """Attention of type ``kind`` ("bahdanau", "dot" or "general"; see the module docstring).

    query_size: Hq (the decoder's hidden size); memory_size: Hk (the encoder's output size,
    2H when bidirectional); hidden_size: the additive score's inner size A (bahdanau; default
    Hq); out_size: the attentional output's size (default Hq). Children, as in state dicts:
    ``linear_out`` (W_c, (out, Hk + Hq), no bias), and ``linear_in`` (W_a, general),
    ``linear_query`` (W_q with bias), ``linear_memory`` (U) and ``v`` (bahdanau).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, hidden_size: int | None = None,
                 out_size: int | None = None, dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        kind = check_attention_type(kind)
        if kind == "none":
            raise ConfigError("attention: 'none' means no Attention layer; build one of bahdanau, dot, general")
        self.kind = kind
        self.query_size = check_positive_int("query_size", query_size)
        self.memory_size = check_positive_int("memory_size", memory_size)
        self.hidden_size = check_positive_int("hidden_size", query_size if hidden_size is None else hidden_size)
        self.out_size = check_positive_int("out_size", query_size if out_size is None else out_size)
        if kind == "dot" and query_size != memory_size:
            raise ConfigError(f"attention: 'dot' scores need query_size == memory_size, received {query_size} and "
                              f"{memory_size} (use 'general', or make the decoder's hidden size the encoder's output size)")
        seeds = seed_sequence(seed).spawn(4)
        self.linear_out = self.add("linear_out", Linear(memory_size + query_size, self.out_size, bias=False,
                                                        dtype=dtype, seed=seeds[0]))
        if kind == "general":
            self.linear_in = self.add("linear_in", Linear(memory_size, query_size, bias=False, dtype=dtype, seed=seeds[1]))
        if kind == "bahdanau":
            a = self.hidden_size
            self.linear_query = self.add("linear_query", Linear(query_size, a, dtype=dtype, seed=seeds[1]))
            self.linear_memory = self.add("linear_memory", Linear(memory_size, a, bias=False, dtype=dtype, seed=seeds[2]))
            self.v = self.add("v", Linear(a, 1, bias=False, dtype=dtype, seed=seeds[3]))

    # -- the memory, once per source ----------------------------------------------------
    def memory(self, values, lengths=None):
        """values: encoder outputs (S, B, Hk); lengths: None or (B,) host ints (valid positions).

        Returns (Memory, backprop(MemoryGrad) -> d_values (S, B, Hk)), adding the gradients
        of U / W_a."""
        backend, xp = self.backend, self.backend.xp
        values = check_array(backend, values, "values", ndim=3, dtype=self.dtype_name)
        if values.shape[-1] != self.memory_size:
            raise ShapeError(f"values: expected feature size {self.memory_size} (memory_size), received shape "
                             f"{tuple(values.shape)}")
        check_steps_and_rows("values", tuple(values.shape), f" (S, B, {self.memory_size})")
        steps, batch = values.shape[0], values.shape[1]
        mask = self._mask(lengths, steps, batch)
        batch_major = xp.permute_dims(values, (1, 0, 2))                       # (B, S, Hk)
        keys, keys_back = None, None
        if self.kind == "general":
            keys, keys_back = self.linear_in.forward(batch_major)             # W_a k: (B, S, Hq)
        elif self.kind == "bahdanau":
            keys, keys_back = self.linear_memory.forward(batch_major)         # U k: (B, S, A)
        guard = BackpropOnce("Attention memory backprop")
        keys_shape = None if keys is None else tuple(keys.shape)

        def backprop(d_memory: MemoryGrad):
            guard.check()
            if not isinstance(d_memory, MemoryGrad):
                raise ConfigError(f"d_memory: expected a seqnet.layers.MemoryGrad (the sum of the attention steps' "
                                  f"memory gradients), received {describe_array(d_memory)}")
            d_values = guard.check_grad(backend, d_memory.values, "d_memory.values", tuple(batch_major.shape),
                                        self.dtype_name, of="the memory's values")
            d_keys = d_memory.keys
            if d_keys is not None and keys_shape is None:
                raise ConfigError(f"d_memory.keys: expected None ({self.kind!r} attention's memory has no keys), "
                                  f"received {describe_array(d_keys)}")
            if d_keys is not None:
                d_keys = guard.check_grad(backend, d_keys, "d_memory.keys", keys_shape, self.dtype_name,
                                          of="the memory's keys")
            guard.consume()
            if d_keys is not None:
                d_values = d_values + keys_back(d_keys)
            return xp.permute_dims(d_values, (1, 0, 2))

        return Memory(batch_major, keys, mask), backprop

    def _mask(self, lengths, steps: int, batch: int):
        if lengths is None:
            return None
        host = check_lengths(lengths, batch, steps, steps_name="S")
        if np.all(host == steps):
            return None
        return self.backend.asarray((np.arange(steps)[None, :] < host[:, None])[:, None, :])

    # -- one or more decoder steps ----------------------------------------------------
    def __call__(self, query, memory: Memory):
        return self.forward(query, memory)[0]

    def forward(self, query, memory: Memory):
        """query: (B, Hq) one step, or (T, B, Hq) all steps at once.

        Returns ((out (..., B, out_size), weights (..., B, S)), backprop(d_out, d_weights=None)
        -> (d_query, MemoryGrad)); the leading T axis is there when the query has it."""
        backend, xp = self.backend, self.backend.xp
        query = check_array(backend, query, "query", dtype=self.dtype_name)
        self._check_memory(memory)
        one_step = query.ndim == 2
        batch = memory.values.shape[0]
        if query.ndim not in (2, 3) or query.shape[-1] != self.query_size or query.shape[-2] != batch:
            raise ShapeError(f"query: expected (B, {self.query_size}) or (T, B, {self.query_size}) with B = {batch} "
                             f"(the memory's batch), received shape {tuple(query.shape)}")
        q = query[:, None, :] if one_step else xp.permute_dims(query, (1, 0, 2))      # (B, T, Hq)
        scores, score_back = self._scores(q, memory)                                  # (B, T, S)
        if memory.mask is not None:
            scores = xp.where(memory.mask, scores, xp.finfo(scores.dtype).min)
        z = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
        weights = z / xp.sum(z, axis=-1, keepdims=True)
        context = xp.matmul(weights, memory.values)                                   # (B, T, Hk)
        pre, out_back = self.linear_out.forward(xp.concat([context, q], axis=-1))
        out = xp.tanh(pre)                                                            # (B, T, out)
        guard = BackpropOnce("Attention backprop")

        def shaped(a):
            return a[:, 0, :] if one_step else xp.permute_dims(a, (1, 0, 2))

        def backprop(d_out, d_weights=None):
            d_out = guard.check_grad(backend, d_out, "d_out", tuple(shaped(out).shape), self.dtype_name, of="out")
            if d_weights is not None:
                d_weights = guard.check_grad(backend, d_weights, "d_weights", tuple(shaped(weights).shape),
                                             self.dtype_name, of="the weights")
            guard.consume()
            d_out = d_out[:, None, :] if one_step else xp.permute_dims(d_out, (1, 0, 2))
            d_cat = out_back(d_out * (1 - out * out))
            d_context, d_q = d_cat[..., :self.memory_size], d_cat[..., self.memory_size:]
            d_w = xp.matmul(d_context, xp.matrix_transpose(memory.values))           # (B, T, S)
            if d_weights is not None:
                d_w = d_w + (d_weights[:, None, :] if one_step else xp.permute_dims(d_weights, (1, 0, 2)))
            d_values = _steps_product(weights, d_context, xp)                        # (B, S, Hk)
            # softmax backward; padded positions have weight 0, hence gradient 0
            d_scores = weights * (d_w - xp.sum(d_w * weights, axis=-1, keepdims=True))
            d_q2, d_keys = score_back(d_scores)
            d_q = d_q + d_q2
            if memory.keys is None:
                d_values, d_keys = d_values + d_keys, None
            return shaped(d_q), MemoryGrad(d_values, d_keys)

        return (shaped(out), shaped(weights)), backprop

    def _check_memory(self, memory) -> None:
        """``memory`` must be what :meth:`memory` of an attention of this kind and sizes returned."""
        if not isinstance(memory, Memory):
            raise ConfigError(f"memory: expected a seqnet.layers.Memory (from Attention.memory(values, lengths)), "
                              f"received {describe_array(memory)}")
        values = check_array(self.backend, memory.values, "memory.values", ndim=3, dtype=self.dtype_name)
        key_size = {"general": self.query_size, "bahdanau": self.hidden_size}.get(self.kind)
        keys_fit = memory.keys is None if key_size is None else \
            tuple(getattr(memory.keys, "shape", ()))[-1:] == (key_size,)
        if values.shape[-1] != self.memory_size or not keys_fit:
            keys = "no keys" if memory.keys is None else f"keys of shape {tuple(memory.keys.shape)}"
            raise ShapeError(f"memory: expected the memory of a {self.kind!r} attention with memory_size "
                             f"{self.memory_size}, received values of shape {tuple(values.shape)} and {keys}")

    def _scores(self, q, memory: Memory):
        """q (B, T, Hq) -> (scores (B, T, S), backprop(d_scores) -> (d_q, d_score_keys))."""
        xp = self.backend.xp
        keys = memory.score_keys
        if self.kind in ("dot", "general"):
            def back(d_scores):
                return xp.matmul(d_scores, keys), _steps_product(d_scores, q, xp)
            return xp.matmul(q, xp.matrix_transpose(keys)), back
        wq, wq_back = self.linear_query.forward(q)                                   # (B, T, A)
        hidden = xp.tanh(wq[:, :, None, :] + keys[:, None, :, :])                     # (B, T, S, A)
        scores, v_back = self.v.forward(hidden)                                       # (B, T, S, 1)

        def back(d_scores):
            d_pre = v_back(d_scores[..., None]) * (1 - hidden * hidden)               # (B, T, S, A)
            return wq_back(xp.sum(d_pre, axis=2)), xp.sum(d_pre, axis=1)

        return scores[..., 0], back


def _steps_product(a, b, xp):
    """a^T b summed over the steps: a (B, T, S), b (B, T, K) -> (B, S, K). One step (T = 1) is an
    outer product, which a broadcast multiply computes several times faster than a batched
    matmul with an inner size of 1 (numpy: 3.6x at B=128, S=28, K=128)."""
    if a.shape[1] == 1:
        return xp.matrix_transpose(a) * b
    return xp.matmul(xp.matrix_transpose(a), b)
