"""The command line of the labelled-data tasks (classify, tag, generate): what ``seqnet train``
prints at the end of such a run, ``seqnet eval DIR --data FILE``, ``seqnet predict DIR --data
FILE`` and ``seqnet sample DIR --condition NAME``. :mod:`.main` calls in here for runs that
are not language models; every mistake is a SeqnetError (one line, exit code 2)."""
from __future__ import annotations

import json

from ..errors import SeqnetError
from ..metrics import check_plot_path
from ..training.output import emit
from .options import check_sampling_flags, command_line

LABELED_TASKS = ("classify", "tag", "generate")


def add_predict_parser(sub, backend_arguments, threads_argument) -> None:
    p = sub.add_parser("predict", help="label, tag or generate for every record of a file (JSON lines out)",
                       description="Classify each text, tag each sentence, or generate a text for each condition "
                                   "of --data with the model of a run directory; one JSON object per line on stdout.")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="texts (JSON lines with 'text', or one text per line), CoNLL "
                                                 "sentences (tag column optional), or JSON lines with 'condition'")
    p.add_argument("--temperature", type=float, default=None, help="generate runs (default: 0.8)")
    p.add_argument("--seed", type=int, default=None, help="generate runs (default: 0)")
    backend_arguments(p)
    threads_argument(p)


def add_eval_arguments(p) -> None:
    """The flags ``seqnet eval`` takes for labelled-data runs."""
    p.add_argument("--data", default=None, help="classify / tag / generate runs: a labelled file to score")
    p.add_argument("--plot", default=None, help="classify runs: write the confusion matrix to this PNG")


def train_summary(task, summary: dict) -> str:
    """The lines ``seqnet train`` prints at the end of a classify / tag / generate run."""
    scores = {k: v for k, v in summary.items() if k.startswith("val_") and v is not None}
    shown = ", ".join(f"{k[4:].replace('_', ' ')} {v:.4f}" for k, v in scores.items()) or "no validation data"
    run_dir = summary["run_dir"]
    train_key = "train_loss" if "train_loss" in summary else next((k for k in summary if k.startswith("train_")), None)
    train = "" if train_key is None else (f"train loss {summary[train_key]:.4f} nats" if train_key == "train_loss"
                                          else f"{train_key.replace('_', ' ')} {summary[train_key]:.4f}")
    lines = [f"\ntrained {summary['steps']} steps: {train}; validation: {shown}",
             f"run directory: {run_dir}  (score a file: {command_line('seqnet', 'eval', run_dir, '--data', 'FILE')}; "
             f"predict: {command_line('seqnet', 'predict', run_dir, '--data', 'FILE')})"]
    if task.kind == "generate":
        names = list(task.conditions.names[:6])
        for name, text in zip(names, task.generate(names, temperature=0.8, seed=0, max_length=200)):
            lines.append(f"[{name}] {text}")
    return "\n".join(lines)


def _require_data(args) -> str:
    if args.data is None:
        raise SeqnetError(f"--data: {args.run_dir} holds a model of a labelled-data task; give the labelled file "
                          "to score with --data FILE")
    return args.data


def cmd_eval(task, args) -> int:
    if getattr(args, "corpus", None) is not None:
        raise SeqnetError(f"--corpus: for language models; {args.run_dir} holds a {task.kind} model (use --data FILE)")
    if args.batch is not None:
        raise SeqnetError(f"--batch: for language and translation models; {args.run_dir} holds a {task.kind} model, "
                          "scored a length bucket at a time")
    if args.plot is not None:
        if task.kind != "classify":
            raise SeqnetError(f"--plot: the confusion matrix is for classify runs; {args.run_dir} holds a {task.kind} "
                              "model")
        if task.multi_label:
            raise SeqnetError(f"--plot: {args.run_dir} holds a multi-label classifier, which has no confusion matrix")
        check_plot_path(args.plot, "--plot")
    report = task.evaluate_file(_require_data(args), plot=args.plot)
    if args.json:
        emit(json.dumps(report))
        return 0
    emit(_eval_text(task.kind, report))
    return 0


