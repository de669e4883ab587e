"""Does seqnet train as well as PyTorch? The same data, budget, sizes and recipe for both.

    cd /work/main && PYTHONPATH=src python scripts/compare_with_torch.py

trains seqnet's character LSTM language model on the python-stdlib corpus and, on the same
batches in the same order, an equally sized PyTorch model (nn.Embedding -> nn.LSTM ->
nn.Linear, torch.optim.Adam, clip_grad_norm_, the same warm-up + cosine learning rates,
hidden state carried between batches). The PyTorch model uses its own default init and
seed; the claim is that seqnet's final validation loss is within 2% of it. A second PyTorch
model starts from seqnet's initial weights: its curve should nearly coincide with seqnet's,
which checks the forward, backward and optimizer math step for step.

Both sides run single-threaded (BLAS and torch); wall times and tokens/s are informational.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqnet.backend.threads import set_num_threads
from seqnet.data import StreamBatcher, iter_eval_batches
from seqnet.training.config import TrainConfig
from seqnet.training.schedules import make_schedule
from seqnet.training.trainer import Trainer, evaluate_nats

TOLERANCE = 0.02   # |seqnet - torch| / torch on the final validation loss


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default="python-stdlib")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=800)   # ~5-6 min for all three on 2 cores
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-batches", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p.parse_args(argv)


# -- the PyTorch side: plain PyTorch, nothing from seqnet but the batches -----------------------
class TorchLM(nn.Module):
    """ids (T, B) -> logits (T, B, V); parameter names match seqnet's state_dict."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int, cell: str):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](embed, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab_size)

    def forward(self, ids, state=None):
        hs, state = self.rnn(self.embedding(ids), state)
        return self.decoder(hs), state


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class TorchRun:
    """One PyTorch model trained on its own StreamBatcher, mirroring Trainer.train_step."""

    def __init__(self, model: TorchLM, train_ids, args, schedule):
        self.model, self.args, self.schedule = model, args, schedule
        self.batcher = StreamBatcher(train_ids, args.batch, args.seq_len)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        self.step, self.carry = 0, None

    def train_step(self) -> None:
        epoch_before = self.batcher.epoch
        inputs, targets = (torch.from_numpy(a) for a in self.batcher.next_batch())
        if self.batcher.epoch != epoch_before:
            self.carry = None
        logits, state = self.model(inputs, self.carry)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule(self.step)
        self.optimizer.step()
        self.carry = detach(state)       # truncated BPTT: keep the state, drop its graph
        self.step += 1

    @torch.no_grad()
    def val_nats(self, val_ids) -> float:
        state, total, count = None, 0.0, 0
        batches = iter_eval_batches(val_ids, self.args.batch, self.args.seq_len)
        for _, (inputs, targets) in zip(range(self.args.val_batches), batches):
            logits, state = self.model(torch.from_numpy(inputs), state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets).reshape(-1))
            total, count = total + float(loss) * targets.size, count + targets.size
        return total / count


# -- the seqnet side: Trainer's own data, model, optimizer and train_step ----------------------
class SeqnetRun:
    def __init__(self, trainer: Trainer, args):
        self.trainer, self.args = trainer, args

    def train_step(self) -> None:
        self.trainer.train_step()

    def val_nats(self, val_ids) -> float:
        return evaluate_nats(self.trainer.model, val_ids, self.args.batch, self.args.seq_len, self.args.val_batches)


def make_trainer(args, run_dir: str) -> Trainer:
    config = TrainConfig(corpus=args.corpus, tokenizer="char", cell=args.cell, embed=args.embed, hidden=args.hidden,
                         layers=args.layers, seq_len=args.seq_len, batch=args.batch, steps=args.steps, lr=args.lr,
                         optimizer="adam", clip=args.clip, schedule="cosine", warmup=args.warmup, seed=args.seed,
                         val_fraction=0.02, eval_batches=args.val_batches)
    trainer = Trainer(config, run_dir, progress=False).prepare_new()   # fit tokenizer, encode corpus, build model
    trainer.schedule = make_schedule("cosine", args.lr, args.steps, warmup_steps=min(args.warmup, args.steps // 2))
    return trainer


def make_torch_runs(trainer: Trainer, args) -> dict[str, TorchRun]:
    vocab = trainer.tokenizer.vocab_size
    sizes = (vocab, args.embed, args.hidden, args.layers, args.cell)
    torch.manual_seed(args.seed)
    own = TorchLM(*sizes)                                  # torch's default init, torch's seed
    copied = TorchLM(*sizes)
    copied.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in trainer.model.state_dict().items()})
    return {"torch": TorchRun(own, trainer.train_ids, args, trainer.schedule),
            "torch_seqnet_init": TorchRun(copied, trainer.train_ids, args, trainer.schedule)}


