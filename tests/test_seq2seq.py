"""The encoder-decoder against independent oracles.

Every parameter gradient of ``loss_and_grads`` (masked cross-entropy over padded targets,
variable source lengths) against float64 central differences of ``loss``: every attention
type with and without input feeding, every cell (layer-norm LSTM included), stacked and
bidirectional, dropout with fixed masks; on numpy in full and on every other backend once.
The decoding steps fed the reference target reproduce the teacher-forced logits; padding a
source changes nothing; beam width 1 equals greedy and a wider beam scores at least as high
on these models; attention weights of translations are distributions over the source.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import seqnet
from seqnet import to_numpy
from seqnet.data.vocabulary import BOS_ID, EOS_ID, PAD_ID, SEQUENCE_SPECIALS
from seqnet.decoding import beam_search, sample_search
from seqnet.errors import ConfigError
from seqnet.models import Seq2Seq

SRC_V, TGT_V, E, H = 7, 8, 3, 4
SRC = np.array([[4, 5, 6], [5, 6, 4], [6, PAD_ID, 4], [4, PAD_ID, PAD_ID]])      # (S=4, B=3)
LENGTHS = np.array([4, 2, 3])
TGT = [[5, 6, 7, 4], [7], [6, 6]]                                                 # target tokens per source


def _targets(rows=TGT):
    """(tgt_in, tgt_out, mask) (T, B): <BOS> y / y <EOS>, padded."""
    steps = max(len(r) for r in rows) + 1
    tgt_in = np.full((steps, len(rows)), PAD_ID)
    tgt_out = np.full((steps, len(rows)), PAD_ID)
    for b, r in enumerate(rows):
        tgt_in[:len(r) + 1, b] = [BOS_ID, *r]
        tgt_out[:len(r) + 1, b] = [*r, EOS_ID]
    return tgt_in, tgt_out, tgt_out != PAD_ID


def _model(attention="general", input_feed=True, cell="lstm", layers=2, bidirectional=True, dropout=0.0,
           layer_norm=False, dtype="float64", seed=0, **kw):
    return Seq2Seq(SRC_V, TGT_V, E, H, layers, cell, bidirectional, attention, input_feed, dropout=dropout,
                   layer_norm=layer_norm, dtype=dtype, seed=seed, **kw)


def _device(model, backend):
    tgt_in, tgt_out, mask = _targets()
    ids = lambda a: backend.asarray(np.asarray(a, dtype=np.int64), "int64")   # noqa: E731
    return ids(SRC), LENGTHS, ids(tgt_in), ids(tgt_out), backend.asarray(mask)


def check_model_gradients(model, backend, entries: int, dropout_seed=None):
    batch = _device(model, backend)

    def loss():
        if dropout_seed is not None:
            model.dropout_rng.bit_generator.state = np.random.default_rng(dropout_seed).bit_generator.state
            return float(to_numpy(_training_loss(model, batch, grads=False)))
        return float(to_numpy(model.loss(*batch)))

    model.zero_grad()
    if dropout_seed is not None:
        model.dropout_rng.bit_generator.state = np.random.default_rng(dropout_seed).bit_generator.state
    _training_loss(model, batch, grads=True)
    grads = {k: to_numpy(v) for k, v in model.grads.items()}
    params = {k: to_numpy(v) for k, v in model.state_dict().items()}
    assert set(grads) == set(params)
    rng = np.random.default_rng(1)
    worst = 0.0
    for name, value in params.items():
        flat = value.reshape(-1)
        idx = rng.choice(flat.size, size=min(entries, flat.size), replace=False)
        numeric = []
        for i in idx:
            saved = flat[i]
            flat[i] = saved + 1e-6
            model.load_state_dict(params)
            up = loss()
            flat[i] = saved - 1e-6
            model.load_state_dict(params)
            down = loss()
            flat[i] = saved
            numeric.append((up - down) / 2e-6)
        analytic = grads[name].reshape(-1)[idx]
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8, err_msg=name)
        worst = max(worst, float(np.max(np.abs(analytic - np.asarray(numeric)))))
    model.load_state_dict(params)
    assert any(np.any(g != 0) for g in grads.values())
    return grads


def _training_loss(model, batch, grads: bool):
    """The training objective with dropout active (loss_and_grads), optionally without keeping the gradients."""
    saved = {k: v for k, v in model.param_grads.items()}
    loss = model.loss_and_grads(*batch[:4], batch[4])
    if not grads:
        for k, v in saved.items():
            model.param_grads[k] = v
    return loss


@pytest.mark.parametrize("input_feed", [True, False], ids=["feed", "no-feed"])
@pytest.mark.parametrize("attention", ["none", "bahdanau", "dot", "general"])
def test_whole_model_gradients_every_attention_numpy(attention, input_feed):
    if attention == "none" and not input_feed:
        pytest.skip("without attention there is no input feeding: the other case covers it")
    with seqnet.backend("numpy") as backend:
        grads = check_model_gradients(_model(attention, input_feed), backend, entries=6)
    # padded source positions feed nothing: the encoder's input gradient at them is zero
    assert "src_embedding.weight" in grads and np.any(grads["src_embedding.weight"][PAD_ID] == 0)


@pytest.mark.parametrize("cell,layer_norm,bidirectional", [("gru", False, True), ("rnn", False, False),
                                                          ("lstm", True, True), ("gru", False, False)],
                         ids=["gru", "rnn-unidirectional", "lstm_ln", "gru-unidirectional"])
def test_whole_model_gradients_every_cell_numpy(cell, layer_norm, bidirectional):
    with seqnet.backend("numpy") as backend:
        check_model_gradients(_model("bahdanau", True, cell, layer_norm=layer_norm, bidirectional=bidirectional),
                              backend, entries=5)


def test_whole_model_gradients_with_dropout_and_shared_embeddings():
    """dropout=0.3 everywhere it applies (embeddings, between layers, attentional outputs,
    stepped and whole): backward is exact for the masks drawn; one table for both sides."""
    with seqnet.backend("numpy") as backend:
        model = Seq2Seq(TGT_V, TGT_V, E, H, 2, "lstm", True, "general", True, dropout=0.3, share_embeddings=True,
                        dtype="float64", seed=3)
        assert "tgt_embedding.weight" not in model.state_dict()
        check_model_gradients(model, backend, entries=5, dropout_seed=11)
        check_model_gradients(Seq2Seq(SRC_V, TGT_V, E, H, 2, "gru", True, "dot", False, dropout=0.3,
                                      dtype="float64", seed=4), backend, entries=5, dropout_seed=12)


def test_whole_model_gradients_every_backend(xb64):
    if xb64.name == "numpy":
        pytest.skip("numpy runs the full matrix above")
    entries = 2 if xb64.name == "array_api_strict" else 3
    check_model_gradients(_model("bahdanau", True, "lstm", layers=1), xb64, entries=entries)


def test_float32_training_and_translation_every_backend(xb):
    """The float32 path end to end (no float64 leak on strict's no_float64 device)."""
    model = _model("general", True, dtype="float32", layers=1)
    batch = _device(model, xb)
    loss = model.loss_and_grads(*batch[:4], batch[4])
    assert xb.owns(loss) and np.isfinite(float(to_numpy(loss)))
    assert all(xb.owns(g) for g in model.param_grads.values())
    (result,) = model.translate([np.array([4, 5, 6])], beam=2, max_len_b=4)
    assert len(result.outputs) == 1 and result.attention[0].shape[1] == 3


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("attention,input_feed", [("none", False), ("general", True), ("bahdanau", False)])
def test_decoding_steps_reproduce_the_teacher_forced_logits(xb64, attention, input_feed):
    """Feeding the reference target token by token through the inference steps gives the
    logits of the training forward (no dropout) at every step."""
    model = _model(attention, input_feed, seed=5)
    src, lengths, tgt_in, _, _ = _device(model, xb64)
    want = to_numpy(model(src, lengths, tgt_in))                                 # (T, B, V)
    steps = model.steps(SRC, LENGTHS)
    host_in = to_numpy(tgt_in)
    logits, state = steps.start(host_in[:1])
    got = [logits]
    for t in range(1, host_in.shape[0]):
        logits, state = steps.step(host_in[t], state)
        got.append(logits)
    np.testing.assert_allclose(np.stack(got), want, rtol=1e-10, atol=1e-12)


def test_padding_a_source_changes_nothing():
    """The same sources with two more padded positions: identical logits (masks in the encoder and attention)."""
    with seqnet.backend("numpy") as backend:
        model = _model("bahdanau", True, seed=6)
        src, lengths, tgt_in, _, _ = _device(model, backend)
        padded = np.concatenate([SRC, np.full((2, SRC.shape[1]), PAD_ID)], axis=0)
        a = to_numpy(model(src, lengths, tgt_in))
        b = to_numpy(model(backend.asarray(padded, "int64"), lengths, tgt_in))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        padded[-1, 0] = 5                                  # a token past the length is not read either
        np.testing.assert_allclose(a, to_numpy(model(backend.asarray(padded, "int64"), lengths, tgt_in)),
                                   rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("attention", ["none", "dot", "general"])
def test_beam_of_one_is_greedy_and_wider_beams_score_higher(attention):
    with seqnet.backend("numpy"):
        model = _model(attention, True, seed=7, dtype="float32")
    rng = np.random.default_rng(8)
    sources = [rng.integers(4, SRC_V, size=n) for n in (2, 5, 3, 6, 4, 1, 5, 3)]
    prefix = np.full((1, 1), BOS_ID)
    for src in sources:
        col, length = src[:, None], np.array([len(src)])
        greedy = sample_search(model.steps(col, length), prefix, 12, greedy=True, eos_id=EOS_ID, banned_ids=(1, 0, 2))
        one = beam_search(model.steps(col, length), prefix, 12, beam=1, eos_id=EOS_ID, banned_ids=(1, 0, 2))
        assert tuple(one[0][0].tokens) == tuple(greedy[0].tokens)
        assert one[0][0].score == pytest.approx(greedy[0].score, rel=1e-9)
        wide = beam_search(model.steps(col, length), prefix, 12, beam=4, eos_id=EOS_ID, banned_ids=(1, 0, 2))
        assert wide[0][0].score >= greedy[0].score - 1e-9
    translated = model.translate(sources, beam=1)
    assert [tuple(t.tokens[0]) for t in translated] == [
        tuple(sample_search(model.steps(s[:, None], np.array([len(s)])), prefix, int(1.5 * len(s)) + 10, greedy=True,
                            eos_id=EOS_ID, banned_ids=(1, 0, 2))[0].tokens) for s in sources]


def test_translate_returns_n_best_scores_and_source_attention():
    with seqnet.backend("numpy"):
        model = _model("bahdanau", True, seed=9)
    sources = [np.array([4, 5, 6, 4]), np.array([6])]
    results = model.translate(sources, beam=3, n_best=3, max_len_a=0.0, max_len_b=5)
    for src, result in zip(sources, results):
        assert len(result.outputs) == len(result.scores) == len(result.attention) == 3
        assert result.normalized == sorted(result.normalized, reverse=True)
        for tokens, att in zip(result.tokens, result.attention):
            assert len(tokens) <= 5 and not set(tokens.tolist()) & {0, 1, 2}
            assert att.shape[1] == len(src) and att.shape[0] in (len(tokens), len(tokens) + 1)
            np.testing.assert_allclose(att.sum(axis=1), 1.0, rtol=1e-10)


def test_state_dict_round_trip_and_names():
    model = _model("bahdanau", True, seed=1)
    names = set(model.state_dict())
    assert {"encoder.weight_ih_l0_reverse", "bridge_h.weight", "bridge_c.weight", "attention.v.weight",
            "decoder.weight_ih_l1", "generator.bias", "src_embedding.weight", "tgt_embedding.weight"} <= names
    assert model.decoder.input_size == E + H
    other = _model("bahdanau", True, seed=2)
    other.load_state_dict(model.state_dict())
    with seqnet.backend("numpy") as backend:
        batch = _device(model, backend)
        assert float(to_numpy(model.loss(*batch))) == float(to_numpy(other.loss(*batch)))


def test_model_misuse():
    with pytest.raises(ConfigError, match="attention: expected one of none, bahdanau, dot, general, received 'luong'"):
        _model("luong")
    with pytest.raises(ConfigError, match="hidden_size: a bidirectional encoder splits it"):
        Seq2Seq(5, 5, 3, 5, bidirectional=True)
    model = _model()
    with pytest.raises(ConfigError, match="beam: expected a positive integer, received 0"):
        model.translate([np.array([4])], beam=0)
    with pytest.raises(ConfigError, match="n_best: expected at most beam = 2 outputs per source, received 3"):
        model.translate([np.array([4])], beam=2, n_best=3)
    with pytest.raises(ConfigError, match=r"sources\[0\]: expected at least one token"):
        model.translate([np.array([], dtype=np.int64)])
    with pytest.raises(ConfigError, match="no source vocabulary"):
        model.translate(["abc"])
    with pytest.raises(ConfigError, match=r"^sources: expected a list of texts \(or id arrays\), received one 1-D "
                                          r"array; wrap one source in a list$"):
        model.translate(np.array([4, 5]))
    with seqnet.backend("numpy") as backend:
        src, _, tgt_in, _, _ = _device(model, backend)
        with pytest.raises(ConfigError, match=r"src_lengths: every length must lie in 1..4 \(S\), received \[5\]"):
            model(src, np.array([5, 2, 3]), tgt_in)


def test_translate_by_sampling_is_seeded_and_never_writes_specials():
    with seqnet.backend("numpy"):
        model = _model("dot", True, seed=10, dtype="float32")
    sources = [np.array([4, 5, 6])] * 40
    first = model.translate(sources, sample=True, seed=3, temperature=1.5)
    again = model.translate(sources, sample=True, seed=3, temperature=1.5)
    assert [t.outputs for t in first] == [t.outputs for t in again]
    assert len({t.outputs[0] for t in first}) > 1                       # draws, not the argmax every time
    assert all(not set(t.tokens[0].tolist()) & {0, 1, 2} for t in first)
    with pytest.raises(ConfigError, match="sample: sampling draws one output per source"):
        model.translate(sources[:1], sample=True, beam=2)


def test_translate_refuses_one_text_for_a_list_of_texts():
    vocab = seqnet.data.Vocabulary.fit(["abc"], kind="char", specials=SEQUENCE_SPECIALS)    # 4 specials + a, b, c
    assert vocab.vocab_size == SRC_V
    model = _model(src_vocab=vocab)
    assert len(model.translate(["abc", "ca"])) == 2
    for one in ("abc", b"abc"):                  # not three translations, one per character
        with pytest.raises(ConfigError, match=rf"^sources: expected a list of texts \(or id arrays\), received a "
                                              rf"{type(one).__name__}; wrap one text in a list$"):
            model.translate(one)


def test_vocabularies_must_have_the_sequence_specials_and_the_model_s_sizes():
    tagging = seqnet.data.Vocabulary.fit(["abc"], kind="char")                    # <UNK> only: ids 0-3 differ
    with pytest.raises(ConfigError, match=r"^src_vocab: expected the specials <PAD>, <UNK>, <BOS>, <EOS> at ids 0-3 "
                                          r"\(Vocabulary.fit\(..., specials=SEQUENCE_SPECIALS\)\), received "
                                          r"\['<UNK>'\]$"):
        Seq2Seq(4, 4, embed_size=4, hidden_size=6, src_vocab=tagging, tgt_vocab=tagging)
    vocab = seqnet.data.Vocabulary.fit(["abc"], kind="char", specials=SEQUENCE_SPECIALS)     # 7 symbols
    with pytest.raises(ConfigError, match=r"^tgt_vocab: expected 9 symbols \(the model's tgt_vocab_size\), "
                                          r"received a vocabulary of 7$"):
        Seq2Seq(7, 9, embed_size=4, hidden_size=6, src_vocab=vocab, tgt_vocab=vocab)
    with pytest.raises(ConfigError, match=r"^src_vocab: expected a seqnet.data.Vocabulary \(or None\), received "
                                          r"dict$"):
        Seq2Seq(7, 7, embed_size=4, hidden_size=6, src_vocab={"a": 4})
    with pytest.raises(ConfigError, match=r"^tgt_vocab_size: expected at least 4 ids \(ids 0-3 are <PAD>, <UNK>, "
                                          r"<BOS>, <EOS>\), received 3$"):
        Seq2Seq(8, 3, embed_size=4, hidden_size=6)                             # no <EOS>: it emitted <PAD>
    model = Seq2Seq(7, 7, embed_size=4, hidden_size=6, seed=0)
    with pytest.raises(ConfigError, match=r"^tgt_vocab: expected 7 symbols"):
        model.tgt_vocab = seqnet.data.Vocabulary.fit(["abcd"], kind="char", specials=SEQUENCE_SPECIALS)
    for flag in ("bidirectional", "input_feed", "share_embeddings"):
        with pytest.raises(ConfigError, match=rf"^{flag}: expected True or False, received 'no'$"):
            Seq2Seq(7, 7, embed_size=4, hidden_size=6, **{flag: "no"})


def test_translate_refuses_bad_sources_seeds_and_an_unused_seed():
    model = _model()
    sources = [np.array([4, 5])]
    with pytest.raises(ConfigError, match=r"^sources: expected a list of texts \(or id arrays\), received NoneType$"):
        model.translate(None)
    with pytest.raises(ConfigError, match=r"^seed: expected an integer >= 0 \(or None\), received 'x'$"):
        model.translate(sources, sample=True, seed="x")
    with pytest.raises(ConfigError, match=r"^seed: a sampling control; it needs sample=True \(search does not "
                                          r"sample\); received seed=3$"):
        model.translate(sources, seed=3)
    with pytest.raises(ConfigError, match=r"^temperature: a sampling control; it needs sample=True"):
        model.translate(sources, temperature=1.0)                     # given, though equal to the default
    with pytest.raises(ConfigError, match=r"^sample: expected True or False, received 'yes'$"):
        model.translate(sources, sample="yes")


def _greedy_with_blocking(model, src, limit, n):
    """Greedy search written out for one source: the most likely token that is not a special
    (<PAD>, <UNK>, <BOS>) and does not repeat an n-gram of the output so far (n = 0: none),
    until <EOS> or ``limit`` tokens. -> (tokens, log-probability, ended with <EOS>)."""
    steps = model.steps(src[:, None], np.array([len(src)]))
    logits, state = steps.start(np.full((1, 1), BOS_ID))
    seq, score = [], 0.0
    while True:
        z = np.asarray(logits[0], dtype=np.float64)
        logp = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
        allowed = logp.copy()
        allowed[[PAD_ID, 1, BOS_ID]] = -np.inf
        if n:
            for j in range(len(seq) - n + 1):            # the n-grams seq[j:j+n] already written
                if seq[j:j + n - 1] == seq[len(seq) - n + 1:]:
                    allowed[seq[j + n - 1]] = -np.inf
        w = int(np.argmax(allowed))
        score += logp[w]
        if w == EOS_ID:
            return tuple(seq), score, True
        seq.append(w)
        if len(seq) == limit:
            return tuple(seq), score, False
        logits, state = steps.step(np.array([w]), state)


def _repeats(seq, n):
    grams = [tuple(seq[j:j + n]) for j in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2])
def test_greedy_translation_honours_ngram_blocking(n):
    with seqnet.backend("numpy"):
        model = _model("general", True, seed=11)
    rng = np.random.default_rng(12)
    sources = [rng.integers(4, SRC_V, size=k) for k in (3, 6, 2, 8, 5, 7)]
    limits = [int(1.5 * len(s)) + 10 for s in sources]
    plain = model.translate(sources, beam=1)
    blocked = model.translate(sources, beam=1, block_ngram=n)
    assert any(_repeats(t.tokens[0].tolist(), n) for t in plain)        # blocking has something to do here
    for src, limit, p, b in zip(sources, limits, plain, blocked):
        assert not _repeats(b.tokens[0].tolist(), n)
        want, score, _ = _greedy_with_blocking(model, src, limit, n)
        assert tuple(b.tokens[0].tolist()) == want
        assert b.scores[0] == pytest.approx(score, rel=1e-9)
        want, score, _ = _greedy_with_blocking(model, src, limit, 0)     # and without blocking: plain greedy
        assert tuple(p.tokens[0].tolist()) == want and p.scores[0] == pytest.approx(score, rel=1e-9)
    # the greedy loop and a beam search of width 1 agree when nothing is blocked
    searched = [beam_search(model.steps(s[:, None], np.array([len(s)])), np.full((1, 1), BOS_ID), limit, beam=1,
                            eos_id=EOS_ID, banned_ids=(1, 0, 2))[0][0] for s, limit in zip(sources, limits)]
    assert [tuple(h.tokens.tolist()) for h in searched] == [tuple(t.tokens[0].tolist()) for t in plain]


def test_translate_refuses_lengths_it_cannot_meet_and_settings_it_would_ignore():
    model = _model()
    sources = [np.array([4, 5]), np.array([4, 5, 6, 4])]
    with pytest.raises(ConfigError, match=r"^max_len_a, max_len_b: both 0 allow an output of at most 0 tokens; "
                                          r"expected max_len_a > 0 or max_len_b > 0$"):
        model.translate(sources, max_len_a=0, max_len_b=0)
    for bad in (math.inf, math.nan, -1.0):
        with pytest.raises(ConfigError, match=rf"^max_len_a: expected a finite number >= 0, received {bad!r}$"):
            model.translate(sources, max_len_a=bad)
    with pytest.raises(ConfigError, match=r"^min_len: 4 is above the maximum output length 3 of sources\[0\]: "
                                          r"max_len_a \* 2 source tokens \+ max_len_b = 1.0 \* 2 \+ 1; lower min_len"):
        model.translate(sources, max_len_a=1.0, max_len_b=1, min_len=4)           # sources[1] allows 5
    with pytest.raises(ConfigError, match=r"sources\[0\] \(and 1 other sources\)"):
        model.translate(sources, max_len_a=1.0, max_len_b=1, min_len=6)
    for result in model.translate(sources, max_len_a=1.0, max_len_b=1, min_len=3):
        tokens = result.tokens[0]
        assert 3 <= len(tokens) <= 5                         # min_len tokens before <EOS>; at most the maximum
    with pytest.raises(ConfigError, match=r"^sample: sampling draws one output per source; it does not combine "
                                          r"with block_ngram = 2"):
        model.translate(sources, sample=True, block_ngram=2)
    with pytest.raises(ConfigError, match="it does not combine with length_penalty = 'avg'"):
        model.translate(sources, sample=True, length_penalty="avg", alpha=1.0)
    with pytest.raises(ConfigError, match=r"^top_k: a sampling control; it needs sample=True"):
        model.translate(sources, top_k=3)
    with pytest.raises(ConfigError, match=r"^temperature: a sampling control; it needs sample=True"):
        model.translate(sources, beam=2, temperature=0.5)
    with pytest.raises(ConfigError, match=r"^temperature: expected a finite number > 0, received inf"):
        model.translate(sources, sample=True, temperature=math.inf)
    with pytest.raises(ConfigError, match=r"^min_len, block_ngram: no output of sources\[0\] reaches min_len = 5 "
                                          r"tokens without repeating a 1-gram"):
        model.translate(sources, block_ngram=1, min_len=5)      # 4 target tokens besides the specials, none twice
    for result in model.translate(sources, block_ngram=1, min_len=4):
        assert sorted(result.tokens[0].tolist()) == [4, 5, 6, 7]                # each once, then only <EOS> is left
    with pytest.raises(ConfigError, match=r"^block_ngram: expected an integer >= 0, received -1"):
        model.translate(sources, block_ngram=-1)


@pytest.mark.parametrize("input_feed", [True, False], ids=["input-feed", "whole"])
def test_source_lengths_as_backend_arrays_and_the_loss_mask_are_checked(xb, input_feed):
    from seqnet.errors import DTypeError, ShapeError

    model = _model(input_feed=input_feed, dtype="float32")
    src, lengths, tgt_in, tgt_out, mask = _device(model, xb)
    host_loss = float(to_numpy(model.loss(src, lengths, tgt_in, tgt_out, mask)))
    device_lengths = xb.asarray(lengths, "int64")                        # on the model's device: read to the host
    assert abs(float(to_numpy(model.loss_and_grads(src, device_lengths, tgt_in, tgt_out, mask))) - host_loss) < 1e-6
    with pytest.raises(ShapeError, match=r"^src_lengths: expected one length per batch row, shape \(3,\), received "
                                         r"shape \(2,\)$"):
        model.loss(src, xb.asarray(lengths[:2], "int64"), tgt_in, tgt_out, mask)
    with pytest.raises(DTypeError, match=r"^mask: expected dtype bool, received an integer int64 array$"):
        model.loss_and_grads(src, lengths, tgt_in, tgt_out, xb.asarray(to_numpy(mask), "int64"))
    padded = np.where(to_numpy(mask), to_numpy(tgt_out), -100)           # padded targets are not read
    masked = float(to_numpy(model.loss(src, lengths, tgt_in, xb.asarray(padded, "int64"), mask)))
    assert abs(masked - host_loss) < 1e-6
    short = xb.asarray(to_numpy(tgt_out)[:-1], "int64")
    for call in (model.loss, model.loss_and_grads):
        with pytest.raises(ShapeError, match=r"^tgt_out: expected the shape of tgt_in \(\d+, 3\) \(T, B\), received "):
            call(src, lengths, tgt_in, short)
