"""Date normalisation with seqnet's encoder-decoder: "3rd of May 1979" -> "1979-05-03".

Pairs are built from the standard library's ``datetime``: every date between 1950-01-01 and
2049-12-31 written in one of many human formats (below), the target its ISO form. The dates
are split first, so the 5,000 test dates (and the validation dates) never appear in training
in any format. The script trains with attention and, at the same settings, without it,
then reports exact match on the held-out test dates with greedy and beam search, the wall
time of each run, and saves a heat map of attention weights for a few held-out dates.

    python scripts/dates.py               # the default run (a few minutes on 2 CPU cores)
    python scripts/dates.py --full        # more data and steps, a larger model
    python scripts/dates.py --steps 500 --skip-no-attention --out runs/dates-quick

Prints one JSON object with the figures; writes the data, both run directories and
``attention.png`` under ``--out``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _examples import nonnegative_int, positive_int, run_script  # noqa: E402

FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)        # two-digit years: 50-99 -> 19xx, 00-49 -> 20xx
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Slashes are month/day (US) unless the year comes first; dots and dashes are day.month.
FORMATS = [
    lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",                  # 3rd of May 1979
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",                              # May 3, 1979
    lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",     # Thursday, May 3, 1979
    lambda d: f"{d.year} {MONTHS[d.month - 1]} {d.day}",                               # 1979 May 3
    lambda d: f"{d.day}.{d.month}.{d.year}",                                           # 3.5.1979
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",                         # 05/03/79
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",                         # 03.05.79
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",                           # 3 May 1979
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",                           # May 3 1979
    lambda d: f"{WEEKDAYS[d.weekday()]} {d.day} {MONTHS[d.month - 1]} {d.year}",       # Thursday 3 May 1979
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",                                   # 1979/05/03
    lambda d: f"{d.day} {MONTHS[d.month - 1].lower()} {d.year}",                       # 3 may 1979
    lambda d: f"{MONTHS[d.month - 1].upper()} {d.day}, {d.year}",                      # MAY 3, 1979
    lambda d: f"{d.strftime('%a')} {MONTHS[d.month - 1][:3]} {d.day} {d.year}",        # Thu May 3 1979
    lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",                     # May 3rd, 1979
    lambda d: f"{ordinal(d.day)} {MONTHS[d.month - 1]} {d.year}",                      # 3rd May 1979
    lambda d: f"{d.year}{d.month:02d}{d.day:02d}",                                     # 19790503
    lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",                                   # 03-05-1979
    lambda d: f"{d.month}/{d.day}/{d.year}",                                           # 5/3/1979
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]}. {d.year % 100:02d}",                # 3 May. 79
]


def all_dates() -> list[dt.date]:
    return [FIRST + dt.timedelta(days=k) for k in range((LAST - FIRST).days + 1)]


def build_data(out: Path, train_pairs: int, test_dates: int, valid_dates: int, seed: int) -> dict:
    """Write train.tsv, valid.tsv, test.tsv; test and validation dates never occur in training."""
    rng = random.Random(seed)
    dates = all_dates()
    rng.shuffle(dates)
    test, valid, train = dates[:test_dates], dates[test_dates:test_dates + valid_dates], dates[test_dates + valid_dates:]
    files = {}
    for name, chosen in (("test", test), ("valid", valid), ("train", [rng.choice(train) for _ in range(train_pairs)])):
        path = out / f"{name}.tsv"
        with open(path, "w", encoding="utf-8") as f:
            for d in chosen:
                f.write(f"{rng.choice(FORMATS)(d)}\t{d.isoformat()}\n")
        files[name] = path
    assert not {d for d in test} & set(train) and not set(valid) & set(train)
    return files


def train(out: Path, data: dict, attention: str, args) -> tuple[object, float]:
    from seqnet.tasks import TranslateConfig
    from seqnet.training.config import TrainerConfig
    from seqnet.training.run_dir import remove_run
    from seqnet.training.runs import new_run

    run_dir = out / f"run-{attention}"
    remove_run(run_dir)
    config = TranslateConfig(data=str(data["train"]), valid=str(data["valid"]), tokenizer="char", embed=args.embed,
                             hidden=args.hidden, attention=attention, batch=args.batch, eval_size=500,
                             sample_every=args.steps, max_source_len=64, max_target_len=16)
    trainer_config = TrainerConfig(steps=args.steps, lr=args.lr, warmup=min(50, args.steps // 2), eval_every=args.steps,
                                   checkpoint_every=args.steps, log_every=50, seed=args.seed)
    trainer = new_run("translate", config, trainer_config, run_dir, progress=args.progress,
                      log=lambda text: print(text, file=sys.stderr, flush=True))
    started = time.perf_counter()
    trainer.run()
    return trainer.task, time.perf_counter() - started


def test_scores(task, path: Path, beam: int) -> dict:
    from seqnet.data.parallel import read_pairs

    pairs = read_pairs(path)
    started = time.perf_counter()
    results = task.model.translate([s for s, _ in pairs], beam=beam, batch_size=256, keep_attention=False)
    seconds = time.perf_counter() - started
    outputs = [r.outputs[0] for r in results]
    correct = sum(o == t for o, (_, t) in zip(outputs, pairs))
    wrong = [(s, o, t) for o, (s, t) in zip(outputs, pairs) if o != t]
    return {"exact_match": correct / len(pairs), "errors": len(wrong), "seconds": round(seconds, 1),
            "examples_wrong": wrong[:5]}


def heat_map(task, path: Path, out: Path, count: int = 4) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install 'seqnet[plot]'): no heat map", file=sys.stderr)
        return None
    from seqnet.data.parallel import read_pairs

    pairs = read_pairs(path)[:count]
    results = task.model.translate([s for s, _ in pairs], keep_attention=True)
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2))
    for ax, (source, _), result in zip(np.atleast_1d(axes), pairs, results):
        weights = result.attention[0]                               # (output steps incl. <EOS>, source length)
        ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(source)))
        ax.set_xticklabels(list(source), fontsize=8)
        ax.set_yticks(range(weights.shape[0]))
        ax.set_yticklabels(list(result.outputs[0]) + ["<EOS>"][:weights.shape[0] - len(result.outputs[0])], fontsize=8)
        ax.set_title(source, fontsize=9)
    fig.suptitle("attention weights on held-out dates (rows: output characters, columns: source characters)")
    fig.tight_layout()
    png = out / "attention.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="more data and steps, a larger model (about 4x the time)")
    p.add_argument("--out", default=str(SRC.parent / "runs" / "dates"))
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--batch", type=positive_int, default=None)
    p.add_argument("--hidden", type=positive_int, default=None)
    p.add_argument("--embed", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--train-pairs", type=positive_int, default=None)
    p.add_argument("--beam", type=positive_int, default=5)
    p.add_argument("--test-dates", type=positive_int, default=5000, help="held-out test dates (default: 5000)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--skip-no-attention", action="store_true", help="train only the attention model")
    p.add_argument("--progress", action="store_true", help="show the progress bars")
    args = p.parse_args(argv)
    preset = dict(steps=4000, batch=128, hidden=256, lr=2e-3, train_pairs=100_000) if args.full else \
        dict(steps=1200, batch=128, hidden=128, lr=4e-3, train_pairs=50_000)
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    from seqnet.backend.threads import set_num_threads

    set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build_data(out, args.train_pairs, args.test_dates, 500, args.seed)
    report = {"settings": {k: getattr(args, k) for k in ("steps", "batch", "hidden", "embed", "lr", "train_pairs",
                                                         "beam", "seed")},
              "cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg()), "test_dates": args.test_dates}
    for attention in ("general",) + (() if args.skip_no_attention else ("none",)):
        task, seconds = train(out, data, attention, args)
        entry = {"train_seconds": round(seconds, 1), "greedy": test_scores(task, data["test"], 1),
                 f"beam{args.beam}": test_scores(task, data["test"], args.beam)}
        if attention != "none":
            png = heat_map(task, data["test"], out)
            entry["heat_map"] = None if png is None else str(png)
        report[f"attention={attention}"] = entry
        print(json.dumps({attention: entry}), file=sys.stderr, flush=True)
    report["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_script(main)