# -- the comparison --------------------------------------------------------------------------
def train_and_evaluate(runs: dict, val_ids, args) -> tuple[list[dict], dict[str, float]]:
    """Train every run in segments of steps/5; evaluate all of them at step 0 and after each segment."""
    eval_every = max(1, args.steps // 5)
    checkpoints = sorted({0, *range(eval_every, args.steps, eval_every), args.steps})
    seconds = dict.fromkeys(runs, 0.0)
    rows, done = [], 0
    for point in checkpoints:
        for name, run in runs.items():
            started = time.perf_counter()
            for _ in range(point - done):
                run.train_step()
            seconds[name] += time.perf_counter() - started
        done = point
        rows.append({"step": point, **{name: run.val_nats(val_ids) for name, run in runs.items()}})
    return rows, seconds


def relative(a: float, b: float) -> float:
    return (a - b) / b


def summarize(rows, seconds, args, trainer) -> dict:
    final = rows[-1]
    tokens = args.steps * args.batch * args.seq_len
    return {
        "config": vars(args) | {"vocab_size": trainer.tokenizer.vocab_size,
                                "parameters": trainer.model.num_parameters(),
                                "train_tokens": int(trainer.train_ids.shape[0])},
        "curve_bits_per_token": [{k: (v if k == "step" else v / math.log(2)) for k, v in r.items()} for r in rows],
        "final_nats_per_token": {k: v for k, v in final.items() if k != "step"},
        "relative_difference": relative(final["seqnet"], final["torch"]),
        "relative_difference_seqnet_init": relative(final["seqnet"], final["torch_seqnet_init"]),
        "passed": abs(relative(final["seqnet"], final["torch"])) <= TOLERANCE,
        "train_seconds": seconds,
        "tokens_per_s": {k: tokens / s for k, s in seconds.items()},
    }


def print_report(result: dict) -> None:
    cfg = result["config"]
    print(f"{cfg['cell']} {cfg['layers']}x{cfg['hidden']} (embed {cfg['embed']}), {cfg['parameters']:,} parameters, "
          f"vocabulary {cfg['vocab_size']}, corpus {cfg['corpus']} ({cfg['train_tokens']:,} training tokens)")
    print(f"{cfg['steps']} steps of {cfg['batch']}x{cfg['seq_len']} tokens, adam lr {cfg['lr']} "
          f"(warm-up {cfg['warmup']} + cosine), clip {cfg['clip']}, seed {cfg['seed']}; "
          f"validation: first {cfg['val_batches']} batches\n")
    print(f"{'step':>6}  {'seqnet':>8}  {'torch':>8}  {'torch (seqnet init)':>19}   val bits/token")
    for r in result["curve_bits_per_token"]:
        print(f"{r['step']:>6}  {r['seqnet']:>8.4f}  {r['torch']:>8.4f}  {r['torch_seqnet_init']:>19.4f}")
    nats = result["final_nats_per_token"]
    print("\nfinal val nats/token: " + ", ".join(f"{k} {v:.4f}" for k, v in nats.items()))
    print(f"(seqnet - torch) / torch               = {100 * result['relative_difference']:+.2f}%  "
          f"{'PASS' if result['passed'] else 'FAIL'} (|diff| <= {100 * TOLERANCE:.0f}%)")
    print(f"(seqnet - torch seqnet-init) / torch   = {100 * result['relative_difference_seqnet_init']:+.2f}%  "
          f"(same init: only float32 rounding differs)")
    print("\ntraining time (informational, 1 thread): " + ", ".join(
        f"{k} {s:.1f} s ({result['tokens_per_s'][k]:,.0f} tok/s)" for k, s in result["train_seconds"].items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqnet-vs-torch-") as run_dir:
        trainer = make_trainer(args, run_dir)
        runs = {"seqnet": SeqnetRun(trainer, args), **make_torch_runs(trainer, args)}
        rows, seconds = train_and_evaluate(runs, trainer.val_ids, args)
        result = summarize(rows, seconds, args, trainer)
    result["total_seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
        print(f"total wall time {result['total_seconds']:.0f} s")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
