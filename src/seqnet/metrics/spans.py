"""Tagging scores: token accuracy, and entity-level precision / recall / F1 as conlleval defines them.

A tag is "O" or PREFIX-TYPE with PREFIX in B, I, E, S (BIO, IOB1/IOB2 and BIOES schemes).
Entities (chunks) are found with conlleval's start-of-chunk and end-of-chunk rules, so a
malformed sequence is scored as conlleval scores it: an I-X after O or after another type
starts a new X entity; a B-X always starts one. An entity counts as found only when its type
and both boundaries match a gold entity.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

PREFIXES = ("B", "I", "E", "S")


def split_tag(tag: str) -> tuple[str, str]:
    """"B-PER" -> ("B", "PER"); "O" -> ("O", ""); a tag without a hyphen -> (tag, "")."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _prefixed(tag: str) -> bool:
    prefix, kind = split_tag(tag)
    return prefix in PREFIXES and kind != ""


def tag_scheme(tags) -> str | None:
    """"BIOES" (some E- or S- tag), "BIO" (prefixed tags and O), or None (plain labels, no entities).

    ConfigError when prefixed tags are mixed with tags that are neither "O" nor prefixed."""
    tags = set(tags)
    prefixed = {t for t in tags if _prefixed(t)}
    if not prefixed:
        return None
    odd = sorted(t for t in tags - prefixed if t != "O")
    if odd:
        raise ConfigError(f"tags: expected O or B-/I-/E-/S-TYPE tags (BIO or BIOES), received {odd[:5]} "
                          f"beside {sorted(prefixed)[:3]}")
    return "BIOES" if any(split_tag(t)[0] in "ES" for t in prefixed) else "BIO"


def invalid_transitions(tags: Sequence[str], scheme: str) -> list[tuple[int, str]]:
    """(position, explanation) of each tag that breaks ``scheme`` (BIO = IOB2, or BIOES)."""
    problems = []
    prev, prev_kind = "O", ""
    for k, tag in enumerate(list(tags) + ["O"]):
        prefix, kind = split_tag(tag)
        inside = prefix in ("I", "E")
        if inside and not (prev in ("B", "I") and prev_kind == kind) and k < len(tags):
            problems.append((k, f"{tag} follows {tags[k - 1] if k else 'the sentence start'}; scored as the start "
                                f"of a {kind} entity (conlleval's rule)"))
        if scheme == "BIOES" and prev in ("B", "I") and not (inside and kind == prev_kind):
            problems.append((k - 1, f"{tags[k - 1]} is not followed by I-{prev_kind} or E-{prev_kind}; "
                                    f"scored as the end of its {prev_kind} entity"))
        prev, prev_kind = prefix, kind
    return sorted(problems)


def _end_of_chunk(prev: str, tag: str, prev_kind: str, kind: str) -> bool:
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev != "O" and prev_kind != kind


def _start_of_chunk(prev: str, tag: str, prev_kind: str, kind: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and prev_kind != kind


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence as (type, first position, last position), conlleval's way."""
    found, start = [], None
    prev, prev_kind = "O", ""
    for k, tag in enumerate(list(tags) + ["O"]):
        prefix, kind = split_tag(tag)
        if start is not None and _end_of_chunk(prev, prefix, prev_kind, kind):
            found.append((prev_kind, start, k - 1))
            start = None
        if _start_of_chunk(prev, prefix, prev_kind, kind):
            start = k
        prev, prev_kind = prefix, kind
    return found


def _check_aligned(gold, pred) -> None:
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ConfigError("gold, pred: expected the same number of sentences, each with as many predicted as "
                          "gold tags")


def _prf(correct: int, found_pred: int, found_gold: int) -> dict:
    p = correct / found_pred if found_pred else 0.0
    r = correct / found_gold if found_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """conlleval's overall and per-type precision, recall, F1 (fractions, not percent), with counts."""
    _check_aligned(gold, pred)
    gold_set = {(n, *c) for n, tags in enumerate(gold) for c in chunks(tags)}
    pred_set = {(n, *c) for n, tags in enumerate(pred) for c in chunks(tags)}
    correct = gold_set & pred_set
    by = lambda spans: Counter(span[1] for span in spans)  # noqa: E731 - count per entity type
    g, p, c = by(gold_set), by(pred_set), by(correct)
    per_type = {kind: {**_prf(c[kind], p[kind], g[kind]), "gold": g[kind], "predicted": p[kind],
                       "correct": c[kind]} for kind in sorted(set(g) | set(p))}
    return {**_prf(len(correct), len(pred_set), len(gold_set)), "gold": len(gold_set), "predicted": len(pred_set),
            "correct": len(correct), "per_type": per_type,
            "macro_f1": float(np.mean([v["f1"] for v in per_type.values()])) if per_type else 0.0}
