// Runs the CUDA C of kernels/ unchanged on the host CPU, for the kernel harness test
// (tests/kernel_harness.rs). The harness writes one translation unit per kernel family:
// this header, then the family's sources exactly as NVRTC gets them, and builds a shared library
// with g++.
//
// Execution model:
// - Blocks run one after another, in blockIdx order. The threads of a block are fibers on one
//   OS thread (started with makecontext/setcontext, switched with _setjmp/_longjmp, which skip
//   the signal-mask system call of swapcontext), scheduled deterministically: each runs until it finishes or
//   reaches a barrier (__syncthreads, or a warp-synchronous shuffle), then the next one runs.
//   Between barriers the threads run in ascending or descending thread order (the `order`
//   argument of lml_harness_launch), so a read of another thread's write that lacks a barrier
//   gives a wrong result in one of the two orders.
// - __syncthreads releases only when every thread of the block waits at it; if some threads
//   have returned (a barrier in divergent code, undefined in CUDA), the launch fails with a
//   message. Warp shuffles require every lane of the warp, likewise.
// - __shared__ variables are function-local statics: blocks never overlap, so one copy serves
//   every block. Launches are serialised by a mutex.
// - No timing, no memory model beyond sequential consistency, no warp-synchronous behaviour
//   other than the shuffles emulated here; device math is the host's libm.
#pragma once

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <cmath>
#include <mutex>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using std::exp;
using std::fabs;
using std::log;
using std::log1p;
using std::sqrt;
using std::tanh;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

// The builtins of the running thread (one OS thread runs every fiber, so plain globals suffice).
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
// Fibers switch only at barriers and shuffles, so an atomic is a plain read-modify-write here.
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    unsigned long long old = *a;
    *a = old + v;
    return old;
}

namespace lml_host {

enum class State { Runnable, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
    jmp_buf env;  // where the fiber resumes once started
    State state;
    bool started;
    uint3 tid;
};

struct Launch {
    jmp_buf scheduler;
    ucontext_t start;  // a template context; each fiber's first entry is built from it
    std::vector<Fiber> fibers;
    std::unique_ptr<char[]> stacks;  // kStack bytes per thread, left uninitialised
    unsigned current = 0;
    void (*invoke)(void*, void**) = nullptr;
    void* kernel = nullptr;
    void** args = nullptr;
    std::string error;
    double warp_slots[1024];  // one slot per thread for shuffles (values up to 8 bytes)
};

inline Launch* g_launch = nullptr;
constexpr size_t kStack = 64 * 1024;

inline void yield(State s) {
    Launch& l = *g_launch;
    Fiber& f = l.fibers[l.current];
    f.state = s;
    if (!_setjmp(f.env)) _longjmp(l.scheduler, 1);
}

[[noreturn]] inline void fiber_main() {
    Launch& l = *g_launch;
    l.invoke(l.kernel, l.args);
    l.fibers[l.current].state = State::Done;
    _longjmp(l.scheduler, 1);
}

// Runs fiber t until it yields or finishes.
inline void resume(Launch& l, size_t t) {
    Fiber& f = l.fibers[t];
    l.current = (unsigned)t;
    threadIdx = f.tid;
    if (_setjmp(l.scheduler)) return;
    if (f.started) _longjmp(f.env, 1);
    f.started = true;
    ucontext_t c = l.start;
    c.uc_stack.ss_sp = l.stacks.get() + t * kStack;
    c.uc_stack.ss_size = kStack;
    c.uc_link = nullptr;
    makecontext(&c, fiber_main, 0);
    setcontext(&c);
}

inline unsigned linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

// Runs every fiber of the block until all are done; false (with l.error set) on a barrier that
// not every thread reaches.
inline bool run_block(Launch& l, bool descending) {
    size_t n = l.fibers.size();
    for (auto& f : l.fibers) {
        f.state = State::Runnable;
        f.started = false;
    }
    for (;;) {
        for (size_t k = 0; k < n; ++k) {
            size_t t = descending ? n - 1 - k : k;
            if (l.fibers[t].state == State::Runnable) resume(l, t);
        }
        bool released = false;
        for (size_t w = 0; w < n; w += 32) {
            size_t end = w + 32 < n ? w + 32 : n, waiting = 0;
            for (size_t t = w; t < end; ++t) waiting += l.fibers[t].state == State::AtWarpBarrier;
            if (waiting == end - w) {
                for (size_t t = w; t < end; ++t) l.fibers[t].state = State::Runnable;
                released = true;
            } else if (waiting > 0) {
                l.error = "a warp shuffle was not reached by every lane of warp " + std::to_string(w / 32);
                return false;
            }
        }
        if (released) continue;
        size_t at_barrier = 0, done = 0;
        for (auto& f : l.fibers) {
            at_barrier += f.state == State::AtBlockBarrier;
            done += f.state == State::Done;
        }
        if (done == n) return true;
        if (at_barrier == n) {
            for (auto& f : l.fibers) f.state = State::Runnable;
            continue;
        }
        l.error = "__syncthreads reached by " + std::to_string(at_barrier) + " of " + std::to_string(n) +
                  " threads (the others returned): a barrier in divergent code";
        return false;
    }
}

struct Entry {
    const char* name;
    void (*invoke)(void*, void**);
    void* kernel;
};

inline std::vector<Entry>& registry() {
    static std::vector<Entry> r;
    return r;
}

// Calls a kernel of parameter types A... with args[i] pointing at the i-th argument's value,
// exactly as cuLaunchKernel's kernelParams.
template <class... A> struct Invoker {
    template <size_t... I> static void call(void* k, void** args, std::index_sequence<I...>) {
        reinterpret_cast<void (*)(A...)>(k)(*static_cast<std::remove_reference_t<A>*>(args[I])...);
    }
    static void invoke(void* k, void** args) { call(k, args, std::index_sequence_for<A...>{}); }
};

template <class... A> int register_kernel(const char* name, void (*kernel)(A...)) {
    registry().push_back({name, &Invoker<A...>::invoke, reinterpret_cast<void*>(kernel)});
    return 0;
}

}  // namespace lml_host

