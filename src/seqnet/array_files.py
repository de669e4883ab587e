"""Named numpy arrays in files, without pickle: safetensors, or .npz written and read with
``allow_pickle=False``. Nothing loaded from these files can execute code.

``save_arrays`` writes atomically (:func:`seqnet.files.atomic_write_bytes`); a file that is
truncated, corrupt or not an array file is a :class:`~seqnet.errors.CheckpointError` naming it.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import BackendMismatchError, CheckpointError, ConfigError, DTypeError
from .files import atomic_write_bytes

ARRAY_SUFFIXES = (".safetensors", ".npz")

try:
    import safetensors.numpy as _safetensors
except ImportError:  # optional dependency: fall back to .npz
    _safetensors = None


# Format used for new array files; tests turn it off to exercise the .npz path.
USE_SAFETENSORS: bool = _safetensors is not None


def suffix() -> str:
    """The suffix of new array files: .safetensors when that package is importable, else .npz."""
    return ".safetensors" if USE_SAFETENSORS else ".npz"


def _checked_arrays(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    checked = {}
    for name, value in arrays.items():
        if not isinstance(name, str):
            raise CheckpointError(f"cannot write {path}: array name {name!r} is not a str")
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            kind = f"{type(value).__module__}.{type(value).__name__}"
            raise BackendMismatchError(
                f"cannot write {path}: array {name!r} is a {kind}, expected a numpy.ndarray "
                "(convert backend arrays to numpy before saving)"
            )
        if value.dtype.hasobject:
            raise DTypeError(f"cannot write {path}: array {name!r} has dtype object, which needs pickle")
        # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
        checked[name] = value if value.flags.c_contiguous else value.copy(order="C")
    return checked


def _encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    # What np.savez writes, without its keyword-argument API (an array named "file" would
    # collide with its first parameter) and with pickling refused.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def encode_arrays(arrays: dict[str, np.ndarray], path: Path) -> bytes:
    """Serialize ``arrays`` in the format that ``path``'s suffix names."""
    arrays = _checked_arrays(arrays, path)
    if path.suffix == ".npz":
        return _encode_npz(arrays)
    if path.suffix == ".safetensors":
        if _safetensors is None:
            raise CheckpointError(f"cannot write {path}: the safetensors package is not installed")
        try:
            return _safetensors.save(arrays)
        except Exception as exc:  # SafetensorError: an unsupported dtype such as complex128
            raise DTypeError(f"cannot write {path}: {exc}") from exc
    raise CheckpointError(f"cannot write {path}: expected suffix .safetensors or .npz")


def decode_arrays(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """Parse array-file bytes; any failure becomes a CheckpointError naming ``path``."""
    if path.suffix == ".safetensors" and _safetensors is None:
        raise CheckpointError(f"cannot read {path}: the safetensors package is not installed")
    if path.suffix not in ARRAY_SUFFIXES:
        raise CheckpointError(f"cannot read {path}: expected suffix .safetensors or .npz")
    try:
        if path.suffix == ".safetensors":
            arrays = dict(_safetensors.load(data))
        else:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # the parsers raise many types; all mean "not a valid file"
        raise CheckpointError(f"array file {path} is truncated, corrupt or not an array file: {exc}") from exc
    return arrays


def _check_suffix(path: Path) -> None:
    """ConfigError naming ``path`` unless its suffix is a format this process can write."""
    if path.suffix not in ARRAY_SUFFIXES:
        raise ConfigError(f"path: expected a file name ending in .safetensors or .npz (the suffix names the format; "
                          f"suffix() gives the preferred one), received {str(path)!r}")
    if path.suffix == ".safetensors" and _safetensors is None:
        raise ConfigError(f"path: cannot write {str(path)!r}: the safetensors package is not installed (use .npz)")


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write numpy ``arrays`` to exactly ``path``, in the format its suffix names
    (.safetensors or .npz; any other suffix is refused, nothing is renamed), and return it as
    a Path. ``name + suffix()`` is a name in the preferred format; :func:`load_arrays` reads
    the file back from the same path.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise ConfigError(f"path: expected a str or os.PathLike file name, received {type(path).__name__}")
    path = Path(path)
    _check_suffix(path)
    if not isinstance(arrays, dict):
        raise ConfigError(f"arrays: expected a dict of name -> numpy array, received {type(arrays).__name__}")
    data = encode_arrays(arrays, path)
    if path.is_dir():
        raise CheckpointError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot write {path}: the directory {path.parent} does not exist")
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the arrays of a .safetensors or .npz file (format from the suffix, as
    :func:`save_arrays` wrote it), without pickle.

    The dict is in file order, which safetensors chooses; look arrays up by name.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read array file {path}: {exc}") from exc
    return decode_arrays(data, path)


