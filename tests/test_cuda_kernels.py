"""The CuPy path's fused CUDA kernels, checked without a GPU.

1. Every kernel source compiles with NVRTC for compute_80 and compute_90 (float and double);
   broken sources fail.
2. The kernels' own source text, built as host C++ (seqnet/kernels/cupy/host.py), driven by the
   very driver CuPy runs, agrees with the portable reference on the fast-path cases: every
   cell, both GRU variants, variable lengths, both directions, training and inference, float64
   and float32. A flipped sign in the kernel source is caught.
3. Launches per step are counted and held to the targets of the CuPy path.
4. The cuBLAS argument mapping is checked against a column-major GEMM; dispatch picks the fused
   loop for CuPy without importing CuPy.
What needs a GPU (cuBLAS, CuPy's launches, GPU rounding) runs in scripts/gpu_check.py.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqnet
from seqnet import kernels
from seqnet.backend import to_numpy
from seqnet.backend.registry import Backend
from seqnet.cells import GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell
from seqnet.kernels import time_loop
from seqnet.kernels.cupy import driver, host, nvrtc, sources
from seqnet.kernels.cupy.counting import launches_per_step
from seqnet.kernels.cupy.device import CupyOps, Operand, gemm_arguments, kernel_arguments, operand

SRC = str(Path(__file__).resolve().parents[1] / "src")
IN_CI = bool(os.environ.get("CI"))


def _nvrtc_or_skip():
    """NVRTC, or a skip where it is not installed; in CI (CI set) a missing NVRTC fails."""
    try:
        return nvrtc.library()
    except nvrtc.NvrtcError as err:
        if IN_CI:
            raise
        pytest.skip(str(err))


def _host_or_skip():
    if host.compiler() is None:
        if IN_CI:
            pytest.fail("no C++ compiler: CI must check the kernels' math on the host")
        pytest.skip("no C++ compiler (g++) for the host build of the kernels")


# -- 1. NVRTC ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", nvrtc.ARCHITECTURES)
@pytest.mark.parametrize("dtype", list(sources.REAL_TYPES))
def test_every_kernel_compiles_with_nvrtc(dtype, arch):
    _nvrtc_or_skip()
    ptx, log = nvrtc.compile_ptx(sources.translation_unit(dtype), "seqnet.cu",
                                 nvrtc.OPTIONS + nvrtc.CUPY_ADDS + (f"--gpu-architecture={arch}",))
    assert f".target sm_{arch.split('_')[1]}" in ptx
    for name in sources.kernel_signatures():
        assert f".entry {name}(" in ptx, name          # extern "C": callable by name from CuPy
    assert sources.translation_unit(dtype).startswith(f"#define SEQNET_REAL {sources.REAL_TYPES[dtype]}\n")


@pytest.mark.parametrize("breakage,message", [
    (("s.c = s.f * c_prev + s.i * s.g;", "s.c = s.f * c_prev + s.i * s_g;"), "identifier"),        # a typo
    (("const real r = a[row], u", "real* r = a[row], u"), "real"),                              # a type error
    (("const LstmStep s = lstm_step(", "const LstmStep s = lstm_step(c_prev, "), "argument"),    # an arity error
    (("real part = 0;\n        for (int k = tid; k < width; k += threads) part += a[k];",       # a warning
      "real part = 0, unused = 0;\n        for (int k = tid; k < width; k += threads) part += a[k];"), "unused"),
])
def test_a_broken_kernel_source_fails_to_compile(breakage, message):
    _nvrtc_or_skip()
    unit = sources.translation_unit("float32")
    old, new = breakage
    assert old in unit
    with pytest.raises(nvrtc.NvrtcError, match=message):
        nvrtc.compile_ptx(unit.replace(old, new, 1), "broken.cu",
                          nvrtc.OPTIONS + nvrtc.CUPY_ADDS + ("--gpu-architecture=compute_90",))


def test_signatures_are_read_from_the_sources():
    sigs = sources.kernel_signatures()
    assert set(sigs) >= {"lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "gru_cho_reset",
                         "gru_cho_forward", "gru_cho_backward", "gru_cho_backward_reset", "rnn_forward",
                         "rnn_backward", "lstm_ln_forward", "lstm_ln_backward", "sample_tokens"}
    kinds = [p.kind for p in sigs["rnn_forward"]]
    assert kinds == ["pointer", "pointer", "pointer", "pointer"] + ["int"] * 6
    barriers = {name for name, (_, sync) in sources.parse_kernels(sources.translation_unit("float32")).items() if sync}
    assert barriers == {"lstm_ln_forward", "lstm_ln_backward", "sample_tokens"}


# -- 2. the kernels' math on the host, against the reference -----------------------------------
CASES = [
    (seqnet.LSTM, {}),
    (seqnet.LSTM, {"layer_norm": True}),
    (seqnet.GRU, {}),
    (seqnet.GRU, {"reset_after": False}),
    (seqnet.RNN, {"nonlinearity": "tanh"}),
    (seqnet.RNN, {"nonlinearity": "relu"}),
]


@pytest.fixture
def fused_on_numpy(monkeypatch):
    """The numpy backend runs the CuPy path's override table, on the host build of the kernels."""
    _host_or_skip()
    monkeypatch.setitem(kernels.OVERRIDE_MODULES, "numpy", "seqnet.kernels.cupy.host")
    return host


