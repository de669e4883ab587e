"""Data-parallel training over MPI: N processes train one model as one process would with the combined batch.

Started by an MPI launcher (``mpiexec -n N seqnet train ...``, ``srun``), every process is a
*rank* of one job. Rank 0 holds the run directory: it alone prints, writes metrics and
checkpoints, and its parameters, optimizer state and settings are broadcast to the others
when training starts. Every rank trains on its own share of each global batch
(:meth:`seqnet.tasks.Task.shard`); per optimizer step the ranks talk twice:

1. before the backward passes, one allreduce of three host numbers: the loss terms of the
   rank's micro-batches and its votes to stop (a signal received), so that every micro-batch's
   gradient is scaled by its share of the loss terms of the whole job (exact for uneven
   shares, an empty one included) and all ranks stop after the same step;
2. after them, one allreduce of every gradient and the loss, flattened into one contiguous
   buffer (models over :data:`BUCKET_BYTES` use a few buckets), after which every rank
   clips and steps identically.

How the buffer travels depends on where it lives (:func:`choose_path`): numpy arrays are
reduced in place ("host"); CuPy arrays go to NCCL ("nccl", its communicator bootstrapped over
MPI as ChainerMN does), else to a CUDA-aware MPI ("cuda-aware-mpi"), else through host memory
("host-staged", as arrays of the other backends). Floats travel as float64 for a float64
model and as float32 otherwise (MPI has no float16/bfloat16). Only mpi4py's buffer methods
(capitalised) are used: nothing is pickled; small records travel as JSON text.

Failures: a setup step that fails on any rank fails on all (:meth:`MPIWorld.agree`), reported
once by rank 0; an exception during training on one rank prints ``rank R ...`` and calls
MPI_Abort, which ends the whole job within seconds (as ``python -m mpi4py`` does); a rank
killed outright is reported by the launcher by its pid, which the start-up line maps to its
rank. ``import seqnet`` never imports mpi4py: this module imports it when a job starts.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..errors import ConfigError, DistributedError, SeqnetError

# (size, rank) variables that MPI launchers set in every process they start.
LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),    # Open MPI
    ("PMI_SIZE", "PMI_RANK"),                            # MPICH's hydra, Intel MPI, srun --mpi=pmi2
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),      # MVAPICH2
    ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),            # srun (whatever its PMI plugin)
)
BUCKET_BYTES = 256 << 20        # gradient buffers above this are reduced in several allreduces
PATHS = ("host", "host-staged", "cuda-aware-mpi", "nccl")
NCCL_ID_BYTES = 128             # ncclUniqueId: what cupy.cuda.nccl.get_unique_id() returns, as ints
ABORT_GRACE_SECONDS = 0.5      # between a failing rank's message and MPI_Abort
SHOWN_PIDS = 16                 # ranks listed on the start-up line (all of them in processes.json)


def launched_by(environ=None) -> tuple[int, int, str] | None:
    """(size, rank, variable) as the MPI launcher that started this process set them, or None."""
    environ = os.environ if environ is None else environ
    for size_name, rank_name in LAUNCHER_VARIABLES:
        size, rank = environ.get(size_name, ""), environ.get(rank_name, "")
        if size.isdigit() and rank.isdigit():
            return int(size), int(rank), size_name
    return None


def launched_rank(environ=None) -> int:
    """This process's rank in the job its launcher started (0 without a launcher)."""
    found = launched_by(environ)
    return 0 if found is None else found[1]


def mark_reported(error: BaseException) -> BaseException:
    """Rank 0 reports ``error`` for the whole job: other ranks exit without repeating it."""
    with contextlib.suppress(AttributeError):
        error.reported_by_rank0 = True
    return error


def is_reported_elsewhere(error: BaseException) -> bool:
    return bool(getattr(error, "reported_by_rank0", False))


def _message(error: BaseException) -> str:
    if isinstance(error, SeqnetError):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {error}"


