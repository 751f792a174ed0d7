//===- GPUKernelTarget.h - the GPUs' side of the kernel seam ----*- C++ -*-===//
//
// One generic (SIMT) form of each kernel family serves every GPU target
// (cuda, rocm, vulkan): kernels are gpu.func's in one gpu.module
// (@xfmr_kernels) built from arith/math/scf/memref and gpu thread ids, so
// upstream MLIR lowers the same IR to NVVM, ROCDL or SPIR-V.
//
// Kernel ABI (runtime/src/backends/gpu/GpuDevice.h reads the same): a
// kernel's parameters are one flat 1-D buffer per memref operand of its
// family (element type: the storage type, bf16/f16 as i16), one i32 element
// offset per buffer (Vulkan binds buffers at aligned offsets), then i32
// scalars: for each operand in order its dynamic sizes (a memref) or its
// value (an index), then the number of workgroups and the grid's x size.
// On Vulkan the offsets and scalars are one memref<?xi32> parameter instead
// (each scalar argument would be a descriptor of its own, and devices allow
// as few as 12 per kernel).
// Inside, each buffer is re-viewed with its logical shape; the view folds
// into the loads (fold-memref-alias-ops).
//
// Launches: the host schedule calls @xfmr_gpu_launch(kernel index, grid x,
// grid y, pointer to the i64 arguments: buffer addresses, then the
// scalars); the GPU back end (compiler/GPUBackend.cpp) defines it as a call
// through a function pointer the runtime sets.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_GPU_GPUKERNELTARGET_H
#define XFMR_LOWERING_GPU_GPUKERNELTARGET_H

#include "lowering/Common/KernelTarget.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "llvm/ADT/StringMap.h"

#include <functional>

namespace xfmr {

/// Attribute names on each kernel gpu.func, read by the GPU back end for the
/// artifact's kernel table.
inline constexpr llvm::StringLiteral kGPUKernelIndexAttr = "xfmr_kernel_index";
inline constexpr llvm::StringLiteral kGPUKernelBuffersAttr =
    "xfmr_kernel_buffer_bytes";
inline constexpr llvm::StringLiteral kGPUKernelScalarsAttr =
    "xfmr_kernel_scalars";
/// Per buffer, the bytes the kernel may touch: [bytes, scalar index...],
/// bytes times the values of those scalars (the buffer's dynamic sizes).
inline constexpr llvm::StringLiteral kGPUKernelExtentsAttr =
    "xfmr_kernel_buffer_extents";
/// The gpu.module of the kernels and the launch hook's name.
inline constexpr llvm::StringLiteral kGPUKernelModuleName = "xfmr_kernels";
inline constexpr llvm::StringLiteral kGPULaunchFunction = "xfmr_gpu_launch";
/// Vulkan (and most GPUs) cap each grid dimension at 65535 workgroups.
inline constexpr int64_t kGPUMaxGridX = 65535;

/// The GPU target kinds (the --target name before ':').
llvm::ArrayRef<llvm::StringLiteral> gpuTargetKinds();

/// What a kernel body gets besides its operands.
struct GPUThread {
  /// This workgroup's index in [0, workgroups) and this thread's in
  /// [0, block).
  mlir::Value workgroup, thread;
  int64_t block;
  /// `size` f32 of workgroup memory (one per call).
  std::function<mlir::Value(int64_t size)> scratch;
  /// The kernel (gpu.func) being built: for attributes of the whole kernel
  /// (nvvm.maxnreg).
  mlir::Operation *kernel = nullptr;
};

class GPUKernelTarget : public KernelTarget {
public:
  GPUKernelTarget(mlir::ModuleOp module, TargetAttr target);

  mlir::LogicalResult checkCacheType(mlir::Type type,
                                     mlir::Operation *entry) override;
  /// Every linear with FP8 activations (the prefill forms read the codes).
  bool takesFP8InputCodes(const kernels::LinearKernel &linear) override;
  /// Experts whose prefill products run on the FP8 units
  /// (kernels::expertsOnFP8Units).
  bool
  expertsTakeFP8InputCodes(const kernels::MoEExpertsKernel &experts) override;
  void launch(mlir::OpBuilder &b, mlir::Location loc,
              mlir::SymbolRefAttr kernel, mlir::ValueRange operands) override;

  /// Host side: the number of workgroups for the launch on `operands`.
  using GridFn = std::function<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                           mlir::ValueRange operands)>;
  using BodyFn = llvm::function_ref<void(mlir::OpBuilder &, mlir::Location,
                                         const GPUThread &, mlir::ValueRange)>;

