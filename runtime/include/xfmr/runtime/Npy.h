//===- Npy.h - writing NumPy .npy files -------------------------*- C++ -*-===//
//
// xfmr-run --dump-logits and the tests compare logits with the NumPy
// reference through .npy files (format 1.0, little-endian float32, C order).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_NPY_H
#define XFMR_RUNTIME_NPY_H

#include <cstdint>
#include <string>
#include <vector>

namespace xfmr::runtime {

/// The .npy header (magic, version 1.0, length, dict padded to 64 bytes) for
/// a '<f4' C-order array of `shape`.
std::string npyHeaderFloat32(const std::vector<int64_t> &shape);

/// Writes `data` (product(shape) floats) as a .npy file through OutputFile:
/// atomically (a unique temporary file beside `path`, renamed), or in place
/// for a device or FIFO. Throws `Error` naming the path.
void writeNpyFloat32(const std::string &path, const float *data,
                     const std::vector<int64_t> &shape);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_NPY_H
