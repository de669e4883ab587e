"""``seqnet train | sample | eval`` — see ``seqnet <command> --help``."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..errors import SeqnetError
from ..training.config import TrainConfig

DEFAULTS = TrainConfig()


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a language model (no arguments: the python-stdlib char-LSTM preset)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", default=DEFAULTS.corpus, help="file, directory, glob, or 'python-stdlib'")
    p.add_argument("--tokenizer", choices=("char", "byte", "word"), default=DEFAULTS.tokenizer)
    p.add_argument("--max-words", type=int, default=DEFAULTS.max_words, help="word tokenizer vocabulary")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default=DEFAULTS.cell)
    p.add_argument("--embed", type=int, default=DEFAULTS.embed)
    p.add_argument("--hidden", type=int, default=DEFAULTS.hidden)
    p.add_argument("--layers", type=int, default=DEFAULTS.layers)
    p.add_argument("--dropout", type=float, default=DEFAULTS.dropout)
    p.add_argument("--tie-weights", action="store_true")
    p.add_argument("--seq-len", type=int, default=DEFAULTS.seq_len)
    p.add_argument("--batch", type=int, default=DEFAULTS.batch)
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default: {DEFAULTS.steps}; with --resume: the run's own)"
                        "%(default).0s")   # "%(default)" in the text: no "(default: None)" appended
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--optimizer", choices=("sgd", "adagrad", "rmsprop", "adam", "adamw"), default=DEFAULTS.optimizer)
    p.add_argument("--clip", type=float, default=DEFAULTS.clip, help="max global gradient norm (0: off)")
    p.add_argument("--clip-value", type=float, default=DEFAULTS.clip_value, help="element-wise clip (0: off)")
    p.add_argument("--schedule", choices=("constant", "step", "cosine"), default=DEFAULTS.schedule)
    p.add_argument("--warmup", type=int, default=DEFAULTS.warmup, help="linear warm-up steps (at most half of --steps)")
    p.add_argument("--backend", choices=("numpy", "cupy", "torch", "array_api_strict"), default=DEFAULTS.backend)
    p.add_argument("--device", default=None, help="backend device: 0 or 1 for cupy, 'cuda:1' for torch")
    p.add_argument("--dtype", choices=("float32", "float64"), default=DEFAULTS.dtype)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction)
    p.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every)
    p.add_argument("--eval-batches", type=int, default=DEFAULTS.eval_batches, help="0: the whole validation split")
    p.add_argument("--sample-every", type=int, default=DEFAULTS.sample_every)
    p.add_argument("--sample-length", type=int, default=DEFAULTS.sample_length)
    p.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every)
    p.add_argument("--log-every", type=int, default=DEFAULTS.log_every, help="steps between loss read-backs")
    p.add_argument("--out", default=None, help="run directory (default: runs/default, or the next free runs/default-N)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, with the run's own settings "
                        "(only --steps may be raised)")
    p.add_argument("--json", action="store_true", help="print one JSON object per evaluation and a summary")
    _threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample text from a trained run directory")
    p.add_argument("run_dir")
    p.add_argument("--prime", default="", help="text to continue (unseen characters map to <UNK>)")
    p.add_argument("--length", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--num", type=int, default=1, help="samples, generated together in one batch")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--backend", default=None, help="default: the backend the run trained on")
    p.add_argument("--device", default=None)
    _threads_argument(p)


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="bits per token and perplexity of a trained model on a corpus")
    p.add_argument("run_dir")
    p.add_argument("--corpus", required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--backend", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    _threads_argument(p)


def _threads_argument(p) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads; more than 1 helps only large models on otherwise idle cores")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqnet", description="Recurrent language models with hand-written BPTT.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _eval_parser(sub)
    return parser


def _device(value):
    return int(value) if value is not None and value.isdigit() else value


def _resume_conflicts(args, config: TrainConfig) -> list[str]:
    """Flags given with --resume whose value is neither the default nor the run's own setting."""
    defaults = vars(build_parser().parse_args(["train"]))
    conflicts = []
    for name in TrainConfig.__dataclass_fields__:
        if name in ("out", "steps") or name not in defaults:
            continue
        given, default, own = getattr(args, name), defaults[name], getattr(config, name)
        if name == "device":
            given, default = _device(given), _device(default)
        if given != default and given != own:
            conflicts.append(f"--{name.replace('_', '-')} {given} (the run's: {own})")
    return conflicts


