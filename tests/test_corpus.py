"""Corpus resolution, streaming reads, the encoded id file, and the train/val split."""

import json

import numpy as np
import pytest

from seqnet.data import (
    ByteTokenizer,
    CharTokenizer,
    TokenStream,
    WordTokenizer,
    encode_corpus,
    iter_byte_chunks,
    iter_text_chunks,
    load_token_ids,
    python_stdlib_files,
    resolve_corpus,
    split_train_val,
)
from seqnet.errors import ConfigError, CorpusError


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path):
    """A directory with visible, hidden and __pycache__ files at several depths."""
    root = tmp_path / "corpus"
    visible = [
        write(root / "a.txt", "alpha\n"),
        write(root / "b.md", "beta\n"),
        write(root / "sub" / "c.txt", "gamma\n"),
        write(root / "sub" / "deep" / "d.txt", "delta\n"),
    ]
    write(root / ".hidden.txt", "no")
    write(root / ".git" / "e.txt", "no")
    write(root / "__pycache__" / "f.txt", "no")
    return root, visible


# --- resolve_corpus ---------------------------------------------------------------------------


def test_resolve_single_file(tree):
    root, visible = tree
    assert resolve_corpus(visible[0]) == [visible[0]]
    assert resolve_corpus(str(visible[0])) == [visible[0]]


def test_resolve_directory_is_recursive_sorted_and_skips_hidden_and_pycache(tree):
    root, visible = tree
    assert resolve_corpus(root) == sorted(visible)


def test_resolve_glob_patterns(tree):
    root, visible = tree
    assert resolve_corpus(f"{root}/*.txt") == [root / "a.txt"]
    assert resolve_corpus(f"{root}/**/*.txt") == [
        root / "a.txt", root / "sub" / "c.txt", root / "sub" / "deep" / "d.txt",
    ]


def test_resolve_missing_path_names_the_spec(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(CorpusError, match="does not exist") as caught:
        resolve_corpus(missing)
    assert str(missing) in str(caught.value)


def test_resolve_glob_or_directory_without_files(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CorpusError, match="found none"):
        resolve_corpus(tmp_path / "empty_dir")
    with pytest.raises(CorpusError, match=r"found none for .*\*\.nothing"):
        resolve_corpus(f"{tmp_path}/*.nothing")


def test_resolve_only_empty_files(tmp_path):
    write(tmp_path / "x.txt", "")
    write(tmp_path / "y.txt", "")
    with pytest.raises(CorpusError, match="corpus is empty"):
        resolve_corpus(tmp_path)


def test_resolve_python_stdlib():
    files = resolve_corpus("python-stdlib")
    assert len(files) > 100
    assert all(path.suffix == ".py" and path.is_file() for path in files)
    assert files == sorted(files) == python_stdlib_files()
    excluded = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idlelib",
                "lib2to3"}
    assert not any(excluded & set(path.parts) for path in files)


# --- reading ----------------------------------------------------------------------------------


def test_text_chunks_join_files_with_newline_and_never_split_words(tmp_path):
    texts = ["one two three four five\nsix", "sëven eight\n", "nine 日本語 ten"]
    paths = [write(tmp_path / f"{i}.txt", t) for i, t in enumerate(texts)]
    chunks = list(iter_text_chunks(paths, chunk_chars=5))
    assert "".join(chunks) == "\n".join(texts)
    assert len(chunks) > 3
    assert all(chunk[-1] in " \n" for chunk in chunks[:-1])


def test_multibyte_character_cut_by_a_read_decodes(tmp_path):
    path = write(tmp_path / "e.txt", "é" * 7)  # 14 bytes, reads of 3 cut characters in half
    assert "".join(iter_text_chunks([path], chunk_chars=3)) == "é" * 7


@pytest.mark.parametrize("chunk_chars", [4, 1 << 20])
def test_non_utf8_file_error_names_file_offset_and_byte_tokenizer(tmp_path, chunk_chars):
    good = write(tmp_path / "good.txt", "fine\n")
    bad = write(tmp_path / "bad.txt", b"0123456789\xffrest")
    with pytest.raises(CorpusError) as caught:
        list(iter_text_chunks([good, bad], chunk_chars=chunk_chars))
    message = str(caught.value)
    assert "bad.txt" in message
    assert "offset 10" in message
    assert "--tokenizer byte" in message


def test_byte_chunks_are_the_raw_bytes_joined_with_newline(tmp_path):
    paths = [write(tmp_path / "a", b"\xff\x00a"), write(tmp_path / "b", b"b\xfe")]
    assert b"".join(iter_byte_chunks(paths, chunk_bytes=2)) == b"\xff\x00a\nb\xfe"


# --- encode_corpus ----------------------------------------------------------------------------


