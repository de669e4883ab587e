"""Tokenizers: expected ids are worked out by hand from each tokenizer's documented rules."""

import json

import numpy as np
import pytest

from seqnet.data import (
    ByteTokenizer,
    CharTokenizer,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_json,
)
from seqnet.errors import ConfigError

UNICODE_TEXT = "héllo wörld 🙂\n日本語, naïve café\n"


# --- char -------------------------------------------------------------------------------------


def test_char_vocabulary_is_unk_then_sorted_characters():
    tokenizer = CharTokenizer.fit(["cab", "b"])
    assert tokenizer.vocabulary == ("<UNK>", "a", "b", "c")
    assert (tokenizer.kind, tokenizer.vocab_size, tokenizer.unk_id, tokenizer.eos_id) == (
        "char", 4, 0, None,
    )


def test_char_encode_gives_hand_computed_ids_and_unk_for_unseen():
    tokenizer = CharTokenizer.fit(["ba"])  # <UNK>=0, a=1, b=2
    ids = tokenizer.encode("abzb")
    assert ids.dtype == np.int64 and ids.shape == (4,)
    assert ids.tolist() == [1, 2, 0, 2]
    assert tokenizer.decode(ids) == "ab<UNK>b"


def test_char_round_trip_unicode():
    tokenizer = CharTokenizer.fit([UNICODE_TEXT])
    assert tokenizer.vocab_size == len(set(UNICODE_TEXT)) + 1
    assert len(tokenizer.encode(UNICODE_TEXT)) == len(UNICODE_TEXT)  # one id per code point
    assert tokenizer.decode(tokenizer.encode(UNICODE_TEXT)) == UNICODE_TEXT


def test_char_fit_streams_chunks_from_a_one_shot_generator():
    chunks = (UNICODE_TEXT[i : i + 3] for i in range(0, len(UNICODE_TEXT), 3))
    assert CharTokenizer.fit(chunks).vocabulary == CharTokenizer.fit([UNICODE_TEXT]).vocabulary


# --- byte -------------------------------------------------------------------------------------


def test_byte_encodes_utf8_bytes():
    tokenizer = ByteTokenizer()
    assert tokenizer.encode("aé").tolist() == [0x61, 0xC3, 0xA9]
    assert (tokenizer.kind, tokenizer.vocab_size, tokenizer.unk_id, tokenizer.eos_id) == (
        "byte", 256, None, None,
    )


def test_byte_round_trip_unicode():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(UNICODE_TEXT)
    assert len(ids) == len(UNICODE_TEXT.encode("utf-8"))
    assert tokenizer.decode(ids) == UNICODE_TEXT


def test_byte_handles_bytes_that_are_not_utf8():
    tokenizer = ByteTokenizer()
    assert tokenizer.encode(b"a\xff\xfe").tolist() == [0x61, 0xFF, 0xFE]
    assert tokenizer.decode([0x61, 0xFF]) == "a\ufffd"


# --- word -------------------------------------------------------------------------------------

WORD_TEXT = "the cat sat.\nthe dog sat!\n"
# counts: the 2, sat 2, then 1 each for "!", ".", "cat", "dog"; ties go to the smaller string.


def test_word_vocabulary_is_most_frequent_with_deterministic_ties():
    tokenizer = WordTokenizer.fit([WORD_TEXT], max_words=3)
    assert tokenizer.vocabulary == ("<UNK>", "<EOS>", "sat", "the", "!")
    assert (tokenizer.kind, tokenizer.unk_id, tokenizer.eos_id) == ("word", 0, 1)


def test_word_encode_gives_hand_computed_ids():
    tokenizer = WordTokenizer.fit([WORD_TEXT], max_words=3)
    # the=3 cat=<UNK> sat=2 .=<UNK> \n=<EOS>
    assert tokenizer.encode("the cat sat.\n").tolist() == [3, 0, 2, 0, 1]


