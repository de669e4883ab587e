"""Python token types, character by character: a BiLSTM tagger with and without a CRF.

    python scripts/tag_tokens.py            # a few minutes on 2 cores
    python scripts/tag_tokens.py --full     # more data, longer training

Lines of the running Python's standard-library sources are tagged per character with the
token type that the standard library's ``tokenize`` gives the token covering it (NAME,
KEYWORD, OP, NUMBER, STRING, COMMENT; whitespace between tokens is O), as BIO tags: B- on
a token's first character (and at the start of each line of a multi-line string), I- on the
rest. Each source line is a sentence; files are split between training and test, so test
lines come from files the model never saw. The data are CoNLL files (one character and its
tag per line, tab-separated), trained with the tag task (character tokens, bidirectional
LSTM) once with a softmax output and once with a linear-chain CRF, and scored on the test
file with conlleval's entity-level F1 (a token counts only if its type and both boundaries
are right), per-type F1 and token accuracy. Baselines: the majority tag, and a rule that
tags characters by their class (letters and _ NAME, digits NUMBER, other symbols OP, space O).
Writes tag_f1.png (per-type F1), tag_snippet.png (16 test lines holding the most token types,
coloured by gold and by predicted types) and summary.json in --out. The encodings package
(generated codec tables) is left out of the data.
"""
from __future__ import annotations

import argparse
import io
import keyword
import tokenize
from pathlib import Path

import numpy as np

from _examples import (Clock, ROOT, nonnegative_int, pictures, positive_int, print_summary,
                       pyplot, run_script, save_figure, train)

from seqnet.data import python_stdlib_files  # noqa: E402
from seqnet.metrics import entity_scores, token_accuracy  # noqa: E402

TYPES = ("NAME", "KEYWORD", "OP", "NUMBER", "STRING", "COMMENT")
COLOURS = {"NAME": "#1f3b73", "KEYWORD": "#b8401a", "OP": "#555555", "NUMBER": "#2c8c3c", "STRING": "#a0308a",
           "COMMENT": "#8a8a2a", "O": "#ffffff"}
MAX_LINE = 100


def token_kind(tok: tokenize.TokenInfo) -> str | None:
    name = tokenize.tok_name[tok.type]
    if name == "NAME":
        return "KEYWORD" if keyword.iskeyword(tok.string) else "NAME"
    if name.startswith("FSTRING"):
        return "STRING"
    return name if name in TYPES else None


def tagged_lines(source: str) -> list[tuple[str, list[str]]]:
    """(line, BIO tag per character) of every line of ``source``; [] if it does not tokenize."""
    lines = source.split("\n")
    tags = [["O"] * len(line) for line in lines]
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return []
    for tok in tokens:
        kind = token_kind(tok)
        if kind is None:
            continue
        (first_row, first_col), (last_row, last_col) = tok.start, tok.end
        for row in range(first_row, last_row + 1):
            line = tags[row - 1]
            begin = first_col if row == first_row else 0
            end = last_col if row == last_row else len(line)
            for col in range(begin, end):
                line[col] = ("B-" if col == begin else "I-") + kind
    return list(zip(lines, tags))


def usable(line: str) -> bool:
    return bool(line.strip()) and "\t" not in line and len(line) <= MAX_LINE and line.isprintable()


def write_conll(path: Path, sentences) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for line, tags in sentences:
            f.write("".join(f"{c}\t{t}\n" for c, t in zip(line, tags)) + "\n")


def build_data(out: Path, seed: int, train_lines: int, test_lines: int) -> dict:
    rng = np.random.default_rng(seed)
    files = [f for f in python_stdlib_files() if "encodings" not in f.parts]     # generated codec tables
    order = rng.permutation(len(files))
    split = {"train": [], "test": []}
    used = {"train": 0, "test": 0}
    for index in order:
        part = "test" if len(split["test"]) < test_lines and used["test"] * 4 < used["train"] + 4 else "train"
        if len(split[part]) >= (train_lines if part == "train" else test_lines):
            part = "train" if part == "test" else "test"
            if len(split[part]) >= (train_lines if part == "train" else test_lines):
                break
        lines = [pair for pair in tagged_lines(files[index].read_text(encoding="utf-8")) if usable(pair[0])]
        if not lines:
            continue
        keep = rng.choice(len(lines), min(len(lines), 60), replace=False)      # spread lines over many files
        split[part].extend(lines[k] for k in sorted(keep))
        used[part] += 1
    budget = {"train": train_lines, "test": test_lines}
    out.mkdir(parents=True, exist_ok=True)
    for part in split:
        split[part] = split[part][:budget[part]]
        write_conll(out / f"{part}.conll", split[part])
    return {"train_lines": len(split["train"]), "test_lines": len(split["test"]), "train_files": used["train"],
            "test_files": used["test"]}, split


def char_class_tags(line: str) -> list[str]:
    """The rule baseline: runs of one character class form one token."""
    def cls(c):
        return "O" if c == " " else "NAME" if c.isalpha() or c == "_" else "NUMBER" if c.isdigit() else "OP"
    out, prev = [], None
    for c in line:
        kind = cls(c)
        out.append("O" if kind == "O" else ("I-" if kind == prev and kind != "OP" else "B-") + kind)
        prev = kind
    return out


