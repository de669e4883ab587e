"""Classification of whole texts (many-to-one): ``seqnet train --task classify --data TRAIN``.

Data: JSON lines ``{"text", "label"}`` or ``{"text", "labels": [...]}`` (multi-label), TSV
``label<TAB>text``, or a folder per class (:func:`seqnet.data.read_classification`). The
tokenizer (char, word or byte) and the label set are fitted on the training file; a
validation label never seen in training is an error naming its file and line. Texts longer
than ``--max-len`` tokens are cut to their first ``--max-len``. Evaluation reports loss,
accuracy and macro-F1 (multi-label: micro- and macro-F1, subset accuracy) and writes the
confusion matrix of the validation set to ``confusion.png`` in the run directory.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import POSITIVE_INT, WITH_WORD_TOKENIZER, option
from ..data import make_tokenizer, read_classification, tokenizer_from_json
from ..data.labeled import TextExample
from ..data.tokenizers import KINDS
from ..data.vocabulary import LabelSet
from ..errors import ConfigError, DataFileError
from ..layers import POOLINGS
from ..metrics import check_plot_path, classification_report, majority_baseline, multilabel_report
from ..metrics import save_confusion_matrix
from ..models import SequenceClassifier
from .labeled import SequenceDataConfig, SequenceTask, eval_batches

CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class ClassifyConfig(SequenceDataConfig):
    TASK = "classify"
    tokenizer: str = option("char", "token unit", choices=KINDS)
    max_words: int = option(10_000, "word tokenizer: vocabulary size (plus <UNK>, <EOS>)", kind=POSITIVE_INT,
                            only_with=WITH_WORD_TOKENIZER)
    max_len: int = option(400, "tokens kept from the start of each text", kind=POSITIVE_INT)
    bidirectional: bool = option(False, "bidirectional encoder")
    pooling: str = option("last", "how the encoder's states become one vector", choices=POOLINGS)
    attention_size: int = option(64, "--pooling attention: size of the attention layer", kind=POSITIVE_INT,
                                 only_with=("pooling", lambda pooling: pooling == "attention", "--pooling attention"))
    class_weights: str = option("none", "weigh the loss of each class (balanced: by inverse frequency)",
                                choices=CLASS_WEIGHTS)


@dataclass
class EncodedText:
    ids: np.ndarray
    target: object            # class id, or a (C,) 0/1 vector for multi-label
    where: str

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def balanced_weights(label_ids: list[int], num_classes: int) -> list[float]:
    """w_c = N / (C * n_c) (scikit-learn's "balanced"); classes without examples get 1."""
    counts = Counter(label_ids)
    total = len(label_ids)
    return [total / (num_classes * counts[c]) if counts[c] else 1.0 for c in range(num_classes)]


class ClassifyTask(SequenceTask):
    """Sequence classification; see the module docstring."""

    kind = "classify"
    Config = ClassifyConfig
    Example, noun = TextExample, "texts"
    read = staticmethod(read_classification)

    @staticmethod
    def new_model(config: ClassifyConfig, setup: dict, dtype: str, seed: int) -> SequenceClassifier:
        tokenizer = tokenizer_from_json(setup["tokenizer"])
        return SequenceClassifier(len(setup["labels"]), vocab_size=tokenizer.vocab_size, embed_size=config.embed,
                                  hidden_size=config.hidden, num_layers=config.layers, cell=config.cell,
                                  bidirectional=config.bidirectional, pooling=config.pooling,
                                  attention_size=config.attention_size, dropout=config.dropout,
                                  multi_label=setup["multi_label"], class_weights=setup.get("class_weights"),
                                  dtype=dtype, seed=seed)

    loss_unit = "bits per text"              # per instance: bits per label (multi-label), weighted bits per text

    def __init__(self, config: ClassifyConfig, setup: dict, model: SequenceClassifier, run_dir: Path | None = None):
        self.config, self.model, self.run_dir = config, model, run_dir
        self.tokenizer = tokenizer_from_json(setup["tokenizer"])
        self.labels = LabelSet.from_json(setup["labels"], "label")
        self.multi_label = bool(setup["multi_label"])
        self._setup = setup
        self.train, self.valid = None, []
        # the unit of the mean loss (see loss_weight): per (text, label) pair, or weighted by class
        self.loss_unit = "bits per label" if self.multi_label else \
            "bits per text" if setup.get("class_weights") is None else "weighted bits per text"

    # -- building -----------------------------------------------------------------------
    @classmethod
    def create(cls, config, run_dir, *, backend, device, dtype, seed):
        examples = read_classification(config.data)
        multi = {e.multi_label for e in examples}
        multi_label = multi == {True}
        train, valid = cls.split(config, examples, seed)
        if config.valid is not None:
            if {e.multi_label for e in valid} != multi:
                raise DataFileError(f"{config.valid}: {'multi-label' if not multi_label else 'single-label'} "
                                    f"examples, but {config.data} is {'multi' if multi_label else 'single'}-label")
        # With a held-out split every label of the file is known (one seen only in the held-out part is
        # scored, never trained); a separate --valid file may only use labels of the training file.
        names = [name for e in (train if config.valid else examples) for name in e.labels]
        if not names:
            raise DataFileError(f"{config.data}: every example has an empty 'labels' list; a multi-label classifier "
                                "needs examples with labels")
        labels = LabelSet.fit(names, "label")
        if len(labels) < 2 and not multi_label:
            raise DataFileError(f"{config.data}: every example has the label {labels.names[0]!r}; a classifier "
                                "needs at least 2 classes")
        if multi_label and config.class_weights == "balanced":
            raise ConfigError(f"--class-weights balanced: weighs the classes of single-label data; {config.data} is "
                              "multi-label")
        texts = [e.text for e in train]
        tokenizer = make_tokenizer("byte") if config.tokenizer == "byte" else \
            make_tokenizer(config.tokenizer, texts, max_words=config.max_words)
        counts = Counter(labels.id(e.labels[0]) for e in train) if not multi_label else Counter()
        setup = {"tokenizer": tokenizer.to_json(), "labels": labels.to_json(), "multi_label": multi_label,
                 "label_counts": [counts[c] for c in range(len(labels))]}
        setup["class_weights"] = (balanced_weights([labels.id(e.labels[0]) for e in train], len(labels))
                                  if config.class_weights == "balanced" and not multi_label else None)
        return cls.finish_create(config, setup, train, valid, run_dir, backend=backend, device=device, dtype=dtype,
                                 seed=seed)

    def describe(self) -> str:
        c = self.config
        return (f"{'bidirectional ' if c.bidirectional else ''}{c.cell} {c.layers}x{c.hidden}, {c.pooling} pooling, "
                f"{self.model.num_parameters():,} parameters, {len(self.labels)} "
                f"{'labels' if self.multi_label else 'classes'}, {len(self.train):,} training and "
                f"{len(self.valid):,} validation texts")

    # -- encoding -------------------------------------------------------------------------
    def encode(self, example: TextExample, with_labels: bool = True) -> EncodedText:
        ids = self.tokenizer.encode(example.text)[:self.config.max_len]
        if ids.shape[0] == 0:
            raise DataFileError(f"{example.where}: the text encodes to zero tokens")
        target = None
        if with_labels:
            if example.multi_label != self.multi_label:
                raise DataFileError(f"{example.where}: expected a {'labels list' if self.multi_label else 'label'} "
                                    f"like the training data")
            label_ids = [self.labels.id(name, example.where) for name in example.labels]
            if self.multi_label:
                target = np.zeros(len(self.labels))
                target[label_ids] = 1.0
            else:
                target = label_ids[0]
        return EncodedText(ids, target, example.where)

    # -- training -------------------------------------------------------------------------
    def _inputs(self, examples):
        x, lengths = self.padded([e.ids for e in examples])
        return x, lengths

    def _targets(self, examples):
        model = self.model
        if self.multi_label:
            return model.backend.asarray(np.stack([e.target for e in examples]), model.dtype_name)
        return self.device_ids([e.target for e in examples])

    def loss_weight(self, examples) -> float:
        """Texts; a multi-label loss averages over every (text, label) pair, a class-weighted one
        over the texts' class weights (the denominator of :func:`seqnet.layers.softmax_cross_entropy`)."""
        if self.multi_label:
            return len(examples) * len(self.labels)
        weights = self._setup.get("class_weights")
        return len(examples) if weights is None else float(sum(weights[e.target] for e in examples))

    def batch_loss(self, examples, grad_scale):
        x, lengths = self._inputs(examples)
        targets = self._targets(examples)
        if grad_scale is None:
            return self.model.loss(x, targets, lengths)
        return self.model.loss_and_grads(x, targets, lengths, grad_scale=grad_scale)

    def probabilities(self, examples) -> np.ndarray:
        """Host (N, C) probabilities of encoded examples, in their order."""
        out = np.zeros((len(examples), len(self.labels)))
        for idx in eval_batches([len(e) for e in examples], self.config.batch):
            x, lengths = self._inputs([examples[k] for k in idx])
            out[idx] = self.model.predict_proba(x, lengths)
        return out

    def scores(self, examples) -> dict:
        """Loss and the classification report of encoded, labelled examples."""
        probs = self.probabilities(examples)
        names = list(self.labels.names)
        if self.multi_label:
            report = multilabel_report(np.stack([e.target for e in examples]) > 0.5, probs >= 0.5, names)
        else:
            gold = [e.target for e in examples]
            report = classification_report(gold, np.argmax(probs, axis=1), names)
            counts = self._setup.get("label_counts") or []
            if sum(counts):
                train_labels = [c for c, n in enumerate(counts) for _ in range(n)]
                report["majority_baseline"] = majority_baseline(train_labels, gold, names)
        return {**self.mean_bits(examples), **report}

    def evaluate(self) -> dict:
        key = "val_" + self.loss_unit.replace(" ", "_")
        if not self.valid:
            return {key: None}
        report = self.scores(self.valid)
        if self.run_dir is not None and "confusion" in report:
            save_confusion_matrix(report["confusion"], self.labels.names, Path(self.run_dir) / "confusion.png",
                                  "validation set")
        if self.multi_label:
            return {key: report[key[4:]], "val_micro_f1": report["micro_f1"], "val_macro_f1": report["macro_f1"],
                    "val_subset_accuracy": report["subset_accuracy"]}
        return {key: report[key[4:]], "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}

    # -- inference on files ---------------------------------------------------------------
    def evaluate_file(self, path, plot: str | None = None) -> dict:
        """Scores on a labelled file (labels never seen in training are an error); ``plot``: confusion PNG path."""
        if plot is not None:
            if self.multi_label:
                raise ConfigError("plot: a multi-label classifier has no confusion matrix (its report has per-class "
                                  "precision, recall and F1)")
            check_plot_path(plot, "plot")
        report = self.scores([self.encode(e) for e in read_classification(path)])
        if plot is not None:
            save_confusion_matrix(report["confusion"], self.labels.names, plot, Path(path).name)
        return report

    def predict_file(self, path):
        """One record per text: where it was read ("file:line"), the label(s) and every class's probability."""
        examples = read_classification(path, require_labels=False)
        probs = self.probabilities([self.encode(e, with_labels=False) for e in examples])
        names = self.labels.names
        for example, row in zip(examples, probs):
            record = {"where": example.where, "text": example.text}
            if self.multi_label:
                record["labels"] = [n for n, p in zip(names, row) if p >= 0.5]
            else:
                record["label"] = names[int(np.argmax(row))]
            record["probabilities"] = {n: round(float(p), 6) for n, p in zip(names, row)}
            yield record


