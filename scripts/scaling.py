"""Data-parallel scaling on this machine: tokens/s with N = 1 and 2 processes, the communication
share of a step, and that share projected to 8, 64 and 512 ranks from a measured allreduce cost.

    python scripts/scaling.py                       # bench.py's M and L language models (a few minutes)
    python scripts/scaling.py --configs M --steps 3 # a quick look

Each N runs under mpiexec (-n 1, then -n 2), one BLAS thread per process, as ``seqnet train``
does: the global batch (bench.py's 64 streams of 100 tokens, float32, LSTM, vocabulary 96)
cut into the ranks' shares of streams, forward and backward of each share, one allreduce of
the flat gradient buffer (:class:`seqnet.training.distributed.GradientReducer`), global-norm
clipping and Adam. Rank 0 reports the step time and the time spent in the allreduce, which
includes waiting for the slower rank.

Cost model: the fastest of repeated allreduces of float32 buffers of 2^4 to 2^22 elements
between the 2 processes, fitted to t(n) = 2a + n b (a ring allreduce of 2 ranks: 2 messages,
n values sent per rank) through the smallest buffer (latency a) and the largest (time per
byte b: the fastest is the least disturbed by the other work of a shared 2-core machine); for P ranks the ring takes t_P(n) = 2 (P - 1) a + 2 (P - 1) / P n b. With b
streams per rank (weak scaling), the projected communication share of a step is
t_P(n) / (compute(b) + t_P(n)), compute(b) measured with one process (per stream; no overlap
of communication and computation). The measured a and b are those of shared memory on one
host; the second projection takes an assumed cluster network (a = 5 us, 12.5 GB/s, about
100 Gb/s InfiniBand), labelled as such. Every figure comes from this run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _examples import comma_list, positive_int  # noqa: E402
from bench import CONFIGS, VOCAB  # noqa: E402

BATCH, SEQ_LEN = 64, 100          # bench.py's M and L: 64 streams x 100 steps
PROJECTED = (8, 64, 512)
PER_RANK = BATCH // 2             # streams per rank in the projection: as with 2 ranks here
NETWORK = {"latency_s": 5e-6, "seconds_per_byte": 1 / 12.5e9}      # assumed, see the docstring
TARGET_SHARE = 0.10


# -- inside mpiexec -------------------------------------------------------------------------------
def worker(config: str, steps: int, out: Path) -> None:
    from seqnet.models import LanguageModel
    from seqnet.tasks.base import share_bounds
    from seqnet.training import Adam, clip_grad_norm
    from seqnet.training.distributed import mpi_world

    world = mpi_world("scaling")
    cfg = CONFIGS[config]
    model = LanguageModel(VOCAB, cfg["embed"], cfg["hidden"], cfg["layers"], "lstm", seed=0)
    reducer = world.gradient_reducer(model)
    optimizer = Adam(model.params, lr=1e-3)
    start, stop = share_bounds(BATCH, world.rank, world.size)
    ids = np.random.default_rng(0).integers(0, VOCAB, (SEQ_LEN + 1, BATCH))[:, start:stop]
    inputs, targets = model.device_ids(ids[:-1]), model.device_ids(ids[1:])
    xp = model.backend.xp
    times = []
    for step in range(steps + 1):                        # the first step warms up and is not counted
        world.comm.Barrier()
        t0 = time.perf_counter()
        model.zero_grad()
        loss, _ = model.loss_and_grads(inputs, targets, grad_scale=(stop - start) / BATCH)
        t1 = time.perf_counter()
        loss = reducer(model.param_grads, loss * ((stop - start) / BATCH))
        t2 = time.perf_counter()
        clip_grad_norm(model.param_grads, 1.0, xp=xp)
        optimizer.step(model.params, model.param_grads)
        float(loss)
        t3 = time.perf_counter()
        if step:
            times.append({"compute": t1 - t0, "allreduce": t2 - t1, "update": t3 - t2, "step": t3 - t0})
    result = {"config": config, "processes": world.size, "elements": reducer.elements, "path": reducer.path,
              "library": world.library, "ranks": world.allgather_json(times)}
    if world.size == 2:
        result["allreduce"] = allreduce_times(world)
    if world.is_root:
        out.write_text(json.dumps(result))


def allreduce_times(world, repeats: int = 15) -> list[tuple[int, float]]:
    """(elements, fastest seconds) of in-place float32 allreduces of 2^4 .. 2^22 elements."""
    MPI, found = world.MPI, []
    for power in range(4, 23, 2):
        buffer = np.ones(2 ** power, dtype=np.float32)
        seconds = []
        for _ in range(repeats if power < 20 else 5):
            world.comm.Barrier()
            t0 = time.perf_counter()
            world.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            seconds.append(time.perf_counter() - t0)
        found.append((2 ** power, float(np.min(seconds))))
    return found


# -- the driver -------------------------------------------------------------------------------------
def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def launch(n: int, config: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", HYDRA_LAUNCHER="fork",
                   OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        subprocess.run([mpiexec(), "-n", str(n), sys.executable, __file__, "--worker", config, str(steps), str(out)],
                       check=True, env=env)
        return json.loads(out.read_text())


def median(runs: list, key: str) -> float:
    """The median over steps of the slowest rank's ``key`` (a step ends when every rank has ended it)."""
    return float(np.median([max(rank[k][key] for rank in runs) for k in range(len(runs[0]))]))


