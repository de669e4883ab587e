"""Models: layers made of layers, each with its own loss and what a user does with it."""
from .language_model import LanguageModel

__all__ = ["LanguageModel"]
