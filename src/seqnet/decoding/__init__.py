"""Decoding: turning a model's next-token scores into sequences (sampling, greedy, beam search), apart from the models."""
from .generate import DeviceTokenSteps, sample_tokens, sample_tokens_on_device
from .sampling import (MIN_TEMPERATURE, active_filters, check_greedy, check_sampling, gumbel_blocks, next_token_probs,
                       refuse_given, sample_next)
from .search import (LENGTH_PENALTIES, Hypothesis, SearchSteps, TokenSteps, beam_search, check_length_penalty,
                     length_penalty, log_softmax, sample_search)

__all__ = ["LENGTH_PENALTIES", "MIN_TEMPERATURE", "DeviceTokenSteps", "Hypothesis", "SearchSteps", "TokenSteps", "active_filters",
           "beam_search", "check_greedy", "check_length_penalty", "check_sampling", "gumbel_blocks", "length_penalty",
           "log_softmax", "next_token_probs", "refuse_given", "sample_next", "sample_search", "sample_tokens",
           "sample_tokens_on_device"]
