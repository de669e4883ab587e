"""Readers of labelled data files: classification, tagging (CoNLL) and conditional generation.

Every problem is a :class:`~seqnet.errors.DataFileError` whose message starts with
``file:line:`` and says what was expected and what was found. Formats:

- classification: JSON lines ``{"text": "...", "label": "..."}`` (or ``"labels": [...]`` for
  multi-label; one file is one or the other), TSV lines ``label<TAB>text``, or a directory
  with one sub-directory per class holding one text file per example. A file's format is
  read from its suffix (.jsonl/.json/.ndjson, .tsv), else from its first non-blank line.
- tagging: CoNLL columns, the token first and the tag last, a blank line between sentences,
  ``-DOCSTART-`` lines skipped. Columns are split at tabs when the line has one (so a token
  may be a space, as in character-level files), else at whitespace; every line of a file
  has the same number of columns (at least 2).
- conditional generation: JSON lines ``{"condition": "...", "text": "..."}``.

Blank lines are skipped in JSON lines and TSV files. Texts must be non-empty.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataFileError, SeqnetWarning
from .lines import JSON_SUFFIXES, read_lines, read_text

DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class TextExample:
    """One text with its label(s); ``where`` is "file:line". ``multi_label``: read from a
    "labels" list (any number of labels) rather than one "label"."""
    text: str
    labels: tuple[str, ...]
    where: str
    multi_label: bool = False


@dataclass(frozen=True)
class TaggedSentence:
    """Tokens and their tags; ``lines`` holds each token's line number in ``path``."""
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    path: str
    lines: tuple[int, ...]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lines[0]}"


@dataclass(frozen=True)
class ConditionedText:
    condition: str
    text: str
    where: str


def _existing(path, what: str) -> Path:
    if not str(path).strip():                            # Path("") is the current directory
        raise DataFileError(f"data file: expected {what}, received an empty path")
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory (expected {what})")
    return path


def _json_records(path: Path, lines: Iterable[tuple[int, str]], required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFileError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno}); "
                                f"expected one JSON object per line") from err
        if not isinstance(record, dict):
            raise DataFileError(f"{path}:{number}: expected a JSON object, received a {type(record).__name__}")
        for key in required:
            if key not in record:
                raise DataFileError(f"{path}:{number}: missing the {key!r} field (the record has {sorted(record)})")
        yield number, record


