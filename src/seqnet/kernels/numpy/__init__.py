"""numpy overrides of named reference kernels; :mod:`seqnet.kernels` decides when they run."""
from .. import ScanKernels
from . import embedding, layer_norm_lstm, optimizers, time_loop

KERNELS = {
    "embedding_backward": embedding.embedding_backward,
    "adam_update": optimizers.adam_update,
}

# By cell kernel key (Cell.kernel): the cells and cases each pair covers.
SCAN_KERNELS = {
    "lstm": ScanKernels(time_loop.lstm_forward, time_loop.lstm_backward),
    "gru": ScanKernels(time_loop.gru_forward, time_loop.gru_backward, supports=lambda cell: cell.reset_after),
    "rnn": ScanKernels(time_loop.rnn_forward, time_loop.rnn_backward),
    "lstm_ln": ScanKernels(layer_norm_lstm.lstm_ln_forward, layer_norm_lstm.lstm_ln_backward),
}
