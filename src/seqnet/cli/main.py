"""``seqnet train | sample | eval | predict | translate`` — see ``seqnet <command> --help``.

Every mistake a user can make ends in one line on stderr, ``seqnet <command>: error: ...``,
and exit code 2; warnings are ``seqnet <command>: warning: ...``. A file that cannot be read
or written (a full disk, a name too long, a directory made read-only) is one such line too,
naming the path and the reason, with exit code 1. A run stopped by SIGINT or SIGTERM writes a
checkpoint first (exit codes 130 and 143). Output to a closed pipe is dropped, never a
traceback. Every message says what was kept of a run; a command it suggests is shell-quoted.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sys
import warnings
from pathlib import Path

from .. import __version__
from ..backend import BACKEND_NAMES
from ..errors import SeqnetError, SeqnetWarning
from ..tasks import TASKS
from ..training.config import TrainerConfig
from ..training.output import emit, ensure_standard_streams, json_text, silence, write_line
from . import labeled
from .options import add_settings, check_sampling_flags, command_line, device_value, given_settings, path_settings
from .options import same_path, settings_from, shown_path

DEFAULT_TASK = "lm"
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, {signal.SIGINT: 130, signal.SIGTERM: 143}
COMMANDS = ("train", "sample", "eval", "predict", "translate")
# what to make smaller when a command runs out of memory
MEMORY_ADVICE = {"train": "a smaller --batch, --hidden or --seq-len", "sample": "a smaller --length or --num",
                 "eval": "a smaller --batch (or --seq-len, --beam)", "predict": "a smaller --data file",
                 "translate": "a smaller --batch or --beam"}


class Parser(argparse.ArgumentParser):
    """argparse with a mistake told in one line (no usage block), and --help / --version text
    that cannot be written reported as any command's output is."""

    def error(self, message: str):
        what = "commands" if self.prog == "seqnet" else "flags"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} ({self.prog} --help lists the {what})\n")

    def _print_message(self, message, file=None):
        if message:
            file = file or sys.stderr
            write_line(file, message.rstrip("\n"), required=file is sys.stdout)


class Failure(Exception):
    """A command that could not finish for a reason other than a mistake of the user's (a file
    that cannot be written): its one-line message, exit code 1."""


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (no arguments: the python-stdlib char-LSTM preset)",
                       description="Train a model. Every flag has a default; --resume continues a run with its own "
                                   "settings (--steps may be raised), --resume --new-phase also takes a fresh "
                                   "learning-rate schedule from the current step.")
    p.add_argument("--task", choices=tuple(TASKS), default=argparse.SUPPRESS,
                   help=f"what to learn (default: {DEFAULT_TASK})")
    seen: dict = {}
    for task in TASKS.values():
        add_settings(p.add_argument_group(f"--task {task.kind}"), task.Config, seen, label=task.kind)
    add_settings(p.add_argument_group("training"), TrainerConfig, seen)
    run = p.add_argument_group("run directory and output")
    run.add_argument("--out", default=None, help="run directory (default: runs/default, or the next free runs/default-N)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its last intact checkpoint, with the run's own settings "
                          "(only --steps, --backend and --device may change)")
    run.add_argument("--new-phase", action="store_true",
                     help="with --resume: start a fresh schedule at the current step; then --steps (required), --lr, "
                          "--schedule, --warmup, --clip, --clip-value and the --*-every cadences may change")
    run.add_argument("--json", action="store_true", help="print one JSON object per evaluation and a summary")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar (or the progress lines)")
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
    p.add_argument("--seed", type=int, default=None, help="(default: fresh randomness each time)")
    p.add_argument("--condition", default=None, help="generate runs: the condition to generate for")
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
                                    "model on --corpus; accuracy and F1 of a classifier or tagger, bits per token "
                                    "of a generator, exact match, token accuracy, CER (BLEU) of a translation "
                                    "model on --data")
    p.add_argument("run_dir")
    p.add_argument("--corpus", default=None, help="language models: the text to score")
    labeled.add_eval_arguments(p)
    p.add_argument("--batch", type=int, default=None,
                   help="language models: parallel streams (default: 16, fewer for a corpus under 32 tokens); "
                        "translation models: sources translated together (default: 16)")
    p.add_argument("--seq-len", type=int, default=None, help="language models: the steps of each forward pass "
                                                             "(default: 128)")
    add_search_arguments(p, batch=False)
    _backend_arguments(p)
    p.add_argument("--json", action="store_true")
    _threads_argument(p)