def test_word_round_trip_of_space_separated_text_and_eos_to_newline():
    text = "hello , wörld !\n\nsecond line 42\n"
    tokenizer = WordTokenizer.fit([text], max_words=100)
    ids = tokenizer.encode(text)
    assert (ids == tokenizer.eos_id).sum() == 3
    assert tokenizer.decode(ids) == text


def test_word_splits_punctuation_into_tokens_and_normalises_spacing():
    tokenizer = WordTokenizer.fit(["don't stop."], max_words=100)
    assert tokenizer.decode(tokenizer.encode("don't  stop.")) == "don ' t stop ."


def test_word_fit_from_chunks_matches_fit_from_whole_text():
    chunks = ["the cat ", "sat.\nthe ", "dog sat!\n"]  # chunks cut after whitespace
    assert WordTokenizer.fit(chunks, max_words=3).vocabulary == WordTokenizer.fit(
        [WORD_TEXT], max_words=3
    ).vocabulary


@pytest.mark.parametrize("max_words", [0, -1, 2.5, True])
def test_word_rejects_bad_max_words(max_words):
    with pytest.raises(ConfigError, match="max_words"):
        WordTokenizer.fit([WORD_TEXT], max_words=max_words)


# --- JSON and factory -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
def test_json_round_trip(kind):
    tokenizer = make_tokenizer(kind, [UNICODE_TEXT], max_words=50)
    restored = tokenizer_from_json(json.loads(json.dumps(tokenizer.to_json())))
    assert type(restored) is type(tokenizer)
    assert restored.kind == kind and restored.vocab_size == tokenizer.vocab_size
    assert restored.to_json()["vocabulary"] == tokenizer.to_json()["vocabulary"]
    assert restored.fingerprint() == tokenizer.fingerprint()
    assert np.array_equal(restored.encode(UNICODE_TEXT), tokenizer.encode(UNICODE_TEXT))


def test_fingerprint_differs_for_different_vocabularies():
    assert CharTokenizer.fit(["ab"]).fingerprint() != CharTokenizer.fit(["abc"]).fingerprint()


@pytest.mark.parametrize(
    "malformed, message",
    [
        (["char"], "expected a dict"),
        ({"vocabulary": ["<UNK>", "a"]}, "kind"),
        ({"kind": "bpe", "vocabulary": []}, "kind"),
        ({"kind": "char"}, "vocabulary"),
        ({"kind": "char", "vocabulary": "abc"}, "vocabulary"),
        ({"kind": "char", "vocabulary": ["a", "<UNK>"]}, "<UNK>"),
        ({"kind": "char", "vocabulary": ["<UNK>", "b", "a"]}, "sorted"),
        ({"kind": "char", "vocabulary": ["<UNK>", "a", "a"]}, "repeats"),
        ({"kind": "char", "vocabulary": ["<UNK>", "ab"]}, "single characters"),
        ({"kind": "char", "vocabulary": ["<UNK>", "a"], "vocab_size": 3}, "vocab_size"),
        ({"kind": "word", "vocabulary": ["<UNK>", "x"]}, "<EOS>"),
        ({"kind": "word", "vocabulary": ["<UNK>", "<EOS>", "a b"]}, "without spaces"),
        ({"kind": "word", "vocabulary": ["<UNK>", "<EOS>", "a", "a"]}, "repeat"),
        ({"kind": "byte", "vocab_size": 300}, "vocab_size"),
    ],
)
def test_malformed_json_dict_is_rejected(malformed, message):
    with pytest.raises(ConfigError, match=message):
        tokenizer_from_json(malformed)


def test_make_tokenizer_rejects_unknown_kind():
    with pytest.raises(ConfigError, match=r"kind: expected one of char, byte, word, got 'bpe'"):
        make_tokenizer("bpe", ["abc"])


@pytest.mark.parametrize("bad_ids", [[0, 9], [-1], [[1, 2]], [0.5]])
def test_decode_rejects_ids_outside_the_vocabulary(bad_ids):
    with pytest.raises(ConfigError, match="ids"):
        CharTokenizer.fit(["abc"]).decode(bad_ids)
