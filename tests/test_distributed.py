"""Data-parallel training over MPI.

Without MPI: launcher detection, the choice of the gradient path (with fakes for CuPy, NCCL and
CUDA-aware MPI, which cannot run here), the flat-buffer reducer on every backend (with a fake
communicator), and that seqnet never imports mpi4py unless a job starts.

With MPI (mpi4py and its mpiexec installed; SEQNET_REQUIRE_MPI=1 makes their absence a
failure, as in CI): jobs really launched with mpiexec. The oracle is one process with the
same total batch, float64, to 1e-10: N = 2 and 3 for a language model and a classifier, a
classifier whose shares are sometimes empty, and a run started on 2 processes and resumed on
3 against one uninterrupted process; broken trainers (no allreduce, each rank's own loss
terms as the scale) must miss the oracle. A rank that raises or is killed ends the job within
seconds, with a message naming it; a signal stops every rank after the same step.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import mpi_job
from clitools import SRC, TINY, assert_usage_error, write_corpus
from seqnet.errors import ConfigError
from seqnet.training import distributed
from seqnet.training.distributed import choose_path, launched_by, mpi_is_cuda_aware, wire_dtype

TESTS = str(Path(__file__).resolve().parent)
LIMIT = 60                      # seconds any one job may take (MPIEXEC_TIMEOUT and the subprocess timeout)


# -- without MPI --------------------------------------------------------------------------------------
@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}, (4, 3, "OMPI_COMM_WORLD_SIZE")),
    ({"PMI_SIZE": "2", "PMI_RANK": "1"}, (2, 1, "PMI_SIZE")),
    ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5"}, (8, 5, "SLURM_STEP_NUM_TASKS")),
    ({"SLURM_NTASKS": "8"}, None),                        # an allocation, but not started by srun
])
def test_the_launcher_is_read_from_the_environment(environ, expected):
    assert launched_by(environ) == expected


@pytest.mark.parametrize("backend, nccl, cuda_aware, expected", [
    ("numpy", True, True, "host"),
    ("cupy", True, True, "nccl"),
    ("cupy", False, True, "cuda-aware-mpi"),
    ("cupy", False, False, "host-staged"),
    ("torch", True, True, "host-staged"),
    ("array_api_strict", False, False, "host-staged"),
])
def test_the_gradient_path_follows_where_the_arrays_live(backend, nccl, cuda_aware, expected):
    assert choose_path(backend, nccl=nccl, cuda_aware=cuda_aware) == expected


def test_a_requested_path_is_taken_or_refused():
    assert choose_path("cupy", nccl=True, cuda_aware=True, requested="host-staged") == "host-staged"
    with pytest.raises(ConfigError, match=r"SEQNET_ALLREDUCE=nccl: cannot be used with --backend cupy here \(CuPy's "
                                          r"NCCL .* not available\); possible: cuda-aware-mpi, host-staged"):
        choose_path("cupy", nccl=False, cuda_aware=True, requested="nccl")
    with pytest.raises(ConfigError, match=r"SEQNET_ALLREDUCE: expected one of host, host-staged, cuda-aware-mpi, "
                                          r"nccl, received 'gloo'"):
        choose_path("numpy", nccl=False, cuda_aware=False, requested="gloo")


def test_floats_travel_as_float64_or_float32():
    assert [wire_dtype(d) for d in ("float64", "float32", "float16", "bfloat16")] == \
        ["float64", "float32", "float32", "float32"]


def test_cuda_awareness_can_be_forced():
    assert mpi_is_cuda_aware({"SEQNET_MPI_CUDA_AWARE": "1"}) is True
    assert mpi_is_cuda_aware({"SEQNET_MPI_CUDA_AWARE": "0"}) is False
    assert mpi_is_cuda_aware({}) is False                 # no MPI library loaded in this process


class FakeComm:
    """Stands for ``size`` ranks that hold the same arrays: an allreduce multiplies by ``size``."""

    def __init__(self, size):
        self.size, self.calls = size, []

    def Allreduce(self, where, buffer, op):
        assert where == "IN_PLACE" and op == "SUM" and isinstance(buffer, np.ndarray) and buffer.flags.c_contiguous
        self.calls.append(buffer.size)
        buffer *= self.size


@pytest.mark.parametrize("bucket_bytes", [1 << 30, 400])
def test_one_flat_buffer_per_bucket_sums_gradients_and_loss(xb64, bucket_bytes):
    """The reducer flattens every gradient and the loss into contiguous buffers (one, or a few
    for big models), reduces them with one call each and puts the sums back, on every backend."""
    from seqnet import to_numpy
    from seqnet.models import LanguageModel

    model = LanguageModel(11, 4, 5, 2, "lstm", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    grads = model.param_grads
    for name in grads:
        grads[name] = xb64.asarray(rng.standard_normal(tuple(grads[name].shape)), "float64")
    before = {name: to_numpy(grads[name]) for name in grads}
    comm = FakeComm(3)
    world = SimpleNamespace(comm=comm, MPI=SimpleNamespace(IN_PLACE="IN_PLACE", SUM="SUM"), is_root=True)
    reducer = distributed.GradientReducer(world, model, "host" if xb64.name == "numpy" else "host-staged",
                                          bucket_bytes=bucket_bytes)
    loss = reducer(grads, xb64.asarray(np.asarray(0.25), "float64"))
    assert len(comm.calls) == len(reducer.buckets) and (len(comm.calls) == 1) == (bucket_bytes == 1 << 30)
    assert sum(comm.calls) == sum(v.size for v in before.values()) + 1          # every number once, the loss too
    sizes = [v.size for v in before.values()] + [1]
    for (first, last), elements in zip(reducer.buckets, comm.calls):         # in order; small, or one big array
        assert elements == sum(sizes[first:last]) and (elements * 8 <= bucket_bytes or last - first == 1)
    assert [b[0] for b in reducer.buckets[1:]] == [b[1] for b in reducer.buckets[:-1]]
    assert float(to_numpy(loss)) == 0.75
    for name in before:
        assert xb64.owns(grads[name]) and tuple(grads[name].shape) == before[name].shape
        np.testing.assert_array_equal(to_numpy(grads[name]), 3 * before[name])


def test_seqnet_does_not_import_mpi4py_unless_a_job_starts(tmp_path):
    code = ("import sys, seqnet, seqnet.training, seqnet.cli.main as m; m.build_parser().parse_args(['train']);"
            "from seqnet.training import distributed; assert distributed.make_world().size == 1;"
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT,
                         env=_clean_env({"PYTHONPATH": SRC}))
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_a_launched_process_without_mpi4py_is_told_what_to_install(tmp_path):
    code = "import sys; sys.modules['mpi4py'] = None; from seqnet.cli.main import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "train", "--out", str(tmp_path / "run")], capture_output=True,
                         text=True, timeout=LIMIT, env=_clean_env({"PYTHONPATH": SRC, "PMI_SIZE": "2", "PMI_RANK": "0"}))
    assert_usage_error(out, "started by an MPI launcher as one of 2 processes (PMI_SIZE)",
                       "mpi4py is not installed: pip install 'seqnet[mpi]'")
    assert not (tmp_path / "run").exists()


# -- with MPI -------------------------------------------------------------------------------------------
def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return found


MPIEXEC = _mpiexec()
if MPIEXEC is None and os.environ.get("SEQNET_REQUIRE_MPI") == "1":
    raise RuntimeError("SEQNET_REQUIRE_MPI=1 but mpi4py or mpiexec is missing: pip install -e '.[mpi]'")
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="needs mpi4py and mpiexec: pip install 'seqnet[mpi]'")


def _clean_env(extra: dict) -> dict:
    """This environment without any launcher's variables (pytest itself may run under one)."""
    names = {name for pair in distributed.LAUNCHER_VARIABLES for name in pair}
    return {**{k: v for k, v in os.environ.items() if k not in names}, "PYTHONWARNINGS": "ignore", **extra}


