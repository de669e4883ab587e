"""Per-step cell math: one small forward and backward function per cell, written against ``xp``."""
from .base import Cell, sigmoid
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import NONLINEARITIES, RNNCell

__all__ = ["Cell", "GRUCell", "LSTMCell", "NONLINEARITIES", "RNNCell", "sigmoid"]
