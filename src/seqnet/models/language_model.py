"""A recurrent language model: embedding -> dropout -> RNN/LSTM/GRU stack -> dropout -> linear.

    logits[t] = h[t] W_out^T + b_out,    h = RNN(E[ids])      ids (T, B) -> logits (T, B, V)

A :class:`~seqnet.layers.Layer` made of three layers (``embedding``, ``rnn``, ``decoder``),
so its parameters, gradients and state dict are theirs with dotted names. Training carries
the recurrent state from one batch to the next (truncated BPTT): the state returned by
:meth:`LanguageModel.loss_and_grads` is plain arrays, so no gradient flows into earlier batches.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import host_int64, to_numpy
from ..decoding import (active_filters, beam_search, check_greedy, check_sampling, refuse_given, sample_tokens,
                        sample_tokens_on_device)
from ..decoding.generate import check_count, check_seed
from ..errors import ConfigError, check_bool, check_real
from ..layers import RECURRENT_LAYERS, Embedding, Layer, Linear, softmax_cross_entropy
from ..layers.base import BackpropOnce
from ..layers.dropout import check_dropout, dropout, stack_dropout
from ..layers.embedding import check_token_ids
from ..layers.loss import check_target_ids
from ..random_state import seed_sequence

# From this embedding size on, layer 0's input projections are looked up in the input table
# E @ W_ih (V, G*H) instead of computed as E[ids] @ W_ih, and backward gets the gradients of
# E and W_ih from per-token sums of d xproj: that replaces three (N, E) x (E, G*H) products
# (forward, and the two gradients) by a lookup and a pass of sums. Below it the products
# are cheaper: on the project's 2-core machine, with bench.py's S, M and L models, the
# lookup made training steps 8% slower at embed 32 and 4-30% faster at embed 128 and 256.
INPUT_TABLE_MIN_EMBED = 64


def _check_text(name: str, text) -> str:
    if not isinstance(text, str):
        raise ConfigError(f"{name}: expected a text (str), received {type(text).__name__}")
    return text


class LanguageModel(Layer):
    """Next-token model over a vocabulary of ``vocab_size`` ids.

    ``tie_weights`` shares the embedding table with the output layer (one parameter,
    ``embedding.weight``; needs ``embed_size == hidden_size``). ``tokenizer`` (optional) lets
    :meth:`score` and :meth:`generate` take and return text. ``layer_norm`` (LSTM only) uses
    the layer-normalised LSTM cell.
    """

    def __init__(self, vocab_size: int, embed_size: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False, dtype: Any = None,
                 seed: int | None = None, tokenizer=None, layer_norm: bool = False):
        super().__init__(dtype)
        tie_weights, layer_norm = check_bool("tie_weights", tie_weights), check_bool("layer_norm", layer_norm)
        if cell not in RECURRENT_LAYERS:
            raise ConfigError(f"cell: expected one of {tuple(RECURRENT_LAYERS)}, received {cell!r}")
        if layer_norm and cell != "lstm":
            raise ConfigError(f"layer_norm: the layer-normalised cell is an LSTM; received cell={cell!r}")
        if tie_weights and embed_size != hidden_size:
            raise ConfigError(f"tie_weights: needs embed_size == hidden_size, received embed_size={embed_size}, "
                              f"hidden_size={hidden_size}")
        self.config = dict(vocab_size=vocab_size, embed_size=embed_size, hidden_size=hidden_size,
                           num_layers=num_layers, cell=cell, dropout=dropout, tie_weights=bool(tie_weights),
                           layer_norm=bool(layer_norm))
        self.dropout = check_dropout(dropout)
        self.tie_weights = bool(tie_weights)
        seeds = seed_sequence(seed).spawn(4)
        self.dropout_rng = np.random.default_rng(seeds[3])          # every dropout mask; checkpointed
        self.embedding = self.add("embedding", Embedding(vocab_size, embed_size, dtype=dtype, seed=seeds[0]))
        extra = {"layer_norm": True} if layer_norm else {}
        self.rnn = self.add("rnn", RECURRENT_LAYERS[cell](embed_size, hidden_size, num_layers,
                                                          dropout=stack_dropout(dropout, num_layers),
                                                          dtype=dtype, seed=seeds[1], **extra))
        self.rnn.dropout_rng = self.dropout_rng
        self.decoder = self.add("decoder", Linear(hidden_size, vocab_size, dtype=dtype, seed=seeds[2],
                                                  weight=self.embedding.weight if self.tie_weights else None))
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.embedding.num_embeddings

    @property
    def tokenizer(self):
        """The tokenizer of :meth:`score` and :meth:`generate` (None: ids only); one of ``vocab_size`` ids."""
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer) -> None:
        size = getattr(tokenizer, "vocab_size", None)
        if tokenizer is not None and not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")):
            raise ConfigError(f"tokenizer: expected a seqnet tokenizer (seqnet.data.CharTokenizer.fit(text), ...) or "
                              f"None, received {type(tokenizer).__name__} {tokenizer!r:.40}")
        if tokenizer is not None and size != self.vocab_size:
            raise ConfigError(f"tokenizer: expected one of vocab_size = {self.vocab_size} ids (the model's), received "
                              f"a {type(tokenizer).__name__} of {size} ids")
        self._tokenizer = tokenizer

    # -- forward and training ---------------------------------------------------------
    def check_ids(self, ids, name: str = "ids"):
        """Token ids (T, B) of this model's backend, each in [0, vocab_size)."""
        return check_token_ids(self.backend, ids, name, self.vocab_size, ndim=2)

    def _uses_input_table(self, training: bool) -> bool:
        no_dropout = not training or self.dropout == 0
        return no_dropout and self.embedding.embedding_dim >= INPUT_TABLE_MIN_EMBED

    def input_table(self):
        """(V, G*H): every token's raw input projection into layer 0, ``E @ W_ih_l0``."""
        return self.backend.xp.matmul(self.embedding.weight.value, self.rnn.parameter("weight_ih_l0").value)

    def __call__(self, ids, hx=None):
        """Inference: ids (T, B) -> (logits (T, B, V), h_n); no dropout, nothing kept for backward."""
        return self._run(ids, hx, training=False)[0]

    def forward(self, ids, hx=None):
        """Training forward: ids (T, B) -> ((logits (T, B, V), h_n), backprop(d_logits) -> None).

        backprop accumulates the gradients of every parameter; it may run once per forward."""
        return self._run(ids, hx, training=True)

    def _run(self, ids, hx, training: bool):
        backend = self.backend
        ids = self.check_ids(ids)
        drop_p = self.dropout if training else 0.0
        emb_back = table = drop_in = None
        if self._uses_input_table(training):
            x, table = ids, self.input_table()
        else:
            x, emb_back = self.embedding.forward(ids)
            x, drop_in = dropout(x, drop_p, self.dropout_rng, backend, self.dtype_name)
        if training:
            (hs, h_n), rnn_back = self.rnn.forward(x, hx, input_table=table)
        else:
            (hs, h_n), rnn_back = self.rnn(x, hx, input_table=table), None
        hs, drop_out = dropout(hs, drop_p, self.dropout_rng, backend, self.dtype_name)
        logits, dec_back = self.decoder.forward(hs)
        if not training:
            return (logits, h_n), None
        guard = BackpropOnce("LanguageModel backprop")
        logits_shape = tuple(logits.shape)

        def backprop(d_logits):
            guard.accept(backend, d_logits, "d_logits", logits_shape, self.dtype_name, of="the logits")
            d_x, _ = rnn_back(drop_out(dec_back(d_logits)), None)
            if table is not None:
                self._input_table_backward(d_x)
                return
            emb_back(drop_in(d_x))

        return (logits, h_n), backprop

    def _input_table_backward(self, d_table):
        """Gradients of E and W_ih_l0 from the input table's gradient S (V, G*H): with the
        table E @ W_ih, dE = S W_ih^T and dW_ih = E^T S."""
        xp = self.backend.xp
        emb, w_ih = self.embedding.weight, self.rnn.parameter("weight_ih_l0")
        emb.grad = emb.grad + xp.matmul(d_table, xp.matrix_transpose(w_ih.value))
        w_ih.grad = w_ih.grad + xp.matmul(xp.matrix_transpose(emb.value), d_table)

    def loss_and_grads(self, inputs, targets, hx=None, mask=None, *, grad_scale: float = 1.0):
        """Forward, mean cross-entropy (nats per token), backward; gradients are *added* to ``param_grads``.

        inputs, targets: (T, B) ids on this model's backend; ``mask`` None or a (T, B) bool
        array on it, False where a target does not count (padding; the target there may hold
        anything, it is not read); ``grad_scale`` multiplies the gradient (1 / k for one of k
        accumulated micro-batches). Returns (loss, a 0-d array on the device; h_n, the state
        to carry into the next batch).
        """
        targets, mask = check_target_ids(self.backend, targets, self.vocab_size, mask)
        (logits, h_n), backprop = self.forward(inputs, hx)
        loss, loss_back = softmax_cross_entropy(logits, targets, mask, xp=self.backend.xp)
        backprop(loss_back(check_real("grad_scale", grad_scale)))
        return loss, h_n

    def loss(self, inputs, targets, hx=None, mask=None):
        """Mean cross-entropy (nats per token, over the targets where ``mask`` is True) without
        dropout or gradients; returns (loss, h_n)."""
        targets, mask = check_target_ids(self.backend, targets, self.vocab_size, mask)
        logits, h_n = self(inputs, hx)
        loss, _ = softmax_cross_entropy(logits, targets, mask, xp=self.backend.xp)
        return loss, h_n

    # -- text in, text out ------------------------------------------------------------
    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ConfigError("tokenizer: this model has no tokenizer; set model.tokenizer or load it from a run directory")
        return self.tokenizer

    def device_ids(self, host_ids: np.ndarray):
        """Host token ids (any integer array) as an int64 array on this model's backend."""
        return self.backend.asarray(host_int64(host_ids), "int64")

    def score(self, text: str) -> dict:
        """Log-probability of ``text`` under the model.

        Every token after the first is predicted from the ones before it (the first has no
        context). Characters never seen in training map to <UNK>. Returns total
        ``log_prob`` (nats), ``bits_per_token`` and the number of ``tokens`` scored.
        """
        tokenizer = self._require_tokenizer()
        ids = tokenizer.encode(_check_text("text", text))
        if ids.shape[0] < 2:
            raise ConfigError(f"text: expected at least 2 tokens to score, received {ids.shape[0]}")
        loss, _ = self.loss(self.device_ids(ids[:-1, None]), self.device_ids(ids[1:, None]))
        nats = float(to_numpy(loss))
        count = ids.shape[0] - 1
        return {"log_prob": -nats * count, "bits_per_token": nats / math.log(2), "tokens": count}

    def generate(self, prime: str = "", length: int = 200, *, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int | None = None,
                 num_samples: int = 1, stop_at_eos: bool = True, beam: int | None = None, length_penalty: str = "none",
                 alpha: float = 0.0, block_ngram: int = 0) -> list[str]:
        """Sample ``num_samples`` continuations of ``prime`` in one batch; returns the texts (prime included).

        Word models stop a sample at <EOS> when ``stop_at_eos``. Unknown characters in
        ``prime`` map to <UNK>; <UNK> itself is never generated. With ``beam`` = K, beam
        search (:func:`seqnet.decoding.beam_search`) returns the ``num_samples`` most likely
        continuations of up to ``length`` tokens instead, best first, ranked with
        ``length_penalty`` / ``alpha`` and without repeated ``block_ngram``-grams; the sampling
        controls (temperature (default 1), top_k, top_p, greedy, seed) do not apply to it and are
        refused when given, as temperature, top_k and top_p are with ``greedy``.
        """
        tokenizer = self._require_tokenizer()
        _check_text("prime", prime)
        if tokenizer.vocab_size == 1 and tokenizer.unk_id is not None:
            raise ConfigError("tokenizer: its vocabulary holds only <UNK>, which is never generated; nothing to generate")
        check_sampling(temperature, top_k, top_p)
        length = check_count("length", length, low=0)
        num_samples = check_count("num_samples", num_samples, low=1)
        eos = tokenizer.eos_id if check_bool("stop_at_eos", stop_at_eos) else None
        if beam is None:
            for name, value, off in (("length_penalty", length_penalty, "none"), ("alpha", alpha, 0.0),
                                     ("block_ngram", block_ngram, 0)):
                if value != off:
                    raise ConfigError(f"{name}: a beam search setting; pass beam=K (beam=1: greedy search with it), "
                                      f"received {name}={value!r}")
            # seed stays allowed: it also draws the start of an empty prime without a line end
            greedy = check_greedy(greedy, temperature=temperature, top_k=top_k, top_p=top_p)
        else:
            refuse_given("beam search does not sample (drop it or beam)", temperature=temperature, top_k=top_k,
                         top_p=top_p, seed=seed, greedy=check_bool("greedy", greedy))
            beam = check_count("beam", beam, low=1)
            if num_samples > beam:
                raise ConfigError(f"num_samples: beam search returns at most beam = {beam} continuations, received "
                                  f"{num_samples}")
        rng = np.random.default_rng(check_seed(seed))
        prime_ids = tokenizer.encode(prime) if prime else np.zeros(0, dtype=np.int64)
        if prime_ids.shape[0] == 0:                    # no context: start as after a line end
            prime_ids = self._line_start(tokenizer, rng)
        if beam is not None:
            return self._beam_generate(prime_ids, length, beam, num_samples, eos, length_penalty, alpha, block_ngram)
        temperature = 1.0 if temperature is None else temperature
        prefix = np.repeat(prime_ids[:, None], num_samples, axis=1)
        top_k, top_p = active_filters(top_k, top_p, self.vocab_size)
        if self.backend.name != "numpy" and top_k is None and top_p is None:
            # Scores and ids stay on the device: no host round trip per token (numpy's host
            # loop below is the same computation without the copies).
            sampled = sample_tokens_on_device(self.device_token_steps(num_samples, length), prefix, length, rng=rng,
                                              temperature=temperature, greedy=greedy, eos_id=eos,
                                              banned_id=tokenizer.unk_id)
        else:
            sampled = sample_tokens(self.token_steps(num_samples, length), prefix, length, rng=rng,
                                    temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, eos_id=eos,
                                    banned_id=tokenizer.unk_id)
        return [self._decode_until_eos(np.concatenate([prime_ids, sampled[:, n]]), len(prime_ids), eos)
                for n in range(num_samples)]

    def _beam_generate(self, prime_ids, length, beam, n_best, eos, length_penalty, alpha, block_ngram):
        if length == 0:
            return [self.tokenizer.decode(prime_ids)] * n_best
        banned = () if self.tokenizer.unk_id is None else (self.tokenizer.unk_id,)
        (hyps,) = beam_search(self.token_steps(beam, length), prime_ids[:, None], length, beam=beam, n_best=n_best,
                              eos_id=eos, banned_ids=banned, length_penalty=length_penalty, alpha=alpha,
                              block_ngram=block_ngram)
        if not hyps:                                   # every token blocked before ``length``: nothing to return
            if not block_ngram:
                raise ConfigError(f"tokenizer: every token of its vocabulary is banned (<UNK> is never generated); "
                                  f"no continuation of {length} tokens")
            raise ConfigError(f"block_ngram: no continuation of {length} tokens avoids repeating a {block_ngram}-gram "
                              f"of itself; lower length or block_ngram")
        ends = [np.array([eos] if h.finished else [], dtype=np.int64) for h in hyps]
        return [self.tokenizer.decode(np.concatenate([prime_ids, h.tokens, end])) for h, end in zip(hyps, ends)]

    @staticmethod
    def _line_start(tokenizer, rng: np.random.Generator) -> np.ndarray:
        """The token that ends a line ("\\n", or <EOS> for words) when the vocabulary has one,
        else a uniformly drawn known token."""
        if tokenizer.eos_id is not None:
            return np.array([tokenizer.eos_id], dtype=np.int64)
        newline = tokenizer.encode("\n")
        if newline.shape[0] == 1 and newline[0] != tokenizer.unk_id:
            return newline
        known = [k for k in range(tokenizer.vocab_size) if k != tokenizer.unk_id]
        return rng.choice(known, 1)

    def token_steps(self, batch: int, budget: int) -> "LanguageModelSteps":
        """The :class:`seqnet.decoding.TokenSteps` of this model for ``batch`` rows and about
        ``budget`` tokens each (it decides whether an input table pays for itself)."""
        return LanguageModelSteps(self, batch, budget)

    def device_token_steps(self, batch: int, budget: int) -> "LanguageModelDeviceSteps":
        """The :class:`seqnet.decoding.DeviceTokenSteps` of this model (scores and ids on its device)."""
        return LanguageModelDeviceSteps(self, batch, budget)

    def _decode_until_eos(self, row: np.ndarray, start: int, eos: int | None) -> str:
        """Decode a sample, cut after the first <EOS> generated past the prime."""
        if eos is not None:
            hits = np.flatnonzero(row[start:] == eos)
            if hits.size:
                row = row[:start + hits[0] + 1]
        return self.tokenizer.decode(row)