def wire_dtype(dtype_name: str) -> str:
    """The float type gradients travel as: float64 stays float64, anything else goes as float32."""
    return "float64" if dtype_name == "float64" else "float32"


def choose_path(backend: str, *, nccl: bool, cuda_aware: bool, requested: str | None = None) -> str:
    """How the gradient buffer of ``backend``'s arrays is reduced (see the module docstring).
    ``requested`` (SEQNET_ALLREDUCE) forces one, refused when it cannot work."""
    if requested is not None and requested not in PATHS:
        raise ConfigError(f"SEQNET_ALLREDUCE: expected one of {', '.join(PATHS)}, received {requested!r}")
    if backend == "numpy":
        possible = ["host"]
    elif backend == "cupy":
        possible = (["nccl"] if nccl else []) + (["cuda-aware-mpi"] if cuda_aware else []) + ["host-staged"]
    else:                       # torch, array_api_strict: copied to host memory and back
        possible = ["host-staged"]
    if requested is None:
        return possible[0]
    if requested not in possible:
        why = {"nccl": "CuPy's NCCL (cupy.cuda.nccl) is not available", "cuda-aware-mpi":
               "this MPI is not CUDA-aware (MPIX_Query_cuda_support)"}.get(requested, f"the {backend} backend")
        raise ConfigError(f"SEQNET_ALLREDUCE={requested}: cannot be used with --backend {backend} here ({why}); "
                          f"possible: {', '.join(possible)}")
    return requested