def save_f1_chart(results: dict, path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.27
    for k, (label, per_type) in enumerate(results.items()):
        ax.bar(np.arange(len(TYPES)) + (k - 1) * width, [per_type.get(t, 0.0) for t in TYPES], width, label=label)
    ax.set_xticks(range(len(TYPES)), TYPES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("entity F1 (conlleval), test files")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, path)


def save_snippet(lines: list[str], gold: list[list[str]], pred: list[list[str]], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None

    width = max(len(line) for line in lines)
    fig, axes = plt.subplots(2, 1, figsize=(0.085 * width + 1, 0.19 * len(lines) * 2 + 1.2))
    for ax, tags, title in zip(axes, (gold, pred), ("tokenize (gold)", "BiLSTM-CRF (predicted)")):
        for row, (line, line_tags) in enumerate(zip(lines, tags)):
            for col, (c, tag) in enumerate(zip(line, line_tags)):
                kind = tag.split("-", 1)[-1] if tag != "O" else "O"
                ax.text(col, -row, c, family="monospace", fontsize=7.5, color=COLOURS.get(kind, "k"),
                        ha="left", va="center")
        ax.set_xlim(-1, width + 1)
        ax.set_ylim(-len(lines), 1)
        ax.axis("off")
        ax.set_title(title, fontsize=9, loc="left")
    handles = [plt.Line2D([], [], color=COLOURS[t], marker="s", ls="", label=t) for t in TYPES]
    fig.legend(handles=handles, loc="lower center", ncol=len(TYPES), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more data and steps, a larger model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "tag_tokens")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--steps", type=positive_int, default=None, help="override the number of optimizer steps")
    args = parser.parse_args()
    clock = Clock()
    data, split = build_data(args.out, args.seed, 20000 if args.full else 6000, 3000 if args.full else 1500)
    steps = args.steps if args.steps is not None else (5000 if args.full else 1500)
    results, summaries = {}, {}
    for crf in (False, True):
        name = "crf" if crf else "softmax"
        task_settings = dict(data=str(args.out / "train.conll"), embed=16, hidden=96 if args.full else 48,
                             batch=32, crf=crf, val_fraction=0.05, dropout=0.1)
        trainer = dict(steps=steps, lr=1e-2, eval_every=max(steps // 3, 1), checkpoint_every=steps, seed=args.seed)
        task, _ = train("tag", args.out / f"run_{name}", task_settings, trainer)
        report = task.evaluate_file(args.out / "test.conll")
        summaries[name] = {"entity_f1": report["entities"]["f1"], "entity_precision": report["entities"]["precision"],
                           "entity_recall": report["entities"]["recall"], "token_accuracy": report["token_accuracy"],
                           "per_type_f1": {k: round(v["f1"], 4) for k, v in report["entities"]["per_type"].items()}}
        results[f"BiLSTM{' + CRF' if crf else ' (softmax)'}"] = summaries[name]["per_type_f1"]
        if crf:
            tagger = task
    gold = [tags for _, tags in split["test"]]
    rule = [char_class_tags(line) for line, _ in split["test"]]
    rule_scores = entity_scores(gold, rule)
    counts = tagger.setup()["tag_counts"]
    majority = tagger.tags.names[int(np.argmax(counts))]
    majority_pred = [[majority] * len(g) for g in gold]
    results["character-class rule"] = {k: v["f1"] for k, v in rule_scores["per_type"].items()}
    f1_png = save_f1_chart(results, args.out / "tag_f1.png")
    snippet = split["test"][_varied_window(split["test"], 16):][:16]
    encoded = [tagger.encode(_sentence(line, tags)) for line, tags in snippet]
    snippet_png = save_snippet([line for line, _ in snippet], [tags for _, tags in snippet], tagger.predict_tags(encoded),
                 args.out / "tag_snippet.png")
    print_summary({
        "task": "Python token type of each character (tokenize labels, BIO), held-out files",
        "data": data, "steps": steps, **summaries,
        "baselines": {"majority_tag": {"tag": majority, "token_accuracy": token_accuracy(gold, majority_pred),
                                       "entity_f1": entity_scores(gold, majority_pred)["f1"]},
                      "character_class_rule": {"token_accuracy": token_accuracy(gold, rule),
                                               "entity_f1": rule_scores["f1"],
                                               "per_type_f1": {k: round(v["f1"], 4)
                                                               for k, v in rule_scores["per_type"].items()}}},
        "pictures": pictures(f1_png, snippet_png), **clock.report()},
        args.out / "summary.json")


def _varied_window(sentences, size: int) -> int:
    """Start of the ``size`` consecutive test lines that hold the most token types (the first such)."""
    def types(k):
        return {t.split("-", 1)[1] for _, tags in sentences[k:k + size] for t in tags if t != "O"}
    return max(range(max(1, len(sentences) - size)), key=lambda k: (len(types(k)), -k))


def _sentence(line, tags):
    from seqnet.data.labeled import TaggedSentence

    return TaggedSentence(tuple(line), tuple(tags), "test", tuple(range(1, len(line) + 1)))


if __name__ == "__main__":
    run_script(main)