def fit(points: list) -> tuple[float, float]:
    """(latency a, seconds per byte b) of t(n) = 2a + 4n b through the smallest and the largest
    buffer of (elements, seconds)."""
    (n0, t0), (n1, t1) = points[0], points[-1]
    per_byte = max((t1 - t0) / (4 * (n1 - n0)), 1e-15)
    return max((t0 - 4 * n0 * per_byte) / 2, 1e-9), per_byte


def ring(ranks: int, nbytes: float, latency: float, per_byte: float) -> float:
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * nbytes * per_byte


def report(config: str, one: dict, two: dict) -> None:
    tokens = BATCH * SEQ_LEN
    step1, step2 = median(one["ranks"], "step"), median(two["ranks"], "step")
    comm2 = float(np.median([np.mean([rank[k]["allreduce"] for rank in two["ranks"]])
                             for k in range(len(two["ranks"][0]))]))
    latency, per_byte = fit(two["allreduce"])
    nbytes = 4 * two["elements"]
    pure2 = ring(2, nbytes, latency, per_byte)
    per_stream = median(one["ranks"], "compute") / BATCH            # seconds of forward+backward per stream
    print(f"\n{config}: {two['elements']:,} float32 gradients ({nbytes / 2 ** 20:.1f} MiB), global batch {BATCH} x "
          f"{SEQ_LEN} tokens, {two['library']}, path {two['path']}")
    print(f"  N=1: {tokens / step1:10,.0f} tokens/s  (step {step1 * 1e3:7.1f} ms)")
    print(f"  N=2: {tokens / step2:10,.0f} tokens/s  (step {step2 * 1e3:7.1f} ms, {step1 / step2:.2f}x); "
          f"in the allreduce {comm2 * 1e3:.1f} ms = {comm2 / step2:.1%} of a step (waiting for the slower rank "
          f"included); the cost model's allreduce alone: {pure2 * 1e3:.2f} ms = {pure2 / step2:.1%}")
    print(f"  measured allreduce: a = {latency * 1e6:.2f} us, {1 / per_byte / 1e9:.2f} GB/s (shared memory, 2 ranks)")
    for label, (a, b) in (("measured shared memory", (latency, per_byte)),
                          ("assumed network, 5 us, 12.5 GB/s", (NETWORK["latency_s"], NETWORK["seconds_per_byte"]))):
        shares = []
        for ranks in PROJECTED:
            comm = ring(ranks, nbytes, a, b)
            share = comm / (per_stream * PER_RANK + comm)
            needed = math.ceil(comm * (1 - TARGET_SHARE) / TARGET_SHARE / per_stream)
            shares.append(f"P={ranks}: allreduce {comm * 1e3:6.2f} ms, share {share:5.1%} at {PER_RANK} streams/rank, "
                          f"under 10% from {needed} stream{'s' if needed > 1 else ''} per rank ({needed * SEQ_LEN:,} tokens)")
        print(f"  projected ({label}):\n    " + "\n    ".join(shares))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=comma_list(choices=tuple(CONFIGS)), default=["M", "L"],
                        help="bench.py's configurations (default: M,L)")
    parser.add_argument("--steps", type=positive_int, default=5, help="timed steps per run (default: 5)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores, 1 BLAS thread per "
          f"process; medians over {args.steps} steps")
    for config in args.configs:
        report(config, launch(1, config, args.steps), launch(2, config, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