def mpi_is_cuda_aware(environ=None) -> bool:
    """Whether the loaded MPI library takes device memory: SEQNET_MPI_CUDA_AWARE=0/1 decides
    if set, else the library's MPIX_Query_cuda_support() (Open MPI, MPICH), else False."""
    environ = os.environ if environ is None else environ
    forced = environ.get("SEQNET_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1"
    with contextlib.suppress(OSError):
        with open("/proc/self/maps", encoding="utf-8") as maps:
            libraries = sorted({line.split()[-1] for line in maps if "libmpi" in line and ".so" in line})
        for path in libraries:
            with contextlib.suppress(OSError, AttributeError):
                return bool(ctypes.CDLL(path).MPIX_Query_cuda_support())
    return False


def nccl_available() -> bool:
    try:
        from cupy.cuda import nccl
    except Exception:           # noqa: BLE001 - no CuPy, or a CuPy built without NCCL
        return False
    return bool(getattr(nccl, "available", False))


class SingleProcess:
    """A job of one process: every collective is the identity (and costs nothing)."""

    rank, size, local_rank, is_root = 0, 1, 0, True

    def device_for(self, backend: str, device: Any) -> Any:
        return device

    def agree(self, error: BaseException | None = None) -> None:
        if error is not None:
            raise error

    def everywhere(self, error: BaseException) -> BaseException:
        return error

    def bcast_json(self, obj: Any) -> Any:
        return obj

    def allgather_json(self, obj: Any) -> list:
        return [obj]

    def step_totals(self, weight: float, votes: tuple[int, int]) -> tuple[float, tuple[int, int]]:
        return weight, votes

    def gradient_reducer(self, model) -> None:
        return None

    def broadcast_arrays(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return arrays

    def gather_along(self, array: np.ndarray, axis: int) -> np.ndarray:
        return array

    def check_same_parameters(self, params, step: int) -> None:
        pass

    def quiet(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def ending_on_error(self, collective: tuple = ()) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


class MPIWorld:
    """The processes of an MPI job (``comm``: COMM_WORLD) and the collectives training needs."""

    def __init__(self, comm=None, program: str = "seqnet"):
        from mpi4py import MPI

        self.MPI, self.program = MPI, program          # program: how messages start ("seqnet train")
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        self.library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split()).replace("Version: ", "")
        host = MPI.Get_processor_name()
        self.processes = self.allgather_json({"pid": os.getpid(), "host": host, "local_rank": self.local_rank})
        self._watch = self._start_watch(node, host)
        node.Free()
        self._install_excepthook()

    def _start_watch(self, node, host: str):
        """Local rank 0 starts this host's watcher (:mod:`.rank_watch`); every local rank connects
        to it and says ``done`` at exit. Best effort: without it, only the launcher reports deaths."""
        path = None
        if node.Get_rank() == 0:
            with contextlib.suppress(OSError):
                path = os.path.join(tempfile.mkdtemp(prefix="seqnet-ranks-"), "watch.sock")
                job = {"program": self.program, "size": self.size, "host": host, "expected": node.Get_size(),
                       "starter": os.getpid()}
                subprocess.Popen([sys.executable, str(Path(__file__).with_name("rank_watch.py")), path, json.dumps(job)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
                deadline = time.monotonic() + 10
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.01)
                path = path if os.path.exists(path) else None
        path = self.bcast_json(path, node)
        if path is None:
            return None
        conn = None
        for attempt in range(20):                # the watcher listens once its socket exists; retry briefly
            try:
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.connect(path)
                conn.sendall(json.dumps({"rank": self.rank, "pid": os.getpid()}).encode("utf-8") + b"\n")
                break
            except OSError:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01 * (attempt + 1))
        if conn is None:
            return None
        atexit.register(self._tell_watch, b"done")
        return conn

    def _tell_watch(self, word: bytes) -> None:
        if self._watch is not None:
            with contextlib.suppress(OSError):
                self._watch.sendall(word + b"\n")

    # -- failures -----------------------------------------------------------------------------
    def where(self, rank: int | None = None) -> str:
        rank = self.rank if rank is None else rank
        process = self.processes[rank]
        return f"rank {rank} of {self.size} (pid {process['pid']} on {process['host']})"

    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` for this rank and end every process of the job (MPI_Abort)."""
        from .output import write_line

        write_line(sys.stderr, f"{self.program}: error: {self.where()}: {message}; ending the whole job")
        self._tell_watch(b"abort")
        time.sleep(ABORT_GRACE_SECONDS)         # the launcher forwards what was printed, then ends everyone
        self.comm.Abort(code)

    def _install_excepthook(self) -> None:
        previous = sys.excepthook

        def hook(kind, value, tb):              # an uncaught exception must not leave the others waiting
            previous(kind, value, tb)
            self.abort(_message(value))
        sys.excepthook = hook

    @contextlib.contextmanager
    def ending_on_error(self, collective: tuple = ()):
        """Exceptions of ``collective`` types (raised on every rank at the same point) pass;
        any other one ends the whole job, since the other ranks would wait for this one forever."""
        try:
            yield
        except collective:
            raise
        except BaseException as error:          # noqa: BLE001 - whatever it is, the job cannot go on
            if not isinstance(error, (SeqnetError, KeyboardInterrupt)):
                traceback.print_exc()
            self.abort(_message(error))
            raise

    def agree(self, error: BaseException | None = None) -> None:
        """Every rank calls this after a part of the setup, ``error`` what its part raised. If
        any part raised, every rank raises: rank 0 its own error, or one naming the rank that
        failed and why; the other ranks' errors are marked as reported by rank 0."""
        failed = [(rank, text) for rank, text in enumerate(self.allgather_json(
            None if error is None else _message(error))) if text is not None]
        if not failed:
            return
        if self.is_root and error is not None:
            raise error
        if error is not None:
            raise mark_reported(error)
        rank, text = failed[0]
        raised = DistributedError(f"{self.where(rank)}: {text}")
        raise raised if self.is_root else mark_reported(raised)

    def everywhere(self, error: BaseException) -> BaseException:
        """``error``, which every rank raises at the same point: reported by rank 0 alone."""
        return error if self.is_root else mark_reported(error)

    @contextlib.contextmanager
    def quiet(self):
        """On ranks other than 0: no warnings and no stderr (rank 0 shows the same ones)."""
        if self.is_root:
            yield
            return
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield

    # -- small records: JSON text in byte buffers ----------------------------------------------
    def bcast_json(self, obj: Any, comm=None) -> Any:
        """Rank 0's ``obj`` on every rank (of ``comm``, default the job's)."""
        comm = self.comm if comm is None else comm
        root = comm.Get_rank() == 0
        data = json.dumps(obj).encode("utf-8") if root else b""
        length = np.array([len(data)], dtype=np.int64)
        comm.Bcast(length, root=0)
        buffer = np.frombuffer(data, dtype=np.uint8).copy() if root else np.empty(int(length[0]), np.uint8)
        comm.Bcast(buffer, root=0)
        return json.loads(buffer.tobytes().decode("utf-8"))

    def allgather_json(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        data = np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)
        lengths = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([data.size], dtype=np.int64), lengths)
        joined = np.empty(int(lengths.sum()), dtype=np.uint8)
        self.comm.Allgatherv(data, [joined, lengths.tolist()])
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return [json.loads(joined[a:b].tobytes().decode("utf-8")) for a, b in zip(bounds[:-1], bounds[1:])]

    # -- arrays -------------------------------------------------------------------------------
    def broadcast_arrays(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rank 0's host arrays on every rank (each rank passes arrays of the same names and shapes)."""
        out = {}
        for name in sorted(arrays):
            buffer = np.ascontiguousarray(arrays[name])
            self.comm.Bcast(buffer, root=0)
            out[name] = buffer
        return out

    def gather_along(self, array: np.ndarray, axis: int) -> np.ndarray | None:
        """The ranks' parts of an array joined along ``axis`` in rank order, on rank 0 (None elsewhere)."""
        moved = np.ascontiguousarray(np.moveaxis(np.asarray(array), axis, 0))
        lengths = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([moved.shape[0]], dtype=np.int64), lengths)
        per_row = int(np.prod(moved.shape[1:], dtype=np.int64))
        joined = np.empty((int(lengths.sum()), *moved.shape[1:]), dtype=moved.dtype) if self.is_root else None
        self.comm.Gatherv(moved.reshape(-1), [joined, (lengths * per_row).tolist()] if self.is_root else None, root=0)
        return np.moveaxis(joined, 0, axis) if self.is_root else None

    def step_totals(self, weight: float, votes: tuple[int, int]) -> tuple[float, tuple[int, int]]:
        """The loss terms of all ranks' micro-batches and the ranks' (SIGINT, SIGTERM) votes."""
        buffer = np.array([weight, *votes], dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return float(buffer[0]), (int(buffer[1]), int(buffer[2]))

    def check_same_parameters(self, params, step: int) -> None:
        """Compare a checksum of every rank's parameters; on a mismatch every rank raises."""
        digest = hashlib.blake2b(digest_size=16)
        for name in params:
            digest.update(name.encode("utf-8") + b"\0")
            digest.update(to_numpy(params[name]).tobytes())
        digests = self.allgather_json(digest.hexdigest())
        differ = [rank for rank, value in enumerate(digests) if value != digests[0]]
        if differ:
            ranks = ", ".join(map(str, differ))
            raise self.everywhere(DistributedError(f"the parameters of rank(s) {ranks} differ from rank 0's at step {step} (checksums "
                                   f"{digests[differ[0]]} and {digests[0]}); the job stops before writing this "
                                   "checkpoint (the last one written is intact): the ranks computed differently, "
                                   "e.g. different library versions or a faulty node or GPU"))

    # -- devices and gradients ----------------------------------------------------------------
    def device_for(self, backend: str, device: Any) -> Any:
        """The device of this rank: a GPU picked by the local rank unless ``device`` names one."""
        if backend == "cupy" and device is None:
            with contextlib.suppress(Exception):        # no CuPy or no GPU: the backend says so itself
                import cupy

                return self.local_rank % max(1, cupy.cuda.runtime.getDeviceCount())
        if backend == "torch" and device == "cuda":
            with contextlib.suppress(Exception):
                import torch

                return f"cuda:{self.local_rank % max(1, torch.cuda.device_count())}"
        return device

    def gradient_reducer(self, model) -> "GradientReducer":
        """The reducer of ``model``'s gradients; every rank must take the same path."""
        backend, path, error = model.backend.name, None, None
        try:
            path = choose_path(backend, nccl=backend == "cupy" and nccl_available(),
                               cuda_aware=backend == "cupy" and mpi_is_cuda_aware(),
                               requested=os.environ.get("SEQNET_ALLREDUCE") or None)
        except SeqnetError as err:
            error = err
        self.agree(error)
        paths = self.allgather_json(path)
        if len(set(paths)) > 1:
            mismatch = DistributedError("the ranks would reduce gradients by different paths ("
                                        + ", ".join(f"rank {r}: {p}" for r, p in enumerate(paths))
                                        + "); set SEQNET_ALLREDUCE to one of them for every rank")
            raise self.everywhere(mismatch)
        return GradientReducer(self, model, path)

    def describe(self, reducer: "GradientReducer") -> str:
        """The start-up line: processes, MPI library, gradient path, and each rank's pid."""
        hosts = sorted({p["host"] for p in self.processes})
        shown = " ".join(f"{rank}:{p['pid']}" for rank, p in enumerate(self.processes[:SHOWN_PIDS]))
        more = f" ... ({self.size - SHOWN_PIDS} more in processes.json)" if self.size > SHOWN_PIDS else ""
        return (f"data parallel: {self.size} processes over MPI ({self.library}) on {len(hosts)} "
                f"host{'s' if len(hosts) > 1 else ''}; gradients: {reducer.describe()}; rank:pid {shown}{more}")


class GradientReducer:
    """Sums every rank's gradients (and loss) in one allreduce per bucket of a flat buffer.

    ``path`` is one of :data:`PATHS`. The buffer holds the gradients in ``model.param_grads``
    order (the same on every rank) followed by the loss; after the allreduce the gradients
    are views of it.
    """

    def __init__(self, world: MPIWorld, model, path: str, bucket_bytes: int = BUCKET_BYTES):
        self.world, self.backend, self.path = world, model.backend, path
        self.dtype_name = model.dtype_name
        self.wire = wire_dtype(self.dtype_name)
        sizes = [int(np.prod(g.shape, dtype=np.int64)) for g in model.param_grads.values()] + [1]
        self.elements = sum(sizes)
        per_bucket = max(1, bucket_bytes // np.dtype(self.wire).itemsize)
        self.buckets: list[tuple[int, int]] = []         # [first, last) of the parts (gradients, loss)
        first, filled = 0, 0
        for k, size in enumerate(sizes):
            if filled and filled + size > per_bucket:
                self.buckets.append((first, k))
                first, filled = k, 0
            filled += size
        self.buckets.append((first, len(sizes)))
        self._nccl = self._nccl_communicator() if path == "nccl" else None

    def _nccl_communicator(self):
        """A NCCL communicator of the job's ranks; its unique id travels from rank 0 over MPI."""
        from cupy.cuda import nccl

        unique = np.array(nccl.get_unique_id(), dtype=np.int64) if self.world.is_root else \
            np.zeros(NCCL_ID_BYTES, dtype=np.int64)
        self.world.comm.Bcast(unique, root=0)
        with self.backend.activate():
            return nccl.NcclCommunicator(self.world.size, tuple(int(v) for v in unique), self.world.rank)

    def describe(self) -> str:
        where = {"host": "in host memory (numpy arrays)", "host-staged": "copied through host memory",
                 "cuda-aware-mpi": "in device memory by a CUDA-aware MPI", "nccl": "in device memory by NCCL"}[self.path]
        buckets = len(self.buckets)
        return (f"{'one allreduce' if buckets == 1 else f'{buckets} allreduces'} of {self.elements:,} {self.wire} "
                f"per step, {where} [{self.path}]")

    def __call__(self, grads, loss):
        """Sum ``grads`` (the model's live view) over all ranks in place; returns the summed ``loss``."""
        xp = self.backend.xp
        names = list(grads)
        parts = [xp.reshape(grads[name], (-1,)) for name in names] + [xp.reshape(loss, (1,))]
        shapes = [tuple(grads[name].shape) for name in names]
        total = loss
        for first, last in self.buckets:
            flat = self._allreduce(parts[first] if last - first == 1 else xp.concat(parts[first:last]))
            offset = 0
            for k in range(first, last):
                size = parts[k].shape[0]
                if k < len(names):
                    grads[names[k]] = xp.reshape(flat[offset:offset + size], shapes[k])
                else:
                    total = xp.reshape(flat[offset:offset + 1], ())
                offset += size
        return total

    def _allreduce(self, flat):
        MPI, comm = self.world.MPI, self.world.comm
        if self.path == "host" and str(flat.dtype) == self.wire:
            comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            return flat
        if self.path in ("host", "host-staged"):
            host = np.ascontiguousarray(to_numpy(flat), dtype=self.wire)
            comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
            return self.backend.asarray(host, self.dtype_name)
        import cupy

        flat = cupy.ascontiguousarray(flat.astype(self.wire, copy=False))
        stream = cupy.cuda.get_current_stream()
        if self.path == "cuda-aware-mpi":
            stream.synchronize()                # MPI reads the buffer outside the stream's order
            comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        else:
            from cupy.cuda import nccl

            kind = nccl.NCCL_FLOAT64 if self.wire == "float64" else nccl.NCCL_FLOAT32
            self._nccl.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kind, nccl.NCCL_SUM, stream.ptr)
        return flat if self.wire == self.dtype_name else flat.astype(self.dtype_name)


_WORLD: MPIWorld | None = None


def mpi_world(program: str = "seqnet") -> MPIWorld:
    """This process's MPI job (MPI is initialised on the first call)."""
    global _WORLD
    if _WORLD is None:
        launched = launched_by()
        try:
            from mpi4py import MPI  # noqa: F401
        except ImportError as err:
            started = f"started by an MPI launcher as one of {launched[0]} processes ({launched[2]})" if launched \
                else "asked to train over MPI"
            raise DistributedError(f"this process was {started}, but mpi4py is not installed: pip install "
                                   "'seqnet[mpi]' (mpi4py and an MPI of its own), or build mpi4py against the "
                                   "cluster's MPI (pip install --no-binary mpi4py mpi4py)") from err
        world = MPIWorld(program=program)
        if launched is not None and launched[0] != world.size:
            raise DistributedError(f"the launcher started {launched[0]} processes ({launched[2]}={launched[0]}) but "
                                   f"MPI sees {world.size}: mpi4py's MPI ({world.library}) is not the launcher's; use "
                                   "the mpiexec of that MPI (under Slurm: srun --mpi=pmix or --mpi=pmi2)")
        from ..backend import threads

        if threads._threads is None and "OMP_NUM_THREADS" not in os.environ:
            threads.set_num_threads(1)          # N ranks on N cores: one BLAS thread each unless told otherwise
        _WORLD = world
    return _WORLD


def make_world(distributed: Any = "auto", program: str = "seqnet"):
    """The job this process trains in. ``distributed``: "auto" (MPI when an MPI launcher
    started more than one process, else one process), "mpi" (MPI, even with one process),
    "off" (one process), or a world (:class:`SingleProcess`, :class:`MPIWorld`)."""
    if isinstance(distributed, (SingleProcess, MPIWorld)):
        return distributed
    if distributed in ("off", None, False):
        return SingleProcess()
    if distributed == "mpi":
        return mpi_world(program)
    if distributed == "auto":
        launched = launched_by()
        return mpi_world(program) if launched is not None and launched[0] > 1 else SingleProcess()
    raise ConfigError(f"distributed: expected 'auto', 'mpi', 'off' or a world, received {distributed!r}")
