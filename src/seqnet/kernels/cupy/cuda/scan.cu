// The fused time-loop kernels: one launch per step for each cell's elementwise work (gate
// math, state update, variable-length masks), next to the step's GEMM (cuBLAS on the GPU).
// The driver (seqnet/kernels/cupy/driver.py) allocates every buffer once per call and passes
// base pointers and step indices, so a launch takes no per-step pointer arithmetic on the host.
//
// Layouts (row-major, batch-major): xproj (T, B, G*H); hs (T, B, H), the carried hidden
// state after each step (also the layer output); gates (T or 1, B, G*H), the activations,
// overwritten in place by the pre-activation gradients (d_xproj) during backward. A step
// index < 0 selects the initial state (h0, c0). mask (T, B): row b takes step t when
// mask[t * B + b] (only read when ``masked``); a row that does not keeps its state and gets no
// gradient, as in seqnet/kernels/time_loop.py.
//
// Elementwise kernels: one thread per (b, j), j < H, grid-stride. Layer-norm kernels: one
// block per batch row (they reduce over the row, reduce.cuh).

#define SEQNET_FOR_EACH_UNIT(k, n) \
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < (n); k += blockDim.x * gridDim.x)

__device__ __forceinline__ const real* step_ptr(const real* base, int t, int size, const real* first) {
    return t < 0 ? first : base + (long long)t * size;
}

__device__ __forceinline__ bool takes_step(const bool* mask, int masked, int t, int batch, int b) {
    return !masked || mask[(long long)t * batch + b];
}

// ---------------------------------------------------------------------------------------
// LSTM, gates i | f | o | g (internal order). hh = h_prev W_hh (B, 4H), from the GEMM.
extern "C" __global__ void lstm_forward(
    const real* xproj, const real* hh, const real* h0, const real* c0,
    real* hs, real* cs, real* gates, const bool* mask,
    int t, int t_prev, int tc, int tc_prev, int tg, int masked, int batch, int hidden) {
    const int width = 4 * hidden;
    const real* x = xproj + (long long)t * batch * width;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    const real* c_prev = step_ptr(cs, tc_prev, batch * hidden, c0);
    real* h_out = hs + (long long)t * batch * hidden;
    real* c_out = cs + (long long)tc * batch * hidden;
    real* a = gates + (long long)tg * batch * width;
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const LstmStep s = lstm_step(x[row] + hh[row], x[row + hidden] + hh[row + hidden],
                                     x[row + 2 * hidden] + hh[row + 2 * hidden],
                                     x[row + 3 * hidden] + hh[row + 3 * hidden], c_prev[k]);
        a[row] = s.i; a[row + hidden] = s.f; a[row + 2 * hidden] = s.o; a[row + 3 * hidden] = s.g;
        const bool step = takes_step(mask, masked, t, batch, b);
        c_out[k] = step ? s.c : c_prev[k];
        h_out[k] = step ? s.h : h_prev[k];
    }
}

// dh, dc (B, H): in, dL/d(state after step t) (dh without this step's output gradient d_hs[t]);
// out, dL/d(state before it), dh without the W_hh term, which the GEMM dh += dz W_hh^T adds.
extern "C" __global__ void lstm_backward(
    real* gates, const real* cs, const real* c0, const real* d_hs, real* dh, real* dc, const bool* mask,
    int t, int tc_prev, int has_d_hs, int masked, int batch, int hidden) {
    const int width = 4 * hidden;
    real* a = gates + (long long)t * batch * width;
    const real* c = cs + (long long)t * batch * hidden;
    const real* c_prev = step_ptr(cs, tc_prev, batch * hidden, c0);
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real dh_total = has_d_hs ? dh[k] + d_hs[(long long)t * batch * hidden + k] : dh[k];
        if (!takes_step(mask, masked, t, batch, b)) {          // state carried: gradient passes by
            a[row] = a[row + hidden] = a[row + 2 * hidden] = a[row + 3 * hidden] = real(0);
            dh[k] = dh_total;
            continue;
        }
        const real o = a[row + 2 * hidden];
        const real tanh_c = seqnet_tanh(c[k]);
        const real dc_total = dc[k] + tanh_grad(dh_total * o, tanh_c);
        const LstmGrad d = lstm_gates_grad(dh_total, dc_total, a[row], a[row + hidden], o, a[row + 3 * hidden],
                                           tanh_c, c_prev[k]);
        a[row] = d.zi; a[row + hidden] = d.zf; a[row + 2 * hidden] = d.zo; a[row + 3 * hidden] = d.zg;
        dc[k] = d.c_prev;
        dh[k] = real(0);
    }
}

