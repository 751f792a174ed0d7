//===- VulkanDevice.cpp - the GPU backend's device on Vulkan
//-----------------===//
//
// A GpuDevice over Vulkan compute: libvulkan.so.1 is loaded with dlopen (the
// runtime links no GPU library) and every entry point is fetched through
// vkGetInstanceProcAddr / vkGetDeviceProcAddr.
//
// Memory. Vulkan has no device pointers, so an address is a buffer id << 40
// plus a byte offset: the host code adds offsets to it like to a pointer,
// launch() and the copies decode it. Each allocation is one VkBuffer with its
// own VkDeviceMemory, so a buffer is never aliased. Where device memory is
// also host-visible and coherent (lavapipe, integrated GPUs) it is mapped and
// copies go through the mapping; elsewhere (discrete GPUs, whose host-visible
// device memory is a small or slow-to-read PCIe window) copies go through a
// host-visible staging buffer. Released buffers are kept by size class and
// handed out again; their memory is freed at destruction, or earlier when an
// allocation runs out of memory.
//
// Commands. Everything is recorded into one command buffer, submitted and
// waited for on a fence when the host needs a result (copyToHost,
// synchronize) or a per-batch resource runs out (kernel scalars, staging).
// Each recorded command is followed by a full compute/transfer memory
// barrier, so commands run in the order they were recorded, and a buffer
// released while recorded commands still use it may serve later commands.
// Host writes through a mapping are only made while no recorded command uses
// that buffer: a recorded command runs at the next submit, after the write.
//
// Kernels. The binary is one SPIR-V module with a GLCompute entry point per
// kernel; every kernel parameter is a storage-buffer binding of descriptor
// set 0 (MLIR's SPIR-V ABI). Scalars (the buffers' element offsets, then the
// kernel's own) live in a host-visible ring, one slot per scalar at the
// device's storage-buffer offset alignment, reused after each submit.
//
// A single thread uses a device, so nothing here locks.
//
//===----------------------------------------------------------------------===//

#include "backends/gpu/DeviceMemory.h"
#include "backends/gpu/GpuDevice.h"
#include "xfmr/runtime/Error.h"

#ifdef XFMR_HAVE_VULKAN_HEADERS

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <initializer_list>
#include <map>

