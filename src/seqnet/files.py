"""Writing files so that readers see the old version or the new one, never a part.

Every file seqnet writes into a run directory goes through :func:`atomic_writer`: the data
is written to a temporary file in the same directory (named ``.<name>.<random>.tmp``),
flushed and fsynced, given the mode a plain ``open`` would give it (0666 less the umask),
and moved onto the final name with ``os.replace``. A process killed midway leaves at most
such a temporary, which :func:`remove_stale_temporaries` deletes (only a run directory's
one writer calls it).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

TEMP_SUFFIX = ".tmp"


def umask_mode(directory: bool = False) -> int:
    """The mode ``open`` / ``mkdir`` would give a new file or directory under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_dir(directory: Path) -> None:
    """Make a rename or new entry in ``directory`` durable (a no-op where dirs can't be opened)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_writer(path) as f: f.write(...)``: ``path`` is replaced when the block ends
    without an exception; on an exception the temporary is removed and ``path`` is untouched."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, umask_mode())         # mkstemp creates 0600
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_writer(path) as file:
        file.write(data)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporaries of :func:`atomic_writer` in ``directory`` (not below it); returns them."""
    removed = []
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


# A run directory holds this file from its creation on: it is the lock of its one writer
# (see seqnet.training.run_dir) and the mark that keeps the directory out of any corpus.
RUN_MARKER = ".seqnet-run"


def is_run_directory(path: Path) -> bool:
    """Whether ``path`` is (or once was) a seqnet run directory."""
    return (path / RUN_MARKER).exists() or (path / "latest.json").is_file()
