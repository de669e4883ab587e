"""``seqnet train | sample | eval | predict`` — see ``seqnet <command> --help``."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..backend import BACKEND_NAMES
from ..errors import SeqnetError
from ..tasks import TASKS
from ..training.config import TrainerConfig
from . import labeled
from .options import add_settings, device_value, given_settings, settings_from

DEFAULT_TASK = "lm"


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (no arguments: the python-stdlib char-LSTM preset)",
                       description="Train a model. Every flag has a default; with --resume the run's own settings "
                                   "apply and only --steps may change.")
    p.add_argument("--task", choices=tuple(TASKS), default=DEFAULT_TASK, help=f"what to learn (default: {DEFAULT_TASK})")
    seen: dict = {}
    for task in TASKS.values():
        add_settings(p.add_argument_group(f"--task {task.kind}"), task.Config, seen, label=task.kind)
    add_settings(p.add_argument_group("training"), TrainerConfig, seen)
    run = p.add_argument_group("run directory and output")
    run.add_argument("--out", default=None, help="run directory (default: runs/default, or the next free runs/default-N)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its last checkpoint, with the run's own settings "
                          "(only --steps may be raised)")
    run.add_argument("--json", action="store_true", help="print one JSON object per evaluation and a summary")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _threads_argument(run)


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample text from a trained run directory")
    p.add_argument("run_dir")
    p.add_argument("--prime", default="", help="text to continue (unseen characters map to <UNK>)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default: 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="(default: 0.8)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--num", type=int, default=1, help="samples, generated together in one batch (default: 1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--condition", default=None, help="generate runs: the condition to generate for")
    _backend_arguments(p)
    _threads_argument(p)


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="bits per token and perplexity of a trained model on a corpus")
    p.add_argument("run_dir")
    p.add_argument("--corpus", default=None, help="language models: the text to score")
    labeled.add_eval_arguments(p)
    p.add_argument("--batch", type=int, default=16, help="parallel streams (default: 16)")
    p.add_argument("--seq-len", type=int, default=128, help="(default: 128)")
    _backend_arguments(p)
    p.add_argument("--json", action="store_true")
    _threads_argument(p)


def _backend_arguments(p) -> None:
    p.add_argument("--backend", choices=BACKEND_NAMES, default=None, help="default: the backend the run trained on")
    p.add_argument("--device", type=device_value, default=None)


def _threads_argument(p) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads; more than 1 helps only large models on otherwise idle cores (default: 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqnet", description="Recurrent sequence models with hand-written BPTT.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _eval_parser(sub)
    labeled.add_predict_parser(sub, _backend_arguments, _threads_argument)
    return parser


def _task_settings(args, task) -> None:
    """Refuse flags of other tasks."""
    own = set(given_settings(args, task.Config)) | set(given_settings(args, TrainerConfig))
    others = sorted({name for other in TASKS.values() for name in given_settings(args, other.Config)} - own)
    if others:
        raise SeqnetError(f"--task {task.kind}: does not take " + ", ".join("--" + n.replace("_", "-") for n in others))


def _resume_conflicts(args, trainer) -> list[str]:
    """Flags given with --resume (other than --steps) whose value differs from the run's own."""
    conflicts = []
    for config in (trainer.task.config, trainer.config):
        for name, given in given_settings(args, type(config)).items():
            own = getattr(config, name)
            if name != "steps" and given != own:
                conflicts.append(f"--{name.replace('_', '-')} {given} (the run's: {own})")
    return conflicts


def cmd_train(args) -> int:
    from ..training.checkpoint import has_checkpoint
    from ..training.runs import new_run, resume_run

    kwargs = {"json_lines": args.json, "progress": not args.no_progress}
    if args.resume:
        if args.out is None:
            raise SeqnetError("--resume: needs --out DIR, the run directory to continue")
        trainer = resume_run(Path(args.out), **kwargs)
        conflicts = _resume_conflicts(args, trainer)
        if conflicts:
            raise SeqnetError("--resume: a resumed run keeps its own settings (only --steps may change); drop "
                              + ", ".join(conflicts) + " (nothing was changed)")
        if hasattr(args, "steps"):
            trainer.config.steps = args.steps
            trainer.config.validate()
    else:
        task = TASKS[args.task]
        _task_settings(args, task)
        if args.out is not None and has_checkpoint(args.out):
            raise SeqnetError(f"--out: {args.out} already holds a run; pass --resume to continue it, "
                              "or choose another --out (nothing was changed)")
        task_config = settings_from(args, task.Config).validate()
        trainer_config = settings_from(args, TrainerConfig).validate()
        run_dir = Path(args.out) if args.out else default_run_dir()
        trainer = new_run(task.kind, task_config, trainer_config, run_dir, **kwargs)
    summary = trainer.run()
    if args.json:
        return 0
    if trainer.task.kind in labeled.LABELED_TASKS:              # classify / tag / generate: cli/labeled.py
        print(labeled.train_summary(trainer.task, summary))
        return 0
    val = summary.get("val_bits_per_token")
    print(f"\ntrained {summary['steps']} steps: train loss {summary['train_loss'] / math.log(2):.3f} bits/token, "
          f"validation {'n/a' if val is None else f'{val:.3f}'} bits/token, {summary['tokens_per_s']:,.0f} tokens/s")
    print(f"run directory: {summary['run_dir']}  (sample again: seqnet sample {summary['run_dir']})\n")
    print(trainer.model.generate("", 500, temperature=0.8, seed=0)[0])
    return 0


def default_run_dir(base: str = "runs/default") -> Path:
    """``runs/default``, or ``runs/default-2``, ... : the first that holds no checkpoint."""
    from ..training.checkpoint import has_checkpoint

    candidate, n = Path(base), 1
    while has_checkpoint(candidate):
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def _load_language_model(args, task=None):
    from ..tasks import LanguageModelTask
    from ..training.runs import load_task

    task = load_task(args.run_dir, args.backend, args.device) if task is None else task
    if not isinstance(task, LanguageModelTask):
        raise SeqnetError(f"{args.run_dir}: holds a {task.kind} model; seqnet {args.command} needs a language model")
    return task


def _load_run(args):
    from ..training.runs import load_task

    return load_task(args.run_dir, args.backend, args.device)


def cmd_sample(args) -> int:
    task = _load_run(args)
    labeled.check_condition_flag(task, args)
    if task.kind == "generate":                                 # conditional generators: cli/labeled.py
        return labeled.cmd_sample(task, args)
    model = _load_language_model(args, task).model
    texts = model.generate(args.prime, args.length, temperature=args.temperature, top_k=args.top_k,
                           top_p=args.top_p, greedy=args.greedy, seed=args.seed, num_samples=args.num)
    for k, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {k + 1} ---")
        print(text)
    return 0


def cmd_eval(args) -> int:
    task = _load_run(args)
    if task.kind in labeled.LABELED_TASKS:                      # classify / tag / generate: cli/labeled.py
        return labeled.cmd_eval(task, args)
    labeled.check_lm_eval_flags(args)
    result = _load_language_model(args, task).evaluate_corpus(args.corpus, args.batch, args.seq_len)
    streams = result.pop("streams")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['tokens']:,} tokens predicted (of {result['corpus_tokens']:,} in the corpus, in {streams} "
              f"streams): {result['bits_per_token']:.4f} bits per token, perplexity {result['perplexity']:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "predict": labeled.cmd_predict}[args.command]
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
