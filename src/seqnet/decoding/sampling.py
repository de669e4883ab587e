"""Choosing the next token from logits, on the host: temperature, top-k, top-p, greedy.

Sampling runs in numpy with a seeded Generator, so a seed gives the same text on every
backend. ``logits`` is (N, V): one row per sample being generated.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, check_bool

# Below this temperature, logits / temperature overflow float64 (and float32 on devices without
# it) for logits of ordinary size, and every token would look equally (in)finite.
MIN_TEMPERATURE = 1e-6


def is_finite_number(value) -> bool:
    """True for a finite real number (an int or float, numpy's included; not a bool, inf or nan)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(value)))


def check_sampling(temperature: float | None, top_k: int | None, top_p: float | None) -> None:
    """The sampling controls, each None when not given (temperature None: 1)."""
    if temperature is not None and not (is_finite_number(temperature) and temperature > 0):
        raise ConfigError(f"temperature: expected a finite number > 0, received {temperature!r}")
    if temperature is not None and temperature < MIN_TEMPERATURE:
        raise ConfigError(f"temperature: expected at least {MIN_TEMPERATURE} (smaller ones make logits / temperature "
                          f"overflow; greedy=True takes the most likely token), received {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k: expected a positive integer or None, received {top_k!r}")
    if top_p is not None and not (is_finite_number(top_p) and 0 < top_p <= 1):
        raise ConfigError(f"top_p: expected a probability in (0, 1] or None, received {top_p!r}")


def refuse_given(why: str, **controls) -> None:
    """ConfigError naming the first of ``controls`` that was given (not None, not False) where it
    does nothing: ``why`` says so. A control is "given" by its value, never by comparing it with
    a default (temperature=1 is given)."""
    for name, value in controls.items():
        if value is not None and value is not False:
            raise ConfigError(f"{name}: {why}; received {name}={value!r}")


def check_greedy(greedy, **controls) -> bool:
    """``greedy`` as a bool; with greedy=True the sampling ``controls`` given (temperature, top_k,
    top_p, and seed where nothing else draws from it) are refused, since the most likely token
    does not depend on them (the rule of the command line's --greedy)."""
    if check_bool("greedy", greedy):
        refuse_given("a sampling control; greedy does not sample (drop it or greedy)", **controls)
    return bool(greedy)


def active_filters(top_k: int | None, top_p: float | None, vocab_size: int) -> tuple[int | None, float | None]:
    """(top_k, top_p) with a filter that keeps every token dropped (None): top_k >= vocab_size,
    top_p >= 1. Unfiltered sampling draws by Gumbel-max, filtered by inverse CDF, so without this
    ``top_k=1000`` over 60 tokens would draw other (equally distributed) samples than no top_k."""
    return (None if top_k is None or top_k >= vocab_size else top_k,
            None if top_p is None or top_p >= 1 else top_p)


def next_token_probs(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> np.ndarray:
    """(N, V) logits -> (N, V) probabilities after temperature, top-k and top-p filtering."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < z.shape[-1]:
        # Keep exactly the k most likely; a tie at the k-th value goes to the lower token id.
        keep = np.argsort(-z, axis=-1, kind="stable")[:, :top_k]
        kept = np.full_like(z, -np.inf)
        np.put_along_axis(kept, keep, np.take_along_axis(z, keep, axis=-1), axis=-1)
        z = kept
    probs = np.exp(z - z.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-probs, axis=-1)
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
        drop_sorted = mass_before >= top_p                        # the smallest prefix reaching p stays
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        probs = np.where(drop, 0.0, probs)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def gumbel_blocks(rng: np.random.Generator, shape: tuple, block: int = 256):
    """Endless Gumbel(0, 1) noise arrays of ``shape``, drawn ``block`` at a time: the same numbers,
    in the same order, as repeated ``rng.gumbel(size=shape)``, for a fraction of the calls."""
    while True:
        yield from rng.gumbel(size=(block,) + tuple(shape))


def sample_next(logits: np.ndarray, rng: np.random.Generator, *, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
                gumbel: np.ndarray | None = None) -> np.ndarray:
    """One token id per row of ``logits`` (N, V): argmax if ``greedy``, else a draw from the filtered softmax.

    ``gumbel`` (N, V): Gumbel(0, 1) noise drawn by the caller (see :func:`gumbel_blocks`) for
    unfiltered sampling, instead of drawing it from ``rng`` here."""
    if greedy:
        return np.argmax(logits, axis=-1)
    top_k, top_p = active_filters(top_k, top_p, logits.shape[-1])
    if top_k is None and top_p is None:
        # Gumbel-max: argmax(z / T + G), G ~ Gumbel(0, 1) i.i.d., is an exact draw from softmax(z / T).
        z = np.asarray(logits, dtype=np.float64)
        if temperature != 1.0:
            z = z / temperature
        return np.argmax(z + (rng.gumbel(size=z.shape) if gumbel is None else gumbel), axis=-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1)   # inverse-CDF draw