def mpi_env() -> dict:
    """What MPI needs on a 2-core machine, as root, with no network (Open MPI and MPICH alike)."""
    return _clean_env({
        "PYTHONPATH": os.pathsep.join([SRC, TESTS]),
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1", "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
        "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo",
        "HYDRA_LAUNCHER": "fork", "MPIEXEC_TIMEOUT": str(LIMIT),
    })


def mpiexec(n: int, *command, cwd=None, popen=False, **kw):
    args = [MPIEXEC, "-n", str(n), *map(str, command)]
    if popen:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=mpi_env(),
                                cwd=cwd, **kw)
    return subprocess.run(args, capture_output=True, text=True, env=mpi_env(), cwd=cwd, timeout=LIMIT, **kw)


def seqnet_train(n: int, *args, cwd=None, popen=False):
    return mpiexec(n, sys.executable, "-m", "seqnet", "train", *args, cwd=cwd, popen=popen)


def job(n: int, mode: str, data: Path, out: Path):
    out.mkdir(parents=True)
    result = mpiexec(n, sys.executable, mpi_job.__file__, mode, data, out)
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mpi_job.write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def oracle(data, tmp_path_factory):
    """One process with the whole batch: what every job must reproduce."""
    base = tmp_path_factory.mktemp("oracle")
    return {kind: mpi_job.train(kind, data, base / kind, distributed_="off")[0] for kind in ("lm", "classify")}


