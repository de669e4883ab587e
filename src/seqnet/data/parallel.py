"""Parallel data for sequence-to-sequence tasks: reading pairs, encoding them, batching them.

Two formats: JSON lines (a ``.jsonl``, ``.json`` or ``.ndjson`` file, or any but ``.tsv`` whose
first line starts with ``{``), one object ``{"source": "...", "target": "..."}`` per line;
else TSV, one ``source<TAB>target`` pair per line. Blank lines are skipped. Every problem is reported
with the file and line number.

Encoded pairs live as two ragged id sets (flat ids + offsets, so they save as plain arrays
in a run directory). :class:`PairBatcher` shuffles them anew each epoch from a seed and
pads each batch: source (S, B) with its lengths, target input ``<BOS> y`` and output
``y <EOS>`` (T, B) with the mask of real target tokens.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorpusError
from .lines import JSON_SUFFIXES, read_lines
from .vocabulary import BOS_ID, EOS_ID, PAD_ID, Vocabulary



def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The (source, target) pairs of a TSV or JSON-lines file (see the module docstring)."""
    what = "parallel data: TSV source<TAB>target or JSON lines"
    if not str(path).strip():                            # Path("") is the current directory
        raise CorpusError(f"data file: expected {what}, received an empty path")
    path = Path(path)
    if not path.exists() or path.is_dir():
        raise CorpusError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'} (expected {what})")
    lines = [(number, line) for number, line in read_lines(path) if line.strip()]
    suffix = path.suffix.lower()
    json_lines = suffix in JSON_SUFFIXES or (suffix != ".tsv" and bool(lines) and lines[0][1].lstrip()[0] == "{")
    parse = _json_pair if json_lines else _tsv_pair
    pairs = [parse(line, f"{path}:{number}") for number, line in lines]
    if not pairs:
        raise CorpusError(f"{path}: holds no pairs")
    return pairs


def _tsv_pair(line: str, where: str) -> tuple[str, str]:
    tabs = line.count("\t")
    if tabs != 1:
        found = "no tab" if tabs == 0 else f"{tabs} tabs"
        hint = " (plain text? a language model reads it: --task lm --corpus FILE)" if tabs == 0 else ""
        raise CorpusError(f"{where}: expected one pair as source<TAB>target, found {found}{hint}")
    source, target = line.split("\t")
    return _check_sides(source, target, where)


def _json_pair(line: str, where: str) -> tuple[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise CorpusError(f"{where}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("source", "target")):
        raise CorpusError(f'{where}: expected an object {{"source": "...", "target": "..."}} with two strings, '
                          f"received {line.strip()[:60]!r}")
    return _check_sides(record["source"], record["target"], where)


def _check_sides(source: str, target: str, where: str) -> tuple[str, str]:
    empty = [side for side, text in (("source", source), ("target", target)) if not text.strip()]
    if empty:
        raise CorpusError(f"{where}: empty {' and '.join(empty)}; every pair needs both sides")
    return source, target


@dataclass
class EncodedPairs:
    """Token ids of N pairs: side k of pair n is ``ids[offsets[n]:offsets[n + 1]]``."""

    src: np.ndarray
    src_offsets: np.ndarray
    tgt: np.ndarray
    tgt_offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.src_offsets.shape[0]) - 1

    def source(self, n: int) -> np.ndarray:
        return self.src[self.src_offsets[n]:self.src_offsets[n + 1]]

    def target(self, n: int) -> np.ndarray:
        return self.tgt[self.tgt_offsets[n]:self.tgt_offsets[n + 1]]

    def subset(self, indices) -> "EncodedPairs":
        return _pack([self.source(int(n)) for n in indices], [self.target(int(n)) for n in indices])

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}src": self.src, f"{prefix}src_offsets": self.src_offsets,
                f"{prefix}tgt": self.tgt, f"{prefix}tgt_offsets": self.tgt_offsets}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> "EncodedPairs":
        return cls(*(arrays[f"{prefix}{k}"] for k in ("src", "src_offsets", "tgt", "tgt_offsets")))


def _pack(sources: list[np.ndarray], targets: list[np.ndarray]) -> EncodedPairs:
    def ragged(rows):
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r) for r in rows])
        flat = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
        return flat, offsets
    return EncodedPairs(*ragged(sources), *ragged(targets))


def encode_pairs(pairs: list[tuple[str, str]], src_vocab: Vocabulary, tgt_vocab: Vocabulary, *, where: str,
                 max_source_len: int | None = None, max_target_len: int | None = None) -> EncodedPairs:
    """Encode every pair; a side with no token, or longer than its maximum, is an error naming the pair."""
    sources, targets = [], []
    for n, (source, target) in enumerate(pairs, start=1):
        src, tgt = src_vocab.encode(source), tgt_vocab.encode(target)
        for side, ids, limit, flag in (("source", src, max_source_len, "--max-source-len"),
                                       ("target", tgt, max_target_len, "--max-target-len")):
            if ids.shape[0] == 0:
                raise CorpusError(f"{where}, pair {n}: the {side} has no {src_vocab.kind} token")
            if limit is not None and ids.shape[0] > limit:
                raise CorpusError(f"{where}, pair {n}: the {side} has {ids.shape[0]} tokens, more than {flag} "
                                  f"{limit}; raise {flag} (or drop the pair)")
        sources.append(src)
        targets.append(tgt)
    return _pack(sources, targets)


def pad_batch(pairs: EncodedPairs, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(src (S, B), src_lengths (B,), tgt_in (T, B), tgt_out (T, B), mask (T, B)) of pairs ``indices``."""
    sources = [pairs.source(int(n)) for n in indices]
    targets = [pairs.target(int(n)) for n in indices]
    lengths = np.array([len(s) for s in sources], dtype=np.int64)
    src = np.full((int(lengths.max()), len(sources)), PAD_ID, dtype=np.int64)
    steps = max(len(t) for t in targets) + 1
    tgt_in = np.full((steps, len(targets)), PAD_ID, dtype=np.int64)
    tgt_out = np.full((steps, len(targets)), PAD_ID, dtype=np.int64)
    for b, (s, t) in enumerate(zip(sources, targets)):
        src[:len(s), b] = s
        tgt_in[0, b] = BOS_ID
        tgt_in[1:len(t) + 1, b] = t
        tgt_out[:len(t), b] = t
        tgt_out[len(t), b] = EOS_ID
    mask = np.arange(steps)[:, None] <= np.array([len(t) for t in targets])[None, :]
    return src, lengths, tgt_in, tgt_out, mask


class PairBatcher:
    """Batches of ``batch`` pair indices: a fresh seeded permutation per epoch, taken in order.

    ``state_dict()`` (epoch, position) and the seed fix every later batch, so a resumed run
    reads the same batches. The last partial batch of an epoch is dropped (each epoch's
    batches are full).
    """

    def __init__(self, count: int, batch: int, seed: int):
        if count < batch:
            raise CorpusError(f"--batch: expected at most the {count} training pairs, received {batch}")
        self.count, self.batch, self.seed = count, batch, seed
        self.epoch = self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.count)

    def next_indices(self) -> np.ndarray:
        if self.position + self.batch > self.count:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        indices = self._order[self.position:self.position + self.batch]
        self.position += self.batch
        return indices

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
