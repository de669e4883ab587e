"""Symbol <-> id maps fitted on training data: token vocabularies (with <UNK>) and label sets (closed)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataFileError

UNK = "<UNK>"


class Vocabulary:
    """Tokens (any strings: words, characters) -> ids; id 0 is <UNK>, the rest by falling frequency."""

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        if not symbols or symbols[0] != UNK or len(set(symbols)) != len(symbols):
            raise ConfigError(f"vocabulary: expected {UNK!r} first and no repeats, received {symbols[:5]!r}...")
        self.symbols = tuple(symbols)
        self._ids = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[str]], max_size: int | None = None) -> "Vocabulary":
        counts: Counter[str] = Counter()
        for tokens in sequences:
            counts.update(tokens)
        counts.pop(UNK, None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([UNK, *(s for s, _ in ranked[:max_size])])

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        return np.array([self._ids.get(t, 0) for t in tokens], dtype=np.int64)

    def to_json(self) -> dict:
        return {"symbols": list(self.symbols)}

    @classmethod
    def from_json(cls, data) -> "Vocabulary":
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise ConfigError(f"vocabulary: expected {{'symbols': [...]}}, received {type(data).__name__}")
        return cls(data["symbols"])


class LabelSet:
    """A closed set of names (classes, tags, conditions) -> ids 0..n-1, in sorted order.

    ``what`` names them in messages ("label", "tag", "condition").
    """

    def __init__(self, names: Sequence[str], what: str = "label"):
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"{what}s: expected distinct names, received {names[:5]!r}")
        self.names, self.what = tuple(names), what
        self._ids = {n: i for i, n in enumerate(names)}

    @classmethod
    def fit(cls, names: Iterable[str], what: str = "label") -> "LabelSet":
        return cls(sorted(set(names)), what)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._ids

    def id(self, name: str, where: str = "") -> int:
        """The id of ``name``; a DataFileError naming ``where`` (file:line) if training never saw it."""
        if name not in self._ids:
            known = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
            raise DataFileError(f"{where + ': ' if where else ''}{self.what} {name!r} never seen in training "
                                f"(known: {known})")
        return self._ids[name]

    def to_json(self) -> list[str]:
        return list(self.names)

    @classmethod
    def from_json(cls, data, what: str = "label") -> "LabelSet":
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise ConfigError(f"{what}s: expected a list of names, received {type(data).__name__}")
        return cls(data, what)
