"""Lines of the text files users give (JSON lines, TSV, CoNLL, texts to translate or classify).

A line ends at "\\n" (a "\\r" before it is dropped) and nowhere else: ``str.splitlines`` also
breaks at U+2028, U+2029, U+0085, form feeds and other separators, which are ordinary
characters inside a JSON string, a TSV field or a sentence. A file is read once, so a pipe
(``<(...)``, ``/dev/stdin``) reads as well as a regular file.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataFileError

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")            # JSON lines; other data files are read by content


def split_lines(text: str) -> list[str]:
    """``text`` cut at "\\n" only, without the line ends; a final "\\n" starts no extra line."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text(path: str | Path) -> str:
    """The UTF-8 file ``path`` as text (a leading byte-order mark dropped); a file that cannot be
    read or is not UTF-8 is a DataFileError naming the file (and line)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError as err:
        raise DataFileError(f"{path}: is a directory; expected a text file") from err
    except OSError as err:
        raise DataFileError(f"{path}: cannot be read ({err.strerror})") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataFileError(f"{path}:{line}: not valid UTF-8 (byte {data[err.start]:#04x}); "
                            "expected a UTF-8 text file") from err


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line number, line) of the UTF-8 file ``path`` (see :func:`read_text`)."""
    return list(enumerate(split_lines(read_text(path)), start=1))
