//===- VulkanDeviceTest.cpp - the GPU backend's Vulkan device -------------===//
//
// Runs the Vulkan device on whatever Vulkan driver the machine has (Mesa's
// lavapipe without a GPU) with the kernels of kernels.mlir, compiled to SPIR-V
// at build time. Every test runs twice: with device memory mapped where the
// driver allows it, and through staging copies (XFMR_VULKAN_STAGING=1, the
// discrete-GPU path). Without a Vulkan library or device the tests skip.
//
//===----------------------------------------------------------------------===//

#include "backends/gpu/GpuDevice.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

using namespace xfmr::runtime;

namespace {

/// Whether createVulkanDevice() failed because this machine has no Vulkan
/// (the test skips) rather than for a bug in the device (it fails).
bool isMissingVulkan(const std::string &message) {
  for (const char *missing :
       {"cannot be loaded", "without Vulkan headers", "no Vulkan device",
        "VK_ERROR_INCOMPATIBLE_DRIVER"})
    if (message.find(missing) != std::string::npos)
      return true;
  return false;
}

enum KernelIndex : uint32_t { kAxpy, kAddOne, kToBf16, kWiden8 };

/// The kernels of kernels.mlir as a manifest would describe them, in
/// KernelIndex order.
std::vector<GpuKernelInfo> kernelInfos() {
  auto kernel = [](const char *name, std::vector<uint32_t> buffers,
                   uint32_t scalars) {
    GpuKernelInfo info;
    info.name = name;
    info.block[0] = 64;
    info.buffers = std::move(buffers);
    info.scalars = scalars;
    return info;
  };
  std::vector<GpuKernelInfo> infos = {
      kernel("axpy", {4, 2, 4}, 2), kernel("addone", {4, 4}, 1),
      kernel("tobf16", {4, 2}, 1), kernel("widen8", {1, 4}, 2)};
  // addone's buffers span 4 bytes times n (its scalar 0), as a compiled
  // kernel's manifest says.
  infos[kAddOne].extents = {{4, 0}, {4, 0}};
  return infos;
}

uint32_t floatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}
float bitsFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
/// bf16 of a float that has no more than bf16's 8 significant bits.
uint16_t bf16(float value) { return uint16_t(floatBits(value) >> 16); }

class VulkanDeviceTest : public ::testing::TestWithParam<bool> {
protected:
  void SetUp() override {
    if (GetParam())
      setenv("XFMR_VULKAN_STAGING", "1", 1);
    std::string failure;
    try {
      device = createVulkanDevice();
    } catch (const Error &error) {
      failure = error.what();
    }
    unsetenv("XFMR_VULKAN_STAGING");
    if (!failure.empty()) {
      if (isMissingVulkan(failure))
        GTEST_SKIP() << failure;
      FAIL() << failure;
    }
#ifdef XFMR_TEST_VULKAN_KERNELS
    std::ifstream file(XFMR_TEST_VULKAN_KERNELS, std::ios::binary);
    ASSERT_TRUE(file) << "cannot read " << XFMR_TEST_VULKAN_KERNELS;
    binary.assign(std::istreambuf_iterator<char>(file),
                  std::istreambuf_iterator<char>());
    device->loadKernels(binary.data(), binary.size(), kernelInfos());
#endif
  }

  bool haveKernels() const { return !binary.empty(); }

  template <typename T>
  void upload(uint64_t address, const std::vector<T> &values) {
    device->copyToDevice(address, values.data(), values.size() * sizeof(T));
  }
  template <typename T> std::vector<T> download(uint64_t address, size_t n) {
    std::vector<T> values(n);
    device->copyToHost(values.data(), address, n * sizeof(T));
    return values;
  }
  /// Launches `kernel` over n elements (one thread each, 64 per workgroup).
  void launch(uint32_t kernel, uint32_t n, std::vector<int64_t> args) {
    const uint32_t grid[3] = {(n + 63) / 64, 1, 1};
    device->launch(kernel, grid, args.data());
  }
  static int64_t at(uint64_t address, uint64_t byteOffset) {
    return static_cast<int64_t>(address + byteOffset);
  }

  std::unique_ptr<GpuDevice> device;
  std::vector<uint8_t> binary;
};

#define REQUIRE_KERNELS()                                                      \
  if (!haveKernels())                                                          \
  GTEST_SKIP() << "built without mlir-opt/mlir-translate: no test kernels"

TEST_P(VulkanDeviceTest, Identity) {
  EXPECT_FALSE(device->name().empty());
  EXPECT_EQ(device->chip(), "");
}

