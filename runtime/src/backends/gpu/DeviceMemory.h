//===- DeviceMemory.h - what the GPU devices share about memory -*- C++ -*-===//
//
// Size classes, address formatting, and the caching allocator of the CUDA
// and HIP devices: host code allocates and frees activation buffers every
// step, and driver allocations are too slow (and too synchronizing) for
// that, so released blocks are kept by size class for later requests.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKENDS_GPU_DEVICEMEMORY_H
#define XFMR_RUNTIME_BACKENDS_GPU_DEVICEMEMORY_H

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace xfmr::runtime {

/// The size a request of `bytes` is served with: multiples of 256 bytes,
/// four classes per power of two (2^k * 1, 1.25, 1.5, 1.75), so a released
/// block fits later requests of about its size while wasting at most a
/// quarter. Throws Error for impossible sizes.
uint64_t sizeClass(uint64_t bytes);

/// "0x7f00..." for messages.
std::string hexAddress(uint64_t address);

/// Device memory over a driver's allocate/free, caching released blocks.
/// Work is in order on one queue, so a released block may be handed out
/// again at once: only later work can use it.
class CachingAllocator {
public:
  struct Driver {
    /// Allocates `bytes`; false when the device is out of memory, unless
    /// `lastTry`, when it throws the API's own error for any failure.
    std::function<bool(uint64_t bytes, bool lastTry, uint64_t &address)>
        allocate;
    /// Frees a block (errors are the driver's to throw or ignore).
    std::function<void(uint64_t address)> free;
    /// Waits for all work: cached blocks may still be in use before it.
    std::function<void()> synchronize;
  };

  explicit CachingAllocator(Driver driver) : driver(std::move(driver)) {}
  CachingAllocator(const CachingAllocator &) = delete;
  CachingAllocator &operator=(const CachingAllocator &) = delete;

  /// A block of at least `bytes`: a cached one of its size class, or a new
  /// one (after returning the cache to the driver if the device is full).
  uint64_t allocate(uint64_t bytes);
  /// Keeps `address` for reuse; throws Error if allocate() did not return
  /// it or it was released already.
  void release(uint64_t address);
  /// Returns the cached blocks to the driver, after synchronizing.
  void freeCached();
  /// Frees every block, live or cached, ignoring errors (at destruction,
  /// after the work has finished).
  void freeAll() noexcept;

  /// Bytes taken from the driver (live and cached) and bytes handed out.
  uint64_t driverBytes() const { return driverBytes_; }
  uint64_t liveBytes() const { return liveBytes_; }

private:
  Driver driver;
  /// Blocks handed out (address -> size class) and released blocks by size
  /// class.
  std::unordered_map<uint64_t, uint64_t> live;
  std::unordered_map<uint64_t, std::vector<uint64_t>> cached;
  uint64_t liveBytes_ = 0, driverBytes_ = 0;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKENDS_GPU_DEVICEMEMORY_H
