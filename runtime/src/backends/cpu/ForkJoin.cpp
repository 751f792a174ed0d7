//===- ForkJoin.cpp - the OpenMP entry points model code calls -----------===//
//
// Model code compiled with OpenMP (MLIR's scf-to-openmp, translated by
// LLVM's OpenMPIRBuilder) calls five entry points of LLVM's OpenMP runtime
// ABI: __kmpc_fork_call, __kmpc_for_static_init_8u, __kmpc_for_static_fini,
// __kmpc_global_thread_num and __kmpc_barrier. x86-64 artifacts link LLVM's
// libomp for them. Cross-compiled AArch64 artifacts cannot (Debian has no
// usable arm64 libomp, and LLVM's hangs under qemu-user), so this runtime
// defines them itself on AArch64: a fork/join pool of pthreads, static
// schedules only, nested regions run serially (libomp's default). The
// executable exports them (tools/xfmr-run) and the model code, which leaves
// them undefined, binds to them when it is loaded. Workers take the
// caller's SVE vector length (code for one length needs it everywhere).
//
//===----------------------------------------------------------------------===//

#include "backends/cpu/ForkJoin.h"
#include "xfmr/runtime/Host.h"

#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace {

/// A parallel region's body: (global thread id*, bound thread id*, shared
/// variables...), as LLVM outlines it.
using Microtask = void (*)(int32_t *, int32_t *, ...);

/// Shared variables a region passes at most (LLVM packs them into a struct
/// beyond a few; libomp's own limit is far higher, 15 is plenty here).
constexpr int kMaxArgs = 15;

void invoke(Microtask task, int32_t *gtid, int32_t *btid, int argc, void **a) {
  switch (argc) {
  case 0:
    task(gtid, btid);
    break;
  case 1:
    task(gtid, btid, a[0]);
    break;
  case 2:
    task(gtid, btid, a[0], a[1]);
    break;
  case 3:
    task(gtid, btid, a[0], a[1], a[2]);
    break;
  case 4:
    task(gtid, btid, a[0], a[1], a[2], a[3]);
    break;
  case 5:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4]);
    break;
  case 6:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5]);
    break;
  case 7:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    break;
  case 8:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    break;
  case 9:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
    break;
  case 10:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
         a[9]);
    break;
  case 11:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
         a[10]);
    break;
  case 12:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
         a[10], a[11]);
    break;
  case 13:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
         a[10], a[11], a[12]);
    break;
  case 14:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
         a[10], a[11], a[12], a[13]);
    break;
  default:
    task(gtid, btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
         a[10], a[11], a[12], a[13], a[14]);
    break;
  }
}

/// Where a thread stands: its id in the running team and the team's size.
struct ThreadState {
  int32_t tid = 0;
  int32_t teamSize = 1;
  bool inParallel = false;
};
thread_local ThreadState current;

/// The pool: threads 1 .. size-1 wait for a region, thread 0 is the caller.
class Pool {
public:
  static Pool &get() {
    static Pool *pool = new Pool; // never destroyed: workers outlive main
    return *pool;
  }

  void setThreads(int threads) {
    std::lock_guard<std::mutex> lock(forkMutex_);
    wanted_ = threads < 1 ? 1 : threads;
  }
  int threads() const { return wanted_; }

  void run(Microtask task, int argc, void **args) {
    std::lock_guard<std::mutex> forkLock(forkMutex_);
    int size = wanted_;
    while (int(workers_.size()) < size - 1) {
      int tid = int(workers_.size()) + 1;
      workers_.emplace_back([this, tid] { workerLoop(tid); });
      workers_.back().detach();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = task;
      argc_ = argc;
      for (int i = 0; i < argc; ++i)
        args_[i] = args[i];
      teamSize_ = size;
      sveBits_ = xfmr::runtime::sveVectorBits();
      remaining_.store(size - 1, std::memory_order_relaxed);
      barrierCount_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    runMember(0, size);
    // Wait for the workers of this region (spin briefly: regions are short).
    for (int spin = 0; remaining_.load(std::memory_order_acquire) != 0;
         ++spin) {
      if (spin < 4096)
        continue;
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] {
        return remaining_.load(std::memory_order_acquire) == 0;
      });
    }
  }

  /// Every member of the running team waits here until all arrive.
  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    uint64_t phase = barrierPhase_;
    if (++barrierCount_ == teamSize_) {
      barrierCount_ = 0;
      ++barrierPhase_;
      barrierDone_.notify_all();
      return;
    }
    barrierDone_.wait(lock, [&] { return barrierPhase_ != phase; });
  }

