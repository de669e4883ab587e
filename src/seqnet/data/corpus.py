"""Corpus on disk -> one flat file of token ids, read back as a memory map.

The corpus text is the files' contents joined with one "\\n" between files. It is read in
chunks and encoded once into ``<out_path>`` (raw little-endian uint16, or uint32 when the
vocabulary has more than 65535 symbols) with a JSON sidecar ``<out_path>.json`` describing
it; later runs map that file instead of re-reading the text. Memory stays bounded by the
chunk size, whatever the corpus size.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqnet.errors import check_positive_int
from seqnet.data.stdlib import python_stdlib_files
from seqnet.data.tokenizers import Tokenizer
from seqnet.errors import ConfigError, CorpusError
from seqnet.files import atomic_writer, is_run_directory

STDLIB_CORPUS = "python-stdlib"
SIDECAR_FORMAT = "seqnet-token-ids/1"
_GLOB_CHARACTERS = frozenset("*?[")


# --- finding the files ------------------------------------------------------------------------


def resolve_corpus(spec: str | Path) -> list[Path]:
    """Corpus spec -> sorted list of files.

    spec: a file; a directory (every regular file below it, skipping hidden files and
    directories and __pycache__); a glob pattern ("data/*.txt", "**" allowed; like the shell,
    wildcards skip hidden names, and __pycache__ is skipped too); or the name "python-stdlib".
    A seqnet run directory is never part of a corpus: directories below ``spec`` that are
    run directories (even the one being trained into) are skipped. Raises CorpusError when
    nothing is found or every file is empty.
    """
    text = str(spec)
    if not text.strip():                                 # Path("") is the current directory
        raise CorpusError(f"corpus: expected an existing file, directory, glob pattern or {STDLIB_CORPUS!r}, "
                          "received an empty string")
    if text == STDLIB_CORPUS:
        files = python_stdlib_files()
    elif Path(text).is_file():
        files = [Path(text)]
    elif Path(text).is_dir():
        if is_run_directory(Path(text)):
            raise CorpusError(f"corpus: {text!r} is a seqnet run directory, not a corpus")
        files = _files_below(Path(text))
    elif Path(text).exists() and not _GLOB_CHARACTERS & set(text):
        raise CorpusError(f"corpus: expected a regular file, directory, glob pattern or {STDLIB_CORPUS!r}, "
                          f"received {text!r}, which exists but is not a regular file (a device, pipe or socket)")
    elif _GLOB_CHARACTERS & set(text):
        matches = (Path(p) for p in glob.glob(text, recursive=True))
        files = sorted(p for p in matches if p.is_file() and "__pycache__" not in p.parts and not _in_run_directory(p))
    else:
        raise CorpusError(
            f"corpus: expected an existing file, directory, glob pattern or "
            f"{STDLIB_CORPUS!r}, got {text!r}, which does not exist"
        )
    if not files:
        raise CorpusError(f"corpus: expected at least one file, found none for {text!r}")
    if all(_is_empty(path) for path in files):
        raise CorpusError(
            f"corpus is empty: expected some text, but all {len(files)} file(s) "
            f"for {text!r} have size 0"
        )
    return files


def _is_empty(path: Path) -> bool:
    """Whether a file holds no byte: read, not only its size (files of /proc report size 0)."""
    if path.stat().st_size > 0:
        return False
    with open(path, "rb") as file:
        return not file.read(1)


def _in_run_directory(path: Path) -> bool:
    return any(is_run_directory(parent) for parent in path.parents)


def _files_below(root: Path) -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d != "__pycache__"
                      and not is_run_directory(Path(directory, d))]
        files.extend(Path(directory, n) for n in names if not n.startswith("."))
    return sorted(path for path in files if path.is_file())


# --- reading the text -------------------------------------------------------------------------


def iter_byte_chunks(paths: Sequence[Path], chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Raw bytes of the files, ``chunk_bytes`` at a time, with b"\\n" between files."""
    for index, path in enumerate(paths):
        if index:
            yield b"\n"
        with open(path, "rb") as file:
            while chunk := file.read(chunk_bytes):
                yield chunk


UTF8_ADVICE = "use --tokenizer byte for text that is not UTF-8"


def iter_text_chunks(paths: Sequence[Path], chunk_chars: int = 1 << 20, *,
                     utf8_advice: str = UTF8_ADVICE) -> Iterator[str]:
    """The corpus text ("\\n" between files) in chunks of about ``chunk_chars`` characters.

    Each chunk ends just after a space or newline whenever it holds one, so no word is split
    between chunks and a tokenizer may encode chunk by chunk. Decoding is strict UTF-8: an
    invalid byte raises CorpusError naming the file and the byte's offset, followed by
    ``utf8_advice``.
    """
    check_positive_int("chunk_chars", chunk_chars)
    carry = ""
    for piece in _iter_decoded_pieces(paths, chunk_chars, utf8_advice):
        buffer = carry + piece
        if len(buffer) < chunk_chars:
            carry = buffer
            continue
        cut = max(buffer.rfind(" "), buffer.rfind("\n")) + 1 or len(buffer)
        yield buffer[:cut]
        carry = buffer[cut:]
    if carry:
        yield carry


