"""Decoding: turning a model's next-token scores into sequences (sampling, greedy), apart from the models."""
from .generate import TokenSteps, sample_tokens
from .sampling import check_sampling, gumbel_blocks, next_token_probs, sample_next

__all__ = ["TokenSteps", "check_sampling", "gumbel_blocks", "next_token_probs", "sample_next", "sample_tokens"]
