"""``seqnet translate`` and the translation side of ``seqnet eval``, kept apart from :mod:`.main`
(which only registers them): search flags, their checks with the flags' own names, loading a
translation run, printing translations and scores."""
from __future__ import annotations

import json
import sys

from ..decoding import LENGTH_PENALTIES
from ..errors import SeqnetError


def add_search_arguments(p, batch: bool = True) -> None:
    """The decoding flags shared by ``translate`` and ``eval`` of a translation model (``eval``
    has its own --batch)."""
    g = p.add_argument_group("search")
    g.add_argument("--beam", type=int, default=1, help="beam width; 1 is greedy search (default: 1)")
    g.add_argument("--n-best", type=int, default=1, help="outputs per source, at most --beam (default: 1)")
    g.add_argument("--length-penalty", choices=LENGTH_PENALTIES, default="none",
                   help="rank finished outputs by score / len^alpha (avg) or / ((5+len)/6)^alpha (wu) (default: none)")
    g.add_argument("--alpha", type=float, default=1.0, help="the length penalty's exponent (default: 1.0)")
    g.add_argument("--max-len-a", type=float, default=1.5,
                   help="at most A * source length + B output tokens (default: A = 1.5)")
    g.add_argument("--max-len-b", type=int, default=10, help="(default: B = 10)")
    g.add_argument("--min-len", type=int, default=0, help="at least this many output tokens (default: 0)")
    g.add_argument("--block-ngram", type=int, default=0, help="never repeat an n-gram of this size (default: 0, off)")
    if batch:
        g.add_argument("--batch", type=int, default=64, help="sources translated together (default: 64)")


def search_options(args) -> dict:
    """The keyword arguments of :meth:`seqnet.models.Seq2Seq.translate`, checked under the flags' names."""
    for flag, value, low in (("--beam", args.beam, 1), ("--n-best", args.n_best, 1), ("--min-len", args.min_len, 0),
                             ("--max-len-b", args.max_len_b, 0), ("--block-ngram", args.block_ngram, 0),
                             ("--batch", args.batch, 1)):
        if value < low:
            raise SeqnetError(f"{flag}: expected {'a positive integer' if low else 'an integer >= 0'}, received {value}")
    if args.n_best > args.beam:
        raise SeqnetError(f"--n-best: expected at most --beam {args.beam} outputs per source, received {args.n_best}")
    if args.max_len_a < 0:
        raise SeqnetError(f"--max-len-a: expected a number >= 0, received {args.max_len_a}")
    if not 0 <= args.alpha <= 10:
        raise SeqnetError(f"--alpha: expected a number in [0, 10], received {args.alpha}")
    return dict(beam=args.beam, n_best=args.n_best, length_penalty=args.length_penalty,
                alpha=args.alpha if args.length_penalty != "none" else 0.0, max_len_a=args.max_len_a,
                max_len_b=args.max_len_b, min_len=args.min_len, block_ngram=args.block_ngram, batch_size=args.batch)


def add_translate_parser(sub, backend_arguments, threads_argument) -> None:
    p = sub.add_parser("translate", help="translate text with a trained translation run directory",
                       description="Translate each TEXT (or each line of --input, or of standard input).")
    p.add_argument("run_dir")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="sources to translate")
    p.add_argument("--input", default=None, help="a file with one source per line ('-': standard input)")
    add_search_arguments(p)
    p.add_argument("--scores", action="store_true", help="print each output's log-probability before it")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per source: source, outputs, scores (and attention with --attention)")
    p.add_argument("--attention", action="store_true", help="with --json: the attention weights of each output")
    backend_arguments(p)
    threads_argument(p)


def load_translation_task(args):
    """The run directory's task, refused unless it is a translation model."""
    from ..tasks import TranslateTask
    from ..training.runs import load_task

    task = load_task(args.run_dir, args.backend, args.device)
    if not isinstance(task, TranslateTask):
        raise SeqnetError(f"{args.run_dir}: holds a {task.kind} model; seqnet {args.command} needs a translation "
                          "model (trained with --task translate)")
    return task


def _sources(args) -> list[str]:
    if args.texts and args.input is not None:
        raise SeqnetError("--input: give sources as TEXT arguments or with --input FILE, not both")
    if args.texts:
        return list(args.texts)
    if args.input is None and sys.stdin.isatty():
        raise SeqnetError("TEXT: nothing to translate; give TEXT arguments, --input FILE, or pipe lines in")
    if args.input in (None, "-"):
        lines = sys.stdin.read().splitlines()
    else:
        try:
            with open(args.input, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise SeqnetError(f"--input: cannot read {args.input} ({err.strerror})") from err
        except UnicodeDecodeError as err:
            raise SeqnetError(f"--input: {args.input} is not UTF-8 text ({err.reason})") from err
    sources = [line for line in lines if line.strip()]
    if not sources:
        raise SeqnetError(f"--input: {args.input or 'standard input'} holds no source line")
    return sources


def cmd_translate(args) -> int:
    if args.attention and not args.json:
        raise SeqnetError("--attention: the weights are printed only with --json")
    options = search_options(args)
    task = load_translation_task(args)
    sources = _sources(args)
    results = task.model.translate(sources, keep_attention=args.attention, **options)
    for source, result in zip(sources, results):
        if args.json:
            record = {"source": source, "outputs": result.outputs, "scores": result.scores}
            if args.attention:
                record["attention"] = [None if a is None else a.tolist() for a in result.attention]
            print(json.dumps(record, ensure_ascii=False))
            continue
        for output, score in zip(result.outputs, result.scores):
            print(f"{score:.4f}\t{output}" if args.scores else output)
    return 0


def eval_translation(args, task) -> int:
    """``seqnet eval DIR --data FILE`` of a translation run: exact match, token accuracy, CER (and BLEU for words)."""
    if args.corpus is not None:
        raise SeqnetError("--corpus: a translation model is evaluated on parallel pairs: --data FILE")
    if args.data is None:
        raise SeqnetError("--data: seqnet eval of a translation model needs --data FILE (TSV or JSON lines pairs)")
    options = search_options(args)
    options.pop("n_best")
    result = task.evaluate_file(args.data, **options)
    if args.json:
        print(json.dumps(result))
        return 0
    line = (f"{result['pairs']:,} pairs: exact match {100 * result['exact_match']:.2f}%, token accuracy "
            f"{100 * result['token_accuracy']:.2f}%, character error rate {100 * result['char_error_rate']:.2f}%")
    if "bleu" in result:
        line += f", BLEU {result['bleu']:.2f}"
    print(line)
    return 0
