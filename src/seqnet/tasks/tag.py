"""Tagging (many-to-many, one tag per token): ``seqnet train --task tag --data TRAIN.conll``.

Data: CoNLL columns (:func:`seqnet.data.read_conll`), tokens at word or character level
(each token is one symbol of the vocabulary, the ``--max-words`` most frequent, <UNK> for
the rest). Tags O / B- / I- / E- / S-TYPE are scored as entities (conlleval's definition);
other tag sets are scored per token only. A tag sequence that breaks its BIO or BIOES scheme
is reported (file and line) with how it is scored. A validation tag never seen in training
is reported and kept as the gold tag for scoring (it can never be predicted); its loss target
becomes O (or the most frequent training tag when there is no O).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import POSITIVE_INT, option
from ..data import read_conll
from ..data.labeled import TaggedSentence
from ..data.vocabulary import LabelSet, Vocabulary
from ..errors import ConfigError, DataFileError
from ..metrics import classification_report, entity_scores, invalid_transitions, tag_scheme, token_accuracy
from ..models import SequenceTagger
from .labeled import SequenceDataConfig, SequenceTask, eval_batches, warn


@dataclass
class TagConfig(SequenceDataConfig):
    TASK = "tag"
    max_words: int = option(10_000, "vocabulary size of the tokens (plus <UNK>)", kind=POSITIVE_INT)
    crf: bool = option(False, "linear-chain CRF output layer (Viterbi decoding)")
    unidirectional: bool = option(False, "left-to-right encoder only (default: bidirectional)")


@dataclass
class EncodedSentence:
    ids: np.ndarray
    tag_ids: np.ndarray
    gold: tuple[str, ...]
    where: str

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def scheme_of(tags, path) -> str | None:
    try:
        return tag_scheme(tags)
    except ConfigError as err:
        raise DataFileError(f"{path}: {err}") from err


def scheme_warnings(sentences: list[TaggedSentence], scheme: str | None) -> list[str]:
    """file:line messages for every tag that breaks ``scheme``."""
    if scheme is None:
        return []
    return [f"{s.path}:{s.lines[k]}: {message}" for s in sentences for k, message in invalid_transitions(s.tags, scheme)]


class TagTask(SequenceTask):
    """Sequence tagging; see the module docstring."""

    kind = "tag"
    Config = TagConfig
    Example, noun = TaggedSentence, "sentences"
    read = staticmethod(read_conll)

    @staticmethod
    def new_model(config: TagConfig, setup: dict, dtype: str, seed: int) -> SequenceTagger:
        return SequenceTagger(len(setup["tags"]), vocab_size=len(Vocabulary.from_json(setup["vocabulary"])),
                              embed_size=config.embed, hidden_size=config.hidden, num_layers=config.layers,
                              cell=config.cell, bidirectional=not config.unidirectional, dropout=config.dropout,
                              crf=config.crf, dtype=dtype, seed=seed)

    def __init__(self, config: TagConfig, setup: dict, model: SequenceTagger, run_dir: Path | None = None):
        self.config, self.model, self.run_dir = config, model, run_dir
        self.vocabulary = Vocabulary.from_json(setup["vocabulary"])
        self.tags = LabelSet.from_json(setup["tags"], "tag")
        self.scheme = setup["scheme"]
        self._setup = setup
        counts = setup.get("tag_counts") or [0] * len(self.tags)
        self.fallback_tag = self.tags.id("O") if "O" in self.tags else int(np.argmax(counts))
        self.train, self.valid = None, []

    # -- building -----------------------------------------------------------------------
    @classmethod
    def create(cls, config, run_dir, *, backend, device, dtype, seed):
        sentences = read_conll(config.data)
        train, valid = cls.split(config, sentences, seed)
        tags = LabelSet.fit([t for s in (train if config.valid else sentences) for t in s.tags], "tag")
        if len(tags) < 2:
            raise DataFileError(f"{config.data}: every token has the tag {tags.names[0]!r}; a tagger needs at least "
                                "2 tags")
        scheme = scheme_of(tags.names, config.data)
        counts = Counter(t for s in train for t in s.tags)
        setup = {"vocabulary": Vocabulary.fit([s.tokens for s in train], max_size=config.max_words).to_json(),
                 "tags": tags.to_json(), "scheme": scheme, "tag_counts": [counts[t] for t in tags.names]}
        warn(scheme_warnings(sentences if config.valid is None else sentences + valid, scheme), "tag-scheme warnings")
        return cls.finish_create(config, setup, train, valid, run_dir, backend=backend, device=device, dtype=dtype,
                                 seed=seed)

    def encode_examples(self, train: list, valid: list) -> None:
        unseen: list[str] = []
        self.train = [self.encode(s, unseen) for s in train]
        self.valid = [self.encode(s, unseen) for s in valid]
        warn(unseen, "unseen tags")

    def describe(self) -> str:
        c = self.config
        return (f"{'' if c.unidirectional else 'bidirectional '}{c.cell} {c.layers}x{c.hidden}"
                f"{' + CRF' if c.crf else ''}, {self.model.num_parameters():,} parameters, {len(self.tags)} tags "
                f"({self.scheme or 'no entity scheme'}), vocabulary {len(self.vocabulary)}, {len(self.train):,} training "
                f"and {len(self.valid):,} validation sentences")

    # -- encoding -------------------------------------------------------------------------
    def encode(self, sentence: TaggedSentence, unseen: list[str] | None = None) -> EncodedSentence:
        """Token and tag ids; a tag never seen in training is appended to ``unseen`` (file:line) and trains as O."""
        tag_ids = []
        for tag, line in zip(sentence.tags, sentence.lines):
            if tag in self.tags:
                tag_ids.append(self.tags.id(tag))
            else:
                tag_ids.append(self.fallback_tag)
                if unseen is not None:
                    unseen.append(f"{sentence.path}:{line}: tag {tag!r} never seen in training; scored as a gold "
                                  f"tag the model cannot predict (its loss term takes it as {self.tags.names[self.fallback_tag]!r})")
        return EncodedSentence(self.vocabulary.encode(sentence.tokens), np.asarray(tag_ids, dtype=np.int64),
                               sentence.tags, sentence.where)

    # -- training -------------------------------------------------------------------------
    def batch_loss(self, examples, grad_scale):
        x, lengths = self.padded([e.ids for e in examples])
        tags, _ = self.padded([e.tag_ids for e in examples])
        if grad_scale is None:
            return self.model.loss(x, tags, lengths)
        return self.model.loss_and_grads(x, tags, lengths, grad_scale=grad_scale)

    def loss_weight(self, examples) -> int:
        return sum(len(e) for e in examples)           # the loss is a mean over valid tokens

    def predict_tags(self, examples) -> list[list[str]]:
        """Predicted tag names of encoded sentences, in their order."""
        out: list = [None] * len(examples)
        for idx in eval_batches([len(e) for e in examples], self.config.batch):
            x, lengths = self.padded([examples[k].ids for k in idx])
            for k, path in zip(idx, self.model.predict(x, lengths)):
                out[k] = [self.tags.names[t] for t in path]
        return out

    def scores(self, examples) -> dict:
        """Loss, token accuracy, per-tag report and (with a BIO/BIOES scheme) conlleval entity scores."""
        gold = [list(e.gold) for e in examples]
        pred = self.predict_tags(examples)
        names = list(self.tags.names) + sorted({t for g in gold for t in g} - set(self.tags.names))
        index = {n: k for k, n in enumerate(names)}
        flat_gold = [index[t] for g in gold for t in g]
        report = {**self.mean_bits(examples), "token_accuracy": token_accuracy(gold, pred),
                  "per_tag": classification_report(flat_gold, [index[t] for p in pred for t in p], names)["per_class"]}
        counts = self._setup.get("tag_counts")
        if counts and sum(counts):
            majority = self.tags.names[int(np.argmax(counts))]
            base = [[majority] * len(g) for g in gold]
            report["majority_baseline"] = {"tag": majority, "token_accuracy": token_accuracy(gold, base)}
            if self.scheme:
                report["majority_baseline"]["entity_f1"] = entity_scores(gold, base)["f1"]
        if self.scheme:
            report["entities"] = entity_scores(gold, pred)
        return report

    def evaluate(self) -> dict:
        if not self.valid:
            return {"val_bits_per_token": None}
        report = self.scores(self.valid)
        out = {"val_bits_per_token": report["bits_per_token"], "val_token_accuracy": report["token_accuracy"]}
        if self.scheme:
            out["val_entity_f1"] = report["entities"]["f1"]
        return out

    # -- inference on files ---------------------------------------------------------------
    def evaluate_file(self, path, plot: str | None = None) -> dict:
        sentences = read_conll(path)
        unseen: list[str] = []
        examples = [self.encode(s, unseen) for s in sentences]
        warn(scheme_warnings(sentences, self.scheme) + unseen, "warnings")
        return self.scores(examples)

    def predict_file(self, path):
        """One record per sentence: where it starts ("file:line"), its tokens and predicted tags."""
        sentences = read_conll(path, require_tags=False)
        encoded = [EncodedSentence(self.vocabulary.encode(s.tokens), np.zeros(len(s.tokens), np.int64), (), s.where)
                   for s in sentences]
        for sentence, tags in zip(sentences, self.predict_tags(encoded)):
            yield {"where": sentence.where, "tokens": list(sentence.tokens), "tags": tags}


