//===- CPUPipeline.h - kernels -> LLVM -> shared object ---------*- C++ -*-===//

#ifndef XFMR_LOWERING_CPU_CPUPIPELINE_H
#define XFMR_LOWERING_CPU_CPUPIPELINE_H

#include "passes/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"

#include <string>

namespace xfmr {

/// What the CPU back end compiles for.
struct CPUTarget {
  /// The architecture: "" for this machine's, or "aarch64" (cross-compiled
  /// for aarch64-unknown-linux-gnu).
  std::string arch;
  /// An LLVM CPU name, or "native" for the host CPU and all its features.
  /// For AArch64, extensions may follow the name as in GCC's -mcpu
  /// ("generic+dotprod+i8mm").
  std::string cpu = "x86-64-v2";
  /// LLVM optimization level 0-3.
  unsigned optLevel = 3;
  /// AArch64: the SVE vector length in bits to specialize the code for (256
  /// or 512), 0 for none (NEON kernels; the code runs at any length), or -1
  /// for the CPU's own: 256 for neoverse-v1, 512 for a64fx, none otherwise.
  int sveBits = -1;
  /// Resolved by resolveCPUTarget: the triple, CPU name and features, and
  /// sveBits (0, 256 or 512).
  std::string triple, cpuName, features;
};

/// One-line descriptions of the CPU pipelines.
inline constexpr const char *kLowerToLLVMDescription =
    "Lower xfmr kernels and schedules (scf/vector/memref) to the LLVM "
    "dialect, parallel loops on OpenMP";
inline constexpr const char *kCPUPipelineDescription =
    "The whole CPU pipeline: xfmr-graph-opt, xfmr-plan-memory, "
    "xfmr-lower-to-kernels, xfmr-lower-to-llvm";

/// Fills in triple, CPU name and features (host ones for "native").
llvm::Error resolveCPUTarget(CPUTarget &target);
/// Whether the target is another architecture than this machine's.
bool isCrossTarget(const CPUTarget &target);

/// Loops, vectors and memrefs (after xfmr-lower-to-kernels) to the LLVM
/// dialect, with parallel loops on OpenMP.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);
/// The same; with `deviceAllocations`, memref.alloc/dealloc call the
/// generic _mlir_memref_to_llvm_alloc/free (GPU host code); without
/// `openmp`, parallel loops run sequentially.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm, bool deviceAllocations,
                              bool openmp = true);

/// Choices of the CPU lowering that the compile driver makes.
struct CPULoweringOptions {
  /// bf16 linear weights in the panel microkernels' layout (xfmr-plan-memory
  /// weight-panels); only when every target of the artifact is a CPU.
  bool weightPanels = false;
  /// f32 activations in those linears (xfmr-lower-to-kernels precise).
  bool precise = false;
  /// Parallel loops on OpenMP (libomp); off for cross-compiled code, which
  /// has no libomp of its architecture here.
  bool openmp = true;
};

/// xfmr IR (after graph optimization and quantization) to the LLVM dialect:
/// xfmr-plan-memory, xfmr-lower-to-kernels, canonicalize, cse,
/// xfmr-lower-to-llvm.
void buildCPULoweringPipeline(mlir::OpPassManager &pm,
                              const CPULoweringOptions &options = {});

/// The whole CPU pipeline from graph-level xfmr IR to the LLVM dialect.
void buildCPUPipeline(mlir::OpPassManager &pm);

/// The CPU's named pipelines: `xfmr-lower-to-llvm` and `xfmr-cpu`.
llvm::ArrayRef<NamedPipeline> cpuPipelines();

/// Registers cpuPipelines() with MLIR's pass registry.
void registerCPUPipelines();

/// Translates an LLVM-dialect module to LLVM IR, optimizes it and returns
/// the object file bytes. `llvmIR`, if given, receives the optimized IR.
llvm::Expected<std::string> emitObject(mlir::ModuleOp module,
                                       const CPUTarget &target,
                                       std::string *llvmIR = nullptr);

/// Links an object file into a shared object (with OpenMP and libm) using
/// ld.lld, and returns its bytes. A cross target links against its
/// architecture's glibc (Debian's cross toolchain) and without OpenMP.
llvm::Expected<std::string> linkSharedObject(llvm::StringRef object,
                                             const CPUTarget &target);

} // namespace xfmr

#endif // XFMR_LOWERING_CPU_CPUPIPELINE_H
