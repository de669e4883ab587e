// Next-token choice on the device, one block per row of logits (N, V): the Gumbel-max draw of
// seqnet/decoding/sampling.py's sample_next, argmax(float64(logits + bias) / T + G), with G the
// caller's Gumbel(0, 1) noise (drawn on the host in blocks of tokens, copied once per block),
// or the plain argmax when use_noise == 0 (greedy). ``banned`` (>= 0) is never chosen, as
// sample_tokens' -inf logit does; ties go to the lower id, as numpy's argmax. The token goes to
// tokens[step * N + b]: the sampled block, and the next step's input ids.
extern "C" __global__ void sample_tokens(
    const real* logits, const real* bias, const double* noise, long long* tokens,
    double temperature, int has_bias, int use_noise, int noise_step, int banned, int step, int rows, int vocab) {
    __shared__ double best_value[SEQNET_MAX_BLOCK];
    __shared__ int best_index[SEQNET_MAX_BLOCK];
    const int tid = threadIdx.x, threads = blockDim.x;
    for (int b = blockIdx.x; b < rows; b += gridDim.x) {
        const long long row = (long long)b * vocab;
        const double* g = noise + ((long long)noise_step * rows) * vocab + row;
        double value = 0;
        int index = vocab;                                        // vocab: nothing seen yet
        for (int v = tid; v < vocab; v += threads) {
            if (v == banned) continue;
            double z = (double)(has_bias ? logits[row + v] + bias[v] : logits[row + v]);
            if (temperature != 1.0) z = z / temperature;
            if (use_noise) z = z + g[v];
            if (index == vocab || z > value) { value = z; index = v; }   // strictly greater: the first maximum
        }
        best_value[tid] = value;
        best_index[tid] = index;
        __syncthreads();
        for (int s = threads / 2; s > 0; s >>= 1) {
            if (tid < s) {
                const int other = best_index[tid + s];
                const bool better = other != vocab && (best_index[tid] == vocab || best_value[tid + s] > best_value[tid]
                    || (best_value[tid + s] == best_value[tid] && other < best_index[tid]));
                if (better) { best_value[tid] = best_value[tid + s]; best_index[tid] = other; }
            }
            __syncthreads();
        }
        if (tid == 0) tokens[(long long)step * rows + b] = best_index[0];
        __syncthreads();                                          // before the next row reuses shared
    }
}
