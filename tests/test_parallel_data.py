"""Parallel data (readers, encoding, batches), vocabularies and the translation metrics.

Readers: every malformed line named by file and line. Metrics against hand-computed values
(and sacrebleu's corpus BLEU where it is installed).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from seqnet.data.parallel import PairBatcher, encode_pairs, pad_batch, read_pairs
from seqnet.data.vocabulary import BOS_ID, EOS_ID, PAD_ID, SEQUENCE_SPECIALS, UNK_ID, Vocabulary
from seqnet.errors import CorpusError
from seqnet.metrics import char_error_rate, corpus_bleu, edit_distance, exact_match, token_accuracy


def test_tsv_and_jsonl_readers(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("a b\tb a\n\nc\td\n", encoding="utf-8")
    assert read_pairs(tsv) == [("a b", "b a"), ("c", "d")]             # the blank line is skipped
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(json.dumps({"source": "x\ty", "target": "z"}) + "\n", encoding="utf-8")
    assert read_pairs(jsonl) == [("x\ty", "z")]                         # tabs are fine inside JSON


@pytest.mark.parametrize("content,suffix,message", [
    ("a\tb\nno tab here\n", ".tsv", r"pairs.tsv:2: expected one pair as source<TAB>target, found no tab"),
    ("a\tb\tc\n", ".tsv", r"pairs.tsv:1: expected one pair as source<TAB>target, found 2 tabs"),
    ("a\tb\n \tb\n", ".tsv", r"pairs.tsv:2: empty source; every pair needs both sides"),
    ("a\t\n", ".tsv", r"pairs.tsv:1: empty target"),
    ('{"source": "a", "target": "b"}\n{"source": "a"\n', ".jsonl", r"pairs.jsonl:2: not valid JSON"),
    ('{"source": "a", "target": 3}\n', ".jsonl", r'pairs.jsonl:1: expected an object \{"source": "...", "target"'),
    ("\n\n", ".tsv", r"pairs.tsv: holds no pairs"),
])
def test_malformed_lines_are_named_by_file_and_line(tmp_path, content, suffix, message):
    path = tmp_path / f"pairs{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        read_pairs(path)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="nope.tsv: no such file"):
        read_pairs(tmp_path / "nope.tsv")


def test_vocabulary_specials_and_round_trip():
    chars = Vocabulary.fit(["abba", "cab"], kind="char", specials=SEQUENCE_SPECIALS)
    assert chars.symbols[:4] == ("<PAD>", "<UNK>", "<BOS>", "<EOS>")
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert chars.symbols[4:] == ("a", "b", "c")                          # by frequency: a 3, b 3 (ties by text), c 1
    np.testing.assert_array_equal(chars.encode("cabz"), [6, 4, 5, UNK_ID])
    assert chars.decode(chars.encode("abc")) == "abc"
    words = Vocabulary.fit(["the cat  sat", "the dog"], kind="word", specials=SEQUENCE_SPECIALS, max_size=2)
    assert words.symbols[4:] == ("the", "cat")
    assert words.decode(words.encode("the  cat")) == "the cat"
    assert Vocabulary.from_json(words.to_json()) == words


def test_encode_pairs_refuses_long_and_empty_sides():
    vocab = Vocabulary.fit(["a b c"], kind="word", specials=SEQUENCE_SPECIALS)
    with pytest.raises(CorpusError, match=r"train.tsv, pair 2: the target has 3 tokens, more than --max-target-len 2; "
                                          r"raise --max-target-len"):
        encode_pairs([("a", "b"), ("a", "a b c")], vocab, vocab, where="train.tsv", max_target_len=2)
    with pytest.raises(CorpusError, match="pair 1: the source has 3 tokens, more than --max-source-len 1"):
        encode_pairs([("a b c", "b")], vocab, vocab, where="x", max_source_len=1)


def test_pad_batch_layout():
    vocab = Vocabulary.fit(["abc"], kind="char", specials=SEQUENCE_SPECIALS)
    pairs = encode_pairs([("ab", "c"), ("c", "ba")], vocab, vocab, where="x")
    src, lengths, tgt_in, tgt_out, mask = pad_batch(pairs, [0, 1])
    a, b, c = vocab.encode("abc")
    np.testing.assert_array_equal(src, [[a, c], [b, PAD_ID]])
    np.testing.assert_array_equal(lengths, [2, 1])
    np.testing.assert_array_equal(tgt_in, [[BOS_ID, BOS_ID], [c, b], [PAD_ID, a]])
    np.testing.assert_array_equal(tgt_out, [[c, b], [EOS_ID, a], [PAD_ID, EOS_ID]])
    np.testing.assert_array_equal(mask, [[True, True], [True, True], [False, True]])


def test_pair_batcher_covers_each_epoch_and_resumes():
    batcher = PairBatcher(10, 3, seed=4)
    epoch0 = np.concatenate([batcher.next_indices() for _ in range(3)])
    assert len(set(epoch0.tolist())) == 9                                 # no repeats within an epoch
    state = batcher.state_dict()
    ahead = [batcher.next_indices().tolist() for _ in range(4)]
    again = PairBatcher(10, 3, seed=4)
    again.load_state_dict(state)
    assert [again.next_indices().tolist() for _ in range(4)] == ahead
    with pytest.raises(CorpusError, match="--batch: expected at most the 2 training pairs, received 3"):
        PairBatcher(2, 3, seed=0)


# --------------------------------------------------------------------------- metrics


def test_exact_match_token_accuracy_and_cer_by_hand():
    outputs, refs = ["1979-05-03", "1979-05-0", "x"], ["1979-05-03", "1979-05-03", "yz"]
    assert exact_match(outputs, refs) == pytest.approx(1 / 3)
    # matches 10 + 9 + 0 over max lengths 10 + 10 + 2
    assert token_accuracy([list(o) for o in outputs], [list(r) for r in refs]) == pytest.approx(19 / 22)
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "ab") == 2
    assert char_error_rate(outputs, refs) == pytest.approx((0 + 1 + 2) / 22)


def test_corpus_bleu_by_hand():
    """Papineni et al.'s definition on a two-sentence corpus, worked out here."""
    out = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog"]]
    ref = [["the", "cat", "sat", "on", "a", "mat"], ["a", "dog", "barked"]]
    # clipped matches / possible n-grams: 1-grams (5+2)/8, 2-grams (3+1)/6, 3-grams 2/4, 4-grams 1/3
    precision = math.exp((math.log(7 / 8) + math.log(4 / 6) + math.log(2 / 4) + math.log(1 / 3)) / 4)
    brevity = math.exp(1 - 9 / 8)
    assert corpus_bleu(out, ref) == pytest.approx(100 * brevity * precision, rel=1e-12)
    assert corpus_bleu(ref, ref) == pytest.approx(100.0)
    assert corpus_bleu([["x", "y"]], [["a", "b"]]) == 0.0
    # clipping: a repeated word counts at most as often as in the reference
    assert corpus_bleu([["the"] * 4], [["the", "cat", "the", "dog"]]) == 0.0


def test_corpus_bleu_agrees_with_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = np.random.default_rng(0)
    words = "a b c d e f g".split()
    refs = [list(rng.choice(words, size=rng.integers(4, 12))) for _ in range(30)]
    outs = [r[:-1] + ["a"] if k % 3 else r for k, r in enumerate(refs)]
    theirs = sacrebleu.corpus_bleu([" ".join(o) for o in outs], [[" ".join(r) for r in refs]], tokenize="none",
                                   smooth_method="none").score
    assert corpus_bleu(outs, refs) == pytest.approx(theirs, rel=1e-9)
