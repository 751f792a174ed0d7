//===- GpuDevice.cpp ------------------------------------------------------===//

#include "backends/gpu/GpuDevice.h"

#include <algorithm>

using namespace xfmr::runtime;

GpuDevice::~GpuDevice() = default;

uint64_t xfmr::runtime::bufferExtent(const GpuKernelInfo &info, size_t k,
                                     GpuLaunchArgs args) {
  if (k >= info.extents.size() || info.extents[k].empty())
    return 0;
  const std::vector<uint64_t> &extent = info.extents[k];
  size_t buffers = info.buffers.size();
  // Sizes are non-negative i32 scalars; the product fits 64 bits.
  uint64_t bytes = extent[0];
  for (size_t i = 1; i < extent.size(); ++i)
    bytes *=
        static_cast<uint64_t>(std::max<int64_t>(args[buffers + extent[i]], 0));
  return bytes;
}
