"""Batches for truncated BPTT: the id array as ``batch_size`` parallel streams.

With N ids, B streams and T steps per batch, stream b is ``ids[b*L : (b+1)*L]`` with
L = N // B (the last N - B*L ids are dropped). Batch k of an epoch holds, for every stream,
inputs ``stream[k*T : k*T + T]`` and targets ``stream[k*T + 1 : k*T + T + 1]``, so batch k+1
starts where batch k stopped and a model may carry its hidden state across batches.

One epoch is (L - 1) // T batches: every stream's first ((L - 1) // T) * T ids appear exactly
once as inputs; the ragged rest (< T + 1 ids per stream) is dropped. Only the batch being
built is read, so ``ids`` may be a memmap larger than memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from seqnet.errors import check_positive_int
from seqnet.errors import ConfigError, CorpusError, DTypeError, ShapeError

Batch = tuple[np.ndarray, np.ndarray]


class StreamBatcher:
    """Endless time-major batches ``(inputs, targets)``, each (seq_len, batch_size) int64.

    ``next_batch()`` cycles epochs forever; iterating yields the rest of the current epoch.
    ``position`` counts batches taken since batch 0 of epoch 0; ``start`` sets it, and
    ``state_dict()`` / ``load_state_dict()`` save and restore it so a resumed run gets
    exactly the batch it would have got. ``select_streams(start, stop)`` makes every batch
    hold (and read) only those streams of the layout (one process's share).
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, *, start: int = 0):
        check_positive_int("batch_size", batch_size)
        check_positive_int("seq_len", seq_len)
        _check_position("start", start)
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        self.num_tokens = len(_checked_ids(ids))
        self.stream_len = self.num_tokens // self.batch_size
        self._batches_per_epoch = max(self.stream_len - 1, 0) // self.seq_len
        if self._batches_per_epoch == 0:
            raise CorpusError(_too_small_message(self.num_tokens, self.batch_size, self.seq_len))
        # (B, L) view: a reshape of a slice, so a memmap is not read here.
        self._streams = ids[: self.batch_size * self.stream_len].reshape(
            self.batch_size, self.stream_len
        )
        self.position = int(start)
        self._selected = slice(0, self.batch_size)

    def select_streams(self, start: int, stop: int) -> None:
        """Serve only streams [start, stop) of the ``batch_size`` (the layout stays that of all)."""
        if not 0 <= start < stop <= self.batch_size:
            raise ConfigError(f"streams: expected 0 <= start < stop <= {self.batch_size}, received [{start}, {stop})")
        self._selected = slice(int(start), int(stop))

    def __len__(self) -> int:
        """Batches per epoch: (L - 1) // seq_len."""
        return self._batches_per_epoch

    @property
    def epoch(self) -> int:
        """Index of the epoch the next batch belongs to."""
        return self.position // len(self)

    def batch_at(self, index: int) -> Batch:
        """Batch ``index`` (0 <= index < len(self)) of an epoch (the selected streams)."""
        return _window(self._streams[self._selected], index * self.seq_len, self.seq_len)

    def next_batch(self) -> Batch:
        """The batch at ``position``, then ``position += 1`` (wrapping into the next epoch)."""
        batch = self.batch_at(self.position % len(self))
        self.position += 1
        return batch

    def __iter__(self) -> Iterator[Batch]:
        """The remaining batches of the current epoch (all of them from a fresh epoch)."""
        for _ in range(len(self) - self.position % len(self)):
            yield self.next_batch()

    def state_dict(self) -> dict:
        """JSON-serialisable: the position, and the layout it is only valid for."""
        return {
            "position": self.position,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "num_tokens": self.num_tokens,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state["position"]``; the batch layout must match this batcher's."""
        for name in ("batch_size", "seq_len"):
            if state.get(name) != getattr(self, name):
                raise ConfigError(
                    f"state[{name!r}]: expected {getattr(self, name)} (this batcher's), "
                    f"got {state.get(name)!r}"
                )
        if state.get("num_tokens") != self.num_tokens:
            raise CorpusError(
                f"state['num_tokens']: expected {self.num_tokens} (this batcher's data), got "
                f"{state.get('num_tokens')!r}; the saved position belongs to other data"
            )
        _check_position("state['position']", state.get("position"))
        self.position = int(state["position"])


def iter_eval_batches(ids: np.ndarray, batch_size: int, seq_len: int) -> Iterator[Batch]:
    """Walk ``ids`` once in the same stream layout, including a shorter last batch.

    Yields (inputs, targets), each (T, batch_size) int64 with T = seq_len except on the last
    batch, where T = (L - 1) % seq_len when that is not 0. Covers every stream's first L - 1
    ids as inputs; deterministic. CorpusError if a stream would hold fewer than 2 ids.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    num_tokens = len(_checked_ids(ids))
    stream_len = num_tokens // batch_size
    if stream_len < 2:
        raise CorpusError(
            f"ids: expected at least 2 tokens per stream for evaluation with "
            f"batch_size={batch_size}, got {num_tokens} tokens in all; the largest "
            f"batch_size for them is {num_tokens // 2}"
        )
    streams = ids[: batch_size * stream_len].reshape(batch_size, stream_len)
    return (
        _window(streams, begin, min(seq_len, stream_len - 1 - begin))
        for begin in range(0, stream_len - 1, seq_len)
    )


def _window(streams: np.ndarray, begin: int, length: int) -> Batch:
    """streams: (B, L) -> inputs, targets: (length, B) int64 for times begin..begin+length-1."""
    block = np.asarray(streams[:, begin : begin + length + 1], dtype=np.int64)
    return np.ascontiguousarray(block[:, :-1].T), np.ascontiguousarray(block[:, 1:].T)


def _checked_ids(ids) -> np.ndarray:
    if getattr(ids, "ndim", None) != 1:
        raise ShapeError(f"ids: expected a 1-D array, got shape {getattr(ids, 'shape', None)}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise DTypeError(f"ids: expected an integer dtype, got {ids.dtype}")
    return ids


def _check_position(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name}: expected an integer >= 0, got {value!r}")


def _too_small_message(num_tokens: int, batch_size: int, seq_len: int) -> str:
    max_seq_len = num_tokens // batch_size - 1
    max_batch_size = num_tokens // (seq_len + 1)
    limits = [
        f"with batch_size={batch_size} the largest seq_len is {max_seq_len}"
        if max_seq_len >= 1
        else f"no seq_len fits batch_size={batch_size}",
        f"with seq_len={seq_len} the largest batch_size is {max_batch_size}"
        if max_batch_size >= 1
        else f"no batch_size fits seq_len={seq_len}",
    ]
    return (
        f"corpus too small for batch_size={batch_size}, seq_len={seq_len}: it has "
        f"{num_tokens} tokens, so each of the {batch_size} streams gets "
        f"{num_tokens // batch_size}, but a batch needs seq_len + 1 = {seq_len + 1} per "
        f"stream; {'; '.join(limits)}"
    )
