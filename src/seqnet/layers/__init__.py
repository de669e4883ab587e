"""Layers: recurrent stacks (RNN, LSTM, GRU) and the building blocks around them."""
from .base import Layer, Parameter
from .dropout import dropout_mask
from .embedding import Embedding, check_token_ids
from .linear import Linear
from .loss import softmax_cross_entropy
from .recurrent import GRU, LSTM, RECURRENT_LAYERS, RNN, Recurrent

__all__ = ["GRU", "LSTM", "RECURRENT_LAYERS", "RNN", "Embedding", "Layer", "Linear", "Parameter", "Recurrent",
           "check_token_ids", "dropout_mask", "softmax_cross_entropy"]
