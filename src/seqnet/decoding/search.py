"""Searching for likely sequences under any model stepped one token at a time: greedy,
sampling and beam search, on the host, apart from the models.

A model offers :class:`SearchSteps` (OpenNMT's shape: a decoder state that can be
re-indexed): :class:`TokenSteps`' ``start(prefix)`` (a (T, N) block of host token ids ->
the next-token logits (N, V) on the host and the model's state) and ``step(ids, state)``
(one token per row), plus ``reorder(state, rows)``, the state of rows ``rows`` (host ints) of the
current state in that order: beams are made by repeating rows, re-ranked by permuting
them, and dropped by leaving them out. ``attention(state)`` (optional) returns the (N, S)
attention weights of the step that produced the latest logits.

Scores are model log-probabilities (natural log) of the generated tokens, the end token
included when a hypothesis has one; bans (<UNK>, an end token before the minimum length,
repeated n-grams) exclude choices without renormalising. Lengths count generated tokens,
the end token included; the prefix is neither scored nor counted nor searched for n-grams.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..errors import ConfigError
from .sampling import active_filters, check_sampling, gumbel_blocks, is_finite_number, sample_next

LENGTH_PENALTIES = ("none", "avg", "wu")


class TokenSteps(Protocol):
    def start(self, prefix: np.ndarray) -> tuple[np.ndarray, Any]:
        """prefix (T, N) host ids -> (logits (N, V) host float, state after the prefix)."""

    def step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """ids (N,) host ids -> (logits (N, V) host float, new state)."""


def check_count(name: str, value, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{name}: expected {kind}, received {value!r}")
    return int(value)


class SearchSteps(TokenSteps, Protocol):
    def reorder(self, state: Any, rows: np.ndarray) -> Any:
        """The state of rows ``rows`` (M,) host ints of ``state``, in that order (M rows)."""


@dataclass
class Hypothesis:
    """One generated sequence.

    tokens: (L,) ids after the prefix, the end token excluded; score: its log-probability
    (end token included); normalized: score / length penalty, what beam search ranks by;
    finished: True when it ended with the end token (False: cut at the maximum length);
    attention: (steps, S) weights of each generating step (end token's included), or None.
    """

    tokens: np.ndarray
    score: float
    normalized: float
    finished: bool
    attention: np.ndarray | None = None

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0]) + int(self.finished)


def check_length_penalty(kind: str, alpha: float) -> None:
    if kind not in LENGTH_PENALTIES:
        raise ConfigError(f"length_penalty: expected one of {', '.join(LENGTH_PENALTIES)}, received {kind!r}")
    if not (is_finite_number(alpha) and 0 <= alpha <= 10):
        raise ConfigError(f"alpha: expected a finite number in [0, 10] (the length penalty's exponent), "
                          f"received {alpha!r}")
    if kind == "none" and alpha != 0:
        raise ConfigError(f"alpha: the exponent of a length penalty, which length_penalty='none' does not have; "
                          f"give length_penalty='avg' or 'wu', or drop alpha (received alpha={alpha!r})")


def length_penalty(kind: str, alpha: float, length) -> np.ndarray | float:
    """What a score is divided by: 1 ("none"), len^alpha ("avg"), ((5 + len) / 6)^alpha ("wu",
    Wu et al. 2016). Non-decreasing in the length for alpha >= 0."""
    length = np.asarray(length, dtype=np.float64)
    if kind == "avg":
        return length ** alpha
    if kind == "wu":
        return ((5.0 + length) / 6.0) ** alpha
    return np.ones_like(length)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _max_lengths(max_len, count: int, min_len: int) -> np.ndarray:
    """max_len (an int or (N,) ints >= 1) -> (N,) int64; each at least ``min_len``."""
    lengths = np.asarray(max_len)
    if lengths.dtype.kind not in "iu" or lengths.ndim > 1 or (lengths.ndim == 1 and lengths.shape != (count,)):
        raise ConfigError(f"max_len: expected an int or {count} ints (one per row), received {max_len!r}")
    lengths = np.broadcast_to(lengths.astype(np.int64), (count,))
    if np.any(lengths < 1):
        raise ConfigError(f"max_len: expected lengths >= 1, received {lengths.tolist()}")
    if np.any(lengths < min_len):
        raise ConfigError(f"min_len: {min_len} is above the maximum length {int(lengths.min())} of some row; "
                          "lower min_len or raise the maximum length")
    return lengths


def _banned(logp: np.ndarray, banned_ids: Sequence[int], eos_id: int | None, no_end: bool) -> np.ndarray:
    """logp (..., V) with banned tokens (and the end token when ``no_end``) at -inf (a copy)."""
    logp = np.array(logp, dtype=np.float64)
    for token in banned_ids:
        logp[..., token] = -np.inf
    if no_end and eos_id is not None:
        logp[..., eos_id] = -np.inf
    return logp


# --------------------------------------------------------------------------- greedy, sampling


def sample_search(steps: TokenSteps, prefix: np.ndarray, max_len, *, rng: np.random.Generator | None = None,
                  greedy: bool = False, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  eos_id: int | None = None, banned_ids: Sequence[int] = (), min_len: int = 0,
                  keep_attention: bool = False) -> list[Hypothesis]:
    """One hypothesis per column of ``prefix`` (T, N): the argmax token at each step
    (``greedy``) or a draw from the filtered softmax (:func:`sample_next`), until the end
    token or ``max_len`` (an int or one per row) tokens."""
    tokens, scores, lengths, ended, attention = _sample_loop(
        steps, prefix, max_len, rng=rng, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
        eos_id=eos_id, banned_ids=banned_ids, min_len=min_len, keep_attention=keep_attention)
    hyps = []
    for n in range(tokens.shape[1]):
        kept = lengths[n] - int(ended[n])
        att = None if attention is None else attention[:lengths[n], n, :]
        hyps.append(Hypothesis(tokens[:kept, n].copy(), float(scores[n]), float(scores[n]), bool(ended[n]), att))
    return hyps


def _sample_loop(steps, prefix, max_len, *, rng, greedy, temperature, top_k, top_p, eos_id, banned_ids, min_len,
                 keep_attention, scored: bool = True):
    """The loop of :func:`sample_search` and :func:`seqnet.decoding.sample_tokens`: every row
    is sampled at every step until all are done (the random stream does not depend on which
    rows finished); returns (tokens (L, N), scores (N,), lengths (N,), ended (N,), attention
    (L, N, S) or None). Without ``scored`` the scores stay 0 and the banned tokens are set to
    -inf in the step's own logits (no copy, no log-softmax: the per-token cost of plain
    generation)."""
    check_sampling(temperature, top_k, top_p)
    temperature = 1.0 if temperature is None else temperature
    min_len = check_count("min_len", min_len, low=0)
    if not greedy and rng is None:
        raise ConfigError("rng: sampling needs a numpy Generator (or greedy=True)")
    count = prefix.shape[1]
    limits = _max_lengths(max_len, count, min_len)
    longest = int(limits.max())
    logits, state = steps.start(prefix)
    tokens = np.zeros((longest, count), dtype=np.int64)
    scores = np.zeros(count)
    lengths = np.zeros(count, dtype=np.int64)
    ended = np.zeros(count, dtype=bool)
    done = np.zeros(count, dtype=bool)
    attention = [] if keep_attention and _attention(steps, state) is not None else None
    top_k, top_p = active_filters(top_k, top_p, logits.shape[-1])
    plain = not greedy and top_k is None and top_p is None
    noise = gumbel_blocks(rng, logits.shape, min(longest, 256)) if plain else None
    banned = list(banned_ids)
    fixed_length = eos_id is None and bool(np.all(limits == longest))
    for k in range(longest):
        if attention is not None:
            attention.append(steps.attention(state))
        if scored:
            allowed = _banned(logits, banned_ids, eos_id, k < min_len)
        else:
            allowed = np.asarray(logits)
            if not allowed.flags.writeable:
                allowed = allowed.copy()
            if banned or (k < min_len and eos_id is not None):
                allowed[..., banned + ([eos_id] if k < min_len and eos_id is not None else [])] = -np.inf
        token = sample_next(allowed, rng, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                            gumbel=None if noise is None else next(noise))
        tokens[k] = token
        if scored:
            logp = log_softmax(logits)[np.arange(count), token]
            scores = np.where(done, scores, scores + logp)
        if fixed_length:                             # no end token, one length: every row runs to it
            if k + 1 == longest:
                lengths[:] = longest
                break
        else:
            stop = ~done & ((token == eos_id) if eos_id is not None else False)
            cut = ~done & ~stop & (k + 1 >= limits)
            ended |= stop
            lengths[stop | cut] = k + 1
            done |= stop | cut
            if done.all():
                tokens = tokens[:k + 1]
                break
        logits, state = steps.step(token, state)
    att = None if attention is None else np.stack(attention)
    return tokens, scores, lengths, ended, att


# --------------------------------------------------------------------------- beam search


def beam_search(steps: SearchSteps, prefix: np.ndarray, max_len, *, beam: int, n_best: int = 1, min_len: int = 0,
                eos_id: int | None = None, banned_ids: Sequence[int] = (), length_penalty: str = "none",
                alpha: float = 0.0, block_ngram: int = 0, keep_attention: bool = False) -> list[list[Hypothesis]]:
    """The ``n_best`` hypotheses of each column of ``prefix`` (T, N), best first, found by a
    beam of ``beam`` hypotheses per row.

    At each step every alive hypothesis proposes its ``beam`` best extensions; those that
    end (the end token) are kept aside as finished, and the ``beam`` best of all the others
    stay alive (with width 1 this is greedy search). A row's search stops at its ``max_len``
    (alive hypotheses are then kept as cut), or as soon as it has ``n_best`` finished and the
    best alive hypothesis cannot beat the n-th of them: scores only fall as a hypothesis grows
    and the length penalty (``length_penalty``, exponent ``alpha``) only rises, so
    score / penalty(max_len) bounds what it can still reach.
    Before ``min_len`` tokens the end token is banned; ``block_ngram`` = n bans any token
    that would repeat an n-gram already in the hypothesis; ``banned_ids`` are never chosen.
    Ties rank by beam, then by token id.
    """
    beam = check_count("beam", beam, low=1)
    n_best = check_count("n_best", n_best, low=1)
    if n_best > beam:
        raise ConfigError(f"n_best: expected at most beam = {beam} hypotheses, received {n_best}")
    min_len = check_count("min_len", min_len, low=0)
    block_ngram = check_count("block_ngram", block_ngram, low=0)
    check_length_penalty(length_penalty, alpha)
    count = prefix.shape[1]
    limits = _max_lengths(max_len, count, min_len)
    logits, state = steps.start(prefix)
    vocab = logits.shape[-1]
    state = steps.reorder(state, np.repeat(np.arange(count), beam))
    logp = np.repeat(log_softmax(logits), beam, axis=0)                   # (N*K, V)
    track = keep_attention and _attention(steps, state) is not None
    sources = np.arange(count)                                            # rows still searching, in block order
    scores = np.full((count, beam), -np.inf)
    scores[:, 0] = 0.0                                                    # one live hypothesis per row at first
    history = np.zeros((count, beam, 0), dtype=np.int64)
    att_history = None
    finished: list[list[Hypothesis]] = [[] for _ in range(count)]
    step = 0
    while sources.size:
        n = sources.size
        att_now = steps.attention(state).reshape(n, beam, -1) if track else None
        if track and att_history is None:
            att_history = np.zeros((n, beam, 0, att_now.shape[-1]))
        allowed = _banned(logp.reshape(n, beam, vocab), banned_ids, eos_id, step < min_len)
        if block_ngram:
            _block_ngrams(allowed, history, block_ngram)
        ends = None
        if eos_id is not None:
            end_scores = scores + allowed[..., eos_id]                          # (n, K)
            ends = (_rank(allowed, eos_id) < beam) & (end_scores > -np.inf)
            allowed[..., eos_id] = -np.inf
        candidates = (scores[..., None] + allowed).reshape(n, beam * vocab)
        order = np.argsort(-candidates, axis=1, kind="stable")[:, :beam]
        top = np.take_along_axis(candidates, order, axis=1)
        from_beam, token = order // vocab, order % vocab
        length = step + 1
        keep_rows, keep_tokens, keep_scores, still = [], [], [], []
        for i in range(n):
            src = sources[i]
            for b in ([] if ends is None else np.flatnonzero(ends[i])):
                att = None if not track else np.concatenate([att_history[i, b], att_now[i, b][None]])
                s = float(end_scores[i, b])
                finished[src].append(Hypothesis(history[i, b].copy(), s, s / length_penalty_of(length_penalty, alpha,
                                                                                              length), True, att))
            alive = [(int(b), int(w), float(s)) for b, w, s in zip(from_beam[i], token[i], top[i]) if s > -np.inf]
            if length >= limits[src]:                                   # cut: the alive ones finish as they are
                for b, w, s in alive:
                    att = None if not track else np.concatenate([att_history[i, b], att_now[i, b][None]])
                    tokens = np.concatenate([history[i, b], [w]])
                    finished[src].append(Hypothesis(tokens, s, s / length_penalty_of(length_penalty, alpha, length),
                                                    False, att))
                continue
            if not alive or _can_stop(finished[src], n_best, alive[0][2],
                                      length_penalty_of(length_penalty, alpha, limits[src])):
                continue
            finished[src] = sorted(finished[src], key=lambda h: -h.normalized)[:n_best]   # only these can be returned
            alive += [alive[-1][:2] + (-np.inf,)] * (beam - len(alive))  # fewer than beam: pad with dead copies
            still.append(i)
            keep_rows += [i * beam + b for b, _, _ in alive]
            keep_tokens += [w for _, w, _ in alive]
            keep_scores.append([s for _, _, s in alive])
        if not still:
            break
        rows = np.asarray(keep_rows, dtype=np.int64)
        next_tokens = np.asarray(keep_tokens, dtype=np.int64)
        block, slot = rows // beam, rows % beam
        history = np.concatenate([history[block, slot], next_tokens[:, None]], axis=1).reshape(len(still), beam, -1)
        if track:
            att_history = np.concatenate([att_history[block, slot], att_now[block, slot][:, None]], axis=1)
            att_history = att_history.reshape(len(still), beam, -1, att_now.shape[-1])
        scores = np.asarray(keep_scores)
        sources = sources[still]
        state = steps.reorder(state, rows)
        logits, state = steps.step(next_tokens, state)
        logp = log_softmax(logits)
        step += 1
    return [sorted(hyps, key=lambda h: -h.normalized)[:n_best] for hyps in finished]


def length_penalty_of(kind: str, alpha: float, length: int) -> float:
    return float(length_penalty(kind, alpha, length))


def _attention(steps, state):
    """The steps' latest attention weights (N, S) on the host, or None when it has none."""
    return steps.attention(state) if hasattr(steps, "attention") else None


