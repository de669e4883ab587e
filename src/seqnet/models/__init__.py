"""Models: layers made of layers, each with its own loss and what a user does with it."""
from .language_model import LanguageModel
from .seq2seq import Seq2Seq, Seq2SeqSteps, Translation

__all__ = ["LanguageModel", "Seq2Seq", "Seq2SeqSteps", "Translation"]
