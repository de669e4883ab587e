"""Tokenizers: text <-> 1-D int64 id arrays, with one interface for three kinds.

- ``CharTokenizer``: one id per Unicode character seen while fitting, "<UNK>" for the rest.
- ``ByteTokenizer``: one id per byte of the UTF-8 encoding; fixed 256 symbols, nothing unknown.
- ``WordTokenizer``: the most frequent words and punctuation marks, "<UNK>", and "<EOS>" at
  each line end.

Every tokenizer has ``kind``, ``vocab_size``, ``unk_id``, ``eos_id``, ``encode(text) -> ids``
(ids: (N,) int64), ``decode(ids) -> str``, ``to_json() -> dict`` and ``fingerprint()``.
``tokenizer_from_json`` rebuilds one from ``to_json()``'s dict; ``make_tokenizer`` fits one
by kind name.

Fitting streams: ``fit`` takes an iterable of text chunks and keeps only counts, never the
corpus. Chunks must not split a word in two (``corpus.iter_text_chunks`` guarantees this).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from seqnet.errors import check_positive_int
from seqnet.errors import ConfigError

UNK = "<UNK>"
EOS = "<EOS>"
KINDS = ("char", "byte", "word")

# A word is a run of letters/digits/underscore; every other non-space character is a token
# of its own; "\n" is matched so that it can become <EOS>.
_WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\n")


def _as_chunks(texts: Iterable[str] | str) -> Iterable[str]:
    """A lone string is one chunk, not an iterable of one-character chunks."""
    return [texts] if isinstance(texts, str) else texts


class Tokenizer:
    """What the three tokenizers share: the fingerprint and the id check of ``decode``."""

    kind: str
    vocab_size: int
    unk_id: int | None
    eos_id: int | None
    vocabulary: tuple[str, ...] | None  # None where the ids are not looked up (bytes)

    def to_json(self) -> dict:
        """JSON-serialisable record of the tokenizer; ``tokenizer_from_json`` reads it back."""
        vocabulary = None if self.vocabulary is None else list(self.vocabulary)
        return {"kind": self.kind, "vocab_size": self.vocab_size, "vocabulary": vocabulary}

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of ``to_json()``: equal iff the ids mean the same."""
        canonical = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    def _checked_ids(self, ids) -> np.ndarray:
        """ids: (N,) of integers in [0, vocab_size) -> (N,) int64, else ConfigError."""
        array = np.asarray(ids)
        if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
            raise ConfigError(
                f"ids: expected a 1-D sequence of integers, got shape {array.shape} "
                f"and dtype {array.dtype}"
            )
        array = array.astype(np.int64)
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ConfigError(
                f"ids: expected values in [0, {self.vocab_size}) for this {self.kind} "
                f"tokenizer, got values in [{array.min()}, {array.max()}]"
            )
        return array

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class CharTokenizer(Tokenizer):
    """One id per character: id 0 is "<UNK>", ids 1.. are the fitted characters in sorted order.

    A character never seen while fitting encodes to ``unk_id`` (0), and ``decode`` writes
    id 0 as the text "<UNK>", so ``decode(encode(text)) == text`` only for seen characters.
    """

    kind = "char"
    unk_id = 0
    eos_id = None

    def __init__(self, vocabulary: Sequence[str]):
        vocabulary = list(vocabulary)
        characters = vocabulary[1:]
        if not vocabulary or vocabulary[0] != UNK:
            raise ConfigError(f"vocabulary: expected {UNK!r} at id 0, got {vocabulary[:1]!r}")
        bad = [c for c in characters if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise ConfigError(
                f"vocabulary: expected single characters after {UNK!r}, got {bad[:3]!r}"
            )
        if characters != sorted(set(characters)):
            raise ConfigError(
                "vocabulary: expected the characters sorted and without repeats, "
                f"got {''.join(characters[:20])!r}..."
            )
        self.vocabulary = tuple(vocabulary)
        self.vocab_size = len(vocabulary)
        # Sorted code points let encode find every id with one vectorised searchsorted.
        self._code_points = np.array([ord(c) for c in characters], dtype=np.int64)

    @classmethod
    def fit(cls, texts: Iterable[str] | str) -> CharTokenizer:
        """Vocabulary = "<UNK>" + the sorted set of characters in the text chunks."""
        seen: set[str] = set()
        for chunk in _as_chunks(texts):
            seen.update(chunk)
        return cls([UNK, *sorted(seen)])

    def encode(self, text: str) -> np.ndarray:
        """text of N characters -> ids: (N,) int64; unseen characters -> 0."""
        code_points = np.frombuffer(
            text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4"
        ).astype(np.int64)
        if self._code_points.size == 0:
            return np.zeros(code_points.shape, dtype=np.int64)
        slot = np.searchsorted(self._code_points, code_points)
        slot_clipped = np.minimum(slot, self._code_points.size - 1)
        known = self._code_points[slot_clipped] == code_points
        return np.where(known, slot_clipped + 1, self.unk_id).astype(np.int64)

    def decode(self, ids) -> str:
        """ids: (N,) -> the N symbols joined (id 0 becomes the text "<UNK>")."""
        return "".join(self.vocabulary[i] for i in self._checked_ids(ids).tolist())


class ByteTokenizer(Tokenizer):
    """One id per byte (0..255) of the UTF-8 encoding: nothing is unknown, no fitting.

    ``encode`` also takes raw ``bytes``, so files that are not valid UTF-8 can be tokenized.
    ``decode`` decodes with errors="replace": an invalid byte sequence becomes U+FFFD.
    """

    kind = "byte"
    vocab_size = 256
    vocabulary = None
    unk_id = None
    eos_id = None

    def encode(self, text: str | bytes) -> np.ndarray:
        """text (str, UTF-8 encoded first, or bytes) of N bytes -> ids: (N,) int64."""
        data = text.encode("utf-8", errors="surrogateescape") if isinstance(text, str) else text
        return np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        return bytes(self._checked_ids(ids).astype(np.uint8)).decode("utf-8", errors="replace")



class WordTokenizer(Tokenizer):
    """Words and punctuation marks: id 0 "<UNK>", id 1 "<EOS>", then words by falling frequency.

    Tokens come from the regex ``\\w+|[^\\w\\s]``: runs of letters/digits, and every other
    non-space character alone ("don't." -> "don", "'", "t", "."). Each "\\n" encodes to <EOS>.
    ``decode`` joins a line's tokens with single spaces and turns <EOS> into "\\n", so spacing
    is normalised: ``decode(encode("a, b")) == "a , b"``.
    """

    kind = "word"
    unk_id = 0
    eos_id = 1

    def __init__(self, vocabulary: Sequence[str]):
        vocabulary = list(vocabulary)
        if vocabulary[:2] != [UNK, EOS]:
            raise ConfigError(
                f"vocabulary: expected {UNK!r}, {EOS!r} at ids 0 and 1, got {vocabulary[:2]!r}"
            )
        words = vocabulary[2:]
        bad = [w for w in words if not _is_word(w)]
        if bad:
            raise ConfigError(f"vocabulary: expected words without spaces, got {bad[:3]!r}")
        if len(set(vocabulary)) != len(vocabulary):
            repeated = [w for w, n in Counter(vocabulary).items() if n > 1]
            raise ConfigError(f"vocabulary: expected no repeats, got repeated {repeated[:3]!r}")
        self.vocabulary = tuple(vocabulary)
        self.vocab_size = len(vocabulary)
        self._ids = {word: i for i, word in enumerate(vocabulary)}
        self._ids["\n"] = self.eos_id

    @classmethod
    def fit(cls, texts: Iterable[str] | str, max_words: int = 10_000) -> WordTokenizer:
        """Keep the ``max_words`` most frequent tokens; ties go to the smaller string."""
        check_positive_int("max_words", max_words)
        counts: Counter[str] = Counter()
        for chunk in _as_chunks(texts):
            counts.update(_WORD_PATTERN.findall(chunk))
        counts.pop("\n", None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([UNK, EOS, *(word for word, _ in ranked[:max_words])])

    def encode(self, text: str) -> np.ndarray:
        """text -> ids: (N,) int64 for its N tokens; unknown words -> 0, "\\n" -> 1."""
        ids = [self._ids.get(token, self.unk_id) for token in _WORD_PATTERN.findall(text)]
        return np.array(ids, dtype=np.int64)

    def decode(self, ids) -> str:
        lines: list[list[str]] = [[]]
        for i in self._checked_ids(ids).tolist():
            if i == self.eos_id:
                lines.append([])
            else:
                lines[-1].append(self.vocabulary[i])
        return "\n".join(" ".join(line) for line in lines)


def _is_word(symbol) -> bool:
    """True for one token of ``_WORD_PATTERN`` other than the newline."""
    return isinstance(symbol, str) and symbol != "\n" and bool(_WORD_PATTERN.fullmatch(symbol))



def _check_kind(kind) -> None:
    if kind not in KINDS:
        raise ConfigError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def make_tokenizer(
    kind: str, texts: Iterable[str] | str = (), max_words: int = 10_000
) -> Tokenizer:
    """Fit a tokenizer of ``kind`` ("char" | "byte" | "word") on ``texts`` (unused for byte)."""
    _check_kind(kind)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(texts)
    return WordTokenizer.fit(texts, max_words=max_words)


def tokenizer_from_json(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from ``to_json()``'s dict; a malformed dict raises ConfigError."""
    if not isinstance(d, dict):
        raise ConfigError(f"tokenizer: expected a dict from to_json(), got {type(d).__name__}")
    kind = d.get("kind")
    _check_kind(kind)
    if kind == "byte":
        tokenizer: Tokenizer = ByteTokenizer()
    else:
        vocabulary = d.get("vocabulary")
        if not isinstance(vocabulary, list) or not all(isinstance(s, str) for s in vocabulary):
            raise ConfigError(
                f"tokenizer['vocabulary']: expected a list of strings for a {kind} tokenizer, "
                f"got {type(vocabulary).__name__}"
            )
        tokenizer = CharTokenizer(vocabulary) if kind == "char" else WordTokenizer(vocabulary)
    if "vocab_size" in d and d["vocab_size"] != tokenizer.vocab_size:
        raise ConfigError(
            f"tokenizer['vocab_size']: expected {tokenizer.vocab_size} (the vocabulary's "
            f"length), got {d['vocab_size']!r}"
        )
    return tokenizer
