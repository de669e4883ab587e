"""seqnet against PyTorch on this machine's CPU, measured in one process, repeat by repeat.

    python scripts/bench.py                       # training S/M/L x lstm/gru/rnn, generation, memory
    python scripts/bench.py --configs S --cells lstm --repeats 3    # a quick look
    python scripts/bench.py --json bench.json     # also write every figure as JSON

Training: character-LM steps (embedding -> recurrent -> linear -> softmax cross-entropy ->
global-norm clip -> Adam; float32; vocabulary 96). Each repeat times seqnet and PyTorch
back to back (alternating which goes first) on the same batches; the paired ratio
seqnet/PyTorch of tokens per second is taken per repeat and its median reported.
Generation: 500 tokens one step at a time with sampling, batch 1 and 64, with the rate at
which each framework reads its weights (all of them once per step; at batch 1 that read
bounds the step time). Peak memory: the growth of resident memory during two training
steps, each framework in a fresh subprocess.
BLAS/OpenMP threads are pinned to the same count for both (--threads, default 1).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import seqnet  # noqa: E402
from seqnet.kernels.counting import ops_per_step  # noqa: E402
from seqnet.backend.threads import set_num_threads, thread_info  # noqa: E402
from seqnet.cells import GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell  # noqa: E402
from seqnet.data import CharTokenizer  # noqa: E402
from seqnet.models import LanguageModel  # noqa: E402
from seqnet.training import Adam, clip_grad_norm  # noqa: E402

VOCAB = 96
CONFIGS = {
    "S": dict(embed=32, hidden=128, layers=1, batch=32, steps=64),
    "M": dict(embed=128, hidden=512, layers=2, batch=64, steps=100),
    "L": dict(embed=256, hidden=1024, layers=1, batch=64, steps=100),
}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
LR, CLIP, GEN_TOKENS = 1e-3, 1.0, 500


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# -- the two training steps ---------------------------------------------------------------
def seqnet_setup(cfg: dict, cell: str):
    model = LanguageModel(VOCAB, cfg["embed"], cfg["hidden"], cfg["layers"], cell, seed=0)
    optimizer = Adam(model.params, lr=LR)
    xp = model.backend.xp

    def step(inputs: np.ndarray, targets: np.ndarray) -> float:
        model.zero_grad()
        loss, _ = model.loss_and_grads(model.device_ids(inputs), model.device_ids(targets))
        clip_grad_norm(model.param_grads, CLIP, xp=xp)
        optimizer.step(model.params, model.param_grads)
        return float(loss)
    return model, step


def torch_setup(torch, cfg: dict, cell: str):
    nn = torch.nn
    torch.manual_seed(0)
    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    modules = nn.ModuleDict({"embedding": nn.Embedding(VOCAB, cfg["embed"]),
                             "rnn": rnn_cls(cfg["embed"], cfg["hidden"], cfg["layers"]),
                             "decoder": nn.Linear(cfg["hidden"], VOCAB)})
    optimizer = torch.optim.Adam(modules.parameters(), lr=LR)

    def step(inputs: np.ndarray, targets: np.ndarray) -> float:
        x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
        optimizer.zero_grad()
        hs, _ = modules["rnn"](modules["embedding"](x))
        logits = modules["decoder"](hs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), CLIP)
        optimizer.step()
        return loss.item()
    return modules, step


def training_flops(cfg: dict, cell: str) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward), elementwise work ignored."""
    t, b, h, g = cfg["steps"], cfg["batch"], cfg["hidden"], GATES[cell]
    flops = 0.0
    for layer in range(cfg["layers"]):
        inp = cfg["embed"] if layer == 0 else h
        flops += 2 * t * b * (inp + h) * g * h
    flops += 2 * t * b * h * VOCAB
    return 3 * flops


def weight_bytes(cfg: dict, cell: str) -> int:
    """float32 bytes of the recurrent and output weights, which every generation step reads once."""
    h, g = cfg["hidden"], GATES[cell]
    count = sum(((cfg["embed"] if layer == 0 else h) + h) * g * h for layer in range(cfg["layers"]))
    return 4 * (count + h * VOCAB)


