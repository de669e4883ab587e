"""Scores of predictions against gold labels: classification, tagging (conlleval spans), output
sequences (exact match, token accuracy, character error rate, BLEU), plots.

Host-side (numpy and Python); nothing here touches a backend array.
"""
from .classification import classification_report, confusion_matrix, majority_baseline, multilabel_report
from .plots import check_plot_path, save_confusion_matrix
from .sequences import char_error_rate, corpus_bleu, edit_distance, exact_match, token_accuracy
from .spans import chunks, entity_scores, invalid_transitions, tag_scheme

__all__ = ["char_error_rate", "check_plot_path", "chunks", "classification_report", "confusion_matrix", "corpus_bleu", "edit_distance",
           "entity_scores", "exact_match", "invalid_transitions", "majority_baseline", "multilabel_report",
           "save_confusion_matrix", "tag_scheme", "token_accuracy"]
