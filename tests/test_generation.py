"""Sampling and text generation: filters against closed forms, draws against their probabilities,
``generate`` for determinism across seeds and backends, ``score`` against a torch oracle."""
from __future__ import annotations

import math

import numpy as np
import pytest

import seqnet
from seqnet import to_numpy
from seqnet.data import CharTokenizer, WordTokenizer
from seqnet.errors import ConfigError
from seqnet.decoding import check_sampling, next_token_probs, sample_next
from seqnet.models import LanguageModel

PROBS = np.asarray([0.5, 0.3, 0.15, 0.05])
TEXT = "the cat sat on the mat\nthe dog sat on the log\n"


def _char_model(seed=0, dtype=None, **kw):
    tokenizer = CharTokenizer.fit(TEXT)
    with seqnet.backend("numpy"):
        model = LanguageModel(tokenizer.vocab_size, 8, 12, cell="lstm", dtype=dtype, seed=seed, tokenizer=tokenizer, **kw)
        _set_bias(model, {tokenizer.unk_id: -30.0})   # never sample <UNK>: one token, one character
    return model


def _set_bias(model, values: dict):
    state = {k: to_numpy(v) for k, v in model.state_dict().items()}
    for token, value in values.items():
        state["decoder.bias"][token] = value
    model.load_state_dict(state)


# --------------------------------------------------------------------------- filters


def test_top_k_keeps_exactly_k():
    logits = np.log(PROBS)[None, :]
    for k in (1, 2, 3):
        probs = next_token_probs(logits, top_k=k)[0]
        assert np.count_nonzero(probs) == k
        np.testing.assert_allclose(probs[:k], PROBS[:k] / PROBS[:k].sum(), rtol=1e-12)
    np.testing.assert_allclose(next_token_probs(logits, top_k=10)[0], PROBS, rtol=1e-12)


def test_top_k_breaks_ties_toward_lower_ids():
    logits = np.array([[0.0, 2.0, 1.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    probs = next_token_probs(logits, top_k=2)
    np.testing.assert_array_equal(probs[0], [0, 0.5, 0, 0.5, 0])    # three tie at the top: ids 1, 3 stay
    np.testing.assert_array_equal(probs[1], [0.5, 0.5, 0, 0, 0])


@pytest.mark.parametrize("top_p,kept", [(0.45, 1), (0.6, 2), (0.79, 2), (0.9, 3), (0.99, 4), (1.0, 4)])
def test_top_p_keeps_smallest_prefix_reaching_p(top_p, kept):
    # cumulative mass 0.5, 0.8, 0.95, 1.0: the prefix of ``kept`` tokens is the first to reach p
    logits = np.log(PROBS[[2, 0, 3, 1]])[None, :]        # not sorted: the filter must sort
    probs = next_token_probs(logits, top_p=top_p)[0][[1, 3, 0, 2]]
    expected = np.where(np.arange(4) < kept, PROBS, 0.0)
    np.testing.assert_allclose(probs, expected / expected.sum(), rtol=1e-12, atol=0)


def test_small_temperature_approaches_greedy_and_greedy_is_argmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 7))
    near_greedy = next_token_probs(logits, temperature=1e-3)
    np.testing.assert_allclose(near_greedy, np.eye(7)[np.argmax(logits, axis=-1)], atol=1e-12)
    np.testing.assert_array_equal(sample_next(logits, rng, greedy=True), np.argmax(logits, axis=-1))
    hot = next_token_probs(logits, temperature=100.0)
    np.testing.assert_allclose(hot, 1 / 7, atol=5e-3)


@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7}, {"top_k": 2}, {"top_p": 0.9}])
def test_sample_next_frequencies_match_probabilities(kw):
    n = 40_000
    logits = np.tile(np.log(PROBS), (n, 1))
    expected = next_token_probs(logits[:1], **kw)[0]
    draws = sample_next(logits, np.random.default_rng(123), **kw)
    counts = np.bincount(draws, minlength=4)
    assert np.all(counts[expected == 0] == 0)
    live = expected > 0
    chi2 = float(np.sum((counts[live] - n * expected[live]) ** 2 / (n * expected[live])))
    assert chi2 < 25.0, (counts, n * expected)           # 3 degrees of freedom: p ~ 1.6e-5


# --------------------------------------------------------------------------- generate


def test_same_seed_same_text_and_prime_and_length():
    model = _char_model()
    a = model.generate("the ", 15, seed=7, num_samples=3)
    b = model.generate("the ", 15, seed=7, num_samples=3)
    c = model.generate("the ", 15, seed=8, num_samples=3)
    assert a == b and a != c
    assert len(a) == 3
    for text in a:
        assert text.startswith("the ") and len(text) == len("the ") + 15
    assert model.generate("the ", 0, seed=1) == ["the "]
    assert len(model.generate("", 10, seed=1)[0]) == 11     # no prime: one random start token


