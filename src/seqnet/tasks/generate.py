"""Conditional generation (one-to-many): ``seqnet train --task generate --data TRAIN.jsonl``.

Data: JSON lines ``{"condition": "...", "text": "..."}``. The condition set and the tokenizer
are fitted on the training file (a validation condition never seen in training is an error
naming its file and line). The model's vocabulary is the tokenizer's plus one end token
(id ``tokenizer.vocab_size``) that starts and ends every text; texts are cut to
``--max-len`` tokens. Evaluation reports the validation loss in bits per token; samples for
a few conditions are shown every ``--sample-every`` steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import NONNEGATIVE_INT, POSITIVE_INT, WITH_SAMPLES, WITH_WORD_TOKENIZER, option
from ..data import make_tokenizer, read_generation, tokenizer_from_json
from ..data.labeled import ConditionedText
from ..data.tokenizers import KINDS
from ..data.vocabulary import LabelSet
from ..errors import ConfigError, DataFileError, check_not_one_text
from ..models import ConditionalGenerator
from .base import warn_if_mostly_unknown
from .labeled import SequenceDataConfig, SequenceTask


@dataclass
class GenerateConfig(SequenceDataConfig):
    TASK = "generate"
    tokenizer: str = option("char", "token unit", choices=KINDS)
    max_words: int = option(10_000, "word tokenizer: vocabulary size (plus <UNK>, <EOS>)", kind=POSITIVE_INT,
                            only_with=WITH_WORD_TOKENIZER)
    max_len: int = option(400, "tokens kept from the start of each text", kind=POSITIVE_INT)
    embed: int = option(32, "embedding size", kind=POSITIVE_INT)
    condition_embed: int = option(16, "size of each condition's learned vector", kind=POSITIVE_INT)
    condition_at_start_only: bool = option(False, "the condition sets the initial state only (default: it also "
                                                  "enters every step's input)")
    sample_every: int = option(400, "steps between samples shown during training", kind=POSITIVE_INT,
                              only_with=WITH_SAMPLES)
    sample_length: int = option(60, "tokens per sample at most (0: no samples)", kind=NONNEGATIVE_INT)


@dataclass
class EncodedGeneration:
    inputs: np.ndarray            # end_id, y_1 .. y_n
    targets: np.ndarray           # y_1 .. y_n, end_id
    condition: int
    where: str

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


class GenerateTask(SequenceTask):
    """Conditional generation; see the module docstring."""

    kind = "generate"
    Config = GenerateConfig
    Example, noun = ConditionedText, "texts"
    read = staticmethod(read_generation)

    @staticmethod
    def new_model(config: GenerateConfig, setup: dict, dtype: str, seed: int) -> ConditionalGenerator:
        tokenizer = tokenizer_from_json(setup["tokenizer"])
        return ConditionalGenerator(tokenizer.vocab_size + 1, num_conditions=len(setup["conditions"]),
                                    condition_embed=config.condition_embed, embed_size=config.embed,
                                    hidden_size=config.hidden, num_layers=config.layers, cell=config.cell,
                                    dropout=config.dropout, condition_input=not config.condition_at_start_only,
                                    end_id=tokenizer.vocab_size, dtype=dtype, seed=seed)

    def __init__(self, config: GenerateConfig, setup: dict, model: ConditionalGenerator, run_dir: Path | None = None):
        self.config, self.model, self.run_dir = config, model, run_dir
        self.tokenizer = tokenizer_from_json(setup["tokenizer"])
        self.conditions = LabelSet.from_json(setup["conditions"], "condition")
        self._setup = setup
        self.report_every = config.sample_every if config.sample_length else None
        self.train, self.valid = None, []

    # -- building -----------------------------------------------------------------------
    @classmethod
    def create(cls, config, run_dir, *, backend, device, dtype, seed):
        examples = read_generation(config.data)
        train, valid = cls.split(config, examples, seed)
        conditions = LabelSet.fit([e.condition for e in (train if config.valid else examples)], "condition")
        texts = [e.text for e in train]
        tokenizer = make_tokenizer("byte") if config.tokenizer == "byte" else \
            make_tokenizer(config.tokenizer, texts, max_words=config.max_words)
        setup = {"tokenizer": tokenizer.to_json(), "conditions": conditions.to_json()}
        return cls.finish_create(config, setup, train, valid, run_dir, backend=backend, device=device, dtype=dtype,
                                 seed=seed)

    def describe(self) -> str:
        c = self.config
        return (f"{c.cell} {c.layers}x{c.hidden} conditioned on {len(self.conditions)} conditions, "
                f"{self.model.num_parameters():,} parameters, vocabulary {self.tokenizer.vocab_size} + end token, "
                f"{len(self.train):,} training and {len(self.valid):,} validation texts")

    @property
    def end_id(self) -> int:
        return self.tokenizer.vocab_size

    def encode(self, example: ConditionedText) -> EncodedGeneration:
        ids = self.tokenizer.encode(example.text)[:self.config.max_len]
        end = np.array([self.end_id], dtype=np.int64)
        return EncodedGeneration(np.concatenate([end, ids]), np.concatenate([ids, end]),
                                 self.conditions.id(example.condition, example.where), example.where)

    # -- training -------------------------------------------------------------------------
    def batch_loss(self, examples, grad_scale):
        inputs, lengths = self.padded([e.inputs for e in examples])
        targets, _ = self.padded([e.targets for e in examples])
        mask = self.model.backend.asarray(np.arange(inputs.shape[0])[:, None] < lengths[None, :], "bool")
        cond = self.device_ids([e.condition for e in examples])
        if grad_scale is None:
            return self.model.loss(inputs, targets, cond, mask)
        return self.model.loss_and_grads(inputs, targets, cond, mask, grad_scale=grad_scale)

    def loss_weight(self, examples) -> int:
        return sum(len(e) for e in examples)

    def evaluate(self) -> dict:
        if not self.valid:
            return {"val_bits_per_token": None}
        return {"val_" + key: value for key, value in self.mean_bits(self.valid).items()}

    # -- generation -----------------------------------------------------------------------
    def condition_id(self, name: str) -> int:
        if name not in self.conditions:
            raise ConfigError(f"--condition: {name!r} never seen in training; known conditions: "
                              + ", ".join(self.conditions.names))
        return self.conditions.id(name)

    def generate(self, conditions: list[str], *, max_length: int | None = None, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
                 seed: int | None = None) -> list[str]:
        """One text per entry of ``conditions`` (repeat a name for several), sampled in one batch."""
        check_not_one_text("conditions", conditions, "a list of condition names", "name")
        ids = [self.condition_id(name) for name in conditions]
        length = max_length or self.config.max_len
        rows = self.model.generate(np.asarray(ids, dtype=np.int64), length, temperature=temperature, top_k=top_k,
                                   top_p=top_p, greedy=greedy, seed=seed, banned_id=self.tokenizer.unk_id)
        return [self.tokenizer.decode(row) for row in rows]

    def report(self, step: int) -> str | None:
        if not self.config.sample_length:
            return None
        names = list(self.conditions.names[:6])
        texts = self.generate(names, max_length=self.config.sample_length, temperature=0.8, seed=step)
        return f"--- samples at step {step} ---\n" + "\n".join(f"[{name}] {text}" for name, text in zip(names, texts))


    # -- inference on files ---------------------------------------------------------------
    def evaluate_file(self, path, plot: str | None = None) -> dict:
        examples = [self.encode(e) for e in read_generation(path)]
        nats = self.mean_loss(examples)
        scored = self.loss_weight(examples)
        unknown = 0 if self.tokenizer.unk_id is None else \
            sum(int(np.count_nonzero(e.targets == self.tokenizer.unk_id)) for e in examples)
        warn_if_mostly_unknown(unknown, scored, "file")
        return {"bits_per_token": nats / math.log(2), "perplexity": math.exp(nats), "texts": len(examples),
                "tokens": scored, "unknown_tokens": unknown}

    def predict_file(self, path, *, temperature: float = 0.8, seed: int = 0):
        """One generated text per record ("condition" required, "text" ignored), with where the record was read."""
        examples = read_generation(path, require_text=False)
        for example in examples:
            if example.condition not in self.conditions:
                raise DataFileError(f"{example.where}: condition {example.condition!r} never seen in training "
                                    f"(known: {', '.join(self.conditions.names)})")
        texts = self.generate([e.condition for e in examples], temperature=temperature, seed=seed)
        for example, text in zip(examples, texts):
            yield {"where": example.where, "condition": example.condition, "text": text}


