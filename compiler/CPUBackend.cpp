//===- CPUBackend.cpp - --target cpu ----------------------------------===//
//
// Kernels as loops (lowering/CPU/Kernels), LLVM for the --cpu given, one
// shared object with OpenMP; the code carries its model info table.
//
//===----------------------------------------------------------------------===//

#include "compiler/TargetBackend.h"
#include "lowering/CPU/CPUPipeline.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

using namespace llvm;
using namespace xfmr;

namespace {

class CPUBackend : public TargetBackend {
public:
  Error configure(const CompileOptions &options) override {
    // "cpu" (this machine's architecture) or "cpu:ARCH" (cross-compiled).
    // resolveCPUTarget checks the architecture.
    StringRef arch = StringRef(options.target).split(':').second;
    target.arch = arch.str();
    // By default the code is for this machine's CPU: the fastest here, and
    // the runtime refuses it, naming the missing features, elsewhere. A
    // cross target defaults to the architecture's baseline.
    target.cpu = options.cpu.empty() ? (arch == "aarch64" ? "generic" : "native")
                                     : options.cpu;
    target.optLevel = options.optLevel;
    target.sveBits = options.sveBits;
    lowering.weightPanels = options.cpuOnly;
    lowering.precise = options.precise;
    if (Error error = resolveCPUTarget(target))
      return error;
    // Cross-compiled (AArch64) code calls OpenMP's entry points too, which
    // the AArch64 runtime defines itself (runtime/src/backends/cpu/
    // ForkJoin.cpp) instead of linking libomp.
    lowering.openmp = true;
    return Error::success();
  }

  TargetAttr getTarget(mlir::MLIRContext *context) const override {
    return TargetAttr::get(context, "cpu", target.triple, target.cpuName,
                           target.features, target.sveBits);
  }

  void buildLoweringPipeline(mlir::OpPassManager &pm) const override {
    buildCPULoweringPipeline(pm, lowering);
  }

  std::string describe() const override {
    std::string sve = target.sveBits
                          ? ", " + std::to_string(target.sveBits) + "-bit SVE"
                          : "";
    return "code for " + target.triple + ", cpu " + target.cpuName + sve +
           " (LLVM -O" + std::to_string(target.optLevel) + ")";
  }

  Expected<TargetCode> generateCode(mlir::ModuleOp module,
                                    const ModelSizes &sizes,
                                    const ProgressFn &step) override {
    // The code carries the sizes it is compiled for; the manifest repeats
    // them.
    if (Error error =
            addModelInfo(module, sizes, target.cpuName, target.features))
      return std::move(error);
    Expected<std::string> object = emitObject(module, target);
    if (!object)
      return object.takeError();
    if (step)
      step("linking");
    Expected<std::string> code = linkSharedObject(*object, target);
    if (!code)
      return code.takeError();
    TargetCode result;
    result.code = std::move(*code);
    result.manifest = json::Object{{"kind", "cpu"},
                                   {"triple", target.triple},
                                   {"cpu", target.cpuName},
                                   {"features", target.features}};
    if (target.sveBits)
      result.manifest["sve_bits"] = int64_t(target.sveBits);
    return result;
  }

private:
  CPUTarget target;
  CPULoweringOptions lowering;
};

} // namespace

void xfmr::registerCPUBackend() {
  registerTargetBackend("cpu", [](StringRef) {
    return std::make_unique<CPUBackend>();
  });
}
