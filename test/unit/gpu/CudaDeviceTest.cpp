//===- CudaDeviceTest.cpp - the CUDA device -------------------------------===//
//
// Without a GPU the device is checked through its error paths: the CUDA
// toolkit's stub libcuda (every call fails with CUDA_ERROR_STUB_LIBRARY) and
// libraries that do not exist; the CUDA device's decode-step graphs through
// a fake driver over host memory (FakeCuda.cpp). With an NVIDIA GPU and
// driver, the memory calls and a hand-written PTX kernel run for real.
//
//===----------------------------------------------------------------------===//

#include "DeviceTestSupport.h"
#include "backends/gpu/GpuDevice.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <vector>

using namespace xfmr::runtime;
using namespace xfmr::runtime::test;

namespace {

std::string cudaStubLibrary() {
  for (const char *path : {"/usr/local/cuda/lib64/stubs/libcuda.so",
                           "/usr/local/cuda/lib/stubs/libcuda.so"})
    if (access(path, R_OK) == 0)
      return path;
  return "";
}

/// The machine's real CUDA device, or nullptr with `why` set.
std::unique_ptr<GpuDevice> realCudaDevice(std::string &why) {
  ScopedEnv library("XFMR_CUDA_LIBRARY", nullptr);
  ScopedEnv index("XFMR_CUDA_DEVICE", nullptr);
  try {
    return createCudaDevice();
  } catch (const Error &error) {
    why = std::string("no CUDA device: ") + error.what();
    return nullptr;
  }
}

/// Adds 1.0 to `n` floats of buffer 0, following the kernel parameter ABI
/// of GpuDevice.h: the buffer's 5 memref descriptor fields, its i32 element
/// offset, then the scalar n.
const char *addOnePtx = R"(
.version 8.0
.target sm_80
.address_size 64

.visible .entry add_one(
    .param .u64 buffer_allocated,
    .param .u64 buffer_aligned,
    .param .u64 buffer_offset,
    .param .u64 buffer_size,
    .param .u64 buffer_stride,
    .param .u32 buffer_element_offset,
    .param .u32 n)
{
    .reg .pred %p<2>;
    .reg .b32 %r<8>;
    .reg .b64 %rd<8>;
    .reg .f32 %f<3>;

    ld.param.u64 %rd1, [buffer_aligned];
    ld.param.u64 %rd2, [buffer_offset];
    ld.param.u32 %r1, [buffer_element_offset];
    ld.param.u32 %r2, [n];
    mov.u32 %r3, %ctaid.x;
    mov.u32 %r4, %ntid.x;
    mov.u32 %r5, %tid.x;
    mad.lo.s32 %r6, %r3, %r4, %r5;
    setp.ge.s32 %p1, %r6, %r2;
    @%p1 bra DONE;
    add.s32 %r7, %r6, %r1;
    cvt.s64.s32 %rd3, %r7;
    add.s64 %rd4, %rd3, %rd2;
    shl.b64 %rd5, %rd4, 2;
    cvta.to.global.u64 %rd6, %rd1;
    add.s64 %rd7, %rd6, %rd5;
    ld.global.f32 %f1, [%rd7];
    add.f32 %f2, %f1, 0f3F800000;
    st.global.f32 [%rd7], %f2;
DONE:
    ret;
}
)";

GpuKernelInfo addOneInfo() {
  GpuKernelInfo info;
  info.name = "add_one";
  info.block[0] = 128;
  info.buffers = {4};
  info.scalars = 1;
  return info;
}

} // namespace

TEST(CudaDevice, StubLibraryFailsAtCuInit) {
  std::string stub = cudaStubLibrary();
  if (stub.empty())
    GTEST_SKIP() << "no CUDA toolkit stub libcuda.so";
  // In a child process: once loaded, the stub (soname libcuda.so.1) would
  // also answer the later tests' dlopen("libcuda.so.1") of the real driver.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("XFMR_CUDA_LIBRARY", stub.c_str(), 1);
        std::fprintf(stderr, "%s\n",
                     errorOf([] { createCudaDevice(); }).c_str());
        std::exit(0);
      },
      testing::ExitedWithCode(0),
      "cuInit failed: CUDA_ERROR_STUB_LIBRARY \\(34\\)");
}

