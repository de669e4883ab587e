// Sums over the threads of one block, in shared memory (the layer-norm kernels: a block per
// batch row). blockDim.x must be a power of two no larger than SEQNET_MAX_BLOCK; every thread
// of the block must call these (they contain __syncthreads()).
#define SEQNET_MAX_BLOCK 256

__device__ __forceinline__ real block_sum(real v, real* shared) {
    const int tid = threadIdx.x;
    shared[tid] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) shared[tid] += shared[tid + s];
        __syncthreads();
    }
    const real total = shared[0];
    __syncthreads();                      // everyone has read it before shared is reused
    return total;
}

// Two sums at once: one tree, half the barriers of two block_sum calls.
__device__ __forceinline__ void block_sum2(real& a, real& b, real* shared_a, real* shared_b) {
    const int tid = threadIdx.x;
    shared_a[tid] = a;
    shared_b[tid] = b;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) { shared_a[tid] += shared_a[tid + s]; shared_b[tid] += shared_b[tid + s]; }
        __syncthreads();
    }
    a = shared_a[0];
    b = shared_b[0];
    __syncthreads();
}
