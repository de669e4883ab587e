"""seqnet: recurrent sequence models with hand-written BPTT on the Python array API.

    import seqnet
    seqnet.use_backend("numpy")            # or "cupy", "torch", "array_api_strict"
    lstm = seqnet.LSTM(32, 64, num_layers=2)
    (out, (h_n, c_n)), backprop = lstm.forward(x)
    dx, (dh0, dc0) = backprop(d_out, None)

Subpackages: ``seqnet.layers``, ``seqnet.models``, ``seqnet.decoding``, ``seqnet.tasks``,
``seqnet.training`` (optimizers, schedules, clipping, the trainer), ``seqnet.data``.
"""
import os as _os
import signal as _signal
import sys as _sys


def _quiet_while_the_command_starts() -> None:
    """Run as the ``seqnet`` command, a SIGINT or SIGTERM that arrives while the modules are
    still being imported (nothing is written yet) ends the process quietly, with exit code
    130 or 143, instead of a traceback; ``seqnet.cli.main`` then installs its own handling.
    Imported by any other program, seqnet leaves signals alone."""
    argv = getattr(_sys, "orig_argv", [])
    as_command = _os.path.basename(_sys.argv[0] if _sys.argv else "") == "seqnet" or argv[1:3] == ["-m", "seqnet"]
    if as_command and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        for signum, code in ((_signal.SIGINT, 130), (_signal.SIGTERM, 143)):
            _signal.signal(signum, lambda *_, code=code: _os._exit(code))


_quiet_while_the_command_starts()

from . import data, decoding, layers, models, tasks, training  # noqa: E402
from .backend import Backend, backend, get_backend, to_numpy, use_backend  # noqa: E402
from .backend.threads import set_num_threads  # noqa: E402
from .errors import SeqnetError  # noqa: E402
from .layers import GRU, LSTM, RNN  # noqa: E402

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "RNN", "Backend", "SeqnetError", "backend", "data", "decoding", "get_backend", "layers",
           "models", "set_num_threads", "tasks", "to_numpy", "training", "use_backend"]