class LanguageModelSteps:
    """One token at a time through a :class:`LanguageModel`, host ids in, host logits out
    (:class:`seqnet.decoding.SearchSteps`: its state can be re-indexed for beam search).

    When the vocabulary is small next to the tokens to generate, layer 0's input projections
    come from the input table E @ W_ih, made once here; each step looks up a row. Weights are
    read when this object is made.
    """

    def __init__(self, model: LanguageModel, batch: int, budget: int):
        self.model = model
        xp = model.backend.xp
        table = model.input_table() if model.vocab_size <= budget * batch else None
        self._rnn_step = model.rnn.stepper(input_table=table)
        self._embed = None if table is not None else model.embedding.weight.value
        self._decoder_weight = xp.matrix_transpose(model.decoder.parameter("weight").value)   # (H, V)
        self._decoder_bias = model.decoder.parameter("bias").value if model.decoder.has_bias else None

    def start(self, prefix: np.ndarray):
        model = self.model
        logits, h_n = model(model.device_ids(prefix))
        return to_numpy(logits[-1, ...]), model.rnn.step_states(h_n, prefix.shape[1])

    def reorder(self, states, rows: np.ndarray):
        """The states of rows ``rows`` (host ints), in that order: beams re-indexed."""
        xp, idx = self.model.backend.xp, self.model.device_ids(rows)
        return [tuple(xp.take(part, idx, axis=0) for part in layer) for layer in states]

    def step(self, ids: np.ndarray, states):
        xp = self.model.backend.xp
        x = self.model.device_ids(ids)
        h, states = self._rnn_step(x if self._embed is None else xp.take(self._embed, x, axis=0), states)
        logits = xp.matmul(h, self._decoder_weight)
        return to_numpy(logits if self._decoder_bias is None else logits + self._decoder_bias), states


class LanguageModelDeviceSteps(LanguageModelSteps):
    """One token at a time, ids in and scores out on the model's device; scores exclude the
    decoder bias (``bias``), which the sampling kernel adds."""

    def __init__(self, model: LanguageModel, batch: int, budget: int):
        super().__init__(model, batch, budget)
        self.backend = model.backend
        self.bias = self._decoder_bias

    def start(self, prefix: np.ndarray):
        model = self.model
        _, h_n = model(model.device_ids(prefix))
        states = model.rnn.step_states(h_n, prefix.shape[1])
        return self.backend.xp.matmul(states[-1][0], self._decoder_weight), states     # the top layer's h

    def step(self, ids, states):
        xp = self.backend.xp
        h, states = self._rnn_step(ids if self._embed is None else xp.take(self._embed, ids, axis=0), states)
        return xp.matmul(h, self._decoder_weight), states
