"""``seqnet train | sample | eval | translate`` — see ``seqnet <command> --help``."""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path

from ..backend import BACKEND_NAMES
from ..config import flag_of
from ..errors import SeqnetError
from ..tasks import TASKS
from ..training.config import TrainerConfig
from .options import add_settings, device_value, given_settings, settings_from

DEFAULT_TASK = "lm"


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (no arguments: the python-stdlib char-LSTM preset)",
                       description="Train a model. Every flag has a default; with --resume the run's own settings "
                                   "apply and only --steps may change.")
    p.add_argument("--task", choices=tuple(TASKS), default=DEFAULT_TASK, help=f"what to learn (default: {DEFAULT_TASK})")
    seen: set[str] = set()
    for task in TASKS.values():
        group = p.add_argument_group(f"--task {task.kind}")
        shared = [f for f in fields(task.Config) if f.name in seen and f.metadata.get("cli", True)]
        add_settings(group, task.Config, seen)
        if shared:              # flags listed under an earlier task, with this task's own defaults
            group.description = "also takes " + ", ".join(f"{flag_of(f)} (default: {f.default})" for f in shared)
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
    p.add_argument("--temperature", type=float, default=None, help="(default: 0.8)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--num", type=int, default=1, help="samples, generated together in one batch (default: 1)")
    p.add_argument("--seed", type=int, default=None)
    _beam_arguments(p)
    _backend_arguments(p)
    _threads_argument(p)


def _beam_arguments(p) -> None:
    from ..decoding import LENGTH_PENALTIES

    g = p.add_argument_group("beam search (instead of sampling)")
    g.add_argument("--beam", type=int, default=None, help="beam width: the --num most likely continuations, best first")
    g.add_argument("--length-penalty", choices=LENGTH_PENALTIES, default=None,
                   help="with --beam: rank by score / len^alpha (avg) or / ((5+len)/6)^alpha (wu) (default: none)")
    g.add_argument("--alpha", type=float, default=None, help="with --beam: the length penalty's exponent (default: 1.0)")
    g.add_argument("--block-ngram", type=int, default=None, help="with --beam: never repeat an n-gram of this size")


def _eval_parser(sub) -> None:
    from .translate import add_search_arguments

    p = sub.add_parser("eval", help="a trained model on held-out data: bits per token and perplexity of a language "
                                    "model on --corpus; exact match, token accuracy, CER (BLEU) of a translation "
                                    "model on --data")
    p.add_argument("run_dir")
    p.add_argument("--corpus", default=None, help="language models: the text to score")
    p.add_argument("--data", default=None, help="translation models: parallel pairs (TSV or JSON lines)")
    p.add_argument("--batch", type=int, default=16, help="parallel streams, or sources translated together (default: 16)")
    p.add_argument("--seq-len", type=int, default=128, help="(default: 128)")
    add_search_arguments(p, batch=False)
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
    from .translate import add_translate_parser

    add_translate_parser(sub, _backend_arguments, _threads_argument)
    return parser


def _task_settings(args, task) -> None:
    """Refuse flags of other tasks."""
    own = set(given_settings(args, task.Config)) | set(given_settings(args, TrainerConfig))
    others = sorted({name for other in TASKS.values() for name in given_settings(args, other.Config)} - own)
    if others:
        owners = sorted({other.kind for other in TASKS.values() for name in others
                         if name in given_settings(args, other.Config)})
        raise SeqnetError(f"--task {task.kind}: does not take " + ", ".join("--" + n.replace("_", "-") for n in others)
                          + f" (settings of --task {', '.join(owners)})")


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
    val = summary.get("val_bits_per_token")
    print(f"\ntrained {summary['steps']} steps: train loss {summary['train_loss'] / math.log(2):.3f} bits/token, "
          f"validation {'n/a' if val is None else f'{val:.3f}'} bits/token, {summary['tokens_per_s']:,.0f} tokens/s")
    print(_closing_text(trainer, summary))
    return 0