// ---------------------------------------------------------------------------------------
// GRU with the reset gate after the matmul (PyTorch, cuDNN): gates r | u | n.
// hh = h_prev W_hh (B, 3H); b_hh is added here (it sits inside r * (...)).
extern "C" __global__ void gru_forward(
    const real* xproj, const real* hh, const real* bias_hh, const real* h0,
    real* hs, real* gates, real* hn_out, const bool* mask,
    int t, int t_prev, int tg, int has_bias, int masked, int batch, int hidden) {
    const int width = 3 * hidden;
    const real* x = xproj + (long long)t * batch * width;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    real* h_out = hs + (long long)t * batch * hidden;
    real* a = gates + (long long)tg * batch * width;
    real* hn_step = hn_out + (long long)tg * batch * hidden;
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real hr = has_bias ? hh[row] + bias_hh[j] : hh[row];
        const real hu = has_bias ? hh[row + hidden] + bias_hh[j + hidden] : hh[row + hidden];
        const real hn = has_bias ? hh[row + 2 * hidden] + bias_hh[j + 2 * hidden] : hh[row + 2 * hidden];
        const real r = sigmoid(x[row] + hr), u = sigmoid(x[row + hidden] + hu);
        const real n = seqnet_tanh(x[row + 2 * hidden] + r * hn);
        a[row] = r; a[row + hidden] = u; a[row + 2 * hidden] = n;
        hn_step[k] = hn;
        h_out[k] = takes_step(mask, masked, t, batch, b) ? gru_blend(n, u, h_prev[k]) : h_prev[k];
    }
}

// gates[t] becomes d_xproj (dr, du, dn), hn[t] becomes dn * r (d_hproj's n block), dhp
// (B, 3H) = d_hproj at this step for the GEMM dh += dhp W_hh^T; dh leaves as dh * u.
extern "C" __global__ void gru_backward(
    real* gates, real* hn, const real* hs, const real* h0, const real* d_hs, real* dh, real* dhp, const bool* mask,
    int t, int t_prev, int has_d_hs, int masked, int batch, int hidden) {
    const int width = 3 * hidden;
    real* a = gates + (long long)t * batch * width;
    real* hn_step = hn + (long long)t * batch * hidden;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real dh_total = has_d_hs ? dh[k] + d_hs[(long long)t * batch * hidden + k] : dh[k];
        if (!takes_step(mask, masked, t, batch, b)) {
            a[row] = a[row + hidden] = a[row + 2 * hidden] = real(0);
            dhp[row] = dhp[row + hidden] = dhp[row + 2 * hidden] = real(0);
            hn_step[k] = real(0);
            dh[k] = dh_total;
            continue;
        }
        const real r = a[row], u = a[row + hidden], n = a[row + 2 * hidden];
        const real dn = gru_dn(dh_total, u, n);
        const real dr = sigmoid_grad(dn * hn_step[k], r);
        const real du = gru_du(dh_total, u, n, h_prev[k]);
        a[row] = dr; a[row + hidden] = du; a[row + 2 * hidden] = dn;
        dhp[row] = dr; dhp[row + hidden] = du; dhp[row + 2 * hidden] = dn * r;
        hn_step[k] = dn * r;
        dh[k] = dh_total * u;
    }
}

// ---------------------------------------------------------------------------------------
// Cho et al.'s GRU (reset before the matmul): two GEMMs and two kernels per step.
// Forward 1: hrz = h_prev W_hh[:, :2H] (B, 2H) -> r, u and rh = r * h_prev, the input of the
// second GEMM hn = rh W_hh[:, 2H:].
extern "C" __global__ void gru_cho_reset(
    const real* xproj, const real* hrz, const real* h0, const real* hs, real* gates, real* rh,
    int t, int t_prev, int tg, int batch, int hidden) {
    const int width = 3 * hidden;
    const real* x = xproj + (long long)t * batch * width;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    real* a = gates + (long long)tg * batch * width;
    real* rh_step = rh + (long long)tg * batch * hidden;
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real r = sigmoid(x[row] + hrz[b * 2 * hidden + j]);
        const real u = sigmoid(x[row + hidden] + hrz[b * 2 * hidden + j + hidden]);
        a[row] = r; a[row + hidden] = u;
        rh_step[k] = r * h_prev[k];
    }
}

