"""Many-to-one: a sequence classifier.

    hs = encoder(x, lengths)  (T, B, D)    z = pool(hs, lengths)  (B, D)    logits = W dropout(z) + b  (B, C)

Multi-class: softmax cross-entropy (optionally class-weighted, as
torch.nn.CrossEntropyLoss(weight=)); multi-label: one sigmoid per class and the mean binary
cross-entropy (torch.nn.BCEWithLogitsLoss). Pooling is one of :data:`seqnet.layers.POOLINGS`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import check_array, to_numpy
from ..errors import ConfigError, ShapeError, check_bool, check_positive_int, check_real
from ..layers import Layer, Linear, SequencePooling, sigmoid_binary_cross_entropy, softmax_cross_entropy
from ..layers.base import BackpropOnce
from ..layers.dropout import dropout
from ..layers.embedding import check_token_ids
from ..random_state import seed_sequence
from .encoder import SequenceEncoder


class SequenceClassifier(Layer):
    """Classes (or independent labels) of whole sequences; see the module docstring.

    x: token ids (T, B) (``vocab_size``) or features (T, B, I) (``input_size``);
    ``lengths`` (B,) host ints (None: every row has T steps).
    """

    def __init__(self, num_classes: int, *, vocab_size: int | None = None, input_size: int | None = None,
                 embed_size: int = 64, hidden_size: int = 128, num_layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = False, pooling: str = "last", attention_size: int = 64, dropout: float = 0.0,
                 multi_label: bool = False, class_weights=None, dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.multi_label = check_bool("multi_label", multi_label)
        seeds = seed_sequence(seed).spawn(4)
        self.dropout_rng = np.random.default_rng(seeds[3])
        self.encoder = self.add("encoder", SequenceEncoder(
            vocab_size=vocab_size, input_size=input_size, embed_size=embed_size, hidden_size=hidden_size,
            num_layers=num_layers, cell=cell, bidirectional=bidirectional, dropout=dropout, dtype=dtype,
            seed=seeds[0], dropout_rng=self.dropout_rng))
        size = self.encoder.output_size
        self.pool = self.add("pool", SequencePooling(pooling, size, self.encoder.rnn.num_directions, attention_size,
                                                     dtype=dtype, seed=int(seeds[1].generate_state(1)[0])))
        self.head = self.add("head", Linear(size, self.num_classes, dtype=dtype, seed=seeds[2]))
        self.dropout = self.encoder.dropout
        # Kept on the host and copied per loss call, so the model stays movable with .to().
        self.class_weights = None if class_weights is None else self._check_weights(class_weights)

    def _check_weights(self, weights) -> np.ndarray:
        if self.multi_label:
            raise ConfigError("class_weights: only for multi-class classification (softmax), not multi_label")
        expected = f"class_weights: expected {self.num_classes} finite weights > 0 (one per class)"
        if isinstance(weights, str):
            raise ConfigError(f"{expected}, received the str {weights!r} (the command line's --class-weights balanced "
                              "computes weights from the training labels: seqnet.tasks.classify.balanced_weights)")
        try:
            host = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            host = None
        if host is None or host.shape != (self.num_classes,) or not np.all(np.isfinite(host)) or np.any(host <= 0):
            raise ConfigError(f"{expected}, received {weights!r}")
        return host

    # -- forward --------------------------------------------------------------------
    def __call__(self, x, lengths=None):
        """Inference: logits (B, C)."""
        return self._run(x, lengths, training=False)[0]

    def forward(self, x, lengths=None):
        """Training forward: (logits (B, C), backprop(d_logits) -> d_x for features, None for ids)."""
        return self._run(x, lengths, training=True)

    def _run(self, x, lengths, training: bool):
        hs, enc_back = self.encoder.run(x, lengths, training)
        pooled, pool_back = self.pool.forward(hs, lengths)
        pooled, drop_back = dropout(pooled, self.dropout if training else 0.0, self.dropout_rng, self.backend,
                                    self.dtype_name)
        logits, head_back = self.head.forward(pooled)
        if not training:
            return logits, None
        guard = BackpropOnce("SequenceClassifier backprop")
        logits_shape = tuple(logits.shape)

        def backprop(d_logits):
            guard.accept(self.backend, d_logits, "d_logits", logits_shape, self.dtype_name, of="the logits")
            return enc_back(pool_back(drop_back(head_back(d_logits))))

        return logits, backprop

    # -- losses ---------------------------------------------------------------------
    def check_targets(self, targets, batch: int):
        """Class ids (B,) (multi-class) or 0/1 floats (B, C) (multi-label) of this backend."""
        if self.multi_label:
            targets = check_array(self.backend, targets, "targets", ndim=2, dtype=self.dtype_name)
            if tuple(targets.shape) != (batch, self.num_classes):
                raise ShapeError(f"targets: expected 0/1 labels of shape ({batch}, {self.num_classes}) (B, C), "
                                 f"received {tuple(targets.shape)}")
            if bool(self.backend.xp.any((targets != 0.0) & (targets != 1.0))):       # NaN is neither
                host = to_numpy(targets)
                other = np.unique(host[(host != 0.0) & (host != 1.0)])[:5].tolist()
                raise ConfigError(f"targets: expected 0/1 labels (multi_label), received other values such as {other}")
            return targets
        targets = check_token_ids(self.backend, targets, "targets", self.num_classes, ndim=1, what="class ids",
                                  size="num_classes")
        if targets.shape[0] != batch:
            raise ShapeError(f"targets: expected one class id per row, shape ({batch},), received {tuple(targets.shape)}")
        return targets

    def _loss(self, logits, targets):
        xp = self.backend.xp
        if self.multi_label:
            return sigmoid_binary_cross_entropy(logits, targets, xp=xp)
        weights = None if self.class_weights is None else self.backend.asarray(self.class_weights, self.dtype_name)
        return softmax_cross_entropy(logits, targets, xp=xp, class_weights=weights)

    def loss_and_grads(self, x, targets, lengths=None, *, grad_scale: float = 1.0):
        """Forward, loss, backward; gradients are *added* (times ``grad_scale``). Returns the loss (0-d)."""
        batch = self.encoder.batch_shape(x)[1]
        targets = self.check_targets(targets, batch)
        logits, backprop = self.forward(x, lengths)
        loss, loss_back = self._loss(logits, targets)
        backprop(loss_back(check_real("grad_scale", grad_scale)))
        return loss

    def loss(self, x, targets, lengths=None):
        """The loss without dropout or gradients (0-d)."""
        targets = self.check_targets(targets, self.encoder.batch_shape(x)[1])
        return self._loss(self(x, lengths), targets)[0]

    # -- predictions ----------------------------------------------------------------
    def probabilities(self, logits):
        """Softmax over classes, or one sigmoid per label (device arrays)."""
        xp = self.backend.xp
        if self.multi_label:
            return 0.5 * (xp.tanh(0.5 * logits) + 1.0)
        z = xp.exp(logits - xp.max(logits, axis=-1, keepdims=True))
        return z / xp.sum(z, axis=-1, keepdims=True)

    def predict_proba(self, x, lengths=None) -> np.ndarray:
        """Host (B, C): class probabilities (rows sum to 1) or per-label probabilities."""
        return to_numpy(self.probabilities(self(x, lengths)))

    def predict(self, x, lengths=None, threshold: float | None = None) -> np.ndarray:
        """Host: the most probable class (B,) int64, or (``multi_label``) the labels whose
        probability is at least ``threshold`` (a number in (0, 1), default 0.5) (B, C) bool."""
        if threshold is not None and not self.multi_label:
            raise ConfigError(f"threshold: only for multi_label models (a single-label model predicts its most "
                              f"probable class), received threshold={threshold!r}")
        threshold = 0.5 if threshold is None else check_real("threshold", threshold, "a number in (0, 1)",
                                                             lambda t: 0 < t < 1)
        probs = self.predict_proba(x, lengths)
        return probs >= threshold if self.multi_label else np.argmax(probs, axis=-1).astype(np.int64)