def _iter_decoded_pieces(paths: Sequence[Path], chunk_bytes: int, utf8_advice: str) -> Iterator[str]:
    for index, path in enumerate(paths):
        if index:
            yield "\n"
        decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        offset = 0  # file offset of the first byte of `chunk`
        with open(path, "rb") as file:
            while True:
                chunk = file.read(chunk_bytes)
                pending = decoder.getstate()[0]  # bytes of a character cut by the last read
                try:
                    yield decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as error:
                    bad_offset = offset - len(pending) + error.start
                    raise CorpusError(
                        f"corpus file {str(path)!r}: expected UTF-8 text, got the invalid "
                        f"byte 0x{error.object[error.start]:02x} at byte offset {bad_offset}; "
                        + utf8_advice
                    ) from None
                if not chunk:
                    break
                offset += len(chunk)


# --- encoding once to a flat id file ----------------------------------------------------------


def encode_corpus(paths: Sequence[Path], tokenizer: Tokenizer, out_path: str | Path, *,
                  utf8_advice: str = UTF8_ADVICE) -> Path:
    """Encode the corpus into ``out_path`` (flat ids) and ``out_path.json``; return out_path.

    Reuses an existing file when its sidecar has this tokenizer's fingerprint and the same
    source files (path, size, mtime). Both files are written to temporary names in the same
    directory and moved into place with os.replace, the sidecar last.
    """
    out_path = Path(out_path)
    sidecar_path = _sidecar_path(out_path)
    sources = _describe_sources(paths)
    fingerprint = tokenizer.fingerprint()
    cached = _read_cached_sidecar(sidecar_path)
    if cached and cached["tokenizer_fingerprint"] == fingerprint and cached["sources"] == sources:
        if out_path.exists() and out_path.stat().st_size == cached["count"] * _itemsize(cached):
            return out_path

    dtype = np.dtype("<u2") if tokenizer.vocab_size <= 65535 else np.dtype("<u4")
    chunks: Iterable = (
        iter_byte_chunks(paths) if tokenizer.kind == "byte" else iter_text_chunks(paths, utf8_advice=utf8_advice)
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path.unlink(missing_ok=True)  # a stale sidecar must never describe the new ids
    count, digest = 0, hashlib.sha256()
    with atomic_writer(out_path, "wb") as file:
        for chunk in chunks:
            data = tokenizer.encode(chunk).astype(dtype).tobytes()
            file.write(data)
            digest.update(data)
            count += len(data) // dtype.itemsize
    if count == 0:
        out_path.unlink()
        raise CorpusError(f"corpus is empty: expected some tokens, the {tokenizer.kind} "
                          f"tokenizer produced 0 from {len(paths)} file(s)")
    sidecar = {
        "format": SIDECAR_FORMAT,
        "dtype": dtype.name,
        "byteorder": "little",
        "count": count,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer_kind": tokenizer.kind,
        "tokenizer_fingerprint": fingerprint,
        "sources": sources,
        "sha256": digest.hexdigest(),
    }
    with atomic_writer(sidecar_path, "w") as file:
        json.dump(sidecar, file, indent=1)
    return out_path


def _read_cached_sidecar(sidecar_path: Path) -> dict | None:
    """The sidecar if it exists and parses; None (re-encode) otherwise."""
    try:
        return _read_sidecar(sidecar_path)
    except CorpusError:
        return None


def _sidecar_path(ids_path: Path) -> Path:
    return ids_path.with_name(ids_path.name + ".json")


def _describe_sources(paths: Sequence[Path]) -> list[dict]:
    described = []
    for path in paths:
        stat = os.stat(path)
        described.append(
            {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        )
    return described


def _itemsize(sidecar: dict) -> int:
    return np.dtype(sidecar["dtype"]).itemsize


def _read_sidecar(sidecar_path: Path) -> dict:
    """Parse and check a sidecar; CorpusError naming it (and the field) if it is missing,
    unreadable or malformed."""
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorpusError(
            f"token id sidecar {str(sidecar_path)!r}: expected a JSON file written by "
            f"encode_corpus, got {type(error).__name__}: {error}"
        ) from None
    required = {"format", "dtype", "count", "tokenizer_fingerprint", "sources"}
    if (not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT
            or not required <= sidecar.keys() or sidecar["dtype"] not in ("uint16", "uint32")):
        raise CorpusError(
            f"token id sidecar {str(sidecar_path)!r}: expected format {SIDECAR_FORMAT!r} with "
            f"keys {sorted(required)} and dtype uint16|uint32, got {str(sidecar)[:200]}"
        )
    def count(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    checks = [
        ("count", "a number of tokens >= 1", lambda v: count(v) and v >= 1, False),
        ("vocab_size", "a vocabulary size >= 1", lambda v: count(v) and v >= 1, True),
        ("tokenizer_kind", "a tokenizer name", lambda v: isinstance(v, str), True),
        ("tokenizer_fingerprint", "a fingerprint (a string)", lambda v: isinstance(v, str), False),
        ("sources", "a list of {path, size, mtime_ns}", lambda v: isinstance(v, list) and all(
            isinstance(x, dict) and isinstance(x.get("path"), str) and count(x.get("size"))
            and count(x.get("mtime_ns")) for x in v), False),
        ("sha256", "the hex sha256 of the token file", lambda v: isinstance(v, str) and len(v) == 64
            and all(c in "0123456789abcdef" for c in v), True),
    ]
    for key, expected, ok, optional in checks:
        if key not in sidecar and optional:
            continue
        if not ok(sidecar[key]):
            raise CorpusError(f"token id sidecar {str(sidecar_path)!r}: field {key!r}: expected {expected}, "
                              f"received {str(sidecar[key])[:80]!r} (edited or damaged)")
    return sidecar


# --- reading the ids back ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStream:
    """An encoded corpus: ``ids`` (N,) read-only memmap plus what its sidecar says."""

    path: Path
    ids: np.memmap
    vocab_size: int
    tokenizer_kind: str
    tokenizer_fingerprint: str
    sources: tuple = ()            # the files it was encoded from: path, size, mtime_ns at the time

    def changed_sources(self) -> list[str]:
        """Source files that exist now but differ from when they were encoded, or have gone
        while others remain; empty when the corpus is as encoded (or has gone entirely)."""
        changed, present = [], 0
        for source in self.sources:
            try:
                stat = os.stat(source["path"])
            except OSError:
                changed.append(f"{source['path']} (gone)")
                continue
            present += 1
            if stat.st_size != source["size"] or stat.st_mtime_ns != source["mtime_ns"]:
                changed.append(source["path"])
        return changed if present else []

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> TokenStream:
        """The token file at ``path`` and its sidecar; ``verify``: one pass checking its sha256
        and id range (False for a file this process has just written, or to read its sidecar)."""
        path = Path(path)
        sidecar = _read_sidecar(_sidecar_path(path))
        dtype = np.dtype(sidecar["dtype"]).newbyteorder("<")
        expected_bytes = sidecar["count"] * dtype.itemsize
        actual_bytes = path.stat().st_size if path.exists() else None
        if sidecar["count"] < 1 or actual_bytes != expected_bytes:
            raise CorpusError(
                f"token id file {str(path)!r}: expected {expected_bytes} bytes "
                f"({sidecar['count']} x {dtype.name}, as its sidecar says), got "
                f"{'no file' if actual_bytes is None else f'{actual_bytes} bytes'}"
            )
        ids = np.memmap(path, dtype=dtype, mode="r", shape=(sidecar["count"],))
        if verify:
            _check_ids(path, ids, sidecar)
        return cls(path, ids, sidecar.get("vocab_size"), sidecar.get("tokenizer_kind"),
                   sidecar["tokenizer_fingerprint"], tuple(sidecar.get("sources", ())))


def _check_ids(path: Path, ids: np.memmap, sidecar: dict, chunk: int = 1 << 22) -> None:
    """One pass over the token file: its sha256 against the sidecar's (written since it has
    one) and every id below the vocabulary size; CorpusError naming the file otherwise."""
    digest = hashlib.sha256() if "sha256" in sidecar else None
    vocab_size = sidecar.get("vocab_size")
    for start in range(0, ids.shape[0], chunk):
        part = np.asarray(ids[start:start + chunk])
        if digest is not None:
            digest.update(part.tobytes())
        if vocab_size is not None and int(part.max()) >= vocab_size:
            at = start + int(np.argmax(part >= vocab_size))
            raise CorpusError(f"token id file {str(path)!r}: holds id {int(ids[at])} at position {at}, expected ids "
                              f"in [0, {vocab_size}) as its sidecar says: the file is damaged (restore it, or "
                              "start a new run)")
    if digest is not None and digest.hexdigest() != sidecar["sha256"]:
        raise CorpusError(f"token id file {str(path)!r}: sha256 {digest.hexdigest()} differs from its sidecar's "
                          f"{sidecar['sha256']}: the file is damaged (restore it, or start a new run)")


def load_token_ids(path: str | Path, *, verify: bool = True) -> np.memmap:
    """The ids written by ``encode_corpus``: (N,) read-only uint16/uint32 memmap (``verify``: see
    :meth:`TokenStream.open`)."""
    return TokenStream.open(path, verify=verify).ids


def split_train_val(ids: np.ndarray, val_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """ids: (N,) -> (train (N - V,), val (V,)) views, V = floor(N * val_fraction): val is the tail.

    Slicing copies nothing, so a memmap stays a memmap. For a tiny corpus V may be 0.
    """
    if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
            or not 0 <= val_fraction < 0.5):
        raise ConfigError(f"val_fraction: expected a number in [0, 0.5), got {val_fraction!r}")
    num_val = int(len(ids) * val_fraction)
    boundary = len(ids) - num_val
    return ids[:boundary], ids[boundary:]
