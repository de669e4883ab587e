"""Symbol <-> id maps fitted on training data: token vocabularies and closed label sets.

A :class:`Vocabulary` puts its special symbols first (ids 0, 1, ...), then the tokens seen in
training, most frequent first (ties by the token's text). Its ``kind`` says how a text is
cut into tokens: "char" (its characters), "word" (its whitespace-separated words; decoding
joins them with single spaces), or None for data that comes as token lists (CoNLL
columns). A token never seen in training encodes to <UNK>; ``encode`` adds no other special,
a model adds <BOS> and <EOS> where it needs them. The tagger's vocabularies have the one
special <UNK> (:data:`TAGGING_SPECIALS`); a translation model's have <PAD>, <UNK>, <BOS>,
<EOS> at ids 0-3 on both sides (:data:`SEQUENCE_SPECIALS`, so source and target agree).

A :class:`LabelSet` is a closed set of names (classes, tags, conditions): a name never seen
in training is an error naming the file and line where it appears.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataFileError, check_not_one_text

PAD, UNK, BOS, EOS = "<PAD>", "<UNK>", "<BOS>", "<EOS>"
TAGGING_SPECIALS = (UNK,)
SEQUENCE_SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)                 # in SEQUENCE_SPECIALS
VOCAB_KINDS = ("char", "word")


def _check_kind(kind) -> None:
    if kind is not None and kind not in VOCAB_KINDS:
        raise ConfigError(f"kind: expected one of {', '.join(VOCAB_KINDS)} (or none: token lists), received {kind!r}")


class Vocabulary:
    """Tokens <-> ids: ``specials`` first, then ``tokens``; see the module docstring."""

    def __init__(self, tokens: Sequence[str], *, kind: str | None = None, specials: Sequence[str] = TAGGING_SPECIALS):
        _check_kind(kind)
        check_not_one_text("tokens", tokens, "a list of tokens", "token")
        specials, tokens = tuple(specials), list(tokens)
        if UNK not in specials or len(set(specials)) != len(specials):
            raise ConfigError(f"specials: expected distinct names including {UNK!r}, received {list(specials)!r}")
        bad = [t for t in tokens if not isinstance(t, str) or not t or t in specials
               or (kind == "char" and len(t) != 1) or (kind == "word" and len(t.split()) != 1)]
        if bad:
            what = f"{kind} tokens" if kind else "tokens"
            raise ConfigError(f"tokens: expected distinct {what} other than the specials, received {bad[:3]!r}")
        if len(set(tokens)) != len(tokens):
            raise ConfigError("tokens: expected no repeats")
        self.kind, self.specials = kind, specials
        self.symbols = specials + tuple(tokens)
        self._ids = {s: i for i, s in enumerate(self.symbols)}
        self.unk_id = self._ids[UNK]
        self.pad_id, self.bos_id, self.eos_id = (self._ids.get(s) for s in (PAD, BOS, EOS))

    @classmethod
    def fit(cls, data: Iterable, *, kind: str | None = None, specials: Sequence[str] = TAGGING_SPECIALS,
            max_size: int | None = None) -> "Vocabulary":
        """The tokens of ``data`` (texts when ``kind`` is given, else token lists), the ``max_size``
        most frequent when given, most frequent first."""
        _check_kind(kind)
        check_not_one_text("data", data, "a list of texts" if kind else "a list of token lists")
        counts: Counter[str] = Counter()
        for index, item in enumerate(data):
            if not kind and isinstance(item, str):
                raise ConfigError(f"data[{index}]: expected a token list (a vocabulary without a kind), received a "
                                  "str; pass kind='char' or kind='word' to fit texts")
            counts.update(_split(item, kind) if kind else item)
        for special in specials:
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda entry: (-entry[1], entry[0]))
        if kind == "char":
            ranked = [(t, n) for t, n in ranked if not t.isspace() or t == " "]   # tabs/newlines are separators
        return cls([t for t, _ in ranked[:max_size]], kind=kind, specials=specials)

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def split(self, text: str) -> list[str]:
        """The tokens of a text (kind "char" or "word")."""
        if self.kind is None:
            raise ConfigError("text: this vocabulary takes token lists, not text")
        return _split(text, self.kind)

    def encode(self, data) -> np.ndarray:
        """A text (kind "char" or "word") or a token list -> (N,) int64 ids; unseen tokens -> <UNK>."""
        tokens = self.split(data) if isinstance(data, str) else data          # kind None: a text is an error
        return np.array([self._ids.get(t, self.unk_id) for t in tokens], dtype=np.int64)

    def tokens_of(self, ids) -> list[str]:
        return [self.symbols[int(i)] for i in np.asarray(ids).reshape(-1)]

    def decode(self, ids) -> str:
        """ids -> text (the specials appear by name)."""
        tokens = self.tokens_of(ids)
        return "".join(tokens) if self.kind == "char" else " ".join(tokens)

    def to_json(self) -> dict:
        return {"kind": self.kind, "specials": list(self.specials), "tokens": list(self.symbols[len(self.specials):])}

    @classmethod
    def from_json(cls, data, where: str = "vocabulary") -> "Vocabulary":
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list) \
                or not isinstance(data.get("specials"), list):
            raise ConfigError(f"{where}: expected {{'kind': ..., 'specials': [...], 'tokens': [...]}}, received "
                              f"{type(data).__name__}")
        return cls(data["tokens"], kind=data.get("kind"), specials=data["specials"])

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and (self.kind, self.symbols) == (other.kind, other.symbols)

    def __repr__(self) -> str:
        return f"Vocabulary({self.kind!r}, size={self.vocab_size})"


def _split(text: str, kind: str) -> list[str]:
    return list(text) if kind == "char" else text.split()


class LabelSet:
    """A closed set of names (classes, tags, conditions) -> ids 0..n-1, in sorted order.

    ``what`` names them in messages ("label", "tag", "condition").
    """

    def __init__(self, names: Sequence[str], what: str = "label"):
        check_not_one_text(f"{what}s", names, f"a list of {what} names", "name")
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"{what}s: expected distinct names, received {names[:5]!r}")
        self.names, self.what = tuple(names), what
        self._ids = {n: i for i, n in enumerate(names)}

    @classmethod
    def fit(cls, names: Iterable[str], what: str = "label") -> "LabelSet":
        check_not_one_text(f"{what}s", names, f"a list of {what} names", "name")
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