def _backend_arguments(p) -> None:
    p.add_argument("--backend", choices=BACKEND_NAMES, default=None, help="default: the backend the run trained on")
    p.add_argument("--device", type=device_value, default=None,
                   help="default: the run's device; without --backend, a device of the run's backend")


def _threads_argument(p) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads; more than 1 helps only large models on otherwise idle cores (default: 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seqnet", description="Recurrent sequence models with hand-written BPTT.")
    parser.add_argument("--version", action="version", version=f"seqnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _eval_parser(sub)
    labeled.add_predict_parser(sub, _backend_arguments, _threads_argument)
    from .translate import add_translate_parser

    add_translate_parser(sub, _backend_arguments, _threads_argument)
    return parser


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_other_tasks_flags(args, task, resumed: str | None = None) -> None:
    """Flags of other tasks' settings, which ``task`` does not have (``resumed``: the run
    directory of a resumed run of that task)."""
    own = set(given_settings(args, task.Config)) | set(given_settings(args, TrainerConfig))
    others = sorted({name for other in TASKS.values() for name in given_settings(args, other.Config)} - own)
    if others:
        owners = sorted({other.kind for other in TASKS.values() for name in others
                         if name in given_settings(args, other.Config)})
        what = f"--task {task.kind}:" if resumed is None else f"--resume: {resumed} holds a --task {task.kind} run, which"
        raise SeqnetError(f"{what} does not take " + ", ".join(map(_flag, others))
                          + f" (settings of --task {', '.join(owners)})" + ("" if resumed is None else
                                                                             " (nothing was changed)"))


def _shown_value(value) -> str:
    return "the default" if value is None else ("on" if value else "off") if isinstance(value, bool) else str(value)


def _conflicts(args, trainer, may_change: tuple) -> list[str]:
    """Flags given with --resume whose value differs from the run's own, apart from ``may_change``
    (a path setting differs only when it names other files)."""
    conflicts = []
    if getattr(args, "task", trainer.task.kind) != trainer.task.kind:
        conflicts.append(f"--task {args.task} (the run's: {trainer.task.kind})")
    for config in (trainer.task.config, trainer.config):
        paths = path_settings(type(config))
        for name, given in given_settings(args, type(config)).items():
            own = getattr(config, name)
            if name in may_change or (given == own and name not in paths):      # paths: compared below
                continue
            if name in paths and (same_path(given, own) or (name == "corpus" and _encoded_from(trainer, given))):
                continue
            shown = _flag(name) if given is True else f"{_flag(name)} {given}"
            if name in paths and isinstance(own, str) and own.startswith(("/dev/", "/proc/")):
                conflicts.append(f"{shown} (the run read a pipe, {own}, and keeps what it read: resume needs no "
                                 f"{_flag(name)})")
                continue
            conflicts.append(f"{shown} (the run's: {_shown_value(own)})")
    return conflicts


def _encoded_from(trainer, corpus: str) -> bool:
    """Whether the run's tokens.bin was encoded from exactly the files ``corpus`` names now (a
    run that stored its corpus relative to the directory it was started from)."""
    from ..data import TokenStream, resolve_corpus

    try:
        sources = {source["path"] for source in TokenStream.open(Path(trainer.run_dir) / "tokens.bin",
                                                                    verify=False).sources}
        return bool(sources) and sources == {str(path.resolve()) for path in resolve_corpus(corpus)}
    except (SeqnetError, OSError, KeyError, TypeError):
        return False


def _resume(args, kwargs, world):
    from ..training.runs import resume_run

    given = given_settings(args, TrainerConfig)
    trainer = resume_run(Path(args.out), backend=given.get("backend"), device=given.get("device"), **kwargs)
    error = None
    try:
        _refuse_other_tasks_flags(args, trainer.task, resumed=str(trainer.run_dir))
        phase = TrainerConfig.PHASE_SETTINGS if args.new_phase else ("steps",)
        conflicts = _conflicts(args, trainer, (*phase, *TrainerConfig.PLACEMENT_SETTINGS))
        if conflicts:
            what = ("a new phase may change only " + ", ".join(map(_flag, (*phase, "backend", "device")))
                    if args.new_phase else "a resumed run keeps its own settings (only --steps, --backend and "
                                           "--device may change; --new-phase allows a fresh schedule)")
            raise SeqnetError(f"--resume: {what}; drop " + ", ".join(conflicts) + " (nothing was changed)")
        steps = getattr(args, "steps", None)
        if steps is not None and steps <= trainer.step and steps != trainer.config.steps:
            raise SeqnetError(f"--steps: the run is already at step {trainer.step}; expected more, received {steps}")
        if args.new_phase:
            if steps is None:
                raise SeqnetError(f"--new-phase: needs --steps N, the step the new phase ends at (more than the "
                                  f"current {trainer.step})")
            trainer.new_phase({k: v for k, v in given_settings(args, TrainerConfig).items() if k in phase})
        elif steps is not None:
            trainer.config.steps = steps
            trainer.config.validate()
    except BaseException as err:                 # noqa: BLE001 - every process learns of it (agree)
        trainer.close()
        error = err
    world.agree(error)
    return trainer


def _finished_message(trainer) -> str:
    cfg, out = trainer.config, trainer.run_dir
    return (f"the run in {out} is finished at step {trainer.step}; nothing to do. To train it further: "
            f"{command_line('seqnet', 'train', '--out', out, '--resume', '--steps', 'N')} continues its "
            f"{cfg.schedule} schedule over the longer run"
            + (" (a cosine schedule is at its minimum by now, so the extra steps train little)"
               if cfg.schedule == "cosine" else "")
            + f", or add --new-phase --lr X for a fresh schedule from step {trainer.step}")


def cmd_train(args) -> int:
    """Train in this process, or with the other processes of an MPI job (``mpiexec -n N``):
    every process runs this; rank 0 alone prints and writes the run directory. Standard output
    that cannot be written (a full disk) does not stop training; it is reported at the end."""
    with _watched_stdout() as stdout:
        code = _train(args)
        if stdout.error is not None and code == 0:
            raise SeqnetError(f"standard output: cannot be written ({stdout.error.strerror or stdout.error}); the "
                              "run itself is complete and its checkpoints are intact")
    return code


class _WatchedStream:
    """A text stream that remembers the first failure to write it other than a closed pipe
    (write_line drops the text and silences the stream, so that training goes on)."""

    def __init__(self, stream):
        self._stream, self.error = stream, None

    def _watch(self, method, *args):
        try:
            return method(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            self.error = self.error or err
            raise

    def write(self, text):
        return self._watch(self._stream.write, text)

    def flush(self):
        return self._watch(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _watched_stdout():
    watched = _WatchedStream(sys.stdout)
    sys.stdout = watched
    try:
        yield watched
    finally:
        sys.stdout = watched._stream


def _train(args) -> int:
    from ..training.distributed import make_world
    from ..training.runs import new_run
    from ..training.trainer import TrainingInterrupted

    world = make_world("auto", program="seqnet train")
    kwargs = {"json_lines": args.json, "progress": not args.no_progress, "distributed": world}
    error = task = task_config = trainer_config = None
    try:                                         # the same on every process: rank 0 alone reports it
        if args.new_phase and not args.resume:
            raise SeqnetError("--new-phase: only with --resume (a new run has one phase already)")
        if args.resume and args.out is None:
            raise SeqnetError("--resume: needs --out DIR, the run directory to continue")
        if not args.resume:
            task = TASKS[getattr(args, "task", DEFAULT_TASK)]
            _refuse_other_tasks_flags(args, task)
            task_config = settings_from(args, task.Config).validate()
            task_config.check_given(given_settings(args, task.Config))
            trainer_config = settings_from(args, TrainerConfig).validate()
    except SeqnetError as err:
        error = err
    world.agree(error)
    trainer = None
    try:
        if args.resume:
            trainer = _resume(args, kwargs, world)
            if trainer.finished:
                try:
                    trainer.complete()               # a summary the run was stopped before writing
                finally:
                    trainer.close()
                if world.is_root:
                    write_line(sys.stderr, f"seqnet train: {_finished_message(trainer)}")
                return 0
        else:
            trainer = new_run(task.kind, task_config, trainer_config, args.out, **kwargs)
        try:
            summary = trainer.run()
        except TrainingInterrupted as stop:
            if world.is_root:
                write_line(sys.stderr, f"\nseqnet train: interrupted at step {stop.step}; a checkpoint of that step "
                                       f"is in {stop.run_dir} (continue with: {_continue_command(stop.run_dir)})")
            return EXIT_INTERRUPTED.get(stop.signum, 130)
        except BaseException:
            with _signals_held(), contextlib.suppress(OSError):
                trainer.directory.abandon()      # removes the run only if it has no checkpoint
            raise
        finally:
            trainer.close()
    except KeyboardInterrupt as stop:            # a second Ctrl-C, or one before training began
        stop.kept = _what_was_kept(args, trainer)
        raise
    except OSError as err:
        if isinstance(err, BrokenPipeError):
            raise
        run_dir = trainer.run_dir if trainer is not None else args.out
        raise Failure(f"{file_error(err, args, run_dir)}; {_what_was_kept(args, trainer)}") from err
    if not args.json and world.is_root:
        with contextlib.suppress(SeqnetError):   # stdout cannot be written: said by cmd_train
            _print_summary(trainer, summary)
    return 0


def _continue_command(run_dir) -> str:
    return command_line("seqnet", "train", "--out", run_dir, "--resume")


def _has_checkpoint(run_dir) -> bool:
    from ..training.checkpoint import has_checkpoint

    try:
        return has_checkpoint(run_dir)
    except OSError:
        return False


def _what_was_kept(args, trainer) -> str:
    """What a train command that stopped early leaves behind, for its last message."""
    run_dir = trainer.run_dir if trainer is not None else args.out
    if run_dir is not None and _has_checkpoint(run_dir):
        return (f"the checkpoints already written in {run_dir} are intact (continue with: "
                f"{_continue_command(run_dir)})")
    if args.resume:
        return "nothing was changed"
    return "nothing was kept: the run stopped before its first checkpoint was written; start it again"


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM are ignored while a failed start cleans up: a further Ctrl-C must not
    stop the cleanup halfway (it removes the run only if no checkpoint was committed)."""
    previous = {}
    with contextlib.suppress(ValueError):        # not the main thread: signals cannot arrive here
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# where a path in an error comes from: the argument that names it (or a directory above it)
PATH_ARGUMENTS = (("out", "--out"), ("corpus", "--corpus"), ("data", "--data"), ("valid", "--valid"),
                  ("input", "--input"), ("plot", "--plot"), ("run_dir", "DIR"))


def file_error(err: OSError, args, default_path=None) -> str:
    """``--out: PATH: reason`` for an error of the filesystem (the path it names, else ``default_path``)."""
    path = err.filename if err.filename is not None else default_path
    reason = err.strerror or str(err) or type(err).__name__
    if path is None:
        return reason
    argument = _argument_of(args, path)
    return f"{argument + ': ' if argument else ''}{shown_path(path)}: {reason}"


def _argument_of(args, path) -> str | None:
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    for attr, name in PATH_ARGUMENTS:
        value = getattr(args, attr, None)
        if not isinstance(value, (str, Path)) or not str(value):
            continue
        for base in {str(value), os.path.abspath(value)}:
            if text == base or text.startswith(base.rstrip(os.sep) + os.sep):
                return name
    return None


def _print_summary(trainer, summary: dict) -> None:
    from ..tasks import TranslateTask

    if trainer.task.kind in labeled.LABELED_TASKS:              # classify / tag / generate: cli/labeled.py
        emit(labeled.train_summary(trainer.task, summary))
        return
    run_dir = summary["run_dir"]
    train = summary.get("train_bits_per_token")
    if isinstance(trainer.task, TranslateTask):
        exact = summary.get("val_exact_match")
        lines = [f"\ntrained {summary['steps']} steps: train loss {'n/a' if train is None else f'{train:.3f}'} "
                 f"bits/token" + ("" if exact is None else f", validation exact match {100 * exact:.2f}%"),
                 f"run directory: {run_dir}  (translate: {command_line('seqnet', 'translate', run_dir, 'TEXT...')})\n",
                 trainer.task.report(trainer.step) or ""]
    else:
        val = summary.get("val_bits_per_token")
        lines = [f"\ntrained {summary['steps']} steps: train loss {'n/a' if train is None else f'{train:.3f}'} "
                 f"bits/token, validation {'n/a' if val is None else f'{val:.3f}'} bits/token, "
                 f"{summary['tokens_per_s']:,.0f} tokens/s",
                 f"run directory: {run_dir}  (sample again: {command_line('seqnet', 'sample', run_dir)})"]
        length = trainer.task.config.sample_length
        if length:
            lines += ["", trainer.model.generate("", length, temperature=0.8, seed=0)[0]]
    for line in lines:
        if not emit(line):
            break


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
    check_sampling_flags(args)
    task = _load_run(args)
    labeled.check_condition_flag(task, args)
    if task.kind == "generate":                                 # conditional generators: cli/labeled.py
        given = [flag for flag, value in (("--beam", args.beam), *_beam_flags(args).items()) if value is not None]
        if given:
            raise SeqnetError(f"{given[0]}: {args.run_dir} holds a conditional generator, which samples (no beam "
                              f"search); drop {given[0]}")
        _check_greedy(args)
        args.temperature = _temperature(args)
        return labeled.cmd_sample(task, args)
    options = _sample_options(args)
    model = _load_language_model(args, task).model
    texts = model.generate(args.prime, args.length, num_samples=args.num, **options)
    for k, text in enumerate(texts):
        if len(texts) > 1 and not emit(f"--- sample {k + 1} ---"):
            break
        if not emit(text):
            break
    return 0


def _check_greedy(args) -> None:
    """--greedy takes the most likely token each step: the sampling controls do nothing, and
    every one of --num samples would be the same text."""
    if not args.greedy:
        return
    given = [flag for flag, value in (("--temperature", args.temperature), ("--top-k", args.top_k),
                                      ("--top-p", args.top_p), ("--seed", args.seed)) if value is not None]
    if given:
        raise SeqnetError(f"{given[0]}: a sampling control; --greedy does not sample (drop one of them)")
    if args.num > 1:
        raise SeqnetError(f"--num: --greedy gives one text (every greedy sample is the same); expected 1, received "
                          f"{args.num}")


def _temperature(args) -> float | None:
    """--temperature, 0.8 when not given; none with --greedy (which takes no sampling control)."""
    return args.temperature if args.temperature is not None or args.greedy else 0.8


def _beam_flags(args) -> dict:
    """The beam-search flags of ``seqnet sample`` other than --beam, by flag (None: not given)."""
    return {"--length-penalty": args.length_penalty, "--alpha": args.alpha, "--block-ngram": args.block_ngram}


def _sample_options(args) -> dict:
    """generate()'s sampling or beam-search keyword arguments; flags of the other mode are refused."""
    from .translate import check_alpha_flag

    beam_flags = _beam_flags(args)
    if args.beam is None:
        given = [flag for flag, value in beam_flags.items() if value is not None]
        if given:
            raise SeqnetError(f"{given[0]}: applies to beam search only; add --beam K")
        _check_greedy(args)
        return dict(temperature=_temperature(args), top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                    seed=args.seed)
    if args.beam < 1:
        raise SeqnetError(f"--beam: expected a positive integer, received {args.beam}")
    check_alpha_flag(args.alpha, args.length_penalty)
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
    from .translate import eval_translation, given_search_flags

    task = _load_run(args)
    if not isinstance(task, TranslateTask) and given_search_flags(args):
        raise SeqnetError(f"{given_search_flags(args)[0]}: a search flag, for translation models; {args.run_dir} "
                          f"holds a {task.kind} model")
    if task.kind != "lm" and args.seq_len is not None:
        raise SeqnetError(f"--seq-len: for language models; {args.run_dir} holds a {task.kind} model, which reads "
                          "whole sequences")
    if isinstance(task, TranslateTask):                          # translation runs: cli/translate.py
        return eval_translation(args, task)
    if task.kind in labeled.LABELED_TASKS:                      # classify / tag / generate: cli/labeled.py
        return labeled.cmd_eval(task, args)
    labeled.check_lm_eval_flags(args)
    result = _load_language_model(args, task).evaluate_corpus(args.corpus, args.batch,
                                                              128 if args.seq_len is None else args.seq_len)
    streams = result["streams"]
    if args.json:
        emit(json_text(result))
    else:
        unknown = f", {result['unknown_tokens']:,} of them unknown (<UNK>)" if result["unknown_tokens"] else ""
        emit(f"{result['tokens']:,} tokens predicted (of {result['corpus_tokens']:,} in the corpus, "
                               f"in {streams} streams{unknown}): {result['bits_per_token']:.4f} bits per token, "
                               f"perplexity {result['perplexity']:.3f}")
    return 0


def _show_warnings(command: str) -> None:
    """seqnet's own warnings always reach the user, as one line each (whatever PYTHONWARNINGS says)."""
    def show(message, category, filename, lineno, file=None, line=None):
        write_line(sys.stderr, f"seqnet {command}: warning: {message}")
    warnings.showwarning = show
    warnings.simplefilter("always", SeqnetWarning)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: unwinds like Ctrl-C (cleaning up), exits 143."""


def _sigterm_as_interrupt(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    from ..training.distributed import is_reported_elsewhere, launched_by, launched_rank

    previous = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM,
                                                                                      _sigterm_as_interrupt)
    follower = launched_rank() > 0               # a process of an MPI job other than rank 0: rank 0 speaks
    name = _command_of(sys.argv[1:] if argv is None else argv)
    prog = "seqnet" if name is None else f"seqnet {name}"
    args = parser = None
    try:
        ensure_standard_streams()
        parser = build_parser()
        with _silenced(follower):                # usage errors and --help: once for the job
            args = parse_arguments(parser, argv)
        name, prog = args.command, f"seqnet {args.command}"
        from .translate import cmd_translate

        command = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "predict": labeled.cmd_predict,
                   "translate": cmd_translate}[name]
        launched = launched_by()
        if name != "train" and launched is not None and launched[0] > 1:   # N copies would print N answers
            if follower:
                return EXIT_USAGE
            raise SeqnetError(f"this command runs as one process, and the MPI launcher started {launched[0]}: run it "
                              "without mpiexec or srun (only seqnet train trains data-parallel)")
        if follower:
            warnings.simplefilter("ignore", SeqnetWarning)
        else:
            _show_warnings(args.command)
        from ..backend.threads import set_num_threads

        if args.threads < 1:
            raise SeqnetError(f"--threads: expected a positive integer, received {args.threads}")
        run_dir = getattr(args, "run_dir", None)
        if run_dir is not None and not run_dir.strip():
            raise SeqnetError(f"DIR: expected a run directory, received an empty string ({run_dir!r})")
        set_num_threads(args.threads)
        return command(args)
    except SeqnetError as err:
        if not is_reported_elsewhere(err):
            write_line(sys.stderr, f"{prog}: error: {readable(flag_names(str(err), parser, name))}")
        return EXIT_USAGE
    except Failure as err:
        write_line(sys.stderr, f"{prog}: error: {readable(str(err))}")
        return EXIT_FAILURE
    except MemoryError:
        advice = MEMORY_ADVICE.get(name, "a smaller input")
        write_line(sys.stderr, f"{prog}: error: out of memory; try {advice}" + (
            " (checkpoints already written are intact)" if name == "train" else ""))
        return EXIT_FAILURE
    except KeyboardInterrupt as stop:
        if not follower:
            kept = getattr(stop, "kept", "nothing was changed" if name == "train" else None)
            write_line(sys.stderr, f"\n{prog}: interrupted" + ("" if kept is None else f"; {readable(kept)}"))
        return EXIT_INTERRUPTED[signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT]
    except BrokenPipeError:                      # the reader of stdout went away: stop quietly
        silence(sys.stdout)
        return 0
    except OSError as err:                       # a file that cannot be read or written
        write_line(sys.stderr, f"{prog}: error: {readable(file_error(err, args))}")
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def _command_of(argv) -> str | None:
    """The command named on the command line, before it is parsed (for the messages of --help)."""
    return next((word for word in argv if word in COMMANDS), None)


def readable(text: str) -> str:
    """A message with the bytes of a file name that is not UTF-8 written as escapes (\\xff)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_SETTING_NAMES = re.compile(r"^([a-z][a-z0-9_]*(?:, [a-z][a-z0-9_]*)*): ")


def flag_names(message: str, parser, command: str | None) -> str:
    """A message from the library that begins with the Python names of settings (``device: ...``,
    ``min_len, block_ngram: ...``) speaks of the command's flags instead (``--device: ...``)."""
    match = _SETTING_NAMES.match(message)
    if match is None or parser is None or command is None:
        return message
    flags = _flags_of(parser, command)
    names = match.group(1).split(", ")
    if not all(name in flags for name in names):
        return message
    rest = message[match.end():]
    for name in sorted((n for n in flags if "_" in n), key=len, reverse=True):
        rest = re.sub(rf"(?<![\w-]){name}(?!\w)", flags[name], rest)
    return ", ".join(flags[name] for name in names) + ": " + rest


def _flags_of(parser, command: str) -> dict:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {action.dest: action.option_strings[-1] for action in sub._actions
            if action.option_strings and action.option_strings[-1].startswith("--")}


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that the TEXT arguments of ``seqnet translate`` may come
    after its options (``translate DIR --beam 4 "text"``; after ``--`` everything is TEXT), and
    unknown arguments are reported by the subcommand that received them."""
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    unknown, texts, literal = [], [], False
    for item in extras:
        if item == "--" and not literal:
            literal = True
        elif literal or not item.startswith("-") or item == "-" or _is_number(item):
            texts.append(item)
        else:
            unknown.append(item)
    if args.command == "translate" and not unknown:
        args.texts = [*args.texts, *texts]
        return args
    subcommand = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    subcommand.error("unrecognized arguments: " + " ".join(unknown or extras))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _silenced(quiet: bool):
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
