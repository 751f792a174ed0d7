//===- KernelLaunch.h - launches and decode-step graphs (CUDA, HIP) -*- C++
//-*-===//
//
// What the CUDA and HIP devices share around a kernel launch:
// - KernelLaunch: the kernel, its grid and its parameter values, laid out
//   as both drivers take them (one 8-byte slot per parameter of the ABI in
//   GpuDevice.h, each buffer as the 5 fields of a memref descriptor);
// - StepRecorder: the recording of a decode step's launches between
//   beginStep() and endStep(), to replay as one graph (CUDA graph, HIP
//   graph), and the (kernel, grid) shape of the graph built last, which
//   says whether the next step can reuse it with new parameter values.
// The drivers' graph calls stay in each device.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKENDS_GPU_KERNELLAUNCH_H
#define XFMR_RUNTIME_BACKENDS_GPU_KERNELLAUNCH_H

#include "backends/gpu/GpuDevice.h"

#include <cstdint>
#include <string>
#include <vector>

namespace xfmr::runtime {

/// One kernel launch, ready for cuLaunchKernel / hipModuleLaunchKernel or a
/// graph's kernel node.
struct KernelLaunch {
  /// The kernel's index in the device's loaded list.
  uint32_t index = 0;
  unsigned grid[3] = {1, 1, 1};
  /// One 8-byte slot per kernel parameter, in the ABI's order.
  std::vector<uint64_t> slots;

  /// The drivers' kernelParams: a pointer to each slot (valid while `slots`
  /// is neither resized nor moved).
  void **parameters(std::vector<void *> &storage) const;
};

/// The launch of kernel `index` (described by `info`) on `grid` with the
/// host code's `args` (buffer addresses, then i32 scalars).
KernelLaunch kernelLaunch(uint32_t index, const uint32_t grid[3],
                          const GpuKernelInfo &info, GpuLaunchArgs args);

/// " launching kernel 'name' on grid GXxGYxGZ, block BXxBYxBZ": the context
/// of a failed launch's error.
std::string describeLaunch(const KernelLaunch &launch,
                           const GpuKernelInfo &info);

/// A decode step's launches, recorded to run as one graph. Each device owns
/// one and its graph handles; the recorder decides what is recorded and
/// whether the last graph fits the step.
class StepRecorder {
public:
  /// Graphs on (the device's opt-in variable, and a driver with graphs).
  void enable(bool on) { enabled = on; }
  bool isEnabled() const { return enabled; }

  /// beginStep(): records the launches that follow, when enabled.
  void begin() { recording = enabled; }
  /// Takes `launch` into the step; false when not recording (launch it
  /// now).
  bool record(KernelLaunch &launch);
  /// Stops recording and hands back what was recorded, to launch one by one
  /// (anything but a launch came in the middle of the step).
  std::vector<KernelLaunch> interrupt();
  /// endStep(): stops recording and hands back the step's launches for its
  /// graph (none when `discard`, or when nothing was recorded).
  std::vector<KernelLaunch> end(bool discard);

  /// Whether `steps` launches the kernels on the grids of the graph built
  /// last (whose nodes then only need the new parameter values).
  bool fitsGraph(const std::vector<KernelLaunch> &steps) const;
  /// The shape of the graph just built from `steps`, or none (destroyed).
  void keepShape(const std::vector<KernelLaunch> &steps);
  void forgetShape() { shape.clear(); }

private:
  bool enabled = false, recording = false;
  std::vector<KernelLaunch> recorded;
  /// The (kernel, grid) of each node of the last graph.
  struct Node {
    uint32_t index;
    unsigned grid[3];
  };
  std::vector<Node> shape;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKENDS_GPU_KERNELLAUNCH_H