def _eval_text(kind: str, report: dict) -> str:
    if kind == "generate":
        unknown = f", {report['unknown_tokens']:,} of them unknown (<UNK>)" if report.get("unknown_tokens") else ""
        return (f"{report['texts']:,} texts, {report['tokens']:,} tokens{unknown}: {report['bits_per_token']:.4f} "
                f"bits per token, perplexity {report['perplexity']:.3f}")
    lines = [f"{key.replace('_', ' ')}: {value:.4f}" for key, value in report.items()
             if "bits_per_" in key and isinstance(value, float)]
    if kind == "classify":
        if "accuracy" in report:
            lines.append(f"{report['examples']:,} texts: accuracy {report['accuracy']:.4f}, macro-F1 "
                         f"{report['macro_f1']:.4f}")
            base = report.get("majority_baseline")
            if base:
                lines.append(f"majority-class baseline ({base['class']}): accuracy {base['accuracy']:.4f}, "
                             f"macro-F1 {base['macro_f1']:.4f}")
        else:
            lines.append(f"{report['examples']:,} texts: micro-F1 {report['micro_f1']:.4f}, macro-F1 "
                         f"{report['macro_f1']:.4f}, subset accuracy {report['subset_accuracy']:.4f}")
        table = report["per_class"]
    else:
        lines.append(f"token accuracy {report['token_accuracy']:.4f}")
        entities = report.get("entities")
        if entities:
            lines.append(f"entities (conlleval): precision {entities['precision']:.4f}, recall "
                         f"{entities['recall']:.4f}, F1 {entities['f1']:.4f} ({entities['correct']} of "
                         f"{entities['gold']} gold, {entities['predicted']} predicted)")
        base = report.get("majority_baseline")
        if base:
            lines.append(f"majority-tag baseline ({base['tag']}): token accuracy {base['token_accuracy']:.4f}")
        table = entities["per_type"] if entities else report["per_tag"]
    width = max(len(str(n)) for n in table) if table else 5
    lines.append(f"{'':{width}}  precision  recall     F1")
    for name, row in table.items():
        lines.append(f"{name:{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}")
    return "\n".join(lines)


def cmd_predict(args) -> int:
    from ..training.runs import load_task

    check_sampling_flags(args)
    task = load_task(args.run_dir, args.backend, args.device)
    if task.kind not in LABELED_TASKS:
        raise SeqnetError(f"{args.run_dir}: holds a {task.kind} model; seqnet predict needs a classify, tag or "
                          "generate run (sample from a language model with seqnet sample)")
    if task.kind != "generate":
        given = [flag for flag, value in (("--temperature", args.temperature), ("--seed", args.seed)) if value is not None]
        if given:
            raise SeqnetError(f"{given[0]}: for generate runs, which sample; {args.run_dir} holds a {task.kind} model")
    options = {"temperature": 0.8 if args.temperature is None else args.temperature,
               "seed": 0 if args.seed is None else args.seed} if task.kind == "generate" else {}
    for record in task.predict_file(args.data, **options):       # a closed pipe (| head) ends it quietly (main)
        if not emit(json.dumps(record, ensure_ascii=False)):
            break
    return 0


def cmd_sample(task, args) -> int:
    """``seqnet sample`` on a generate run: --num texts for --condition."""
    if args.condition is None:
        raise SeqnetError(f"--condition: {args.run_dir} holds a conditional generator; name one of its conditions: "
                          + ", ".join(task.conditions.names))
    if args.prime:
        raise SeqnetError("--prime: a conditional generator starts from its condition; drop --prime")
    texts = task.generate([args.condition] * args.num, max_length=args.length, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, greedy=args.greedy, seed=args.seed)
    for text in texts:
        emit(text)
    return 0


def check_condition_flag(task, args) -> None:
    """--condition is only for generate runs."""
    if getattr(args, "condition", None) is not None and task.kind != "generate":
        raise SeqnetError(f"--condition: only for conditional generators; {args.run_dir} holds a {task.kind} model")


def check_lm_eval_flags(args) -> None:
    """``seqnet eval`` of a language model takes --corpus, not the labelled-data flags."""
    for flag in ("data", "plot"):
        if getattr(args, flag, None) is not None:
            raise SeqnetError(f"--{flag}: for classify, tag, generate{' and translate' if flag == 'data' else ''} "
                              f"runs; {args.run_dir} holds a language model (score a text with --corpus)")
    if args.corpus is None:
        raise SeqnetError(f"--corpus: {args.run_dir} holds a language model; give the text to score with --corpus")
