"""Settings dataclasses: every knob of a run, with its default, help text, choices and check.

A field made with :func:`option` carries what the command line needs (flag help, choices
read from the registry that defines them) and what validation needs (the kind of number
it must be), so a setting is declared once: the CLI builds its flags from these fields
and a run directory stores them as JSON.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable

from .errors import ConfigError

# kinds of value an option accepts, checked by Settings.validate
POSITIVE_INT, NONNEGATIVE_INT, POSITIVE_FLOAT, NONNEGATIVE_FLOAT, FRACTION, PROBABILITY = (
    "positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "fraction", "probability")


# ``only_with`` rules shared by several tasks' settings (see :func:`option`)
WITH_WORD_TOKENIZER = ("tokenizer", lambda kind: kind == "word", "--tokenizer word")
WITHOUT_VALID_FILE = ("valid", lambda valid: valid is None, "no --valid file (which is the validation data)")
WITH_SAMPLES = ("sample_length", lambda length: length > 0, "--sample-length above 0")


def option(default: Any, help: str, *, kind: str | None = None, choices: Callable[[], tuple] | tuple | None = None,
           flag: str | None = None, cli: bool = True, only_with: tuple[str, Callable[[Any], bool], str] | None = None,
           path: bool = False):
    """A settings field: ``default``, its ``help`` text, the ``kind`` of value it takes, its
    ``choices`` (a tuple or a function returning the names a registry knows), and its flag
    (default ``--name-with-dashes``; ``cli=False`` keeps it off the command line).

    ``only_with = (other field, test of its value, what the test asks for)``: the setting does
    something only when the other one passes the test (``--max-words`` only with ``--tokenizer
    word``); :meth:`Settings.check_given` refuses it when it is given without.

    ``path=True``: the value names files (a file, directory or glob); the command line stores
    it as an absolute path, so a resumed run can compare it from any working directory."""
    return field(default=default, metadata={"help": help, "kind": kind, "choices": choices, "flag": flag, "cli": cli,
                                            "only_with": only_with, "path": path})


def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def choices_of(f) -> tuple | None:
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


def _check_kind(name: str, value: Any, kind: str) -> None:
    if kind in (POSITIVE_INT, NONNEGATIVE_INT):
        low = 1 if kind == POSITIVE_INT else 0
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ConfigError(f"{name}: expected {'a positive integer' if low else 'an integer >= 0'}, received {value!r}")
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    expected = {POSITIVE_FLOAT: "a finite number > 0", NONNEGATIVE_FLOAT: "a finite number >= 0 (0: off)",
                FRACTION: "a fraction in [0, 0.5)", PROBABILITY: "a probability in [0, 1)"}[kind]
    if ok:
        ok = {POSITIVE_FLOAT: value > 0, NONNEGATIVE_FLOAT: value >= 0, FRACTION: 0 <= value < 0.5,
              PROBABILITY: 0 <= value < 1}[kind]
    if not ok:
        raise ConfigError(f"{name}: expected {expected}, received {value!r}")


@dataclass
class Settings:
    """Base of settings dataclasses: JSON round trip and the checks their fields declare."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str = "config"):
        """Rebuild from :meth:`to_json`'s dict; unknown keys are refused, missing ones take their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, received {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data).validate()

    @classmethod
    def defaults(cls) -> dict:
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    def validate(self):
        """Check every field against its declared kind and choices; returns self."""
        for f in fields(self):
            value, flag = getattr(self, f.name), flag_of(f)
            kind = f.metadata.get("kind")
            if kind is not None and value is not None:
                _check_kind(flag, value, kind)
            choices = choices_of(f)
            if choices is not None and value not in choices:
                raise ConfigError(f"{flag}: expected one of {', '.join(map(str, choices))}, received {value!r}")
        return self

    def check_given(self, given) -> None:
        """Refuse a setting in ``given`` (the names set by the user) that these settings ignore
        (see ``only_with`` of :func:`option`)."""
        by_name = {f.name: f for f in fields(self)}
        for name in given:
            rule = by_name[name].metadata.get("only_with")
            if rule is None:
                continue
            other, test, wanted = rule
            value = getattr(self, other)
            if not test(value):
                raise ConfigError(f"{flag_of(by_name[name])}: applies only with {wanted}; this run has "
                                  f"{flag_of(by_name[other])} {value} (drop {flag_of(by_name[name])})")