def _text_field(record: dict, key: str, where: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise DataFileError(f"{where}: expected {key!r} to be a string, received {type(value).__name__}")
    if not value.strip():
        raise DataFileError(f"{where}: empty {key!r}; expected some text")
    return value


# --- classification ---------------------------------------------------------------------------


def read_classification(path, *, require_labels: bool = True) -> list[TextExample]:
    """Texts and labels from a JSON lines file, a TSV file or a directory of class folders.

    ``require_labels=False`` (texts to classify): JSON lines need only "text", a .tsv file's
    labels are dropped, and any other file holds one text per line."""
    path = _existing(path, "a JSON lines or TSV file, or a directory with one sub-directory per class")
    if path.is_dir():
        examples = _read_class_folders(path)
    else:
        lines = read_lines(path)
        if path.suffix.lower() in JSON_SUFFIXES or (path.suffix.lower() != ".tsv" and _first_char(lines) == "{"):
            examples = _read_classification_json(path, lines, require_labels)
        elif require_labels or path.suffix.lower() == ".tsv":
            examples = _read_tsv(path, lines)
            if not require_labels:
                examples = [TextExample(e.text, (), e.where) for e in examples]
        else:
            examples = [TextExample(line, (), f"{path}:{n}") for n, line in lines if line.strip()]
    if not examples:
        raise DataFileError(f"{path}: no examples; expected at least one {'labelled ' if require_labels else ''}text")
    return examples


def _first_char(lines: Iterable[tuple[int, str]]) -> str:
    for _, line in lines:
        if line.strip():
            return line.lstrip()[0]
    return ""


def _first_line_is_json_object(lines) -> bool:
    first = next((line for _, line in lines if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


def _read_classification_json(path: Path, lines, require_labels: bool = True) -> list[TextExample]:
    examples, kind = [], None
    for number, record in _json_records(path, lines, ("text",)):
        where = f"{path}:{number}"
        has = [k for k in ("label", "labels") if k in record]
        if not require_labels:
            examples.append(TextExample(_text_field(record, "text", where), (), where))
            continue
        if len(has) != 1:
            raise DataFileError(f"{where}: expected exactly one of 'label' (one class) or 'labels' (a list, "
                                f"multi-label), received {has or 'neither'}")
        if kind is None:
            kind = (has[0], number)
        elif kind[0] != has[0]:
            raise DataFileError(f"{where}: has {has[0]!r} but line {kind[1]} has {kind[0]!r}; a file is either "
                                "multi-class ('label') or multi-label ('labels')")
        text = _text_field(record, "text", where)
        if has[0] == "label":
            label = record["label"]
            if not isinstance(label, str) or not label.strip():
                raise DataFileError(f"{where}: expected 'label' to be a non-empty string, received {label!r}")
            labels = (label.strip(),)
        else:
            value = record["labels"]
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise DataFileError(f"{where}: expected 'labels' to be a list of non-empty strings, received {value!r}")
            labels = tuple(sorted({v.strip() for v in value}))
        examples.append(TextExample(text, labels, where, has[0] == "labels"))
    return examples


def _read_tsv(path: Path, lines) -> list[TextExample]:
    examples = []
    for number, line in lines:
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if "\t" not in line:
            raise DataFileError(f"{where}: expected label<TAB>text, received a line without a tab: {line[:60]!r}")
        label, text = line.split("\t", 1)
        if not label.strip():
            raise DataFileError(f"{where}: empty label before the tab")
        if not text.strip():
            raise DataFileError(f"{where}: empty text after the label {label!r}")
        examples.append(TextExample(text, (label.strip(),), where))
    return examples


def _read_class_folders(root: Path) -> list[TextExample]:
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [p.name for p in entries if not p.is_dir()]
    if stray:
        raise DataFileError(f"{root}: expected only sub-directories (one per class), found files {stray[:3]}")
    if not entries:
        raise DataFileError(f"{root}: no class sub-directories; expected one sub-directory of text files per class")
    examples = []
    for folder in entries:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and "__pycache__" not in p.parts)
        if not files:
            raise DataFileError(f"{folder}: class folder without text files")
        for file in files:
            text = read_text(file).replace("\r\n", "\n")
            if not text.strip():
                raise DataFileError(f"{file}:1: empty text (an empty file in class folder {folder.name!r})")
            examples.append(TextExample(text, (folder.name,), f"{file}:1"))
    return examples


# --- tagging ----------------------------------------------------------------------------------


def read_conll(path, *, require_tags: bool = True) -> list[TaggedSentence]:
    """Sentences of a CoNLL file (token first, tag last column); see the module docstring.

    ``require_tags=False`` (sentences to tag) also takes files of one column, the tokens; their
    sentences have no tags."""
    path = _existing(path, "a CoNLL file (token and tag columns, blank lines between sentences)")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory; expected a CoNLL file")
    file_lines = read_lines(path)
    # by suffix, or a first line that is a JSON object (a token "{" may start a CoNLL file)
    json_lines = path.suffix.lower() in JSON_SUFFIXES or _first_line_is_json_object(file_lines)
    if not require_tags and json_lines:
        return _read_sentences_json(path, file_lines)
    if json_lines:
        raise DataFileError(f"{path}: holds JSON lines; expected a CoNLL file of tagged tokens (token and tag "
                            "columns, blank lines between sentences)")
    sentences, tokens, tags, lines = [], [], [], []
    columns = None                                      # (count, line that set it)

    def close():
        if tokens:
            sentences.append(TaggedSentence(tuple(tokens), tuple(tags), str(path), tuple(lines)))
        tokens.clear(), tags.clear(), lines.clear()

    for number, line in file_lines:
        if "\t" not in line and not line.strip():
            close()
            continue
        cells = line.split("\t") if "\t" in line else line.split()
        if cells[0] == DOCSTART:
            close()
            continue
        where = f"{path}:{number}"
        if len(cells) < (2 if require_tags else 1):
            raise DataFileError(f"{where}: expected at least 2 columns (token ... tag), received 1: {line[:60]!r}")
        if columns is None:
            columns = (len(cells), number)
        elif len(cells) != columns[0]:
            raise DataFileError(f"{where}: expected {columns[0]} columns (as on line {columns[1]}), "
                                f"received {len(cells)}: {line[:60]!r}")
        if cells[0] == "" or cells[-1].strip() == "":
            raise DataFileError(f"{where}: empty {'token' if cells[0] == '' else 'tag'} column")
        tokens.append(cells[0])
        if len(cells) > 1:
            tags.append(cells[-1].strip())
        lines.append(number)
    close()
    if not sentences:
        raise DataFileError(f"{path}: no sentence (zero tokens); expected token and tag columns with blank lines "
                            "between sentences")
    if not require_tags and len(sentences) == 1 and columns[0] > 1 and len(sentences[0].lines) > 1:
        warnings.warn(f"{path}: read as CoNLL, one token per line (its first column) and blank lines between "
                      f"sentences: its {len(sentences[0].lines)} lines make one sentence; for one sentence per "
                      'line write JSON lines {"text": "..."}', SeqnetWarning, stacklevel=2)
    return sentences


def _read_sentences_json(path: Path, lines) -> list[TaggedSentence]:
    """Sentences to tag from JSON lines: {"tokens": [...]} or {"text": "..."} (split at whitespace)."""
    sentences = []
    for number, record in _json_records(path, lines, ()):
        where = f"{path}:{number}"
        if "tokens" in record:
            tokens = record["tokens"]
            if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
                raise DataFileError(f"{where}: expected 'tokens' to be a list of non-empty strings, received "
                                    f"{str(tokens)[:60]}")
        elif "text" in record:
            tokens = _text_field(record, "text", where).split()
        else:
            raise DataFileError(f"{where}: expected a 'tokens' list or a 'text' string (the record has {sorted(record)})")
        sentences.append(TaggedSentence(tuple(tokens), (), str(path), (number,) * len(tokens)))
    if not sentences:
        raise DataFileError(f"{path}: no sentence; expected one JSON object per line")
    return sentences


# --- conditional generation -------------------------------------------------------------------


def read_generation(path, *, require_text: bool = True) -> list[ConditionedText]:
    """(condition, text) pairs of a JSON lines file; ``require_text=False`` (conditions to
    generate from) makes "text" optional ("" when absent)."""
    path = _existing(path, 'a JSON lines file of {"condition": ..., "text": ...}')
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory; expected a JSON lines file")
    examples = []
    required = ("condition", "text") if require_text else ("condition",)
    for number, record in _json_records(path, read_lines(path), required):
        where = f"{path}:{number}"
        condition = record["condition"]
        if not isinstance(condition, str) or not condition.strip():
            raise DataFileError(f"{where}: expected 'condition' to be a non-empty string, received {condition!r}")
        text = _text_field(record, "text", where) if require_text or "text" in record else ""
        examples.append(ConditionedText(condition.strip(), text, where))
    if not examples:
        raise DataFileError(f"{path}: no examples; expected one JSON object per line")
    return examples
