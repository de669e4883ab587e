"""One backend fixture for the whole suite (in the spirit of SciPy's ``xp`` fixture).

``xb`` yields every available backend as the current seqnet backend:
numpy; array_api_strict on its default device, on "device1" (catches numpy calls on
device arrays and device mixing) and on "no_float64" (catches float64 leaks in float32
paths); torch when installed (and "torch-cuda" with a GPU); cupy when a CUDA device is usable. ``xb64`` is the same
minus "no_float64", for float64 tests (finite differences).

SEQNET_TEST_BACKENDS=numpy,torch narrows the set (names as in the test ids).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import seqnet
from seqnet.backend import to_numpy


# SEQNET_NUMPY_KERNELS=cuda-host: the numpy backend runs the CuPy path's fused CUDA kernels built
# for the CPU (seqnet/kernels/cupy/host.py) instead of its own overrides, so the finite-difference
# and PyTorch-agreement tests check those kernels too (tests of numpy's own overrides then fail).
if os.environ.get("SEQNET_NUMPY_KERNELS") == "cuda-host":
    from seqnet import kernels

    kernels.OVERRIDE_MODULES["numpy"] = "seqnet.kernels.cupy.host"


def _cupy_usable() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    import cupy

    return bool(cupy.is_available())


# (test id, backend name, device)
ALL_BACKENDS = [
    ("numpy", "numpy", None),
    ("strict", "array_api_strict", None),
    ("strict-device1", "array_api_strict", "device1"),
    ("strict-no_float64", "array_api_strict", "no_float64"),
    ("torch", "torch", None),
    ("torch-cuda", "torch", "cuda"),
    ("cupy", "cupy", None),
]


def _skip_reason(name: str, device=None) -> str | None:
    if name == "torch" and importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch==2.13.0)"
    if name == "torch" and device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "torch on CUDA needs a GPU (torch.cuda.is_available() is False)"
    if name == "array_api_strict" and importlib.util.find_spec("array_api_strict") is None:
        return "array_api_strict is not installed"
    if name == "cupy" and not _cupy_usable():
        return "cupy needs a CUDA device (cupy.is_available() is False)"
    return None


def _params(ids_wanted=None, exclude=()):
    chosen = os.environ.get("SEQNET_TEST_BACKENDS")
    chosen = set(chosen.split(",")) if chosen else None
    params = []
    for test_id, name, device in ALL_BACKENDS:
        if test_id in exclude or (chosen is not None and test_id not in chosen):
            continue
        reason = _skip_reason(name, device)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param((name, device), id=test_id, marks=marks))
    return params


@pytest.fixture(params=_params())
def xb(request):
    """Every backend, made current for the test; yields the seqnet Backend."""
    name, device = request.param
    with seqnet.backend(name, device) as backend:
        yield backend


@pytest.fixture(params=_params(exclude=("strict-no_float64",)))
def xb64(request):
    """Every backend that supports float64, made current for the test."""
    name, device = request.param
    with seqnet.backend(name, device) as backend:
        yield backend


def assert_close(backend, actual, expected, *, rtol=1e-6, atol=1e-6, err_msg=""):
    """``actual`` must live on ``backend`` (no silent fallback to numpy) and match ``expected``."""
    assert backend.owns(actual), f"result is not a {backend.name} array on {backend.device}: {type(actual)}"
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=rtol, atol=atol, err_msg=err_msg)