  /// The kernel `xfmr_<key>` over operands of `types` (memrefs with identity
  /// layout, or index), `block` threads per workgroup, created with `body`
  /// (which gets the operands as logical views) on first use.
  mlir::SymbolRefAttr get(llvm::StringRef key, mlir::TypeRange types,
                          int64_t block, GridFn grid, BodyFn body);

  /// The same for a kernel family's operands (the grid function sees them
  /// by role too).
  template <template <typename> class Operands>
  mlir::SymbolRefAttr
  get(llvm::StringRef key, Operands<mlir::Type> types, int64_t block,
      std::function<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                Operands<mlir::Value>)>
          grid,
      llvm::function_ref<void(mlir::OpBuilder &, mlir::Location,
                              const GPUThread &, Operands<mlir::Value>)>
          body) {
    llvm::SmallVector<mlir::Type> present = presentOperands(types);
    auto wrapped = [&](mlir::OpBuilder &b, mlir::Location loc,
                       const GPUThread &thread, mlir::ValueRange args) {
      body(b, loc, thread, bindOperands(types, args));
    };
    GridFn byRole = [types, grid](mlir::OpBuilder &b, mlir::Location loc,
                                  mlir::ValueRange operands) {
      return grid(b, loc, bindOperands(types, operands));
    };
    return get(key, present, block, byRole, wrapped);
  }

  /// A kernel that is two: `single` launched when the leading size of
  /// operand `operand` is 1 (decode: one token), `several` otherwise
  /// (prefill). The host tests the size before each launch; each kernel
  /// keeps only the workgroup memory and grid of its own form.
  mlir::SymbolRefAttr byLeadingSize(llvm::StringRef key,
                                    mlir::SymbolRefAttr single,
                                    mlir::SymbolRefAttr several,
                                    unsigned operand);

  /// A kernel that is two launches through a device scratch buffer of type
  /// `scratch`, allocated for the call and released after it: `first` on
  /// the operands and the scratch, then `second` on the scratch and the
  /// operands `secondOperands` lists (by position). Flash decoding: partial
  /// softmaxes over slices of the cache, then their combination.
  mlir::SymbolRefAttr twoSteps(llvm::StringRef key, mlir::SymbolRefAttr first,
                               mlir::SymbolRefAttr second,
                               mlir::MemRefType scratch,
                               llvm::ArrayRef<unsigned> secondOperands);

  /// The general form: device scratch buffers (1-D; a dynamic size comes
  /// from `size` on the call's operands), allocated for the call and
  /// released after it, and launches in order, each on operands and
  /// scratches picked by position. A grouped GEMM: routing, then products.
  struct Scratch {
    mlir::MemRefType type;
    /// The dynamic size (null for a static type).
    std::function<mlir::Value(mlir::OpBuilder &, mlir::Location,
                              mlir::ValueRange operands)>
        size;
  };
  struct StepArgument {
    bool scratch; ///< scratch `index`, else operand `index`
    unsigned index;
  };
  struct Step {
    mlir::SymbolRefAttr kernel;
    /// Empty: every operand, then every scratch.
    llvm::SmallVector<StepArgument> arguments;
  };
  mlir::SymbolRefAttr sequence(llvm::StringRef key,
                               llvm::ArrayRef<Scratch> scratches,
                               llvm::ArrayRef<Step> launches);

  /// Whether kernels are for SPIR-V (workgroup memory as a Workgroup
  /// storage-class allocation rather than a gpu.func attribution).
  bool isVulkan() const { return getKind() == "vulkan"; }

private:
  mlir::gpu::GPUModuleOp kernelModule(mlir::Location loc);

  struct Kernel {
    int64_t index;
    GridFn grid;
    llvm::SmallVector<mlir::Type> types;
  };
  llvm::StringMap<Kernel> kernels;
  struct Choice {
    mlir::SymbolRefAttr single, several;
    unsigned operand;
  };
  llvm::StringMap<Choice> choices;
  struct Sequence {
    llvm::SmallVector<Scratch> scratches;
    llvm::SmallVector<Step> launches;
  };
  llvm::StringMap<Sequence> sequences;
  int64_t nextIndex = 0;
};

/// The storage element type of a GPU buffer of memref element `type` (bf16
/// and f16 as i16: not every GPU language has them as types).
mlir::Type gpuStorageType(mlir::Type type);

void registerGPUKernelTarget(KernelRegistry &registry);

} // namespace xfmr

#endif // XFMR_LOWERING_GPU_GPUKERNELTARGET_H
