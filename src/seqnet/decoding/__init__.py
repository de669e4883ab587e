"""Decoding: turning a model's next-token scores into sequences (sampling, greedy), apart from the models."""
from .generate import DeviceTokenSteps, TokenSteps, sample_tokens, sample_tokens_on_device
from .sampling import check_sampling, gumbel_blocks, next_token_probs, sample_next

__all__ = ["DeviceTokenSteps", "TokenSteps", "check_sampling", "gumbel_blocks", "next_token_probs", "sample_next",
           "sample_tokens", "sample_tokens_on_device"]