def interleaved(fns: dict, make_batch, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, alternating the order every repeat; one warm-up call each."""
    batch = make_batch(0)
    for fn in fns.values():
        fn(*batch)
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        batch = make_batch(r + 1)
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            fns[name](*batch)
            times[name].append(time.perf_counter() - start)
    return times


def summarize(times: dict[str, list[float]], work: float) -> dict:
    """Throughput (work/s) per framework: median, min, max; paired ratio seqnet/torch per repeat."""
    out = {}
    for name, ts in times.items():
        rates = [work / t for t in ts]
        out[name] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}
    if "torch" in times:
        ratios = [ts / tn for tn, ts in zip(times["seqnet"], times["torch"])]   # = rate_seqnet / rate_torch
        out["ratio"] = {"median": statistics.median(ratios), "per_repeat": ratios}
    return out


def bench_training(torch, name: str, cell: str, repeats: int) -> dict:
    cfg = CONFIGS[name]
    rng = np.random.default_rng(0)

    def make_batch(_):
        ids = rng.integers(0, VOCAB, (cfg["steps"] + 1, cfg["batch"]))
        return ids[:-1], ids[1:]

    fns = {"seqnet": seqnet_setup(cfg, cell)[1]}
    if torch is not None:
        fns["torch"] = torch_setup(torch, cfg, cell)[1]
    times = interleaved(fns, make_batch, repeats)
    result = summarize(times, cfg["steps"] * cfg["batch"])
    flops = training_flops(cfg, cell)
    result["gflops"] = {k: flops / statistics.median(v) / 1e9 for k, v in times.items()}
    return result


# -- generation ---------------------------------------------------------------------------
def bench_generation(torch, name: str, cell: str, batch: int, repeats: int) -> dict:
    cfg = CONFIGS[name]
    model, _ = seqnet_setup(cfg, cell)
    model.tokenizer = CharTokenizer.fit(string.printable[:VOCAB - 1])
    fns = {"seqnet": lambda seed: model.generate("a", GEN_TOKENS, num_samples=batch, seed=seed)}
    if torch is not None:
        modules, _ = torch_setup(torch, cfg, cell)

        @torch.no_grad()
        def torch_generate(seed):
            gen = torch.Generator().manual_seed(seed)
            x, state, out = torch.zeros((1, batch), dtype=torch.long), None, []
            for _ in range(GEN_TOKENS):
                hs, state = modules["rnn"](modules["embedding"](x), state)
                probs = torch.softmax(modules["decoder"](hs[-1]), dim=-1)
                x = torch.multinomial(probs, 1, generator=gen).T
                out.append(x)
            return torch.cat(out).numpy()
        fns["torch"] = torch_generate
    times = interleaved(fns, lambda r: (r,), repeats)
    result = summarize(times, GEN_TOKENS * batch)
    # Each step reads every weight once: at batch 1 that read bounds the step time from below.
    result["weight_gbps"] = {k: weight_bytes(cfg, cell) * GEN_TOKENS / statistics.median(v) / 1e9
                             for k, v in times.items()}
    return result


# -- memory (fresh subprocess per framework) -----------------------------------------------
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(framework: str, name: str, cell: str, threads: int) -> None:
    """(subprocess) print the growth of peak RSS in MiB over two training steps."""
    torch = import_torch()
    set_num_threads(threads)
    cfg = CONFIGS[name]
    _, step = seqnet_setup(cfg, cell) if framework == "seqnet" else torch_setup(torch, cfg, cell)
    ids = np.random.default_rng(0).integers(0, VOCAB, (cfg["steps"] + 1, cfg["batch"]))
    Path("/proc/self/clear_refs").write_text("5")          # reset the peak-RSS mark
    before = _rss_kib("VmRSS")
    for _ in range(2):
        step(ids[:-1], ids[1:])
    print(json.dumps({"peak_mib": (_rss_kib("VmHWM") - before) / 1024}))


def bench_memory(torch, name: str, cell: str, threads: int) -> dict:
    result = {}
    for framework in ["seqnet"] + (["torch"] if torch is not None else []):
        proc = subprocess.run([sys.executable, __file__, "--memory-probe", framework, name, cell,
                               "--threads", str(threads)], capture_output=True, text=True, check=True)
        result[framework] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]
    if "torch" in result:
        result["ratio"] = result["seqnet"] / result["torch"]
    return result


# -- reference figures ---------------------------------------------------------------------
def matmul_peak(torch) -> dict:
    """float32 GFLOP/s of a large square matmul and of one LSTM step's matmul (M config), and the
    GB/s at which a matrix-vector product streams a 12 MiB matrix (batch-1 generation's bound)."""
    def rate(fn, work, n=5):
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return work * n / (time.perf_counter() - start) / 1e9
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1024, 1024), dtype=np.float32), rng.standard_normal((1024, 1024), dtype=np.float32)
    h, w = rng.standard_normal((64, 512), dtype=np.float32), rng.standard_normal((512, 2048), dtype=np.float32)
    m, v = rng.standard_normal((3072, 1024), dtype=np.float32), rng.standard_normal((1024, 1), dtype=np.float32)
    out = {"numpy_1024": rate(lambda: a @ b, 2 * 1024 ** 3), "numpy_step_64x512x2048": rate(lambda: h @ w, 2 * 64 * 512 * 2048, 50)}
    if torch is not None:
        ta, tb, th, tw = (torch.from_numpy(v) for v in (a, b, h, w))
        out["torch_1024"] = rate(lambda: ta @ tb, 2 * 1024 ** 3)
        out["torch_step_64x512x2048"] = rate(lambda: th @ tw, 2 * 64 * 512 * 2048, 50)
    gemv = {"numpy_gemv_GBps": rate(lambda: m @ v, m.nbytes, 200)}
    if torch is not None:
        tm, tv = torch.from_numpy(m), torch.from_numpy(v)
        gemv["torch_gemv_GBps"] = rate(lambda: tm @ tv, m.nbytes, 200)
    return out, gemv


