"""What the example scripts share: importing seqnet from this checkout, training a task in a run
directory through the library's own trainer, and reporting (a JSON summary, wall time, load)."""
from __future__ import annotations

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
from seqnet.training.runs import new_run  # noqa: E402


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def train(kind: str, run_dir: Path, task_settings: dict, trainer_settings: dict, *, progress: bool = True):
    """Train task ``kind`` in a fresh ``run_dir`` (an old one is replaced); returns (task, summary)."""
    import shutil

    set_num_threads(1)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = TASKS[kind].Config(**task_settings).validate()
    trainer = new_run(kind, config, TrainerConfig(**trainer_settings).validate(), run_dir, progress=progress,
                      log=lambda text: print(text, file=sys.stderr, flush=True))
    return trainer.task, trainer.run()


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
