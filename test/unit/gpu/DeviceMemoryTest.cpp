//===- DeviceMemoryTest.cpp - the GPU devices' caching allocator ----------===//
//
// CachingAllocator over a fake driver with a fixed capacity: size classes,
// reuse of released blocks, returning the cache when the device is full,
// accounting, and errors. The CUDA and HIP devices run the same code.
//
//===----------------------------------------------------------------------===//

#include "backends/gpu/DeviceMemory.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

using namespace xfmr::runtime;

namespace {

/// A driver with `capacity` bytes; addresses count up from 0x1000.
struct FakeDriver {
  explicit FakeDriver(uint64_t capacity) : capacity(capacity) {}
  uint64_t capacity, used = 0, next = 0x1000;
  std::set<uint64_t> blocks;
  std::map<uint64_t, uint64_t> sizes;
  int synchronized = 0, failedTries = 0;

  CachingAllocator::Driver driver() {
    return {[this](uint64_t bytes, bool lastTry, uint64_t &address) {
              if (used + bytes > capacity) {
                ++failedTries;
                if (lastTry)
                  throw Error("fakeMalloc failed: OUT_OF_MEMORY");
                return false;
              }
              address = next;
              next += bytes;
              used += bytes;
              blocks.insert(address);
              sizes[address] = bytes;
              return true;
            },
            [this](uint64_t address) {
              ASSERT_EQ(blocks.erase(address), 1u);
              used -= sizes[address];
            },
            [this] { ++synchronized; }};
  }
};

TEST(DeviceMemory, SizeClasses) {
  // Multiples of 256; above 1 KiB four classes per power of two.
  EXPECT_EQ(sizeClass(0), 256u);
  EXPECT_EQ(sizeClass(1), 256u);
  EXPECT_EQ(sizeClass(256), 256u);
  EXPECT_EQ(sizeClass(257), 512u);
  EXPECT_EQ(sizeClass(1000), 1024u);
  EXPECT_EQ(sizeClass(1025), 1280u);
  EXPECT_EQ(sizeClass(2048), 2048u);
  EXPECT_EQ(sizeClass(5000), 5120u);
  EXPECT_EQ(sizeClass((1u << 20) + 1), 1310720u); // 1.25 MiB
  EXPECT_THROW(sizeClass(uint64_t(1) << 63), Error);
  EXPECT_EQ(hexAddress(0x7f00ab), "0x7f00ab");
}

TEST(DeviceMemory, ReleasedBlocksAreReused) {
  FakeDriver fake{1 << 20};
  CachingAllocator memory(fake.driver());
  uint64_t a = memory.allocate(1000);
  uint64_t b = memory.allocate(1000);
  EXPECT_NE(a, b);
  EXPECT_EQ(memory.liveBytes(), 2048u);
  memory.release(a);
  EXPECT_EQ(memory.liveBytes(), 1024u);
  EXPECT_EQ(memory.driverBytes(), 2048u);
  // The same class (1000 and 900 both take 1024) reuses the block.
  EXPECT_EQ(memory.allocate(900), a);
  EXPECT_EQ(fake.blocks.size(), 2u);
  // Another class does not.
  EXPECT_NE(memory.allocate(3000), a);
  EXPECT_EQ(memory.driverBytes(), 2048u + 3072u);
}

TEST(DeviceMemory, AFullDeviceGetsTheCacheBack) {
  FakeDriver fake{4096};
  CachingAllocator memory(fake.driver());
  uint64_t a = memory.allocate(2048);
  memory.allocate(1024);
  memory.release(a); // cached, still the driver's
  EXPECT_EQ(fake.used, 3072u);
  // 1536 bytes do not fit beside the cached 2048: the cache goes back
  // (after synchronizing), then the retry succeeds.
  memory.allocate(1536);
  EXPECT_EQ(fake.synchronized, 1);
  EXPECT_EQ(fake.failedTries, 1);
  EXPECT_EQ(memory.driverBytes(), 1024u + 1536u);
  EXPECT_EQ(memory.driverBytes(), fake.used);
  // Nothing cached to give back: the first failure is the driver's error.
  EXPECT_THROW(memory.allocate(4096), Error);
  EXPECT_EQ(fake.synchronized, 1);
}

TEST(DeviceMemory, Errors) {
  FakeDriver fake{1 << 20};
  CachingAllocator memory(fake.driver());
  uint64_t a = memory.allocate(10);
  memory.release(a);
  try {
    memory.release(a);
    ADD_FAILURE() << "no error";
  } catch (const Error &error) {
    EXPECT_EQ(std::string(error.what()),
              "releasing device address " + hexAddress(a) +
                  " that allocate() did not return or that was released");
  }
  EXPECT_THROW(memory.release(0x42), Error);
}

TEST(DeviceMemory, FreeAllReturnsEverything) {
  FakeDriver fake{1 << 20};
  CachingAllocator memory(fake.driver());
  memory.allocate(100);
  memory.release(memory.allocate(5000));
  memory.allocate(70000);
  memory.freeAll();
  EXPECT_TRUE(fake.blocks.empty());
  EXPECT_EQ(fake.used, 0u);
  EXPECT_EQ(memory.driverBytes(), 0u);
  EXPECT_EQ(memory.liveBytes(), 0u);
}

} // namespace
