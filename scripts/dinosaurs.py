"""Dinosaur Island: a character-level language model invents dinosaur names.

    python scripts/dinosaurs.py                 # under a minute on 2 cores
    python scripts/dinosaurs.py --full          # longer training, a larger model

Reads the names of the exercise (1,536 lines, 1,524 distinct) from ``../shared/data/dinos.txt`` beside the project
(``--data`` for another file; the file is read where it is, never copied), trains seqnet's
character LSTM language model on it (one name per line, so "\\n" ends a name), then samples
--samples names and counts how many are new (not in the file). Each sample starts from the
zero state after a line end and writes two names; the first warms the state up (training
carries the state along a stream of names, where a zero state is rare) and the second is
kept. The validation split is the file's tail (the last 5%
of the names, alphabetically: mostly Z). Prints a JSON summary with the sampled names, writes
summary.json, names.png (the names, new ones marked) and the run's loss.png in --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _examples import (Clock, ROOT, nonnegative_int, pictures, positive_int, print_summary,
                       pyplot, run_script, save_figure, train)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dinos.txt"


def save_names(names: list[str], known: set[str], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None

    columns = 3
    rows = -(-len(names) // columns)
    fig, ax = plt.subplots(figsize=(8, 0.28 * rows + 0.8))
    for k, name in enumerate(names):
        new = name not in known
        ax.text((k % columns) / columns, 1 - (k // columns + 0.5) / rows, name + ("" if new else "  (in the list)"),
                color="#1a5c2e" if new else "#999999", family="monospace", fontsize=10, va="center")
    ax.axis("off")
    ax.set_title(f"{sum(n not in known for n in names)} of {len(names)} sampled names are new", fontsize=10)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"names, one per line (default: {DEFAULT_DATA})")
    parser.add_argument("--full", action="store_true", help="train longer with a larger model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "dinosaurs")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--steps", type=positive_int, default=None, help="override the number of optimizer steps")
    parser.add_argument("--samples", type=positive_int, default=30, help="names to sample (default: 30)")
    parser.add_argument("--temperature", type=float, default=0.8)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"dinosaurs.py: error: --data: {args.data} does not exist (expected the exercise's dinos.txt, "
                 "one name per line)")
    clock = Clock()
    known = {line.strip() for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()}
    steps = args.steps if args.steps is not None else (6000 if args.full else 1500)
    # 1,536 lines of names are about 15,000 characters: each step reads 512 of them, so the default is
    # about 50 passes over the names, with dropout against memorising them.
    task_settings = dict(corpus=str(args.data), tokenizer="char", embed=32, hidden=256 if args.full else 128,
                         seq_len=32, batch=16, val_fraction=0.05, eval_batches=0, sample_length=0,
                         dropout=0.3 if args.full else 0.2)
    trainer = dict(steps=steps, lr=3e-3, eval_every=max(steps // 4, 1), checkpoint_every=steps, seed=args.seed)
    task, summary = train("lm", args.out / "run", task_settings, trainer)
    # Training carries the state along a stream of names, so a zero state is rarely seen there:
    # each sample writes one name to warm its state up, and the name after it is the one kept.
    texts = task.model.generate("", 100, temperature=args.temperature, seed=args.seed, num_samples=args.samples)
    names = [lines[2].strip() for lines in (text.split("\n") for text in texts) if len(lines) > 3]
    names = [name for name in names if name]
    new = [name for name in names if name not in known]
    names_png = save_names(names, known, args.out / "names.png")
    print_summary({
        "task": "character language model of dinosaur names", "data": str(args.data), "names_in_file": len(known),
        "steps": steps, "val_bits_per_token": summary.get("val_bits_per_token"), "temperature": args.temperature,
        "sampled": len(names), "new": len(new), "distinct": len(set(names)), "names": names,
        "pictures": pictures(names_png, args.out / "run" / "loss.png"), **clock.report()},
        args.out / "summary.json")


if __name__ == "__main__":
    run_script(main)