@pytest.fixture
def text_files(tmp_path):
    texts = ["héllo wörld\nthe cat sat", "second file 🙂\n", "third"]
    return [write(tmp_path / "src" / f"{i}.txt", t) for i, t in enumerate(texts)], texts


def test_encode_corpus_char_ids_match_hand_lookup(tmp_path, text_files):
    paths, texts = text_files
    full_text = "\n".join(texts)
    tokenizer = CharTokenizer.fit([full_text])
    out = encode_corpus(paths, tokenizer, tmp_path / "cache" / "ids.bin")
    ids = load_token_ids(out)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16 and not ids.flags.writeable
    expected = [tokenizer.vocabulary.index(character) for character in full_text]
    assert ids.tolist() == expected
    sidecar = json.loads((tmp_path / "cache" / "ids.bin.json").read_text())
    assert sidecar["dtype"] == "uint16" and sidecar["count"] == len(full_text)
    assert [s["size"] for s in sidecar["sources"]] == [p.stat().st_size for p in paths]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ids.bin", "ids.bin.json"]


def test_encode_corpus_word_matches_encoding_the_whole_text(tmp_path, text_files):
    paths, texts = text_files
    tokenizer = WordTokenizer.fit(["\n".join(texts)], max_words=5)
    ids = load_token_ids(encode_corpus(paths, tokenizer, tmp_path / "w.ids"))
    assert np.array_equal(ids, tokenizer.encode("\n".join(texts)))


def test_encode_corpus_byte_reads_non_utf8(tmp_path):
    paths = [write(tmp_path / "a", b"\xff\x00a"), write(tmp_path / "b", b"b\xfe")]
    ids = load_token_ids(encode_corpus(paths, ByteTokenizer(), tmp_path / "b.ids"))
    assert ids.tolist() == [0xFF, 0x00, 0x61, 0x0A, 0x62, 0xFE]


def test_encode_corpus_uses_uint32_above_65535_symbols(tmp_path):
    text = " ".join(f"w{i}" for i in range(65_600))
    path = write(tmp_path / "many.txt", text)
    tokenizer = WordTokenizer.fit([text], max_words=70_000)
    assert tokenizer.vocab_size == 65_602
    ids = load_token_ids(encode_corpus([path], tokenizer, tmp_path / "many.ids"))
    assert ids.dtype == np.uint32
    assert ids[-1] == tokenizer.vocabulary.index("w65599")


def test_encode_corpus_reuses_a_matching_cache(tmp_path, text_files, monkeypatch):
    paths, texts = text_files
    tokenizer = CharTokenizer.fit(["\n".join(texts)])
    out = encode_corpus(paths, tokenizer, tmp_path / "ids.bin")

    def must_not_encode(text):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(tokenizer, "encode", must_not_encode)
    assert encode_corpus(paths, tokenizer, out) == out
    monkeypatch.undo()

    write(paths[-1], "third, now longer")  # changed source -> encoded again
    assert len(load_token_ids(encode_corpus(paths, tokenizer, out))) == len(
        "\n".join(texts[:-1] + ["third, now longer"])
    )
    other = CharTokenizer.fit(["xyz"])  # other fingerprint -> encoded again, all <UNK>
    assert set(load_token_ids(encode_corpus(paths, other, out)).tolist()) == {0}


def test_load_token_ids_rejects_truncated_file(tmp_path, text_files):
    paths, texts = text_files
    out = encode_corpus(paths, CharTokenizer.fit(texts), tmp_path / "ids.bin")
    out.write_bytes(out.read_bytes()[:-2])
    with pytest.raises(CorpusError, match="expected .* bytes"):
        load_token_ids(out)
    with pytest.raises(CorpusError, match="sidecar"):
        TokenStream.open(tmp_path / "missing.bin")


# --- split_train_val --------------------------------------------------------------------------


def test_split_train_val_tail_is_validation_and_both_are_views():
    ids = np.arange(100)
    train, val = split_train_val(ids, val_fraction=0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    assert np.shares_memory(train, ids) and np.shares_memory(val, ids)
    train, val = split_train_val(ids, val_fraction=0)
    assert len(train) == 100 and len(val) == 0


def test_split_of_a_memmap_stays_a_memmap(tmp_path, text_files):
    paths, texts = text_files
    ids = load_token_ids(encode_corpus(paths, CharTokenizer.fit(texts), tmp_path / "ids.bin"))
    train, val = split_train_val(ids, 0.25)
    assert isinstance(train, np.memmap) and isinstance(val, np.memmap)
    assert len(val) == int(len(ids) * 0.25)


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.9, True, "0.1", float("nan")])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError, match=r"val_fraction: expected a number in \[0, 0.5\)"):
        split_train_val(np.arange(10), fraction)
