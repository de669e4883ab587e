"""Exceptions raised by seqnet, and the argument check most constructors share.

Each is a subclass of the built-in exception a caller would expect (ValueError,
TypeError, RuntimeError), so ``except ValueError`` keeps working, while
``except seqnet.SeqnetError`` catches everything seqnet raises on purpose.
"""


class SeqnetError(Exception):
    """Base class of every error seqnet raises on purpose."""


class ShapeError(SeqnetError, ValueError):
    """An array has the wrong rank or size."""


class DTypeError(SeqnetError, TypeError):
    """An array has the wrong dtype (integer where float is needed, float32 vs float64)."""


class BackendError(SeqnetError, RuntimeError):
    """A backend cannot be used (not installed, no device), or arrays come from another one."""


class BackendMismatchError(BackendError, TypeError):
    """An array lives on another backend or device than the layer that receives it."""


class ConfigError(SeqnetError, ValueError):
    """An argument has a value outside what is allowed."""


class CorpusError(SeqnetError, ValueError):
    """A corpus is missing, empty, undecodable, or too small for the requested batches."""


class DataFileError(CorpusError):
    """A labelled data file is malformed; the message starts with ``file:line:``."""


class CheckpointError(SeqnetError, ValueError):
    """A checkpoint is missing, truncated, corrupt, or written by something else."""


class RunDirectoryError(SeqnetError, RuntimeError):
    """A run directory cannot be written: another process holds it, it is read-only, or it is a file."""


class NonFiniteLossError(SeqnetError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class DistributedError(SeqnetError, RuntimeError):
    """The processes of a data-parallel job cannot start together, or disagree (settings, parameters)."""


class TapeConsumedError(SeqnetError, RuntimeError):
    """A backprop closure was called a second time for the same forward pass."""


def check_positive_int(name: str, value) -> int:
    """``value`` as an int; ConfigError naming ``name`` unless it is an integer (not a bool) >= 1."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, received {value!r}")
    return int(value)


def check_real(name: str, value, expected: str = "a finite number", test=None) -> float:
    """``value`` as a float; ConfigError naming ``name`` unless it is a finite real number (not a
    bool, nan or inf, a str or an array) for which ``test(value)`` (when given) holds. ``expected``
    says what is allowed ("a finite number > 0")."""
    import math
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (test is not None and not test(value)):
        raise ConfigError(f"{name}: expected {expected}, received {value!r}")
    return float(value)


def check_bool(name: str, value) -> bool:
    """``value`` as a bool; ConfigError naming ``name`` unless it is True or False (a numpy bool too):
    ``bool("no")`` and ``bool("False")`` are True, so a string must not pass for a flag."""
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}: expected True or False, received {value!r}")
    return bool(value)


def check_not_one_text(name: str, value, expected: str = "a list of texts", one: str = "text") -> None:
    """ConfigError naming ``name`` when ``value`` is a single str (or bytes) where a batch is
    expected: iterating it would silently take each character for an item."""
    if isinstance(value, (str, bytes)):
        raise ConfigError(f"{name}: expected {expected}, received a {type(value).__name__}; wrap one {one} in a list")


class SeqnetWarning(UserWarning):
    """Something the user should know that does not stop the work (a damaged checkpoint skipped,
    a corpus that changed since it was encoded, many unknown tokens)."""
