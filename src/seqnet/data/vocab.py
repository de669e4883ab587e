"""Vocabularies of sequence-to-sequence data: char or word tokens, with <PAD>, <UNK>, <BOS>, <EOS>.

Ids 0-3 are the specials (:data:`PAD_ID`, :data:`UNK_ID`, :data:`BOS_ID`, :data:`EOS_ID`) on
every vocabulary, so a source and a target vocabulary agree on them; tokens follow, most
frequent first (ties by the token's text). "char" tokens are the characters of a text;
"word" tokens are its whitespace-separated words, and decoding joins them with single
spaces. ``encode`` adds no specials; a model adds <BOS> and <EOS> where it needs them.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ConfigError

PAD, UNK, BOS, EOS = "<PAD>", "<UNK>", "<BOS>", "<EOS>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
VOCAB_KINDS = ("char", "word")


class Vocabulary:
    """Token <-> id for one side (or both sides, shared) of a parallel corpus."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, kind: str, tokens: Sequence[str]):
        if kind not in VOCAB_KINDS:
            raise ConfigError(f"kind: expected one of {', '.join(VOCAB_KINDS)}, received {kind!r}")
        tokens = list(tokens)
        bad = [t for t in tokens if not isinstance(t, str) or not t or t in SPECIALS
               or (kind == "char" and len(t) != 1) or (kind == "word" and len(t.split()) != 1)]
        if bad:
            raise ConfigError(f"tokens: expected distinct {kind} tokens other than the specials, received {bad[:3]!r}")
        if len(set(tokens)) != len(tokens):
            raise ConfigError("tokens: expected no repeats")
        self.kind = kind
        self.symbols = SPECIALS + tuple(tokens)
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def split(self, text: str) -> list[str]:
        return list(text) if self.kind == "char" else text.split()

    @classmethod
    def fit(cls, kind: str, texts: Iterable[str], max_size: int | None = None) -> "Vocabulary":
        """The tokens of ``texts`` (the ``max_size`` most frequent, when given), most frequent first."""
        if kind not in VOCAB_KINDS:
            raise ConfigError(f"kind: expected one of {', '.join(VOCAB_KINDS)}, received {kind!r}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(list(text) if kind == "char" else text.split())
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if kind == "char":
            ranked = [(t, n) for t, n in ranked if not t.isspace() or t == " "]   # tabs/newlines are separators
        return cls(kind, [t for t, _ in ranked[:max_size]])

    def encode(self, text: str) -> np.ndarray:
        """text -> (N,) int64 ids of its tokens; unseen tokens -> <UNK>."""
        return np.array([self._ids.get(t, UNK_ID) for t in self.split(text)], dtype=np.int64)

    def decode(self, ids) -> str:
        """ids -> text (the specials appear by name)."""
        symbols = [self.symbols[int(i)] for i in np.asarray(ids).reshape(-1)]
        return "".join(symbols) if self.kind == "char" else " ".join(symbols)

    def tokens_of(self, ids) -> list[str]:
        return [self.symbols[int(i)] for i in np.asarray(ids).reshape(-1)]

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.symbols[len(SPECIALS):])}

    @classmethod
    def from_json(cls, data: dict, where: str = "vocabulary") -> "Vocabulary":
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ConfigError(f"{where}: expected {{'kind': ..., 'tokens': [...]}}, received {type(data).__name__}")
        return cls(data.get("kind"), data["tokens"])

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.kind == other.kind and self.symbols == other.symbols

    def __repr__(self) -> str:
        return f"Vocabulary({self.kind!r}, size={self.vocab_size})"
