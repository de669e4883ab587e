// Per-element math of the fused cell kernels: one implementation, compiled as CUDA by NVRTC
// (CuPy on a GPU) and as host C++ by g++ (tests on the CPU, host_prelude.h defines the CUDA
// keywords). ``real`` is float or double: the translation unit starts with
// "#define SEQNET_REAL float" or "double" (sources.py). Formulas and their operation order
// follow seqnet/cells/*.py, the portable reference the tests compare against.
#ifndef SEQNET_REAL
#define SEQNET_REAL float
#endif
typedef SEQNET_REAL real;

#define SEQNET_HD __host__ __device__ __forceinline__

SEQNET_HD float seqnet_tanh(float x) { return tanhf(x); }
SEQNET_HD double seqnet_tanh(double x) { return tanh(x); }
SEQNET_HD float seqnet_sqrt(float x) { return sqrtf(x); }
SEQNET_HD double seqnet_sqrt(double x) { return sqrt(x); }

// sigmoid(z) = (tanh(z / 2) + 1) / 2: one transcendental, never overflows (cells/base.py).
SEQNET_HD real sigmoid(real z) { return real(0.5) * seqnet_tanh(real(0.5) * z) + real(0.5); }

// d sigmoid / d z from s = sigmoid(z), times the upstream gradient: d * s * (1 - s).
SEQNET_HD real sigmoid_grad(real d, real s) { return d * s * (real(1) - s); }

// d tanh / d z from y = tanh(z), times the upstream gradient: d * (1 - y^2).
SEQNET_HD real tanh_grad(real d, real y) { return d * (real(1) - y * y); }

// -- LSTM (cells/lstm.py): z = xproj + h W_hh, gates i, f, o = sigmoid, g = tanh ----------
struct LstmStep { real i, f, o, g, c, h; };

SEQNET_HD LstmStep lstm_step(real zi, real zf, real zo, real zg, real c_prev) {
    LstmStep s;
    s.i = sigmoid(zi); s.f = sigmoid(zf); s.o = sigmoid(zo); s.g = seqnet_tanh(zg);
    s.c = s.f * c_prev + s.i * s.g;                       // c' = f c + i g
    s.h = s.o * seqnet_tanh(s.c);                         // h' = o tanh(c')
    return s;
}

// Gradients of the pre-activations and of c_prev, given dL/dh' (dh), dL/dc' (dc) and
// tanh(c') computed from the stored c' (tanh_c); d_c_hat is dL/dc' from the cell output path
// (dh o (1 - tanh_c^2) for the plain LSTM, the layer-norm backward for the LN-LSTM).
struct LstmGrad { real zi, zf, zo, zg, c_prev; };

SEQNET_HD LstmGrad lstm_gates_grad(real dh, real dc, real i, real f, real o, real g, real tanh_c, real c_prev) {
    LstmGrad d;
    d.zi = sigmoid_grad(dc * g, i);
    d.zf = sigmoid_grad(dc * c_prev, f);
    d.zo = sigmoid_grad(dh * tanh_c, o);
    d.zg = dc * i * (real(1) - g * g);
    d.c_prev = dc * f;
    return d;
}

// -- GRU (cells/gru.py), gate order r, u (PyTorch's z), n --------------------------------
// h' = n + u (h - n), the form of the reference ((1 - u) n + u h).
SEQNET_HD real gru_blend(real n, real u, real h_prev) { return n + u * (h_prev - n); }

// dL/dn_pre from dL/dh': dh (1 - u) (1 - n^2), written as the reference does.
SEQNET_HD real gru_dn(real dh, real u, real n) { return (dh - dh * u) * (real(1) - n * n); }

// dL/du_pre: dh (h - n) u (1 - u).
SEQNET_HD real gru_du(real dh, real u, real n, real h_prev) { return sigmoid_grad(dh * (h_prev - n), u); }

// -- RNN (cells/rnn.py) ------------------------------------------------------------------
SEQNET_HD real rnn_act(real a, int relu) { return relu ? (a > real(0) ? a : real(0)) : seqnet_tanh(a); }

// dL/da from dL/dh' and h' = act(a): relu' = [h' > 0], tanh' = 1 - h'^2.
SEQNET_HD real rnn_act_grad(real dh, real h, int relu) { return relu ? (h > real(0) ? dh : real(0)) : tanh_grad(dh, h); }

// -- layer norm (cells/layer_norm_lstm.py) -----------------------------------------------
#define SEQNET_LN_EPS 1e-5

SEQNET_HD real ln_inv_std(real sum_sq_centred, int width) {
    return real(1) / seqnet_sqrt(sum_sq_centred / real(width) + real(SEQNET_LN_EPS));
}

// dL/da from d = dL/d(a_hat) at one element: inv (d - mean(d) - a_hat mean(d a_hat)).
SEQNET_HD real ln_backward(real d, real a_hat, real inv, real mean_d, real mean_d_hat) {
    return inv * (d - mean_d - a_hat * mean_d_hat);
}