// Forward 2: n = tanh(x_n + hn), h' = n + u (h - n).
extern "C" __global__ void gru_cho_forward(
    const real* xproj, const real* hn, const real* h0, real* hs, real* gates, const bool* mask,
    int t, int t_prev, int tg, int masked, int batch, int hidden) {
    const int width = 3 * hidden;
    const real* x = xproj + (long long)t * batch * width;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    real* h_out = hs + (long long)t * batch * hidden;
    real* a = gates + (long long)tg * batch * width;
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real n = seqnet_tanh(x[row + 2 * hidden] + hn[k]);
        a[row + 2 * hidden] = n;
        h_out[k] = takes_step(mask, masked, t, batch, b) ? gru_blend(n, a[row + hidden], h_prev[k]) : h_prev[k];
    }
}

// Backward 1: dn and du into dxp[t] (B, 3H) (the tape's gates stay: Cho's W_hn gradient reads
// r * h); dh leaves as dh * u. The GEMM d_rh = dn W_hn^T follows.
extern "C" __global__ void gru_cho_backward(
    const real* gates, const real* hs, const real* h0, const real* d_hs, real* dh, real* dxp, const bool* mask,
    int t, int t_prev, int has_d_hs, int masked, int batch, int hidden) {
    const int width = 3 * hidden;
    const real* a = gates + (long long)t * batch * width;
    real* d = dxp + (long long)t * batch * width;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real dh_total = has_d_hs ? dh[k] + d_hs[(long long)t * batch * hidden + k] : dh[k];
        if (!takes_step(mask, masked, t, batch, b)) {
            d[row + hidden] = d[row + 2 * hidden] = real(0);
            dh[k] = dh_total;
            continue;
        }
        const real u = a[row + hidden], n = a[row + 2 * hidden];
        d[row + 2 * hidden] = gru_dn(dh_total, u, n);
        d[row + hidden] = gru_du(dh_total, u, n, h_prev[k]);
        dh[k] = dh_total * u;
    }
}

// Backward 2, after d_rh = dn W_hn^T (B, H): dr into dxp[t], dh += d_rh * r. No mask needed:
// a row that skips the step has dn = 0, so d_rh = 0 there and this adds nothing.
// The GEMM dh += dxp[t][:, :2H] W_hh[:, :2H]^T follows.
extern "C" __global__ void gru_cho_backward_reset(
    const real* gates, const real* hs, const real* h0, const real* d_rh, real* dh, real* dxp,
    int t, int t_prev, int batch, int hidden) {
    const int width = 3 * hidden;
    const real* a = gates + (long long)t * batch * width;
    real* d = dxp + (long long)t * batch * width;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden, j = k % hidden;
        const int row = b * width + j;
        const real r = a[row];
        d[row] = sigmoid_grad(d_rh[k] * h_prev[k], r);
        dh[k] = dh[k] + d_rh[k] * r;
    }
}

// ---------------------------------------------------------------------------------------
// Elman RNN. The GEMM writes h_prev W_hh into hs[t]; this adds xproj and applies act in place.
extern "C" __global__ void rnn_forward(
    const real* xproj, const real* h0, real* hs, const bool* mask,
    int t, int t_prev, int relu, int masked, int batch, int hidden) {
    const real* x = xproj + (long long)t * batch * hidden;
    const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0);
    real* h_out = hs + (long long)t * batch * hidden;
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden;
        h_out[k] = takes_step(mask, masked, t, batch, b) ? rnn_act(x[k] + h_out[k], relu) : h_prev[k];
    }
}

// dxp[t] = dL/da; dh leaves as 0 for rows that took the step (the GEMM dh += da W_hh^T fills it).
extern "C" __global__ void rnn_backward(
    const real* hs, const real* d_hs, real* dh, real* dxp, const bool* mask,
    int t, int relu, int has_d_hs, int masked, int batch, int hidden) {
    const real* h = hs + (long long)t * batch * hidden;
    real* d = dxp + (long long)t * batch * hidden;
    SEQNET_FOR_EACH_UNIT(k, batch * hidden) {
        const int b = k / hidden;
        const real dh_total = has_d_hs ? dh[k] + d_hs[(long long)t * batch * hidden + k] : dh[k];
        const bool step = takes_step(mask, masked, t, batch, b);
        d[k] = step ? rnn_act_grad(dh_total, h[k], relu) : real(0);
        dh[k] = step ? real(0) : dh_total;
    }
}

