"""Layers: recurrent stacks (RNN, LSTM, GRU), attention, pooling, CRF, and the building blocks around them."""
from .attention import ATTENTION_TYPES, Attention, Memory, MemoryGrad
from .base import Layer, Parameter
from .crf import LinearChainCRF
from .dropout import dropout_mask
from .embedding import Embedding, check_token_ids
from .linear import Linear
from .loss import sigmoid_binary_cross_entropy, softmax_cross_entropy
from .pooling import POOLINGS, SequencePooling
from .recurrent import GRU, LSTM, RECURRENT_LAYERS, RNN, Recurrent, RecurrentSteps

__all__ = ["ATTENTION_TYPES", "GRU", "LSTM", "POOLINGS", "RECURRENT_LAYERS", "RNN", "Attention", "Embedding", "Layer",
           "Linear", "LinearChainCRF", "Memory", "MemoryGrad", "Parameter", "Recurrent", "RecurrentSteps",
           "SequencePooling", "check_token_ids", "dropout_mask", "sigmoid_binary_cross_entropy",
           "softmax_cross_entropy"]
