"""Language modelling: predict each next token of a corpus, trained by truncated BPTT.

The corpus is encoded once into ``tokens.bin`` in the run directory and memory-mapped; its
tail (``val_fraction``) is the validation split. The training split is laid out as
``batch`` parallel streams (:class:`seqnet.data.StreamBatcher`); each step takes the next
``seq_len`` tokens of every stream, and the recurrent state of each stream is carried from
one step to the next (no gradient flows back across steps). With k micro-batches a step's
streams are split into k groups of columns, each with its own carried state, so the
gradient equals that of the whole batch. With several processes (:meth:`shard`) each
reads only its own contiguous share of the B streams (and carries their state), so
truncated BPTT stays exact; a checkpoint holds the state of all B streams.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import backend as backend_context
from ..backend import to_numpy
from ..config import FRACTION, NONNEGATIVE_INT, POSITIVE_INT, PROBABILITY, WITH_SAMPLES, WITH_WORD_TOKENIZER
from ..config import Settings, option
from ..data import StreamBatcher, TokenStream, encode_corpus, iter_eval_batches, load_token_ids, make_tokenizer
from ..data import resolve_corpus, split_train_val, tokenizer_from_json
from ..data.corpus import iter_text_chunks
from ..data.tokenizers import KINDS
from ..errors import CheckpointError, ConfigError, CorpusError, SeqnetWarning, check_positive_int
from ..layers import RECURRENT_LAYERS
from ..models import LanguageModel
from ..random_state import rng_from_json, rng_to_json
from .base import MicroBatch, Task, share_bounds, warn_if_mostly_unknown

EVAL_STREAMS = 16        # parallel streams of eval_corpus unless told (fewer for a corpus under 32 tokens)
CARRY_PREFIX = "carry/"   # arrays of the state carried between steps: carry/0 (h), carry/1 (c)
MIN_VALID_WINDOWS = 2     # a validation tail of fewer (--batch x --seq-len) evaluation windows is warned about


@dataclass
class LanguageModelConfig(Settings):
    corpus: str = option("python-stdlib", "file, directory, glob, or 'python-stdlib'", path=True)
    tokenizer: str = option("char", "token unit", choices=KINDS)
    max_words: int = option(10_000, "word tokenizer: vocabulary size (plus <UNK>, <EOS>)", kind=POSITIVE_INT,
                            only_with=WITH_WORD_TOKENIZER)
    cell: str = option("lstm", "recurrent cell", choices=lambda: tuple(RECURRENT_LAYERS))
    layer_norm: bool = option(False, "layer-normalised LSTM cell (Ba et al. 2016)")
    embed: int = option(64, "embedding size", kind=POSITIVE_INT)
    hidden: int = option(256, "hidden units per layer", kind=POSITIVE_INT)
    layers: int = option(1, "stacked recurrent layers", kind=POSITIVE_INT)
    dropout: float = option(0.0, "dropout probability (embedding, between layers, output)", kind=PROBABILITY)
    tie_weights: bool = option(False, "share the embedding table with the output layer (needs --embed = --hidden)")
    seq_len: int = option(64, "tokens per stream per step (truncated BPTT length)", kind=POSITIVE_INT)
    batch: int = option(32, "parallel streams per step", kind=POSITIVE_INT)
    val_fraction: float = option(0.02, "tail of the corpus held out for validation", kind=FRACTION)
    eval_batches: int = option(20, "validation batches per evaluation (0: the whole split)", kind=NONNEGATIVE_INT)
    sample_every: int = option(400, "steps between samples shown during training", kind=POSITIVE_INT,
                              only_with=WITH_SAMPLES)
    sample_length: int = option(300, "characters or words per sample (0: no samples)", kind=NONNEGATIVE_INT)

    def validate(self) -> "LanguageModelConfig":
        super().validate()
        if self.layer_norm and self.cell != "lstm":
            raise ConfigError(f"--layer-norm: the layer-normalised cell is an LSTM; received --cell {self.cell}")
        if self.tie_weights and self.embed != self.hidden:
            raise ConfigError(f"--tie-weights: needs --embed equal to --hidden, received --embed {self.embed} "
                              f"and --hidden {self.hidden}")
        return self


def evaluate_ids(model: LanguageModel, ids: np.ndarray, batch: int, seq_len: int,
                 max_batches: int = 0) -> tuple[float, int]:
    """(mean cross-entropy in nats per token, number of tokens predicted) over ``ids`` laid out
    in ``batch`` streams (see :func:`seqnet.data.iter_eval_batches`), state carried."""
    state, total, count = None, None, 0
    for k, (inputs, targets) in enumerate(iter_eval_batches(ids, batch, seq_len)):
        if max_batches and k >= max_batches:
            break
        loss, state = model.loss(model.device_ids(inputs), model.device_ids(targets), state)
        tokens = inputs.shape[0] * inputs.shape[1]
        total = loss * tokens if total is None else total + loss * tokens
        count += tokens
    return float(to_numpy(total)) / count, count


def validation_windows(num_tokens: int, batch: int, seq_len: int) -> int:
    """How many evaluation windows (steps of :func:`evaluate_ids`, ``batch`` streams of up to
    ``seq_len`` tokens) a validation split of ``num_tokens`` yields; 0 when
    :meth:`LanguageModelTask.evaluate` has too few tokens to score (fewer than 2 per stream)."""
    if num_tokens < 2 * batch:
        return 0
    return math.ceil((num_tokens // batch - 1) / seq_len)


def warn_if_small_validation(config: LanguageModelConfig, num_tokens: int, corpus_tokens: int) -> None:
    """A SeqnetWarning when the held-out tail yields fewer than :data:`MIN_VALID_WINDOWS`
    evaluation windows: the validation bits per token then rest on a few hundred tokens, or none."""
    if config.val_fraction == 0:
        return
    windows = validation_windows(num_tokens, config.batch, config.seq_len)
    if windows >= MIN_VALID_WINDOWS:
        return
    held = (f"the held-out tail (--val-fraction {config.val_fraction} of {corpus_tokens:,} corpus tokens) is "
            f"{num_tokens:,} tokens")
    advice = "use a larger --val-fraction or a larger corpus"
    if windows == 0:
        message = (f"validation: {held}, fewer than 2 per stream of --batch {config.batch}: no validation scores "
                   f"will be reported; {advice}")
    else:
        scored = config.batch * (num_tokens // config.batch - 1)
        plural = "s" if windows != 1 else ""
        message = (f"validation: {held}, {windows} evaluation window{plural} of --batch {config.batch} x --seq-len "
                   f"{config.seq_len}; the validation scores rest on only {scored:,} predicted tokens; {advice}")
    warnings.warn(message, SeqnetWarning, stacklevel=3)


def build_model(config: LanguageModelConfig, tokenizer, *, backend: str, device: Any, dtype: str,
                seed: int) -> LanguageModel:
    with backend_context(backend, device):
        return LanguageModel(tokenizer.vocab_size, config.embed, config.hidden, config.layers, config.cell,
                             config.dropout, config.tie_weights, dtype=dtype, seed=seed, tokenizer=tokenizer,
                             layer_norm=config.layer_norm)


class LanguageModelTask(Task):
    """Next-token prediction on a corpus; see the module docstring."""

    kind = "lm"
    Config = LanguageModelConfig
    sharded_state = {CARRY_PREFIX: 1}        # (layers, streams, hidden): this process's streams

    def __init__(self, config: LanguageModelConfig, tokenizer, model: LanguageModel, ids: np.ndarray | None = None):
        self.config, self.tokenizer, self.model = config, tokenizer, model
        self.report_every = config.sample_every if config.sample_length else None
        self.tokens_per_step = config.batch * config.seq_len
        self.carried: list = [None]
        self.streams = (0, config.batch)      # this process's share of the B streams: [start, stop)
        if ids is not None:
            self.train_ids, self.val_ids = split_train_val(ids, config.val_fraction)
            self.batcher = StreamBatcher(self.train_ids, config.batch, config.seq_len)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def create(cls, config, run_dir, *, backend, device, dtype, seed):
        paths = resolve_corpus(config.corpus)
        if config.tokenizer == "byte":
            tokenizer = make_tokenizer("byte")
        else:
            tokenizer = make_tokenizer(config.tokenizer, iter_text_chunks(paths), max_words=config.max_words)
        ids = load_token_ids(encode_corpus(paths, tokenizer, Path(run_dir) / "tokens.bin"), verify=False)  # just written
        model = build_model(config, tokenizer, backend=backend, device=device, dtype=dtype, seed=seed)
        task = cls(config, tokenizer, model, ids)
        warn_if_small_validation(config, int(task.val_ids.shape[0]), int(ids.shape[0]))
        return task

    @classmethod
    def rebuild(cls, config, setup, *, backend, device, dtype, seed, run_dir=None):
        """The run's model and, with ``run_dir``, its own encoded corpus (the original is not read)."""
        tokenizer = tokenizer_from_json(setup.get("tokenizer"))
        ids = None
        if run_dir is not None:
            stream = TokenStream.open(Path(run_dir) / "tokens.bin")
            if stream.tokenizer_fingerprint != tokenizer.fingerprint():
                raise CorpusError(f"{stream.path}: was encoded with another vocabulary than the checkpoint's; "
                                  "the run directory is inconsistent (restore tokens.bin or start a new run)")
            changed = stream.changed_sources()
            if changed:
                warnings.warn(f"the corpus has changed since this run encoded it ({len(changed)} file(s), e.g. "
                              f"{changed[0]}); the run goes on with its own encoded copy, {stream.path.name}",
                              SeqnetWarning, stacklevel=2)
            ids = stream.ids
        model = build_model(config, tokenizer, backend=backend, device=device, dtype=dtype, seed=seed)
        return cls(config, tokenizer, model, ids)

    def setup(self) -> dict:
        return {"tokenizer": self.tokenizer.to_json()}

    def check_trainer_config(self, config) -> None:
        if self.config.batch % config.accumulate:
            raise ConfigError(f"--accumulate: expected a divisor of --batch {self.config.batch}, "
                              f"received {config.accumulate}")
        start, stop = self.streams
        if stop - start < config.accumulate:
            raise ConfigError(f"--accumulate: each micro-batch needs a stream of its own, but this process (rank "
                              f"{self.rank} of {self.size}) has {stop - start} of the --batch {self.config.batch} "
                              f"streams for {config.accumulate} micro-batches; raise --batch or lower --accumulate "
                              f"(a run of these settings trains on at most {self.config.batch // config.accumulate} "
                              f"processes, and resumes on as many)")

    def shard(self, rank: int, size: int) -> None:
        """Read and carry only streams [start, stop) of the B, this process's share."""
        start, stop = share_bounds(self.config.batch, rank, size)
        if stop == start:
            raise ConfigError(f"--batch: {self.config.batch} streams cannot be shared by {size} processes; expected "
                              f"at least one stream per process (--batch {size} or more)")
        super().shard(rank, size)
        self.streams = (start, stop)
        self.batcher.select_streams(start, stop)
        self.carried = [None]

    def describe(self) -> str:
        c = self.config
        cell = ("layer-norm " if c.layer_norm else "") + c.cell
        return (f"{cell} {c.layers}x{c.hidden}, {self.model.num_parameters():,} parameters, vocabulary "
                f"{self.tokenizer.vocab_size}, {self.train_ids.shape[0]:,} training tokens")

    # -- training -----------------------------------------------------------------------
    def train_batches(self, count: int) -> list:
        """This process's streams of the next (T, B) batch as ``count`` micro-batches, groups of
        columns as even as can be (B / count streams each for one process)."""
        batch = self.config.batch
        if batch % count:
            raise ConfigError(f"--accumulate: expected a divisor of --batch {batch}, received {count}")
        widths = self._group_widths(count)
        if self.batcher.position % len(self.batcher) == 0:
            self.carried = [None] * count         # the streams restart: do not carry the old state
        elif len(self.carried) != count:
            self.carried = self._split(self._joined_state(), widths)
        inputs, targets = self.batcher.next_batch()
        batches, start = [], 0
        for k, width in enumerate(widths):
            columns = slice(start, start + width)
            batches.append(MicroBatch((inputs[:, columns], targets[:, columns], k), inputs.shape[0] * width))
            start += width
        return batches

    def _group_widths(self, count: int) -> list[int]:
        width = self.streams[1] - self.streams[0]
        if width < count:
            raise ConfigError(f"--accumulate: expected at most {width} micro-batches (this process's streams), "
                              f"received {count}")
        return [stop - start for start, stop in (share_bounds(width, k, count) for k in range(count))]

    def loss_and_grads(self, batch: MicroBatch, grad_scale: float):
        inputs, targets, k = batch.data
        model = self.model
        loss, self.carried[k] = model.loss_and_grads(model.device_ids(inputs), model.device_ids(targets),
                                                     self.carried[k], grad_scale=grad_scale)
        return loss

    def evaluate(self) -> dict:
        c = self.config
        if self.val_ids.shape[0] < 2 * c.batch:
            return {"val_bits_per_token": None}          # too few tokens held out
        nats, _ = evaluate_ids(self.model, self.val_ids, min(c.batch, self.val_ids.shape[0] // 2), c.seq_len,
                               c.eval_batches)
        return {"val_bits_per_token": nats / math.log(2)}

    def evaluate_corpus(self, corpus: str, batch: int | None, seq_len: int) -> dict:
        """Bits per token of the trained model on another corpus, cut into ``batch`` streams
        (None: ``EVAL_STREAMS``, or fewer for a short corpus); every token after a stream's first
        is predicted. Also counts the predicted tokens that the vocabulary did not know (<UNK>),
        with a warning when they are many."""
        import tempfile

        if batch is not None:
            check_positive_int("--batch", batch)
        check_positive_int("--seq-len", seq_len)
        paths = resolve_corpus(corpus)
        advice = (f"this model's {self.tokenizer.kind} tokenizer reads UTF-8 text only (a model trained with "
                  "--tokenizer byte reads any file)")
        with tempfile.TemporaryDirectory() as tmp:  # encoded on disk and memory-mapped, like training data
            ids = load_token_ids(encode_corpus(paths, self.tokenizer, Path(tmp) / "eval.bin", utf8_advice=advice),
                                 verify=False)
            if ids.shape[0] < 2:
                raise ConfigError(f"--corpus: {corpus} holds {ids.shape[0]} token; expected at least 2 (one to "
                                  "predict from, one to predict)")
            if batch is None:
                batch = min(EVAL_STREAMS, ids.shape[0] // 2)
            if batch > ids.shape[0] // 2:
                raise ConfigError(f"--batch: expected at most {ids.shape[0] // 2} streams for this corpus of "
                                  f"{ids.shape[0]} tokens (each stream needs 2 tokens), received {batch}")
            nats, scored = evaluate_ids(self.model, ids, batch, seq_len)
            streams = ids[: batch * (ids.shape[0] // batch)].reshape(batch, -1)[:, 1:]
            unknown = 0 if self.tokenizer.unk_id is None else int(np.count_nonzero(streams == self.tokenizer.unk_id))
            corpus_tokens = int(ids.shape[0])
            del ids, streams                         # release the memory map before the folder goes
        warn_if_mostly_unknown(unknown, scored)
        return {"tokens": scored, "corpus_tokens": corpus_tokens, "streams": batch, "unknown_tokens": unknown,
                "bits_per_token": nats / math.log(2), "perplexity": math.exp(nats)}

    def report(self, step: int) -> str | None:
        if not self.config.sample_length:
            return None
        text = self.model.generate("", self.config.sample_length, temperature=0.8, seed=step)[0]
        return f"--- sample at step {step} ---\n{text}\n---"

    # -- carried state ----------------------------------------------------------------------
    def _joined_state(self):
        """The carried state of all B streams (the micro-batches' joined), or None."""
        if any(c is None for c in self.carried):
            return None
        xp = self.model.backend.xp
        parts = [c if isinstance(c, tuple) else (c,) for c in self.carried]
        joined = tuple(xp.concat([p[j] for p in parts], axis=1) for j in range(len(parts[0])))
        return joined if len(joined) > 1 else joined[0]

    @staticmethod
    def _split(state, widths: list[int]) -> list:
        """The carried state of this process's streams as the micro-batches' groups of ``widths`` columns."""
        if state is None:
            return [None] * len(widths)
        parts = state if isinstance(state, tuple) else (state,)
        bounds = np.cumsum([0, *widths])
        split = [tuple(p[:, int(a):int(b), :] for p in parts) for a, b in zip(bounds[:-1], bounds[1:])]
        return [s if len(s) > 1 else s[0] for s in split]

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> tuple[dict, dict]:
        """The data position, the dropout generator and the carried state of this process's
        streams (``sharded_state``: the trainer joins the processes' parts for a checkpoint)."""
        arrays = {}
        joined = self._joined_state()
        if joined is not None:
            for j, part in enumerate(joined if isinstance(joined, tuple) else (joined,)):
                arrays[f"{CARRY_PREFIX}{j}"] = to_numpy(part)
        return {"data": self.batcher.state_dict(), "rng": rng_to_json(self.model.dropout_rng)}, arrays

    def load_state_dict(self, state: dict, arrays: dict) -> None:
        """Continue from a checkpoint: its carried state is that of all B streams; this process
        keeps its own streams' part."""
        self.batcher.load_state_dict(state["data"])
        self.model.dropout_rng.bit_generator.state = rng_from_json(state["rng"]).bit_generator.state
        start, stop = self.streams
        names = sorted(k for k in arrays if k.startswith(CARRY_PREFIX))
        parts = [arrays[k] for k in names]
        for name, part in zip(names, parts):
            if part.ndim != 3 or part.shape[1] != self.config.batch:
                raise CheckpointError(f"{name}: expected the carried state of the --batch {self.config.batch} streams, "
                                  f"received shape {part.shape}; the checkpoint does not belong to this run")
        backend = self.model.backend
        parts = [backend.asarray(np.ascontiguousarray(p[:, start:stop, :]), self.model.dtype_name) for p in parts]
        self.carried = [None if not parts else (tuple(parts) if len(parts) > 1 else parts[0])]
