"""A recurrent language model: embedding -> dropout -> RNN/LSTM/GRU stack -> dropout -> linear.

    logits[t] = W_out h[t] + b_out,    h = RNN(E[ids])      ids (T, B) -> logits (T, B, V)

Training carries the hidden state from one batch to the next (truncated BPTT): the state
returned by :meth:`loss_and_grads` is plain arrays, so no gradient flows into earlier batches.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import Backend, make_backend, to_numpy
from ..errors import ConfigError, ShapeError
from ..layers import GRU, LSTM, RNN, Embedding, Linear, softmax_cross_entropy
from ..layers.embedding import embedding_backward
from ..layers.dropout import check_dropout, dropout_mask
from .sampling import check_sampling, gumbel_blocks, sample_next

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}

# From this embedding size on, layer 0's input projection is looked up in the (V, G*H) table
# E @ W_ih + b instead of computed as E[ids] @ W_ih, and backward gets the gradients of E and
# W_ih from per-token sums of d xproj: that replaces three (N, E) x (E, G*H) products
# (forward, and the two gradients) by a lookup and a pass of sums. Below it the products
# are cheaper: on the project's 2-core machine, with bench.py's S, M and L models, the
# lookup made training steps 8% slower at embed 32 and 4-30% faster at embed 128 and 256.
FOLD_MIN_EMBED = 64


class LanguageModel:
    """Next-token model over a vocabulary of ``vocab_size`` ids.

    ``tie_weights`` shares the embedding table with the output layer (needs
    ``embed_size == hidden_size``). ``tokenizer`` (optional) lets :meth:`score` and
    :meth:`generate` take and return text.
    """

    def __init__(self, vocab_size: int, embed_size: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False, dtype: Any = None,
                 seed: int | None = None, tokenizer=None):
        if cell not in CELLS:
            raise ConfigError(f"cell: expected one of {tuple(CELLS)}, received {cell!r}")
        if tie_weights and embed_size != hidden_size:
            raise ConfigError(f"tie_weights: needs embed_size == hidden_size, received embed_size={embed_size}, "
                              f"hidden_size={hidden_size}")
        self.config = dict(vocab_size=vocab_size, embed_size=embed_size, hidden_size=hidden_size,
                           num_layers=num_layers, cell=cell, dropout=dropout, tie_weights=bool(tie_weights))
        self.dropout = check_dropout(dropout)
        self.tie_weights = bool(tie_weights)
        self.tokenizer = tokenizer
        seeds = np.random.SeedSequence(seed).spawn(4)
        self.rng = np.random.default_rng(seeds[3])          # dropout masks; saved in checkpoints
        self.embedding = Embedding(vocab_size, embed_size, dtype=dtype, seed=seeds[0])
        self.rnn = CELLS[cell](embed_size, hidden_size, num_layers, dropout=dropout, dtype=dtype, seed=seeds[1])
        self.rnn._rng = self.rng
        self.decoder = Linear(hidden_size, vocab_size, dtype=dtype, seed=seeds[2])
        if self.tie_weights:
            del self.decoder.params["weight"], self.decoder.param_grads["weight"]

    # -- parameters -------------------------------------------------------------------
    @property
    def layers(self) -> dict[str, Any]:
        return {"embedding": self.embedding, "rnn": self.rnn, "decoder": self.decoder}

    @property
    def backend(self) -> Backend:
        return self.embedding.backend

    @property
    def params(self) -> dict[str, Any]:
        """Flat {"rnn.weight_ih_l0": array, ...} in internal layout (what optimizers update)."""
        return {f"{p}.{k}": v for p, layer in self.layers.items() for k, v in layer.params.items()}

    @property
    def param_grads(self) -> dict[str, Any]:
        return {f"{p}.{k}": v for p, layer in self.layers.items() for k, v in layer.param_grads.items()}

    def set_params(self, flat: dict[str, Any]) -> None:
        for name, value in flat.items():
            prefix, key = name.split(".", 1)
            self.layers[prefix].params[key] = value

    def zero_grad(self) -> None:
        for layer in self.layers.values():
            layer.zero_grad()

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for layer in self.layers.values())

    def state_dict(self) -> dict[str, Any]:
        """Flat public-layout parameters (PyTorch names inside each layer)."""
        return {f"{p}.{k}": v for p, layer in self.layers.items() for k, v in layer.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for prefix, layer in self.layers.items():
            mine = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(prefix + ".")}
            layer.load_state_dict(mine)
        unknown = [k for k in state if k.split(".", 1)[0] not in self.layers]
        if unknown:
            raise ConfigError(f"state_dict: unexpected keys {unknown}")

    def to(self, name: str | Backend, device: Any = None) -> "LanguageModel":
        target = make_backend(name, device)
        for layer in self.layers.values():
            layer.to(target)
        return self

    # -- forward and training ---------------------------------------------------------
    def _ids(self, ids, name: str):
        ids = self.embedding.check_ids(ids, name)
        if ids.ndim != 2:
            raise ShapeError(f"{name}: expected token ids of shape (T, B), received {tuple(ids.shape)}")
        return ids

    def forward(self, ids, state=None, training: bool = True):
        """ids (T, B) -> (logits (T, B, V), final state, backprop(dlogits) or None)."""
        xp, backend = self.backend.xp, self.backend
        ids = self._ids(ids, "ids")
        drop_p = self.dropout if training else 0.0
        drop_in = drop_out = emb_back = table = None
        folded = drop_p == 0 and self.embedding.embedding_dim >= FOLD_MIN_EMBED
        if folded:                                   # layer 0's input projections are looked up
            x, table = ids, self._input_table()
        else:
            x, emb_back = self.embedding.forward(ids)
            if drop_p > 0:
                drop_in = dropout_mask(self.rng, tuple(x.shape), drop_p, backend, self.embedding.dtype_name)
                x = x * drop_in
        if training:
            (hs, final), rnn_back = self.rnn.forward(x, state, input_table=table)
        else:
            (hs, final), rnn_back = self.rnn(x, state, input_table=table), None
        if drop_p > 0:
            drop_out = dropout_mask(self.rng, tuple(hs.shape), drop_p, backend, self.embedding.dtype_name)
            hs = hs * drop_out
        tied = xp.matrix_transpose(self.embedding.params["weight"]) if self.tie_weights else None
        logits, dec_back = self.decoder.forward(hs, weight=tied)
        if not training:
            return logits, final, None

        def backprop(d_logits):
            d_hs = dec_back(d_logits)
            if self.tie_weights:
                d_hs, d_w = d_hs
                self.embedding.param_grads["weight"] = self.embedding.param_grads["weight"] + xp.matrix_transpose(d_w)
            if drop_out is not None:
                d_hs = d_hs * drop_out
            d_x, _ = rnn_back(d_hs, None)
            if folded:
                self._input_table_backward(xp.reshape(ids, (-1,)), d_x)
                return
            if drop_in is not None:
                d_x = d_x * drop_in
            emb_back(d_x)

        return logits, final, backprop

    def _input_table(self):
        """(V, G*H): every token's input projection into layer 0, ``E @ W_ih_l0 + bias``."""
        xp = self.backend.xp
        table = xp.matmul(self.embedding.params["weight"], self.rnn.params["weight_ih_l0"])
        bias = self.rnn.projection_bias(0)
        return table if bias is None else table + bias

    def _input_table_backward(self, flat_ids, d_xproj):
        """Gradients of E and W_ih_l0 from d xproj (T, B, G*H) of a folded forward: with S the
        per-token sums of d xproj (V, G*H), dE = S W_ih^T and dW_ih = E^T S."""
        xp = self.backend.xp
        emb, w_ih = self.embedding.params["weight"], self.rnn.params["weight_ih_l0"]
        sums = self.backend.kernel("embedding_backward", embedding_backward)(
            flat_ids, xp.reshape(d_xproj, (-1, w_ih.shape[-1])), self.embedding.num_embeddings, xp=xp)
        emb_grads, rnn_grads = self.embedding.param_grads, self.rnn.param_grads
        emb_grads["weight"] = emb_grads["weight"] + xp.matmul(sums, xp.matrix_transpose(w_ih))
        rnn_grads["weight_ih_l0"] = rnn_grads["weight_ih_l0"] + xp.matmul(xp.matrix_transpose(emb), sums)

    def loss_and_grads(self, inputs, targets, state=None, mask=None):
        """One training step's math: zero grads, forward, mean cross-entropy, backward.

        inputs, targets: (T, B) ids on this model's backend. Returns (loss, a 0-d array on
        the device; final state to carry into the next batch). Gradients are in ``param_grads``.
        """
        self.zero_grad()
        logits, final, backprop = self.forward(inputs, state, training=True)
        loss, loss_back = softmax_cross_entropy(logits, self._ids(targets, "targets"), mask, xp=self.backend.xp)
        backprop(loss_back())
        return loss, final

    def loss(self, inputs, targets, state=None):
        """Mean cross-entropy (nats per token) without dropout or gradients; returns (loss, final state)."""
        logits, final, _ = self.forward(inputs, state, training=False)
        loss, _ = softmax_cross_entropy(logits, self._ids(targets, "targets"), xp=self.backend.xp)
        return loss, final

    # -- text in, text out ------------------------------------------------------------
    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ConfigError("tokenizer: this model has no tokenizer; set model.tokenizer or load it from a run directory")
        return self.tokenizer

    def device_ids(self, host_ids: np.ndarray):
        """Host token ids (any integer array) as an int64 array on this model's backend."""
        return self.backend.asarray(np.asarray(host_ids, dtype=np.int64), "int64")

    def score(self, text: str) -> dict:
        """Log-probability of ``text`` under the model.

        Every token after the first is predicted from the ones before it (the first has no
        context). Characters never seen in training map to <UNK>. Returns total
        ``log_prob`` (nats), ``bits_per_token`` and the number of ``tokens`` scored.
        """
        ids = self._require_tokenizer().encode(text)
        if ids.shape[0] < 2:
            raise ConfigError(f"text: expected at least 2 tokens to score, received {ids.shape[0]}")
        loss, _ = self.loss(self.device_ids(ids[:-1, None]), self.device_ids(ids[1:, None]))
        nats = float(to_numpy(loss))
        count = ids.shape[0] - 1
        return {"log_prob": -nats * count, "bits_per_token": nats / math.log(2), "tokens": count}

    def generate(self, prime: str = "", length: int = 200, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False, seed: int | None = None, num_samples: int = 1,
                 stop_at_eos: bool = True) -> list[str]:
        """Sample ``num_samples`` continuations of ``prime`` in one batch; returns the texts (prime included).

        Word models stop a sample at <EOS> when ``stop_at_eos``. Unknown characters in
        ``prime`` map to <UNK>; <UNK> itself is never generated.
        """
        tokenizer = self._require_tokenizer()
        check_sampling(temperature, top_k, top_p)
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ConfigError(f"length: expected a non-negative integer, received {length!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ConfigError(f"num_samples: expected a positive integer, received {num_samples!r}")
        rng = np.random.default_rng(seed)
        prime_ids = tokenizer.encode(prime) if prime else np.zeros(0, dtype=np.int64)
        if prime_ids.shape[0] == 0:                    # no context: start as after a line end
            prime_ids = self._line_start(tokenizer, rng)
        eos = tokenizer.eos_id if stop_at_eos else None
        # Run the whole prime at once, then feed one token at a time.
        logits, state, _ = self.forward(self.device_ids(np.repeat(prime_ids[:, None], num_samples, axis=1)),
                                        None, training=False)
        last = to_numpy(logits[-1, ...])                                  # (N, V) on the host
        step = self._token_step(num_samples, length)
        states = self.rnn.step_states(state, num_samples)
        sampled = np.empty((length, num_samples), dtype=np.int64)
        finished = np.zeros(num_samples, dtype=bool)
        plain = not greedy and top_k is None and top_p is None
        noise = gumbel_blocks(rng, last.shape, min(length, 256)) if plain and length else None
        for k in range(length):
            if tokenizer.unk_id is not None:
                last[:, tokenizer.unk_id] = -np.inf                       # never emit <UNK>
            sampled[k] = nxt = sample_next(last, rng, temperature=temperature, top_k=top_k, top_p=top_p,
                                           greedy=greedy, gumbel=None if noise is None else next(noise))
            if eos is not None:
                finished |= nxt == eos
                if finished.all():
                    sampled = sampled[:k + 1]
                    break
            if k + 1 < length:
                last, states = step(nxt, states)                          # feed it back
        return [self._decode_until_eos(np.concatenate([prime_ids, sampled[:, n]]), len(prime_ids), eos)
                for n in range(num_samples)]

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

    def _token_step(self, batch: int, budget: int):
        """A function (ids (B,) host ints, states) -> (logits (B, V) on the host, new states).

        When the vocabulary is small next to the tokens to generate, the embedding table is
        multiplied by layer 0's input weights once, so each step looks up a projected row.
        """
        xp = self.backend.xp
        emb = self.embedding.params["weight"]
        projected = self.embedding.num_embeddings <= budget * batch
        if projected:
            table = self._input_table()
        dec_w = xp.matrix_transpose(emb) if self.tie_weights else self.decoder.params["weight"]
        dec_b = self.decoder.params.get("bias")
        rnn_step = self.rnn.stepper(projected=projected)

        def step(ids: np.ndarray, states):
            x = xp.take(table if projected else emb, self.device_ids(ids), axis=0)
            h, states = rnn_step(x, states)
            logits = xp.matmul(h, dec_w)
            return to_numpy(logits if dec_b is None else logits + dec_b), states
        return step

    def _decode_until_eos(self, row: np.ndarray, start: int, eos: int | None) -> str:
        """Decode a sample, cut after the first <EOS> generated past the prime."""
        if eos is not None:
            hits = np.flatnonzero(row[start:] == eos)
            if hits.size:
                row = row[:start + hits[0] + 1]
        return self.tokenizer.decode(row)