namespace xfmr::runtime {
namespace {

constexpr unsigned kOffsetBits = 40;
constexpr uint64_t kOffsetMask = (uint64_t(1) << kOffsetBits) - 1;
// Addresses travel as int64_t launch arguments: ids stay below 2^23 so an
// address (plus any offset) is positive.
constexpr uint64_t kMaxBufferId = (uint64_t(1) << (63 - kOffsetBits)) - 1;
constexpr uint64_t kSizeAlignment = 256;
// Kernel scalar slots in the first params ring, and at most after growing.
constexpr uint64_t kInitialRingSlots = 1024;
constexpr uint64_t kMaxRingSlots = 65536;
constexpr uint64_t kStagingBytes = uint64_t(32) << 20;
// vkCmdUpdateBuffer's limit: larger writes to a buffer in use wait instead.
constexpr uint64_t kMaxUpdateBytes = 65536;
constexpr uint32_t kSetsPerPool = 256;
constexpr uint32_t kDescriptorsPerPool = 4096;

const char *resultName(VkResult result) {
  switch (result) {
#define XFMR_VK_RESULT(name)                                                   \
  case name:                                                                   \
    return #name;
    XFMR_VK_RESULT(VK_SUCCESS)
    XFMR_VK_RESULT(VK_NOT_READY)
    XFMR_VK_RESULT(VK_TIMEOUT)
    XFMR_VK_RESULT(VK_EVENT_SET)
    XFMR_VK_RESULT(VK_EVENT_RESET)
    XFMR_VK_RESULT(VK_INCOMPLETE)
    XFMR_VK_RESULT(VK_ERROR_OUT_OF_HOST_MEMORY)
    XFMR_VK_RESULT(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    XFMR_VK_RESULT(VK_ERROR_INITIALIZATION_FAILED)
    XFMR_VK_RESULT(VK_ERROR_DEVICE_LOST)
    XFMR_VK_RESULT(VK_ERROR_MEMORY_MAP_FAILED)
    XFMR_VK_RESULT(VK_ERROR_LAYER_NOT_PRESENT)
    XFMR_VK_RESULT(VK_ERROR_EXTENSION_NOT_PRESENT)
    XFMR_VK_RESULT(VK_ERROR_FEATURE_NOT_PRESENT)
    XFMR_VK_RESULT(VK_ERROR_INCOMPATIBLE_DRIVER)
    XFMR_VK_RESULT(VK_ERROR_TOO_MANY_OBJECTS)
    XFMR_VK_RESULT(VK_ERROR_FORMAT_NOT_SUPPORTED)
    XFMR_VK_RESULT(VK_ERROR_FRAGMENTED_POOL)
    XFMR_VK_RESULT(VK_ERROR_UNKNOWN)
    XFMR_VK_RESULT(VK_ERROR_OUT_OF_POOL_MEMORY)
    XFMR_VK_RESULT(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    XFMR_VK_RESULT(VK_ERROR_FRAGMENTATION)
    XFMR_VK_RESULT(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    XFMR_VK_RESULT(VK_ERROR_INVALID_SHADER_NV)
    XFMR_VK_RESULT(VK_ERROR_NOT_PERMITTED_KHR)
    XFMR_VK_RESULT(VK_PIPELINE_COMPILE_REQUIRED)
#undef XFMR_VK_RESULT
  default:
    return nullptr;
  }
}

[[noreturn]] void fail(const char *call, VkResult result) {
  const char *name = resultName(result);
  throw Error(std::string(call) + " failed: " +
              (name ? name : "VkResult " + std::to_string(int(result))));
}

void check(VkResult result, const char *call) {
  if (result != VK_SUCCESS)
    fail(call, result);
}


std::string versionText(uint32_t version) {
  return std::to_string(VK_API_VERSION_MAJOR(version)) + "." +
         std::to_string(VK_API_VERSION_MINOR(version));
}

/// A Vulkan struct of type `type`, all else zero.
template <typename T> T make(VkStructureType type) {
  T value = {};
  value.sType = type;
  return value;
}

uint64_t alignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}
uint64_t alignDown(uint64_t value, uint64_t alignment) {
  return value / alignment * alignment;
}


// The Vulkan entry points this device calls, by where they are loaded from.
#define XFMR_VK_INSTANCE_FUNCTIONS(X)                                          \
  X(vkDestroyInstance)                                                         \
  X(vkEnumeratePhysicalDevices)                                                \
  X(vkGetPhysicalDeviceProperties)                                             \
  X(vkGetPhysicalDeviceQueueFamilyProperties)                                  \
  X(vkGetPhysicalDeviceMemoryProperties)                                       \
  X(vkGetPhysicalDeviceFeatures2)                                              \
  X(vkEnumerateDeviceExtensionProperties)                                      \
  X(vkCreateDevice)                                                            \
  X(vkGetDeviceProcAddr)

#define XFMR_VK_DEVICE_FUNCTIONS(X)                                            \
  X(vkDestroyDevice)                                                           \
  X(vkDeviceWaitIdle)                                                          \
  X(vkGetDeviceQueue)                                                          \
  X(vkQueueSubmit)                                                             \
  X(vkCreateBuffer)                                                            \
  X(vkDestroyBuffer)                                                           \
  X(vkGetBufferMemoryRequirements)                                             \
  X(vkAllocateMemory)                                                          \
  X(vkFreeMemory)                                                              \
  X(vkBindBufferMemory)                                                        \
  X(vkMapMemory)                                                               \
  X(vkUnmapMemory)                                                             \
  X(vkCreateCommandPool)                                                       \
  X(vkDestroyCommandPool)                                                      \
  X(vkResetCommandPool)                                                        \
  X(vkAllocateCommandBuffers)                                                  \
  X(vkBeginCommandBuffer)                                                      \
  X(vkEndCommandBuffer)                                                        \
  X(vkCreateFence)                                                             \
  X(vkDestroyFence)                                                            \
  X(vkWaitForFences)                                                           \
  X(vkResetFences)                                                             \
  X(vkCreateShaderModule)                                                      \
  X(vkDestroyShaderModule)                                                     \
  X(vkCreateDescriptorSetLayout)                                               \
  X(vkDestroyDescriptorSetLayout)                                              \
  X(vkCreatePipelineLayout)                                                    \
  X(vkDestroyPipelineLayout)                                                   \
  X(vkCreateComputePipelines)                                                  \
  X(vkDestroyPipeline)                                                         \
  X(vkCreateDescriptorPool)                                                    \
  X(vkDestroyDescriptorPool)                                                   \
  X(vkResetDescriptorPool)                                                     \
  X(vkAllocateDescriptorSets)                                                  \
  X(vkUpdateDescriptorSets)                                                    \
  X(vkCmdBindPipeline)                                                         \
  X(vkCmdBindDescriptorSets)                                                   \
  X(vkCmdDispatch)                                                             \
  X(vkCmdPipelineBarrier)                                                      \
  X(vkCmdCopyBuffer)                                                           \
  X(vkCmdFillBuffer)                                                           \
  X(vkCmdUpdateBuffer)

// SPIR-V opcodes, enumerants and the capabilities loadKernels checks against
// the device's features (the SPIR-V specification's numbers).
constexpr uint32_t kSpirvMagic = 0x07230203;
constexpr uint32_t kOpEntryPoint = 15;
constexpr uint32_t kOpExecutionMode = 16;
constexpr uint32_t kOpCapability = 17;
constexpr uint32_t kExecutionModelGLCompute = 5;
constexpr uint32_t kExecutionModeLocalSize = 17;
enum SpirvCapability : uint32_t {
  kCapFloat16 = 9,
  kCapFloat64 = 10,
  kCapInt64 = 11,
  kCapInt16 = 22,
  kCapInt8 = 39,
  kCapStorageBuffer16BitAccess = 4433,
  kCapStorageBuffer8BitAccess = 4448,
};

/// A device buffer: an allocation, or the params ring / staging buffer.
struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  uint64_t size = 0;
  /// The host mapping, where the memory is host-visible and mapped.
  uint8_t *mapped = nullptr;
  /// Allocated and not released.
  bool live = false;
  /// The last command batch that used it: while it is the batch being
  /// recorded, the host must not write or read it through the mapping.
  uint64_t usedBatch = 0;
};

struct Kernel {
  GpuKernelInfo info;
  VkDescriptorSetLayout setLayout = VK_NULL_HANDLE;
  VkPipelineLayout pipelineLayout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
};

class VulkanDevice final : public GpuDevice {
public:
  VulkanDevice() = default;
  ~VulkanDevice() override;

  void init();

  std::string name() const override { return properties.deviceName; }
  std::string chip() const override { return ""; }
  uint64_t memoryInUse() const override { return inUse; }

  uint64_t allocate(uint64_t bytes) override;
  void release(uint64_t address) override;
  void copyToDevice(uint64_t dest, const void *source, uint64_t bytes) override;
  void copyToHost(void *dest, uint64_t source, uint64_t bytes) override;
  void zero(uint64_t dest, uint64_t bytes) override;
  void loadKernels(const uint8_t *binary, uint64_t size,
                   const std::vector<GpuKernelInfo> &kernels) override;
  void launch(uint32_t index, const uint32_t grid[3],
              GpuLaunchArgs args) override;
  void synchronize() override { flush(); }

private:
  void loadInstanceFunctions();
  void selectPhysicalDevice();
  void createDevice();

  /// A buffer of `size` bytes in the first memory type with all the
  /// properties of the first of `preferences` that has a type with room;
  /// mapped when `map` and the memory is host-visible and coherent. Returns
  /// false when all are out of memory.
  bool createBuffer(Buffer &buffer, uint64_t size,
                    std::initializer_list<VkMemoryPropertyFlags> preferences,
                    bool map);
  void destroyBuffer(Buffer &buffer);
  /// Frees the released buffers (after waiting for the commands using them).
  void freePool();
  /// The shader module and each kernel's layouts and pipeline.
  void createKernels(const std::vector<uint32_t> &words,
                     const std::vector<GpuKernelInfo> &infos);
  void destroyKernels();

  /// The buffer an address is in and the byte offset in it; throws for an
  /// address that is not in a live allocation or a range past its end.
  Buffer &decode(uint64_t address, uint64_t bytes, uint64_t &offset,
                 const char *what);

  /// The command buffer, begun if it was not.
  VkCommandBuffer commands();
  /// The buffer an address is in and the byte offset in it, or null.
  Buffer *lookup(uint64_t address, uint64_t &offset);
  /// Orders everything recorded so far before everything recorded after.
  void barrier();
  /// Submits the recorded commands, waits for them and resets the per-batch
  /// resources (descriptor sets, ring, staging).
  void flush();
  /// Room for `bytes` in the staging buffer for this batch; its offset.
  uint64_t stagingSpace(uint64_t bytes);

  void *library = nullptr;
  PFN_vkGetInstanceProcAddr getInstanceProcAddr = nullptr;
#define XFMR_VK_DECLARE(name) PFN_##name name = nullptr;
  XFMR_VK_INSTANCE_FUNCTIONS(XFMR_VK_DECLARE)
  XFMR_VK_DEVICE_FUNCTIONS(XFMR_VK_DECLARE)
#undef XFMR_VK_DECLARE

  VkInstance instance = VK_NULL_HANDLE;
  uint32_t instanceVersion = VK_API_VERSION_1_1;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties properties = {};
  VkPhysicalDeviceMemoryProperties memory = {};
  uint32_t queueFamily = 0;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  /// The SPIR-V capabilities of the enabled features.
  std::vector<uint32_t> capabilities;

  /// Whether allocations live in mapped device memory (else staging).
  bool mapDeviceMemory = false;
  std::vector<Buffer> buffers{1}; // id 0 is no buffer
  std::vector<uint32_t> freeIds;
  std::map<uint64_t, std::vector<uint32_t>> pool; // size -> released ids
  uint64_t inUse = 0;

  VkCommandPool commandPool = VK_NULL_HANDLE;
  VkCommandBuffer commandBuffer = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  bool recording = false;
  /// The batch being recorded; batches before it are done.
  uint64_t batch = 1;

  std::vector<VkDescriptorPool> descriptorPools;
  size_t descriptorPool = 0;
  Buffer ring;
  uint64_t ringSlot = 0;
  uint64_t ringUsed = 0;
  Buffer staging;
  uint64_t stagingUsed = 0;

  VkShaderModule shader = VK_NULL_HANDLE;
  std::vector<Kernel> kernels;
  // launch()'s descriptors and scalars, kept to save allocations.
  std::vector<VkDescriptorBufferInfo> boundScratch;
  std::vector<int32_t> scalarScratch;
};

VulkanDevice::~VulkanDevice() {
  if (device) {
    // Commands recorded but not submitted are dropped: nothing can read
    // their results any more.
    vkDeviceWaitIdle(device);
    destroyKernels();
    for (VkDescriptorPool pool : descriptorPools)
      vkDestroyDescriptorPool(device, pool, nullptr);
    for (Buffer &buffer : buffers)
      destroyBuffer(buffer);
    destroyBuffer(ring);
    destroyBuffer(staging);
    if (fence)
      vkDestroyFence(device, fence, nullptr);
    if (commandPool)
      vkDestroyCommandPool(device, commandPool, nullptr);
    vkDestroyDevice(device, nullptr);
  }
  if (instance)
    vkDestroyInstance(instance, nullptr);
  // libvulkan.so.1 stays loaded: drivers it loaded may have registered exit
  // handlers, and another device may be created later.
}

void VulkanDevice::init() {
  library = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *reason = dlerror();
    throw Error("libvulkan.so.1 cannot be loaded (install libvulkan1 and a "
                "Vulkan driver, e.g. mesa-vulkan-drivers): " +
                std::string(reason ? reason : "unknown error"));
  }
  getInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(
      dlsym(library, "vkGetInstanceProcAddr"));
  if (!getInstanceProcAddr)
    throw Error("libvulkan.so.1 has no vkGetInstanceProcAddr");

  auto enumerateVersion = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(
      getInstanceProcAddr(nullptr, "vkEnumerateInstanceVersion"));
  auto createInstance = reinterpret_cast<PFN_vkCreateInstance>(
      getInstanceProcAddr(nullptr, "vkCreateInstance"));
  if (!createInstance)
    throw Error("libvulkan.so.1 has no vkCreateInstance");
  // A Vulkan 1.0 loader has no vkEnumerateInstanceVersion.
  uint32_t loaderVersion = VK_API_VERSION_1_0;
  if (enumerateVersion)
    check(enumerateVersion(&loaderVersion), "vkEnumerateInstanceVersion");
  if (loaderVersion < VK_API_VERSION_1_1)
    throw Error("the Vulkan loader supports Vulkan " +
                versionText(loaderVersion) + "; Vulkan 1.1 is needed");
  instanceVersion = std::min<uint32_t>(loaderVersion, VK_API_VERSION_1_3);

  auto application =
      make<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
  application.pApplicationName = "xfmr";
  application.pEngineName = "xfmr";
  application.apiVersion = instanceVersion;
  auto instanceInfo =
      make<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
  instanceInfo.pApplicationInfo = &application;
  VkResult result = createInstance(&instanceInfo, nullptr, &instance);
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER)
    throw Error("vkCreateInstance failed: VK_ERROR_INCOMPATIBLE_DRIVER (no "
                "Vulkan device: install a Vulkan driver, e.g. "
                "mesa-vulkan-drivers)");
  check(result, "vkCreateInstance");

