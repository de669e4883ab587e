"""Many-to-many (one label per input token): a sequence tagger, optionally with a CRF.

    hs = encoder(x, lengths)  (T, B, D)     emissions = W dropout(hs) + b  (T, B, K)

Without a CRF each token's tag is independent given hs: the loss is the softmax
cross-entropy averaged over valid tokens and a tag is the per-token argmax. With
``crf=True`` a :class:`seqnet.layers.LinearChainCRF` scores whole tag paths (BiLSTM-CRF,
Lample et al. 2016): the loss is its negative log-likelihood per valid token and decoding
is Viterbi. Bidirectional by default.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import check_array, to_numpy
from ..errors import ShapeError, check_positive_int, check_real
from ..layers import Layer, Linear, LinearChainCRF, softmax_cross_entropy
from ..layers.base import BackpropOnce
from ..layers.dropout import dropout
from ..layers.embedding import check_token_ids
from ..layers.masks import check_lengths, step_mask
from ..random_state import seed_sequence
from .encoder import SequenceEncoder


class SequenceTagger(Layer):
    """One of ``num_tags`` tags per token; see the module docstring.

    x: token ids (T, B) or features (T, B, I); tags: (T, B) ids (any valid id at padded steps);
    ``lengths`` (B,) host ints (None: every row has T steps).
    """

    def __init__(self, num_tags: int, *, vocab_size: int | None = None, input_size: int | None = None,
                 embed_size: int = 64, hidden_size: int = 128, num_layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = True, dropout: float = 0.0, crf: bool = False, dtype: Any = None,
                 seed: int | None = None):
        super().__init__(dtype)
        self.num_tags = check_positive_int("num_tags", num_tags)
        seeds = seed_sequence(seed).spawn(4)
        self.dropout_rng = np.random.default_rng(seeds[3])
        self.encoder = self.add("encoder", SequenceEncoder(
            vocab_size=vocab_size, input_size=input_size, embed_size=embed_size, hidden_size=hidden_size,
            num_layers=num_layers, cell=cell, bidirectional=bidirectional, dropout=dropout, dtype=dtype,
            seed=seeds[0], dropout_rng=self.dropout_rng))
        self.head = self.add("head", Linear(self.encoder.output_size, self.num_tags, dtype=dtype, seed=seeds[1]))
        self.crf = self.add("crf", LinearChainCRF(self.num_tags, dtype=dtype, seed=seeds[2])) if crf else None
        self.dropout = self.encoder.dropout

    def __call__(self, x, lengths=None):
        """Inference: emissions (T, B, K) (per-token logits without a CRF)."""
        return self._run(x, lengths, training=False)[0]

    def forward(self, x, lengths=None):
        """Training forward: (emissions (T, B, K), backprop(d_emissions) -> d_x for features, None for ids)."""
        return self._run(x, lengths, training=True)

    def _run(self, x, lengths, training: bool):
        hs, enc_back = self.encoder.run(x, lengths, training)
        hs, drop_back = dropout(hs, self.dropout if training else 0.0, self.dropout_rng, self.backend, self.dtype_name)
        emissions, head_back = self.head.forward(hs)
        if not training:
            return emissions, None
        guard = BackpropOnce("SequenceTagger backprop")
        emissions_shape = tuple(emissions.shape)

        def backprop(d_emissions):
            guard.accept(self.backend, d_emissions, "d_emissions", emissions_shape, self.dtype_name, of="the emissions")
            return enc_back(drop_back(head_back(d_emissions)))

        return emissions, backprop

    def _check_tags(self, tags, shape):
        tags = check_array(self.backend, tags, "tags", ndim=2)
        if tuple(tags.shape) != shape:
            raise ShapeError(f"tags: expected shape {shape} (T, B), the shape of x's ids, received {tuple(tags.shape)}")
        return check_token_ids(self.backend, tags, "tags", self.num_tags, what="tag ids", size="num_tags")

    def _loss(self, emissions, tags, lengths):
        host = check_lengths(lengths, emissions.shape[1], emissions.shape[0])
        if self.crf is not None:
            return self.crf.forward(emissions, tags, host)
        mask = step_mask(self.backend, host, emissions.shape[0])
        return softmax_cross_entropy(emissions, tags, mask, xp=self.backend.xp)

    def loss_and_grads(self, x, tags, lengths=None, *, grad_scale: float = 1.0):
        """Forward, loss (nats per valid token), backward; gradients are *added* (times ``grad_scale``)."""
        tags = self._check_tags(tags, self.encoder.batch_shape(x))
        emissions, backprop = self.forward(x, lengths)
        loss, loss_back = self._loss(emissions, tags, lengths)
        backprop(loss_back(check_real("grad_scale", grad_scale)))
        return loss

    def loss(self, x, tags, lengths=None):
        """The loss without dropout or gradients (0-d)."""
        tags = self._check_tags(tags, self.encoder.batch_shape(x))
        return self._loss(self(x, lengths), tags, lengths)[0]

    def predict(self, x, lengths=None) -> list[np.ndarray]:
        """The tag ids of each row (host int64 arrays of its length): Viterbi with a CRF, else per-token argmax."""
        emissions = self(x, lengths)
        host = check_lengths(lengths, emissions.shape[1], emissions.shape[0])
        if self.crf is not None:
            return self.crf.decode(emissions, host)[0]
        best = np.argmax(to_numpy(emissions), axis=-1)
        return [best[:n, b].astype(np.int64) for b, n in enumerate(host)]