private:
  Pool() {
    const char *env = std::getenv("OMP_NUM_THREADS");
    int fromEnv = env ? std::atoi(env) : 0;
    int cores = int(std::thread::hardware_concurrency());
    wanted_ = fromEnv > 0 ? fromEnv : cores > 0 ? cores : 1;
  }

  void runMember(int tid, int size) {
    // Code for one SVE vector length needs it on every member: a worker
    // started before the caller's length was set takes the caller's.
    if (tid != 0 && sveBits_ != xfmr::runtime::sveVectorBits())
      xfmr::runtime::setSveVectorBits(sveBits_);
    ThreadState saved = current;
    current = {tid, size, true};
    int32_t gtid = tid, btid = tid;
    invoke(task_, &gtid, &btid, argc_, args_);
    current = saved;
  }

  void workerLoop(int tid) {
    uint64_t seen = 0;
    for (;;) {
      int size;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        size = teamSize_;
      }
      if (tid < size) {
        runMember(tid, size);
        if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mutex_);
          done_.notify_all();
        }
      }
    }
  }

  std::mutex forkMutex_; // one region at a time from outside
  std::mutex mutex_;
  std::condition_variable wake_, done_, barrierDone_;
  std::vector<std::thread> workers_;
  Microtask task_ = nullptr;
  int argc_ = 0;
  void *args_[kMaxArgs] = {};
  int teamSize_ = 1;
  int64_t sveBits_ = 0; // the caller's SVE vector length (0: none)
  int wanted_ = 1;
  uint64_t generation_ = 0;
  std::atomic<int> remaining_{0};
  int barrierCount_ = 0;
  uint64_t barrierPhase_ = 0;
};

} // namespace

void xfmr::runtime::forkJoinSetThreads(int threads) {
  Pool::get().setThreads(threads);
}

int xfmr::runtime::forkJoinThreads() { return Pool::get().threads(); }

extern "C" {

// The ABI's types: an ident_t* source location (unused here), 32-bit thread
// ids, 64-bit unsigned bounds for the _8u loop form.

int32_t __kmpc_global_thread_num(void *) { return current.tid; }

void __kmpc_fork_call(void *, int32_t argc, Microtask task, ...) {
  void *args[kMaxArgs] = {};
  va_list list;
  va_start(list, task);
  for (int i = 0; i < argc && i < kMaxArgs; ++i)
    args[i] = va_arg(list, void *);
  va_end(list);
  if (argc > kMaxArgs)
    std::abort(); // LLVM aggregates a region's variables well below this
  // Nested regions run on the calling thread alone, as libomp does by
  // default; so does a pool of one.
  if (current.inParallel || Pool::get().threads() == 1) {
    ThreadState saved = current;
    current = {0, 1, true};
    int32_t gtid = saved.tid, btid = 0;
    invoke(task, &gtid, &btid, argc, args);
    current = saved;
    return;
  }
  Pool::get().run(task, argc, args);
}

/// Static schedules: kmp_sch_static (34) gives each thread one contiguous,
/// balanced block; kmp_sch_static_chunked (33) deals chunks round-robin
/// through the stride. Bounds are inclusive.
void __kmpc_for_static_init_8u(void *, int32_t, int32_t schedule,
                               int32_t *lastIteration, uint64_t *lower,
                               uint64_t *upper, int64_t *stride,
                               int64_t increment, int64_t chunk) {
  int64_t threads = current.teamSize, tid = current.tid;
  if (*upper < *lower || increment <= 0) {
    *lastIteration = 0;
    *stride = increment;
    return;
  }
  uint64_t trips = (*upper - *lower) / uint64_t(increment) + 1;
  if (schedule == 33 && chunk > 0) {
    uint64_t span = uint64_t(chunk) * uint64_t(increment);
    *stride = int64_t(span * uint64_t(threads));
    uint64_t first = *lower + uint64_t(tid) * span;
    uint64_t chunks = (trips + uint64_t(chunk) - 1) / uint64_t(chunk);
    *lastIteration = uint64_t(tid) == (chunks - 1) % uint64_t(threads);
    *lower = first;
    *upper = first + span - uint64_t(increment);
    return;
  }
  uint64_t share = trips / uint64_t(threads), extra = trips % uint64_t(threads);
  uint64_t begin = uint64_t(tid) * share + std::min<uint64_t>(tid, extra);
  uint64_t count = share + (uint64_t(tid) < extra ? 1 : 0);
  *stride = int64_t(trips * uint64_t(increment));
  *lastIteration = count > 0 && begin + count == trips;
  if (count == 0) {
    // An empty block: lower > upper.
    *lower = *upper + 1;
    return;
  }
  uint64_t first = *lower + begin * uint64_t(increment);
  *lower = first;
  *upper = first + (count - 1) * uint64_t(increment);
}

void __kmpc_for_static_fini(void *, int32_t) {}

void __kmpc_barrier(void *, int32_t) {
  if (current.teamSize > 1)
    Pool::get().barrier();
}

void omp_set_num_threads(int threads) { Pool::get().setThreads(threads); }

int omp_get_max_threads() { return Pool::get().threads(); }

} // extern "C"