def test_a_filter_that_keeps_every_token_changes_nothing():
    """top_k >= the vocabulary and top_p = 1 filter nothing: the same draws as no filter at all."""
    model = _char_model()
    plain = model.generate("the ", 30, seed=3, num_samples=4)
    assert model.generate("the ", 30, seed=3, num_samples=4, top_k=model.vocab_size) == plain
    assert model.generate("the ", 30, seed=3, num_samples=4, top_k=1000, top_p=1.0) == plain
    assert model.generate("the ", 30, seed=3, num_samples=4, top_k=model.vocab_size - 1) != plain


def test_greedy_is_deterministic_without_seed():
    model = _char_model()
    assert model.generate("the c", 10, greedy=True) == model.generate("the c", 10, greedy=True, seed=99)


@pytest.mark.parametrize("controls", [dict(top_k=5), dict(), dict(temperature=0.7), dict(greedy=True)],
                         ids=["top_k", "plain", "temperature", "greedy"])
def test_every_backend_generates_the_numpy_text(xb, controls):
    """Plain, temperature and greedy sampling run on the device off numpy (host noise, same stream):
    the same text as numpy's host loop; top-k runs the host loop everywhere."""
    reference = _char_model(seed=3).generate("sat ", 12, seed=5, num_samples=2, **controls)
    model = _char_model(seed=3).to(xb)
    assert xb.owns(model.params["embedding.weight"])
    assert model.generate("sat ", 12, seed=5, num_samples=2, **controls) == reference


def test_unknown_prime_characters_map_to_unk():
    model = _char_model()
    texts = model.generate("t€h", 3, seed=0)
    assert texts[0].startswith("t<UNK>h")
    assert len(texts[0]) == len("t<UNK>h") + 3


def test_word_model_stops_at_eos():
    tokenizer = WordTokenizer.fit(TEXT)
    model = LanguageModel(tokenizer.vocab_size, 6, 8, cell="gru", seed=0, tokenizer=tokenizer)
    _set_bias(model, {tokenizer.eos_id: 40.0})          # <EOS> overwhelmingly likely
    texts = model.generate("the cat", 20, seed=0, num_samples=3)
    assert texts == ["the cat\n"] * 3
    long = model.generate("the cat", 5, seed=0, stop_at_eos=False)[0]
    assert long == "the cat" + "\n" * 5                  # 5 <EOS> tokens, not cut


def test_score_matches_torch_log_softmax():
    torch = pytest.importorskip("torch")
    model = _char_model(seed=2, dtype="float64")
    text = "the dog sat"
    ids = model.tokenizer.encode(text)
    state = {k: torch.tensor(to_numpy(v)) for k, v in model.state_dict().items()}
    emb, rnn, dec = torch.nn.Embedding(*state["embedding.weight"].shape).double(), \
        torch.nn.LSTM(8, 12).double(), torch.nn.Linear(12, model.tokenizer.vocab_size).double()
    for prefix, module in (("embedding", emb), ("rnn", rnn), ("decoder", dec)):
        module.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(prefix + ".")})
    with torch.no_grad():
        out, _ = rnn(emb(torch.tensor(ids[:-1, None])))
        logp = torch.log_softmax(dec(out)[:, 0, :], dim=-1).numpy()
    log_prob = float(logp[np.arange(len(ids) - 1), ids[1:]].sum())

    result = model.score(text)
    assert result["tokens"] == len(text) - 1
    assert math.isclose(result["log_prob"], log_prob, rel_tol=1e-10)
    assert math.isclose(result["bits_per_token"], -log_prob / result["tokens"] / math.log(2), rel_tol=1e-10)


def test_score_needs_two_tokens():
    with pytest.raises(ConfigError, match="text"):
        _char_model().score("t")


@pytest.mark.parametrize("kw,name", [({"temperature": 0}, "temperature"), ({"temperature": -1.0}, "temperature"),
                                     ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p"), ({"top_p": 0.0}, "top_p"),
                                     ({"length": -1}, "length"), ({"num_samples": 0}, "num_samples")])
def test_bad_arguments_name_themselves(kw, name):
    model = _char_model()
    kw = {"length": 5, **kw}
    with pytest.raises(ConfigError, match=name):
        model.generate("the", **kw)


@pytest.mark.parametrize("kw,message", [
    ({"temperature": math.inf}, "temperature: expected a finite number > 0, received inf"),
    ({"temperature": math.nan}, "temperature: expected a finite number > 0, received nan"),
    ({"temperature": True}, "temperature: expected a finite number > 0, received True"),
    ({"top_p": math.nan}, r"top_p: expected a probability in \(0, 1\] or None, received nan"),
    ({"top_p": math.inf}, r"top_p: expected a probability in \(0, 1\] or None, received inf"),
])
def test_non_finite_sampling_controls_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        check_sampling(**{"temperature": 1.0, "top_k": None, "top_p": None, **kw})
    with pytest.raises(ConfigError, match=message):                  # and so by every generate that samples
        _char_model().generate("the", 5, **kw)