// ---------------------------------------------------------------------------------------
// Layer-normalised LSTM: one block per batch row (blockDim.x a power of two <= 256). Forward:
// LN over the row's 4H recurrent pre-activations (two block sums: mean, then centred
// variance), the gates and c', LN over the row's H cells (two more), h'. stats (T or 1, B, 3)
// keeps 1 / std of h W_hh, mean and 1 / std of c'; a_hat (T or 1, B, 4H) the normalised
// recurrent pre-activations.
extern "C" __global__ void lstm_ln_forward(
    const real* xproj, const real* hh, const real* h0, const real* c0,
    real* hs, real* cs, real* gates, real* a_hat, real* stats,
    const real* ln_weight_hh, const real* ln_bias_hh, const real* ln_weight_c, const real* ln_bias_c,
    const bool* mask, int t, int t_prev, int tc, int tc_prev, int tg, int masked, int batch, int hidden) {
    __shared__ real shared[SEQNET_MAX_BLOCK];
    const int width = 4 * hidden, tid = threadIdx.x, threads = blockDim.x;
    for (int b = blockIdx.x; b < batch; b += gridDim.x) {
        const long long unit = (long long)b * hidden, gate_row = (long long)b * width;
        const real* x = xproj + (long long)t * batch * width + gate_row;
        const real* a = hh + gate_row;
        const real* h_prev = step_ptr(hs, t_prev, batch * hidden, h0) + unit;
        const real* c_prev = step_ptr(cs, tc_prev, batch * hidden, c0) + unit;
        real* h_out = hs + (long long)t * batch * hidden + unit;
        real* c_out = cs + (long long)tc * batch * hidden + unit;
        real* act = gates + (long long)tg * batch * width + gate_row;
        real* a_norm = a_hat + (long long)tg * batch * width + gate_row;
        real* st = stats + ((long long)tg * batch + b) * 3;
        if (!takes_step(mask, masked, t, batch, b)) {           // the whole block: no barrier skipped
            for (int j = tid; j < hidden; j += threads) { h_out[j] = h_prev[j]; c_out[j] = c_prev[j]; }
            continue;
        }
        real part = 0;
        for (int k = tid; k < width; k += threads) part += a[k];
        const real mean_a = block_sum(part, shared) / real(width);
        part = 0;
        for (int k = tid; k < width; k += threads) part += (a[k] - mean_a) * (a[k] - mean_a);
        const real inv_a = ln_inv_std(block_sum(part, shared), width);
        part = 0;
        for (int j = tid; j < hidden; j += threads) {
            real z[4];
            for (int g = 0; g < 4; ++g) {
                const int k = g * hidden + j;
                a_norm[k] = (a[k] - mean_a) * inv_a;
                z[g] = x[k] + a_norm[k] * ln_weight_hh[k] + ln_bias_hh[k];
            }
            const LstmStep s = lstm_step(z[0], z[1], z[2], z[3], c_prev[j]);
            act[j] = s.i; act[j + hidden] = s.f; act[j + 2 * hidden] = s.o; act[j + 3 * hidden] = s.g;
            c_out[j] = s.c;
            part += s.c;
        }
        const real mean_c = block_sum(part, shared) / real(hidden);
        part = 0;
        for (int j = tid; j < hidden; j += threads) part += (c_out[j] - mean_c) * (c_out[j] - mean_c);
        const real inv_c = ln_inv_std(block_sum(part, shared), hidden);
        for (int j = tid; j < hidden; j += threads) {
            const real c_norm = (c_out[j] - mean_c) * inv_c;
            h_out[j] = act[j + 2 * hidden] * seqnet_tanh(c_norm * ln_weight_c[j] + ln_bias_c[j]);
        }
        if (tid == 0) { st[0] = inv_a; st[1] = mean_c; st[2] = inv_c; }
    }
}

