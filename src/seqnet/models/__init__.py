"""Models: layers made of layers, each with its own loss and what a user does with it."""
from .classifier import SequenceClassifier
from .encoder import SequenceEncoder
from .generator import ConditionalGenerator
from .language_model import LanguageModel
from .tagger import SequenceTagger

__all__ = ["ConditionalGenerator", "LanguageModel", "SequenceClassifier", "SequenceEncoder", "SequenceTagger"]
