//===- DeviceMemory.cpp ---------------------------------------------------===//

#include "backends/gpu/DeviceMemory.h"

#include "xfmr/runtime/Error.h"

#include <algorithm>
#include <cstdio>

using namespace xfmr::runtime;

uint64_t xfmr::runtime::sizeClass(uint64_t bytes) {
  if (bytes > (uint64_t(1) << 62))
    throw Error("cannot allocate " + std::to_string(bytes) +
                " bytes of device memory");
  if (bytes <= 256)
    return 256;
  unsigned log2 = 63 - __builtin_clzll(bytes - 1);
  uint64_t step = std::max<uint64_t>(256, (uint64_t(1) << log2) / 4);
  return (bytes + step - 1) / step * step;
}

std::string xfmr::runtime::hexAddress(uint64_t address) {
  char text[24];
  std::snprintf(text, sizeof(text), "0x%llx",
                static_cast<unsigned long long>(address));
  return text;
}

uint64_t CachingAllocator::allocate(uint64_t bytes) {
  uint64_t size = sizeClass(bytes);
  uint64_t address = 0;
  auto blocks = cached.find(size);
  if (blocks != cached.end() && !blocks->second.empty()) {
    address = blocks->second.back();
    blocks->second.pop_back();
  } else {
    // Blocks cached for other sizes may make room.
    bool cacheHelps = driverBytes_ > liveBytes_;
    if (!driver.allocate(size, !cacheHelps, address)) {
      freeCached();
      driver.allocate(size, true, address);
    }
    driverBytes_ += size;
  }
  live.emplace(address, size);
  liveBytes_ += size;
  return address;
}

void CachingAllocator::release(uint64_t address) {
  auto block = live.find(address);
  if (block == live.end())
    throw Error("releasing device address " + hexAddress(address) +
                " that allocate() did not return or that was released");
  cached[block->second].push_back(block->first);
  liveBytes_ -= block->second;
  live.erase(block);
}

void CachingAllocator::freeCached() {
  driver.synchronize();
  for (auto &[size, addresses] : cached) {
    while (!addresses.empty()) {
      uint64_t address = addresses.back();
      addresses.pop_back();
      driverBytes_ -= size;
      driver.free(address);
    }
  }
}

void CachingAllocator::freeAll() noexcept {
  auto freeQuietly = [&](uint64_t address) {
    try {
      driver.free(address);
    } catch (...) {
      // Destruction: nothing to do about it.
    }
  };
  for (auto &[address, size] : live)
    freeQuietly(address);
  for (auto &[size, addresses] : cached)
    for (uint64_t address : addresses)
      freeQuietly(address);
  live.clear();
  cached.clear();
  liveBytes_ = driverBytes_ = 0;
}
