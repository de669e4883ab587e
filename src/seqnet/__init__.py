"""seqnet: recurrent sequence models with hand-written BPTT on the Python array API.

    import seqnet
    seqnet.use_backend("numpy")            # or "cupy", "torch", "array_api_strict"
    lstm = seqnet.LSTM(32, 64, num_layers=2)
    (out, (h_n, c_n)), backprop = lstm.forward(x)
    dx, (dh0, dc0) = backprop(d_out, None)

Subpackages: ``seqnet.layers``, ``seqnet.models``, ``seqnet.decoding``, ``seqnet.tasks``,
``seqnet.training`` (optimizers, schedules, clipping, the trainer), ``seqnet.data``.
"""
from . import data, decoding, layers, models, tasks, training
from .backend import Backend, backend, get_backend, to_numpy, use_backend
from .backend.threads import set_num_threads
from .errors import SeqnetError
from .layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "RNN", "Backend", "SeqnetError", "backend", "data", "decoding", "get_backend", "layers",
           "models", "set_num_threads", "tasks", "to_numpy", "training", "use_backend"]
