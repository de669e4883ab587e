"""Layers: recurrent stacks (RNN, LSTM, GRU), attention, and the building blocks around them."""
from .attention import ATTENTION_TYPES, Attention, Memory, MemoryGrad
from .base import Layer, Parameter
from .dropout import dropout_mask
from .embedding import Embedding, check_token_ids
from .linear import Linear
from .loss import softmax_cross_entropy
from .recurrent import GRU, LSTM, RECURRENT_LAYERS, RNN, Recurrent, RecurrentSteps

__all__ = ["ATTENTION_TYPES", "Attention", "Memory", "MemoryGrad", "GRU", "LSTM", "RECURRENT_LAYERS", "RNN", "Embedding", "Layer", "Linear", "Parameter", "Recurrent", "RecurrentSteps",
           "check_token_ids", "dropout_mask", "softmax_cross_entropy"]
