//===- HipDeviceTest.cpp - the HIP device ---------------------------------===//
//
// AMD GPUs are not lent to these tests: the HIP device is checked over a
// missing library and over a fake HIP runtime in host memory (FakeHip.cpp):
// device selection, the gfx name from the properties, copies, and decode
// steps as HIP graphs, including a runtime whose graphs refuse module
// kernels.
//
//===----------------------------------------------------------------------===//

#include "DeviceTestSupport.h"
#include "backends/gpu/GpuDevice.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <vector>

using namespace xfmr::runtime;
using namespace xfmr::runtime::test;

namespace {

TEST(HipDevice, MissingLibrary) {
  ScopedEnv library("XFMR_HIP_LIBRARY", "/nonexistent/libamdhip64.so");
  std::string message = errorOf([] { createHipDevice(); });
  EXPECT_NE(message.find("/nonexistent/libamdhip64.so cannot be loaded"),
            std::string::npos)
      << message;
}

/// The fake runtime's log (cleared unless `clear` is false).
std::string fakeLog(bool clear = true) {
  return fakeDriverLog(XFMR_FAKE_HIP_LIBRARY, "xfmrFakeHip", clear);
}

/// A device over the fake runtime with two scalar kernels.
std::unique_ptr<GpuDevice> fakeDevice() {
  ScopedEnv library("XFMR_HIP_LIBRARY", XFMR_FAKE_HIP_LIBRARY);
  std::unique_ptr<GpuDevice> device = createHipDevice();
  const uint8_t hsaco[] = {0x7f, 'E', 'L', 'F'};
  device->loadKernels(hsaco, sizeof(hsaco), fakeKernels());
  fakeLog();
  return device;
}

// The device's name and its gfx name without the feature suffix, found in
// the properties wherever the runtime's layout puts it; XFMR_HIP_DEVICE
// selects among the devices and must be an index of one.
TEST(HipDevice, SelectsTheDeviceAndReadsItsChip) {
  ScopedEnv library("XFMR_HIP_LIBRARY", XFMR_FAKE_HIP_LIBRARY);
  {
    ScopedEnv index("XFMR_HIP_DEVICE", nullptr);
    std::unique_ptr<GpuDevice> device = createHipDevice();
    EXPECT_EQ(device->name(), "Fake MI300X");
    EXPECT_EQ(device->chip(), "gfx942");
  }
  {
    ScopedEnv index("XFMR_HIP_DEVICE", "1");
    std::unique_ptr<GpuDevice> device = createHipDevice();
    EXPECT_EQ(device->name(), "Fake MI250X");
    EXPECT_EQ(device->chip(), "gfx90a");
    const uint8_t hsaco[] = {0x7f, 'E', 'L', 'F'};
    fakeLog();
    device->loadKernels(hsaco, sizeof(hsaco), {});
    EXPECT_EQ(fakeLog(), "load on device 1\n");
  }
  ScopedEnv index("XFMR_HIP_DEVICE", "2");
  std::string message = errorOf([] { createHipDevice(); });
  EXPECT_NE(message.find("XFMR_HIP_DEVICE=2 is not a HIP device index: this "
                         "machine has 2 (0 to 1)"),
            std::string::npos)
      << message;
}

TEST(HipDevice, Memory) {
  std::unique_ptr<GpuDevice> device = fakeDevice();
  std::vector<float> values = {1, 2, 3, 4}, back(4, -1);
  uint64_t buffer = device->allocate(16);
  EXPECT_EQ(buffer % 256, 0u);
  device->copyToDevice(buffer, values.data(), 16);
  device->copyToHost(back.data(), buffer, 16);
  EXPECT_EQ(back, values);
  device->zero(buffer + 4, 8);
  device->copyToHost(back.data(), buffer, 16);
  EXPECT_EQ(back, (std::vector<float>{1, 0, 0, 4}));
  EXPECT_EQ(fakeLog(), "copy to device\ncopy to host\nzero\ncopy to host\n");
  device->release(buffer);
  uint32_t grid[3] = {1, 1, 1};
  int64_t args[1] = {0};
  std::string message = errorOf([&] { device->launch(2, grid, args); });
  EXPECT_NE(message.find("launching kernel 2 of 2 loaded"), std::string::npos)
      << message;
}

// Without XFMR_HIP_GRAPHS a step's launches go out one by one.
TEST(HipDevice, StepsLaunchDirectlyByDefault) {
  ScopedEnv graphs("XFMR_HIP_GRAPHS", nullptr);
  std::unique_ptr<GpuDevice> device = fakeDevice();
  step(*device, 5, 3);
  EXPECT_EQ(fakeLog(), "launch add_s2(5,7) 2x1x1\nlaunch scale_s1(3) 1x1x1\n");
}

// With XFMR_HIP_GRAPHS=1: the sequence of CUDA's graphs
// (checkDecodeStepsAsGraphs), and a zero in the middle of a step launches
// what was recorded first too.
TEST(HipDevice, DecodeStepsAsGraphs) {
  ScopedEnv graphs("XFMR_HIP_GRAPHS", "1");
  std::unique_ptr<GpuDevice> device = fakeDevice();
  checkDecodeStepsAsGraphs(*device, [] { return fakeLog(); });

  uint64_t buffer = device->allocate(16);
  const uint32_t grid[3] = {2, 1, 1};
  int64_t add[] = {8, 7};
  device->beginStep();
  device->launch(0, grid, add);
  device->zero(buffer, 4);
  device->endStep();
  EXPECT_EQ(fakeLog(), "launch add_s2(8,7) 2x1x1\nzero\n");
  device->release(buffer);
}

// A runtime whose graphs refuse module kernels (ROCm 5): the device says so
// once, launches the step directly, and every later step too.
TEST(HipDevice, GraphsRefusedFallBackToLaunches) {
  ScopedEnv graphs("XFMR_HIP_GRAPHS", "1");
  ScopedEnv refuse("XFMR_FAKE_HIP_REFUSE_MODULE_NODES", "1");
  std::unique_ptr<GpuDevice> device = fakeDevice();
  testing::internal::CaptureStderr();
  step(*device, 5, 3);
  step(*device, 6, 4);
  std::string warning = testing::internal::GetCapturedStderr();
  EXPECT_EQ(fakeLog(), "graph -\n"
                       "launch add_s2(5,7) 2x1x1\n"
                       "launch scale_s1(3) 1x1x1\n"
                       "launch add_s2(6,7) 2x1x1\n"
                       "launch scale_s1(4) 1x1x1\n");
  EXPECT_NE(warning.find("XFMR_HIP_GRAPHS=1, but this HIP runtime builds no "
                         "graph of the decode step (hipGraphAddKernelNode "
                         "failed: hipErrorInvalidDeviceFunction (98) "
                         "launching kernel 'add_s2' on grid 2x1x1, block "
                         "64x1x1); launching its kernels one by one"),
            std::string::npos)
      << warning;
  EXPECT_EQ(
      warning.find("builds no graph", warning.find("builds no graph") + 1),
      std::string::npos)
      << "said once: " << warning;
}

} // namespace
