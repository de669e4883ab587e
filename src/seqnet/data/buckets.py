"""Variable-length batches with little padding: length bucketing, reproducible from a seed.

Each epoch e draws a permutation of the N examples from ``default_rng([seed, e])``, cuts it
into buckets of ``batch_size * bucket_batches`` examples, sorts each bucket by length
(stable), cuts the buckets into batches of ``batch_size`` (the last batch of a bucket may be
smaller) and shuffles the order of all the epoch's batches. A batch therefore holds
sequences of similar length, batches come in random order, and the batches of any epoch are
a function of (seed, epoch) alone: a resumed run needs only the position to continue.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, check_positive_int


class BucketBatcher:
    """Endless batches of example indices; ``next_batch()`` -> (n,) int64 indices into the data."""

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, bucket_batches: int = 50):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or self.lengths.shape[0] == 0:
            raise ConfigError(f"lengths: expected one length per example (at least one), received shape "
                              f"{self.lengths.shape}")
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.bucket_batches = check_positive_int("bucket_batches", bucket_batches)
        self.seed = int(seed)
        self.position = 0
        self._epoch, self._batches = None, None

    @property
    def num_examples(self) -> int:
        return int(self.lengths.shape[0])

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Every batch of epoch ``epoch``, in the order they are served."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_examples)
        span = self.batch_size * self.bucket_batches
        batches = []
        for begin in range(0, order.shape[0], span):
            bucket = order[begin:begin + span]
            bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches.extend(bucket[k:k + self.batch_size] for k in range(0, bucket.shape[0], self.batch_size))
        return [batches[k] for k in rng.permutation(len(batches))]

    def __len__(self) -> int:
        """Batches per epoch."""
        span = self.batch_size * self.bucket_batches
        full, rest = divmod(self.num_examples, span)
        return full * self.bucket_batches + math.ceil(rest / self.batch_size)

    def next_batch(self) -> np.ndarray:
        epoch, index = divmod(self.position, len(self))
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self.epoch_batches(epoch)
        self.position += 1
        return self._batches[index]

    def state_dict(self) -> dict:
        return {"position": self.position, "batch_size": self.batch_size, "num_examples": self.num_examples,
                "seed": self.seed, "bucket_batches": self.bucket_batches}

    def load_state_dict(self, state: dict) -> None:
        for key in ("batch_size", "num_examples", "seed", "bucket_batches"):
            if state.get(key) != getattr(self, key):
                raise ConfigError(f"state[{key!r}]: expected {getattr(self, key)} (this batcher's), "
                                  f"received {state.get(key)!r}; the saved position belongs to other data")
        position = state.get("position")
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ConfigError(f"state['position']: expected an integer >= 0, received {position!r}")
        self.position = position


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Host id sequences -> (ids (T, B) int64, time-major, padded with ``pad_id``; lengths (B,))."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if lengths.shape[0] == 0 or np.any(lengths < 1):
        raise ConfigError(f"sequences: expected at least one sequence, each of at least one token, "
                          f"received lengths {lengths.tolist()[:10]}")
    ids = np.full((int(lengths.max()), lengths.shape[0]), pad_id, dtype=np.int64)
    for b, seq in enumerate(sequences):
        ids[:len(seq), b] = seq
    return ids, lengths
