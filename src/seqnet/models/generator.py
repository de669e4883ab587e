"""One-to-many: a conditional generator (a language model whose state starts from a condition).

    c = C[k] (a learned vector per condition id) or the given feature vector   (B, F)
    h_0 = tanh(W_init c + b_init)  reshaped to (num_layers, B, H); an LSTM's c_0 = 0
    x_t = [E[y_{t-1}], c] (with ``condition_input``) or E[y_{t-1}]
    logits_t = W_out dropout(RNN(x, h_0)_t) + b_out                           (T, B, V)

Trained with teacher forcing: inputs are ``end_id, y_1, ..., y_n`` and targets
``y_1, ..., y_n, end_id``; the one token ``end_id`` marks both the start and the end of a
sequence. Generation feeds ``end_id`` first and samples until ``end_id`` through
:func:`seqnet.decoding.sample_tokens` (temperature, top-k, top-p, greedy, seed).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import check_array, host_int64, to_numpy
from ..decoding import check_greedy, check_sampling, sample_tokens
from ..decoding.generate import check_count, check_seed
from ..errors import ConfigError, ShapeError, check_bool, check_positive_int, check_real
from ..layers import RECURRENT_LAYERS, Embedding, Layer, Linear, softmax_cross_entropy
from ..layers.base import BackpropOnce
from ..layers.dropout import check_dropout, dropout, stack_dropout
from ..layers.embedding import check_token_ids
from ..layers.loss import check_target_ids
from ..random_state import seed_sequence
from .encoder import check_cell


class ConditionalGenerator(Layer):
    """Token sequences given a condition; see the module docstring.

    Give ``num_conditions`` (conditions are ids, each with a learned ``condition_embed``-sized
    vector) or ``condition_size`` (conditions are feature vectors). ``end_id`` defaults to the
    last id, ``vocab_size - 1``.
    """

    def __init__(self, vocab_size: int, *, num_conditions: int | None = None, condition_size: int | None = None,
                 condition_embed: int = 16, embed_size: int = 32, hidden_size: int = 128, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, condition_input: bool = True, end_id: int | None = None,
                 dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        if (num_conditions is None) == (condition_size is None):
            raise ConfigError(f"num_conditions, condition_size: give exactly one (condition ids or feature vectors), "
                              f"received num_conditions={num_conditions!r}, condition_size={condition_size!r}")
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.end_id = self.vocab_size - 1 if end_id is None else check_count("end_id", end_id, low=0)
        if self.end_id >= self.vocab_size:
            raise ConfigError(f"end_id: expected an id in [0, {self.vocab_size}), received {end_id!r}")
        self.dropout = check_dropout(dropout)
        self.condition_input = check_bool("condition_input", condition_input)
        seeds = seed_sequence(seed).spawn(6)
        self.dropout_rng = np.random.default_rng(seeds[5])
        self.condition = None
        if num_conditions is not None:
            self.condition = self.add("condition", Embedding(num_conditions, condition_embed, dtype=dtype,
                                                             seed=seeds[0]))
            condition_size = condition_embed
        self.condition_size = check_positive_int("condition_size", condition_size)
        self.embedding = self.add("embedding", Embedding(vocab_size, embed_size, dtype=dtype, seed=seeds[1]))
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.init = self.add("init", Linear(self.condition_size, num_layers * hidden_size, dtype=dtype, seed=seeds[2]))
        rnn_input = embed_size + (self.condition_size if self.condition_input else 0)
        self.rnn = self.add("rnn", RECURRENT_LAYERS[check_cell(cell)](
            rnn_input, hidden_size, num_layers, dropout=stack_dropout(dropout, num_layers), dtype=dtype, seed=seeds[3]))
        self.rnn.dropout_rng = self.dropout_rng
        self.decoder = self.add("decoder", Linear(hidden_size, vocab_size, dtype=dtype, seed=seeds[4]))

    # -- the condition ------------------------------------------------------------------
    def check_condition(self, cond, batch: int | None = None):
        """Condition ids (B,) in [0, num_conditions) or features (B, F) of this backend."""
        if self.condition is not None:
            cond = check_token_ids(self.backend, cond, "condition", self.condition.num_embeddings, ndim=1,
                                   what="condition ids", size="num_conditions")
        else:
            cond = check_array(self.backend, cond, "condition", ndim=2, dtype=self.dtype_name)
            if cond.shape[-1] != self.condition_size:
                raise ShapeError(f"condition: expected feature vectors (B, {self.condition_size}), "
                                 f"received shape {tuple(cond.shape)}")
        if batch is not None and cond.shape[0] != batch:
            raise ShapeError(f"condition: expected one condition per row ({batch}), received {cond.shape[0]}")
        return cond

    def _condition_vectors(self, cond):
        """(c (B, F), backprop(d_c) -> None) for condition ids or features."""
        if self.condition is None:
            return cond, lambda d_c: None
        return self.condition.forward(cond)

    def _initial_state(self, c):
        """(hx for the recurrent stack, h_0 (L, B, H), backprop(d_h0) -> d_c)."""
        xp = self.backend.xp
        batch = c.shape[0]
        pre, init_back = self.init.forward(c)
        h_flat = xp.tanh(pre)                                                          # (B, L*H)
        h0 = xp.permute_dims(xp.reshape(h_flat, (batch, self.num_layers, self.hidden_size)), (1, 0, 2))
        hx = (h0, xp.zeros_like(h0)) if len(self.rnn.cell.state_names) == 2 else h0

        def backprop(d_h0):
            d_flat = xp.reshape(xp.permute_dims(d_h0, (1, 0, 2)), (batch, -1))
            return init_back(d_flat * (1.0 - h_flat * h_flat))

        return hx, backprop

    def _step_inputs(self, x, c):
        """Token vectors (T, B, E) [+ the condition at every step] -> (T, B, E [+ F])."""
        if not self.condition_input:
            return x
        xp = self.backend.xp
        cond = xp.broadcast_to(c[None, ...], (x.shape[0],) + tuple(c.shape))
        return xp.concat([x, cond], axis=-1)

    # -- forward and training -----------------------------------------------------------
    def check_ids(self, ids, name: str = "ids"):
        return check_token_ids(self.backend, ids, name, self.vocab_size, ndim=2)

    def __call__(self, ids, cond):
        """Inference: ids (T, B), conditions (B,) or (B, F) -> (logits (T, B, V), h_n)."""
        return self._run(ids, cond, training=False)[0]

    def forward(self, ids, cond):
        """Training forward: ((logits (T, B, V), h_n), backprop(d_logits) -> d_condition for features, else None)."""
        return self._run(ids, cond, training=True)

    def _run(self, ids, cond, training: bool):
        xp, backend = self.backend.xp, self.backend
        ids = self.check_ids(ids)
        cond = self.check_condition(cond, ids.shape[1])
        c, cond_back = self._condition_vectors(cond)
        hx, init_back = self._initial_state(c)
        x, emb_back = self.embedding.forward(ids)
        drop_p = self.dropout if training else 0.0
        x, drop_in = dropout(x, drop_p, self.dropout_rng, backend, self.dtype_name)
        inputs = self._step_inputs(x, c)
        if training:
            (hs, h_n), rnn_back = self.rnn.forward(inputs, hx)
        else:
            (hs, h_n), rnn_back = self.rnn(inputs, hx), None
        hs, drop_out = dropout(hs, drop_p, self.dropout_rng, backend, self.dtype_name)
        logits, dec_back = self.decoder.forward(hs)
        if not training:
            return (logits, h_n), None
        guard = BackpropOnce("ConditionalGenerator backprop")
        embed = x.shape[-1]
        logits_shape = tuple(logits.shape)

        def backprop(d_logits):
            guard.accept(backend, d_logits, "d_logits", logits_shape, self.dtype_name, of="the logits")
            d_inputs, d_hx = rnn_back(drop_out(dec_back(d_logits)), None)
            d_c = init_back(d_hx[0] if isinstance(d_hx, tuple) else d_hx)
            d_x = d_inputs
            if self.condition_input:
                d_x = d_inputs[..., :embed]
                d_c = d_c + xp.sum(d_inputs[..., embed:], axis=0)
            emb_back(drop_in(d_x))
            return cond_back(d_c) if self.condition is not None else d_c

        return (logits, h_n), backprop

    def loss_and_grads(self, inputs, targets, cond, mask=None, *, grad_scale: float = 1.0):
        """Teacher-forced forward, mean cross-entropy over valid tokens (``mask`` (T, B) bool), backward;
        gradients are *added* (times ``grad_scale``). Returns the loss (0-d). Targets where
        ``mask`` is False are not read."""
        targets, mask = check_target_ids(self.backend, targets, self.vocab_size, mask)
        (logits, _), backprop = self.forward(inputs, cond)
        loss, loss_back = softmax_cross_entropy(logits, targets, mask, xp=self.backend.xp)
        backprop(loss_back(check_real("grad_scale", grad_scale)))
        return loss

    def loss(self, inputs, targets, cond, mask=None):
        """Mean cross-entropy without dropout or gradients (0-d)."""
        targets, mask = check_target_ids(self.backend, targets, self.vocab_size, mask)
        logits, _ = self(inputs, cond)
        return softmax_cross_entropy(logits, targets, mask, xp=self.backend.xp)[0]

    # -- generation ---------------------------------------------------------------------
    def device_ids(self, host_ids) -> Any:
        return self.backend.asarray(host_int64(host_ids), "int64")

    def device_condition(self, cond):
        """Host condition ids (N,) or feature rows (N, F) as this backend's array."""
        expected = "condition ids (N,)" if self.condition is not None else f"feature rows (N, {self.condition_size})"
        if isinstance(cond, (str, bytes)):
            raise ConfigError(f"cond: expected host {expected}, received a {type(cond).__name__}")
        host = np.asarray(cond)
        if host.size == 0:
            raise ConfigError(f"cond: expected host {expected} with at least one condition, received an empty "
                              f"{type(cond).__name__} (shape {host.shape})")
        if host.dtype.kind not in ("iu" if self.condition is not None else "iuf"):
            what = "integer" if self.condition is not None else "numeric"
            raise ConfigError(f"cond: expected host {expected} of {what} dtype, received dtype {host.dtype}")
        if self.condition is not None:
            return self.device_ids(np.atleast_1d(host))
        if not np.all(np.isfinite(host)):
            raise ConfigError(f"cond: expected finite feature values, received {int(np.sum(~np.isfinite(host)))} "
                              "NaN or infinite ones")
        return self.backend.asarray(np.atleast_2d(host.astype(np.float64)), self.dtype_name)

    def generate(self, cond, max_length: int = 50, *, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False, seed: int | None = None,
                 banned_id: int | None = None) -> list[np.ndarray]:
        """One sample per condition in ``cond`` (host ids (N,) or features (N, F); repeat a
        condition for several samples), all in one batch. Returns host id arrays, each cut
        before its first ``end_id`` (at most ``max_length`` tokens). ``banned_id`` (an id other
        than ``end_id``, e.g. <UNK>) is never produced. ``greedy`` refuses the sampling
        controls (temperature (default 1), top_k, top_p, seed)."""
        check_sampling(temperature, top_k, top_p)
        greedy = check_greedy(greedy, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        rng = np.random.default_rng(check_seed(seed))
        max_length = check_count("max_length", max_length, low=1)
        if banned_id is not None:
            banned_id = check_count("banned_id", banned_id, low=0)
            if banned_id >= self.vocab_size or banned_id == self.end_id:
                raise ConfigError(f"banned_id: expected an id in [0, {self.vocab_size}) other than end_id = "
                                  f"{self.end_id} (with it banned no sample ends), received {banned_id}")
        device_cond = self.check_condition(self.device_condition(cond))
        count = device_cond.shape[0]
        prefix = np.full((1, count), self.end_id, dtype=np.int64)
        sampled = sample_tokens(ConditionalSteps(self, device_cond), prefix, max_length + 1, rng=rng,
                                temperature=1.0 if temperature is None else temperature, top_k=top_k, top_p=top_p,
                                greedy=greedy, eos_id=self.end_id, banned_id=banned_id)
        out = []
        for n in range(count):
            row = sampled[:, n]
            ends = np.flatnonzero(row == self.end_id)
            out.append(row[:ends[0]] if ends.size else row[:max_length])
        return out


class ConditionalSteps:
    """:class:`seqnet.decoding.TokenSteps` of a :class:`ConditionalGenerator` for fixed conditions."""

    def __init__(self, model: ConditionalGenerator, cond):
        xp = model.backend.xp
        self.model, self.cond = model, cond
        self.c = model._condition_vectors(cond)[0]
        self._rnn_step = model.rnn.stepper()
        self._decoder_weight = xp.matrix_transpose(model.decoder.parameter("weight").value)
        self._decoder_bias = model.decoder.parameter("bias").value

    def start(self, prefix: np.ndarray):
        model = self.model
        logits, h_n = model(model.device_ids(prefix), self.cond)
        return to_numpy(logits[-1, ...]), model.rnn.step_states(h_n, prefix.shape[1])

    def step(self, ids: np.ndarray, states):
        model, xp = self.model, self.model.backend.xp
        x = xp.take(model.embedding.weight.value, model.device_ids(ids), axis=0)
        if model.condition_input:
            x = xp.concat([x, self.c], axis=-1)
        h, states = self._rnn_step(x, states)
        return to_numpy(xp.matmul(h, self._decoder_weight) + self._decoder_bias), states
