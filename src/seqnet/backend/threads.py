"""How many threads the BLAS and OpenMP pools under numpy and torch may use.

Per-timestep matmuls are small (B x H @ H x G*H). On a machine whose cores are also busy
with other work, multi-threaded BLAS on such shapes can run 15-300x slower than one
thread, while one thread stays stable; ``seqnet train`` therefore uses one thread unless
told otherwise (``--threads``).
"""
from __future__ import annotations

import sys

from ..errors import ConfigError

_limiter = None
_threads: int | None = None          # what set_num_threads asked for; torch gets it when it is loaded


def set_num_threads(threads: int) -> None:
    """Limit every BLAS/OpenMP pool loaded in this process (numpy's, torch's) to ``threads``;
    torch, if it is imported later by the torch backend, gets the same limit then."""
    global _limiter, _threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads: expected a positive integer, received {threads!r}")
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=threads)
    _threads = threads
    apply_to_torch()


def apply_to_torch() -> None:
    """Give an imported torch the thread limit of :func:`set_num_threads` (if one was set)."""
    if _threads is not None and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != _threads:
            torch.set_num_threads(_threads)


def thread_info() -> list[dict]:
    """The thread pools in use: library, BLAS implementation, thread count (for benchmark reports)."""
    from threadpoolctl import threadpool_info

    return [{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "prefix", "architecture", "version")}
            for pool in threadpool_info()]