// Backward, one block per row: dc through LN(c') (one paired block sum), the gate gradients
// dz into gates[t], d_a = dL/d(h W_hh) through LN (one paired block sum) into d_a[t] for the
// GEMM dh += d_a[t] W_hh^T. For the cell's own parameters, summed after the loop: a_hat[t]
// becomes dz * a_hat; d_lnc[t] = dL/d LN(c'), d_lnc_c_hat[t] = d_lnc * c_hat.
extern "C" __global__ void lstm_ln_backward(
    real* gates, real* a_hat, const real* stats, const real* cs, const real* c0, const real* d_hs,
    real* dh, real* dc, real* d_a, real* d_lnc, real* d_lnc_c_hat,
    const real* ln_weight_hh, const real* ln_weight_c, const real* ln_bias_c, const bool* mask,
    int t, int tc_prev, int has_d_hs, int masked, int batch, int hidden) {
    __shared__ real shared_a[SEQNET_MAX_BLOCK];
    __shared__ real shared_b[SEQNET_MAX_BLOCK];
    const int width = 4 * hidden, tid = threadIdx.x, threads = blockDim.x;
    for (int b = blockIdx.x; b < batch; b += gridDim.x) {
        const long long unit = (long long)b * hidden, gate_row = (long long)b * width;
        const long long step_unit = (long long)t * batch * hidden + unit;
        const long long step_gate = (long long)t * batch * width + gate_row;
        real* act = gates + step_gate;
        real* a_norm = a_hat + step_gate;
        real* da = d_a + step_gate;
        real* dlnc = d_lnc + step_unit;
        real* dlnc_hat = d_lnc_c_hat + step_unit;
        const real* c = cs + step_unit;
        const real* c_prev = step_ptr(cs, tc_prev, batch * hidden, c0) + unit;
        const real* st = stats + ((long long)t * batch + b) * 3;
        real* dh_row = dh + unit;
        real* dc_row = dc + unit;
        const bool step = takes_step(mask, masked, t, batch, b);
        for (int j = tid; j < hidden; j += threads) {
            dh_row[j] = has_d_hs ? dh_row[j] + d_hs[step_unit + j] : dh_row[j];
            if (!step) dlnc[j] = dlnc_hat[j] = real(0);
        }
        if (!step) {                                              // the whole block: no barrier skipped
            for (int k = tid; k < width; k += threads) act[k] = a_norm[k] = da[k] = real(0);
            continue;
        }
        const real inv_a = st[0], mean_c = st[1], inv_c = st[2];
        real s1 = 0, s2 = 0;
        for (int j = tid; j < hidden; j += threads) {
            const real c_norm = (c[j] - mean_c) * inv_c;
            const real tanh_c = seqnet_tanh(c_norm * ln_weight_c[j] + ln_bias_c[j]);
            dlnc[j] = tanh_grad(dh_row[j] * act[j + 2 * hidden], tanh_c);
            dlnc_hat[j] = dlnc[j] * c_norm;
            const real d = dlnc[j] * ln_weight_c[j];
            s1 += d;
            s2 += d * c_norm;
        }
        block_sum2(s1, s2, shared_a, shared_b);
        const real mean_d = s1 / real(hidden), mean_d_hat = s2 / real(hidden);
        s1 = 0; s2 = 0;
        for (int j = tid; j < hidden; j += threads) {
            const real c_norm = (c[j] - mean_c) * inv_c;
            const real tanh_c = seqnet_tanh(c_norm * ln_weight_c[j] + ln_bias_c[j]);
            const real dc_total = dc_row[j] + ln_backward(dlnc[j] * ln_weight_c[j], c_norm, inv_c, mean_d, mean_d_hat);
            const LstmGrad d = lstm_gates_grad(dh_row[j], dc_total, act[j], act[j + hidden], act[j + 2 * hidden],
                                               act[j + 3 * hidden], tanh_c, c_prev[j]);
            const real dz[4] = {d.zi, d.zf, d.zo, d.zg};
            for (int g = 0; g < 4; ++g) {
                const int k = g * hidden + j;
                act[k] = dz[g];
                const real dg = dz[g] * ln_weight_hh[k];
                s1 += dg;
                s2 += dg * a_norm[k];
            }
            dc_row[j] = d.c_prev;
            dh_row[j] = real(0);
        }
        block_sum2(s1, s2, shared_a, shared_b);                 // also orders the dz writes above
        const real mean_g = s1 / real(width), mean_g_hat = s2 / real(width);
        for (int k = tid; k < width; k += threads) {
            da[k] = ln_backward(act[k] * ln_weight_hh[k], a_norm[k], inv_a, mean_g, mean_g_hat);
            a_norm[k] = act[k] * a_norm[k];
        }
    }
}
