//===- KernelTarget.h - where the host schedule meets a target --*- C++ -*-===//
//
// The host schedule (xfmr-lower-to-kernels) is target-neutral: it decides
// buffers, views of the weight and cache blobs, lifetimes and which kernel
// of which family (KernelContracts.h) each op needs. A KernelTarget is what
// one target implements for it: materializing a kernel (once per
// configuration, through the registry keyed by (kernel family, target
// kind)) and launching it (a direct call on the CPU; a kernel launch on a
// GPU).
//
// Adding a target: subclass KernelTarget, register a factory for its kind
// and a materializer per kernel family (see lowering/CPU/CPUKernelTarget.cpp),
// and call its registration from registerKernelTargets().
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_COMMON_KERNELTARGET_H
#define XFMR_LOWERING_COMMON_KERNELTARGET_H

#include "lowering/Common/KernelContracts.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/StringMap.h"

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace xfmr {

/// The target of a module: its #xfmr.target, or the generic CPU.
TargetAttr getModuleTarget(mlir::ModuleOp module);
/// The attribute name of the module's target.
inline constexpr llvm::StringLiteral kTargetAttrName = "xfmr.target";

class KernelTarget {
public:
  KernelTarget(mlir::ModuleOp module, TargetAttr target)
      : module(module), target(target) {}
  virtual ~KernelTarget();

  mlir::ModuleOp getModule() const { return module; }
  TargetAttr getTarget() const { return target; }
  llvm::StringRef getKind() const { return target.getKind(); }

  /// Checks, before anything is emitted, that the target's kernels can keep
  /// a cache of `type` (an entry point argument of `entry`).
  virtual mlir::LogicalResult checkCacheType(mlir::Type type,
                                             mlir::Operation *entry) {
    return mlir::success();
  }

  /// Whether the target's kernel for `linear` (whose input an E4M3FN
  /// quantization produced: fp8InputGroup) multiplies the quantization's
  /// codes and scales rather than its dequantized values: the quantization
  /// then writes them too (FakeQuantizeKernel::withCodes).
  virtual bool takesFP8InputCodes(const kernels::LinearKernel &linear) {
    return false;
  }
  /// The same for an MoE experts kernel whose input an E4M3FN quantization
  /// produced (MoEExpertsKernel::fp8InputGroup).
  virtual bool expertsTakeFP8InputCodes(const kernels::MoEExpertsKernel &) {
    return false;
  }

  /// The kernel of `config`, created on first use by the materializer the
  /// registry has for (its family, this target's kind); an error at `loc`
  /// when there is none.
  mlir::FailureOr<mlir::SymbolRefAttr>
  materialize(const kernels::KernelConfig &config, mlir::Location loc);

  /// Emits the launch of `kernel` on `operands` (the present roles of its
  /// family's Operands, in order) at b's insertion point.
  virtual void launch(mlir::OpBuilder &b, mlir::Location loc,
                      mlir::SymbolRefAttr kernel,
                      mlir::ValueRange operands) = 0;

  /// A buffer of the schedule ([tokens, ...] activations), and its release.
  /// By default host memory (memref.alloc, 64-byte aligned).
  virtual mlir::Value allocate(mlir::OpBuilder &b, mlir::Location loc,
                               mlir::MemRefType type,
                               mlir::ValueRange dynamicSizes);
  virtual void deallocate(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value buffer);

private:
  mlir::ModuleOp module;
  TargetAttr target;
};

/// Targets and their kernels, by name. Filled by registerKernelTargets();
/// read by xfmr-lower-to-kernels.
class KernelRegistry {
public:
  using TargetFactory = std::function<std::unique_ptr<KernelTarget>(
      mlir::ModuleOp, TargetAttr)>;
  using Materializer = std::function<mlir::FailureOr<mlir::SymbolRefAttr>(
      KernelTarget &, const kernels::KernelConfig &)>;

  static KernelRegistry &global();

  void addTarget(llvm::StringRef kind, TargetFactory factory);
  void addKernel(llvm::StringRef family, llvm::StringRef kind,
                 Materializer materializer);

  /// Registers `build` as the `Target` (a KernelTarget subclass of that
  /// kind) implementation of family `Kernel`.
  template <typename Kernel, typename Target, typename Build>
  void addKernel(llvm::StringRef kind, Build build) {
    addKernel(Kernel::kName, kind,
              [build](KernelTarget &target,
                      const kernels::KernelConfig &config)
                  -> mlir::FailureOr<mlir::SymbolRefAttr> {
                return build(static_cast<Target &>(target),
                             std::get<Kernel>(config));
              });
  }

  /// The target for `module`'s #xfmr.target, or null if none is registered
  /// for its kind.
  std::unique_ptr<KernelTarget> createTarget(mlir::ModuleOp module) const;
  const Materializer *lookup(llvm::StringRef family,
                             llvm::StringRef kind) const;
  /// The registered target kinds, sorted.
  llvm::SmallVector<std::string> targetKinds() const;

private:
  std::map<std::string, TargetFactory> targets;
  std::map<std::pair<std::string, std::string>, Materializer> kernels;
};

/// Registers every target this build has (the CPU today). Idempotent.
void registerKernelTargets();

} // namespace xfmr

#endif // XFMR_LOWERING_COMMON_KERNELTARGET_H
