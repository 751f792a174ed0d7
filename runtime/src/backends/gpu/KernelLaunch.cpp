//===- KernelLaunch.cpp ---------------------------------------------------===//

#include "backends/gpu/KernelLaunch.h"

#include <algorithm>
#include <cstring>

using namespace xfmr::runtime;

namespace {
/// The memref size field of every buffer parameter (unread by the kernels).
constexpr int64_t bufferSizeField = int64_t(1) << 40;
} // namespace

void **KernelLaunch::parameters(std::vector<void *> &storage) const {
  storage.resize(slots.size());
  for (size_t i = 0; i < slots.size(); ++i)
    storage[i] = const_cast<uint64_t *>(&slots[i]);
  return storage.data();
}

KernelLaunch xfmr::runtime::kernelLaunch(uint32_t index, const uint32_t grid[3],
                                         const GpuKernelInfo &info,
                                         GpuLaunchArgs args) {
  KernelLaunch launch;
  launch.index = index;
  std::copy(grid, grid + 3, launch.grid);
  size_t buffers = info.buffers.size();
  launch.slots.assign(5 * buffers + buffers + info.scalars, 0);
  auto put = [&](size_t slot, auto value) {
    static_assert(sizeof(value) <= sizeof(uint64_t));
    std::memcpy(&launch.slots[slot], &value, sizeof(value));
  };
  for (size_t k = 0; k < buffers; ++k) {
    void *pointer = reinterpret_cast<void *>(uintptr_t(args[k]));
    put(5 * k + 0, pointer);          // allocated
    put(5 * k + 1, pointer);          // aligned
    put(5 * k + 2, int64_t(0));       // offset
    put(5 * k + 3, bufferSizeField);  // size
    put(5 * k + 4, int64_t(1));       // stride
    put(5 * buffers + k, int32_t(0)); // element offset
  }
  for (size_t j = 0; j < info.scalars; ++j)
    put(6 * buffers + j, static_cast<int32_t>(args[buffers + j]));
  return launch;
}

std::string xfmr::runtime::describeLaunch(const KernelLaunch &launch,
                                          const GpuKernelInfo &info) {
  auto dims = [](const auto *values) {
    return std::to_string(values[0]) + "x" + std::to_string(values[1]) + "x" +
           std::to_string(values[2]);
  };
  return " launching kernel '" + info.name + "' on grid " + dims(launch.grid) +
         ", block " + dims(info.block);
}

bool StepRecorder::record(KernelLaunch &launch) {
  if (!recording)
    return false;
  recorded.push_back(std::move(launch));
  return true;
}

std::vector<KernelLaunch> StepRecorder::interrupt() {
  recording = false;
  std::vector<KernelLaunch> pending = std::move(recorded);
  recorded.clear();
  return pending;
}

std::vector<KernelLaunch> StepRecorder::end(bool discard) {
  std::vector<KernelLaunch> steps = interrupt();
  if (discard)
    steps.clear();
  return steps;
}

bool StepRecorder::fitsGraph(const std::vector<KernelLaunch> &steps) const {
  if (shape.empty() || steps.size() != shape.size())
    return false;
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].index != shape[i].index ||
        !std::equal(steps[i].grid, steps[i].grid + 3, shape[i].grid))
      return false;
  return true;
}

void StepRecorder::keepShape(const std::vector<KernelLaunch> &steps) {
  shape.clear();
  for (const KernelLaunch &launch : steps) {
    Node node{launch.index, {}};
    std::copy(launch.grid, launch.grid + 3, node.grid);
    shape.push_back(node);
  }
}