def _closing_text(trainer, summary) -> str:
    """What ``seqnet train`` prints after its summary line: a sample, or translations."""
    from ..tasks import TranslateTask

    run_dir = summary["run_dir"]
    if isinstance(trainer.task, TranslateTask):
        exact = summary.get("val_exact_match")
        shown = "" if exact is None else f"validation exact match {100 * exact:.2f}%\n"
        return (f"{shown}run directory: {run_dir}  (translate: seqnet translate {run_dir} TEXT...)\n\n"
                + (trainer.task.report(trainer.step) or ""))
    return (f"run directory: {run_dir}  (sample again: seqnet sample {run_dir})\n\n"
            + trainer.model.generate("", 500, temperature=0.8, seed=0)[0])


def default_run_dir(base: str = "runs/default") -> Path:
    """``runs/default``, or ``runs/default-2``, ... : the first that holds no checkpoint."""
    from ..training.checkpoint import has_checkpoint

    candidate, n = Path(base), 1
    while has_checkpoint(candidate):
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def _load_language_model(args):
    from ..tasks import LanguageModelTask
    from ..training.runs import load_task

    task = load_task(args.run_dir, args.backend, args.device)
    if not isinstance(task, LanguageModelTask):
        raise SeqnetError(f"{args.run_dir}: holds a {task.kind} model; seqnet {args.command} needs a language model")
    return task


def cmd_sample(args) -> int:
    options = _sample_options(args)
    model = _load_language_model(args).model
    texts = model.generate(args.prime, args.length, num_samples=args.num, **options)
    for k, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {k + 1} ---")
        print(text)
    return 0


def _sample_options(args) -> dict:
    """generate()'s sampling or beam-search keyword arguments; flags of the other mode are refused."""
    beam_flags = {"--length-penalty": args.length_penalty, "--alpha": args.alpha, "--block-ngram": args.block_ngram}
    if args.beam is None:
        given = [flag for flag, value in beam_flags.items() if value is not None]
        if given:
            raise SeqnetError(f"{given[0]}: applies to beam search only; add --beam K")
        return dict(temperature=0.8 if args.temperature is None else args.temperature, top_k=args.top_k,
                    top_p=args.top_p, greedy=args.greedy, seed=args.seed)
    if args.beam < 1:
        raise SeqnetError(f"--beam: expected a positive integer, received {args.beam}")
    if args.num > args.beam:
        raise SeqnetError(f"--num: beam search returns at most --beam {args.beam} continuations, received {args.num}")
    sampling = {"--temperature": args.temperature, "--top-k": args.top_k, "--top-p": args.top_p,
                "--seed": args.seed, "--greedy": args.greedy or None}
    given = [flag for flag, value in sampling.items() if value is not None]
    if given:
        raise SeqnetError(f"{given[0]}: beam search does not sample; drop it or drop --beam")
    penalty = args.length_penalty or "none"
    return dict(beam=args.beam, length_penalty=penalty,
                alpha=0.0 if penalty == "none" else (1.0 if args.alpha is None else args.alpha),
                block_ngram=args.block_ngram or 0)


def cmd_eval(args) -> int:
    from ..tasks import TranslateTask
    from ..training.runs import load_task
    from .translate import eval_translation

    task = load_task(args.run_dir, args.backend, args.device)
    if isinstance(task, TranslateTask):
        return eval_translation(args, task)
    if args.data is not None:
        raise SeqnetError("--data: a language model is evaluated on text: --corpus FILE")
    if args.corpus is None:
        raise SeqnetError("--corpus: seqnet eval of a language model needs --corpus FILE")
    result = task.evaluate_corpus(args.corpus, args.batch, args.seq_len)
    streams = result.pop("streams")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['tokens']:,} tokens predicted (of {result['corpus_tokens']:,} in the corpus, in {streams} "
              f"streams): {result['bits_per_token']:.4f} bits per token, perplexity {result['perplexity']:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .translate import cmd_translate

    command = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "translate": cmd_translate}[args.command]
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
