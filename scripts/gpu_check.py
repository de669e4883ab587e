"""The GPU acceptance run of the CuPy path, in one command, printing one JSON summary.

    python scripts/gpu_check.py                  # on a machine with a CUDA GPU, < 8 minutes
    python scripts/gpu_check.py --compile-only   # any machine: NVRTC compile of every kernel
    python scripts/gpu_check.py --json out.json  # also write the summary to a file

Steps: (1) NVRTC compiles every kernel for compute_80 and compute_90 (needs the
``nvidia-cuda-nvrtc-cu12`` wheel or a CUDA toolkit; CuPy's own compile covers it otherwise);
(2) the test suite on the cupy backend and on torch with CUDA (SEQNET_TEST_BACKENDS=
cupy,torch-cuda); (3) launches per step of the fused loop on the GPU, and the fused loop
against the portable reference at seq 100, batch 64, hidden 512; (4) layer forward+backward
against PyTorch's cuDNN nn.LSTM / nn.GRU / nn.RNN on that shape (PyTorch's benchmarks/fastrnns),
timed with CUDA events; (5) training tokens/s and peak GPU memory for scripts/bench.py's
S, M, L language models against an equally sized PyTorch model. float32 throughout, TF32 off
in PyTorch (seqnet's GEMMs are plain sgemm), so both do the same arithmetic.

Machines used for this may have no package registry: the script first says exactly which
packages are missing (seqnet needs numpy, array-api-compat and CuPy to run; the tests need
pytest and array-api-strict; the comparisons torch with CUDA) and runs what it can.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

RUNTIME = {"numpy": "numpy", "array_api_compat": "array-api-compat", "cupy": "cupy-cuda12x or cupy-cuda13x"}
TESTS = {"pytest": "pytest", "array_api_strict": "array-api-strict"}
COMPARISON = {"torch": "torch (a CUDA build)"}
OPTIONAL = {"nvidia.cuda_nvrtc": "nvidia-cuda-nvrtc-cu12 (only for step 1; CuPy compiles the kernels anyway)",
            "safetensors": "safetensors (a few checkpoint tests)", "tqdm": "tqdm", "threadpoolctl": "threadpoolctl"}
LAYER_SHAPE = dict(steps=100, batch=64, input=512, hidden=512)


def missing(packages: dict[str, str]) -> list[str]:
    absent = []
    for module, wheel in packages.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            absent.append(wheel)
    return absent


def compile_check() -> dict:
    from seqnet.kernels.cupy import nvrtc, sources

    try:
        start = time.perf_counter()
        ptx = nvrtc.compile_all()
        return {"ok": True, "nvrtc": ".".join(map(str, nvrtc.version())), "architectures": list(nvrtc.ARCHITECTURES),
                "kernels": sorted(sources.kernel_signatures()),
                "ptx_bytes": {f"{d} {a}": len(t) for (d, a), t in ptx.items()},
                "seconds": round(time.perf_counter() - start, 2)}
    except nvrtc.NvrtcError as err:
        return {"ok": False, "error": str(err)}


def run_tests(timeout: int) -> dict:
    env = {**os.environ, "SEQNET_TEST_BACKENDS": "cupy,torch-cuda", "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"the suite ran past {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return {"ok": done.returncode == 0, "summary": lines[-1] if lines else done.stderr[-2000:],
            "failures": failures[:30], "seconds": round(time.perf_counter() - start, 1)}


def _cells():
    from seqnet.cells import GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell

    return {"lstm": LSTMCell(), "lstm_ln": LayerNormLSTMCell(), "gru": GRUCell(True), "gru_cho": GRUCell(False),
            "rnn_tanh": RNNCell("tanh"), "rnn_relu": RNNCell("relu")}


def launch_counts() -> dict:
    """Counted on the GPU through CupyOps: the same driver the CPU tests count through HostOps."""
    from seqnet.kernels.cupy.counting import launches_per_step
    from seqnet.kernels.cupy.device import cupy_ops

    counts = {}
    for name, cell in _cells().items():
        for masked in (False, True):
            forward, backward = launches_per_step(cell, cupy_ops("float32"), masked=masked)
            counts[name + (" masked" if masked else "")] = {"forward": forward, "backward": backward}
    return counts


def fused_vs_reference() -> dict:
    """Max |fused - reference| / max |reference| over outputs and gradients, float32 and float64, at the layer shape."""
    import copy

    import numpy as np

    import seqnet

    result = {}
    s = LAYER_SHAPE
    for kind, cls, kwargs in (("lstm", seqnet.LSTM, {}), ("lstm_ln", seqnet.LSTM, {"layer_norm": True}),
                              ("gru", seqnet.GRU, {}), ("gru_cho", seqnet.GRU, {"reset_after": False}),
                              ("rnn", seqnet.RNN, {})):
        for dtype in ("float32", "float64"):
            with seqnet.backend("cupy") as backend:
                rng = np.random.default_rng(0)
                x = backend.asarray(rng.standard_normal((s["steps"], s["batch"], s["input"])), dtype)
                d_out = backend.asarray(rng.standard_normal((s["steps"], s["batch"], s["hidden"])), dtype)
                lengths = rng.integers(1, s["steps"] + 1, s["batch"])
                values = []
                for fast in (True, False):
                    layer = cls(s["input"], s["hidden"], dtype=dtype, seed=0, **kwargs)
                    if not fast:
                        layer.backend = copy.copy(layer.backend)
                        layer.backend.fast_paths = False
                    (out, _), backprop = layer.forward(x, lengths=lengths)
                    dx, _ = backprop(d_out, None)
                    values.append([seqnet.to_numpy(v) for v in (out, dx, *layer.grads.values())])
                err = max(float(np.max(np.abs(a - b)) / max(1e-30, np.max(np.abs(b)))) for a, b in zip(*values))
            result[f"{kind} {dtype}"] = err
    return result


def _cuda_time(fn, repeats: int, record) -> list[float]:
    """Milliseconds per call of fn, CUDA events around each call (record(start, end) -> seconds)."""
    fn()
    fn()
    return [record(fn) for _ in range(repeats)]


def bench_layers(repeats: int) -> dict:
    import cupy
    import numpy as np
    import torch

    import seqnet

    s = LAYER_SHAPE
    results = {}

    def cupy_timer(fn):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end)

    def torch_timer(fn):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((s["steps"], s["batch"], s["input"])).astype(np.float32)
    d_host = rng.standard_normal((s["steps"], s["batch"], s["hidden"])).astype(np.float32)
    for kind, ours, theirs in (("lstm", seqnet.LSTM, torch.nn.LSTM), ("gru", seqnet.GRU, torch.nn.GRU),
                               ("rnn", seqnet.RNN, torch.nn.RNN)):
        with seqnet.backend("cupy") as backend:
            layer = ours(s["input"], s["hidden"], seed=0)
            x, d_out = backend.asarray(x_host, "float32"), backend.asarray(d_host, "float32")

            def seqnet_forward_backward():
                (out, _), backprop = layer.forward(x)
                backprop(d_out, None)

            def seqnet_forward():
                layer(x)
            ours_fb = _cuda_time(seqnet_forward_backward, repeats, cupy_timer)
            ours_f = _cuda_time(seqnet_forward, repeats, cupy_timer)
        module = theirs(s["input"], s["hidden"]).cuda()
        tx = torch.from_numpy(x_host).cuda().requires_grad_(True)
        td = torch.from_numpy(d_host).cuda()

        def torch_forward_backward():
            out, _ = module(tx)
            out.backward(td)

        def torch_forward():
            with torch.no_grad():
                module(tx)
        theirs_fb = _cuda_time(torch_forward_backward, repeats, torch_timer)
        theirs_f = _cuda_time(torch_forward, repeats, torch_timer)
        med = statistics.median
        results[kind] = {"seqnet_ms": {"forward": med(ours_f), "forward_backward": med(ours_fb)},
                         "cudnn_ms": {"forward": med(theirs_f), "forward_backward": med(theirs_fb)},
                         "ratio_forward_backward": med(ours_fb) / med(theirs_fb),
                         "ratio_forward": med(ours_f) / med(theirs_f)}
    return results


def _timed_steps(step, batches, synchronize) -> float:
    """Seconds for the steps after the first two (warm-up), synchronised at both ends."""
    for ids in batches[:2]:
        step(ids)
    synchronize()
    start = time.perf_counter()
    for ids in batches[2:]:
        step(ids)
    synchronize()
    return time.perf_counter() - start


def _seqnet_lm(cfg: dict, cell: str, batches) -> tuple[float, float]:
    """(seconds, peak pool growth in bytes) of seqnet training steps on CuPy."""
    import cupy

    import seqnet
    from bench import CLIP, LR, VOCAB
    from seqnet.models import LanguageModel
    from seqnet.training import Adam, clip_grad_norm

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    base = pool.total_bytes()
    with seqnet.backend("cupy"):
        model = LanguageModel(VOCAB, cfg["embed"], cfg["hidden"], cfg["layers"], cell, seed=0)
        optimizer = Adam(model.params, lr=LR)
        xp = model.backend.xp

        def step(ids):
            model.zero_grad()
            model.loss_and_grads(model.device_ids(ids[:-1]), model.device_ids(ids[1:]))
            clip_grad_norm(model.param_grads, CLIP, xp=xp)
            optimizer.step(model.params, model.param_grads)

        seconds = _timed_steps(step, batches, cupy.cuda.Device().synchronize)
    return seconds, pool.total_bytes() - base      # the pool keeps what it ever held: its peak


def _torch_lm(cfg: dict, cell: str, batches) -> tuple[float, float, float]:
    """(seconds, peak allocated bytes, peak reserved bytes) of the same steps with cuDNN."""
    import torch

    from bench import CLIP, LR, VOCAB

    nn = torch.nn
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()           # before the parameters, as seqnet's pool baseline
    torch.manual_seed(0)
    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    modules = nn.ModuleDict({"embedding": nn.Embedding(VOCAB, cfg["embed"]),
                             "rnn": rnn_cls(cfg["embed"], cfg["hidden"], cfg["layers"]),
                             "decoder": nn.Linear(cfg["hidden"], VOCAB)}).cuda()
    optimizer = torch.optim.Adam(modules.parameters(), lr=LR)

    def step(ids):
        ids = torch.from_numpy(ids).cuda()
        optimizer.zero_grad()
        hs, _ = modules["rnn"](modules["embedding"](ids[:-1]))
        loss = nn.functional.cross_entropy(modules["decoder"](hs).reshape(-1, VOCAB), ids[1:].reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(modules.parameters(), CLIP)
        optimizer.step()

    seconds = _timed_steps(step, batches, torch.cuda.synchronize)
    return seconds, torch.cuda.max_memory_allocated() - base, torch.cuda.max_memory_reserved()


def bench_language_models(steps: int) -> dict:
    """scripts/bench.py's S, M, L models, float32: training tokens/s and peak GPU memory."""
    import numpy as np
    import torch

    from bench import CONFIGS, VOCAB

    results = {}
    for name, cfg in CONFIGS.items():
        for cell in ("lstm", "gru", "rnn"):
            rng = np.random.default_rng(0)
            batches = [rng.integers(0, VOCAB, (cfg["steps"] + 1, cfg["batch"])) for _ in range(steps + 2)]
            tokens = cfg["steps"] * cfg["batch"] * steps
            ours, ours_mem = _seqnet_lm(cfg, cell, batches)
            theirs, theirs_mem, theirs_reserved = _torch_lm(cfg, cell, batches)
            torch.cuda.empty_cache()                     # its model is gone: give the memory back
            results[f"{name} {cell}"] = {
                "tokens_per_s": {"seqnet": tokens / ours, "torch": tokens / theirs, "ratio": theirs / ours},
                # seqnet: what CuPy's pool held (it keeps every block it ever held); torch: its peak
                # allocated (and reserved) bytes; both from before the parameters were made.
                "peak_memory_mib": {"seqnet_pool": ours_mem / 2**20, "torch_allocated": theirs_mem / 2**20,
                                    "torch_reserved": theirs_reserved / 2**20}}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile-only", action="store_true", help="only the NVRTC compile of every kernel")
    parser.add_argument("--json", help="also write the summary to this file")
    parser.add_argument("--skip-tests", action="store_true", help="skip the test suite")
    parser.add_argument("--test-timeout", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--lm-steps", type=int, default=5)
    args = parser.parse_args(argv)

    began = time.perf_counter()
    summary: dict = {"python": platform.python_version(), "machine": platform.node()}
    absent = {"runtime": missing(RUNTIME), "tests": missing(TESTS), "comparison": missing(COMPARISON),
              "optional": missing(OPTIONAL)}
    summary["missing_packages"] = absent
    if args.compile_only:
        summary["compile"] = compile_check()
        return _finish(summary, args, ok=summary["compile"]["ok"])

    print("missing packages: " + json.dumps(absent), file=sys.stderr)
    if absent["runtime"]:
        summary["error"] = f"cannot run seqnet on CuPy: install {', '.join(absent['runtime'])}"
        return _finish(summary, args, ok=False)
    import cupy

    if not cupy.is_available():
        summary["error"] = "CuPy finds no usable CUDA device"
        return _finish(summary, args, ok=False)
    summary["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    summary["cupy"] = cupy.__version__
    summary["compile"] = compile_check()
    if not summary["compile"]["ok"] and summary["compile"]["error"].startswith("NVRTC not found"):
        summary["compile"] = {"ok": None, "skipped": "no NVRTC library; CuPy compiles the kernels in the steps below"}
    steps = [("launches_per_step", launch_counts), ("fused_vs_reference", fused_vs_reference)]
    if not args.skip_tests:
        steps.insert(0, ("tests", lambda: run_tests(args.test_timeout)) if not absent["tests"]
                     else ("tests", lambda: {"ok": None, "skipped": f"install {', '.join(absent['tests'])}"}))
    if absent["comparison"]:
        summary["benchmarks"] = {"skipped": f"install {', '.join(absent['comparison'])}"}
    else:
        import torch

        torch.backends.cudnn.allow_tf32 = False          # plain float32, as seqnet's sgemm
        torch.backends.cuda.matmul.allow_tf32 = False
        summary["torch"] = torch.__version__
        steps += [("layer_benchmark", lambda: bench_layers(args.repeats)),
                  ("language_models", lambda: bench_language_models(args.lm_steps))]
    ok = True
    for name, step in steps:
        start = time.perf_counter()
        try:
            summary[name] = step()
        except Exception as err:  # noqa: BLE001 - one failed step must not hide the others' figures
            summary[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            ok = False
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    ok = ok and summary.get("tests", {}).get("ok") is not False and summary["compile"].get("ok") is not False
    summary["seconds"] = round(time.perf_counter() - began, 1)
    return _finish(summary, args, ok=ok)


def _finish(summary: dict, args, *, ok: bool) -> int:
    summary["ok"] = ok
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
