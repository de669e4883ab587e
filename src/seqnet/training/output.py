"""What a training run prints: log lines, JSON records, progress; robust to closed pipes.

A stream whose reader went away (``seqnet train --json | head -1``) raises BrokenPipeError
on the next write. :func:`write_line` then points the stream's file descriptor at
/dev/null, so every later write (and the interpreter's last flush) succeeds silently, and
the run goes on to its checkpoints. Progress is a tqdm bar on a terminal; anywhere else
(a log file, a pipe) it is a plain line now and then, never carriage-return frames.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import TextIO

from ..errors import SeqnetError

PLAIN_PROGRESS_SECONDS = 30.0     # at most one plain progress line this often, off a terminal


def json_text(record) -> str:
    """``record`` as one line of strict JSON: a NaN or infinite number (a diverged loss, an
    overflowed score) becomes null, which every JSON reader accepts, where NaN is not JSON."""
    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(item) for item in value]
        return value

    return json.dumps(finite(record), allow_nan=False)


def write_line(stream: TextIO, text: str, *, required: bool = False) -> bool:
    """Write ``text`` and a newline to ``stream`` and flush; False if its reader has gone.

    Any other failure to write (a full disk, an I/O error) silences the stream too, unless
    ``required`` (the line is the command's product: samples, predictions, scores): then it is
    a SeqnetError naming the stream and the reason.
    """
    try:
        stream.write(text + "\n")
        stream.flush()
        return True
    except BrokenPipeError:
        silence(stream)
        return False
    except ValueError:                 # closed by the caller
        return False
    except OSError as err:
        silence(stream)
        if required:
            name = {1: "standard output", 2: "standard error"}.get(_fileno(stream), "the output")
            raise SeqnetError(f"{name}: cannot be written ({err.strerror or err})") from None
        return False


def emit(text: str) -> bool:
    """One line of a command's product on standard output (see :func:`write_line`)."""
    return write_line(sys.stdout, text, required=True)


def _fileno(stream: TextIO) -> int | None:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return stream.fileno()
    return None


def ensure_standard_streams() -> None:
    """A process started with standard input, output or error closed (``>&-``) has None for
    that stream; give it /dev/null instead, so that writing drops the text and reading finds
    nothing."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))     # noqa: SIM115 - lives as long as the process


def silence(stream: TextIO) -> None:
    """Send the rest of ``stream``'s output to /dev/null (its reader has gone)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def is_terminal(stream: TextIO) -> bool:
    with contextlib.suppress(AttributeError, ValueError):
        return stream.isatty()
    return False


class Progress:
    """Steps done, latest loss and throughput: a tqdm bar on a terminal, plain lines elsewhere."""

    def __init__(self, total: int, initial: int, *, enabled: bool, unit: str = "bits", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.unit = unit
        self.total, self.step = total, initial
        self.enabled = enabled
        self.bar = None
        self._last_line = time.monotonic()
        self._postfix = ""
        if enabled and is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=self.stream, dynamic_ncols=True, unit="step")

    def update(self, step: int, bits: float | None = None, tokens_per_s: float | None = None,
               force: bool = False) -> None:
        if bits is not None:
            self._postfix = f"train {bits:.3f} {self.unit}, {tokens_per_s:,.0f} tokens/s"
        if self.bar is not None:
            try:
                self.bar.update(step - self.step)
                if bits is not None:
                    self.bar.set_postfix_str(self._postfix)
            except BrokenPipeError:
                silence(self.stream)
                self.bar = None
        elif self.enabled and self._postfix and (force or time.monotonic() - self._last_line >= PLAIN_PROGRESS_SECONDS):
            self._last_line = time.monotonic()
            write_line(self.stream, f"step {step}/{self.total}: {self._postfix}")
        self.step = step

    def clear(self) -> None:
        if self.bar is not None:
            with contextlib.suppress(BrokenPipeError):
                self.bar.clear()

    def close(self) -> None:
        if self.bar is not None:
            with contextlib.suppress(BrokenPipeError):
                self.bar.close()
            self.bar = None
