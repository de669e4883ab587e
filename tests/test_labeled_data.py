"""Data readers on well-formed and malformed files (each error names file and line), the token
vocabulary and label sets, and the length-bucketing batcher."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from seqnet.data.buckets import BucketBatcher, pad_batch
from seqnet.data.labeled import TextExample, read_classification, read_conll, read_generation
from seqnet.data.parallel import read_pairs
from seqnet.data.vocabulary import LabelSet, Vocabulary
from seqnet.errors import ConfigError, DataFileError, SeqnetWarning
from seqnet.tasks.labeled import keep_examples, kept_examples


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_classification_formats(tmp_path):
    jsonl = _write(tmp_path / "a.jsonl", '{"text": "good film", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n')
    assert [(e.text, e.labels, e.where) for e in read_classification(jsonl)] == [
        ("good film", ("pos",), f"{jsonl}:1"), ("bad", ("neg",), f"{jsonl}:3")]
    multi = _write(tmp_path / "m.jsonl", '{"text": "x", "labels": ["b", "a", "b"]}\n{"text": "y", "labels": []}\n')
    assert [e.labels for e in read_classification(multi)] == [("a", "b"), ()]
    tsv = _write(tmp_path / "a.tsv", "pos\tgood\tfilm\nneg\tbad\n")
    assert [(e.labels, e.text) for e in read_classification(tsv)] == [(("pos",), "good\tfilm"), (("neg",), "bad")]
    assert [(e.labels, e.text) for e in read_classification(tsv, require_labels=False)] == [((), "good\tfilm"), ((), "bad")]
    plain = _write(tmp_path / "texts.txt", "first text\n\nsecond\n")
    assert [e.text for e in read_classification(plain, require_labels=False)] == ["first text", "second"]
    unlabelled = _write(tmp_path / "u.jsonl", '{"text": "x"}\n')
    assert read_classification(unlabelled, require_labels=False)[0].labels == ()
    sniffed = _write(tmp_path / "data.txt", '{"text": "t", "label": "l"}\n')
    assert read_classification(sniffed)[0].labels == ("l",)
    folders = tmp_path / "classes"
    (folders / "spam").mkdir(parents=True)
    (folders / "ham").mkdir()
    _write(folders / "spam" / "1.txt", "buy now")
    _write(folders / "ham" / "1.txt", "hello")
    assert [(e.labels, e.text) for e in read_classification(folders)] == [(("ham",), "hello"), (("spam",), "buy now")]


@pytest.mark.parametrize("name, text, message", [
    ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label}\n', r"bad.jsonl:2: malformed JSON"),
    ("bad.jsonl", '{"label": "x"}\n', r"bad.jsonl:1: missing the 'text' field"),
    ("bad.jsonl", '{"text": "a"}\n', r"bad.jsonl:1: expected exactly one of 'label'"),
    ("bad.jsonl", '{"text": "  ", "label": "x"}\n', r"bad.jsonl:1: empty 'text'"),
    ("bad.jsonl", '[1, 2]\n', r"bad.jsonl:1: expected a JSON object, received a list"),
    ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "labels": ["x"]}\n', r"bad.jsonl:2: has 'labels' but line 1"),
    ("bad.tsv", "pos\tok\nno tab here\n", r"bad.tsv:2: expected label<TAB>text"),
    ("bad.tsv", "pos\t \n", r"bad.tsv:1: empty text after the label 'pos'"),
    ("bad.tsv", "\n\n", r"bad.tsv: no examples"),
])
def test_classification_errors_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(DataFileError, match=message):
        read_classification(_write(tmp_path / name, text))


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(DataFileError, match="no such file or directory"):
        read_classification(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(b"pos\tok\nneg\tcaf\xe9\n")
    with pytest.raises(DataFileError, match=r"latin1.tsv:2: not valid UTF-8"):
        read_classification(bad)


def test_conll_reader(tmp_path):
    path = _write(tmp_path / "a.conll", "-DOCSTART- -X- O\n\nEU B-ORG\nrejects O\n\n\nPeter B-PER\n")
    sentences = read_conll(path)
    assert [(s.tokens, s.tags, s.lines) for s in sentences] == [
        (("EU", "rejects"), ("B-ORG", "O"), (3, 4)), (("Peter",), ("B-PER",), (7,))]
    chars = _write(tmp_path / "c.conll", "a\tB-NAME\n \tO\n=\tB-OP\n")
    assert read_conll(chars)[0].tokens == ("a", " ", "=")          # a space token, tab-separated


@pytest.mark.parametrize("text, message", [
    ("EU NNP B-ORG\nrejects VBZ\n", r"a.conll:2: expected 3 columns \(as on line 1\), received 2"),
    ("EU\n", r"a.conll:1: expected at least 2 columns"),
    ("\n\n-DOCSTART- O\n\n", r"a.conll: no sentence \(zero tokens\)"),
])
def test_conll_errors(tmp_path, text, message):
    with pytest.raises(DataFileError, match=message):
        read_conll(_write(tmp_path / "a.conll", text))


def test_generation_reader(tmp_path):
    path = _write(tmp_path / "g.jsonl", json.dumps({"condition": "class", "text": "Foo"}) + "\n")
    assert [(e.condition, e.text) for e in read_generation(path)] == [("class", "Foo")]
    with pytest.raises(DataFileError, match=r"g2.jsonl:1: missing the 'condition' field"):
        read_generation(_write(tmp_path / "g2.jsonl", '{"text": "x"}\n'))


def test_vocabulary_and_label_set():
    vocab = Vocabulary.fit([["a", "b", "a"], ["c", "a"]], max_size=2)
    assert vocab.symbols == ("<UNK>", "a", "b") and vocab.encode(["a", "c", "b"]).tolist() == [1, 0, 2]
    assert Vocabulary.from_json(vocab.to_json()).symbols == vocab.symbols
    labels = LabelSet.fit(["neg", "pos", "neg"], "label")
    assert labels.names == ("neg", "pos") and labels.id("pos") == 1
    with pytest.raises(DataFileError, match=r"v.tsv:3: label 'meh' never seen in training \(known: neg, pos\)"):
        labels.id("meh", "v.tsv:3")


def test_one_text_where_a_list_is_expected_is_refused():
    """A str would be iterated character by character: each would become a token, text or label."""
    with pytest.raises(ConfigError, match="^data: expected a list of texts, received a str; wrap one text in a list$"):
        Vocabulary.fit("the cat sat", kind="word")
    with pytest.raises(ConfigError, match="^data: expected a list of token lists, received a str"):
        Vocabulary.fit("abc")
    with pytest.raises(ConfigError, match=r"^data\[1\]: expected a token list .*received a str; pass kind='char'"):
        Vocabulary.fit([["a", "b"], "cab"])
    with pytest.raises(ConfigError, match="^tokens: expected a list of tokens, received a str; wrap one token"):
        Vocabulary("abc")
    with pytest.raises(ConfigError, match="^labels: expected a list of label names, received a str; wrap one name"):
        LabelSet.fit("pos", "label")
    with pytest.raises(ConfigError, match="^tags: expected a list of tag names, received a str"):
        LabelSet("B-PER", "tag")
    tokens = Vocabulary.fit([["ab", "c"]])
    with pytest.raises(ConfigError, match="text: this vocabulary takes token lists, not text"):
        tokens.encode("abc")                                  # not the characters a, b, c
    assert tokens.encode(["ab", "c", "x"]).tolist() == [1, 2, 0]
    assert Vocabulary.fit(["ab ba"], kind="word").symbols == ("<UNK>", "ab", "ba")   # a list of one text is fine


def test_bucket_batcher_covers_each_epoch_once_with_little_padding_and_is_reproducible():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, 1000)
    batcher = BucketBatcher(lengths, 16, seed=3, bucket_batches=10)
    epoch = [batcher.next_batch() for _ in range(len(batcher))]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(1000))
    padding = sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in epoch)
    random_padding = sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in np.array_split(rng.permutation(1000), len(epoch)))
    assert padding < 0.2 * random_padding
    again = BucketBatcher(lengths, 16, seed=3, bucket_batches=10)
    again.load_state_dict(batcher.state_dict())
    assert np.array_equal(again.next_batch(), batcher.next_batch())             # epoch 1, batch 0
    assert not all(np.array_equal(a, b) for a, b in zip(epoch, batcher.epoch_batches(1)))
    with pytest.raises(ConfigError, match=r"state\['num_examples'\]: expected 999"):
        BucketBatcher(lengths[:999], 16, seed=3, bucket_batches=10).load_state_dict(batcher.state_dict())


def test_pad_batch():
    ids, lengths = pad_batch([np.array([1, 2, 3]), np.array([4])], pad_id=0)
    assert ids.tolist() == [[1, 4], [2, 0], [3, 0]] and lengths.tolist() == [3, 1]


def test_byte_order_mark_and_label_types(tmp_path):
    bom = tmp_path / "bom.tsv"
    bom.write_bytes("\ufeffpos\tgood\n".encode("utf-8"))
    assert [(e.labels, e.text) for e in read_classification(bom)] == [(("pos",), "good")]
    with pytest.raises(DataFileError, match=r"n.jsonl:1: expected 'label' to be a non-empty string, received 3"):
        read_classification(_write(tmp_path / "n.jsonl", '{"text": "a", "label": 3}\n'))
    with pytest.raises(DataFileError, match=r"c.jsonl:1: expected 'condition' to be a non-empty string, received True"):
        read_generation(_write(tmp_path / "c.jsonl", '{"condition": true, "text": "x"}\n'))


def test_sentences_to_tag_from_json_lines(tmp_path):
    path = _write(tmp_path / "s.jsonl", '{"text": "EU rejects  it"}\n\n{"tokens": ["Peter", "ran"]}\n')
    assert [(s.tokens, s.tags, s.lines) for s in read_conll(path, require_tags=False)] == [
        (("EU", "rejects", "it"), (), (1, 1, 1)), (("Peter", "ran"), (), (3, 3))]
    with pytest.raises(DataFileError, match=r"b.jsonl:1: expected 'tokens' to be a list of non-empty strings"):
        read_conll(_write(tmp_path / "b.jsonl", '{"tokens": ["a", ""]}\n'), require_tags=False)
    with pytest.raises(DataFileError, match=r"o.jsonl:1: expected a 'tokens' list or a 'text' string"):
        read_conll(_write(tmp_path / "o.jsonl", '{"words": ["a"]}\n'), require_tags=False)


def test_a_sentence_per_line_file_read_as_conll_warns(tmp_path):
    from seqnet.errors import SeqnetWarning
    path = _write(tmp_path / "lines.txt", "EU rejects it\nPeter ran home\n")
    with pytest.warns(SeqnetWarning, match="its 2 lines make one sentence"):
        sentences = read_conll(path, require_tags=False)
    assert [s.tokens for s in sentences] == [("EU", "Peter")]


# Characters str.splitlines() would break at, though they are ordinary inside a line of a data file.
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]


def test_lines_end_at_newlines_only(tmp_path):
    texts = [f"a{s}b" for s in SEPARATORS]
    data = tmp_path / "sep.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": "x"}, ensure_ascii=False) + "\r\n" for t in texts),
                    encoding="utf-8")
    assert [e.text for e in read_classification(data)] == texts
    tsv = tmp_path / "sep.tsv"
    tsv.write_text("".join(f"x\t{t}\n" for t in texts), encoding="utf-8")
    assert [e.text for e in read_classification(tsv)] == texts
    conll = tmp_path / "sep.conll"
    conll.write_text("".join(f"{t}\tO\n" for t in texts), encoding="utf-8")
    assert read_conll(conll)[0].tokens == tuple(texts)
    pairs = tmp_path / "sep.txt"
    pairs.write_text("".join(f"{t}\t{t[::-1]}\n" for t in texts), encoding="utf-8")
    assert read_pairs(pairs) == [(t, t[::-1]) for t in texts]


def test_a_kept_copy_of_examples_with_line_separators_reads_back(tmp_path):
    examples = [TextExample(f"a{s}b", ("x",), f"f:{k}") for k, s in enumerate(SEPARATORS, 1)]
    keep_examples(tmp_path, examples[:5], examples[5:])
    assert kept_examples(tmp_path, TextExample) == (examples[:5], examples[5:])


@pytest.mark.parametrize("reader, text", [
    (read_classification, '{"text": "aa", "label": "a"}\n{"text": "bb", "label": "b"}\n'),
    (read_conll, "EU\tB-ORG\nrejects\tO\n"),
    (read_generation, '{"condition": "c", "text": "aa"}\n'),
    (read_pairs, "a b\tc d\n"),
    (lambda path: read_classification(path, require_labels=False), "aa\nbb\n"),
    (lambda path: read_conll(path, require_tags=False), '{"text": "EU rejects"}\n'),
], ids=["classify", "tag", "generate", "pairs", "texts", "sentences"])
def test_a_pipe_reads_as_a_file(tmp_path, reader, text):
    """<(...) and /dev/stdin are pipes: they can be read once, so a reader must not read twice."""
    plain = tmp_path / "plain"
    plain.write_text(text, encoding="utf-8")
    read, write = os.pipe()
    os.write(write, text.encode("utf-8"))
    os.close(write)
    try:
        from_pipe = reader(f"/dev/fd/{read}")
    finally:
        os.close(read)
    expected = reader(plain)
    assert len(from_pipe) == len(expected) > 0
    assert [getattr(x, "text", getattr(x, "tokens", x)) for x in from_pipe] == \
        [getattr(x, "text", getattr(x, "tokens", x)) for x in expected]


def test_labels_and_conditions_lose_surrounding_blanks_in_every_format(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "x", "label": " up "}\n{"text": "y", "label": "up"}\n', encoding="utf-8")
    tsv = tmp_path / "a.tsv"
    tsv.write_text(" up \tx\nup\ty\n", encoding="utf-8")
    multi = tmp_path / "m.jsonl"
    multi.write_text('{"text": "x", "labels": ["up ", "down"]}\n', encoding="utf-8")
    generate = tmp_path / "g.jsonl"
    generate.write_text('{"condition": "up ", "text": "x"}\n{"condition": "up", "text": "y"}\n', encoding="utf-8")
    assert {e.labels for e in read_classification(jsonl)} == {e.labels for e in read_classification(tsv)} == {("up",)}
    assert read_classification(multi)[0].labels == ("down", "up")
    assert {e.condition for e in read_generation(generate)} == {"up"}
    with pytest.raises(DataFileError, match=r"m2.jsonl:1: expected 'labels' to be a list of non-empty strings"):
        (tmp_path / "m2.jsonl").write_text('{"text": "x", "labels": [" "]}\n', encoding="utf-8")
        read_classification(tmp_path / "m2.jsonl")


@pytest.mark.parametrize("name", ["pairs.ndjson", "pairs.txt"])
def test_json_line_pairs_are_recognised_by_suffix_or_content(tmp_path, name):
    path = tmp_path / name
    path.write_text('{"source": "a b", "target": "c"}\n', encoding="utf-8")
    assert read_pairs(path) == [("a b", "c")]


def test_a_json_lines_file_is_not_read_as_tagged_conll(tmp_path):
    path = tmp_path / "cls.txt"
    path.write_text('{"text": "a b", "label": "neg"}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"cls.txt: holds JSON lines; expected a CoNLL file of tagged tokens"):
        read_conll(path)
    assert read_conll(path, require_tags=False)[0].tokens == ("a", "b")      # sentences to tag may be JSON lines
    code = tmp_path / "code.conll"
    code.write_text("{\tB-OP\n}\tB-OP\n", encoding="utf-8")                   # a CoNLL file may start with "{"
    assert read_conll(code)[0].tokens == ("{", "}")
    with pytest.warns(SeqnetWarning, match="read as CoNLL"):                 # one sentence of two lines
        assert read_conll(code, require_tags=False)[0].tokens == ("{", "}")
