"""Layers: recurrent stacks (RNN, LSTM, GRU) and the building blocks around them."""
from .base import Layer, Parameter
from .crf import LinearChainCRF
from .dropout import dropout_mask
from .embedding import Embedding, check_token_ids
from .linear import Linear
from .loss import sigmoid_binary_cross_entropy, softmax_cross_entropy
from .pooling import POOLINGS, SequencePooling
from .recurrent import GRU, LSTM, RECURRENT_LAYERS, RNN, Recurrent

__all__ = ["GRU", "LSTM", "POOLINGS", "RECURRENT_LAYERS", "RNN", "Embedding", "Layer", "Linear", "LinearChainCRF",
           "Parameter", "Recurrent", "SequencePooling", "check_token_ids", "dropout_mask",
           "sigmoid_binary_cross_entropy", "softmax_cross_entropy"]