#define LATTICEML_KERNEL(name) static int lml_registered_##name = ::lml_host::register_kernel(#name, &name);

inline void __syncthreads() { lml_host::yield(lml_host::State::AtBlockBarrier); }
inline void __syncwarp(unsigned = 0xffffffffu) { lml_host::yield(lml_host::State::AtWarpBarrier); }

namespace lml_host {
// Shuffle: every lane publishes its value, the warp meets, each lane reads its source lane's,
// the warp meets again so that the slots can be reused.
template <class T> T shuffle(unsigned mask, T v, int src_lane_or_minus_one) {
    if (mask != 0xffffffffu) {
        g_launch->error = "partial-warp shuffle masks are not emulated";
    }
    static_assert(sizeof(T) <= sizeof(double), "shuffle of a value wider than 8 bytes");
    Launch& l = *g_launch;
    unsigned me = linear_tid(), base = me & ~31u;
    memcpy(&l.warp_slots[me], &v, sizeof(T));
    yield(State::AtWarpBarrier);
    T r = v;
    if (src_lane_or_minus_one >= 0 && base + (unsigned)src_lane_or_minus_one < l.fibers.size())
        memcpy(&r, &l.warp_slots[base + src_lane_or_minus_one], sizeof(T));
    yield(State::AtWarpBarrier);
    return r;
}
}  // namespace lml_host

template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)(lml_host::linear_tid() & 31u), seg = lane % width;
    return lml_host::shuffle(mask, v, seg + (int)delta < width ? lane + (int)delta : -1);
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = (int)(lml_host::linear_tid() & 31u), src = lane ^ lane_mask;
    return lml_host::shuffle(mask, v, src / width == lane / width ? src : -1);
}

// Only these three functions are exported; the libraries are built with -fvisibility=hidden and
// -fno-gnu-unique, so that two families loaded into one process never share a registry or a
// __shared__ array.
#define LML_EXPORT __attribute__((visibility("default")))

extern "C" {

LML_EXPORT int lml_harness_count() { return (int)lml_host::registry().size(); }

LML_EXPORT const char* lml_harness_name(int i) {
    auto& r = lml_host::registry();
    return i >= 0 && i < (int)r.size() ? r[i].name : nullptr;
}

// Launches kernel `name` on grid (gx, gy, gz) x block (bx, by, bz) with cuLaunchKernel-style
// arguments; `descending` runs each phase of a block's threads in descending order. Returns 0, or
// -1 with a message in err.
LML_EXPORT int lml_harness_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, void** args, int descending, char* err, size_t err_len) {
    static std::mutex serial;
    std::lock_guard<std::mutex> lock(serial);
    auto fail = [&](const std::string& m) {
        snprintf(err, err_len, "%s: %s", name, m.c_str());
        return -1;
    };
    const lml_host::Entry* e = nullptr;
    for (auto& r : lml_host::registry())
        if (strcmp(r.name, name) == 0) e = &r;
    if (!e) return fail("no such kernel");
    size_t threads = (size_t)bx * by * bz;
    if (threads == 0 || threads > 1024 || gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535)
        return fail("invalid launch geometry (CUDA allows 1..1024 threads per block and grid y, z <= 65535)");
    lml_host::Launch l;
    getcontext(&l.start);
    l.fibers.resize(threads);
    l.stacks.reset(new char[threads * lml_host::kStack]);
    l.invoke = e->invoke;
    l.kernel = e->kernel;
    l.args = args;
    for (unsigned z = 0, t = 0; z < bz; ++z)
        for (unsigned y = 0; y < by; ++y)
            for (unsigned x = 0; x < bx; ++x, ++t) l.fibers[t].tid = {x, y, z};
    lml_host::g_launch = &l;
    blockDim = {bx, by, bz};
    gridDim = {gx, gy, gz};
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx = {x, y, z};
                if (!lml_host::run_block(l, descending != 0) || !l.error.empty()) {
                    lml_host::g_launch = nullptr;
                    return fail(l.error + " (block " + std::to_string(x) + "," + std::to_string(y) + "," +
                                std::to_string(z) + ")");
                }
            }
    lml_host::g_launch = nullptr;
    return 0;
}

}  // extern "C"
