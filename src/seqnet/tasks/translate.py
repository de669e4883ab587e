"""Translation: learn to map each source sequence to its target sequence (teacher forcing).

Data: a parallel file (``--data``, TSV or JSON lines, :mod:`seqnet.data.parallel`) and
optionally ``--valid``; without it the last ``--val-fraction`` of the pairs (after a seeded
shuffle) is held out. Vocabularies (char or word tokens, separate or ``--shared-vocab``) are
fitted on the training pairs; the encoded pairs are kept in the run directory
(``pairs.<ext>``), so a resumed run reads exactly the same data. Each step takes the next
``--batch`` pairs of a seeded per-epoch shuffle (with n processes, process r takes every
n-th from the r-th on); the loss is the mean cross-entropy per target token (<EOS> included). Evaluation reports that loss on the validation pairs and the
exact match and token accuracy of greedy translations of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import backend as backend_context
from ..backend import to_numpy
from ..config import FRACTION, NONNEGATIVE_INT, POSITIVE_INT, PROBABILITY, WITH_WORD_TOKENIZER, WITHOUT_VALID_FILE
from ..config import Settings, option
from ..data.parallel import EncodedPairs, PairBatcher, encode_pairs, pad_batch, read_pairs
from ..array_files import load_arrays, save_arrays
from ..array_files import suffix as array_suffix
from ..data.vocabulary import SEQUENCE_SPECIALS, VOCAB_KINDS, Vocabulary
from ..errors import ConfigError, CorpusError
from ..layers import ATTENTION_TYPES, RECURRENT_LAYERS
from ..metrics import char_error_rate, corpus_bleu, exact_match, token_accuracy
from ..models import Seq2Seq
from ..random_state import rng_from_json, rng_to_json
from .base import MicroBatch, Task, split_evenly
from .labeled import warn_if_small_validation

PAIRS_FILE = "pairs"


@dataclass
class TranslateConfig(Settings):
    data: str | None = option(None, "parallel training data: TSV source<TAB>target, or JSON lines "
                                    '{"source": ..., "target": ...} (.jsonl)', path=True)
    valid: str | None = option(None, "parallel validation data (default: hold out --val-fraction of --data)",
                                path=True)
    val_fraction: float = option(0.05, "without --valid: the share of --data held out for validation",
                                 kind=FRACTION, only_with=WITHOUT_VALID_FILE)
    tokenizer: str = option("char", "token unit", choices=VOCAB_KINDS)
    shared_vocab: bool = option(False, "one vocabulary (and embedding table) for source and target")
    max_words: int = option(10_000, "word tokens: vocabulary size per side (plus the specials)", kind=POSITIVE_INT,
                            only_with=WITH_WORD_TOKENIZER)
    max_source_len: int = option(200, "longest source accepted, in tokens", kind=POSITIVE_INT)
    max_target_len: int = option(200, "longest target accepted, in tokens", kind=POSITIVE_INT)
    cell: str = option("lstm", "recurrent cell", choices=lambda: tuple(RECURRENT_LAYERS))
    layer_norm: bool = option(False, "layer-normalised LSTM cell (Ba et al. 2016)")
    embed: int = option(32, "embedding size", kind=POSITIVE_INT)
    hidden: int = option(128, "hidden units per layer (a bidirectional encoder has half per direction)",
                         kind=POSITIVE_INT)
    layers: int = option(1, "stacked recurrent layers (encoder and decoder)", kind=POSITIVE_INT)
    unidirectional: bool = option(False, "a forward-only encoder (default: bidirectional)")
    attention: str = option("general", "attention score (none: no attention)", choices=ATTENTION_TYPES)
    no_input_feed: bool = option(False, "do not feed the previous attentional output into the decoder",
                                 only_with=("attention", lambda kind: kind != "none", "an --attention other than none"))
    dropout: float = option(0.0, "dropout probability", kind=PROBABILITY)
    batch: int = option(64, "pairs per step", kind=POSITIVE_INT)
    eval_size: int = option(500, "validation pairs scored and translated per evaluation (0: all)",
                            kind=NONNEGATIVE_INT)
    sample_every: int = option(400, "steps between translations of a few validation pairs shown during training",
                               kind=POSITIVE_INT)

    def validate(self) -> "TranslateConfig":
        super().validate()
        if self.data is None:
            raise ConfigError("--data: --task translate needs a parallel data file (TSV source<TAB>target or "
                              "JSON lines)")
        if self.layer_norm and self.cell != "lstm":
            raise ConfigError(f"--layer-norm: the layer-normalised cell is an LSTM; received --cell {self.cell}")
        if not self.unidirectional and self.hidden % 2:
            raise ConfigError(f"--hidden: a bidirectional encoder splits it between two directions; expected an "
                              f"even number, received {self.hidden} (or pass --unidirectional)")
        return self


def build_vocabularies(config: TranslateConfig, pairs) -> tuple[Vocabulary, Vocabulary]:
    def fit(texts):
        return Vocabulary.fit(texts, kind=config.tokenizer, specials=SEQUENCE_SPECIALS,
                              max_size=config.max_words if config.tokenizer == "word" else None)

    if config.shared_vocab:
        shared = fit([s for s, _ in pairs] + [t for _, t in pairs])
        return shared, shared
    return fit([s for s, _ in pairs]), fit([t for _, t in pairs])


def build_model(config: TranslateConfig, src_vocab: Vocabulary, tgt_vocab: Vocabulary, *, backend: str,
                device: Any, dtype: str, seed: int) -> Seq2Seq:
    with backend_context(backend, device):
        return Seq2Seq(src_vocab.vocab_size, tgt_vocab.vocab_size, config.embed, config.hidden, config.layers,
                       config.cell, not config.unidirectional, config.attention, not config.no_input_feed,
                       dropout=config.dropout, layer_norm=config.layer_norm, share_embeddings=config.shared_vocab,
                       dtype=dtype, seed=seed, src_vocab=src_vocab, tgt_vocab=tgt_vocab)


class TranslateTask(Task):
    """Sequence-to-sequence training on parallel data; see the module docstring."""

    kind = "translate"
    Config = TranslateConfig

    def __init__(self, config: TranslateConfig, src_vocab: Vocabulary, tgt_vocab: Vocabulary, model: Seq2Seq,
                 train: EncodedPairs | None = None, valid: EncodedPairs | None = None, seed: int = 0):
        self.config, self.src_vocab, self.tgt_vocab, self.model = config, src_vocab, tgt_vocab, model
        self.report_every = config.sample_every
        self.train, self.valid = train, valid
        if train is not None:
            self.batcher = PairBatcher(len(train), config.batch, seed)
            mean_target = (train.tgt.shape[0] + len(train)) / len(train)          # <EOS> included
            self.tokens_per_step = int(round(config.batch * mean_target))

    # -- building -------------------------------------------------------------------------
    @classmethod
    def create(cls, config, run_dir, *, backend, device, dtype, seed):
        config.validate()
        pairs = read_pairs(config.data)
        if config.valid is not None:
            train_pairs, valid_pairs, where = pairs, read_pairs(config.valid), config.valid
        else:
            train_pairs, valid_pairs = _hold_out(pairs, config.val_fraction, seed)
            where = f"{config.data} (held out)"
        src_vocab, tgt_vocab = build_vocabularies(config, train_pairs)
        limits = dict(max_source_len=config.max_source_len, max_target_len=config.max_target_len)
        train = encode_pairs(train_pairs, src_vocab, tgt_vocab, where=config.data, **limits)
        valid = encode_pairs(valid_pairs, src_vocab, tgt_vocab, where=where, **limits) if valid_pairs else None

        warn_if_small_validation(config, 0 if valid is None else len(valid), "pairs")
        arrays = train.to_arrays("train/")
        if valid is not None:
            arrays.update(valid.to_arrays("valid/"))
        save_arrays(Path(run_dir) / (PAIRS_FILE + array_suffix()), arrays)
        model = build_model(config, src_vocab, tgt_vocab, backend=backend, device=device, dtype=dtype, seed=seed)
        return cls(config, src_vocab, tgt_vocab, model, train, valid, seed)

    @classmethod
    def rebuild(cls, config, setup, *, backend, device, dtype, seed, run_dir=None):
        src_vocab = Vocabulary.from_json(setup.get("src_vocab"), "setup['src_vocab']")
        tgt_vocab = Vocabulary.from_json(setup.get("tgt_vocab"), "setup['tgt_vocab']")
        train = valid = None
        if run_dir is not None:

            files = sorted(Path(run_dir).glob(PAIRS_FILE + ".*"))
            if not files:
                raise CorpusError(f"{run_dir}: the run's encoded pairs ({PAIRS_FILE}.safetensors or .npz) are missing")
            arrays = load_arrays(files[0])
            train = EncodedPairs.from_arrays(arrays, "train/")
            valid = EncodedPairs.from_arrays(arrays, "valid/") if "valid/src" in arrays else None
        model = build_model(config, src_vocab, tgt_vocab, backend=backend, device=device, dtype=dtype, seed=seed)
        return cls(config, src_vocab, tgt_vocab, model, train, valid, seed)

    def setup(self) -> dict:
        return {"src_vocab": self.src_vocab.to_json(), "tgt_vocab": self.tgt_vocab.to_json()}

    def describe(self) -> str:
        c = self.config
        cell = ("layer-norm " if c.layer_norm else "") + c.cell
        encoder = "unidirectional" if c.unidirectional else "bidirectional"
        return (f"seq2seq {cell} {c.layers}x{c.hidden} ({encoder} encoder, attention {c.attention}"
                f"{'' if c.no_input_feed or c.attention == 'none' else ', input feeding'}), "
                f"{self.model.num_parameters():,} parameters, vocabularies {self.src_vocab.vocab_size}/"
                f"{self.tgt_vocab.vocab_size} {c.tokenizer}s, {len(self.train):,} training pairs, "
                f"{0 if self.valid is None else len(self.valid):,} validation pairs")

    # -- training -----------------------------------------------------------------------
    def train_batches(self, count: int) -> list[MicroBatch]:
        """This process's share of the next ``--batch`` pairs (every n-th of n processes) as
        ``count`` micro-batches, each weighted by its target tokens."""
        batch = self.config.batch
        if batch % count:
            raise ConfigError(f"--accumulate: expected a divisor of --batch {batch}, received {count}")
        mine = self.batcher.next_indices()[self.rank::self.size]
        parts = [pad_batch(self.train, part) for part in split_evenly(mine, count)]
        return [MicroBatch(part, int(part[4].sum())) for part in parts]

    def loss_and_grads(self, batch: MicroBatch, grad_scale: float):
        src, lengths, tgt_in, tgt_out, mask = batch.data
        model = self.model
        return model.loss_and_grads(model.device_ids(src), lengths, model.device_ids(tgt_in), model.device_ids(tgt_out),
                                    model.backend.asarray(mask), grad_scale=grad_scale)

    # -- evaluation ---------------------------------------------------------------------
    def _eval_pairs(self) -> EncodedPairs | None:
        if self.valid is None:
            return None
        size = self.config.eval_size
        return self.valid if not size or size >= len(self.valid) else self.valid.subset(range(size))

    def evaluate(self) -> dict:
        pairs = self._eval_pairs()
        if pairs is None:
            return {"val_bits_per_token": None, "val_exact_match": None}
        nats = pair_loss(self.model, pairs, self.config.batch)
        outputs = self.model.translate([pairs.source(n) for n in range(len(pairs))], batch_size=max(64, self.config.batch),
                                       keep_attention=False)
        hyps = [t.tokens[0].tolist() for t in outputs]
        refs = [pairs.target(n).tolist() for n in range(len(pairs))]
        return {"val_bits_per_token": nats / math.log(2), "val_exact_match": exact_match(hyps, refs),
                "val_token_accuracy": token_accuracy(hyps, refs)}

    def report(self, step: int) -> str | None:
        pairs = self._eval_pairs()
        if pairs is None:
            return None
        shown = range(min(3, len(pairs)))
        outputs = self.model.translate([pairs.source(n) for n in shown], keep_attention=False)
        return "\n".join(f"{self.src_vocab.decode(pairs.source(n))}  ->  {out.outputs[0]}  "
                         f"(reference: {self.tgt_vocab.decode(pairs.target(n))})" for n, out in zip(shown, outputs))

    def evaluate_file(self, path: str, **search) -> dict:
        """Scores of translations of the pairs of a file against their targets (see :mod:`seqnet.metrics`)."""
        pairs = read_pairs(path)
        outputs = self.model.translate([s for s, _ in pairs], keep_attention=False, **search)
        hyps = [t.outputs[0] for t in outputs]
        refs = [self.tgt_vocab.decode(self.tgt_vocab.encode(t)) for _, t in pairs]   # as the model can write them
        split = self.tgt_vocab.split
        result = {"pairs": len(pairs), "exact_match": exact_match([split(h) for h in hyps], [split(r) for r in refs]),
                  "token_accuracy": token_accuracy([split(h) for h in hyps], [split(r) for r in refs]),
                  "char_error_rate": char_error_rate(hyps, refs)}
        if self.tgt_vocab.kind == "word":
            result["bleu"] = corpus_bleu([split(h) for h in hyps], [split(r) for r in refs])
        return result

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> tuple[dict, dict]:
        return {"data": self.batcher.state_dict(), "rng": rng_to_json(self.model.dropout_rng)}, {}

    def load_state_dict(self, state: dict, arrays: dict) -> None:
        self.batcher.load_state_dict(state["data"])
        self.model.dropout_rng.bit_generator.state = rng_from_json(state["rng"]).bit_generator.state


def _hold_out(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """(training, held-out) pairs: the last ``fraction`` of a seeded shuffle (at least one of
    each when there are two or more pairs and ``fraction`` > 0)."""
    if fraction == 0 or len(pairs) < 2:
        return pairs, []
    order = np.random.default_rng([seed, 1]).permutation(len(pairs))
    held = min(len(pairs) - 1, max(1, int(round(fraction * len(pairs)))))
    return [pairs[k] for k in order[:-held]], [pairs[k] for k in order[-held:]]


def pair_loss(model: Seq2Seq, pairs: EncodedPairs, batch: int) -> float:
    """Mean cross-entropy (nats per target token, <EOS> included) of ``pairs`` under teacher forcing."""
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch):
        src, lengths, tgt_in, tgt_out, mask = pad_batch(pairs, range(start, min(start + batch, len(pairs))))
        loss = model.loss(model.device_ids(src), lengths, model.device_ids(tgt_in), model.device_ids(tgt_out),
                          model.backend.asarray(mask))
        tokens = int(mask.sum())
        total += float(to_numpy(loss)) * tokens
        count += tokens
    return total / count
