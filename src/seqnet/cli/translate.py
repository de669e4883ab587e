"""``seqnet translate`` and the translation side of ``seqnet eval``, kept apart from :mod:`.main`
(which only registers them): search flags, their checks with the flags' own names, loading a
translation run, printing translations and scores."""
from __future__ import annotations

import json
import math
import sys
import warnings

from ..data.lines import split_lines
from ..decoding import LENGTH_PENALTIES
from ..errors import SeqnetError, SeqnetWarning
from ..training.output import emit


SEARCH_DEFAULTS = {"beam": 1, "n_best": 1, "length_penalty": "none", "alpha": 1.0, "max_len_a": 1.5, "max_len_b": 10,
                   "min_len": 0, "block_ngram": 0}


def add_search_arguments(p, batch: bool = True) -> None:
    """The decoding flags shared by ``translate`` and ``eval`` of a translation model (``eval``
    has its own --batch). They default to None, so that a flag given where it does nothing
    (``eval`` of another kind of run) can be refused; :func:`search_options` fills in
    ``SEARCH_DEFAULTS``."""
    g = p.add_argument_group("search")
    g.add_argument("--beam", type=int, default=None, help="beam width; 1 is greedy search (default: 1)")
    g.add_argument("--n-best", type=int, default=None, help="outputs per source, at most --beam (default: 1)")
    g.add_argument("--length-penalty", choices=LENGTH_PENALTIES, default=None,
                   help="rank finished outputs by score / len^alpha (avg) or / ((5+len)/6)^alpha (wu) (default: none)")
    g.add_argument("--alpha", type=float, default=None,
                   help="with --length-penalty avg or wu: the penalty's exponent (default: 1.0)")
    g.add_argument("--max-len-a", type=float, default=None,
                   help="at most A * source length + B output tokens (default: A = 1.5)")
    g.add_argument("--max-len-b", type=int, default=None, help="(default: B = 10)")
    g.add_argument("--min-len", type=int, default=None, help="at least this many output tokens (default: 0)")
    g.add_argument("--block-ngram", type=int, default=None, help="never repeat an n-gram of this size (default: 0, off)")
    if batch:
        g.add_argument("--batch", type=int, default=None, help="sources translated together (default: 64)")


def given_search_flags(args) -> list[str]:
    """The search flags given on the command line."""
    return ["--" + name.replace("_", "-") for name in SEARCH_DEFAULTS if getattr(args, name, None) is not None]


def check_alpha_flag(alpha, length_penalty) -> None:
    """--alpha (None: not given) needs a --length-penalty other than none (of sample --beam or translate)."""
    if alpha is not None and length_penalty in (None, "none"):
        raise SeqnetError(f"--alpha: the exponent of a length penalty; add --length-penalty avg or wu (received "
                          f"--alpha {alpha} without one)")


