"""What the example scripts share: importing seqnet from this checkout, training a task in a run
directory through the library's own trainer, and reporting (a JSON summary, wall time, load)."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqnet.backend.threads import set_num_threads  # noqa: E402
from seqnet.tasks import TASKS  # noqa: E402
from seqnet.training.config import TrainerConfig  # noqa: E402
from seqnet.errors import SeqnetError  # noqa: E402
from seqnet.training.distributed import launched_by  # noqa: E402
from seqnet.training.run_dir import remove_run  # noqa: E402
from seqnet.training.runs import new_run  # noqa: E402


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def train(kind: str, run_dir: Path, task_settings: dict, trainer_settings: dict, *, progress: bool = True):
    """Train task ``kind`` in a fresh ``run_dir`` (an earlier run there is replaced, unless a
    process is writing it; other files there are never removed); returns (task, summary)."""
    set_num_threads(1)
    remove_run(run_dir)
    config = TASKS[kind].Config(**task_settings).validate()
    trainer = new_run(kind, config, TrainerConfig(**trainer_settings).validate(), run_dir, progress=progress,
                      distributed="off", log=lambda text: print(text, file=sys.stderr, flush=True))
    return trainer.task, trainer.run()


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, received {text!r}")
        return value
    return parse


positive_int = _int_at_least(1)         # argparse types: --steps 0 is refused, not read as "the default"
nonnegative_int = _int_at_least(0)      # seeds


def comma_list(item=str, choices=None):
    """An argparse type: a comma-separated list of ``item`` (an argparse type), each among ``choices``."""
    def parse(text: str) -> list:
        values = [item(part.strip()) for part in text.split(",")] if text.strip() else []
        if not values or (choices is not None and any(v not in choices for v in values)):
            allowed = f" of {', '.join(map(str, choices))}" if choices is not None else ""
            raise argparse.ArgumentTypeError(f"expected a comma-separated list{allowed}, received {text!r}")
        return values
    return parse


def run_script(main) -> None:
    """Run a script's ``main``: one process (these scripts do not train data-parallel), and a
    seqnet error is one line ``NAME: error: ...`` with exit code 2, not a traceback."""
    name = Path(sys.argv[0]).name
    launched = launched_by()
    if launched is not None and launched[0] > 1:
        if launched[1] == 0:
            print(f"{name}: error: runs as one process, and the MPI launcher started {launched[0]}: run it without "
                  "mpiexec (seqnet train is the data-parallel command)", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except SeqnetError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(2)


@functools.cache
def pyplot():
    """matplotlib's pyplot drawing to files (the Agg backend), or None when matplotlib (the ``plot``
    extra) is not installed: the scripts then say so once on stderr and write no pictures."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install 'seqnet[plot]'): no pictures are written", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``path`` and close it; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def pictures(*paths) -> list[str]:
    """The paths of the pictures that were written (a drawing function returns None when it drew nothing)."""
    return [str(path) for path in paths if path is not None and Path(path).is_file()]


class Clock:
    """Wall time and the load average over the run (the machines are shared: times are indicative)."""

    def __init__(self):
        self.start, self.load = time.perf_counter(), os.getloadavg()[0]

    def report(self) -> dict:
        return {"wall_seconds": round(time.perf_counter() - self.start, 1),
                "load_average_1min_start_end": [round(self.load, 2), round(os.getloadavg()[0], 2)],
                "cpu_cores": os.cpu_count()}


def print_summary(summary: dict, path: Path) -> None:
    text = json.dumps(summary, indent=2)
    path.write_text(text + "\n", encoding="utf-8")
    print(text)
