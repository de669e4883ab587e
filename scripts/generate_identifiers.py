"""Identifiers of a given kind (function, class, exception, constant, parameter), invented by a
conditional generator trained on the standard library's own names.

    python scripts/generate_identifiers.py            # a few minutes on 2 cores
    python scripts/generate_identifiers.py --full     # longer training, a larger model

Names are collected with ``ast`` from the running Python's standard-library sources, each
kind defined by syntax, not by spelling: functions and methods (dunder methods left out),
classes, exceptions (classes with a base whose name ends in Error, Exception or Warning),
constants (module-level names bound once to a literal) and parameters. The distinct (kind,
name) pairs are written as JSON lines {"condition": kind, "text": name} and trained with the
generate task (character tokens; the kind sets the initial state and enters every step).
Then --samples names per kind are sampled (temperature 0.8), and for each kind the summary
reports how often they follow the kind's naming convention (PEP 8: snake_case functions and
parameters, CapWords classes, CapWords ending in Error/Exception/Warning for exceptions,
UPPER_CASE constants), how many are new (in no kind's training names), the same convention
rate of the real names of that kind, and a kind-blind baseline: the rate among real names of
all kinds pooled. Writes naming.png and summary.json in --out.
"""
from __future__ import annotations

import argparse
import ast
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from _examples import (Clock, ROOT, nonnegative_int, pictures, positive_int, print_summary,
                       pyplot, run_script, save_figure, train, write_jsonl)

from seqnet.data import python_stdlib_files  # noqa: E402

CONVENTIONS = {
    "function": r"_*[a-z][a-z0-9_]*",
    "parameter": r"_*[a-z][a-z0-9_]*",
    "class": r"_*[A-Z][A-Za-z0-9]*",
    "exception": r"_*[A-Z][A-Za-z0-9]*(Error|Exception|Warning)",
    "constant": r"_*[A-Z][A-Z0-9_]*",
}


def follows(kind: str, name: str) -> bool:
    return re.fullmatch(CONVENTIONS[kind], name) is not None


def _literal(node) -> bool:
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(_literal(e) for e in node.elts)


def _base_name(base) -> str:
    return base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""


def names_in(tree: ast.Module) -> dict[str, set]:
    found = defaultdict(set)
    bound = defaultdict(int)
    for node in tree.body:                                   # module level: constants
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound[target.id] += 1
                    if _literal(node.value):
                        found["constant?"].add(target.id)
    found["constant"] = {n for n in found.pop("constant?", set()) if bound[n] == 1 and not n.startswith("__")}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not (node.name.startswith("__") and node.name.endswith("__")):
                found["function"].add(node.name)
            args = node.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None and arg.arg not in ("self", "cls"):
                    found["parameter"].add(arg.arg)
        elif isinstance(node, ast.ClassDef):
            error = any(_base_name(b).endswith(("Error", "Exception", "Warning")) for b in node.bases)
            found["exception" if error else "class"].add(node.name)
    return found


def collect() -> dict[str, list[str]]:
    names = defaultdict(set)
    for path in python_stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for kind, found in names_in(tree).items():
            names[kind] |= found
    return {kind: sorted(names[kind]) for kind in CONVENTIONS}


def save_chart(per_kind: dict, path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None

    kinds = list(per_kind)
    series = [("generated", "convention_rate", "#4878a8"), ("real names of the kind", "training_convention_rate",
              "#9ab973"), ("real names, kind ignored", "kind_blind_baseline", "#cccccc")]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for k, (label, key, colour) in enumerate(series):
        ax.bar(np.arange(len(kinds)) + (k - 1) * 0.27, [per_kind[n][key] for n in kinds], 0.27, label=label,
               color=colour)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("follows the naming convention")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="train longer with a larger model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "generate_identifiers")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--steps", type=positive_int, default=None, help="override the number of optimizer steps")
    parser.add_argument("--samples", type=positive_int, default=200, help="names sampled per kind (default: 200)")
    args = parser.parse_args()
    clock = Clock()
    names = collect()
    write_jsonl(args.out / "names.jsonl", ({"condition": kind, "text": name}
                                           for kind, found in names.items() for name in found))
    steps = args.steps if args.steps is not None else (10000 if args.full else 4000)
    task_settings = dict(data=str(args.out / "names.jsonl"), embed=24, hidden=256 if args.full else 128,
                         condition_embed=8, batch=64, val_fraction=0.05, dropout=0.1, max_len=40, sample_length=0)
    trainer = dict(steps=steps, lr=3e-3, eval_every=max(steps // 4, 1), checkpoint_every=steps, seed=args.seed)
    task, summary = train("generate", args.out / "run", task_settings, trainer)
    known = {name for found in names.values() for name in found}
    pooled = sorted(known)
    per_kind, examples = {}, {}
    for kind in CONVENTIONS:
        sampled = task.generate([kind] * args.samples, temperature=0.8, seed=args.seed, max_length=40)
        per_kind[kind] = {
            "convention_rate": float(np.mean([follows(kind, s) for s in sampled])),
            "new": float(np.mean([s not in known for s in sampled])),
            "training_names": len(names[kind]),
            "training_convention_rate": float(np.mean([follows(kind, n) for n in names[kind]])),
            "kind_blind_baseline": float(np.mean([follows(kind, n) for n in pooled]))}
        examples[kind] = sampled[:8]
    naming_png = save_chart(per_kind, args.out / "naming.png")
    print_summary({
        "task": "identifiers conditioned on their kind, learned from the standard library's names",
        "names": {k: len(v) for k, v in names.items()}, "steps": steps,
        "val_bits_per_token": summary.get("val_bits_per_token"), "samples_per_kind": args.samples,
        "temperature": 0.8, "per_kind": per_kind, "examples": examples,
        "pictures": pictures(naming_png), **clock.report()}, args.out / "summary.json")


if __name__ == "__main__":
    run_script(main)
