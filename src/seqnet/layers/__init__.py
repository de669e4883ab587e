"""Layers: recurrent stacks (RNN, LSTM, GRU) and the building blocks around them."""
from .base import Layer
from .recurrent import GRU, LSTM, RNN, Recurrent

__all__ = ["GRU", "LSTM", "Layer", "RNN", "Recurrent"]
