"""Layers: recurrent stacks (RNN, LSTM, GRU) and the building blocks around them."""
from .base import Layer
from .dropout import dropout_mask
from .embedding import Embedding, embedding_backward
from .linear import Linear
from .loss import softmax_cross_entropy
from .recurrent import GRU, LSTM, RNN, Recurrent

__all__ = ["GRU", "LSTM", "RNN", "Embedding", "Layer", "Linear", "Recurrent", "dropout_mask",
           "embedding_backward", "softmax_cross_entropy"]
