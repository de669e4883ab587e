"""Stacked, optionally bidirectional recurrent layers: RNN, LSTM (optionally layer-normalised), GRU.

All of them are one class, :class:`Recurrent`, parametrized by a cell. Shapes follow
PyTorch: x (T, B, I) or (B, T, I) with ``batch_first``; out (T, B, D*H);
h_n (D*num_layers, B, H) with D = 2 if bidirectional else 1.

Internal layout of each layer and direction: ``weight_ih`` (I, G*H) and ``weight_hh``
(H, G*H), transposed from PyTorch's and with gates in the cell's internal order, so that
the input projection of all timesteps is one (T*B, I) @ (I, G*H) matmul. Per layer and
direction the work is: input projection (one matmul), :meth:`Cell.project_input` (the
bias, or the cell's own transform), the time loop that :func:`seqnet.kernels.scan_kernels`
selects, and after backward one matmul per weight gradient.

:meth:`Recurrent.steps` runs a unidirectional stack one timestep at a time with a tape, and
walks it back one step at a time (:class:`RecurrentSteps`), for decoders whose next input
depends on their previous output; :meth:`Recurrent.stepper` is its tape-free form for
generation.
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np

from .. import kernels
from ..backend import check_array
from ..cells import Cell, GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell
from ..errors import ConfigError, DTypeError, SeqnetWarning, ShapeError, check_bool, check_positive_int, check_real
from ..kernels import time_loop
from ..kernels.time_loop import UnitParams
from ..random_state import check_seed
from .base import BackpropOnce, Layer
from .dropout import check_dropout, dropout_mask
from .embedding import check_token_ids
from .masks import check_lengths, check_steps_and_rows

INITS = ("uniform", "orthogonal")
_SUFFIX = re.compile(r"_l\d+(_reverse)?$")


class Recurrent(Layer):
    """A stack of recurrent layers driven by one cell type.

    Training: ``(out, h_n), backprop = layer.forward(x, hx, lengths)`` then
    ``dx, dhx = backprop(d_out, d_h_n)``; parameter gradients accumulate in ``grads``.
    Inference: ``out, h_n = layer(x, hx, lengths)``.

    ``input_table`` (V, G*H) (unidirectional stacks) makes x token ids (T, B) whose layer-0
    input projections ``input @ weight_ih_l0^T`` are rows of the table: a language model's
    embedding times ``weight_ih_l0^T``, made once per call instead of (T*B, E) x (E, G*H)
    products. backprop then returns the gradient w.r.t. the table (V, G*H) and leaves
    ``weight_ih_l0``'s gradient to the caller.

    ``dropout_rng`` (a numpy Generator) draws the dropout masks between layers; it starts as
    the generator of the initial weights and may be replaced (a model shares its own).
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = None,
        seed: int | None = None,
        init: str = "uniform",
        forget_bias: float | None = None,
    ):
        super().__init__(dtype)
        self.cell = cell
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.dropout = check_dropout(dropout)
        if self.dropout and self.num_layers == 1:
            warnings.warn(f"dropout: acts between stacked layers, so with num_layers=1 dropout={dropout!r} does "
                          "nothing (as in PyTorch)", SeqnetWarning, stacklevel=3)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        if init not in INITS:
            raise ConfigError(f"init: expected one of {INITS}, received {init!r}")
        self.init = init
        self.forget_bias = None if forget_bias is None else check_real("forget_bias", forget_bias,
                                                                       "a finite number (or None)")
        self.dropout_rng = np.random.default_rng(check_seed(seed))
        self._init_params(self._initial_host_params(self.dropout_rng))

    # -- parameter names and layout ---------------------------------------------------
    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _units(self):
        """(layer, direction, index into h_n, parameter-name suffix) in PyTorch's order."""
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                yield layer, direction, layer * self.num_directions + direction, self._suffix(layer, direction)

    def _layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size * self.num_directions

    def _initial_host_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch-layout parameters drawn on the host: the same seed gives the same weights on every backend."""
        gh, hidden = self.cell.num_gates * self.hidden_size, self.hidden_size
        bound = 1.0 / math.sqrt(hidden)
        sizes = {"gates": gh, "hidden": hidden}
        params: dict[str, np.ndarray] = {}
        for layer, _, _, sfx in self._units():
            params["weight_ih" + sfx] = rng.uniform(-bound, bound, (gh, self._layer_input_size(layer)))
            w_hh = rng.uniform(-bound, bound, (gh, hidden))
            if self.init == "orthogonal":
                w_hh = np.concatenate([self._orthogonal(rng, hidden) for _ in range(self.cell.num_gates)], axis=0)
            params["weight_hh" + sfx] = w_hh
            if self.bias:
                params["bias_ih" + sfx] = rng.uniform(-bound, bound, gh)
                params["bias_hh" + sfx] = rng.uniform(-bound, bound, gh)
                if self.forget_bias is not None and isinstance(self.cell, LSTMCell):
                    forget = slice(hidden, 2 * hidden)  # PyTorch order i, f, g, o
                    params["bias_ih" + sfx][forget] = float(self.forget_bias)
                    params["bias_hh" + sfx][forget] = 0.0
            for stem, spec in self.cell.extra_params.items():
                params[stem + sfx] = np.full(sizes[spec.size], spec.init)
        return params

    @staticmethod
    def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        return q * np.sign(np.diag(r))

    def _gate_blocks(self, value, order: list[int]):
        """Reorder the gate blocks along axis 0: block k of the result is block ``order[k]``."""
        if order == sorted(order):
            return value
        h = self.hidden_size
        return self.backend.xp.concat([value[k * h:(k + 1) * h, ...] for k in order], axis=0)

    def _layout(self, name: str) -> str:
        """"weight" (transposed, gate blocks), "gates" (gate blocks) or "plain" for parameter ``name``."""
        stem = _SUFFIX.sub("", name)
        if stem in ("weight_ih", "weight_hh"):
            return "weight"
        spec = self.cell.extra_params.get(stem)
        return "plain" if spec is not None and spec.size == "hidden" else "gates"

    def _to_internal(self, name, value):
        layout = self._layout(name)
        if layout == "plain":
            return value
        value = self._gate_blocks(value, self.cell.gate_permutation)
        return self.backend.xp.matrix_transpose(value) if layout == "weight" else value

    def _to_public(self, name, value):
        layout = self._layout(name)
        if layout == "plain":
            return value
        inverse = [self.cell.gate_permutation.index(k) for k in range(self.cell.num_gates)]
        if layout == "weight":
            return self._gate_blocks(self.backend.xp.matrix_transpose(value), inverse)
        return self._gate_blocks(value, inverse)

    def _public_shape(self, name, internal_shape):
        return internal_shape[::-1] if self._layout(name) == "weight" else internal_shape

    def _unit_params(self, layer: int, direction: int) -> UnitParams:
        sfx = self._suffix(layer, direction)
        value = {name: param.value for name, param in self._params.items()}
        b_ih, b_hh = value.get("bias_ih" + sfx), value.get("bias_hh" + sfx)
        input_bias = None if b_ih is None else (b_ih + b_hh if self.cell.fold_hidden_bias else b_ih)
        return UnitParams(value["weight_ih" + sfx], value["weight_hh" + sfx], b_ih, b_hh,
                          {stem: value[stem + sfx] for stem in self.cell.extra_params}, input_bias)

    # -- input checking ---------------------------------------------------------------
    def _check_input(self, x, input_table=None):
        """x (T, B, I), or token ids (T, B) with ``input_table``; batch-first inputs are swapped to time-major."""
        xp = self.backend.xp
        if input_table is None:
            x = check_array(self.backend, x, "x", ndim=3, dtype=self.dtype_name)
            if x.shape[-1] != self.input_size:
                raise ShapeError(f"x: expected feature size (last dim) {self.input_size}, received shape {tuple(x.shape)}")
        else:
            x = self._check_ids_and_table(x, input_table)
        if self.batch_first:
            x = xp.permute_dims(x, (1, 0) + tuple(range(2, x.ndim)))
        check_steps_and_rows("x", tuple(x.shape))
        return x

    def _check_ids_and_table(self, ids, table):
        if self.num_directions != 1:
            raise ConfigError("input_table: needs a unidirectional layer (one input projection for layer 0)")
        width = self.cell.num_gates * self.hidden_size
        table = check_array(self.backend, table, "input_table", ndim=2, dtype=self.dtype_name)
        if table.shape[-1] != width:
            raise ShapeError(f"input_table: expected shape (V, {width}) (V, num_gates * hidden_size), "
                             f"received {tuple(table.shape)}")
        ids = check_array(self.backend, ids, "x", ndim=2)
        if "int" not in self.backend.dtype_name(ids.dtype):
            raise DTypeError(f"x: expected integer token ids (T, B) with input_table, received dtype "
                             f"{self.backend.dtype_name(ids.dtype)}")
        return check_token_ids(self.backend, ids, "x", table.shape[0])

    def _state_shape(self, batch: int) -> tuple[int, int, int]:
        return (self.num_layers * self.num_directions, batch, self.hidden_size)

    def _check_state(self, value, name: str, batch: int):
        value = check_array(self.backend, value, name, ndim=3, dtype=self.dtype_name)
        if tuple(value.shape) != self._state_shape(batch):
            raise ShapeError(f"{name}: expected shape {self._state_shape(batch)} (D*num_layers, B, H), received {tuple(value.shape)}")
        return value

    def _split_state(self, hx, batch: int, name: str) -> list[tuple]:
        """hx -> one state tuple per (layer, direction); None means zeros."""
        n_state = len(self.cell.state_names)
        if hx is None:
            zeros = self.backend.zeros((batch, self.hidden_size), self.dtype)
            return [tuple(zeros for _ in range(n_state)) for _ in self._units()]
        parts = self._state_parts(hx, name)
        parts = [
            self._check_state(p, f"{name}[{k}]" if n_state > 1 else name, batch) if p is not None
            else self.backend.zeros(self._state_shape(batch), self.dtype)
            for k, p in enumerate(parts)
        ]
        return [tuple(p[idx, ...] for p in parts) for _, _, idx, _ in self._units()]

    def _state_parts(self, hx, name: str) -> list:
        n_state = len(self.cell.state_names)
        names = " and ".join(self.cell.state_names)
        if n_state == 1:
            if isinstance(hx, (tuple, list)):
                raise ShapeError(f"{name}: expected one (D*num_layers, B, H) array (this cell's state is h alone), "
                                 f"received a {type(hx).__name__} of {len(hx)}")
            return [hx]
        if not isinstance(hx, (tuple, list)) or len(hx) != n_state:
            got = f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else f"a {type(hx).__name__}"
            raise ShapeError(f"{name}: expected a tuple of {n_state} arrays ({names}), received {got}")
        return list(hx)

    def _join_state(self, per_unit: list[tuple]):
        xp = self.backend.xp
        joined = [xp.stack([s[k] for s in per_unit]) for k in range(len(self.cell.state_names))]
        return joined[0] if len(joined) == 1 else tuple(joined)

    def _masks(self, lengths, steps: int, batch: int):
        """lengths -> (per-step (B, 1) bool masks, (T, B, 1) mask); (None, None) when every row is full."""
        if lengths is None:
            return None, None
        host = check_lengths(lengths, batch, steps)
        if np.all(host == steps):
            return None, None
        mask = self.backend.asarray((np.arange(steps)[:, None] < host[None, :])[:, :, None])
        return [mask[t, ...] for t in range(steps)], mask

    # -- forward and backward ---------------------------------------------------------
    def __call__(self, x, hx=None, lengths=None, *, input_table=None):
        """Inference: ``out, h_n = layer(x, hx, lengths)`` (no dropout, nothing kept for backward)."""
        return self._run(x, hx, lengths, training=False, input_table=input_table)[0]

    def forward(self, x, hx=None, lengths=None, *, input_table=None):
        """Training forward: returns ``((out, h_n), backprop)``; dropout between layers is active."""
        return self._run(x, hx, lengths, training=True, input_table=input_table)

    def _project(self, layer_input, flat_ids, input_table, p: UnitParams, steps: int, batch: int):
        """Layer input (T, B, I), or token ids with a table -> (xproj (T, B, G*H), what backward needs)."""
        xp = self.backend.xp
        if input_table is None:
            xproj, cache = self.cell.project_input(xp.matmul(layer_input, p.weight_ih), p, xp=xp)
        else:                                          # project the V table rows once, then look up
            rows, cache = self.cell.project_input(input_table, p, xp=xp)
            xproj = xp.take(rows, flat_ids, axis=0)
        return xp.reshape(xproj, (steps, batch, -1)), cache

    def _run(self, x, hx, lengths, training: bool, input_table):
        backend, xp = self.backend, self.backend.xp
        with backend.activate():
            x = self._check_input(x, input_table)
            steps, batch = x.shape[0], x.shape[1]
            states0 = self._split_state(hx, batch, "hx")
            masks, mask_all = self._masks(lengths, steps, batch)
            scan = kernels.scan_kernels(backend, self.cell, masked=masks is not None)
            flat_ids = None if input_table is None else xp.reshape(x, (-1,))
            table_rows = None if input_table is None else input_table.shape[0]
            layer_inputs, drops, units, finals = [], [], {}, [None] * len(states0)
            layer_input = x
            for layer in range(self.num_layers):
                drop = None
                if training and layer > 0 and self.dropout > 0:
                    drop = dropout_mask(self.dropout_rng, tuple(layer_input.shape), self.dropout, backend, self.dtype_name)
                    layer_input = layer_input * drop
                table = input_table if layer == 0 else None
                flat_input = None if table is not None else xp.reshape(layer_input, (steps * batch, -1))
                layer_inputs.append(flat_input)
                drops.append(drop)
                outs = []
                for direction in range(self.num_directions):
                    idx = layer * self.num_directions + direction
                    p = self._unit_params(layer, direction)
                    xproj, proj_cache = self._project(flat_input, flat_ids, table, p, steps, batch)
                    hs, finals[idx], tape = scan.forward(
                        self.cell, xproj, states0[idx], p, masks, bool(direction), xp=xp, keep_tape=training)
                    units[idx] = (p, proj_cache, tape)
                    outs.append(hs)
                    xproj = None                                            # free it before the next one
                layer_input = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
                if mask_all is not None:
                    layer_input = xp.where(mask_all, layer_input, 0.0)
            out = xp.permute_dims(layer_input, (1, 0, 2)) if self.batch_first else layer_input
            result = (out, self._join_state(finals))

        if not training:
            return result, None
        guard = BackpropOnce()

        def backprop(d_out=None, d_h_n=None):
            """d_out: like out; d_h_n: like h_n (either may be None). Returns (dx, dhx); accumulates grads.

            dx is the gradient w.r.t. ``input_table`` (V, G*H) when the forward looked one up.
            May be called once per forward (the tape is consumed, as with PyTorch's backward)."""
            guard.check()
            return self._backprop(d_out, d_h_n, steps, batch, masks, mask_all, layer_inputs, drops, units, scan,
                                  flat_ids, table_rows, guard)

        return result, backprop

    def _backprop(self, d_out, d_h_n, steps, batch, masks, mask_all, layer_inputs, drops, units, scan, flat_ids,
                  table_rows, guard):
        backend, xp = self.backend, self.backend.xp
        hidden, n_dir = self.hidden_size, self.num_directions
        with backend.activate():
            d_layer_out = None
            if d_out is not None:
                out_shape = (batch, steps, n_dir * hidden) if self.batch_first else (steps, batch, n_dir * hidden)
                d_out = check_array(backend, d_out, "d_out", ndim=3, dtype=self.dtype_name)
                if tuple(d_out.shape) != out_shape:
                    raise ShapeError(f"d_out: expected the shape of out {out_shape}, received {tuple(d_out.shape)}")
                d_layer_out = xp.permute_dims(d_out, (1, 0, 2)) if self.batch_first else d_out
            d_finals = self._split_state(d_h_n, batch, "d_h_n")
            guard.consume()                   # inputs are valid: from here on the tape is consumed
            d_states0 = [None] * len(d_finals)
            for layer in range(self.num_layers - 1, -1, -1):
                flat_input = layer_inputs[layer]                 # None: looked up in input_table
                if d_layer_out is not None and mask_all is not None:
                    d_layer_out = xp.where(mask_all, d_layer_out, 0.0)
                d_flat_input = None
                for direction in range(n_dir):
                    idx = layer * n_dir + direction
                    sfx = self._suffix(layer, direction)
                    p, proj_cache, tape = units[idx]
                    d_hs = None
                    if d_layer_out is not None:
                        d_hs = d_layer_out if n_dir == 1 else d_layer_out[..., direction * hidden:(direction + 1) * hidden]
                    d_states0[idx], d_xproj, d_hproj, d_extra = scan.backward(
                        self.cell, tape, d_hs, d_finals[idx], p, masks, xp=xp)
                    grads = self.cell.recurrent_grads(tape, d_hproj, d_extra, p, xp=xp)
                    units[idx] = tape = d_hproj = None                          # free memory as we go
                    d_x2 = xp.reshape(d_xproj, (steps * batch, -1))
                    if flat_input is None:                 # per-token sums, then back through the table's projection
                        d_x2 = kernels.kernel(backend, "embedding_backward")(flat_ids, d_x2, table_rows, xp=xp)
                    d_raw, proj_grads = self.cell.project_input_backward(d_x2, proj_cache, p, xp=xp)
                    grads.update(proj_grads)
                    if flat_input is not None:
                        grads["weight_ih"] = xp.matmul(xp.matrix_transpose(flat_input), d_raw)
                    for stem, g in grads.items():
                        param = self._params[stem + sfx]
                        param.grad = param.grad + g
                    grads = d_xproj = d_x2 = None
                    d_in = d_raw if flat_input is None else xp.matmul(d_raw, xp.matrix_transpose(p.weight_ih))
                    d_flat_input = d_in if d_flat_input is None else d_flat_input + d_in
                layer_inputs[layer] = flat_input = None
                if layer == 0 and flat_ids is not None:
                    return d_flat_input, self._join_state(d_states0)          # the table's gradient (V, G*H)
                d_layer_out = xp.reshape(d_flat_input, (steps, batch, -1))
                if drops[layer] is not None:
                    d_layer_out = d_layer_out * drops[layer]
            dx = xp.permute_dims(d_layer_out, (1, 0, 2)) if self.batch_first else d_layer_out
            return dx, self._join_state(d_states0)

    # -- one step at a time -------------------------------------------------------------
    def step_states(self, hx, batch: int) -> list[tuple]:
        """hx (as returned in h_n, or None) -> the per-layer state list that a stepper takes."""
        return self._split_state(hx, batch, "hx")

    def stepper(self, *, input_table=None):
        """A function ``(x, states) -> (top hidden state (B, H), new states)``: one timestep of a
        unidirectional stack, for token-by-token generation (no checks, no tape).

        x: (B, I) features, or (B,) token ids whose layer-0 input projections are rows of
        ``input_table`` (V, G*H) (projected once, here); states: from :meth:`step_states`.
        Weights are read when the stepper is made.
        """
        xp = self.backend.xp
        cell = self.cell
        scan = kernels.scan_kernels(self.backend, cell, masked=False)
        units = [self._unit_params(layer, 0) for layer in range(self.num_layers)]
        rows = None if input_table is None else cell.project_input(input_table, units[0], xp=xp)[0]

        def step(x, states: list[tuple]):
            new_states, h = [], x
            for layer, p in enumerate(units):
                if layer == 0 and rows is not None:
                    xproj = xp.take(rows, h, axis=0)
                else:
                    xproj = cell.project_input(xp.matmul(h, p.weight_ih), p, xp=xp)[0]
                hs, final, _ = scan.forward(cell, xproj[None, ...], states[layer], p, None, False,
                                            xp=xp, keep_tape=False)
                h = hs[0, ...]
                new_states.append(final)
            return h, new_states
        return step


    def steps(self, batch: int, hx=None, lengths=None, *, training: bool = True) -> "RecurrentSteps":
        """A forward run one timestep at a time, with a tape, for recurrences whose next input
        depends on the previous output (a decoder with input feeding); see :class:`RecurrentSteps`.

        Unidirectional stacks only. ``hx`` as in :meth:`forward`; ``lengths`` (B,) as in
        :meth:`forward` (rows past their length carry their state and output zeros);
        ``training`` draws dropout masks between layers. Weights are read now.
        """
        return RecurrentSteps(self, batch, hx, lengths, training)


class RecurrentSteps:
    """One stepped forward pass of a :class:`Recurrent` stack and its backward, step by step.

    ``h = run.step(x)`` feeds x (B, I) and returns the top layer's output (B, H); ``run.h_n``
    is the state so far (h_n's layout). Backward walks the steps latest first:
    ``run.begin_backward(d_h_n)``, then ``dx = run.backstep(d_h)`` once per step, from the last
    to the first, then ``dhx = run.end_backward()``, which adds every parameter gradient
    (once, from all steps: W_hh by :meth:`Cell.recurrent_grads`, W_ih as one matmul).

    Each layer is a :class:`seqnet.kernels.time_loop.SteppedScan`: the reference loop's own
    step (the cells' ``forward_step`` / ``backward_step``, with the same masking), on every
    backend. The fused whole-sequence kernels of :func:`seqnet.kernels.scan_kernels` cannot
    serve here: they run all T steps inside one call, and this caller needs each step's
    output before it can make the next step's input. Stepping a whole sequence equals
    :meth:`Recurrent.forward` and its backprop (tests/test_stepping.py).
    """

    def __init__(self, layer: Recurrent, batch: int, hx, lengths, training: bool):
        if layer.num_directions != 1:
            raise ConfigError("steps: needs a unidirectional layer (a reverse direction needs the whole input first)")
        self.layer, self.batch = layer, check_positive_int("batch", batch)
        self.training = check_bool("training", training)
        xp = layer.backend.xp
        self._units = [layer._unit_params(k, 0) for k in range(layer.num_layers)]
        states0 = layer._split_state(hx, self.batch, "hx")
        self._scans = [time_loop.SteppedScan(layer.cell, p, s, xp=xp) for p, s in zip(self._units, states0)]
        self._lengths = None if lengths is None else check_lengths(lengths, self.batch, None)
        self._records: list[list] = []        # per step, per layer: (layer input, projection cache, dropout mask)
        self._masks: list = []
        self._backward = None                 # per layer: [d_raw per step (latest first), summed projection grads]
        self._walked = 0
        self._steps = 0
        self._guard = BackpropOnce("RecurrentSteps begin_backward")
        self._end_guard = BackpropOnce("RecurrentSteps end_backward")

    @property
    def h_n(self):
        """The state after the steps so far, in :meth:`Recurrent.forward`'s h_n layout."""
        return self.layer._join_state([scan.state for scan in self._scans])

    @property
    def num_steps(self) -> int:
        return self._steps

    def _mask(self, t: int):
        if self._lengths is None or np.all(self._lengths > t):
            return None
        return self.layer.backend.asarray((self._lengths > t)[:, None])

    def step(self, x):
        """x (B, I) -> the top layer's output at this step (B, H), zero where a row is past its length."""
        layer, xp = self.layer, self.layer.backend.xp
        if self._guard.used:
            raise ConfigError("step: backward has begun; make a new run with Recurrent.steps()")
        x = check_array(layer.backend, x, "x", ndim=2, dtype=layer.dtype_name)
        if tuple(x.shape) != (self.batch, layer.input_size):
            raise ShapeError(f"x: expected shape ({self.batch}, {layer.input_size}) (B, input_size), "
                             f"received {tuple(x.shape)}")
        mask = self._mask(self.num_steps)
        records, h = [], x
        for k, (p, scan) in enumerate(zip(self._units, self._scans)):
            drop = None
            if self.training and k > 0 and layer.dropout > 0:
                drop = dropout_mask(layer.dropout_rng, tuple(h.shape), layer.dropout, layer.backend, layer.dtype_name)
                h = h * drop
            xproj, cache = layer.cell.project_input(xp.matmul(h, p.weight_ih), p, xp=xp)
            records.append((h, cache, drop))
            h = scan.forward(xproj, mask)
            if mask is not None:
                h = xp.where(mask, h, 0.0)
        self._records.append(records)
        self._masks.append(mask)
        self._steps += 1
        return h

    def begin_backward(self, d_h_n=None) -> None:
        """Start walking back: d_h_n like :attr:`h_n` (None: no gradient on the final state)."""
        self._guard.check()
        if not self._steps:
            raise ConfigError("begin_backward: no step was run; call step(x) first")
        d_finals = self.layer._split_state(d_h_n, self.batch, "d_h_n")
        self._guard.consume()
        for scan, d_final in zip(self._scans, d_finals):
            scan.begin_backward(d_final)
        self._backward = [([], {}) for _ in self._units]

    def backstep(self, d_h):
        """The latest step not yet walked: d_h (B, H), the gradient of its output -> dx (B, I)."""
        layer, xp = self.layer, self.layer.backend.xp
        if not self._guard.used:
            raise ConfigError("backstep: call begin_backward() first")
        self._end_guard.check()
        if self._walked == self.num_steps:
            raise ConfigError(f"backstep: all {self.num_steps} steps were already walked back")
        d_h = check_array(layer.backend, d_h, "d_h", ndim=2, dtype=layer.dtype_name)
        if tuple(d_h.shape) != (self.batch, layer.hidden_size):
            raise ShapeError(f"d_h: expected shape ({self.batch}, {layer.hidden_size}) (B, hidden_size), "
                             f"received {tuple(d_h.shape)}")
        t = self.num_steps - 1 - self._walked
        mask = self._masks[t]
        for k in range(len(self._units) - 1, -1, -1):
            p, (_, cache, drop) = self._units[k], self._records[t][k]
            if mask is not None:
                d_h = xp.where(mask, d_h, 0.0)
            d_xproj = self._scans[k].backward(d_h, mask)
            d_raw, grads = layer.cell.project_input_backward(d_xproj, cache, p, xp=xp)
            d_raws, sums = self._backward[k]
            d_raws.append(d_raw)
            for stem, g in grads.items():
                sums[stem] = g if stem not in sums else sums[stem] + g
            d_h = xp.matmul(d_raw, xp.matrix_transpose(p.weight_ih))
            if drop is not None:
                d_h = d_h * drop
        self._walked += 1
        return d_h

    def end_backward(self):
        """Add every parameter gradient; returns dhx (like h_n), the gradient w.r.t. the initial state."""
        layer, xp = self.layer, self.layer.backend.xp
        self._end_guard.check()
        if not self._guard.used or self._walked != self.num_steps:
            raise ConfigError(f"end_backward: call begin_backward() and walk back all {self.num_steps} steps first "
                              f"({self._walked} walked)")
        self._end_guard.consume()
        d_states0 = []
        for k, (p, scan) in enumerate(zip(self._units, self._scans)):
            d_state0, d_hproj, d_extra = scan.end_backward()
            d_states0.append(d_state0)
            grads = layer.cell.recurrent_grads(scan.tape, d_hproj, d_extra, p, xp=xp)
            d_raws, sums = self._backward[k]
            grads.update(sums)
            inputs = xp.concat([record[k][0] for record in self._records], axis=0)       # (T*B, I)
            grads["weight_ih"] = xp.matmul(xp.matrix_transpose(inputs), xp.concat(d_raws[::-1], axis=0))
            sfx = layer._suffix(k, 0)
            for stem, g in grads.items():
                param = layer._params[stem + sfx]
                param.grad = param.grad + g
        self._records = self._backward = None
        return layer._join_state(d_states0)


class RNN(Recurrent):
    """Elman RNN: h' = tanh or relu(x W_ih^T + b_ih + h W_hh^T + b_hh), as torch.nn.RNN."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, seed=None, init="uniform"):
        self.nonlinearity = nonlinearity
        super().__init__(RNNCell(nonlinearity), input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, init)


class LSTM(Recurrent):
    """LSTM as torch.nn.LSTM; state is the pair (h, c). ``forget_bias`` sets the forget-gate bias;
    ``layer_norm=True`` is the layer-normalised LSTM (:class:`seqnet.cells.LayerNormLSTMCell`)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=None, seed=None, init="uniform", forget_bias=None, layer_norm=False):
        self.layer_norm = check_bool("layer_norm", layer_norm)
        super().__init__(LayerNormLSTMCell() if self.layer_norm else LSTMCell(), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, dtype, seed, init, forget_bias)


class GRU(Recurrent):
    """GRU; ``reset_after=True`` is torch.nn.GRU / cuDNN, False is Cho et al.'s original."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=None, seed=None, init="uniform", reset_after=True):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(GRUCell(self.reset_after), input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, init)


# The recurrent layers by the name models and the command line use for them.
RECURRENT_LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
