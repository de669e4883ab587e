"""Scores of predictions against gold labels: classification, tagging (conlleval spans), plots.

Host-side (numpy and Python); nothing here touches a backend array.
"""
from .classification import classification_report, confusion_matrix, majority_baseline, multilabel_report
from .spans import chunks, entity_scores, invalid_transitions, tag_scheme, token_accuracy
from .plots import save_confusion_matrix

__all__ = ["chunks", "classification_report", "confusion_matrix", "entity_scores", "invalid_transitions",
           "majority_baseline", "multilabel_report", "save_confusion_matrix", "tag_scheme", "token_accuracy"]
