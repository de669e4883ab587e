"""Greedy, sampling and beam search on hand-built scorers whose best sequences are known.

A scorer is a :class:`seqnet.decoding.SearchSteps` whose next-token log-probabilities are a
Python function of (row, tokens generated so far); its state is the list of those prefixes,
so ``reorder`` is plain indexing. The oracle for "the best sequences" is exhaustive
enumeration of every sequence the rules allow (written here from the rules, not from the
search), and a few cases whose answer is worked out by hand in the test: n-gram blocking,
minimum length, end-token handling (finished hypotheses are never extended), early stop,
<UNK> ban, per-row maximum lengths, width 1 = greedy.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from seqnet.decoding import beam_search, sample_search
from seqnet.errors import ConfigError

EOS = 0


class Scorer:
    """logp(next | row, prefix) = fn(row, prefix) (a (V,) array); records every prefix it extends."""

    def __init__(self, fn):
        self.fn = fn
        self.extended: list[tuple] = []
        self.steps = 0

    def start(self, prefix):
        state = [(n, ()) for n in range(prefix.shape[1])]
        return self._logits(state), state

    def step(self, ids, state):
        self.steps += 1
        state = [(n, seq + (int(t),)) for (n, seq), t in zip(state, ids)]
        return self._logits(state), state

    def reorder(self, state, rows):
        return [state[int(r)] for r in rows]

    def _logits(self, state):
        self.extended += [seq for _, seq in state]
        return np.array([self.fn(n, seq) for n, seq in state], dtype=np.float64)


def _logp(values) -> np.ndarray:
    """A (V,) log-probability vector proportional to ``values`` (probabilities)."""
    p = np.asarray(values, dtype=np.float64)
    return np.log(p / p.sum())


def random_scorer(vocab: int, seed: int):
    """A different, continuous (tie-free) next-token distribution for every (row, prefix)."""
    def fn(row, seq):
        rng = np.random.default_rng([seed, row, len(seq), *seq])
        return _logp(rng.dirichlet(np.full(vocab, 0.7)))
    return fn


def repeats_ngram(seq: tuple, n: int) -> bool:
    """True when the last n tokens of ``seq`` already occur as an n-gram earlier in it."""
    if n == 0 or len(seq) <= n:
        return False
    last = seq[-n:]
    return any(seq[j:j + n] == last for j in range(len(seq) - n))


def penalty(kind, alpha, length):
    return {"none": 1.0, "avg": length ** alpha, "wu": ((5 + length) / 6) ** alpha}[kind]


def exhaustive(fn, row, vocab, max_len, *, min_len=0, block=0, banned=(), kind="none", alpha=0.0, eos=EOS):
    """Every sequence the rules allow, as (normalized, score, tokens, finished), best first."""
    found = []

    def grow(seq, score):
        logp = fn(row, seq)
        length = len(seq) + 1
        for w in range(vocab):
            if w in banned or (w == eos and len(seq) < min_len) or repeats_ngram(seq + (w,), block):
                continue
            s = score + logp[w]
            if eos is not None and w == eos:
                found.append((s / penalty(kind, alpha, length), s, seq, True))
            elif length == max_len:
                found.append((s / penalty(kind, alpha, length), s, seq + (w,), False))
            else:
                grow(seq + (w,), s)

    grow((), 0.0)
    return sorted(found, key=lambda f: -f[0])


def _prefix(rows):
    return np.zeros((1, rows), dtype=np.int64)


# --------------------------------------------------------------------------- against enumeration


@pytest.mark.parametrize("kind,alpha", [("none", 0.0), ("avg", 1.0), ("wu", 2.0)])
@pytest.mark.parametrize("block", [0, 2])
def test_a_wide_beam_finds_the_exhaustive_n_best(kind, alpha, block):
    """With a beam as wide as every prefix (V^L), the search is exact: its n-best lists equal
    enumeration's, scores included, for every length penalty and with n-gram blocking."""
    vocab, max_len, rows = 4, 4, 3
    fn = random_scorer(vocab, seed=1)
    results = beam_search(Scorer(fn), _prefix(rows), max_len, beam=vocab ** max_len, n_best=5, eos_id=EOS,
                          length_penalty=kind, alpha=alpha, block_ngram=block, min_len=1)
    for row in range(rows):
        want = exhaustive(fn, row, vocab, max_len, min_len=1, block=block, kind=kind, alpha=alpha)[:5]
        got = results[row]
        assert [tuple(h.tokens) for h in got] == [w[2] for w in want]
        np.testing.assert_allclose([h.score for h in got], [w[1] for w in want], rtol=1e-12)
        np.testing.assert_allclose([h.normalized for h in got], [w[0] for w in want], rtol=1e-12)
        assert [h.finished for h in got] == [w[3] for w in want]


