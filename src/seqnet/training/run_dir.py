"""A run directory and this process's hold on it: one writer at a time, nothing half made.

``RunDirectory.claim(path)`` (a new run), ``claim_default()`` (the first free
``runs/default[-N]``) and ``open_for_resume(path)`` take the directory's lock: an
exclusive ``flock`` on its marker file ``.seqnet-run``, which the kernel releases when the
holder exits or is killed, so a dead run never leaves it stuck. A second writer is refused
with the holder's pid, host and start time. Before anything is trained the directory is
checked to be writable. A start that fails before its first checkpoint removes what it
created (:meth:`abandon`); the temporaries of a writer killed mid-write are removed by the
next one.

``metrics.jsonl`` is a log of JSON records; on resume the records written after the
checkpoint being resumed are rolled back, so no step appears twice.

In a data-parallel job only rank 0 holds the run directory; the other ranks see it through
a :class:`RunFollower`, which neither locks nor writes.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import shutil
import socket
import stat
import sys
import warnings
from pathlib import Path

from ..errors import CheckpointError, RunDirectoryError, SeqnetWarning
from ..files import RUN_MARKER, atomic_writer, is_run_directory, remove_stale_temporaries, umask_mode
from .checkpoint import has_checkpoint
from .output import json_text

try:
    import fcntl
except ImportError:            # not POSIX: no locking
    fcntl = None

METRICS = "metrics.jsonl"
# What any start writes before its first checkpoint (an earlier failed start's, too).
RUN_FILES = frozenset({"tokens.bin", "tokens.bin.json", METRICS, "config.json", "loss.png", "checkpoints"})


def _holder(path: Path) -> str:
    try:
        if (path / RUN_MARKER).is_symlink():
            raise OSError("a link")
        info = json.loads((path / RUN_MARKER).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another seqnet process"
    return (f"seqnet (pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}, "
            f"{info.get('command', '')})").replace(", )", ")")


class RunDirectory:
    """A run directory held by this process as its one writer (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self._created: list[Path] = []                # directories this process made, outermost first
        self._present: set[str] = set()                # what the directory held when this process claimed it

    # -- taking hold ------------------------------------------------------------------------
    @classmethod
    def claim(cls, path: str | os.PathLike) -> "RunDirectory":
        """Hold ``path`` for a new run: it must not hold a run already (its own or someone's)."""
        if not str(path).strip():
            raise RunDirectoryError("--out: expected a directory path, received an empty one")
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunDirectoryError(f"--out: {run.path} is a file, expected a directory for the run")
        run._refuse_foreign("--out", "already holds", "choose a new or empty directory")
        if has_checkpoint(run.path):
            raise RunDirectoryError(f"--out: {run.path} already holds a run; pass --resume to continue it, "
                                    "or choose another --out (nothing was changed)")
        run._make_directories()
        run._lock()
        if has_checkpoint(run.path):                   # committed by a writer that held it until just now
            run.release()
            raise RunDirectoryError(f"--out: {run.path} already holds a run; pass --resume to continue it")
        run._check_writable()
        remove_stale_temporaries(run.path)
        run._present = {entry.name for entry in run.path.iterdir()} - {RUN_MARKER}
        return run

    def _refuse_foreign(self, flag: str, holds: str, advice: str) -> None:
        """RunDirectoryError naming ``flag`` when the directory holds what is not a run's."""
        foreign = self._foreign_entries()
        if foreign:
            raise RunDirectoryError(f"{flag}: {self.path} {holds} files that are not a seqnet run ("
                                    + ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                                    + f"); {advice} (nothing was changed)")

    def _foreign_entries(self) -> list[str]:
        """What a directory holds when it is not a run directory (empty, or a run, or missing: [])."""
        if not self.path.is_dir() or is_run_directory(self.path):
            return []
        return sorted(entry.name for entry in self.path.iterdir())

    @classmethod
    def claim_default(cls, base: str = "runs/default") -> "RunDirectory":
        """Hold the first of ``base``, ``base-2``, ... that holds no run and no other writer."""
        for n in range(1, 10_000):
            candidate = Path(base if n == 1 else f"{base}-{n}")
            if candidate.exists() and (not candidate.is_dir() or has_checkpoint(candidate)
                                       or cls(candidate)._foreign_entries()):
                continue
            try:
                return cls.claim(candidate)
            except RunDirectoryError as err:
                if "being written" not in str(err) and "already holds" not in str(err):
                    raise
        raise RunDirectoryError(f"--out: no free run directory {base}-N; pass --out DIR")

    @classmethod
    def open_for_resume(cls, path: str | os.PathLike) -> "RunDirectory":
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirectoryError(f"--out: {run.path} does not exist or is not a directory; nothing to resume")
        if not has_checkpoint(run.path):
            if is_run_directory(run.path):
                raise CheckpointError(f"{run.path} holds no checkpoint yet: the run stopped before its first one was "
                                      "written; start it again (without --resume)")
            raise CheckpointError(f"not a seqnet run directory: {run.path} has no latest.json; nothing to resume")
        run._lock()
        run._check_writable()
        remove_stale_temporaries(run.path)
        return run

    def _make_directories(self) -> None:
        missing = []
        for directory in [self.path, *self.path.parents]:
            if directory.exists():
                break
            missing.append(directory)
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=umask_mode(directory=True))
            except FileExistsError:                     # made by a concurrent run: not ours to remove
                continue
            except OSError as err:
                raise RunDirectoryError(f"--out: cannot create {directory}: {err.strerror}") from err
            self._created.append(directory)

    def _lock(self) -> None:
        marker = self.path / RUN_MARKER
        if marker.is_symlink():
            raise RunDirectoryError(f"--out: {marker} is a symbolic link (to {os.readlink(marker)}); expected the "
                                    "run's own lock file: remove the link (nothing was changed)")
        try:                                        # O_NOFOLLOW: a link put there meanwhile is refused too
            fd = os.open(marker, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), umask_mode())
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise RunDirectoryError(f"--out: {marker} is a symbolic link; expected the run's own lock file: "
                                        "remove the link (nothing was changed)") from err
            raise RunDirectoryError(self._not_writable(err)) from err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirectoryError(f"--out: {marker} is not a regular file; expected the run's own lock file "
                                    "(nothing was changed)")
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunDirectoryError(f"--out: {self.path} is being written by {_holder(self.path)}; wait for "
                                            "it to finish or choose another --out (nothing was changed)") from err
                raise RunDirectoryError(f"--out: cannot lock {marker}: {err.strerror}") from err
        self._fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(["seqnet", *sys.argv[1:]])[:200]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)

    def _not_writable(self, err: OSError) -> str:
        return (f"--out: {self.path} is not writable ({err.strerror}); a run needs to write its checkpoints and "
                "metrics there: choose another --out, or copy the run to a writable place and resume it there")

    def _check_writable(self) -> None:
        for target in (self.path, self.path / "checkpoints", self.path / METRICS):
            if not target.exists():
                continue
            if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
                raise RunDirectoryError(self._not_writable(OSError(errno.EACCES, f"{target.name}: permission denied")))
        try:
            with atomic_writer(self.path / ".write-test"):
                pass
            (self.path / ".write-test").unlink()
        except OSError as err:
            raise RunDirectoryError(self._not_writable(err)) from err

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock again (after :meth:`release`), if this process does not hold it."""
        if not self.held:
            self._lock()

    def release(self) -> None:
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """A start that failed before its first checkpoint: remove what it created (every entry that
        was not there when it claimed the directory, whichever task wrote it, and a failed start's
        :data:`RUN_FILES`), release the lock. (Nothing is removed if another writer has taken the
        directory meanwhile.)"""
        try:
            self.acquire()
        except RunDirectoryError:
            return
        if not has_checkpoint(self.path):
            for entry in list(self.path.iterdir()):
                if entry.name == RUN_MARKER or (entry.name in self._present and entry.name not in RUN_FILES):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
            remove_stale_temporaries(self.path)
            self.release()
            with contextlib.suppress(FileNotFoundError):
                (self.path / RUN_MARKER).unlink()
            for directory in reversed(self._created):      # innermost first, and only if now empty
                with contextlib.suppress(OSError):
                    directory.rmdir()
        else:
            self.release()

    # -- metrics ------------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        path = self.path / METRICS
        try:                                       # never through a link: the run writes its own file
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), umask_mode())
        except OSError as err:
            raise RunDirectoryError(f"{path}: cannot append a record ({err.strerror}); expected a regular file "
                                    "of JSON records") from err
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json_text(record) + "\n")

    def _metrics_lines(self) -> list[bytes] | None:
        """The lines of metrics.jsonl as bytes (None when there is none); RunDirectoryError
        naming it when it is not a readable regular file."""
        path = self.path / METRICS
        if not os.path.lexists(path):
            return None
        if path.is_symlink() or not path.is_file():
            kind = "a symbolic link" if path.is_symlink() else "a directory" if path.is_dir() else "not a regular file"
            raise RunDirectoryError(f"{path}: expected the run's file of JSON records, found {kind}; move it away "
                                    "(the run writes its records there)")
        try:
            return path.read_bytes().splitlines(keepends=True)
        except OSError as err:
            raise RunDirectoryError(f"{path}: cannot read the run's records ({err.strerror})") from err

    def read_metrics(self) -> list[dict]:
        """The JSON records of metrics.jsonl (lines that are not records are skipped)."""
        records = []
        for line in self._metrics_lines() or []:
            record = _record(line)
            if record is not None:
                records.append(record)
        return records

    def rollback_metrics(self, step: int) -> int:
        """Drop the records of steps after ``step`` (written after the checkpoint being resumed);
        returns how many were dropped. A line that is not a record (a note someone added, bytes
        that are not UTF-8) is kept, with a warning; a record cut short by a kill, as the last
        line, is dropped, with a warning."""
        lines = self._metrics_lines()
        if lines is None:
            return 0
        path = self.path / METRICS
        kept, dropped, foreign = [], 0, []
        for number, line in enumerate(lines, 1):
            record = _record(line)
            if record is None:
                if number == len(lines) and not line.endswith(b"\n") and line.lstrip().startswith(b"{"):
                    warnings.warn(f"{path}: line {number} is a record cut short (a run killed while writing it); "
                                  "dropped", SeqnetWarning, stacklevel=2)
                    dropped += 1
                    continue
                if line.strip():
                    foreign.append(number)
                kept.append(line if line.endswith(b"\n") else line + b"\n")
                continue
            at = record.get("step", record.get("steps")) if isinstance(record, dict) else None
            if isinstance(at, int) and not isinstance(at, bool) and at > step:
                dropped += 1
                continue
            kept.append(line if line.endswith(b"\n") else line + b"\n")
        if foreign:
            warnings.warn(f"{path}: line(s) {', '.join(map(str, foreign[:5]))}{', ...' if len(foreign) > 5 else ''} "
                          "are not JSON records; kept as they are", SeqnetWarning, stacklevel=2)
        if dropped or kept != lines:
            with atomic_writer(path, "wb") as f:
                f.write(b"".join(kept))
        return dropped


def _record(line: bytes):
    """The JSON value of one metrics line, or None when it is not one (undecodable, not JSON)."""
    try:
        return json.loads(line.decode("utf-8"))
    except ValueError:                      # UnicodeDecodeError and JSONDecodeError both
        return None


class RunFollower(RunDirectory):
    """A run directory that another process of the same job (its rank 0) holds and writes:
    this process reads it (the encoded data, checkpoints) but never locks, writes or removes."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def append_metrics(self, record: dict) -> None:
        pass

    def rollback_metrics(self, step: int) -> int:
        return 0


def remove_run(path: str | os.PathLike, flag: str = "--out") -> None:
    """Delete the run directory ``path`` to start afresh there (what the example scripts do
    before each run): nothing when it does not exist; refused, naming ``flag``, when another
    process is writing it or when it holds files that are not a seqnet run's."""
    run = RunDirectory(path)
    if not run.path.exists():
        return
    if not run.path.is_dir():
        raise RunDirectoryError(f"{flag}: {run.path} is a file, expected a directory for the run")
    run._refuse_foreign(flag, "holds", "choose another directory")
    if not is_run_directory(run.path):                  # empty
        return
    run._lock()                                 # refused, naming the holder, while a run writes it
    try:
        shutil.rmtree(run.path)
    except OSError as err:
        raise RunDirectoryError(f"{flag}: cannot remove the earlier run in {run.path} ({err.strerror})") from err
    finally:
        run.release()