  loadInstanceFunctions();
  selectPhysicalDevice();
  createDevice();
}

void VulkanDevice::loadInstanceFunctions() {
#define XFMR_VK_LOAD(name)                                                     \
  name = reinterpret_cast<PFN_##name>(getInstanceProcAddr(instance, #name));   \
  if (!name)                                                                   \
    throw Error("the Vulkan loader has no " #name);
  XFMR_VK_INSTANCE_FUNCTIONS(XFMR_VK_LOAD)
#undef XFMR_VK_LOAD
}

void VulkanDevice::selectPhysicalDevice() {
  uint32_t count = 0;
  check(vkEnumeratePhysicalDevices(instance, &count, nullptr),
        "vkEnumeratePhysicalDevices");
  std::vector<VkPhysicalDevice> devices(count);
  VkResult result =
      vkEnumeratePhysicalDevices(instance, &count, devices.data());
  if (result != VK_INCOMPLETE)
    check(result, "vkEnumeratePhysicalDevices");
  devices.resize(count);

  // Whether a device can run the kernels, and its compute queue family.
  auto usable = [&](VkPhysicalDevice candidate, uint32_t &family,
                    std::string &why) {
    VkPhysicalDeviceProperties candidateProperties;
    vkGetPhysicalDeviceProperties(candidate, &candidateProperties);
    if (candidateProperties.apiVersion < VK_API_VERSION_1_1) {
      why = "supports Vulkan " + versionText(candidateProperties.apiVersion) +
            " only; Vulkan 1.1 is needed";
      return false;
    }
    uint32_t families = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(candidate, &families, nullptr);
    std::vector<VkQueueFamilyProperties> familyProperties(families);
    vkGetPhysicalDeviceQueueFamilyProperties(candidate, &families,
                                             familyProperties.data());
    for (uint32_t i = 0; i < families; ++i) {
      if ((familyProperties[i].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
          familyProperties[i].queueCount > 0) {
        family = i;
        return true;
      }
    }
    why = "has no compute queue";
    return false;
  };
  auto deviceName = [&](VkPhysicalDevice candidate) {
    VkPhysicalDeviceProperties candidateProperties;
    vkGetPhysicalDeviceProperties(candidate, &candidateProperties);
    return std::string(candidateProperties.deviceName);
  };

  const char *chosen = std::getenv("XFMR_VULKAN_DEVICE");
  if (chosen && *chosen) {
    char *end = nullptr;
    unsigned long index = std::strtoul(chosen, &end, 10);
    if (*end || index >= devices.size()) {
      std::string list;
      for (size_t i = 0; i < devices.size(); ++i)
        list +=
            (i ? ", " : "") + std::to_string(i) + ": " + deviceName(devices[i]);
      throw Error("XFMR_VULKAN_DEVICE=" + std::string(chosen) +
                  " is not a Vulkan device index (" +
                  std::to_string(devices.size()) + " devices" +
                  (list.empty() ? "" : ": " + list) + ")");
    }
    std::string why;
    if (!usable(devices[index], queueFamily, why))
      throw Error("Vulkan device " + std::to_string(index) + " (" +
                  deviceName(devices[index]) +
                  ", chosen by XFMR_VULKAN_DEVICE) " + why);
    physical = devices[index];
  } else {
    // A discrete GPU, else an integrated one, else anything (lavapipe runs
    // on the CPU).
    int bestRank = -1;
    std::string reasons;
    for (VkPhysicalDevice candidate : devices) {
      uint32_t family = 0;
      std::string why;
      if (!usable(candidate, family, why)) {
        reasons += "; " + deviceName(candidate) + " " + why;
        continue;
      }
      VkPhysicalDeviceProperties candidateProperties;
      vkGetPhysicalDeviceProperties(candidate, &candidateProperties);
      int rank =
          candidateProperties.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
              ? 2
          : candidateProperties.deviceType ==
                  VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU
              ? 1
              : 0;
      if (rank > bestRank) {
        bestRank = rank;
        physical = candidate;
        queueFamily = family;
      }
    }
    if (!physical)
      throw Error("no Vulkan device with a compute queue (" +
                  std::to_string(devices.size()) + " devices" + reasons +
                  "; install a Vulkan driver, e.g. mesa-vulkan-drivers)");
  }
  vkGetPhysicalDeviceProperties(physical, &properties);
  vkGetPhysicalDeviceMemoryProperties(physical, &memory);
}

void VulkanDevice::createDevice() {
  // Device-level Vulkan is the lower of the instance's and device's version.
  uint32_t version = std::min(instanceVersion, properties.apiVersion);
  bool core12 = version >= VK_API_VERSION_1_2;

  uint32_t extensionCount = 0;
  check(vkEnumerateDeviceExtensionProperties(physical, nullptr, &extensionCount,
                                             nullptr),
        "vkEnumerateDeviceExtensionProperties");
  std::vector<VkExtensionProperties> extensions(extensionCount);
  VkResult result = vkEnumerateDeviceExtensionProperties(
      physical, nullptr, &extensionCount, extensions.data());
  if (result != VK_INCOMPLETE)
    check(result, "vkEnumerateDeviceExtensionProperties");
  extensions.resize(extensionCount);
  auto hasExtension = [&](const char *name) {
    for (const VkExtensionProperties &extension : extensions)
      if (!std::strcmp(extension.extensionName, name))
        return true;
    return false;
  };

  // Ask what the device supports, then enable just the features MLIR's
  // SPIR-V may need (8/16/64-bit integers, f16/f64, 8/16-bit storage
  // buffer access). Vulkan 1.2 gathers them in its feature structs; on 1.1
  // the 8-bit ones come from extensions.
  auto supported = make<VkPhysicalDeviceFeatures2>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
  auto supported11 = make<VkPhysicalDeviceVulkan11Features>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
  auto supported12 = make<VkPhysicalDeviceVulkan12Features>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES);
  auto supported16 = make<VkPhysicalDevice16BitStorageFeatures>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  auto supported8 = make<VkPhysicalDevice8BitStorageFeaturesKHR>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR);
  auto supportedInt8 = make<VkPhysicalDeviceShaderFloat16Int8FeaturesKHR>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR);
  bool has8BitStorage =
      !core12 && hasExtension(VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
  bool hasFloat16Int8 =
      !core12 && hasExtension(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
  if (core12) {
    supported.pNext = &supported11;
    supported11.pNext = &supported12;
  } else {
    supported.pNext = &supported16;
    void **tail = &supported16.pNext;
    if (has8BitStorage) {
      *tail = &supported8;
      tail = &supported8.pNext;
    }
    if (hasFloat16Int8)
      *tail = &supportedInt8;
  }
  vkGetPhysicalDeviceFeatures2(physical, &supported);

  auto enabled = make<VkPhysicalDeviceFeatures2>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
  auto enabled11 = make<VkPhysicalDeviceVulkan11Features>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
  auto enabled12 = make<VkPhysicalDeviceVulkan12Features>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES);
  auto enabled16 = make<VkPhysicalDevice16BitStorageFeatures>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  auto enabled8 = make<VkPhysicalDevice8BitStorageFeaturesKHR>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR);
  auto enabledInt8 = make<VkPhysicalDeviceShaderFloat16Int8FeaturesKHR>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR);
  std::vector<const char *> enabledExtensions;
  enabled.features.shaderInt16 = supported.features.shaderInt16;
  enabled.features.shaderInt64 = supported.features.shaderInt64;
  enabled.features.shaderFloat64 = supported.features.shaderFloat64;
  bool storage16, storage8, int8, float16;
  if (core12) {
    enabled11.storageBuffer16BitAccess = storage16 =
        supported11.storageBuffer16BitAccess;
    enabled12.storageBuffer8BitAccess = storage8 =
        supported12.storageBuffer8BitAccess;
    enabled12.shaderInt8 = int8 = supported12.shaderInt8;
    enabled12.shaderFloat16 = float16 = supported12.shaderFloat16;
    enabled.pNext = &enabled11;
    enabled11.pNext = &enabled12;
  } else {
    enabled16.storageBuffer16BitAccess = storage16 =
        supported16.storageBuffer16BitAccess;
    enabled8.storageBuffer8BitAccess = storage8 =
        has8BitStorage && supported8.storageBuffer8BitAccess;
    enabledInt8.shaderInt8 = int8 = hasFloat16Int8 && supportedInt8.shaderInt8;
    enabledInt8.shaderFloat16 = float16 =
        hasFloat16Int8 && supportedInt8.shaderFloat16;
    enabled.pNext = &enabled16;
    void **tail = &enabled16.pNext;
    if (has8BitStorage) {
      enabledExtensions.push_back(VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
      *tail = &enabled8;
      tail = &enabled8.pNext;
    }
    if (hasFloat16Int8) {
      enabledExtensions.push_back(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
      *tail = &enabledInt8;
    }
  }
  auto supports = [&](SpirvCapability capability, bool feature) {
    if (feature)
      capabilities.push_back(capability);
  };
  supports(kCapStorageBuffer16BitAccess, storage16);
  supports(kCapStorageBuffer8BitAccess, storage8);
  supports(kCapInt8, int8);
  supports(kCapFloat16, float16);
  supports(kCapInt16, enabled.features.shaderInt16);
  supports(kCapInt64, enabled.features.shaderInt64);
  supports(kCapFloat64, enabled.features.shaderFloat64);

  float priority = 1.0f;
  auto queueInfo =
      make<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
  queueInfo.queueFamilyIndex = queueFamily;
  queueInfo.queueCount = 1;
  queueInfo.pQueuePriorities = &priority;
  auto deviceInfo =
      make<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  deviceInfo.pNext = &enabled;
  deviceInfo.queueCreateInfoCount = 1;
  deviceInfo.pQueueCreateInfos = &queueInfo;
  deviceInfo.enabledExtensionCount = uint32_t(enabledExtensions.size());
  deviceInfo.ppEnabledExtensionNames = enabledExtensions.data();
  check(vkCreateDevice(physical, &deviceInfo, nullptr, &device),
        "vkCreateDevice");

#define XFMR_VK_LOAD(name)                                                     \
  name = reinterpret_cast<PFN_##name>(vkGetDeviceProcAddr(device, #name));     \
  if (!name)                                                                   \
    throw Error("the Vulkan device has no " #name);
  XFMR_VK_DEVICE_FUNCTIONS(XFMR_VK_LOAD)
#undef XFMR_VK_LOAD
  vkGetDeviceQueue(device, queueFamily, 0, &queue);

  auto poolInfo =
      make<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
  poolInfo.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
  poolInfo.queueFamilyIndex = queueFamily;
  check(vkCreateCommandPool(device, &poolInfo, nullptr, &commandPool),
        "vkCreateCommandPool");
  auto bufferInfo = make<VkCommandBufferAllocateInfo>(
      VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
  bufferInfo.commandPool = commandPool;
  bufferInfo.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  bufferInfo.commandBufferCount = 1;
  check(vkAllocateCommandBuffers(device, &bufferInfo, &commandBuffer),
        "vkAllocateCommandBuffers");
  auto fenceInfo = make<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
  check(vkCreateFence(device, &fenceInfo, nullptr, &fence), "vkCreateFence");

  // Mapped device memory where it is the device's own memory; on a discrete
  // GPU the host-visible device-local memory is a PCIe window (small
  // without resizable BAR, slow to read from the host), so staging copies.
  // XFMR_VULKAN_STAGING=1 forces staging (it tests that path anywhere).
  const VkMemoryPropertyFlags mappable = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                         VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                         VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  for (uint32_t i = 0; i < memory.memoryTypeCount; ++i)
    if ((memory.memoryTypes[i].propertyFlags & mappable) == mappable)
      mapDeviceMemory = true;
  if (properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU)
    mapDeviceMemory = false;
  if (const char *forced = std::getenv("XFMR_VULKAN_STAGING"))
    if (*forced && std::strcmp(forced, "0"))
      mapDeviceMemory = false;

  ringSlot = std::max<uint64_t>(
      properties.limits.minStorageBufferOffsetAlignment, sizeof(int32_t));
  if (!createBuffer(ring, kInitialRingSlots * ringSlot,
                    {mappable, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                   VK_MEMORY_PROPERTY_HOST_COHERENT_BIT},
                    true))
    fail("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
}

bool VulkanDevice::createBuffer(
    Buffer &buffer, uint64_t size,
    std::initializer_list<VkMemoryPropertyFlags> preferences, bool map) {
  auto bufferInfo =
      make<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  bufferInfo.size = size;
  bufferInfo.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                     VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                     VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bufferInfo.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(vkCreateBuffer(device, &bufferInfo, nullptr, &buffer.buffer),
        "vkCreateBuffer");
  buffer.size = size;
  VkMemoryRequirements requirements;
  vkGetBufferMemoryRequirements(device, buffer.buffer, &requirements);

  VkResult result = VK_ERROR_OUT_OF_DEVICE_MEMORY;
  uint32_t tried = 0, chosen = 0;
  for (VkMemoryPropertyFlags flags : preferences) {
    for (uint32_t i = 0; i < memory.memoryTypeCount; ++i) {
      if (!(requirements.memoryTypeBits & (1u << i)) || (tried & (1u << i)) ||
          (memory.memoryTypes[i].propertyFlags & flags) != flags)
        continue;
      auto allocateInfo =
          make<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
      allocateInfo.allocationSize = requirements.size;
      allocateInfo.memoryTypeIndex = i;
      tried |= 1u << i;
      chosen = i;
      result = vkAllocateMemory(device, &allocateInfo, nullptr, &buffer.memory);
      if (result == VK_SUCCESS)
        break;
      // The next type (or the fallback) may be in another heap.
      if (result != VK_ERROR_OUT_OF_DEVICE_MEMORY)
        fail("vkAllocateMemory", result);
    }
    if (result == VK_SUCCESS)
      break;
  }
  if (result != VK_SUCCESS) {
    vkDestroyBuffer(device, buffer.buffer, nullptr);
    buffer = Buffer();
    if (!tried)
      throw Error("no Vulkan memory type fits a storage buffer on " + name());
    return false;
  }
  result = vkBindBufferMemory(device, buffer.buffer, buffer.memory, 0);
  if (result != VK_SUCCESS) {
    destroyBuffer(buffer);
    fail("vkBindBufferMemory", result);
  }
  const VkMemoryPropertyFlags hostMemory = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                           VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  if (map &&
      (memory.memoryTypes[chosen].propertyFlags & hostMemory) == hostMemory) {
    void *mapped = nullptr;
    result = vkMapMemory(device, buffer.memory, 0, VK_WHOLE_SIZE, 0, &mapped);
    if (result != VK_SUCCESS) {
      destroyBuffer(buffer);
      fail("vkMapMemory", result);
    }
    buffer.mapped = static_cast<uint8_t *>(mapped);
  }
  return true;
}

void VulkanDevice::destroyBuffer(Buffer &buffer) {
  if (buffer.mapped)
    vkUnmapMemory(device, buffer.memory);
  if (buffer.buffer)
    vkDestroyBuffer(device, buffer.buffer, nullptr);
  if (buffer.memory)
    vkFreeMemory(device, buffer.memory, nullptr);
  buffer = Buffer();
}

void VulkanDevice::freePool() {
  flush();
  for (auto &sizeIds : pool) {
    for (uint32_t id : sizeIds.second) {
      destroyBuffer(buffers[id]);
      freeIds.push_back(id);
    }
  }
  pool.clear();
}

uint64_t VulkanDevice::allocate(uint64_t bytes) {
  if (bytes > kOffsetMask)
    throw Error("cannot allocate " + std::to_string(bytes) +
                " bytes of Vulkan memory: a buffer holds at most 2^40 bytes");
  uint64_t size = sizeClass(bytes);
  auto reusable = pool.find(size);
  if (reusable != pool.end() && !reusable->second.empty()) {
    uint32_t id = reusable->second.back();
    reusable->second.pop_back();
    buffers[id].live = true;
    inUse += size;
    return uint64_t(id) << kOffsetBits;
  }

  uint32_t id;
  if (!freeIds.empty()) {
    id = freeIds.back();
    freeIds.pop_back();
  } else {
    if (buffers.size() > kMaxBufferId)
      throw Error("too many Vulkan buffers (" +
                  std::to_string(buffers.size() - 1) + ")");
    id = uint32_t(buffers.size());
    buffers.emplace_back();
  }
  const VkMemoryPropertyFlags mappable = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                         VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                         VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  auto tryCreate = [&] {
    Buffer buffer;
    // Device memory that is not host-visible (when the mappable kind is
    // full) still works, through staging; memory that is not device-local
    // only on a device that has none.
    bool created =
        mapDeviceMemory
            ? createBuffer(buffer, size,
                           {mappable, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0},
                           true)
            : createBuffer(buffer, size,
                           {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0}, false);
    if (created)
      buffers[id] = buffer;
    return created;
  };
  bool created;
  try {
    created = tryCreate();
    // Released buffers hold memory: free them and try again.
    if (!created && !pool.empty()) {
      freePool();
      created = tryCreate();
    }
  } catch (...) {
    freeIds.push_back(id);
    throw;
  }
  if (!created) {
    freeIds.push_back(id);
    throw Error("vkAllocateMemory failed: VK_ERROR_OUT_OF_DEVICE_MEMORY (" +
                std::to_string(size) + " bytes, " + std::to_string(inUse) +
                " in use on " + name() + ")");
  }
  buffers[id].live = true;
  inUse += size;
  return uint64_t(id) << kOffsetBits;
}

void VulkanDevice::release(uint64_t address) {
  uint64_t offset;
  Buffer &buffer = decode(address, 0, offset, "release");
  if (offset != 0)
    throw Error("release of Vulkan address " + hexAddress(address) +
                ": not the start of an allocation");
  // Commands already recorded may still use it; those recorded after a
  // reuse run after them (every command ends with a barrier), so it can go
  // back to the pool right away.
  buffer.live = false;
  inUse -= buffer.size;
  pool[buffer.size].push_back(uint32_t(address >> kOffsetBits));
}

Buffer *VulkanDevice::lookup(uint64_t address, uint64_t &offset) {
  uint64_t id = address >> kOffsetBits;
  offset = address & kOffsetMask;
  if (id == 0 || id >= buffers.size() || !buffers[id].live)
    return nullptr;
  return &buffers[id];
}

Buffer &VulkanDevice::decode(uint64_t address, uint64_t bytes, uint64_t &offset,
                             const char *what) {
  uint64_t id = address >> kOffsetBits;
  Buffer *found = lookup(address, offset);
  if (!found)
    throw Error(std::string(what) + ": " + hexAddress(address) +
                " is not a Vulkan device address (no live buffer " +
                std::to_string(id) + ")");
  Buffer &buffer = *found;
  if (offset > buffer.size || bytes > buffer.size - offset)
    throw Error(std::string(what) + ": " + std::to_string(bytes) +
                " bytes at " + hexAddress(address) + " run past the end of buffer " +
                std::to_string(id) + " (" + std::to_string(buffer.size) +
                " bytes)");
  return buffer;
}

VkCommandBuffer VulkanDevice::commands() {
  if (!recording) {
    // Reset here rather than after the wait: a failed submit leaves the
    // command buffer to reuse too.
    check(vkResetCommandPool(device, commandPool, 0), "vkResetCommandPool");
    auto beginInfo = make<VkCommandBufferBeginInfo>(
        VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
    beginInfo.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(vkBeginCommandBuffer(commandBuffer, &beginInfo),
          "vkBeginCommandBuffer");
    recording = true;
  }
  return commandBuffer;
}

void VulkanDevice::barrier() {
  auto memoryBarrier = make<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  memoryBarrier.srcAccessMask =
      VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  memoryBarrier.dstAccessMask =
      VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
      VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags stages =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vkCmdPipelineBarrier(commands(), stages, stages, 0, 1, &memoryBarrier, 0,
                       nullptr, 0, nullptr);
}

void VulkanDevice::flush() {
  if (!recording)
    return;
  // The fence makes the device's work complete, not its writes visible to
  // the host: that takes a barrier to the host stage.
  auto hostBarrier = make<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  hostBarrier.srcAccessMask =
      VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  hostBarrier.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(
      commandBuffer,
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
      VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &hostBarrier, 0, nullptr, 0, nullptr);
  // Whatever happens below, the batch is over: the next command starts a new
  // one.
  recording = false;
  ++batch;
  ringUsed = 0;
  stagingUsed = 0;
  check(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer");
  auto submitInfo = make<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
  submitInfo.commandBufferCount = 1;
  submitInfo.pCommandBuffers = &commandBuffer;
  check(vkQueueSubmit(queue, 1, &submitInfo, fence), "vkQueueSubmit");
  VkResult result;
  do
    result = vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX);
  while (result == VK_TIMEOUT);
  check(result, "vkWaitForFences");
  check(vkResetFences(device, 1, &fence), "vkResetFences");
  for (VkDescriptorPool descriptors : descriptorPools)
    check(vkResetDescriptorPool(device, descriptors, 0),
          "vkResetDescriptorPool");
  descriptorPool = 0;
}

uint64_t VulkanDevice::stagingSpace(uint64_t bytes) {
  if (!staging.buffer) {
    // Host-cached memory where there is some: copyToHost reads it.
    const VkMemoryPropertyFlags hostMemory =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
        VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if (!createBuffer(
            staging, kStagingBytes,
            {hostMemory | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, hostMemory},
            true))
      fail("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  }
  uint64_t offset = alignUp(stagingUsed, kSizeAlignment);
  if (offset + bytes > staging.size) {
    flush();
    offset = 0;
  }
  stagingUsed = offset + bytes;
  return offset;
}

void VulkanDevice::copyToDevice(uint64_t dest, const void *source,
                                uint64_t bytes) {
  uint64_t offset;
  Buffer &buffer = decode(dest, bytes, offset, "copyToDevice");
  if (bytes == 0)
    return;
  if (buffer.mapped) {
    if (buffer.usedBatch == batch) {
      // Recorded commands use the buffer: the write must run in their order.
      // Small writes are recorded (their data with them), larger ones wait.
      if (bytes <= kMaxUpdateBytes && offset % 4 == 0 && bytes % 4 == 0) {
        vkCmdUpdateBuffer(commands(), buffer.buffer, offset, bytes, source);
        barrier();
        return;
      }
      flush();
    }
    std::memcpy(buffer.mapped + offset, source, bytes);
    return;
  }
  const uint8_t *from = static_cast<const uint8_t *>(source);
  while (bytes) {
    uint64_t chunk = std::min(bytes, kStagingBytes);
    uint64_t at = stagingSpace(chunk);
    std::memcpy(staging.mapped + at, from, chunk);
    VkBufferCopy region = {at, offset, chunk};
    vkCmdCopyBuffer(commands(), staging.buffer, buffer.buffer, 1, &region);
    barrier();
    buffer.usedBatch = batch;
    from += chunk;
    offset += chunk;
    bytes -= chunk;
  }
}

void VulkanDevice::copyToHost(void *dest, uint64_t source, uint64_t bytes) {
  uint64_t offset;
  Buffer &buffer = decode(source, bytes, offset, "copyToHost");
  if (bytes == 0)
    return;
  if (buffer.mapped) {
    // Only recorded commands can change it (the buffer's memory is its
    // own): wait for them if they use it.
    if (buffer.usedBatch == batch)
      flush();
    std::memcpy(dest, buffer.mapped + offset, bytes);
    return;
  }
  uint8_t *to = static_cast<uint8_t *>(dest);
  while (bytes) {
    uint64_t chunk = std::min(bytes, kStagingBytes);
    uint64_t at = stagingSpace(chunk);
    VkBufferCopy region = {offset, at, chunk};
    vkCmdCopyBuffer(commands(), buffer.buffer, staging.buffer, 1, &region);
    flush();
    std::memcpy(to, staging.mapped + at, chunk);
    to += chunk;
    offset += chunk;
    bytes -= chunk;
  }
}

void VulkanDevice::zero(uint64_t dest, uint64_t bytes) {
  uint64_t offset;
  Buffer &buffer = decode(dest, bytes, offset, "zero");
  if (bytes == 0)
    return;
  if (buffer.mapped) {
    if (buffer.usedBatch == batch) {
      // Recorded commands use the buffer: zero it in their order.
      if (offset % 4 == 0 && bytes % 4 == 0) {
        vkCmdFillBuffer(commands(), buffer.buffer, offset, bytes, 0);
        barrier();
        return;
      }
      flush();
    }
    std::memset(buffer.mapped + offset, 0, bytes);
    return;
  }
  // vkCmdFillBuffer writes whole words: the bytes around them are copied.
  uint64_t begin = alignUp(offset, 4), end = alignDown(offset + bytes, 4);
  if (begin >= end) {
    const uint8_t zeros[8] = {};
    copyToDevice(dest, zeros, bytes);
    return;
  }
  const uint8_t zeros[4] = {};
  if (begin > offset)
    copyToDevice(dest, zeros, begin - offset);
  vkCmdFillBuffer(commands(), buffer.buffer, begin, end - begin, 0);
  barrier();
  buffer.usedBatch = batch;
  if (offset + bytes > end)
    copyToDevice(dest + (end - offset), zeros, offset + bytes - end);
}

void VulkanDevice::destroyKernels() {
  for (Kernel &kernel : kernels) {
    if (kernel.pipeline)
      vkDestroyPipeline(device, kernel.pipeline, nullptr);
    if (kernel.pipelineLayout)
      vkDestroyPipelineLayout(device, kernel.pipelineLayout, nullptr);
    if (kernel.setLayout)
      vkDestroyDescriptorSetLayout(device, kernel.setLayout, nullptr);
  }
  kernels.clear();
  if (shader)
    vkDestroyShaderModule(device, shader, nullptr);
  shader = VK_NULL_HANDLE;
}

const char *capabilityName(uint32_t capability) {
  switch (capability) {
  case kCapFloat16:
    return "Float16";
  case kCapFloat64:
    return "Float64";
  case kCapInt64:
    return "Int64";
  case kCapInt16:
    return "Int16";
  case kCapInt8:
    return "Int8";
  case kCapStorageBuffer16BitAccess:
    return "StorageBuffer16BitAccess";
  case kCapStorageBuffer8BitAccess:
    return "StorageBuffer8BitAccess";
  default:
    return nullptr;
  }
}

void VulkanDevice::loadKernels(const uint8_t *binary, uint64_t size,
                               const std::vector<GpuKernelInfo> &infos) {
  if (size < 20 || size % 4)
    throw Error("the Vulkan kernel binary (" + std::to_string(size) +
                " bytes) is not a SPIR-V module");
  std::vector<uint32_t> words(size / 4);
  std::memcpy(words.data(), binary, size);
  if (words[0] != kSpirvMagic)
    throw Error("the Vulkan kernel binary is not a SPIR-V module (magic " +
                hexAddress(words[0]) + ")");

  // The module's GLCompute entry points with their workgroup sizes, and the
  // capabilities it declares: a missing kernel or an unsupported capability
  // is an error here rather than undefined behaviour in the driver.
  struct EntryPoint {
    std::string name;
    uint32_t id;
    bool hasSize = false;
    uint32_t size[3] = {0, 0, 0};
  };
  std::vector<EntryPoint> entryPoints;
  for (size_t at = 5; at < words.size();) {
    uint32_t count = words[at] >> 16, opcode = words[at] & 0xffff;
    if (count == 0 || at + count > words.size())
      throw Error("the Vulkan kernel binary is a malformed SPIR-V module "
                  "(instruction at word " +
                  std::to_string(at) + ")");
    if (opcode == kOpCapability && count >= 2) {
      uint32_t capability = words[at + 1];
      const char *known = capabilityName(capability);
      if (known && std::find(capabilities.begin(), capabilities.end(),
                             capability) == capabilities.end())
        throw Error("the Vulkan kernels need SPIR-V capability " +
                    std::string(known) + ", which " + name() +
                    " does not support");
    } else if (opcode == kOpEntryPoint && count >= 4 &&
               words[at + 1] == kExecutionModelGLCompute) {
      const char *text = reinterpret_cast<const char *>(&words[at + 3]);
      entryPoints.push_back(
          {std::string(text, strnlen(text, (count - 3) * 4)), words[at + 2]});
    } else if (opcode == kOpExecutionMode && count >= 6 &&
               words[at + 2] == kExecutionModeLocalSize) {
      for (EntryPoint &entry : entryPoints) {
        if (entry.id == words[at + 1]) {
          entry.hasSize = true;
          std::copy(&words[at + 3], &words[at + 6], entry.size);
        }
      }
    }
    at += count;
  }
  for (const GpuKernelInfo &info : infos) {
    auto entry = std::find_if(
        entryPoints.begin(), entryPoints.end(),
        [&](const EntryPoint &entry) { return entry.name == info.name; });
    if (entry == entryPoints.end())
      throw Error("kernel '" + info.name +
                  "' is not a GLCompute entry point of the SPIR-V module");
    if (entry->hasSize && !std::equal(info.block, info.block + 3, entry->size))
      throw Error(
          "kernel '" + info.name + "' has workgroup size " +
          std::to_string(entry->size[0]) + "x" +
          std::to_string(entry->size[1]) + "x" +
          std::to_string(entry->size[2]) + " in the SPIR-V module but block " +
          std::to_string(info.block[0]) + "x" + std::to_string(info.block[1]) +
          "x" + std::to_string(info.block[2]) + " in the manifest");
  }

  // Earlier kernels may be in recorded commands.
  flush();
  destroyKernels();
  // A kernel half made is no kernel: launch() must not find it.
  try {
    createKernels(words, infos);
  } catch (...) {
    destroyKernels();
    throw;
  }
}

void VulkanDevice::createKernels(const std::vector<uint32_t> &words,
                                 const std::vector<GpuKernelInfo> &infos) {
  auto shaderInfo = make<VkShaderModuleCreateInfo>(
      VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
  shaderInfo.codeSize = words.size() * sizeof(uint32_t);
  shaderInfo.pCode = words.data();
  check(vkCreateShaderModule(device, &shaderInfo, nullptr, &shader),
        "vkCreateShaderModule");

  kernels.reserve(infos.size());
  for (const GpuKernelInfo &info : infos) {
    kernels.emplace_back();
    Kernel &kernel = kernels.back();
    kernel.info = info;
    // The buffers, then one i32 storage buffer with their element offsets
    // and the scalars (GpuDevice.h): one binding each, at its parameter
    // index.
    uint32_t parameters = uint32_t(info.buffers.size()) + 1;
    if (parameters > properties.limits.maxPerStageDescriptorStorageBuffers ||
        parameters > properties.limits.maxDescriptorSetStorageBuffers)
      throw Error("kernel '" + info.name + "' has " +
                  std::to_string(parameters) + " storage buffers; " + name() +
                  " allows " +
                  std::to_string(std::min(
                      properties.limits.maxPerStageDescriptorStorageBuffers,
                      properties.limits.maxDescriptorSetStorageBuffers)) +
                  " per kernel");
    std::vector<VkDescriptorSetLayoutBinding> bindings(parameters);
    for (uint32_t i = 0; i < parameters; ++i) {
      bindings[i].binding = i;
      bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      bindings[i].descriptorCount = 1;
      bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    auto setInfo = make<VkDescriptorSetLayoutCreateInfo>(
        VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
    setInfo.bindingCount = parameters;
    setInfo.pBindings = bindings.data();
    check(vkCreateDescriptorSetLayout(device, &setInfo, nullptr,
                                      &kernel.setLayout),
          "vkCreateDescriptorSetLayout");
    auto layoutInfo = make<VkPipelineLayoutCreateInfo>(
        VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
    layoutInfo.setLayoutCount = 1;
    layoutInfo.pSetLayouts = &kernel.setLayout;
    check(vkCreatePipelineLayout(device, &layoutInfo, nullptr,
                                 &kernel.pipelineLayout),
          "vkCreatePipelineLayout");
    auto pipelineInfo = make<VkComputePipelineCreateInfo>(
        VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
    pipelineInfo.stage.sType =
        VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pipelineInfo.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pipelineInfo.stage.module = shader;
    pipelineInfo.stage.pName = kernel.info.name.c_str();
    pipelineInfo.layout = kernel.pipelineLayout;
    VkResult result = vkCreateComputePipelines(
        device, VK_NULL_HANDLE, 1, &pipelineInfo, nullptr, &kernel.pipeline);
    if (result != VK_SUCCESS)
      throw Error("vkCreateComputePipelines failed for kernel '" + info.name +
                  "': " +
                  (resultName(result) ? resultName(result)
                                      : std::to_string(int(result))));
  }
}

void VulkanDevice::launch(uint32_t index, const uint32_t grid[3],
                          GpuLaunchArgs args) {
  if (index >= kernels.size())
    throw Error("Vulkan launch of kernel " + std::to_string(index) + " of " +
                std::to_string(kernels.size()));
  const Kernel &kernel = kernels[index];
  const GpuKernelInfo &info = kernel.info;
  const uint32_t *maxCount = properties.limits.maxComputeWorkGroupCount;
  if (grid[0] > maxCount[0] || grid[1] > maxCount[1] || grid[2] > maxCount[2])
    throw Error("kernel '" + info.name + "': grid " + std::to_string(grid[0]) +
                "x" + std::to_string(grid[1]) + "x" + std::to_string(grid[2]) +
                " exceeds the device's maxComputeWorkGroupCount " +
                std::to_string(maxCount[0]) + "x" +
                std::to_string(maxCount[1]) + "x" +
                std::to_string(maxCount[2]));

  // Every buffer is bound at an offset the device accepts (its storage
  // buffer offset alignment below the address); the rest of the way to the
  // first element is the element offset the kernel adds.
  size_t count = info.buffers.size();
  uint32_t parameters = uint32_t(count) + 1;
  std::vector<VkDescriptorBufferInfo> &bound = boundScratch;
  std::vector<int32_t> &scalars = scalarScratch;
  bound.resize(parameters);
  scalars.resize(count + info.scalars);
  uint64_t alignment =
      std::max<uint64_t>(properties.limits.minStorageBufferOffsetAlignment, 1);
  for (size_t k = 0; k < count; ++k) {
    uint64_t address = static_cast<uint64_t>(args[k]), offset;
    Buffer *found = lookup(address, offset);
    if (!found || offset > found->size) {
      std::string what =
          "kernel '" + info.name + "' buffer " + std::to_string(k);
      decode(address, 0, offset, what.c_str()); // throws
    }
    Buffer &buffer = *found;
    // An address at the end (no elements) still binds the last bytes.
    uint64_t at = alignDown(std::min(offset, buffer.size - 1), alignment);
    uint64_t elementSize = std::max<uint32_t>(info.buffers[k], 1);
    if ((offset - at) % elementSize)
      throw Error("kernel '" + info.name + "' buffer " + std::to_string(k) +
                  ": address " + hexAddress(address) + " is not aligned to its " +
                  std::to_string(elementSize) + "-byte elements");
    // A binding spans at most maxStorageBufferRange bytes (128 MiB on
    // lavapipe and many phones): a kernel reading further would read out of
    // range, silently. Refuse it, naming the kernel and the sizes.
    uint64_t range = properties.limits.maxStorageBufferRange;
    uint64_t extent = bufferExtent(info, k, args);
    if (extent && offset - at + extent > range)
      throw BindingRangeError(
          "kernel '" + info.name + "' buffer " + std::to_string(k) + " spans " +
          std::to_string(offset - at + extent) +
          " bytes from its binding, more than this Vulkan device's "
          "maxStorageBufferRange (" +
          std::to_string(range) +
          " bytes): the tensor is too large for this device, or the "
          "prompt is too long for one call (prefill it in parts)");
    bound[k] = {buffer.buffer, at, std::min<uint64_t>(buffer.size - at, range)};
    scalars[k] = int32_t((offset - at) / elementSize);
  }
  for (uint32_t s = 0; s < info.scalars; ++s)
    scalars[count + s] = static_cast<int32_t>(args[count + s]);

  // Room for the scalars (one contiguous i32 array) in the ring, else the
  // batch ends (its scalars are then done with) and the ring grows, so that
  // it wraps less often.
  uint64_t bytes = scalars.size() * sizeof(int32_t);
  uint64_t needed = (bytes + ringSlot - 1) / ringSlot * ringSlot;
  if (ringUsed + needed > ring.size) {
    flush();
    uint64_t slots = ring.size / ringSlot;
    if (slots < kMaxRingSlots || needed > ring.size) {
      uint64_t grown = std::max(std::min(2 * slots, kMaxRingSlots),
                                needed / ringSlot);
      destroyBuffer(ring);
      const VkMemoryPropertyFlags hostMemory =
          VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
          VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
      if (!createBuffer(
              ring, grown * ringSlot,
              {hostMemory | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, hostMemory},
              true))
        fail("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
    }
  }
  std::memcpy(ring.mapped + ringUsed, scalars.data(), bytes);
  bound[count] = {ring.buffer, ringUsed, bytes};
  ringUsed += needed;

  // A descriptor set from this batch's pools, adding a pool when they are
  // full (all are reset after the submit).
  VkDescriptorSet set = VK_NULL_HANDLE;
  for (;;) {
    bool fresh = descriptorPool == descriptorPools.size();
    if (fresh) {
      VkDescriptorPoolSize poolSize = {
          VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
          std::max(kDescriptorsPerPool, parameters)};
      auto poolInfo = make<VkDescriptorPoolCreateInfo>(
          VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
      poolInfo.maxSets = kSetsPerPool;
      poolInfo.poolSizeCount = 1;
      poolInfo.pPoolSizes = &poolSize;
      VkDescriptorPool created;
      check(vkCreateDescriptorPool(device, &poolInfo, nullptr, &created),
            "vkCreateDescriptorPool");
      descriptorPools.push_back(created);
    }
    auto setInfo = make<VkDescriptorSetAllocateInfo>(
        VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
    setInfo.descriptorPool = descriptorPools[descriptorPool];
    setInfo.descriptorSetCount = 1;
    setInfo.pSetLayouts = &kernel.setLayout;
    VkResult result = vkAllocateDescriptorSets(device, &setInfo, &set);
    if (result == VK_SUCCESS)
      break;
    // A pool made for this set that cannot hold it will not get better.
    if (fresh || (result != VK_ERROR_OUT_OF_POOL_MEMORY &&
                  result != VK_ERROR_FRAGMENTED_POOL))
      fail("vkAllocateDescriptorSets", result);
    ++descriptorPool;
  }
  if (parameters) {
    // Bindings 0..P-1 are consecutive with one descriptor each: one write
    // fills them all.
    auto write =
        make<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
    write.dstSet = set;
    write.dstBinding = 0;
    write.descriptorCount = parameters;
    write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    write.pBufferInfo = bound.data();
    vkUpdateDescriptorSets(device, 1, &write, 0, nullptr);
  }

  VkCommandBuffer recorded = commands();
  vkCmdBindPipeline(recorded, VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline);
  vkCmdBindDescriptorSets(recorded, VK_PIPELINE_BIND_POINT_COMPUTE,
                          kernel.pipelineLayout, 0, 1, &set, 0, nullptr);
  vkCmdDispatch(recorded, grid[0], grid[1], grid[2]);
  barrier();
  for (size_t k = 0; k < count; ++k)
    buffers[static_cast<uint64_t>(args[k]) >> kOffsetBits].usedBatch = batch;
}

} // namespace

std::unique_ptr<GpuDevice> createVulkanDevice() {
  auto device = std::make_unique<VulkanDevice>();
  device->init();
  return device;
}

} // namespace xfmr::runtime

#else // !XFMR_HAVE_VULKAN_HEADERS

std::unique_ptr<xfmr::runtime::GpuDevice> xfmr::runtime::createVulkanDevice() {
  throw Error("this runtime was built without Vulkan headers (install "
              "libvulkan-dev and rebuild)");
}

#endif // XFMR_HAVE_VULKAN_HEADERS
