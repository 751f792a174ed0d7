//===- Backend.cpp - the backends this runtime has ------------------------===//

#include "xfmr/runtime/Backend.h"

#include "backends/cpu/CpuBackend.h"
#include "backends/gpu/GpuBackend.h"
#include "xfmr/runtime/Error.h"

#include <algorithm>

using namespace xfmr::runtime;

DeviceBuffer::~DeviceBuffer() = default;
Backend::~Backend() = default;

StepTable xfmr::runtime::makeStepTable(
    const StepArgs &args,
    const std::function<uint64_t(DeviceBuffer &)> &address) {
  StepTable table;
  table.base = UINT64_MAX;
  for (const StepSegment &segment : args.segments) {
    uint64_t at = address(*segment.cache);
    table.base = std::min(table.base, at);
    table.end = std::max(table.end, at + segment.cache->bytes());
  }
  table.rows.reserve(args.segments.size() * 4);
  for (const StepSegment &segment : args.segments)
    table.rows.insert(
        table.rows.end(),
        {segment.firstRow, segment.count, segment.start,
         static_cast<int64_t>(address(*segment.cache) - table.base)});
  return table;
}

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
