//===- ForkJoin.h - the runtime's own OpenMP entry points -------*- C++ -*-===//
//
// On AArch64 the runtime defines the OpenMP runtime entry points that model
// code calls (see ForkJoin.cpp); these set and read its thread count.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKENDS_CPU_FORKJOIN_H
#define XFMR_RUNTIME_BACKENDS_CPU_FORKJOIN_H

namespace xfmr::runtime {

/// Threads of the next parallel regions (at least 1); the default is
/// OMP_NUM_THREADS, else the machine's cores.
void forkJoinSetThreads(int threads);
int forkJoinThreads();

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKENDS_CPU_FORKJOIN_H