// Buffers passed at byte offsets inside larger allocations: the device binds
// each at an aligned offset and passes the rest as the element offset.
TEST_P(VulkanDeviceTest, KernelsAtOffsets) {
  REQUIRE_KERNELS();
  const uint32_t n = 1000;
  const uint64_t xAt = 37, yAt = 5, outAt = 301; // elements
  uint64_t x = device->allocate((xAt + n) * 4);
  uint64_t y = device->allocate((yAt + n) * 2);
  uint64_t out = device->allocate((outAt + n + 50) * 4);

  std::vector<float> xs(n);
  std::vector<uint16_t> ys(n);
  for (uint32_t i = 0; i < n; ++i) {
    xs[i] = float(i % 50) * 0.5f - 10.0f;
    ys[i] = bf16(float(int(i % 7) - 3));
  }
  upload(at(x, xAt * 4), xs);
  upload(at(y, yAt * 2), ys);
  std::vector<float> sentinel(outAt + n + 50, -7.0f);
  upload(out, sentinel);

  launch(kAxpy, n, {at(x, xAt * 4), at(y, yAt * 2), at(out, outAt * 4), 3, n});
  std::vector<float> result = download<float>(out, outAt + n + 50);
  for (uint64_t i = 0; i < outAt + n + 50; ++i) {
    float expected =
        i < outAt || i >= outAt + n
            ? -7.0f
            : xs[i - outAt] * 3.0f + bitsFloat(uint32_t(ys[i - outAt]) << 16);
    ASSERT_EQ(result[i], expected) << "element " << i;
  }

  // bf16 stores (16-bit) at an odd element offset.
  uint64_t packed = device->allocate((3 + n) * 2);
  device->zero(packed, (3 + n) * 2);
  launch(kToBf16, n, {at(out, outAt * 4), at(packed, 3 * 2), n});
  std::vector<uint16_t> bf16s = download<uint16_t>(packed, 3 + n);
  for (uint32_t i = 0; i < 3; ++i)
    EXPECT_EQ(bf16s[i], 0) << "element " << i;
  for (uint32_t i = 0; i < n; ++i)
    ASSERT_EQ(bf16s[3 + i], floatBits(result[outAt + i]) >> 16)
        << "element " << i;

  // i8 loads at an odd byte offset, 64-bit arithmetic.
  std::vector<int8_t> bytes(n);
  for (uint32_t i = 0; i < n; ++i)
    bytes[i] = int8_t(int(i % 256) - 128);
  uint64_t narrow = device->allocate(13 + n);
  uint64_t wide = device->allocate(n * 4);
  upload(at(narrow, 13), bytes);
  launch(kWiden8, n, {at(narrow, 13), int64_t(wide), -5, n});
  std::vector<int32_t> widened = download<int32_t>(wide, n);
  for (uint32_t i = 0; i < n; ++i)
    ASSERT_EQ(widened[i], int32_t(bytes[i]) * -5) << "element " << i;
}

TEST_P(VulkanDeviceTest, CopiesAndZero) {
  const uint64_t size = 4096;
  uint64_t buffer = device->allocate(size);
  std::vector<uint8_t> expected(size);
  for (uint64_t i = 0; i < size; ++i)
    expected[i] = uint8_t(i * 7 + 1);
  upload(buffer, expected);
  EXPECT_EQ(download<uint8_t>(buffer, size), expected);

  // Parts of it, at offsets that are not word-aligned.
  std::vector<uint8_t> part = download<uint8_t>(at(buffer, 101), 999);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), expected.begin() + 101));
  std::vector<uint8_t> written(333, 0xab);
  upload(at(buffer, 1001), written);
  std::fill(expected.begin() + 1001, expected.begin() + 1334, 0xab);
  device->zero(at(buffer, 3), 17);
  std::fill(expected.begin() + 3, expected.begin() + 20, 0);
  device->zero(at(buffer, 2048), 1024);
  std::fill(expected.begin() + 2048, expected.begin() + 3072, 0);
  device->zero(at(buffer, 4093), 3);
  std::fill(expected.begin() + 4093, expected.end(), 0);
  EXPECT_EQ(download<uint8_t>(buffer, size), expected);

  // A larger buffer than the staging buffer (32 MiB) goes in pieces.
  const uint64_t large = (uint64_t(40) << 20) + 12;
  uint64_t big = device->allocate(large);
  std::vector<uint32_t> words(large / 4);
  for (size_t i = 0; i < words.size(); ++i)
    words[i] = uint32_t(i * 2654435761u);
  upload(big, words);
  EXPECT_EQ(download<uint32_t>(big, words.size()), words);
  device->zero(at(big, 6), large - 8);
  std::vector<uint32_t> zeroed = download<uint32_t>(big, words.size());
  // Bytes 6 to large - 2 are zero (little-endian words).
  EXPECT_EQ(zeroed[0], words[0]);
  EXPECT_EQ(zeroed[1] & 0xffff, words[1] & 0xffff);
  EXPECT_EQ(zeroed[1] >> 16, 0u);
  EXPECT_EQ(zeroed[2], 0u);
  EXPECT_EQ(zeroed[words.size() / 2], 0u);
  EXPECT_EQ(zeroed[words.size() - 2], 0u);
  EXPECT_EQ(zeroed.back() >> 16, words.back() >> 16);
  EXPECT_EQ(zeroed.back() & 0xffff, 0u);
  device->release(big);
  device->release(buffer);
}

