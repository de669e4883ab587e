"""Which standard-library package does a function come from? A sequence classifier learns it.

    python scripts/classify_stdlib.py            # a few minutes on 2 cores
    python scripts/classify_stdlib.py --full     # longer training, larger model

Every top-level function and method of seven packages of the running Python's standard
library (asyncio, email, importlib, multiprocessing, tkinter, unittest, xml) is cut out of
its file with ``ast``; its source (dedented, the first ``--max-len`` word tokens) is the text
and its package the label. Whole files are held out for the test set (a quarter of each
package's files, drawn with the seed), so test functions come from files the model never
saw. The data are written as JSON lines (train.jsonl, test.jsonl), trained with the
classify task (word tokens, bidirectional LSTM, attention pooling; a tenth of the training
functions held out for validation) and scored on test.jsonl: accuracy, macro-F1, per-class
F1 and the majority-class baseline. Writes the confusion matrix (confusion_test.png) and
summary.json in --out.
"""
from __future__ import annotations

import argparse
import ast
import sysconfig
import textwrap
from pathlib import Path

import numpy as np

from _examples import (Clock, ROOT, nonnegative_int, pictures, positive_int, print_summary,
                       pyplot, run_script, save_figure, train, write_jsonl)

PACKAGES = ("asyncio", "email", "importlib", "multiprocessing", "tkinter", "unittest", "xml")


def functions_of(path: Path) -> list[str]:
    """Source of every function defined at module level or in a class body (nested classes too)."""
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    found, bodies = [], [tree.body]
    while bodies:
        for node in bodies.pop():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                source = ast.get_source_segment(text, node)
                if source:
                    found.append(textwrap.dedent(" " * node.col_offset + source))
            elif isinstance(node, ast.ClassDef):
                bodies.append(node.body)
    return found


def package_files(package: str) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"]) / package
    return sorted(p for p in root.rglob("*.py") if not {"test", "tests", "__pycache__"} & set(p.parts))


def build_data(out: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    train_records, test_records, files = [], [], {}
    for package in PACKAGES:
        paths = package_files(package)
        held = set(rng.choice(len(paths), max(2, len(paths) // 4), replace=False).tolist())
        files[package] = {"train": len(paths) - len(held), "test": len(held)}
        for k, path in enumerate(paths):
            target = test_records if k in held else train_records
            target.extend({"text": source, "label": package} for source in functions_of(path))
    write_jsonl(out / "train.jsonl", train_records)
    write_jsonl(out / "test.jsonl", test_records)
    return {"train_functions": len(train_records), "test_functions": len(test_records), "files": files}


def save_f1_chart(report: dict, path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None

    names = list(report["per_class"])
    f1 = [report["per_class"][n]["f1"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, f1, color="#4878a8")
    ax.axhline(report["macro_f1"], color="k", lw=1, ls="--", label=f"macro-F1 {report['macro_f1']:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 on held-out files")
    ax.legend(loc="lower right")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="train longer with a larger model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "classify_stdlib")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--steps", type=positive_int, default=None, help="override the number of optimizer steps")
    args = parser.parse_args()
    clock = Clock()
    data = build_data(args.out, args.seed)
    steps = args.steps if args.steps is not None else (4000 if args.full else 1500)
    task_settings = dict(data=str(args.out / "train.jsonl"), tokenizer="word", max_words=8000,
                         max_len=250 if args.full else 150, embed=64 if args.full else 32,
                         hidden=128 if args.full else 64, bidirectional=True, pooling="attention",
                         attention_size=32, dropout=0.2, batch=32, val_fraction=0.1)
    trainer_settings = dict(steps=steps, lr=3e-3, eval_every=max(steps // 4, 1), checkpoint_every=steps,
                            seed=args.seed)
    task, summary = train("classify", args.out / "run", task_settings, trainer_settings)
    confusion_png = args.out / "confusion_test.png" if pyplot() is not None else None
    report = task.evaluate_file(args.out / "test.jsonl", plot=confusion_png)
    f1_png = save_f1_chart(report, args.out / "f1_test.png")
    support = {k: v["support"] for k, v in report["per_class"].items()}
    best_constant = max(support, key=support.get)            # the stricter baseline: test's own majority
    print_summary({
        "task": "standard-library package of a function's source (held-out files)",
        "data": data, "steps": steps, "validation": {k: summary.get(k) for k in ("val_accuracy", "val_macro_f1")},
        "test": {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                 "per_class_f1": {k: round(v["f1"], 4) for k, v in report["per_class"].items()},
                 "majority_baseline": report["majority_baseline"],
                 "test_majority_baseline": {"class": best_constant,
                                            "accuracy": support[best_constant] / report["examples"]}},
        "pictures": pictures(confusion_png, f1_png),
        **clock.report()}, args.out / "summary.json")


if __name__ == "__main__":
    run_script(main)