def _reference(layer):
    layer.backend = copy.copy(layer.backend)
    layer.backend.fast_paths = False
    return layer


def _run(layer, x, hx, d_out, d_hn, lengths):
    (out, h_n), backprop = layer.forward(x, hx, lengths)
    dx, dhx = backprop(d_out, d_hn)
    flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    inference = layer(x, hx, lengths)
    return [out, *flat(h_n), dx, *flat(dhx), inference[0], *flat(inference[1])], layer.grads


def _tolerance(dtype, kwargs):
    """Allowed difference from the reference, relative to the largest value compared."""
    if kwargs.get("layer_norm"):
        return 1e-11 if dtype == "float64" else None       # float32: see _assert_as_accurate
    return 1e-13 if dtype == "float64" else 3e-6


def _assert_agree(got, want, tol, name=""):
    got, want = to_numpy(got), to_numpy(want)
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale, err_msg=name)


def _assert_as_accurate(got, want, truth, name=""):
    """LN over 3 units is ill-conditioned: in float32 the reference itself is ~1e-4 (relative to
    the largest gradient) from float64. The fused kernels must be about as close to float64."""
    got, want, truth = (np.asarray(to_numpy(v), np.float64) for v in (got, want, truth))
    scale = max(1.0, float(np.max(np.abs(truth))))
    reference_error = float(np.max(np.abs(want - truth)))
    assert float(np.max(np.abs(got - truth))) <= 3 * reference_error + 1e-6 * scale, name


def _inputs(cls, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 4)).astype(dtype)
    hx = rng.standard_normal((4, 3, 3)).astype(dtype)
    d_out = rng.standard_normal((5, 3, 6)).astype(dtype)
    d_hn = rng.standard_normal((4, 3, 3)).astype(dtype)
    if cls is seqnet.LSTM:
        hx, d_hn = (hx, hx * 0.5), (d_hn, d_hn * 2.0)
    return x, hx, d_out, d_hn


