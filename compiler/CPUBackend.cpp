//===- CPUBackend.cpp - --target cpu ----------------------------------===//
//
// Kernels as loops (lowering/CPU/Kernels), LLVM for the --cpu given, one
// shared object with OpenMP; the code carries its model info table.
//
//===----------------------------------------------------------------------===//

#include "compiler/TargetBackend.h"
#include "lowering/CPU/CPUPipeline.h"

#include "llvm/Support/FormatVariadic.h"

using namespace llvm;
using namespace xfmr;

namespace {

class CPUBackend : public TargetBackend {
public:
  Error configure(const CompileOptions &options) override {
    if (options.target != "cpu")
      return createStringError(std::make_error_code(std::errc::invalid_argument),
                               Twine("target '") + options.target +
                                   "': the CPU target takes no suffix; the "
                                   "CPU is chosen with --cpu");
    // By default the code is for this machine's CPU: the fastest here, and
    // the runtime refuses it, naming the missing features, elsewhere.
    target.cpu = options.cpu.empty() ? "native" : options.cpu;
    target.optLevel = options.optLevel;
    lowering.weightPanels = options.cpuOnly;
    lowering.precise = options.precise;
    return resolveCPUTarget(target);
  }

  TargetAttr getTarget(mlir::MLIRContext *context) const override {
    return TargetAttr::get(context, "cpu", target.triple, target.cpuName,
                           target.features);
  }

  void buildLoweringPipeline(mlir::OpPassManager &pm) const override {
    buildCPULoweringPipeline(pm, lowering);
  }

  std::string describe() const override {
    return "code for " + target.triple + ", cpu " + target.cpuName +
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
    Expected<std::string> code = linkSharedObject(*object);
    if (!code)
      return code.takeError();
    TargetCode result;
    result.code = std::move(*code);
    result.manifest = json::Object{{"kind", "cpu"},
                                   {"triple", target.triple},
                                   {"cpu", target.cpuName},
                                   {"features", target.features}};
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