// Copies and zeroing of buffers that recorded launches still read happen in
// launch order: small writes are recorded, large ones wait for the launches.
TEST_P(VulkanDeviceTest, CopiesInLaunchOrder) {
  REQUIRE_KERNELS();
  const uint32_t n = 20000; // 80000 bytes: too large to record
  uint64_t a = device->allocate(n * 4);
  uint64_t results[4];
  for (uint64_t &result : results)
    result = device->allocate(n * 4);
  std::vector<float> first(n), small(n, 5.0f), large(n);
  for (uint32_t i = 0; i < n; ++i) {
    first[i] = float(i);
    large[i] = float(i) * 2.0f;
  }
  upload(a, first);
  launch(kAddOne, n, {int64_t(a), int64_t(results[0]), n});
  device->copyToDevice(a, small.data(), 64 * 4);
  launch(kAddOne, n, {int64_t(a), int64_t(results[1]), n});
  device->zero(a, 128 * 4);
  launch(kAddOne, n, {int64_t(a), int64_t(results[2]), n});
  upload(a, large);
  launch(kAddOne, n, {int64_t(a), int64_t(results[3]), n});
  device->synchronize();

  for (int step = 0; step < 4; ++step) {
    std::vector<float> result = download<float>(results[step], n);
    for (uint32_t i = 0; i < n; ++i) {
      float input = step == 3              ? large[i]
                    : step == 2 && i < 128 ? 0.0f
                    : step >= 1 && i < 64  ? 5.0f
                                           : first[i];
      ASSERT_EQ(result[i], input + 1.0f)
          << "launch " << step << ", element " << i;
    }
  }
}

// Enough dependent launches to wrap the kernel scalar ring: each reads the
// output of the one before.
TEST_P(VulkanDeviceTest, LongChain) {
  REQUIRE_KERNELS();
  const uint32_t n = 300, launches = 1000;
  uint64_t a = device->allocate(n * 4 + 64), b = device->allocate(n * 4 + 64);
  std::vector<float> start(n);
  for (uint32_t i = 0; i < n; ++i)
    start[i] = float(i);
  upload(a, start);
  for (uint32_t step = 0; step < launches; ++step) {
    uint64_t from = step % 2 ? b : a, to = step % 2 ? a : b;
    launch(kAddOne, n, {int64_t(from), int64_t(to), n});
  }
  std::vector<float> result = download<float>(a, n);
  for (uint32_t i = 0; i < n; ++i)
    ASSERT_EQ(result[i], float(i) + float(launches)) << "element " << i;
}

// The same chain with every buffer at a shifting element offset.
TEST_P(VulkanDeviceTest, LongChainAtOffsets) {
  REQUIRE_KERNELS();
  const uint32_t n = 300, launches = 1000, slack = 70;
  uint64_t a = device->allocate((n + slack) * 4);
  uint64_t b = device->allocate((n + slack) * 4);
  std::vector<float> start(n + slack, 0.0f);
  for (uint32_t i = 0; i < n; ++i)
    start[i] = float(i);
  upload(a, start);
  // Launch s reads at element s % slack of its source (where launch s - 1
  // wrote) and writes at element (s + 1) % slack of its destination.
  for (uint32_t step = 0; step < launches; ++step) {
    uint64_t from = step % 2 ? b : a, to = step % 2 ? a : b;
    launch(kAddOne, n,
           {at(from, (step % slack) * 4), at(to, ((step + 1) % slack) * 4), n});
  }
  std::vector<float> result = download<float>(at(a, (launches % slack) * 4), n);
  for (uint32_t i = 0; i < n; ++i)
    ASSERT_EQ(result[i], float(i) + float(launches)) << "element " << i;
}

