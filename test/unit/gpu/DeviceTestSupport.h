//===- DeviceTestSupport.h - helpers of the GPU device tests -----*- C++
//-*-===//

#ifndef XFMR_TEST_UNIT_GPU_DEVICETESTSUPPORT_H
#define XFMR_TEST_UNIT_GPU_DEVICETESTSUPPORT_H

#include "backends/gpu/GpuDevice.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <dlfcn.h>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace xfmr::runtime::test {

/// Sets (or, given nullptr, unsets) an environment variable for a scope.
class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name(name) {
    if (const char *old = std::getenv(name))
      previous = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (previous)
      setenv(name, previous->c_str(), 1);
    else
      unsetenv(name);
  }

private:
  const char *name;
  std::optional<std::string> previous;
};

/// The message of the Error `body` throws ("" and a failure if none).
inline std::string errorOf(const std::function<void()> &body) {
  try {
    body();
  } catch (const Error &error) {
    return error.what();
  }
  ADD_FAILURE() << "no Error thrown";
  return "";
}

/// A fake driver's log (FakeDriver.h), through the same handle the device
/// opened: `prefix`Log() and, when `clear`, `prefix`Clear().
inline std::string fakeDriverLog(const char *library, const std::string &prefix,
                                 bool clear = true) {
  void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    return std::string("cannot open ") + library;
  auto read = reinterpret_cast<const char *(*)()>(
      dlsym(handle, (prefix + "Log").c_str()));
  auto wipe =
      reinterpret_cast<void (*)()>(dlsym(handle, (prefix + "Clear").c_str()));
  std::string text = read ? read() : "no " + prefix + "Log";
  if (clear && wipe)
    wipe();
  dlclose(handle);
  return text;
}

/// The fake drivers' kernels (FakeDriver.h): add_s2 (2 scalars) and
/// scale_s1 (1), 64 threads a block.
inline std::vector<GpuKernelInfo> fakeKernels() {
  auto info = [](const char *name, uint32_t scalars) {
    GpuKernelInfo kernel;
    kernel.name = name;
    kernel.block[0] = 64;
    kernel.scalars = scalars;
    return kernel;
  };
  return {info("add_s2", 2), info("scale_s1", 1)};
}

/// One decode-like step: add(a, 7) on a grid of `blocks`, then scale(b).
inline void step(GpuDevice &device, int64_t a, int64_t b, uint32_t blocks = 2) {
  const uint32_t grid[3] = {blocks, 1, 1}, one[3] = {1, 1, 1};
  int64_t add[] = {a, 7}, scale[] = {b};
  device.beginStep();
  device.launch(0, grid, add);
  device.launch(1, one, scale);
  device.endStep();
}

/// Decode steps as graphs, on a device over a fake driver whose log `log`
/// returns and clears: the first step builds a chain of kernel nodes and
/// launches it; the next steps with the same kernels and grids update the
/// nodes' parameters and relaunch it; another shape builds a new graph; a
/// copy in the middle of a step launches what was recorded first, one by
/// one; a failed step launches nothing.
inline void checkDecodeStepsAsGraphs(GpuDevice &device,
                                     const std::function<std::string()> &log) {
  step(device, 5, 3);
  EXPECT_EQ(log(), "node + add_s2(5,7) 2x1x1\n"
                   "node + scale_s1(3) 1x1x1\n"
                   "instantiate 2\n"
                   "graph launch\n"
                   "launch add_s2(5,7) 2x1x1\n"
                   "launch scale_s1(3) 1x1x1\n");
  step(device, 6, 4);
  EXPECT_EQ(log(), "node = add_s2(6,7) 2x1x1\n"
                   "node = scale_s1(4) 1x1x1\n"
                   "graph launch\n"
                   "launch add_s2(6,7) 2x1x1\n"
                   "launch scale_s1(4) 1x1x1\n");
  step(device, 6, 4, /*blocks=*/3);
  EXPECT_EQ(log(), "graph -\n"
                   "node + add_s2(6,7) 3x1x1\n"
                   "node + scale_s1(4) 1x1x1\n"
                   "instantiate 2\n"
                   "graph launch\n"
                   "launch add_s2(6,7) 3x1x1\n"
                   "launch scale_s1(4) 1x1x1\n");

  uint64_t buffer = device.allocate(16);
  float value = 0;
  const uint32_t grid[3] = {2, 1, 1}, one[3] = {1, 1, 1};
  int64_t add[] = {8, 7}, scale[] = {9};
  device.beginStep();
  device.launch(0, grid, add);
  device.copyToHost(&value, buffer, 4);
  device.launch(1, one, scale);
  device.endStep();
  EXPECT_EQ(log(), "launch add_s2(8,7) 2x1x1\n"
                   "copy to host\n"
                   "launch scale_s1(9) 1x1x1\n");

  device.beginStep();
  device.launch(0, grid, add);
  device.endStep(/*discard=*/true);
  EXPECT_EQ(log(), "");
  device.release(buffer);
}

} // namespace xfmr::runtime::test

#endif // XFMR_TEST_UNIT_GPU_DEVICETESTSUPPORT_H
