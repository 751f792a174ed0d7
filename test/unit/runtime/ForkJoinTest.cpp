//===- ForkJoinTest.cpp - the runtime's own OpenMP entry points ----------===//
//
// runtime/src/backends/cpu/ForkJoin.cpp, called the way LLVM's OpenMP
// lowering calls it: a parallel region (__kmpc_fork_call with shared
// variables) whose threads each take a static block of a normalized loop
// [0, n - 1], then meet at a barrier. Built on every architecture; AArch64
// runtimes use it for model code (test_aarch64.py runs one under QEMU).
//
//===----------------------------------------------------------------------===//

#include "backends/cpu/ForkJoin.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <vector>

extern "C" {
int32_t __kmpc_global_thread_num(void *);
void __kmpc_fork_call(void *, int32_t, void (*)(int32_t *, int32_t *, ...),
                      ...);
void __kmpc_for_static_init_8u(void *, int32_t, int32_t, int32_t *, uint64_t *,
                               uint64_t *, int64_t *, int64_t, int64_t);
void __kmpc_for_static_fini(void *, int32_t);
void __kmpc_barrier(void *, int32_t);
}

namespace {

struct Shared {
  uint64_t trips;
  std::vector<std::atomic<int>> *visits;
  std::atomic<int> *lastCount;
  std::atomic<int> *arrived;
  std::atomic<bool> *barrierOk;
  int schedule;
  int64_t chunk;
};

/// The outlined body: this thread's blocks of [0, trips - 1], then a
/// barrier after which every thread must have arrived.
void body(int32_t *gtid, int32_t *, Shared *shared, int *threadsSeen) {
  int32_t id = __kmpc_global_thread_num(nullptr);
  EXPECT_EQ(id, *gtid);
  uint64_t lower = 0, upper = shared->trips - 1;
  int64_t stride = 0;
  int32_t last = 0;
  __kmpc_for_static_init_8u(nullptr, id, shared->schedule, &last, &lower,
                            &upper, &stride, 1, shared->chunk);
  for (uint64_t first = lower; first < shared->trips; first += stride) {
    uint64_t end = std::min<uint64_t>(upper, shared->trips - 1);
    for (uint64_t i = first; i <= end && upper >= lower; ++i)
      (*shared->visits)[i]++;
    if (shared->schedule != 33)
      break;
    upper += stride;
  }
  __kmpc_for_static_fini(nullptr, id);
  if (last)
    shared->lastCount->fetch_add(1);
  shared->arrived->fetch_add(1);
  __kmpc_barrier(nullptr, id);
  if (shared->arrived->load() != *threadsSeen)
    shared->barrierOk->store(false);
}

void runLoop(int threads, uint64_t trips, int schedule, int64_t chunk) {
  xfmr::runtime::forkJoinSetThreads(threads);
  std::vector<std::atomic<int>> visits(trips);
  std::atomic<int> lastCount{0}, arrived{0};
  std::atomic<bool> barrierOk{true};
  Shared shared{trips,      &visits,  &lastCount, &arrived,
                &barrierOk, schedule, chunk};
  __kmpc_fork_call(nullptr, 2,
                   reinterpret_cast<void (*)(int32_t *, int32_t *, ...)>(body),
                   &shared, &threads);
  for (uint64_t i = 0; i < trips; ++i)
    EXPECT_EQ(visits[i].load(), 1) << "iteration " << i << " of " << trips
                                   << ", " << threads << " threads";
  EXPECT_EQ(lastCount.load(), 1);
  EXPECT_EQ(arrived.load(), threads);
  EXPECT_TRUE(barrierOk.load());
}

TEST(ForkJoinTest, StaticBlocksCoverEveryIterationOnce) {
  for (int threads : {1, 2, 3, 4, 7})
    for (uint64_t trips : {1, 2, 3, 5, 64, 1000})
      runLoop(threads, trips, /*kmp_sch_static=*/34, 0);
}

TEST(ForkJoinTest, StaticChunksCoverEveryIterationOnce) {
  for (int threads : {2, 3})
    for (uint64_t trips : {1, 7, 100})
      runLoop(threads, trips, /*kmp_sch_static_chunked=*/33, 4);
}

void nestedInner(int32_t *, int32_t *, std::atomic<int> *inner) {
  inner->fetch_add(1);
}

void nestedOuter(int32_t *, int32_t *, std::atomic<int> *outer,
                 std::atomic<int> *inner) {
  outer->fetch_add(1);
  // A region inside a region runs on its thread alone.
  __kmpc_fork_call(
      nullptr, 1,
      reinterpret_cast<void (*)(int32_t *, int32_t *, ...)>(nestedInner),
      inner);
}

TEST(ForkJoinTest, NestedRegionsRunSerially) {
  xfmr::runtime::forkJoinSetThreads(3);
  std::atomic<int> outer{0}, inner{0};
  for (int round = 0; round < 50; ++round)
    __kmpc_fork_call(
        nullptr, 2,
        reinterpret_cast<void (*)(int32_t *, int32_t *, ...)>(nestedOuter),
        &outer, &inner);
  EXPECT_EQ(outer.load(), 150);
  EXPECT_EQ(inner.load(), 150);
  EXPECT_EQ(xfmr::runtime::forkJoinThreads(), 3);
}

} // namespace
