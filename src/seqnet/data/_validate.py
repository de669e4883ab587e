"""Argument checks shared by the data modules."""

from __future__ import annotations

import numpy as np

from seqnet.errors import ConfigError


def check_positive_int(name: str, value) -> None:
    """ConfigError unless ``value`` is an int (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
