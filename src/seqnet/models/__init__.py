"""Models: layers made of layers, each with its own loss and what a user does with it."""
from .classifier import SequenceClassifier
from .encoder import SequenceEncoder
from .generator import ConditionalGenerator
from .language_model import LanguageModel
from .seq2seq import Seq2Seq, Seq2SeqSteps, Translation
from .tagger import SequenceTagger

__all__ = ["ConditionalGenerator", "LanguageModel", "Seq2Seq", "Seq2SeqSteps", "SequenceClassifier", "SequenceEncoder",
           "SequenceTagger", "Translation"]