TEST(CudaDevice, MissingLibrary) {
  ScopedEnv library("XFMR_CUDA_LIBRARY", "/nonexistent/libcuda.so.1");
  std::string message = errorOf([] { createCudaDevice(); });
  EXPECT_NE(message.find("/nonexistent/libcuda.so.1 cannot be loaded"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("NVIDIA driver"), std::string::npos) << message;
}

TEST(CudaDevice, BadDeviceIndex) {
  std::string why;
  if (!realCudaDevice(why))
    GTEST_SKIP() << why;
  ScopedEnv index("XFMR_CUDA_DEVICE", "4096");
  std::string message = errorOf([] { createCudaDevice(); });
  EXPECT_NE(message.find("XFMR_CUDA_DEVICE=4096"), std::string::npos)
      << message;
}

TEST(CudaDevice, Memory) {
  std::string why;
  std::unique_ptr<GpuDevice> device = realCudaDevice(why);
  if (!device)
    GTEST_SKIP() << why;
  EXPECT_FALSE(device->name().empty());
  EXPECT_EQ(device->chip().rfind("sm_", 0), 0u) << device->chip();

  uint64_t first = device->allocate(1000);
  EXPECT_EQ(first % 256, 0u);
  EXPECT_EQ(device->memoryInUse(), 1024u);

  std::vector<float> data(250);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = float(i) * 0.5f;
  device->copyToDevice(first, data.data(), 1000);
  std::vector<float> back(250, -1.0f);
  device->copyToHost(back.data(), first, 1000);
  EXPECT_EQ(back, data);

  // Zero a range in the middle (an address the host code computed).
  device->zero(first + 40, 400);
  device->copyToHost(back.data(), first, 1000);
  for (size_t i = 0; i < back.size(); ++i)
    EXPECT_EQ(back[i], i >= 10 && i < 110 ? 0.0f : data[i]) << i;

  // A released block is cached and reused for a request of its size class.
  device->release(first);
  EXPECT_EQ(device->memoryInUse(), 1024u);
  uint64_t again = device->allocate(900);
  EXPECT_EQ(again, first);
  EXPECT_EQ(device->memoryInUse(), 1024u);
  uint64_t other = device->allocate(3000);
  EXPECT_NE(other, first);
  EXPECT_EQ(device->memoryInUse(), 1024u + 3072u);
  device->release(other);
  device->release(again);
  EXPECT_NE(errorOf([&] { device->release(again); }).find("released"),
            std::string::npos);
  device->synchronize();
}

TEST(CudaDevice, PtxKernel) {
  std::string why;
  std::unique_ptr<GpuDevice> device = realCudaDevice(why);
  if (!device)
    GTEST_SKIP() << why;
  // The artifact's bytes: PTX text without a terminating NUL.
  device->loadKernels(reinterpret_cast<const uint8_t *>(addOnePtx),
                      std::strlen(addOnePtx), {addOneInfo()});

  constexpr int64_t n = 1000;
  uint64_t buffer = device->allocate(n * 4);
  std::vector<float> data(n);
  for (int64_t i = 0; i < n; ++i)
    data[i] = float(i);
  device->copyToDevice(buffer, data.data(), n * 4);

  // Past the first 4 elements: the address carries the offset.
  int64_t skipped[] = {int64_t(buffer + 16), n - 4};
  uint32_t grid[3] = {uint32_t((n - 4 + 127) / 128), 1, 1};
  device->launch(0, grid, skipped);
  // The whole buffer, reusing the launch's parameter storage.
  int64_t whole[] = {int64_t(buffer), n};
  grid[0] = uint32_t((n + 127) / 128);
  device->launch(0, grid, whole);
  // An empty grid launches nothing.
  uint32_t empty[3] = {0, 1, 1};
  device->launch(0, empty, whole);

  std::vector<float> back(n);
  device->copyToHost(back.data(), buffer, n * 4);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(back[i], float(i) + (i < 4 ? 1.0f : 2.0f)) << i;
  device->release(buffer);
}

TEST(CudaDevice, LoadErrors) {
  std::string why;
  std::unique_ptr<GpuDevice> device = realCudaDevice(why);
  if (!device)
    GTEST_SKIP() << why;
  GpuKernelInfo missing = addOneInfo();
  missing.name = "no_such_kernel";
  std::string message = errorOf([&] {
    device->loadKernels(reinterpret_cast<const uint8_t *>(addOnePtx),
                        std::strlen(addOnePtx), {missing});
  });
  EXPECT_NE(message.find("no_such_kernel"), std::string::npos) << message;

  const char *bad = ".version 8.0\n.target sm_80\nthis is not ptx\n";
  message = errorOf([&] {
    device->loadKernels(reinterpret_cast<const uint8_t *>(bad),
                        std::strlen(bad), {addOneInfo()});
  });
  EXPECT_NE(message.find("cuModuleLoadDataEx failed"), std::string::npos)
      << message;

  uint32_t grid[3] = {1, 1, 1};
  int64_t args[2] = {0, 0};
  message = errorOf([&] { device->launch(0, grid, args); });
  EXPECT_NE(message.find("0 loaded"), std::string::npos) << message;
}

/// The fake driver's log (cleared unless `clear` is false).
std::string fakeLog(bool clear = true) {
  return fakeDriverLog(XFMR_FAKE_CUDA_LIBRARY, "xfmrFakeCuda", clear);
}

/// A device over the fake driver (FakeCuda.cpp) with two scalar kernels.
std::unique_ptr<GpuDevice> fakeDevice() {
  ScopedEnv library("XFMR_CUDA_LIBRARY", XFMR_FAKE_CUDA_LIBRARY);
  std::unique_ptr<GpuDevice> device = createCudaDevice();
  const char ptx[] = "// PTX";
  device->loadKernels(reinterpret_cast<const uint8_t *>(ptx), sizeof(ptx) - 1,
                      fakeKernels());
  fakeLog();
  return device;
}

// Without XFMR_CUDA_GRAPHS a step's launches go out one by one.
TEST(CudaDevice, StepsLaunchDirectlyByDefault) {
  ScopedEnv graphs("XFMR_CUDA_GRAPHS", nullptr);
  std::unique_ptr<GpuDevice> device = fakeDevice();
  step(*device, 5, 3);
  EXPECT_EQ(fakeLog(), "launch add_s2(5,7) 2x1x1\nlaunch scale_s1(3) 1x1x1\n");
}

// With XFMR_CUDA_GRAPHS=1: checkDecodeStepsAsGraphs' sequence.
TEST(CudaDevice, DecodeStepsAsGraphs) {
  ScopedEnv graphs("XFMR_CUDA_GRAPHS", "1");
  std::unique_ptr<GpuDevice> device = fakeDevice();
  checkDecodeStepsAsGraphs(*device, [] { return fakeLog(); });
}