@pytest.mark.parametrize("kw", [{"temperature": 0.5}, {"top_k": 2}, {"top_p": 0.9}, {"temperature": 1.0}])
def test_greedy_refuses_sampling_controls(kw):
    (name, value), = kw.items()
    with pytest.raises(ConfigError, match=rf"^{name}: a sampling control; greedy does not sample \(drop it or "
                                          rf"greedy\); received {name}={value!r}$"):
        _char_model().generate("the", 5, greedy=True, **kw)


@pytest.mark.parametrize("name", ["greedy", "stop_at_eos"])
def test_generate_flags_must_be_bools(name):
    with pytest.raises(ConfigError, match=rf"^{name}: expected True or False, received 'no'$"):
        _char_model().generate("the", 5, **{name: "no"})


@pytest.mark.parametrize("seed", ["x", -1, 1.5])
def test_generate_refuses_bad_seeds(seed):
    with pytest.raises(ConfigError, match=rf"^seed: expected an integer >= 0 \(or None\), received {seed!r}$"):
        _char_model().generate("the", 5, seed=seed)
    with pytest.raises(ConfigError, match=rf"^seed: expected an integer >= 0 \(or None\), received {seed!r}$"):
        LanguageModel(7, seed=seed)


def test_temperatures_so_small_that_logits_overflow_are_refused():
    """logits / 1e-320 overflow float64: every token looked alike and <UNK> (id 0) came out."""
    for kw in ({}, {"top_k": 3}):
        with pytest.raises(ConfigError, match=r"^temperature: expected at least 1e-06 \(smaller ones make logits / "
                                              r"temperature overflow; greedy=True takes the most likely token\), "
                                              r"received 1e-320$"):
            _char_model().generate("the", 5, temperature=1e-320, seed=0, **kw)
    text, = _char_model().generate("the", 5, temperature=1e-6, top_k=3, seed=0)
    assert text == _char_model().generate("the", 5, greedy=True)[0]


def test_text_arguments_must_be_texts():
    model = _char_model()
    with pytest.raises(ConfigError, match=r"^prime: expected a text \(str\), received list$"):
        model.generate(["the"], 5)
    with pytest.raises(ConfigError, match=r"^text: expected a text \(str\), received int$"):
        model.score(123)


def test_tokenizer_must_match_the_vocabulary_size():
    with pytest.raises(ConfigError, match=r"^tokenizer: expected one of vocab_size = 13 ids \(the model's\), "
                                          r"received a CharTokenizer of 3 ids$"):
        LanguageModel(13, 4, 4, tokenizer=CharTokenizer.fit("ab"))
    model = LanguageModel(3, 4, 4, seed=0)
    with pytest.raises(ConfigError, match=r"^tokenizer: expected one of vocab_size = 3 ids"):
        model.tokenizer = WordTokenizer.fit("a b c")


def test_a_vocabulary_of_only_unk_has_nothing_to_generate():
    tokenizer = CharTokenizer.fit("")
    model = LanguageModel(tokenizer.vocab_size, 4, 4, seed=0, tokenizer=tokenizer)
    for kw in ({}, {"beam": 2}):
        with pytest.raises(ConfigError, match=r"^tokenizer: its vocabulary holds only <UNK>, which is never "
                                              r"generated; nothing to generate$"):
            model.generate("", 5, **kw)


def test_finite_numpy_sampling_controls_are_accepted():
    check_sampling(np.float32(0.7), np.int64(3), np.float64(0.9))     # no error: numpy scalars are numbers


def test_generate_needs_a_tokenizer():
    model = LanguageModel(5, 4, 4, seed=0)
    with pytest.raises(ConfigError, match="tokenizer"):
        model.generate("x", 3)


def test_gumbel_blocks_repeat_the_generator_stream():
    """Drawing the noise in blocks changes nothing: the same numbers as one draw per step."""
    from seqnet.decoding import gumbel_blocks

    per_step = np.random.default_rng(4)
    blocks = gumbel_blocks(np.random.default_rng(4), (2, 5), block=3)
    for _ in range(7):                                   # crosses two block boundaries
        np.testing.assert_array_equal(next(blocks), per_step.gumbel(size=(2, 5)))


# --------------------------------------------------------------------------- beam search


