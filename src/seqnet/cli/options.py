"""Command-line flags made from settings dataclasses (:mod:`seqnet.config`).

Every field of a settings class becomes one flag with its help text, its default shown,
and its choices read from the registry that defines them. Flags have no argparse default:
the namespace holds exactly the flags the user gave, so a resumed run can refuse any of
them that differs from the run's own settings, whatever its value.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
from dataclasses import MISSING, fields

from ..config import FRACTION, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, PROBABILITY
from ..config import Settings, choices_of, flag_of
from ..data.corpus import STDLIB_CORPUS
from ..decoding import MIN_TEMPERATURE
from ..errors import SeqnetError

_INT_KINDS = (POSITIVE_INT, NONNEGATIVE_INT)
_FLOAT_KINDS = (POSITIVE_FLOAT, NONNEGATIVE_FLOAT, FRACTION, PROBABILITY)


def device_value(text: str):
    """A --device value: digits are a CUDA device index, anything else a device name."""
    return int(text) if text.isdigit() else text


def add_settings(parser: argparse.ArgumentParser, cls: type[Settings], seen: dict, label: str = "") -> None:
    """Add a flag for every command-line field of ``cls`` not in ``seen`` (name -> its argparse
    action; the new flags are added there). A field already added by another settings class
    with another default gets this class's default named in its help (``label``: "--task tag")."""
    for f in fields(cls):
        if not f.metadata.get("cli", True):
            continue
        default = f.default if f.default is not MISSING else None
        if f.name in seen:
            action, first_default = seen[f.name]
            if default != first_default and label and action.help is not None and not isinstance(default, bool):
                action.help = action.help[:-1] + f"; {label}: {default})" if action.help.endswith(")") else \
                    action.help + f" ({label}: {default})"
            continue
        text = f.metadata.get("help", "")
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS)
        if isinstance(default, bool):
            seen[f.name] = (parser.add_argument(flag_of(f), action="store_true", help=text, **kwargs), default)
            continue
        kind = f.metadata.get("kind")
        kwargs["type"] = (int if kind in _INT_KINDS else float if kind in _FLOAT_KINDS
                          else device_value if f.name == "device" else str)
        choices = choices_of(f)
        if choices is not None:
            kwargs["choices"] = choices
        shown = "" if default is None else f" (default: {default})"
        seen[f.name] = (parser.add_argument(flag_of(f), help=(text + shown).replace("%", "%%"), **kwargs), default)


def given_settings(args: argparse.Namespace, cls: type[Settings]) -> dict:
    """The fields of ``cls`` given on the command line, by name."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}


def settings_from(args: argparse.Namespace, cls: type[Settings]):
    """An instance of ``cls``: its defaults, overridden by the flags given (not yet validated);
    the files a path setting names are stored by their absolute path."""
    paths = path_settings(cls)
    return cls(**{name: stored_path(value) if name in paths else value
                  for name, value in given_settings(args, cls).items()})


def path_settings(cls: type[Settings]) -> set[str]:
    """The fields of ``cls`` that name files (``option(path=True)``)."""
    return {f.name for f in fields(cls) if f.metadata.get("path")}


def stored_path(value):
    """A path setting as a new run stores it: absolute when it names something that exists, or
    is a glob, so that it means the same from any working directory; 'python-stdlib', an empty
    value and a name of nothing stay as given (the task's own check names them as typed)."""
    if not isinstance(value, str) or not value.strip() or value == STDLIB_CORPUS:
        return value
    if os.path.lexists(value) or set("*?[") & set(value):
        return os.path.abspath(value)
    return value


def same_path(given, own) -> bool:
    """Whether the path setting ``given`` on the command line names what the run's ``own``
    names: the same file (when both exist), or the same absolute path. A pipe the run read
    (``--data <(...)``: /dev/fd/63, /dev/stdin) is never the same: the next pipe under that
    name holds other data."""
    if isinstance(own, str) and own.startswith(("/dev/", "/proc/")):
        return False
    if given == own:
        return True
    if not (isinstance(given, str) and isinstance(own, str)) or STDLIB_CORPUS in (given, own):
        return False
    try:
        if os.path.exists(given) and os.path.exists(own):
            return os.path.samefile(given, own)
    except OSError:
        return False
    return os.path.isabs(own) and os.path.normpath(os.path.abspath(given)) == os.path.normpath(own)


def check_sampling_flags(args) -> None:
    """The sampling flags of ``sample`` and ``predict``, checked under their own names."""
    for flag, value in (("--length", getattr(args, "length", None)), ("--num", getattr(args, "num", None)),
                        ("--top-k", getattr(args, "top_k", None))):
        if value is not None and value < 1:
            raise SeqnetError(f"{flag}: expected a positive integer, received {value}")
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature > 0):
        raise SeqnetError(f"--temperature: expected a finite number > 0, received {args.temperature}")
    if args.temperature is not None and args.temperature < MIN_TEMPERATURE:
        raise SeqnetError(f"--temperature: expected at least {MIN_TEMPERATURE} (smaller ones make logits / temperature "
                          f"overflow; --greedy takes the most likely token), received {args.temperature}")
    top_p = getattr(args, "top_p", None)
    if top_p is not None and not 0 < top_p <= 1:
        raise SeqnetError(f"--top-p: expected a probability in (0, 1], received {top_p}")
    if args.seed is not None and args.seed < 0:
        raise SeqnetError(f"--seed: expected an integer >= 0, received {args.seed}")


def command_line(*words) -> str:
    """A command to suggest, each word shell-quoted (paths with spaces, quotes or non-ASCII)."""
    return " ".join(shlex.quote(str(word)) for word in words)


def shown_path(path) -> str:
    """A path in a message: whole, unless it is too long to read (then its ends and its length)."""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    return text if len(text) <= 120 else f"{text[:50]}...{text[-30:]} ({len(text)} characters)"
