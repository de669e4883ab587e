"""Models built from layers: language models."""
from .language_model import CELLS, LanguageModel
from .sampling import next_token_probs, sample_next

__all__ = ["CELLS", "LanguageModel", "next_token_probs", "sample_next"]