def search_options(args, batch_default: int = 64) -> dict:
    """The keyword arguments of :meth:`seqnet.models.Seq2Seq.translate`, checked under the flags' names."""
    o = {name: SEARCH_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name) for name in SEARCH_DEFAULTS}
    o["batch"] = batch_default if args.batch is None else args.batch
    for name, low in (("beam", 1), ("n_best", 1), ("min_len", 0), ("max_len_b", 0), ("block_ngram", 0), ("batch", 1)):
        if o[name] < low:
            raise SeqnetError(f"--{name.replace('_', '-')}: expected {'a positive integer' if low else 'an integer >= 0'}, "
                              f"received {o[name]}")
    if o["n_best"] > o["beam"]:
        raise SeqnetError(f"--n-best: expected at most --beam {o['beam']} outputs per source, received {o['n_best']}")
    if not (math.isfinite(o["max_len_a"]) and o["max_len_a"] >= 0):
        raise SeqnetError(f"--max-len-a: expected a finite number >= 0, received {o['max_len_a']}")
    if o["max_len_a"] == 0 and o["max_len_b"] == 0:
        raise SeqnetError("--max-len-a, --max-len-b: both 0 allow no output token; expected A > 0 or B > 0")
    check_alpha_flag(args.alpha, o["length_penalty"])
    if not (math.isfinite(o["alpha"]) and 0 <= o["alpha"] <= 10):
        raise SeqnetError(f"--alpha: expected a number in [0, 10], received {o['alpha']}")
    return dict(beam=o["beam"], n_best=o["n_best"], length_penalty=o["length_penalty"],
                alpha=o["alpha"] if o["length_penalty"] != "none" else 0.0, max_len_a=o["max_len_a"],
                max_len_b=o["max_len_b"], min_len=o["min_len"], block_ngram=o["block_ngram"], batch_size=o["batch"])


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
    """The sources, one per TEXT or per line of the input; blank lines stay (their output is blank)."""
    if args.texts and args.input is not None:
        raise SeqnetError("--input: give sources as TEXT arguments or with --input FILE, not both")
    if args.texts:
        blank = next((k for k, text in enumerate(args.texts) if not text.strip()), None)
        if blank is not None:
            raise SeqnetError(f"TEXT: expected non-empty sources, received {args.texts[blank]!r} (argument {blank + 1})")
        return list(args.texts)
    if args.input is None and sys.stdin.isatty():
        raise SeqnetError("TEXT: nothing to translate; give TEXT arguments, --input FILE, or pipe lines in")
    if args.input == "":
        raise SeqnetError("--input: expected a file name (or '-' for standard input), received an empty string")
    try:
        if args.input in (None, "-"):
            lines = split_lines(sys.stdin.read())
        else:
            with open(args.input, encoding="utf-8-sig") as f:
                lines = split_lines(f.read())
    except OSError as err:
        raise SeqnetError(f"--input: cannot read {args.input or 'standard input'} ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise SeqnetError(f"--input: {args.input or 'standard input'} is not UTF-8 text ({err.reason})") from err
    if not any(line.strip() for line in lines):
        raise SeqnetError(f"--input: {args.input or 'standard input'} holds no source line")
    tabbed = next((k for k, line in enumerate(lines, 1) if "\t" in line), None)
    if tabbed is not None:
        warnings.warn(f"--input: line {tabbed} of {args.input or 'standard input'} holds a tab, translated as part of "
                      "its source (a source<TAB>target file is scored with seqnet eval DIR --data FILE)",
                      SeqnetWarning, stacklevel=2)
    return lines


def cmd_translate(args) -> int:
    if args.attention and not args.json:
        raise SeqnetError("--attention: the weights are printed only with --json")
    if args.scores and args.json:
        raise SeqnetError("--scores: --json prints every output's score already; drop --scores")
    options = search_options(args)
    task = load_translation_task(args)
    sources = _sources(args)
    given = [k for k, source in enumerate(sources) if source.strip()]
    results = dict(zip(given, task.model.translate([sources[k] for k in given], keep_attention=args.attention,
                                                   **options)))
    for k, source in enumerate(sources):
        result = results.get(k)                  # None: a blank line, answered by a blank line
        if args.json:
            record = {"source": source, "outputs": result.outputs if result else [],
                      "scores": result.scores if result else []}
            if args.attention:
                record["attention"] = [None if a is None else a.tolist() for a in result.attention] if result else []
            alive = emit(json.dumps(record, ensure_ascii=False))
        elif result is None:
            alive = emit("")
        else:
            alive = all(emit(f"{score:.4f}\t{output}" if args.scores else output)
                        for output, score in zip(result.outputs, result.scores))
        if not alive:                            # the reader went away
            break
    return 0


def eval_translation(args, task) -> int:
    """``seqnet eval DIR --data FILE`` of a translation run: exact match, token accuracy, CER (and BLEU for words)."""
    if args.corpus is not None:
        raise SeqnetError("--corpus: a translation model is evaluated on parallel pairs: --data FILE")
    if args.data is None:
        raise SeqnetError("--data: seqnet eval of a translation model needs --data FILE (TSV or JSON lines pairs)")
    if args.plot is not None:
        raise SeqnetError("--plot: the confusion matrix is for classify runs; a translation model has none")
    if args.n_best is not None:
        raise SeqnetError(f"--n-best: seqnet eval scores the best output of each source; drop --n-best {args.n_best} "
                          "(seqnet translate prints the n best)")
    options = search_options(args, batch_default=16)
    options.pop("n_best")
    result = task.evaluate_file(args.data, **options)
    if args.json:
        emit(json.dumps(result))
        return 0
    line = (f"{result['pairs']:,} pairs: exact match {100 * result['exact_match']:.2f}%, token accuracy "
            f"{100 * result['token_accuracy']:.2f}%, character error rate {100 * result['char_error_rate']:.2f}%")
    if "bleu" in result:
        line += f", BLEU {result['bleu']:.2f}"
    emit(line)
    return 0
