"""Training configuration: every knob of ``seqnet train``, with the default preset.

The defaults are the preset that ``seqnet train`` with no arguments runs: a character
LSTM on the ``python-stdlib`` corpus, sized to produce recognisably Python-like text in
about five minutes on two CPU cores.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError


@dataclass
class TrainConfig:
    corpus: str = "python-stdlib"
    tokenizer: str = "char"           # char | byte | word
    max_words: int = 10_000           # word tokenizer vocabulary size (plus <UNK>, <EOS>)
    cell: str = "lstm"                # lstm | gru | rnn
    embed: int = 64
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0
    tie_weights: bool = False
    seq_len: int = 64
    batch: int = 32
    steps: int = 1600
    lr: float = 3e-3
    optimizer: str = "adam"
    clip: float = 1.0                 # global-norm clipping; 0 disables
    clip_value: float = 0.0           # element-wise clipping; 0 disables
    schedule: str = "cosine"          # constant | step | cosine
    warmup: int = 50
    backend: str = "numpy"
    device: str | None = None
    dtype: str = "float32"
    seed: int = 0
    val_fraction: float = 0.02
    eval_every: int = 400
    eval_batches: int = 20            # validation batches per evaluation (0 = the whole split)
    sample_every: int = 400
    sample_length: int = 300
    log_every: int = 10               # steps between loss read-backs (host syncs)
    checkpoint_every: int = 400
    out: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)

    def validate(self) -> "TrainConfig":
        positive = ("max_words", "embed", "hidden", "layers", "seq_len", "batch", "steps", "eval_every",
                    "sample_every", "log_every", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: expected a positive integer, received {value!r}")
        for name in ("warmup", "eval_batches", "sample_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"--{name.replace('_', '-')}: expected an integer >= 0, received {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"--lr: expected a learning rate > 0, received {self.lr!r}")
        if self.clip < 0 or self.clip_value < 0:
            raise ConfigError(f"--clip: expected a value >= 0 (0 disables), received {self.clip!r}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"--val-fraction: expected a fraction in [0, 0.5), received {self.val_fraction!r}")
        return self