def op_counts() -> dict:
    cells = {"lstm": LSTMCell(), "gru": GRUCell(), "rnn": RNNCell("tanh"), "lstm_ln": LayerNormLSTMCell()}
    return {name: dict(zip(("forward", "backward"), ops_per_step(cell))) for name, cell in cells.items()}


# -- report ---------------------------------------------------------------------------------
def fmt_rate(entry: dict) -> str:
    return f"{entry['median']:>9,.0f} ({entry['min']:,.0f}-{entry['max']:,.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="S,M,L")
    parser.add_argument("--cells", default="lstm,gru,rnn")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gen-batches", default="1,64")
    parser.add_argument("--gen-configs", default="S,M,L")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--torch-without-onednn", action="store_true",
                        help="turn off PyTorch's oneDNN (its fused CPU LSTM) to see what it contributes")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--memory-probe", nargs=3, metavar=("FRAMEWORK", "CONFIG", "CELL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(*args.memory_probe, threads=args.threads)
        return 0

    torch = import_torch()
    if torch is not None and args.torch_without_onednn:
        torch.backends.mkldnn.enabled = False
    set_num_threads(args.threads)
    configs, cells = args.configs.split(","), args.cells.split(",")
    report = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "torch": getattr(torch, "__version__", None), "seqnet": seqnet.__version__,
                          "cpu": platform.processor() or platform.machine(), "threads": args.threads,
                          "torch_threads": torch.get_num_threads() if torch else None,
                          "torch_onednn": bool(torch.backends.mkldnn.enabled) if torch else None,
                          "thread_pools": thread_info()},
              "ops_per_step": op_counts(),
              "training": {}, "generation": {}, "memory_mib": {}}
    print(f"threads {args.threads} (torch {report['machine']['torch_threads']}, oneDNN "
          f"{'on' if report['machine']['torch_onednn'] else 'off'}); pools: "
          + ", ".join(f"{p['internal_api']}x{p['num_threads']}" for p in report["machine"]["thread_pools"]))
    report["matmul_gflops"], report["gemv_gbps"] = matmul_peak(torch)
    print("matmul GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in report["matmul_gflops"].items()))
    print("matrix-vector GB/s (3072x1024 float32): "
          + ", ".join(f"{k.split('_')[0]} {v:.1f}" for k, v in report["gemv_gbps"].items()))
    print("array ops per step (portable loop, = GPU launches): "
          + ", ".join(f"{c} {v['forward']:.0f} fwd / {v['backward']:.0f} bwd" for c, v in report["ops_per_step"].items()))
    print("\ntraining tokens/s, median (min-max)")
    print(f"{'config':<8}{'cell':<6}{'seqnet':>28}{'torch':>28}{'ratio':>8}{'GFLOP/s s/t':>14}")
    for name in configs:
        for cell in cells:
            r = bench_training(torch, name, cell, args.repeats)
            report["training"][f"{name}/{cell}"] = r
            ratio = f"{r['ratio']['median']:.2f}x" if "ratio" in r else "-"
            gf = "/".join(f"{v:.0f}" for v in r["gflops"].values())
            print(f"{name:<8}{cell:<6}{fmt_rate(r['seqnet']):>28}{fmt_rate(r['torch']) if 'torch' in r else '-':>28}"
                  f"{ratio:>8}{gf:>14}", flush=True)
    print("\ngeneration tokens/s (500 steps, sampled), median (min-max); weights read per second, GB/s")
    for name in args.gen_configs.split(","):
        for cell in cells:
            for batch in (int(b) for b in args.gen_batches.split(",")):
                r = bench_generation(torch, name, cell, batch, args.repeats)
                report["generation"][f"{name}/{cell}/b{batch}"] = r
                ratio = f"{r['ratio']['median']:.2f}x" if "ratio" in r else "-"
                gbps = "/".join(f"{v:.1f}" for v in r["weight_gbps"].values())
                print(f"{name:<4}{cell:<6}b={batch:<4}{fmt_rate(r['seqnet']):>28}"
                      f"{fmt_rate(r['torch']) if 'torch' in r else '-':>28}{ratio:>8}{gbps:>14}", flush=True)
    if not args.no_memory:
        print("\npeak memory growth during training, MiB (seqnet / torch / ratio)")
        for name in configs:
            for cell in cells:
                r = bench_memory(torch, name, cell, args.threads)
                report["memory_mib"][f"{name}/{cell}"] = r
                print(f"{name:<8}{cell:<6}{r['seqnet']:>8.1f}{r.get('torch', float('nan')):>10.1f}"
                      f"{r.get('ratio', float('nan')):>8.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