def _rank(logp: np.ndarray, token: int) -> np.ndarray:
    """Rank (0 = best) of ``token`` among each row's tokens of logp (..., V); ties go to the lower id."""
    value = logp[..., token, None]
    return np.sum(logp > value, axis=-1) + np.sum(logp[..., :token] == value, axis=-1)


def _can_stop(finished: list[Hypothesis], n_best: int, best_alive: float, penalty_at_max: float) -> bool:
    """True when ``n_best`` hypotheses are finished and no alive one can beat the n-th."""
    if len(finished) < n_best:
        return False
    nth = sorted((h.normalized for h in finished), reverse=True)[n_best - 1]
    return best_alive / penalty_at_max <= nth


def _block_ngrams(logp: np.ndarray, history: np.ndarray, n: int) -> None:
    """Set logp[i, k, w] = -inf (in place) where w after hypothesis (i, k)'s last n - 1
    tokens would repeat an n-gram it already holds. logp (R, K, V); history (R, K, L)."""
    steps = history.shape[-1]
    if steps < n:                                # no complete n-gram yet that could be repeated
        return
    windows = np.lib.stride_tricks.sliding_window_view(history, n, axis=-1)      # (R, K, L - n + 1, n)
    suffix = history[..., steps - n + 1:]                                        # (R, K, n - 1)
    match = np.all(windows[..., :-1] == suffix[..., None, :], axis=-1)           # (R, K, L - n + 1)
    rows, beams, at = np.nonzero(match)
    logp[rows, beams, windows[rows, beams, at, -1]] = -np.inf
