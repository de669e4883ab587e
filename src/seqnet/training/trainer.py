"""The training loop of ``seqnet train``: data, model, optimizer, evaluation, checkpoints.

A run directory holds everything needed to resume or sample: config.json, the encoded
corpus (tokens.bin), metrics.jsonl, loss.png and checkpoints/ (see checkpoint.py). A run
killed at any moment resumes from the last checkpoint and follows the same trajectory as
an uninterrupted run: the checkpoint saves weights, optimizer state, the dropout RNG, the
data position and the hidden state carried between batches.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backend import backend as backend_context
from ..backend import to_numpy
from ..data import StreamBatcher, encode_corpus, iter_eval_batches, load_token_ids, make_tokenizer
from ..data import resolve_corpus, split_train_val, tokenizer_from_json
from ..data.corpus import iter_text_chunks
from ..errors import NonFiniteLossError
from ..models import LanguageModel
from .checkpoint import has_checkpoint, load_checkpoint, rng_from_json, rng_to_json, save_checkpoint
from .clipping import clip_grad_norm, clip_grad_value
from .config import TrainConfig
from .optimizers import make_optimizer
from .schedules import make_schedule

CARRY_PREFIX = "carry/"   # the hidden state carried between batches, saved beside the optimizer state


def default_run_dir(base: str = "runs/default") -> Path:
    """``runs/default``, or ``runs/default-2``, ... : the first that holds no checkpoint."""
    candidate, n = Path(base), 1
    while has_checkpoint(candidate):
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def fit_tokenizer(config: TrainConfig, paths: list[Path]):
    if config.tokenizer == "byte":
        return make_tokenizer("byte")
    return make_tokenizer(config.tokenizer, iter_text_chunks(paths), max_words=config.max_words)


def build_model(config: TrainConfig, vocab_size: int, tokenizer=None) -> LanguageModel:
    with backend_context(config.backend, config.device):
        return LanguageModel(vocab_size, config.embed, config.hidden, config.layers, config.cell, config.dropout,
                             config.tie_weights, dtype=config.dtype, seed=config.seed, tokenizer=tokenizer)


def evaluate_nats(model: LanguageModel, ids: np.ndarray, batch: int, seq_len: int, max_batches: int = 0) -> float:
    """Mean cross-entropy (nats per token) over ``ids``, walked once with the state carried."""
    return evaluate(model, ids, batch, seq_len, max_batches)[0]


def evaluate(model: LanguageModel, ids: np.ndarray, batch: int, seq_len: int,
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


def train_step(model: LanguageModel, optimizer, inputs: np.ndarray, targets: np.ndarray, carry=None, *,
               clip: float = 0.0, clip_value: float = 0.0):
    """One optimisation step on host id arrays (T, B): forward, backward, clipping, update.

    Returns (loss as a 0-d device array, the final state to carry into the next batch).
    Nothing is read back to the host: clipping is computed on the device.
    """
    xp = model.backend.xp
    loss, carry = model.loss_and_grads(model.device_ids(inputs), model.device_ids(targets), carry)
    grads = model.param_grads
    if clip_value > 0:
        clip_grad_value(grads, clip_value, xp=xp)
    if clip > 0:
        clip_grad_norm(grads, clip, xp=xp)
    params = model.params
    optimizer.step(params, grads)
    model.set_params(params)
    return loss, carry


class Trainer:
    """Owns one run: ``Trainer(config).run()`` or ``Trainer.resume(run_dir).run()``."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, log: Callable[[str], None] | None = None,
                 json_lines: bool = False, progress: bool = True):
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.json_lines = json_lines
        self.progress = progress
        self.log = log or (lambda text: print(text, file=sys.stderr if json_lines else sys.stdout, flush=True))
        self.step = 0
        self.carry = None
        self.history: list[tuple[int, float]] = []

    # -- setting up -------------------------------------------------------------------
    def prepare_new(self) -> "Trainer":
        cfg = self.config
        paths = resolve_corpus(cfg.corpus)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer = fit_tokenizer(cfg, paths)
        self._open_data(paths)
        self.model = build_model(cfg, self.tokenizer.vocab_size, self.tokenizer)
        self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.lr)
        return self

    def _open_data(self, paths: list[Path]) -> None:
        cfg = self.config
        ids_path = encode_corpus(paths, self.tokenizer, self.run_dir / "tokens.bin")
        ids = load_token_ids(ids_path)
        self.train_ids, self.val_ids = split_train_val(ids, cfg.val_fraction)
        self.batcher = StreamBatcher(self.train_ids, cfg.batch, cfg.seq_len)
        self.tokens_per_step = cfg.batch * cfg.seq_len

    @classmethod
    def resume(cls, run_dir: Path, **kwargs) -> "Trainer":
        ckpt = load_checkpoint(run_dir)
        config = TrainConfig.from_json(ckpt.config)
        trainer = cls(config, run_dir, **kwargs)
        trainer.tokenizer = tokenizer_from_json(ckpt.tokenizer)
        trainer._open_data(resolve_corpus(config.corpus))
        trainer.model = build_model(config, trainer.tokenizer.vocab_size, trainer.tokenizer)
        trainer.model.load_state_dict(ckpt.weights)
        trainer.model.rng.bit_generator.state = rng_from_json(ckpt.rng_state).bit_generator.state
        backend = trainer.model.backend
        arrays = {k: v for k, v in ckpt.optimizer_arrays.items() if not k.startswith(CARRY_PREFIX)}
        trainer.optimizer = make_optimizer(config.optimizer, trainer.model.params, config.lr)
        trainer.optimizer.load_state_dict(ckpt.optimizer_state, arrays, backend)
        carry = [ckpt.optimizer_arrays[k] for k in sorted(ckpt.optimizer_arrays) if k.startswith(CARRY_PREFIX)]
        dtype = config.dtype
        if carry:
            carry = [backend.asarray(c, dtype) for c in carry]
            trainer.carry = carry[0] if len(carry) == 1 else tuple(carry)
        trainer.batcher.load_state_dict(ckpt.data_state)
        trainer.step = ckpt.step
        trainer.history = [tuple(p) for p in ckpt.extra.get("history", [])] if ckpt.extra else []
        return trainer

    # -- checkpoints ------------------------------------------------------------------
    def save(self) -> None:
        json_state, opt_arrays = self.optimizer.state_dict()
        arrays = dict(opt_arrays)
        if self.carry is not None:
            parts = self.carry if isinstance(self.carry, tuple) else (self.carry,)
            for k, part in enumerate(parts):
                arrays[f"{CARRY_PREFIX}{k}"] = to_numpy(part)
        save_checkpoint(
            self.run_dir, config=self.config.to_json(), tokenizer=self.tokenizer.to_json(),
            weights={k: to_numpy(v) for k, v in self.model.state_dict().items()},
            optimizer_arrays=arrays, optimizer_state=json_state, rng_state=rng_to_json(self.model.rng),
            data_state=self.batcher.state_dict(), step=self.step, extra={"history": self.history[-2000:]},
        )

    # -- the loop ---------------------------------------------------------------------
    def train_step(self):
        """One step of truncated BPTT; returns the loss as a device array (not read back)."""
        epoch_before = self.batcher.epoch
        inputs, targets = self.batcher.next_batch()
        if self.batcher.epoch != epoch_before:
            self.carry = None                  # the streams restart: do not carry the old state
        self.optimizer.lr = self.schedule(self.step)
        loss, self.carry = train_step(self.model, self.optimizer, inputs, targets, self.carry,
                                      clip=self.config.clip, clip_value=self.config.clip_value)
        self.step += 1
        return loss

    def _check_losses(self, pending: list) -> float:
        """Read back the losses of the last few steps; stop on the first NaN or inf."""
        values = [float(v) for v in to_numpy(self.model.backend.xp.stack([loss for _, loss in pending]))]
        for (step, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss became {value} at step {step}; stopping. The last good checkpoint in {self.run_dir} "
                    f"is intact (resume with --resume after lowering --lr or setting --clip)")
            self.history.append((step, value))
        pending.clear()
        return values[-1]

    def evaluate(self) -> float | None:
        cfg = self.config
        if self.val_ids.shape[0] < 2 * cfg.batch:
            return None
        seq = cfg.seq_len
        nats = evaluate_nats(self.model, self.val_ids, min(cfg.batch, self.val_ids.shape[0] // 2), seq, cfg.eval_batches)
        return nats / math.log(2)

    def emit(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.json_lines:
            print(json.dumps(record), flush=True)

    def run(self) -> dict:
        from tqdm import tqdm

        cfg = self.config
        self.schedule = make_schedule(cfg.schedule, cfg.lr, cfg.steps, warmup_steps=min(cfg.warmup, cfg.steps // 2))
        self.log(f"run directory: {self.run_dir}  |  {cfg.cell} {cfg.layers}x{cfg.hidden}, "
                 f"{self.model.num_parameters():,} parameters, vocabulary {self.tokenizer.vocab_size}, "
                 f"{self.train_ids.shape[0]:,} training tokens, backend {self.model.backend.name}")
        pending: list = []
        last_loss, val_bits, started, start_step = float("nan"), None, time.perf_counter(), self.step
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True, unit="step")
        try:
            while self.step < cfg.steps:
                pending.append((self.step, self.train_step()))
                bar.update(1)
                boundary = self.step == cfg.steps or self.step % cfg.checkpoint_every == 0 \
                    or self.step % cfg.eval_every == 0 or self.step % cfg.sample_every == 0
                if self.step % cfg.log_every == 0 or boundary:
                    last_loss = self._check_losses(pending)
                    elapsed = time.perf_counter() - started
                    tok_s = (self.step - start_step) * self.tokens_per_step / max(elapsed, 1e-9)
                    bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tok_s:,.0f}")
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    val_bits = self.evaluate()
                    self.emit({"event": "eval", "step": self.step, "train_loss": last_loss,
                               "val_bits_per_token": val_bits, "tokens_per_s": tok_s, "lr": self.optimizer.lr})
                if self.step % cfg.sample_every == 0 and self.step < cfg.steps and cfg.sample_length:
                    bar.clear()
                    self.log(f"--- sample at step {self.step} ---\n{self.sample(cfg.sample_length)}\n---")
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
        summary = {"event": "summary", "steps": self.step, "train_loss": last_loss,
                   "val_bits_per_token": val_bits, "tokens_per_s": (self.step - start_step) * self.tokens_per_step
                   / max(elapsed, 1e-9), "seconds": elapsed, "run_dir": str(self.run_dir)}
        self.emit(summary)
        write_loss_plot(self.run_dir, self.history)
        return summary

    def sample(self, length: int, seed: int | None = None) -> str:
        return self.model.generate("", length, temperature=0.8, seed=self.step if seed is None else seed)[0]


def load_model(run_dir: str | Path, backend: str | None = None, device: Any = None) -> LanguageModel:
    """The trained model (with its tokenizer) of a run directory, on ``backend`` (default: the run's)."""
    ckpt = load_checkpoint(run_dir)
    config = TrainConfig.from_json(ckpt.config)
    if backend is not None:
        config.backend, config.device = backend, device
    tokenizer = tokenizer_from_json(ckpt.tokenizer)
    model = build_model(config, tokenizer.vocab_size, tokenizer)
    model.load_state_dict(ckpt.weights)
    return model


def write_loss_plot(run_dir: Path, history: list) -> Path | None:
    """loss.png of the training loss; skipped when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    steps, losses = zip(*history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, np.asarray(losses) / math.log(2))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (bits per token)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