def cmd_train(args) -> int:
    from ..training.trainer import Trainer, default_run_dir

    kwargs = {"json_lines": args.json, "progress": not args.no_progress}
    if args.resume:
        if args.out is None:
            raise SeqnetError("--resume: needs --out DIR, the run directory to continue")
        trainer = Trainer.resume(Path(args.out), **kwargs)
        conflicts = _resume_conflicts(args, trainer.config)
        if conflicts:
            raise SeqnetError("--resume: a resumed run keeps its own settings (only --steps may change); drop "
                              + ", ".join(conflicts) + " (nothing was changed)")
        if args.steps is not None:
            trainer.config.steps = args.steps
    else:
        from ..training.checkpoint import has_checkpoint

        if args.steps is None:
            args.steps = DEFAULTS.steps
        if args.out is not None and has_checkpoint(args.out):
            raise SeqnetError(f"--out: {args.out} already holds a run; pass --resume to continue it, "
                              "or choose another --out (nothing was changed)")
        config = TrainConfig(**{name: getattr(args, name) for name in TrainConfig.__dataclass_fields__
                                if name not in ("out", "device")}, device=_device(args.device), out=args.out)
        run_dir = Path(args.out) if args.out else default_run_dir()
        config.out = str(run_dir)
        trainer = Trainer(config, run_dir, **kwargs).prepare_new()
    summary = trainer.run()
    if args.json:
        return 0
    print(f"\ntrained {summary['steps']} steps: train loss {summary['train_loss'] / math.log(2):.3f} bits/token, "
          f"validation {_fmt(summary['val_bits_per_token'])} bits/token, {summary['tokens_per_s']:,.0f} tokens/s")
    print(f"run directory: {summary['run_dir']}  (sample again: seqnet sample {summary['run_dir']})\n")
    print(trainer.model.generate("", 500, temperature=0.8, seed=0)[0])
    return 0


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def cmd_sample(args) -> int:
    from ..training.trainer import load_model

    model = load_model(args.run_dir, args.backend, _device(args.device))
    texts = model.generate(args.prime, args.length, temperature=args.temperature, top_k=args.top_k,
                           top_p=args.top_p, greedy=args.greedy, seed=args.seed, num_samples=args.num)
    for k, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {k + 1} ---")
        print(text)
    return 0


def cmd_eval(args) -> int:
    import tempfile

    from ..data import encode_corpus, load_token_ids, resolve_corpus
    from ..training.trainer import evaluate, load_model

    model = load_model(args.run_dir, args.backend, _device(args.device))
    paths = resolve_corpus(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:     # encoded on disk and memory-mapped, like training data
        ids = load_token_ids(encode_corpus(paths, model.tokenizer, Path(tmp) / "eval.bin"))
        batch = max(1, min(args.batch, ids.shape[0] // 2))
        nats, scored = evaluate(model, ids, batch, args.seq_len)
        corpus_tokens = int(ids.shape[0])
        del ids                                     # release the memory map before the folder goes
    result = {"tokens": scored, "corpus_tokens": corpus_tokens, "bits_per_token": nats / math.log(2),
              "perplexity": math.exp(nats)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{scored:,} tokens predicted (of {corpus_tokens:,} in the corpus, in {batch} streams): "
              f"{result['bits_per_token']:.4f} bits per token, perplexity {result['perplexity']:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}[args.command]
    try:
        from ..backend.threads import set_num_threads

        set_num_threads(args.threads)
        return command(args)
    except SeqnetError as err:
        print(f"seqnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nseqnet {args.command}: interrupted; the last checkpoint is intact (continue with --resume)",
              file=sys.stderr)
        return 130