def difference(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def load(path: Path) -> dict:
    with np.load(path) as f:
        return dict(f)


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_n_processes_train_as_one_with_the_combined_batch(data, oracle, tmp_path, n, record_property):
    out = tmp_path / "out"
    result = job(n, "equivalence", data, out)
    assert result.returncode == 0, result.stdout + result.stderr
    for kind in ("lm", "classify"):
        error = difference(load(out / f"{kind}.npz"), oracle[kind])
        record_property(f"{kind}_n{n}_max_abs_difference", error)
        print(f"N={n} {kind}: largest parameter difference from one process {error:.3g}")
        assert error < 1e-10, (kind, n, error)
    # The oracle can fail: without the allreduce each rank follows its own share (and the checksum
    # stops the job at its checkpoint); with each rank's own loss terms as the scale the steps are n times too big.
    assert difference(load(out / "lm-no-allreduce.npz"), oracle["lm"]) > 1e-4
    assert "the parameters of rank(s) 1" in (out / "no-allreduce.txt").read_text()
    assert difference(load(out / "lm-local-scale.npz"), oracle["lm"]) > 1e-4


@needs_mpi
def test_a_rank_with_an_empty_share_takes_part_in_every_step(data, tmp_path):
    out = tmp_path / "out"
    result = job(3, "uneven", data, out)
    assert result.returncode == 0, result.stdout + result.stderr
    shares = json.loads((out / "shares.json").read_text())
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == 8           # all ranks took the 8 steps
    assert min(min(s) for s in shares) == 0                                       # one had nothing, at some step
    assert [sum(step) for step in zip(*shares)] == [6, 6, 6, 2, 6, 6, 6, 2]       # and no text was read twice
    want, _ = mpi_job.train("classify", data, tmp_path / "one", steps=8, distributed_="off",
                            config=mpi_job.uneven_config(data))
    assert difference(load(out / "uneven.npz"), want) < 1e-10


@needs_mpi
def test_a_run_of_two_processes_resumes_on_three_as_one_process_trains(tmp_path):
    """The command line: 2 processes train 6 steps, 3 resume to 12 (the carried state of all the
    streams and the data position are in the checkpoint); one process trains 12 in one go (a
    constant learning rate, so that the longer run's schedule is the same)."""
    corpus = write_corpus(tmp_path / "c.txt")
    flags = ["--corpus", corpus, *TINY, "--batch", "6", "--dtype", "float64", "--schedule", "constant", "--warmup", "0",
             "--steps", "6"]
    first = seqnet_train(2, *flags, "--out", tmp_path / "job")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("run directory:") == 2 and first.stdout.count("data parallel: 2 processes") == 1
    assert "trained 6 steps" in first.stdout and first.stdout.count("trained") == 1
    assert "Traceback" not in first.stdout + first.stderr
    second = seqnet_train(3, "--out", tmp_path / "job", "--resume", "--steps", "12", "--no-progress")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "data parallel: 3 processes" in second.stdout
    one = subprocess.run([sys.executable, "-m", "seqnet", "train", *flags[:-1], "12", "--out", tmp_path / "one"],
                         capture_output=True, text=True, timeout=LIMIT, env=_clean_env({"PYTHONPATH": SRC}))
    assert one.returncode == 0, one.stderr
    from seqnet.training.checkpoint import load_checkpoint

    a, b = load_checkpoint(tmp_path / "job"), load_checkpoint(tmp_path / "one")
    assert a.step == b.step == 12
    assert difference(a.weights, b.weights) < 1e-10
    assert difference(a.task_arrays, b.task_arrays) < 1e-10                       # the carried state, all streams
    assert sorted(json.loads((tmp_path / "job" / "processes.json").read_text())["ranks"][2]) == \
        ["host", "local_rank", "pid"]


@needs_mpi
def test_a_usage_error_is_reported_once(tmp_path):
    result = seqnet_train(2, "--corpus", write_corpus(tmp_path / "c.txt"), "--batch", "4", "--accumulate", "3",
                          "--out", tmp_path / "run")
    assert_usage_error(result, "--accumulate: expected a divisor of --batch 4, received 3")
    assert result.stderr.count("error:") == 1
    too_few = seqnet_train(3, "--corpus", tmp_path / "c.txt", *TINY, "--batch", "2", "--out", tmp_path / "run")
    assert_usage_error(too_few, "--batch: 2 streams cannot be shared by 3 processes")
    assert too_few.stderr.count("error:") == 1 and not (tmp_path / "run").exists()
    thin = seqnet_train(3, "--corpus", tmp_path / "c.txt", *TINY, "--batch", "6", "--accumulate", "3", "--out",
                        tmp_path / "run")
    assert_usage_error(thin, "has 2 of the --batch 6 streams for 3 micro-batches",
                       "trains on at most 2 processes, and resumes on as many")


@needs_mpi
def test_commands_other_than_train_refuse_to_run_as_n_copies(tmp_path):
    one = mpiexec(1, sys.executable, "-m", "seqnet", "train", "--corpus", write_corpus(tmp_path / "c.txt"), *TINY,
                  "--out", tmp_path / "run")
    assert one.returncode == 0, one.stderr
    result = mpiexec(2, sys.executable, "-m", "seqnet", "sample", tmp_path / "run", "--length", "5")
    assert_usage_error(result, "this command runs as one process, and the MPI launcher started 2")
    assert result.stderr.count("error:") == 1 and result.stdout == ""


@needs_mpi
def test_a_rank_that_raises_ends_the_job_naming_it(data, tmp_path):
    started = time.monotonic()
    result = job(2, "raise", data, tmp_path / "out")
    seconds = time.monotonic() - started
    print(f"a raising rank ended the job {seconds:.2f} s after mpiexec started it")
    assert result.returncode != 0
    assert "error: rank 1 of 2 (pid " in result.stderr and "RuntimeError: injected failure; ending the whole job" \
        in result.stderr, result.stderr
    assert seconds < LIMIT / 2                            # not the launcher's timeout: MPI_Abort ended it


@needs_mpi
def test_parameters_that_differ_across_ranks_stop_the_job_before_the_checkpoint(data, tmp_path):
    result = job(2, "diverge", data, tmp_path / "out")
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.count("stopped: the parameters of rank(s) 1 differ from rank 0's at step 2") == 1
    assert not (tmp_path / "out" / "run" / "latest.json").exists()


def _start_long_job(tmp_path, n):
    corpus = write_corpus(tmp_path / "c.txt")
    process = seqnet_train(n, "--corpus", corpus, "--hidden", "32", "--embed", "8", "--batch", "6", "--seq-len", "32",
                           "--steps", "100000", "--checkpoint-every", "100000", "--eval-every", "100000",
                           "--sample-length", "0", "--no-progress", "--out", tmp_path / "run", popen=True)
    lines = []
    deadline = time.monotonic() + LIMIT / 2
    while time.monotonic() < deadline:             # until the start-up line (training begins right after)
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("data parallel:") or not line:
            break
    assert lines[-1].startswith("data parallel:"), "".join(lines)
    pids = dict(item.split(":") for item in lines[-1].split("rank:pid ")[1].split())
    time.sleep(1.0)
    return process, lines, {int(rank): int(pid) for rank, pid in pids.items()}


@needs_mpi
def test_a_killed_rank_ends_the_job_with_a_message_naming_it(tmp_path):
    """SIGKILL leaves the rank no word to say: the watcher of its host names it (the launcher
    names some pid of the job), and the job ends within seconds."""
    process, lines, pids = _start_long_job(tmp_path, 3)
    try:
        killed = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        rest, _ = process.communicate(timeout=LIMIT)
        seconds = time.monotonic() - killed
    finally:
        process.kill()
    print(f"a killed rank ended the job in {seconds:.2f} s")
    assert process.returncode != 0 and seconds < LIMIT / 2, rest           # not the launcher's timeout
    assert rest.count("died without a word") == 1, rest
    assert f"seqnet train: error: rank 1 of 3 (pid {pids[1]} on " in rest or (      # or, if the launcher ended
        "seqnet train: error: one of " in rest and f"rank 1 (pid {pids[1]})" in rest), rest  # others as fast: among them
    assert f"1:{pids[1]}" in lines[-1]                                    # the start-up line maps pids to ranks too


@needs_mpi
def test_a_signal_stops_every_rank_after_the_same_step(tmp_path):
    process, _, _ = _start_long_job(tmp_path, 2)
    try:
        process.send_signal(signal.SIGTERM)              # mpiexec passes it on to every rank
        rest, _ = process.communicate(timeout=LIMIT)
    finally:
        process.kill()
    assert process.returncode == 143, rest
    assert rest.count("interrupted at step") == 1, rest
    step = json.loads((tmp_path / "run" / "latest.json").read_text())["step"]
    assert f"interrupted at step {step};" in rest and step > 0


def test_the_rank_watcher_ends_when_its_ranks_can_no_longer_come(tmp_path):
    """The watcher holds its host's ranks' standard error (the launcher waits for it to close):
    when the rank that started it is gone and nobody is connected, it ends at once instead of
    waiting for connections; its socket appears only once it listens."""
    import socket

    from seqnet.training import rank_watch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "watch.sock"
    job = {"program": "seqnet", "size": 2, "host": "here", "expected": 2, "starter": dead.pid}
    start = time.monotonic()
    watcher = subprocess.Popen([sys.executable, rank_watch.__file__, str(path), json.dumps(job)])
    assert watcher.wait(timeout=30) == 0
    assert time.monotonic() - start < rank_watch.CONNECT_WAIT / 4
    assert not (tmp_path / "a").exists()                            # it removes its socket and folder

    (tmp_path / "b").mkdir()
    path = tmp_path / "b" / "watch.sock"
    job["starter"] = os.getpid()
    watcher = subprocess.Popen([sys.executable, rank_watch.__file__, str(path), json.dumps(job)])
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert watcher.poll() is None and time.monotonic() < deadline, "the watcher never listened"
            time.sleep(0.001)
        for rank in range(2):                  # the moment the socket exists, it accepts
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(path))
            conn.sendall(json.dumps({"rank": rank, "pid": os.getpid()}).encode() + b"\ndone\n")
            conn.close()
        assert watcher.wait(timeout=30) == 0
    finally:
        watcher.kill()
