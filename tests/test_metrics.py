"""Metric functions on hand-computed cases; conlleval's entity definition on tricky spans."""
from __future__ import annotations

import numpy as np
import pytest

from seqnet.errors import ConfigError
from seqnet.metrics import (chunks, classification_report, confusion_matrix, entity_scores, invalid_transitions,
                            majority_baseline, multilabel_report, tag_scheme, token_accuracy)


def test_classification_report_by_hand():
    # confusion (row gold): [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    gold, pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2]
    np.testing.assert_array_equal(confusion_matrix(gold, pred, 3), [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    report = classification_report(gold, pred, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (report["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert [a["support"], b["support"], c["support"]] == [2, 2, 2]


def test_a_class_never_predicted_scores_zero_not_nan():
    report = classification_report([0, 1, 1], [1, 1, 1], ["x", "y", "z"])
    assert report["per_class"]["x"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_class"]["z"]["support"] == 0 and report["macro_f1"] == pytest.approx((0 + 0.8 + 0) / 3)


def test_majority_baseline():
    base = majority_baseline([2, 2, 1, 0, 2], [0, 2, 2, 1], ["a", "b", "c"])
    assert base["class"] == "c" and base["accuracy"] == 0.5
    assert base["macro_f1"] == pytest.approx((0 + 0 + 2 / 3) / 3)        # c: P 0.5, R 1


def test_multilabel_report_by_hand():
    gold = np.array([[1, 0], [1, 1], [0, 1]], dtype=bool)
    pred = np.array([[1, 1], [1, 0], [0, 1]], dtype=bool)
    r = multilabel_report(gold, pred, ["p", "q"])
    assert r["subset_accuracy"] == pytest.approx(1 / 3)
    assert r["per_class"]["p"]["f1"] == 1.0 and r["per_class"]["q"]["f1"] == pytest.approx(0.5)
    assert r["micro_f1"] == pytest.approx(0.75)                           # tp 3, fp 1, fn 1


@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    (["O", "I-PER", "I-PER"], [("PER", 1, 2)]),                              # I after O starts an entity
    (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),                    # a type change splits
    (["I-PER", "I-PER", "B-PER", "O"], [("PER", 0, 1), ("PER", 2, 2)]),      # IOB1
    (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),
    (["S-PER", "B-LOC", "E-LOC", "E-LOC"], [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]),   # BIOES
    (["B-ORG", "I-ORG", "E-ORG", "I-ORG"], [("ORG", 0, 2), ("ORG", 3, 3)]),  # I after E starts one
    (["O", "O"], []),
])
def test_conlleval_chunks(tags, expected):
    assert chunks(tags) == expected


def test_entity_scores_need_type_and_both_boundaries():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    s = entity_scores(gold, pred)
    assert (s["gold"], s["predicted"], s["correct"]) == (3, 3, 2)
    assert s["precision"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(2 / 3)
    assert s["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold": 1, "predicted": 1,
                                    "correct": 0}
    assert s["per_type"]["LOC"]["f1"] == 1.0
    wrong_type = entity_scores([["B-PER", "I-PER"]], [["B-LOC", "I-LOC"]])
    assert wrong_type["correct"] == 0 and wrong_type["f1"] == 0.0
    assert token_accuracy(gold, pred) == pytest.approx(6 / 7)


def test_tag_schemes_and_invalid_transitions():
    assert tag_scheme(["O", "B-PER", "I-PER"]) == "BIO"
    assert tag_scheme(["O", "S-PER", "E-LOC", "B-LOC"]) == "BIOES"
    assert tag_scheme(["NN", "VB"]) is None
    with pytest.raises(ConfigError, match=r"received \['NN'\]"):
        tag_scheme(["B-PER", "NN", "O"])
    problems = invalid_transitions(["O", "I-PER", "B-LOC", "I-PER"], "BIO")
    assert [k for k, _ in problems] == [1, 3]
    assert "I-PER follows O; scored as the start of a PER entity" in problems[0][1]
    assert invalid_transitions(["B-PER", "I-PER", "O"], "BIO") == []
    bioes = invalid_transitions(["B-PER", "O", "S-LOC", "B-LOC", "E-LOC"], "BIOES")
    assert [k for k, _ in bioes] == [0] and "not followed by I-PER or E-PER" in bioes[0][1]


@pytest.mark.parametrize("classes", [3, 300])
def test_a_confusion_picture_keeps_its_size_for_many_classes(tmp_path, classes):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from seqnet.metrics.plots import MAX_NAMED_CLASSES, save_confusion_matrix

    matrix = np.diag(np.arange(1, classes + 1))
    matrix[0, -1] = 2
    path = save_confusion_matrix(matrix, [f"c{k}" for k in range(classes)], tmp_path / "c.png", "test")
    height, width = imread(path).shape[:2]
    side = (2.5 + 0.55 * min(classes, MAX_NAMED_CLASSES)) * 110            # inches at 110 dpi
    assert height <= side + 1 and width <= side + 1.5 * 110 + 1
