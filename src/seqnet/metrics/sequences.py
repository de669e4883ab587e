"""Scores of output sequences against references, over a corpus (host-side, pure Python).

- exact match: the fraction of outputs equal to their reference;
- token accuracy: tokens equal to the reference's at the same position, over the longer of
  the two (so missing and extra tokens both count as errors), summed over the corpus;
- character error rate: Levenshtein edits between output and reference texts over the
  references' characters (may exceed 1);
- corpus BLEU (Papineni et al. 2002): clipped 1-4-gram precisions summed over the corpus,
  their geometric mean times the brevity penalty exp(1 - r/c) when the outputs are shorter
  (c < r), in percent; 0 when some n-gram order has no match (no smoothing).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ..errors import ConfigError


def exact_match(outputs: Sequence, references: Sequence) -> float:
    _check(outputs, references)
    return sum(list(o) == list(r) for o, r in zip(outputs, references)) / len(references)


def token_accuracy(outputs: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    _check(outputs, references)
    matched = total = 0
    for o, r in zip(outputs, references):
        matched += sum(a == b for a, b in zip(o, r))
        total += max(len(o), len(r))
    return matched / total if total else 1.0


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, each costing 1."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def char_error_rate(outputs: Sequence[str], references: Sequence[str]) -> float:
    _check(outputs, references)
    chars = sum(len(r) for r in references)
    return sum(edit_distance(o, r) for o, r in zip(outputs, references)) / max(chars, 1)


def corpus_bleu(outputs: Sequence[Sequence[str]], references: Sequence[Sequence[str]], max_order: int = 4) -> float:
    """Corpus BLEU in percent of token sequences (one reference each)."""
    _check(outputs, references)
    matches, possible = [0] * max_order, [0] * max_order
    out_len = ref_len = 0
    for o, r in zip(outputs, references):
        out_len, ref_len = out_len + len(o), ref_len + len(r)
        for n in range(1, max_order + 1):
            out_ngrams, ref_ngrams = _ngrams(o, n), _ngrams(r, n)
            matches[n - 1] += sum(min(count, ref_ngrams[g]) for g, count in out_ngrams.items())
            possible[n - 1] += max(len(o) - n + 1, 0)
    if min(matches) == 0 or out_len == 0:
        return 0.0
    log_precision = sum(math.log(m / p) for m, p in zip(matches, possible)) / max_order
    brevity = 1.0 if out_len >= ref_len else math.exp(1 - ref_len / out_len)
    return 100.0 * brevity * math.exp(log_precision)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[k:k + n]) for k in range(len(tokens) - n + 1))


def _check(outputs, references) -> None:
    if len(outputs) != len(references):
        raise ConfigError(f"outputs: expected one per reference ({len(references)}), received {len(outputs)}")
    if not references:
        raise ConfigError("references: expected at least one")
