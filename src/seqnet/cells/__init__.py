"""Per-step cell math: one small forward and backward function per cell, written against ``xp``."""
from .base import Cell, CellParam, sigmoid
from .gru import GRUCell
from .layer_norm_lstm import LayerNormLSTMCell
from .lstm import LSTMCell
from .rnn import NONLINEARITIES, RNNCell

__all__ = ["Cell", "CellParam", "GRUCell", "LSTMCell", "LayerNormLSTMCell", "NONLINEARITIES", "RNNCell", "sigmoid"]
