"""Kernels: the portable reference of every hot computation, and the backend overrides of them.

This package sits below :mod:`seqnet.layers` and imports only :mod:`seqnet.backend` and
:mod:`seqnet.errors`; it never imports layers, models or training. A reference is a plain
function written against ``xp`` (:mod:`.time_loop`, :mod:`.embedding`, :mod:`.optimizers`,
:mod:`.sampling`, :mod:`.crf`); an override is a function with the same arguments and results
for one backend (:mod:`.numpy`; :mod:`.cupy`, fused CUDA kernels), tested against its
reference in tests/test_fast_paths.py.

Which implementation runs is decided here, and only here:

- :func:`kernel` ``(backend, name)`` -> the backend's override of the reference ``name``, or
  the reference;
- :func:`scan_kernels` ``(backend, cell, masked)`` -> the forward and backward time loop
  for one cell: a backend's fused pair when the cell's own class declares a kernel key that
  the pair is registered under (:meth:`seqnet.cells.Cell.kernel_key`, never inherited from
  a base class), the pair covers this cell's variant and, with ``lengths``, handles masks;
  else the reference loop. Backends built with ``fast_paths=False`` always get references.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from . import crf, embedding, optimizers, sampling, time_loop


@dataclass(frozen=True)
class ScanKernels:
    """A forward and backward time loop that belong together (the backward reads the forward's tape)."""

    forward: Callable
    backward: Callable
    masks: bool = False                              # handles variable lengths
    supports: Callable = lambda cell: True           # the variants of the cell it computes

    @property
    def is_reference(self) -> bool:
        return self.forward is time_loop.scan_forward


REFERENCE_SCAN = ScanKernels(time_loop.scan_forward, time_loop.scan_backward, masks=True)

REFERENCES: dict[str, Callable] = {
    "embedding_backward": embedding.embedding_backward,
    "crf_forward": crf.crf_forward,
    "crf_marginals": crf.crf_marginals,
    "crf_viterbi": crf.crf_viterbi,
    "sgd_update": optimizers.sgd_update,
    "adagrad_update": optimizers.adagrad_update,
    "rmsprop_update": optimizers.rmsprop_update,
    "adam_update": optimizers.adam_update,
    "adamw_update": optimizers.adamw_update,
    "next_tokens": sampling.next_tokens,
}

# Backends with overrides, and the module holding them (imported when first asked for).
OVERRIDE_MODULES = {"numpy": "seqnet.kernels.numpy", "cupy": "seqnet.kernels.cupy"}


def _overrides(backend):
    if not backend.fast_paths or backend.name not in OVERRIDE_MODULES:
        return None
    return importlib.import_module(OVERRIDE_MODULES[backend.name])


def kernel(backend, name: str) -> Callable:
    """The implementation of reference kernel ``name`` that runs on ``backend``."""
    reference = REFERENCES[name]
    module = _overrides(backend)
    return reference if module is None else module.KERNELS.get(name, reference)


def scan_kernels(backend, cell, *, masked: bool) -> ScanKernels:
    """The time loop that runs ``cell`` on ``backend`` (with variable lengths when ``masked``)."""
    module = _overrides(backend)
    key = cell.kernel_key()
    if module is not None and key is not None:
        fused = module.SCAN_KERNELS.get(key)
        if fused is not None and fused.supports(cell) and (fused.masks or not masked):
            return fused
    return REFERENCE_SCAN
