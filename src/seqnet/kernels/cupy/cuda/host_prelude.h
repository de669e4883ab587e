// Host C++ stand-ins for the CUDA built-ins the kernels use, so that the kernel sources
// compile with g++ and run on the CPU in tests (host_launch.h runs a grid). Not part of the
// GPU build: NVRTC compiles the kernel sources without this file.
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static       // one block runs at a time on the host: a static is per-block memory

struct seqnet_uint3 { unsigned int x, y, z; };
static seqnet_uint3 threadIdx, blockIdx, blockDim, gridDim;   // set by the launcher per simulated thread

void __syncthreads();
