//===- GpuDevice.cpp ------------------------------------------------------===//

#include "backends/gpu/GpuDevice.h"

using namespace xfmr::runtime;

GpuDevice::~GpuDevice() = default;