@pytest.mark.parametrize("seed", range(4))
def test_width_one_equals_greedy(seed):
    fn = random_scorer(5, seed)
    rows = 6
    beams = beam_search(Scorer(fn), _prefix(rows), 7, beam=1, eos_id=EOS)
    greedy = sample_search(Scorer(fn), _prefix(rows), 7, greedy=True, eos_id=EOS)
    for b, g in zip(beams, greedy):
        assert tuple(b[0].tokens) == tuple(g.tokens) and b[0].finished == g.finished
        assert b[0].score == pytest.approx(g.score, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_width_one_with_ngram_blocking_is_greedy_with_blocking(n):
    """Beam search of width 1 with block_ngram = n against greedy search written out here:
    at each step the most likely token that does not complete an n-gram already in the output."""
    vocab, max_len, rows, min_len = 4, 12, 8, 2 if n == 1 else 6          # n = 1: at most 3 tokens before the end
    fn = random_scorer(vocab, 40 + n)
    results = beam_search(Scorer(fn), _prefix(rows), max_len, beam=1, eos_id=EOS, block_ngram=n, min_len=min_len)
    unblocked = beam_search(Scorer(fn), _prefix(rows), max_len, beam=1, eos_id=EOS, min_len=min_len)
    assert any(repeats_ngram(tuple(h.tokens[:k]), n) for (h,) in unblocked for k in range(len(h.tokens) + 1))
    for row, (hyp,) in enumerate(results):
        seq, score = (), 0.0
        while True:
            logp = fn(row, seq).copy()
            allowed = [w for w in range(vocab) if not repeats_ngram(seq + (w,), n) and (w != EOS or len(seq) >= min_len)]
            w = max(allowed, key=lambda t: logp[t])
            score += logp[w]
            if w == EOS:
                break
            seq += (w,)
            if len(seq) == max_len:
                break
        assert tuple(hyp.tokens) == seq and hyp.finished == (w == EOS), row
        assert hyp.score == pytest.approx(score, rel=1e-12)


def test_greedy_takes_the_argmax_and_scores_its_log_probability():
    fn = random_scorer(4, 9)
    (hyp,) = sample_search(Scorer(fn), _prefix(1), 6, greedy=True, eos_id=EOS)
    seq, score = (), 0.0
    while True:
        logp = fn(0, seq)
        w = int(np.argmax(logp))
        score += logp[w]
        if w == EOS or len(seq) + 1 == 6:
            break
        seq += (w,)
    expected = seq if w == EOS else seq + (w,)
    assert tuple(hyp.tokens) == expected and hyp.score == pytest.approx(score, rel=1e-12)


@pytest.mark.parametrize("beam", [2, 3, 5])
def test_beam_score_is_at_least_greedy_on_random_scorers(beam):
    """Beam search keeps greedy's prefix unless better ones push it out. On these scorers it never
    lost to greedy; that is no theorem (a greedy prefix pushed out can lead to the better end),
    so the cases are fixed, not random draws."""
    fn = random_scorer(6, 100 + beam)
    rows = 12
    beams = beam_search(Scorer(fn), _prefix(rows), 8, beam=beam, eos_id=EOS)
    greedy = sample_search(Scorer(fn), _prefix(rows), 8, greedy=True, eos_id=EOS)
    assert all(b[0].score >= g.score - 1e-12 for b, g in zip(beams, greedy))
    assert any(b[0].score > g.score + 1e-9 for b, g in zip(beams, greedy))   # and beam search does find better


# --------------------------------------------------------------------------- pinned behaviours


def _preference(order_probs, eos_prob):
    """A context-free scorer: EOS with ``eos_prob``, tokens 1.. with the given probabilities."""
    logp = _logp([eos_prob, *order_probs])
    return lambda row, seq: logp


def test_ngram_blocking_by_hand():
    """Token 1 is always the favourite, then 2, then 3; the end token is very unlikely.
    Greedy with bigram blocking: 1 1, then (1,1) is taken so 2; after 2, 1 is new: 1 1 2 1;
    after 1 both (1,1) and (1,2) are taken: 3; then 1; then 1, 2, 3 are all taken after 1:
    the end token. Unigram blocking: 1 2 3 and the end token. A wider beam finds sequences
    at least as likely, never with a repeated bigram."""
    fn = _preference([0.6, 0.25, 0.149], 0.001)
    (greedy,) = beam_search(Scorer(fn), _prefix(1), 20, beam=1, eos_id=EOS, block_ngram=2)[0]
    assert tuple(greedy.tokens) == (1, 1, 2, 1, 3, 1) and greedy.finished
    (hyp,) = beam_search(Scorer(fn), _prefix(1), 20, beam=1, eos_id=EOS, block_ngram=1)[0]
    assert tuple(hyp.tokens) == (1, 2, 3) and hyp.finished
    for beam in (2, 3, 5):
        (hyp,) = beam_search(Scorer(fn), _prefix(1), 20, beam=beam, eos_id=EOS, block_ngram=2)[0]
        assert hyp.score >= greedy.score and not repeats_ngram(tuple(hyp.tokens), 2)
        assert not any(repeats_ngram(tuple(hyp.tokens[:k]), 2) for k in range(len(hyp.tokens) + 1))
    (hyp,) = beam_search(Scorer(fn), _prefix(1), 5, beam=2, eos_id=EOS)[0]
    assert tuple(hyp.tokens) == (1, 1, 1, 1, 1) and not hyp.finished                 # no blocking: cut at 5


def test_min_length_bans_the_end_token_until_then():
    fn = _preference([0.2, 0.15], 0.65)                      # ending is always the favourite
    for beam in (1, 4):
        (hyp,) = beam_search(Scorer(fn), _prefix(1), 10, beam=beam, eos_id=EOS)[0]
        assert tuple(hyp.tokens) == () and hyp.finished
        (hyp,) = beam_search(Scorer(fn), _prefix(1), 10, beam=beam, eos_id=EOS, min_len=3)[0]
        assert tuple(hyp.tokens) == (1, 1, 1) and hyp.finished
        assert hyp.score == pytest.approx(3 * math.log(0.2) + math.log(0.65))
    (hyp,) = sample_search(Scorer(fn), _prefix(1), 10, greedy=True, eos_id=EOS, min_len=2)
    assert tuple(hyp.tokens) == (1, 1) and hyp.finished


def test_finished_hypotheses_are_kept_aside_and_never_extended():
    """After token 1 the end token is likely; after 2, token 2 then the end. n_best = 2 returns
    both endings, best first, with their exact scores; no prefix holding the end token is
    ever extended."""
    def fn(row, seq):
        if seq == ():
            return _logp([0.01, 0.5, 0.49])
        if seq == (1,):
            return _logp([0.6, 0.2, 0.2])
        if seq == (2,):
            return _logp([0.01, 0.01, 0.98])
        if seq == (2, 2):
            return _logp([0.97, 0.02, 0.01])
        return _logp([0.3, 0.35, 0.35])
    scorer = Scorer(fn)
    first, second = beam_search(scorer, _prefix(1), 6, beam=2, n_best=2, eos_id=EOS)[0]
    assert tuple(first.tokens) == (2, 2) and first.score == pytest.approx(math.log(0.49 * 0.98 * 0.97))
    assert tuple(second.tokens) == (1,) and second.score == pytest.approx(math.log(0.5 * 0.6))
    assert all(EOS not in seq for seq in scorer.extended)


def test_early_stop_when_no_alive_hypothesis_can_win():
    """Ending at once has probability 0.9: after the first step every alive hypothesis has a
    score below log 0.9, and scores only fall, so the search stops without a second step."""
    scorer = Scorer(_preference([0.05, 0.05], 0.9))
    (hyp,) = beam_search(scorer, _prefix(1), 50, beam=3, eos_id=EOS)[0]
    assert tuple(hyp.tokens) == () and scorer.steps == 0


def test_no_early_stop_while_a_length_penalty_can_still_reward_an_alive_hypothesis():
    """The same scorer with avg^1: ending at once scores log 0.9 / 1 = -0.105, but going on
    with token 1 (prob 0.05) could still be divided by up to 50: the search must continue, and
    its result is the exhaustive optimum within max_len."""
    fn = _preference([0.5, 0.05], 0.45)
    scorer = Scorer(fn)
    (hyp,) = beam_search(scorer, _prefix(1), 6, beam=6 ** 3, eos_id=EOS, length_penalty="avg", alpha=1.0)[0]
    best = exhaustive(fn, 0, 3, 6, kind="avg", alpha=1.0)[0]
    assert scorer.steps > 0 and tuple(hyp.tokens) == best[2] and hyp.normalized == pytest.approx(best[0])


def test_unk_is_never_generated():
    fn = _preference([0.7, 0.2], 0.1)                        # token 1 (say <UNK>) is the favourite
    (hyp,) = beam_search(Scorer(fn), _prefix(1), 4, beam=2, eos_id=EOS, banned_ids=(1,))[0]
    assert 1 not in hyp.tokens
    (g,) = sample_search(Scorer(fn), _prefix(1), 4, greedy=True, eos_id=EOS, banned_ids=(1,))
    assert 1 not in g.tokens
    draws = sample_search(Scorer(fn), _prefix(200), 4, rng=np.random.default_rng(0), eos_id=EOS, banned_ids=(1,))
    assert all(1 not in d.tokens for d in draws) and any(len(d.tokens) for d in draws)


def test_per_row_maximum_lengths_and_no_end_token():
    """Without an end token (a character language model) every hypothesis runs to its row's maximum."""
    fn = random_scorer(3, 5)
    results = beam_search(Scorer(fn), _prefix(3), np.array([1, 4, 2]), beam=3, n_best=3, eos_id=None)
    for row, limit in enumerate([1, 4, 2]):
        assert [len(h.tokens) for h in results[row]] == [limit] * 3 and not any(h.finished for h in results[row])
        want = exhaustive(fn, row, 3, limit, eos=None)[:1]
        assert tuple(results[row][0].tokens) == want[0][2] or limit > 2       # exact where the beam covers all


def test_sampling_follows_the_distribution():
    fn = _preference([0.5, 0.3], 0.2)
    draws = sample_search(Scorer(fn), _prefix(20_000), 1, rng=np.random.default_rng(1), eos_id=EOS)
    first = np.array([d.tokens[0] if len(d.tokens) else EOS for d in draws])
    np.testing.assert_allclose(np.bincount(first, minlength=3) / 20_000, [0.2, 0.5, 0.3], atol=0.015)


def test_search_misuse():
    s = Scorer(random_scorer(3, 0))
    with pytest.raises(ConfigError, match="beam: expected a positive integer, received 0"):
        beam_search(s, _prefix(1), 3, beam=0)
    with pytest.raises(ConfigError, match="n_best: expected at most beam = 2 hypotheses, received 3"):
        beam_search(s, _prefix(1), 3, beam=2, n_best=3)
    with pytest.raises(ConfigError, match="length_penalty: expected one of none, avg, wu, received 'gnmt'"):
        beam_search(s, _prefix(1), 3, beam=2, length_penalty="gnmt")
    with pytest.raises(ConfigError, match="min_len: 5 is above the maximum length 3"):
        beam_search(s, _prefix(1), 3, beam=2, min_len=5)
    with pytest.raises(ConfigError, match="rng: sampling needs"):
        sample_search(s, _prefix(1), 3)
    for alpha in (math.nan, math.inf, -math.inf, 11, True):
        with pytest.raises(ConfigError, match=rf"alpha: expected a finite number in \[0, 10\] .*, received {alpha!r}"):
            beam_search(s, _prefix(1), 3, beam=2, length_penalty="avg", alpha=alpha)


@pytest.mark.parametrize("eos_id, sampler", [(None, {}), (EOS, {}), (None, {"top_k": 3}), (EOS, {"greedy": True})])
def test_unscored_generation_draws_what_the_scored_search_draws(eos_id, sampler):
    """sample_tokens (no scores: banned ids set in the step's own logits, a fixed-length exit)
    against sample_search on the same scorer and seed: the same tokens, cut at the same place."""
    from seqnet.decoding import sample_tokens

    vocab, rows, length = 6, 5, 9
    rng = None if sampler.get("greedy") else np.random.default_rng(3)
    searched = sample_search(Scorer(random_scorer(vocab, 11)), _prefix(rows), length, rng=rng, eos_id=eos_id,
                             banned_ids=(2,), **sampler)
    drawn = sample_tokens(Scorer(random_scorer(vocab, 11)), _prefix(rows), length,
                          rng=np.random.default_rng(3), eos_id=eos_id, banned_id=2, **sampler)
    assert not np.any(drawn == 2)
    for n, hyp in enumerate(searched):
        column = drawn[:, n].tolist()
        if eos_id is not None and eos_id in column:
            column = column[:column.index(eos_id)]
        assert column == hyp.tokens.tolist()


def test_an_alpha_without_a_length_penalty_is_refused():
    from seqnet.decoding.search import check_length_penalty

    check_length_penalty("none", 0.0)
    check_length_penalty("wu", 0.6)
    with pytest.raises(ConfigError, match=r"^alpha: the exponent of a length penalty, which length_penalty='none' does "
                                          r"not have; .* \(received alpha=0\.5\)$"):
        check_length_penalty("none", 0.5)
