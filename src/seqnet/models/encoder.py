"""The recurrent encoder that classifiers and taggers share: token ids or feature vectors ->
(optional embedding) -> dropout -> RNN/LSTM/GRU stack (stacked, bidirectional, variable lengths).

    x: ids (T, B) with ``vocab_size``, or features (T, B, I) with ``input_size``
    hs = RNN(dropout(E[x] or x), lengths)        (T, B, D*H), zeros at padded steps
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import check_array
from ..errors import ConfigError, ShapeError
from ..layers import RECURRENT_LAYERS, Embedding, Layer
from ..layers.base import BackpropOnce
from ..layers.dropout import check_dropout, dropout, stack_dropout
from ..layers.masks import check_steps_and_rows
from ..random_state import seed_sequence


def check_cell(cell: str) -> str:
    if cell not in RECURRENT_LAYERS:
        raise ConfigError(f"cell: expected one of {tuple(RECURRENT_LAYERS)}, received {cell!r}")
    return cell


class SequenceEncoder(Layer):
    """Embedding (token ids) or nothing (features), then a recurrent stack; see the module docstring.

    ``dropout`` applies to the stack's input and between its layers; ``dropout_rng`` (numpy
    Generator, shared with the model that owns this encoder) draws every mask.
    """

    def __init__(self, *, vocab_size: int | None = None, input_size: int | None = None, embed_size: int = 64,
                 hidden_size: int = 128, num_layers: int = 1, cell: str = "lstm", bidirectional: bool = False,
                 dropout: float = 0.0, dtype: Any = None, seed=None, dropout_rng: np.random.Generator | None = None):
        super().__init__(dtype)
        if (vocab_size is None) == (input_size is None):
            raise ConfigError(f"vocab_size, input_size: give exactly one (token ids or feature vectors), received "
                              f"vocab_size={vocab_size!r}, input_size={input_size!r}")
        check_cell(cell)
        self.dropout = check_dropout(dropout)
        seeds = seed_sequence(seed).spawn(2)
        self.dropout_rng = dropout_rng if dropout_rng is not None else np.random.default_rng(seeds[1])
        self.embedding = None
        if vocab_size is not None:
            self.embedding = self.add("embedding", Embedding(vocab_size, embed_size, dtype=dtype, seed=seeds[0]))
            input_size = embed_size
        self.input_size = input_size
        self.rnn = self.add("rnn", RECURRENT_LAYERS[cell](input_size, hidden_size, num_layers,
                                                          dropout=stack_dropout(dropout, num_layers),
                                                          bidirectional=bidirectional, dtype=dtype, seed=seeds[1]))
        self.rnn.dropout_rng = self.dropout_rng

    @property
    def output_size(self) -> int:
        return self.rnn.hidden_size * self.rnn.num_directions

    def batch_shape(self, x) -> tuple[int, int]:
        """(T, B) of an input batch, after checking it is one this encoder takes."""
        if self.embedding is not None:
            x = check_array(self.backend, x, "x", ndim=2)
            check_steps_and_rows("x", tuple(x.shape), " (T, B) of token ids")
        else:
            x = check_array(self.backend, x, "x", ndim=3, dtype=self.dtype_name)
            if x.shape[-1] != self.input_size:
                raise ShapeError(f"x: expected features (T, B, {self.input_size}), received shape {tuple(x.shape)}")
        return x.shape[0], x.shape[1]

    def run(self, x, lengths, training: bool):
        """Returns (hs (T, B, D*H), backprop(d_hs) -> d_x for features, None for ids; None at inference)."""
        self.batch_shape(x)
        emb_back = None
        if self.embedding is not None:
            x, emb_back = self.embedding.forward(x)
        x, drop_back = dropout(x, self.dropout if training else 0.0, self.dropout_rng, self.backend, self.dtype_name)
        if not training:
            return self.rnn(x, None, lengths)[0], None
        (hs, _), rnn_back = self.rnn.forward(x, None, lengths)
        guard = BackpropOnce("SequenceEncoder backprop")
        hs_shape = tuple(hs.shape)

        def backprop(d_hs):
            guard.accept(self.backend, d_hs, "d_hs", hs_shape, self.dtype_name, of="hs")
            d_x = drop_back(rnn_back(d_hs, None)[0])
            if emb_back is None:
                return d_x
            emb_back(d_x)
            return None

        return hs, backprop
