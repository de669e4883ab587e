"""A linear-chain conditional random field over per-step tag scores (Lafferty et al. 2001).

The output layer of a BiLSTM-CRF tagger (Lample et al. 2016): the recurrent encoder gives
emission scores e (T, B, K); the CRF adds learned transition scores, so the model scores
whole tag paths (see :mod:`seqnet.kernels.crf` for the path score and the recursions). The
training loss is the negative log-likelihood of the gold paths, summed over rows and divided
by the number of valid tokens (nats per token, comparable with a softmax tagger's loss):

    loss = sum_b (log Z_b - s(y_b)) / sum_b L_b

Its gradient is marginals minus gold indicators (forward-backward), e.g.
d loss / d e_t[j] = (P(y_t = j) - [y_t = j]) / sum_b L_b. Parameters follow pytorch-crf's
names: ``transitions`` (K, K) (from i to j), ``start_transitions`` (K,), ``end_transitions`` (K,).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from ..backend import check_array, to_numpy
from ..errors import ShapeError, check_positive_int
from ..random_state import check_seed
from .base import BackpropOnce, Layer
from .embedding import check_token_ids
from .loss import check_d_loss
from .masks import check_lengths, check_steps_and_rows, step_mask


class LinearChainCRF(Layer):
    """Transition scores over ``num_tags`` tags; see the module docstring."""

    def __init__(self, num_tags: int, dtype: Any = None, seed: int | None = None):
        super().__init__(dtype)
        self.num_tags = check_positive_int("num_tags", num_tags)
        rng = np.random.default_rng(check_seed(seed))
        k = self.num_tags
        self._init_params({"transitions": rng.uniform(-0.1, 0.1, (k, k)),
                           "start_transitions": rng.uniform(-0.1, 0.1, k),
                           "end_transitions": rng.uniform(-0.1, 0.1, k)})

    # -- checks ---------------------------------------------------------------------
    def _check(self, emissions, lengths):
        emissions = check_array(self.backend, emissions, "emissions", ndim=3, dtype=self.dtype_name)
        if emissions.shape[-1] != self.num_tags:
            raise ShapeError(f"emissions: expected (T, B, {self.num_tags}) (num_tags last), "
                             f"received shape {tuple(emissions.shape)}")
        steps, batch = emissions.shape[0], emissions.shape[1]
        check_steps_and_rows("emissions", tuple(emissions.shape))
        host_lengths = check_lengths(lengths, batch, steps)
        return emissions, host_lengths, step_mask(self.backend, host_lengths, steps)

    def _check_tags(self, tags, mask, shape):
        tags = check_array(self.backend, tags, "tags", ndim=2)
        if tuple(tags.shape) != shape:
            raise ShapeError(f"tags: expected shape {shape} (T, B), received {tuple(tags.shape)}")
        xp = self.backend.xp
        if "int" in self.backend.dtype_name(tags.dtype):
            tags = xp.where(mask, xp.astype(tags, xp.int64), 0)            # padded steps are not read
        return check_token_ids(self.backend, tags, "tags", self.num_tags, what="tag ids", size="num_tags")

    def _weights(self):
        p = self._params
        return p["start_transitions"].value, p["end_transitions"].value, p["transitions"].value

    # -- scores -----------------------------------------------------------------------
    def log_partition(self, emissions, lengths=None):
        """log Z (B,): log of the summed exp-scores of every tag path of each row."""
        emissions, _, mask = self._check(emissions, lengths)
        start, end, trans = self._weights()
        return kernels.kernel(self.backend, "crf_forward")(emissions, mask, start, end, trans,
                                                            xp=self.backend.xp)[0]

    def _gold(self, emissions, tags, mask):
        """(gold path scores s(y) (B,), one-hot gold tags (T, B, K) zero at padded steps, last-step indicator (T, B, 1))."""
        xp = self.backend.xp
        start, end, trans = self._weights()
        classes = xp.arange(self.num_tags, dtype=xp.int64, device=emissions.device)
        weight = xp.astype(mask, emissions.dtype)[..., None]
        one_hot = xp.astype(tags[..., None] == classes, emissions.dtype) * weight          # (T, B, K)
        following = xp.concat([weight[1:, ...], xp.zeros_like(weight[:1, ...])], axis=0)
        is_last = weight - following                                                      # (T, B, 1)
        emit = xp.sum(xp.sum(one_hot * emissions, axis=2), axis=0)
        moves = xp.sum(xp.sum(xp.matmul(one_hot[:-1, ...], trans) * one_hot[1:, ...], axis=2), axis=0)
        first = xp.sum(one_hot[0, ...] * start, axis=1)
        final = xp.sum(xp.sum(one_hot * is_last * end, axis=2), axis=0)
        return emit + moves + first + final, one_hot, is_last

    def score(self, emissions, tags, lengths=None):
        """s(y) (B,): the score of the tag path ``tags`` (T, B) of each row."""
        emissions, _, mask = self._check(emissions, lengths)
        tags = self._check_tags(tags, mask, tuple(emissions.shape[:2]))
        return self._gold(emissions, tags, mask)[0]

    # -- training ---------------------------------------------------------------------
    def forward(self, emissions, tags, lengths=None):
        """Returns (loss, a 0-d array (nats per valid token); backprop(d_loss=1.0) -> d_emissions (T, B, K)).

        backprop adds the gradients of the three transition parameters; it may run once."""
        xp = self.backend.xp
        emissions, host_lengths, mask = self._check(emissions, lengths)
        tags = self._check_tags(tags, mask, tuple(emissions.shape[:2]))
        start, end, trans = self._weights()
        log_z, alphas = kernels.kernel(self.backend, "crf_forward")(emissions, mask, start, end, trans, xp=xp)
        gold, one_hot, is_last = self._gold(emissions, tags, mask)
        count = float(np.sum(host_lengths))
        loss = xp.sum(log_z - gold) / count
        guard = BackpropOnce("LinearChainCRF backprop")

        def backprop(d_loss=1.0):
            guard.check()
            d_loss = check_d_loss(d_loss, loss)
            guard.consume()
            unary, pairwise, first, last = kernels.kernel(self.backend, "crf_marginals")(
                emissions, mask, end, trans, log_z, alphas, xp=xp)
            scale = d_loss / count
            params = self._params
            gold_moves = xp.matmul(xp.matrix_transpose(xp.reshape(one_hot[:-1, ...], (-1, self.num_tags))),
                                   xp.reshape(one_hot[1:, ...], (-1, self.num_tags)))
            params["transitions"].grad = params["transitions"].grad + (pairwise - gold_moves) * scale
            params["start_transitions"].grad = params["start_transitions"].grad + \
                xp.sum(first - one_hot[0, ...], axis=0) * scale
            gold_last = xp.sum(one_hot * is_last, axis=0)
            params["end_transitions"].grad = params["end_transitions"].grad + xp.sum(last - gold_last, axis=0) * scale
            return (unary - one_hot) * scale

        return loss, backprop

    # -- decoding ---------------------------------------------------------------------
    def decode(self, emissions, lengths=None) -> tuple[list[np.ndarray], np.ndarray]:
        """Viterbi: (best tag path of each row as a host int64 array of its length, their scores (B,) on the host)."""
        emissions, host_lengths, mask = self._check(emissions, lengths)
        start, end, trans = self._weights()
        best, last, pointers = kernels.kernel(self.backend, "crf_viterbi")(emissions, mask, start, end, trans,
                                                                            xp=self.backend.xp)
        pointers, tag = to_numpy(pointers), to_numpy(last).astype(np.int64)   # one transfer of (T-1, B, K)
        steps, rows = emissions.shape[0], np.arange(emissions.shape[1])
        path = np.empty((steps, rows.shape[0]), dtype=np.int64)
        path[steps - 1] = tag
        for t in range(steps - 1, 0, -1):                                     # walk the pointers back
            tag = pointers[t - 1][rows, tag]
            path[t - 1] = tag
        return [path[:n, b].copy() for b, n in enumerate(host_lengths)], to_numpy(best)
