"""Accuracy, per-class and macro precision / recall / F1, confusion matrices, the majority baseline.

For class c with TP_c true positives, FP_c false positives and FN_c false negatives:
P_c = TP_c / (TP_c + FP_c), R_c = TP_c / (TP_c + FN_c), F1_c = 2 P_c R_c / (P_c + R_c), each 0
when its denominator is 0 (scikit-learn's ``zero_division=0``). Macro scores are the plain
means over classes; for multi-label data micro scores pool the counts of all labels.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..errors import ShapeError


def confusion_matrix(gold, pred, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = gold class, column = predicted class."""
    gold, pred = np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if gold.shape != pred.shape or gold.ndim != 1:
        raise ShapeError(f"gold, pred: expected two 1-D arrays of one shape, received {gold.shape} and {pred.shape}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (gold, pred), 1)
    return matrix


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _scores(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def _per_class(names, precision, recall, f1, support) -> dict:
    return {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)}


def classification_report(gold, pred, names: Sequence[str]) -> dict:
    """accuracy, macro_precision / macro_recall / macro_f1, per_class {name: {precision, recall, f1, support}},
    and the confusion matrix (list of rows; row = gold)."""
    matrix = confusion_matrix(gold, pred, len(names))
    tp = np.diag(matrix)
    precision, recall, f1 = _scores(tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp)
    total = int(matrix.sum())
    return {"accuracy": float(tp.sum() / total) if total else 0.0, "macro_precision": float(precision.mean()),
            "macro_recall": float(recall.mean()), "macro_f1": float(f1.mean()), "examples": total,
            "per_class": _per_class(names, precision, recall, f1, matrix.sum(axis=1)),
            "confusion": matrix.tolist()}


def multilabel_report(gold, pred, names: Sequence[str]) -> dict:
    """gold, pred: (N, C) bool. subset_accuracy (every label right), micro_f1, macro_f1, per_class."""
    gold, pred = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    if gold.shape != pred.shape or gold.ndim != 2 or gold.shape[1] != len(names):
        raise ShapeError(f"gold, pred: expected (N, {len(names)}) arrays, received {gold.shape} and {pred.shape}")
    tp = (gold & pred).sum(axis=0)
    fp, fn = (~gold & pred).sum(axis=0), (gold & ~pred).sum(axis=0)
    precision, recall, f1 = _scores(tp, fp, fn)
    micro_p, micro_r, micro_f1 = _scores(tp.sum(), fp.sum(), fn.sum())
    return {"subset_accuracy": float(np.all(gold == pred, axis=1).mean()), "micro_precision": float(micro_p),
            "micro_recall": float(micro_r), "micro_f1": float(micro_f1), "macro_f1": float(f1.mean()),
            "examples": int(gold.shape[0]), "per_class": _per_class(names, precision, recall, f1, gold.sum(axis=0))}


def majority_baseline(train_labels, gold, names: Sequence[str]) -> dict:
    """Scores of always predicting the most frequent training class (ties: the lower id)."""
    counts = Counter(int(v) for v in train_labels)
    majority = min(counts, key=lambda c: (-counts[c], c))
    gold = np.asarray(gold, dtype=np.int64)
    report = classification_report(gold, np.full_like(gold, majority), names)
    return {"class": names[majority], "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