@pytest.mark.parametrize("cls,kwargs", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_fused_kernels_match_the_reference(fused_on_numpy, cls, kwargs, dtype, lengths):
    layer = cls(4, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=7, **kwargs)
    reference = _reference(cls(4, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=7, **kwargs))
    x, hx, d_out, d_hn = _inputs(cls, dtype)
    ops = host.host_ops(dtype)
    before = ops.total_launches
    got, got_grads = _run(layer, x, hx, d_out, d_hn, lengths)
    per_step = 4 if kwargs.get("reset_after") is False else 2
    # 2 layers x 2 directions x 5 steps x (forward + backward + inference forward)
    assert ops.total_launches - before == 4 * 5 * 3 * per_step            # the fused loop really ran
    want, want_grads = _run(reference, x, hx, d_out, d_hn, lengths)
    assert set(got_grads) == set(want_grads)
    names = [f"output {k}" for k in range(len(want))] + list(want_grads)
    got, want = got + [got_grads[n] for n in want_grads], want + [want_grads[n] for n in want_grads]
    tol = _tolerance(dtype, kwargs)
    if tol is None:
        truth_layer = _reference(cls(4, 3, num_layers=2, bidirectional=True, dtype="float64", seed=7, **kwargs))
        truth, truth_grads = _run(truth_layer, *_inputs(cls, "float64"), lengths)
        truth = truth + [truth_grads[n] for n in want_grads]
    for k, name in enumerate(names):
        assert isinstance(got[k], np.ndarray)
        if tol is None:
            _assert_as_accurate(got[k], want[k], truth[k], name)
        else:
            _assert_agree(got[k], want[k], tol, name)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_generation_steps_through_the_fused_kernels(fused_on_numpy, cell):
    """One-token steps (T = 1, no tape) equal re-running the whole sequence through the reference."""
    import string

    from seqnet.data import CharTokenizer
    from seqnet.models import LanguageModel

    tokenizer = CharTokenizer.fit(string.ascii_lowercase)
    model = LanguageModel(tokenizer.vocab_size, 6, 5, 2, cell, seed=2, tokenizer=tokenizer, dtype="float64")
    before = host.host_ops("float64").total_launches
    texts = model.generate("abc", 6, greedy=True, num_samples=2)
    assert host.host_ops("float64").total_launches > before
    _reference(model.rnn)
    rows = [list(tokenizer.encode("abc")) for _ in range(2)]
    for _ in range(6):
        logits, _ = model(np.array(rows).T)
        for row, token in zip(rows, np.argmax(to_numpy(logits)[-1], axis=-1)):
            row.append(int(token))
    assert texts == [tokenizer.decode(np.array(row)) for row in rows]


def _lstm_scan_error(unit: str | None) -> float:
    """Largest difference between a fused LSTM scan (kernels built from ``unit``) and the reference."""
    ops = host.HostOps("float64", unit)
    scan = driver.FusedScan(lambda dtype: ops)
    cell, rng = LSTMCell(), np.random.default_rng(0)
    p = time_loop.UnitParams(None, rng.standard_normal((3, 12)))
    xproj, state0 = rng.standard_normal((4, 2, 12)), (rng.standard_normal((2, 3)), rng.standard_normal((2, 3)))
    d_hs = rng.standard_normal((4, 2, 3))
    import array_api_compat.numpy as xp

    results = []
    for run in (scan, kernels.REFERENCE_SCAN):
        hs, final, tape = run.forward(cell, xproj, state0, p, None, False, xp=xp)
        d_state, d_xproj, _, _ = run.backward(cell, tape, d_hs, final, p, None, xp=xp)
        results.append([hs, *final, *d_state, d_xproj])
    return max(float(np.max(np.abs(a - b))) for a, b in zip(*results))


def test_a_flipped_sign_in_the_kernel_source_is_caught():
    """The agreement above is the kernel source's: change one sign in cells.cuh and it breaks."""
    _host_or_skip()
    unit = sources.translation_unit("float64")
    flipped = unit.replace("s.c = s.f * c_prev + s.i * s.g;", "s.c = s.f * c_prev - s.i * s.g;")
    assert flipped != unit
    assert _lstm_scan_error(unit) < 1e-13
    assert _lstm_scan_error(flipped) > 1e-3


def test_the_host_launcher_reports_a_divergent_barrier():
    _host_or_skip()
    unit = sources.translation_unit("float64") + '''
extern "C" __global__ void diverges(real* x) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    x[threadIdx.x] = real(1);
}
'''
    ops = host.HostOps("float64", unit)
    with pytest.raises(RuntimeError, match="divergent __syncthreads"):
        ops.launch("diverges", 1, 32, np.zeros(32))


def test_host_launch_checks_argument_types(fused_on_numpy):
    ops = host.host_ops("float64")
    args = [np.zeros((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), None, 0, -1, 0, 0, 1, 1]
    ops.launch("rnn_forward", 1, 32, *args)
    with pytest.raises(TypeError, match="expected 10 arguments"):
        ops.launch("rnn_forward", 1, 32, *args[:-1])
    with pytest.raises(TypeError, match="xproj: expected float64"):
        ops.launch("rnn_forward", 1, 32, np.zeros((1, 1, 1), np.float32), *args[1:])


# -- 3. launches per step ----------------------------------------------------------------------
LAUNCH_TARGETS = [            # cell, (forward, backward) counted, (forward, backward) targets
    (LSTMCell(), (2, 2), (2, 3)),
    (GRUCell(reset_after=True), (2, 2), (2, 3)),
    (GRUCell(reset_after=False), (4, 4), (4, 5)),        # one GEMM and one kernel more than PyTorch's GRU
    (RNNCell("tanh"), (2, 2), (2, 3)),
    (RNNCell("relu"), (2, 2), (2, 3)),
    (LayerNormLSTMCell(), (2, 2), (2, 3)),               # its row reductions live inside the kernels
]


@pytest.mark.parametrize("cell,counted,target", LAUNCH_TARGETS,
                         ids=["lstm", "gru", "gru_cho", "rnn_tanh", "rnn_relu", "lstm_ln"])
@pytest.mark.parametrize("masked", [False, True])
def test_launches_per_step(cell, counted, target, masked):
    _host_or_skip()
    forward, backward = launches_per_step(cell, host.host_ops("float64"), masked=masked)
    assert (forward, backward) == counted
    assert forward <= target[0] and backward <= target[1]


# -- 4. the cuBLAS mapping and dispatch ----------------------------------------------------------
def _column_major_gemm(memory, op_x, op_y, m, n, k, x, ldx, y, ldy, c, ldc, beta):
    """BLAS semantics on a flat float64 buffer (offsets in elements): C = op(X) op(Y) + beta C."""
    def mat(offset, rows, cols, ld):     # column-major rows x cols at offset
        return np.lib.stride_tricks.as_strided(memory[offset:], (rows, cols), (8, 8 * ld))
    xm = mat(x, *((m, k) if op_x == 0 else (k, m)), ldx)
    ym = mat(y, *((k, n) if op_y == 0 else (n, k)), ldy)
    cm = mat(c, m, n, ldc)
    cm[...] = (xm if op_x == 0 else xm.T) @ (ym if op_y == 0 else ym.T) + beta * cm


@pytest.mark.parametrize("a_layout", ["row", "col"])
@pytest.mark.parametrize("b_layout", ["row", "col"])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_gemm_arguments_compute_the_row_major_product(a_layout, b_layout, transpose_b):
    rng = np.random.default_rng(0)
    memory = np.zeros(4000)
    rows, k, n, total_rows = 3, 4, 5, 9

    def place(offset, value, layout, padding=2):
        """Write a matrix into memory in ``layout`` with a padded leading dimension -> Operand."""
        r, c = value.shape
        if layout == "row":
            ld = c + padding
            np.lib.stride_tricks.as_strided(memory[offset:], (r, c), (8 * ld, 8))[...] = value
            return Operand(offset, r, c, ld, 1, 1)
        ld = r + padding
        np.lib.stride_tricks.as_strided(memory[offset:], (r, c), (8, 8 * ld))[...] = value
        return Operand(offset, r, c, 1, ld, 1)

    a = rng.standard_normal((total_rows, k))
    b = rng.standard_normal((n, k) if transpose_b else (k, n))
    c0 = rng.standard_normal((total_rows, n))
    a_op, b_op, c_op = place(0, a, a_layout), place(1000, b, b_layout), place(2000, c0, "row")
    for a_row, out_row, accumulate in [(0, 0, False), (6, 3, True), (2, 5, False)]:
        before = np.lib.stride_tricks.as_strided(memory[2000:], (total_rows, n), (8 * c_op.row_stride, 8)).copy()
        arguments = gemm_arguments(c_op, out_row, a_op, a_row, b_op, rows, transpose_b)
        _column_major_gemm(memory, *arguments, 1.0 if accumulate else 0.0)
        after = np.lib.stride_tricks.as_strided(memory[2000:], (total_rows, n), (8 * c_op.row_stride, 8))
        want = before.copy()
        product = a[a_row:a_row + rows] @ (b.T if transpose_b else b)
        want[out_row:out_row + rows] = product + (before[out_row:out_row + rows] if accumulate else 0)
        np.testing.assert_allclose(after, want, rtol=1e-14, atol=1e-14)


def test_cupy_dispatch_takes_the_fused_loop_for_every_cell():
    """Decided by the dispatcher from the backend name and the cell's kernel key, without a GPU."""
    cupy_like = Backend("cupy", xp=None, device=None)
    from seqnet.kernels import cupy as cupy_kernels

    for cell in (LSTMCell(), LayerNormLSTMCell(), GRUCell(True), GRUCell(False), RNNCell("tanh")):
        for masked in (False, True):
            assert kernels.scan_kernels(cupy_like, cell, masked=masked) is cupy_kernels.SCAN_KERNELS[cell.kernel_key()]
    off = Backend("cupy", xp=None, device=None, fast_paths=False)
    assert kernels.scan_kernels(off, LSTMCell(), masked=False) is kernels.REFERENCE_SCAN

    class TweakedLSTM(LSTMCell):          # declares no kernel of its own: the reference runs
        pass

    assert kernels.scan_kernels(cupy_like, TweakedLSTM(), masked=False) is kernels.REFERENCE_SCAN


def test_the_cuda_path_and_its_host_checks_do_not_import_cupy():
    code = ("import sys, seqnet, seqnet.kernels.cupy, seqnet.kernels.cupy.host, seqnet.kernels.cupy.nvrtc; "
            "print('cupy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]


# -- next-token sampling on the device -------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("temperature,greedy,banned", [(1.0, False, -1), (0.7, False, 3), (1.0, True, -1),
                                                      (1.0, True, 5)])
def test_sampling_kernel_draws_what_sample_next_draws(dtype, temperature, greedy, banned):
    """Same logits and Gumbel noise -> the same tokens as seqnet.decoding.sample_next (numpy)."""
    _host_or_skip()
    from seqnet.decoding import sample_next

    ops = host.host_ops(dtype)
    rng = np.random.default_rng(4)
    rows, vocab, steps = 3, 300, 4                      # vocab > 256 threads: the grid-stride part runs too
    logits = rng.standard_normal((rows, vocab)).astype(dtype)
    bias = rng.standard_normal(vocab).astype(dtype)
    bias[[5, 7, 9]] = 0
    logits[1, 7] = logits[1, 9] = 10                    # a tie: the lower id wins, as np.argmax
    logits[0, 5] = 10                                   # the banned id would win row 0
    noise = rng.gumbel(size=(steps, rows, vocab))
    tokens = np.zeros((steps, rows), np.int64)
    for step in range(steps):
        ops.launch("sample_tokens", rows, driver.row_block(vocab), logits, bias, noise, tokens, temperature,
                   1, int(not greedy), step, banned, step, rows, vocab)
        host_logits = (logits + bias).astype(np.float64)
        if banned >= 0:
            host_logits[:, banned] = -np.inf
        want = sample_next(host_logits, rng, temperature=temperature, greedy=greedy, gumbel=noise[step])
        np.testing.assert_array_equal(tokens[step], want)
    if banned >= 0:
        assert banned not in tokens


def test_gpu_check_compile_only_runs_without_a_gpu():
    _nvrtc_or_skip()
    done = subprocess.run([sys.executable, str(Path(SRC).parent / "scripts" / "gpu_check.py"), "--compile-only"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    summary = json.loads(done.stdout)
    assert summary["compile"]["ok"] and set(summary["compile"]["kernels"]) == set(sources.kernel_signatures())


def test_gpu_check_names_missing_packages():
    sys.path.insert(0, str(Path(SRC).parent / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    assert gpu_check.missing({"numpy": "numpy", "no_such_module_for_seqnet": "the-wheel"}) == ["the-wheel"]


# -- generation on the device ----------------------------------------------------------------------
GEN_TEXT = "the cat sat on the mat\nthe dog sat on the log\n"


def _gen_model(cell="lstm", word=False, dtype="float64"):
    from seqnet.data import CharTokenizer, WordTokenizer
    from seqnet.models import LanguageModel

    tokenizer = (WordTokenizer if word else CharTokenizer).fit(GEN_TEXT)
    with seqnet.backend("numpy"):
        return LanguageModel(tokenizer.vocab_size, 8, 12, num_layers=2, cell=cell, dtype=dtype, seed=3,
                             tokenizer=tokenizer)


def _both_loops(model, length, *, eos=None, **kwargs):
    """(host loop, device loop) tokens for the same seed and prefix."""
    from seqnet.decoding import sample_tokens, sample_tokens_on_device

    prefix = np.repeat(model.tokenizer.encode("the ")[:, None], 3, axis=1)
    unk = model.tokenizer.unk_id
    host_ids = sample_tokens(model.token_steps(3, length), prefix, length, rng=np.random.default_rng(11),
                             eos_id=eos, banned_id=unk, **kwargs)
    device_ids = sample_tokens_on_device(model.device_token_steps(3, length), prefix, length,
                                         rng=np.random.default_rng(11), eos_id=eos, banned_id=unk, **kwargs)
    return host_ids, device_ids


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 0.6}, {"greedy": True}], ids=["plain", "temperature", "greedy"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_device_loop_draws_the_host_loops_tokens(kwargs, cell):
    """300 tokens: past the first block of 256 Gumbel draws."""
    host_ids, device_ids = _both_loops(_gen_model(cell), 300, **kwargs)
    assert host_ids.shape == (300, 3)
    np.testing.assert_array_equal(device_ids, host_ids)


def test_device_loop_stops_where_the_host_loop_stops():
    model = _gen_model("gru", word=True)
    eos = model.tokenizer.eos_id
    state = {k: to_numpy(v) for k, v in model.state_dict().items()}
    state["decoder.bias"][eos] = 3.0                    # likely, not certain: rows finish at different steps
    model.load_state_dict(state)
    host_ids, device_ids = _both_loops(model, 40, eos=eos)
    assert len(host_ids) < 40 and eos in host_ids[-1]
    np.testing.assert_array_equal(device_ids, host_ids)
    assert _both_loops(model, 0)[1].shape == (0, 3)


def test_device_loop_through_the_cuda_kernels(fused_on_numpy):
    """The fused scans and the sampling kernel of the CuPy path (host build) in the device loop."""
    ops = host.host_ops("float64")
    before = dict(ops.launches)
    _, device_ids = _both_loops(_gen_model("lstm"), 30)
    assert ops.launches["sample_tokens"] - before.get("sample_tokens", 0) == 30
    assert ops.launches["lstm_forward"] - before.get("lstm_forward", 0) > 2 * 29      # 2 layers, every token
    reference = _gen_model("lstm")
    _reference(reference.rnn)                             # the host loop on the portable reference scans
    host_ids, _ = _both_loops(reference, 30)
    np.testing.assert_array_equal(device_ids, host_ids)


def test_generate_off_numpy_uses_the_device_loop_and_gives_numpy_text(xb64, monkeypatch):
    from seqnet.models import language_model

    model = _gen_model("lstm")
    want = model.generate("the ", 20, seed=5, num_samples=2)
    calls = []
    real = language_model.sample_tokens_on_device
    monkeypatch.setattr(language_model, "sample_tokens_on_device", lambda *a, **k: calls.append(1) or real(*a, **k))
    model.to(xb64.name, xb64.device)
    assert model.generate("the ", 20, seed=5, num_samples=2) == want
    assert len(calls) == (0 if xb64.name == "numpy" else 1)
    assert model.generate("the ", 20, greedy=True) == _gen_model("lstm").generate("the ", 20, greedy=True)


class CublasGlueOnHost(host.HostOps):
    """HostOps whose GEMMs go through CupyOps' own cuBLAS glue (operands, argument mapping, the
    sgemm/dgemm call), with a column-major BLAS on raw host memory in place of cuBLAS."""

    matrix = staticmethod(operand)
    _gemm = CupyOps._gemm

    def __init__(self, dtype):
        import ctypes
        import types

        super().__init__(dtype)
        self._ctype = ctypes.c_double if dtype == "float64" else ctypes.c_float
        self._one, self._zero = np.ones(1, dtype), np.zeros(1, dtype)
        self._cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(device=types.SimpleNamespace(
            get_cublas_handle=lambda: 0)))
        self._gemm_fn = self._blas
        self.calls = 0

    def _at(self, address, rows, cols, ld):
        """Column-major rows x cols matrix at ``address`` with leading dimension ld, in place."""
        size = (cols - 1) * ld + rows
        flat = np.ctypeslib.as_array((self._ctype * size).from_address(address))
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (flat.itemsize, flat.itemsize * ld))

    def _blas(self, handle, op_x, op_y, m, n, k, alpha, x, ldx, y, ldy, beta, c, ldc):
        self.calls += 1
        a, b = self._ctype.from_address(alpha).value, self._ctype.from_address(beta).value
        xm = self._at(x, *((m, k) if op_x == 0 else (k, m)), ldx)
        ym = self._at(y, *((k, n) if op_y == 0 else (n, k)), ldy)
        cm = self._at(c, m, n, ldc)
        cm[...] = a * ((xm if op_x == 0 else xm.T) @ (ym if op_y == 0 else ym.T)) + b * cm


@pytest.mark.parametrize("cell", [LSTMCell(), GRUCell(True), GRUCell(False), RNNCell("tanh"), LayerNormLSTMCell()],
                         ids=["lstm", "gru", "gru_cho", "rnn", "lstm_ln"])
@pytest.mark.parametrize("reverse", [False, True])
def test_cupy_gemm_glue_computes_the_products(cell, reverse):
    """CupyOps' GEMM path, end to end through the driver, against the reference scans."""
    _host_or_skip()
    import array_api_compat.numpy as xp

    ops = CublasGlueOnHost("float64")
    scan = driver.FusedScan(lambda dtype: ops)
    rng = np.random.default_rng(5)
    steps, batch, hidden = 4, 3, 5
    width = cell.num_gates * hidden
    sizes = {"gates": width, "hidden": hidden}
    p = time_loop.UnitParams(None, rng.standard_normal((hidden, width)),
                             bias_hh=None if cell.fold_hidden_bias else rng.standard_normal(width),
                             extra={k: rng.standard_normal(sizes[s.size]) for k, s in cell.extra_params.items()})
    xproj = rng.standard_normal((steps, batch, width))
    state0 = tuple(rng.standard_normal((batch, hidden)) for _ in cell.state_names)
    d_hs = rng.standard_normal((steps, batch, hidden))
    mask = (np.arange(steps)[:, None] < np.array([4, 2, 3])[None, :])[:, :, None]
    masks = [mask[t] for t in range(steps)]
    results = []
    for run in (scan, kernels.REFERENCE_SCAN):
        hs, final, tape = run.forward(cell, xproj, state0, p, masks, reverse, xp=xp)
        d_state, d_xproj, d_hproj, _ = run.backward(cell, tape, d_hs, final, p, masks, xp=xp)
        d_w_hh = cell.recurrent_grads(tape, d_hproj, None, p, xp=xp)["weight_hh"]
        results.append([hs, *final, *d_state, d_xproj, d_w_hh])
    assert ops.calls == ops.launches["gemm"] > 0
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-11 * max(1.0, float(np.max(np.abs(b)))))


def test_cupy_kernel_arguments_have_the_declared_types():
    params = sources.kernel_signatures()["sample_tokens"]
    logits, tokens = np.zeros((2, 3), np.float32), np.zeros(2, np.int64)
    args = kernel_arguments(params, (logits, None, None, tokens, 0.5, 1, 0, 0, -1, 0, 2, 3), np.float32)
    assert args[0] is logits and args[3] is tokens
    assert args[1] == 0 and type(args[1]) is np.uint64 and type(args[2]) is np.uint64     # null pointers, 8 bytes
    assert type(args[4]) is np.float64 and args[4] == 0.5                                 # double temperature
    assert all(type(a) is np.int32 for a in args[5:])
    assert len(args) == len(params)
