"""The confusion-matrix picture (needs matplotlib, the ``plot`` extra)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def check_plot_path(path, flag: str = "plot") -> Path:
    """A picture file asked for by name: a .png in an existing, writable directory, with
    matplotlib installed; otherwise a ConfigError naming ``flag``."""
    import os

    if not str(path).strip():
        raise ConfigError(f"{flag}: expected a .png file name, received an empty string")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"{flag}: expected a .png file name, received {str(path)!r}")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag}: the directory {str(folder)!r} of {str(path)!r} does not exist")
    if path.is_dir() or not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag}: cannot write {str(path)!r} ({'a directory' if path.is_dir() else 'permission denied'})")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(f"{flag}: drawing needs matplotlib, which is not installed (pip install 'seqnet[plot]')") \
            from None
    return path


# Above this many classes the picture keeps its size and drops the names and counts (a
# 3,000-class matrix drawn at full size would need gigabytes); the shares stay drawn.
MAX_NAMED_CLASSES = 40


def save_confusion_matrix(matrix, names: Sequence[str], path, title: str = "") -> Path | None:
    """A PNG of the row-normalised confusion matrix (row = gold class) with the counts written in
    (names and counts only up to :data:`MAX_NAMED_CLASSES` classes); returns its path, or None
    when matplotlib is not installed (``pip install 'seqnet[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    named = len(names) <= MAX_NAMED_CLASSES
    size = 2.5 + 0.55 * min(len(names), MAX_NAMED_CLASSES)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if named:
        ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), labels=names)
        for i, j in zip(*np.nonzero(counts)):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    else:
        title = f"{title}{', ' if title else ''}{len(names):,} classes in training order"
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    try:                # an OSError (a full disk) is the caller's to report: train's or eval --plot's
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
