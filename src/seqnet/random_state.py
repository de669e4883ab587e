"""Seeds, and a numpy Generator's exact state as JSON and back, so a resumed run draws the same numbers.

:func:`check_seed` is the one check of a ``seed`` argument (weights, dropout, sampling)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError


def check_seed(seed, name: str = "seed"):
    """``seed`` unchanged when it is None (fresh randomness), an integer >= 0, or a
    ``numpy.random.SeedSequence`` (a model hands its layers spawned ones); ConfigError naming
    ``name`` otherwise (a str, a float, a bool, a negative number)."""
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"{name}: expected an integer >= 0 (or None), received {seed!r}")
    return int(seed)


def seed_sequence(seed, name: str = "seed") -> np.random.SeedSequence:
    """A checked ``seed`` (see :func:`check_seed`) as a SeedSequence, to spawn one seed per part of a model."""
    seed = check_seed(seed, name)
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()  # MT19937, Philox, SFC64 keep part of their state in arrays
    return value


def rng_to_json(generator: np.random.Generator) -> dict:
    """The exact state of ``generator`` as JSON-ready data (128-bit ints stay Python ints)."""
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"expected a numpy.random.Generator, got {type(generator).__name__}")
    return _to_plain(generator.bit_generator.state)


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def rng_from_json(state: dict) -> np.random.Generator:
    """Rebuild the generator that :func:`rng_to_json` described; it continues the same stream."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise CheckpointError(
            f"RNG state names bit generator {name!r}, expected one of {', '.join(_BIT_GENERATORS)}"
        )
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"RNG state for {name} is malformed: {exc}") from exc
    return np.random.Generator(bit_generator)