TEST_P(VulkanDeviceTest, ReleaseReuses) {
  uint64_t before = device->memoryInUse();
  uint64_t first = device->allocate(1000);
  EXPECT_GE(device->memoryInUse(), before + 1000);
  EXPECT_EQ(device->memoryInUse() % 256, 0u);
  uint64_t second = device->allocate(5000);
  EXPECT_NE(first, second);
  EXPECT_EQ(first & ((uint64_t(1) << 40) - 1), 0u);
  device->release(first);
  device->release(second);
  EXPECT_EQ(device->memoryInUse(), before);
  EXPECT_EQ(device->allocate(1000), first);
  EXPECT_EQ(device->allocate(5000), second);
  device->release(first);
  device->release(second);
  EXPECT_EQ(device->memoryInUse(), before);

  if (!haveKernels())
    return;
  // A buffer released while a recorded launch reads it serves the next
  // allocation, whose writes come after that launch.
  const uint32_t n = 500;
  uint64_t source = device->allocate(n * 4), dest = device->allocate(n * 4);
  std::vector<float> values(n, 1.0f), others(n, 100.0f);
  upload(source, values);
  launch(kAddOne, n, {int64_t(source), int64_t(dest), n});
  device->release(source);
  uint64_t reused = device->allocate(n * 4);
  EXPECT_EQ(reused, source);
  upload(reused, others);
  uint64_t dest2 = device->allocate(n * 4);
  launch(kAddOne, n, {int64_t(reused), int64_t(dest2), n});
  EXPECT_EQ(download<float>(dest, n), std::vector<float>(n, 2.0f));
  EXPECT_EQ(download<float>(dest2, n), std::vector<float>(n, 101.0f));
}

TEST_P(VulkanDeviceTest, Errors) {
  uint64_t buffer = device->allocate(256);
  auto expectError = [](auto &&call, const std::string &part) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one naming " << part;
    } catch (const Error &error) {
      EXPECT_NE(std::string(error.what()).find(part), std::string::npos)
          << error.what();
    }
  };
  char data[512] = {};
  const uint64_t bad = uint64_t(999) << 40;
  expectError([&] { device->copyToHost(data, bad, 4); }, "0x3e70000000000");
  expectError([&] { device->copyToDevice(bad + 8, data, 4); },
              "0x3e70000000008");
  expectError([&] { device->copyToHost(data, buffer + 200, 100); },
              "run past the end");
  expectError([&] { device->release(buffer + 4); }, "not the start");
  expectError([&] { device->release(0); }, "0x0");

  std::vector<GpuKernelInfo> unknown = kernelInfos();
  unknown[1].name = "no_such_kernel";
  if (haveKernels()) {
    expectError(
        [&] { device->loadKernels(binary.data(), binary.size(), unknown); },
        "no_such_kernel");
    std::vector<GpuKernelInfo> wrongBlock = kernelInfos();
    wrongBlock[0].block[0] = 32;
    expectError(
        [&] { device->loadKernels(binary.data(), binary.size(), wrongBlock); },
        "workgroup size 64x1x1");
    // The kernels loaded before stay usable.
    uint64_t out = device->allocate(256);
    expectError(
        [&] {
          launch(kAddOne, 4, {int64_t(bad), int64_t(out), 4});
        },
        "0x3e70000000000");
    expectError(
        [&] {
          launch(kAddOne, 4, {int64_t(buffer + 2), int64_t(out), 4});
        },
        "not aligned");
    uint64_t released = device->allocate(256);
    device->release(released);
    expectError(
        [&] {
          launch(kAddOne, 4, {int64_t(released), int64_t(out), 4});
        },
        "not a Vulkan device address");
    // A kernel that would read past what one binding spans (4 GiB here:
    // more than any device's maxStorageBufferRange) is refused, not run.
    expectError(
        [&] {
          const uint32_t one[3] = {1, 1, 1};
          std::vector<int64_t> args = {int64_t(buffer), int64_t(out),
                                       int64_t(1) << 30};
          device->launch(kAddOne, one, args.data());
        },
        "kernel 'addone' buffer 0 spans 4294967296 bytes from its binding, "
        "more than this Vulkan device's maxStorageBufferRange");
    std::vector<float> four = {1, 2, 3, 4};
    upload(buffer, four);
    launch(kAddOne, 4, {int64_t(buffer), int64_t(out), 4});
    EXPECT_EQ(download<float>(out, 4), std::vector<float>({2, 3, 4, 5}));
  }
  const uint8_t notSpirv[32] = {1, 2, 3};
  expectError([&] { device->loadKernels(notSpirv, 32, unknown); },
              "not a SPIR-V module");
}

TEST_P(VulkanDeviceTest, DeviceIndex) {
  setenv("XFMR_VULKAN_DEVICE", "99", 1);
  try {
    createVulkanDevice();
    ADD_FAILURE() << "XFMR_VULKAN_DEVICE=99 chose a device";
  } catch (const Error &error) {
    EXPECT_NE(std::string(error.what()).find("XFMR_VULKAN_DEVICE=99"),
              std::string::npos)
        << error.what();
  }
  setenv("XFMR_VULKAN_DEVICE", "0", 1);
  try {
    EXPECT_FALSE(createVulkanDevice()->name().empty());
  } catch (const Error &error) {
    ADD_FAILURE() << error.what();
  }
  unsetenv("XFMR_VULKAN_DEVICE");
}

INSTANTIATE_TEST_SUITE_P(Memory, VulkanDeviceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool> &info) {
                           return info.param ? "Staging" : "Mapped";
                         });

} // namespace