def _continuation_log_probs(model, prime_ids, continuations, backend):
    """log p(continuation | prime) of each continuation (rows of ids), from whole-sequence forwards."""
    rows = np.array([np.concatenate([prime_ids, c]) for c in continuations]).T           # (T, N)
    logits, _ = model(backend.asarray(rows[:-1], "int64"))
    z = to_numpy(logits).astype(np.float64)
    logp = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
    start = len(prime_ids) - 1
    picked = np.take_along_axis(logp[start:], rows[len(prime_ids):, :, None], axis=-1)[..., 0]
    return picked.sum(axis=0)


def test_language_model_beam_search_finds_the_exhaustive_best(xb):
    """A wide beam (every prefix fits) returns the most likely continuations in order, checked
    against scoring every possible continuation with whole-sequence forwards."""
    import itertools

    tokenizer = CharTokenizer.fit("abc")
    with seqnet.backend(xb):
        model = LanguageModel(tokenizer.vocab_size, 4, 6, cell="gru", seed=4, tokenizer=tokenizer)
    length, prime = 3, tokenizer.encode("ab")
    known = [k for k in range(tokenizer.vocab_size) if k != tokenizer.unk_id]
    every = [np.array(c) for c in itertools.product(known, repeat=length)]
    scores = _continuation_log_probs(model, prime, every, xb)
    best = np.argsort(-scores, kind="stable")[:3]
    texts = model.generate("ab", length, beam=len(known) ** (length - 1), num_samples=3)
    assert texts == ["ab" + tokenizer.decode(every[k]) for k in best]


def test_language_model_beam_of_one_is_greedy_and_wider_beams_score_higher():
    model = _char_model(seed=5)
    assert model.generate("the ", 12, beam=1) == model.generate("the ", 12, greedy=True)
    tokenizer = model.tokenizer
    prime = tokenizer.encode("the ")
    with seqnet.backend("numpy") as backend:
        greedy, wide = (tokenizer.encode(t)[len(prime):] for t in
                        (model.generate("the ", 12, greedy=True)[0], model.generate("the ", 12, beam=6)[0]))
        greedy_score, wide_score = _continuation_log_probs(model, prime, [greedy, wide], backend)
    assert wide_score >= greedy_score


def test_word_model_beam_stops_at_eos_and_returns_the_n_best():
    tokenizer = WordTokenizer.fit(TEXT)
    model = LanguageModel(tokenizer.vocab_size, 6, 8, cell="lstm", seed=1, tokenizer=tokenizer)
    _set_bias(model, {tokenizer.eos_id: 40.0})
    assert model.generate("the cat", 20, beam=3) == ["the cat\n"]
    texts = model.generate("the cat", 4, beam=4, num_samples=4, stop_at_eos=False, block_ngram=1)
    assert len(set(texts)) == 4 and all(t.startswith("the cat") for t in texts)


def test_beam_refuses_sampling_controls_and_bad_widths():
    model = _char_model()
    with pytest.raises(ConfigError, match=r"^top_k: beam search does not sample \(drop it or beam\); received top_k=3$"):
        model.generate("the", 5, beam=2, top_k=3)
    # "given" is by value, not by comparison with a default: top_k=1, top_p=1.0, temperature=1 are given
    for kw in ({"top_k": 1}, {"top_p": 1.0}, {"temperature": 1}, {"seed": 3}, {"greedy": True}):
        (name, value), = kw.items()
        with pytest.raises(ConfigError, match=rf"^{name}: beam search does not sample \(drop it or beam\); "
                                              rf"received {name}={value!r}$"):
            model.generate("the", 5, beam=2, **kw)
    with pytest.raises(ConfigError, match="beam: expected a positive integer, received 0"):
        model.generate("the", 5, beam=0)
    for length in (5, 0):                                             # the same answer whatever the length
        with pytest.raises(ConfigError, match=r"^num_samples: beam search returns at most beam = 2 continuations, "
                                              r"received 3$"):
            model.generate("the", length, beam=2, num_samples=3)
    for kw in ({"block_ngram": 2}, {"length_penalty": "avg"}, {"alpha": 1.0}):      # not silently dropped
        (name, value), = kw.items()
        with pytest.raises(ConfigError, match=rf"^{name}: a beam search setting; pass beam=K \(beam=1: greedy "
                                              rf"search with it\), received {name}={value!r}$"):
            model.generate("the", 5, **kw)
    (blocked,) = model.generate("the", 6, beam=1, block_ngram=1)
    assert len(set(blocked[3:])) == len(blocked[3:]) == 6              # greedy, no character twice after the prime
    letters = len(set(TEXT))
    with pytest.raises(ConfigError, match=rf"^block_ngram: no continuation of {letters + 1} tokens avoids repeating "
                                          r"a 1-gram of itself; lower length or block_ngram$"):
        model.generate("the", letters + 1, beam=1, block_ngram=1)       # more tokens than the vocabulary has
