// Runs a kernel's grid on the CPU, blocks one after another. A kernel with barriers runs the
// threads of a block as cooperative fibers (ucontext), so __syncthreads() is a real barrier:
// every thread of the block runs up to it before any goes past; a barrier that some threads
// of a block never reach (divergent __syncthreads, undefined on a GPU) is an error. A kernel
// without barriers runs its threads one after another as plain calls (a fiber switch costs a
// system call); a barrier reached that way is an error too, never a silent wrong result.
#include <ucontext.h>
#include <functional>
#include <vector>

namespace seqnet_host {

enum FiberState { RUNNING, AT_BARRIER, DONE };

struct Fiber {
    ucontext_t context;
    std::vector<char> stack;
    FiberState state;
};

static ucontext_t scheduler;
static std::vector<Fiber>* fibers = nullptr;
static int current = 0;
static const std::function<void()>* body = nullptr;
static bool sequential = false;
static bool barrier_while_sequential = false;

static void run_thread() {
    (*body)();
    (*fibers)[current].state = DONE;       // returns to uc_link: the scheduler
}

static int launch_sequential(int grid, int block, const std::function<void()>& kernel) {
    sequential = true;
    barrier_while_sequential = false;
    for (int b = 0; b < grid; ++b) {
        blockIdx = {(unsigned)b, 0, 0};
        for (int i = 0; i < block; ++i) {
            threadIdx = {(unsigned)i, 0, 0};
            kernel();
        }
    }
    sequential = false;
    return barrier_while_sequential ? 3 : 0;
}

// 0 on success, 1 for a divergent barrier, 2 for a bad launch configuration, 3 for a barrier
// in a kernel launched as barrier-free.
static int launch(int grid, int block, bool cooperative, const std::function<void()>& kernel) {
    if (grid < 1 || block < 1 || block > 1024) return 2;
    gridDim = {(unsigned)grid, 1, 1};
    blockDim = {(unsigned)block, 1, 1};
    if (!cooperative) return launch_sequential(grid, block, kernel);
    std::vector<Fiber> threads(block);
    for (Fiber& f : threads) f.stack.resize(1 << 16);
    fibers = &threads;
    body = &kernel;
    for (int b = 0; b < grid; ++b) {
        blockIdx = {(unsigned)b, 0, 0};
        for (Fiber& f : threads) {
            getcontext(&f.context);
            f.context.uc_stack.ss_sp = f.stack.data();
            f.context.uc_stack.ss_size = f.stack.size();
            f.context.uc_link = &scheduler;
            makecontext(&f.context, run_thread, 0);
            f.state = RUNNING;
        }
        for (;;) {                          // one round: every live thread runs to its next barrier or its end
            for (int i = 0; i < block; ++i) {
                if (threads[i].state == DONE) continue;
                current = i;
                threadIdx = {(unsigned)i, 0, 0};
                threads[i].state = RUNNING;
                swapcontext(&scheduler, &threads[i].context);
            }
            int done = 0;
            for (const Fiber& f : threads) done += f.state == DONE;
            if (done == block) break;
            if (done > 0) return 1;         // some threads left while others wait at a barrier
        }
    }
    fibers = nullptr;
    return 0;
}

}  // namespace seqnet_host

void __syncthreads() {
    if (seqnet_host::sequential) {
        seqnet_host::barrier_while_sequential = true;
        return;
    }
    seqnet_host::Fiber& f = (*seqnet_host::fibers)[seqnet_host::current];
    f.state = seqnet_host::AT_BARRIER;
    swapcontext(&f.context, &seqnet_host::scheduler);
}
