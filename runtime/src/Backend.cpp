//===- Backend.cpp - the backends this runtime has ------------------------===//

#include "xfmr/runtime/Backend.h"

#include "backends/cpu/CpuBackend.h"
#include "backends/gpu/GpuBackend.h"
#include "xfmr/runtime/Error.h"

using namespace xfmr::runtime;

DeviceBuffer::~DeviceBuffer() = default;
Backend::~Backend() = default;

void Backend::runStep(const StepArgs &) {
  throw Error("the " + kind() + " backend runs no step entry");
}

std::vector<std::string> xfmr::runtime::backendKinds() {
  return {"cpu", "cuda", "rocm", "vulkan"};
}

std::unique_ptr<Backend> xfmr::runtime::createBackend(const std::string &kind) {
  if (kind == "cpu")
    return std::make_unique<CpuBackend>();
  if (kind == "cuda" || kind == "rocm" || kind == "vulkan")
    return std::make_unique<GpuBackend>(kind);
  std::string kinds;
  for (const std::string &known : backendKinds())
    kinds += (kinds.empty() ? "'" : ", '") + known + "'";
  throw Error("target kind '" + kind +
              "' is not supported by this runtime (it runs " + kinds +
              " artifacts)");
}
